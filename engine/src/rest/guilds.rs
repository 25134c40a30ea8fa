//! Guild, channel, role, member, invite, ban and read-state bodies.
//!
//! Fields a PATCH may reset are [`Patch`]es (absent, `null`, value); fields that cannot be reset
//! are `Option`s where `null` counts as absent, which is how Discord treats them in practice.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::Value;

use super::error::ApiError;
use super::form::{FormErrors, Obj, Patch, parse_json, root_array, root_element, with_object};
use super::limits::{
    AFK_TIMEOUTS_S, BAN_DELETE_DAYS_MAX, BAN_DELETE_SECONDS_MAX, BITRATE_MAX, BITRATE_MIN,
    CHANNEL_NAME_CHARS_MAX, CHANNEL_NAME_CHARS_MIN, CHANNEL_TOPIC_CHARS_MAX, COLOR_MAX,
    CONTENT_FILTER_MAX, GUILD_DESCRIPTION_CHARS_MAX, GUILD_NAME_CHARS_MAX, GUILD_NAME_CHARS_MIN,
    INVITE_MAX_AGE_DEFAULT_S, INVITE_MAX_AGE_MAX_S, INVITE_MAX_USES_MAX, MEMBER_ROLES_MAX,
    MESSAGE_NOTIFICATIONS_MAX, NICK_CHARS_MAX, OVERWRITES_MAX, POSITION_MAX, POSITIONS_MAX,
    RATE_LIMIT_PER_USER_MAX_S, ROLE_NAME_CHARS_MAX, USER_LIMIT_MAX, VERIFICATION_LEVEL_MAX,
};

/// Channel type: text.
pub const CHANNEL_TYPE_TEXT: u8 = 0;
/// Channel type: voice.
pub const CHANNEL_TYPE_VOICE: u8 = 2;
/// Channel type: category.
pub const CHANNEL_TYPE_CATEGORY: u8 = 4;
/// Channel type: announcement.
pub const CHANNEL_TYPE_ANNOUNCEMENT: u8 = 5;
/// The guild channel types we serve (no threads, stages, forums or DMs).
pub const CHANNEL_TYPES: [u64; 4] = [
    CHANNEL_TYPE_TEXT as u64,
    CHANNEL_TYPE_VOICE as u64,
    CHANNEL_TYPE_CATEGORY as u64,
    CHANNEL_TYPE_ANNOUNCEMENT as u64,
];
/// Overwrite type: a role.
pub const OVERWRITE_TYPE_ROLE: u8 = 0;
/// Overwrite type: a member.
pub const OVERWRITE_TYPE_MEMBER: u8 = 1;
/// Name of a role created without one, as on Discord.
pub const ROLE_NAME_DEFAULT: &str = "new role";

/// Narrows a value already checked against a limit that fits the target type.
fn narrow<T: TryFrom<u64> + Default>(n: u64) -> T {
    T::try_from(n).unwrap_or_default()
}

fn name_field(
    min: usize,
    max: usize,
) -> impl Fn(&mut FormErrors, &Obj<'_>, &str, &Value) -> Option<String> {
    move |e, o, k, v| e.string(o, k, v, min, max)
}

fn int_field(
    min: u64,
    max: u64,
) -> impl Fn(&mut FormErrors, &Obj<'_>, &str, &Value) -> Option<u64> {
    move |e, o, k, v| e.int(o, k, v, min, max)
}

fn bool_field(e: &mut FormErrors, o: &Obj<'_>, k: &str, v: &Value) -> Option<bool> {
    e.boolean(o, k, v)
}

fn snowflake_field(e: &mut FormErrors, o: &Obj<'_>, k: &str, v: &Value) -> Option<u64> {
    e.snowflake(o, k, v)
}

fn permissions_field(e: &mut FormErrors, o: &Obj<'_>, k: &str, v: &Value) -> Option<u64> {
    e.permissions(o, k, v)
}

/// `POST /guilds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateGuild {
    /// Name, 2..=100 characters.
    pub name: String,
    /// Verification level 0..=4 (default 0).
    pub verification_level: u8,
    /// Default message notifications 0..=1 (default 0: all messages).
    pub default_message_notifications: u8,
    /// Explicit content filter 0..=2 (default 0).
    pub explicit_content_filter: u8,
}

impl CreateGuild {
    /// Decodes and validates (`icon`, `region`, `channels` and `roles` are ignored).
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| CreateGuild {
            name: e
                .req(
                    o,
                    "name",
                    name_field(GUILD_NAME_CHARS_MIN, GUILD_NAME_CHARS_MAX),
                )
                .unwrap_or_default(),
            verification_level: narrow(
                e.opt(
                    o,
                    "verification_level",
                    int_field(0, VERIFICATION_LEVEL_MAX),
                )
                .unwrap_or(0),
            ),
            default_message_notifications: narrow(
                e.opt(
                    o,
                    "default_message_notifications",
                    int_field(0, MESSAGE_NOTIFICATIONS_MAX),
                )
                .unwrap_or(0),
            ),
            explicit_content_filter: narrow(
                e.opt(
                    o,
                    "explicit_content_filter",
                    int_field(0, CONTENT_FILTER_MAX),
                )
                .unwrap_or(0),
            ),
        })
    }
}

/// `PATCH /guilds/{g}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModifyGuild {
    /// New name, 2..=100 characters.
    pub name: Option<String>,
    /// New description (at most 120 characters; `null` clears).
    pub description: Patch<String>,
    /// New verification level.
    pub verification_level: Option<u8>,
    /// New default message notifications.
    pub default_message_notifications: Option<u8>,
    /// New explicit content filter.
    pub explicit_content_filter: Option<u8>,
    /// AFK voice channel (`null`: none).
    pub afk_channel_id: Patch<u64>,
    /// AFK timeout in seconds (60, 300, 900, 1800 or 3600).
    pub afk_timeout: Option<u32>,
    /// System messages channel (`null`: none).
    pub system_channel_id: Patch<u64>,
    /// Transfer ownership (owner only).
    pub owner_id: Option<u64>,
}

impl ModifyGuild {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| ModifyGuild {
            name: e.opt(
                o,
                "name",
                name_field(GUILD_NAME_CHARS_MIN, GUILD_NAME_CHARS_MAX),
            ),
            description: e.patch(o, "description", name_field(0, GUILD_DESCRIPTION_CHARS_MAX)),
            verification_level: e
                .opt(
                    o,
                    "verification_level",
                    int_field(0, VERIFICATION_LEVEL_MAX),
                )
                .map(narrow),
            default_message_notifications: e
                .opt(
                    o,
                    "default_message_notifications",
                    int_field(0, MESSAGE_NOTIFICATIONS_MAX),
                )
                .map(narrow),
            explicit_content_filter: e
                .opt(
                    o,
                    "explicit_content_filter",
                    int_field(0, CONTENT_FILTER_MAX),
                )
                .map(narrow),
            afk_channel_id: e.patch(o, "afk_channel_id", snowflake_field),
            afk_timeout: e
                .opt(o, "afk_timeout", |e, o, k, v| {
                    e.choice(o, k, v, &AFK_TIMEOUTS_S)
                })
                .map(narrow),
            system_channel_id: e.patch(o, "system_channel_id", snowflake_field),
            owner_id: e.opt(o, "owner_id", snowflake_field),
        })
    }
}

/// A permission overwrite on a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overwrite {
    /// Role or user id.
    pub id: u64,
    /// [`OVERWRITE_TYPE_ROLE`] or [`OVERWRITE_TYPE_MEMBER`].
    pub kind: u8,
    /// Allowed bits (default 0).
    pub allow: u64,
    /// Denied bits (default 0).
    pub deny: u64,
}

fn overwrites(e: &mut FormErrors, o: &Obj<'_>, key: &str, v: &Value) -> Option<Vec<Overwrite>> {
    let items = e.array(o, key, v, 0, OVERWRITES_MAX)?;
    let before = e.count();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(ow) = o.nested(key, Some(i), item, e) else {
            continue;
        };
        let id = e.req(&ow, "id", snowflake_field);
        let kind = e.req(&ow, "type", |e, o, k, v| {
            e.choice(
                o,
                k,
                v,
                &[
                    u64::from(OVERWRITE_TYPE_ROLE),
                    u64::from(OVERWRITE_TYPE_MEMBER),
                ],
            )
        });
        let allow = e.opt(&ow, "allow", permissions_field).unwrap_or(0);
        let deny = e.opt(&ow, "deny", permissions_field).unwrap_or(0);
        if let (Some(id), Some(kind)) = (id, kind) {
            out.push(Overwrite {
                id,
                kind: narrow(kind),
                allow,
                deny,
            });
        }
    }
    (e.count() == before).then_some(out)
}

/// `POST /guilds/{g}/channels`. Fields that do not apply to the channel type (a topic on a
/// voice channel, a bitrate on a text channel) are accepted and ignored by the handler, as
/// Discord does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateChannel {
    /// Name, 1..=100 characters.
    pub name: String,
    /// Channel type ([`CHANNEL_TYPES`]), default text.
    pub kind: u8,
    /// Topic, at most 1024 characters.
    pub topic: Option<String>,
    /// Sort position.
    pub position: Option<u32>,
    /// Category.
    pub parent_id: Option<u64>,
    /// Age restricted.
    pub nsfw: bool,
    /// Voice bitrate, 8000..=384000.
    pub bitrate: Option<u32>,
    /// Voice user limit, 0..=99 (0: none).
    pub user_limit: Option<u32>,
    /// Slowmode in seconds, 0..=21600.
    pub rate_limit_per_user: Option<u32>,
    /// Permission overwrites.
    pub permission_overwrites: Vec<Overwrite>,
}

impl CreateChannel {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| CreateChannel {
            name: e
                .req(
                    o,
                    "name",
                    name_field(CHANNEL_NAME_CHARS_MIN, CHANNEL_NAME_CHARS_MAX),
                )
                .unwrap_or_default(),
            kind: narrow(
                e.opt(o, "type", |e, o, k, v| e.choice(o, k, v, &CHANNEL_TYPES))
                    .unwrap_or(0),
            ),
            topic: e.opt(o, "topic", name_field(0, CHANNEL_TOPIC_CHARS_MAX)),
            position: e.opt(o, "position", int_field(0, POSITION_MAX)).map(narrow),
            parent_id: e.opt(o, "parent_id", snowflake_field),
            nsfw: e.opt(o, "nsfw", bool_field).unwrap_or(false),
            bitrate: e
                .opt(o, "bitrate", int_field(BITRATE_MIN, BITRATE_MAX))
                .map(narrow),
            user_limit: e
                .opt(o, "user_limit", int_field(0, USER_LIMIT_MAX))
                .map(narrow),
            rate_limit_per_user: e
                .opt(
                    o,
                    "rate_limit_per_user",
                    int_field(0, RATE_LIMIT_PER_USER_MAX_S),
                )
                .map(narrow),
            permission_overwrites: e
                .opt(o, "permission_overwrites", overwrites)
                .unwrap_or_default(),
        })
    }
}

/// `PATCH /channels/{c}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModifyChannel {
    /// New name, 1..=100 characters.
    pub name: Option<String>,
    /// New type: only text and announcement convert into each other (the handler checks).
    pub kind: Option<u8>,
    /// New topic (`null` clears).
    pub topic: Patch<String>,
    /// New position (`null`: leave as is).
    pub position: Option<u32>,
    /// Age restricted.
    pub nsfw: Option<bool>,
    /// New slowmode (`null`: off).
    pub rate_limit_per_user: Patch<u32>,
    /// New voice bitrate (`null`: default).
    pub bitrate: Patch<u32>,
    /// New voice user limit (`null`: none).
    pub user_limit: Patch<u32>,
    /// Replaces every overwrite (`null`: removes them all).
    pub permission_overwrites: Patch<Vec<Overwrite>>,
    /// New category (`null`: none).
    pub parent_id: Patch<u64>,
}

impl ModifyChannel {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| ModifyChannel {
            name: e.opt(
                o,
                "name",
                name_field(CHANNEL_NAME_CHARS_MIN, CHANNEL_NAME_CHARS_MAX),
            ),
            kind: e
                .opt(o, "type", |e, o, k, v| e.choice(o, k, v, &CHANNEL_TYPES))
                .map(narrow),
            topic: e.patch(o, "topic", name_field(0, CHANNEL_TOPIC_CHARS_MAX)),
            position: e.opt(o, "position", int_field(0, POSITION_MAX)).map(narrow),
            nsfw: e.opt(o, "nsfw", bool_field),
            rate_limit_per_user: narrow_patch(e.patch(
                o,
                "rate_limit_per_user",
                int_field(0, RATE_LIMIT_PER_USER_MAX_S),
            )),
            bitrate: narrow_patch(e.patch(o, "bitrate", int_field(BITRATE_MIN, BITRATE_MAX))),
            user_limit: narrow_patch(e.patch(o, "user_limit", int_field(0, USER_LIMIT_MAX))),
            permission_overwrites: e.patch(o, "permission_overwrites", overwrites),
            parent_id: e.patch(o, "parent_id", snowflake_field),
        })
    }
}

fn narrow_patch(p: Patch<u64>) -> Patch<u32> {
    match p {
        Patch::Unchanged => Patch::Unchanged,
        Patch::Clear => Patch::Clear,
        Patch::Set(v) => Patch::Set(narrow(v)),
    }
}

/// One entry of `PATCH /guilds/{g}/channels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelPosition {
    /// The channel.
    pub id: u64,
    /// New position (`None`: unchanged).
    pub position: Option<u32>,
    /// Sync the channel's overwrites with its new category.
    pub lock_permissions: bool,
    /// New category (`Clear`: none).
    pub parent_id: Patch<u64>,
}

/// One entry of `PATCH /guilds/{g}/roles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolePosition {
    /// The role.
    pub id: u64,
    /// New position (`None`: unchanged).
    pub position: Option<u32>,
}

fn positions<T>(
    body: &[u8],
    read: impl Fn(&mut FormErrors, &Obj<'_>) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let v = parse_json(body)?;
    let mut errs = FormErrors::default();
    let mut out = Vec::new();
    if let Some(items) = root_array(&v, &mut errs, 1, POSITIONS_MAX) {
        out.reserve(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(t) = root_element(i, item, &mut errs).and_then(|o| read(&mut errs, &o)) {
                out.push(t);
            }
        }
    }
    errs.into_result()?;
    Ok(out)
}

impl ChannelPosition {
    /// Decodes and validates the whole array body (1..=500 entries).
    pub fn parse_list(body: &[u8]) -> Result<Vec<Self>, ApiError> {
        positions(body, |e, o| {
            let id = e.req(o, "id", snowflake_field);
            let position = e.opt(o, "position", int_field(0, POSITION_MAX)).map(narrow);
            let lock_permissions = e.opt(o, "lock_permissions", bool_field).unwrap_or(false);
            let parent_id = e.patch(o, "parent_id", snowflake_field);
            Some(ChannelPosition {
                id: id?,
                position,
                lock_permissions,
                parent_id,
            })
        })
    }
}

impl RolePosition {
    /// Decodes and validates the whole array body (1..=500 entries).
    pub fn parse_list(body: &[u8]) -> Result<Vec<Self>, ApiError> {
        positions(body, |e, o| {
            let id = e.req(o, "id", snowflake_field);
            let position = e.opt(o, "position", int_field(0, POSITION_MAX)).map(narrow);
            Some(RolePosition { id: id?, position })
        })
    }
}

/// `POST /guilds/{g}/roles`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateRole {
    /// Name (default [`ROLE_NAME_DEFAULT`]), at most 100 characters.
    pub name: String,
    /// Permission bits; `None`: the guild's @everyone permissions, as Discord does.
    pub permissions: Option<u64>,
    /// 24-bit RGB color (0: none).
    pub color: u32,
    /// Shown separately in the member list.
    pub hoist: bool,
    /// Anyone may mention it.
    pub mentionable: bool,
}

impl CreateRole {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| CreateRole {
            name: e
                .opt(o, "name", name_field(0, ROLE_NAME_CHARS_MAX))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| ROLE_NAME_DEFAULT.to_owned()),
            permissions: e.opt(o, "permissions", permissions_field),
            color: narrow(e.opt(o, "color", int_field(0, COLOR_MAX)).unwrap_or(0)),
            hoist: e.opt(o, "hoist", bool_field).unwrap_or(false),
            mentionable: e.opt(o, "mentionable", bool_field).unwrap_or(false),
        })
    }
}

/// `PATCH /guilds/{g}/roles/{r}`: every field optional, `null` leaves it alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModifyRole {
    /// New name, 1..=100 characters.
    pub name: Option<String>,
    /// New permission bits.
    pub permissions: Option<u64>,
    /// New color.
    pub color: Option<u32>,
    /// New hoist flag.
    pub hoist: Option<bool>,
    /// New mentionable flag.
    pub mentionable: Option<bool>,
}

impl ModifyRole {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| ModifyRole {
            name: e.opt(o, "name", name_field(1, ROLE_NAME_CHARS_MAX)),
            permissions: e.opt(o, "permissions", permissions_field),
            color: e.opt(o, "color", int_field(0, COLOR_MAX)).map(narrow),
            hoist: e.opt(o, "hoist", bool_field),
            mentionable: e.opt(o, "mentionable", bool_field),
        })
    }
}

/// A nick field: at most 32 characters; `null` and `""` both reset it, as on Discord.
fn nick(e: &mut FormErrors, o: &Obj<'_>) -> Patch<String> {
    match e.patch(o, "nick", name_field(0, NICK_CHARS_MAX)) {
        Patch::Set(n) if n.is_empty() => Patch::Clear,
        p => p,
    }
}

/// `PATCH /guilds/{g}/members/{u}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModifyMember {
    /// New nick (`Clear`: back to the username).
    pub nick: Patch<String>,
    /// The member's whole role list (`Clear`: no roles).
    pub roles: Patch<Vec<u64>>,
    /// Server mute in voice.
    pub mute: Option<bool>,
    /// Server deafen in voice.
    pub deaf: Option<bool>,
    /// Move to this voice channel (`Clear`: disconnect from voice).
    pub channel_id: Patch<u64>,
}

impl ModifyMember {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| ModifyMember {
            nick: nick(e, o),
            roles: e.patch(o, "roles", |e, o, k, v| {
                e.snowflakes(o, k, v, 0, MEMBER_ROLES_MAX)
            }),
            mute: e.opt(o, "mute", bool_field),
            deaf: e.opt(o, "deaf", bool_field),
            channel_id: e.patch(o, "channel_id", snowflake_field),
        })
    }
}

/// `PATCH /guilds/{g}/members/@me`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModifyCurrentMember {
    /// New nick (`Clear`: back to the username).
    pub nick: Patch<String>,
}

impl ModifyCurrentMember {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| ModifyCurrentMember { nick: nick(e, o) })
    }
}

/// `POST /channels/{c}/invites`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateInvite {
    /// Lifetime in seconds, 0..=604800 (0: never expires), default 86400.
    pub max_age: u32,
    /// Uses allowed, 0..=100 (0: unlimited), default 0.
    pub max_uses: u32,
    /// Membership granted only while connected.
    pub temporary: bool,
    /// Always create a new invite instead of reusing a similar one.
    pub unique: bool,
}

impl CreateInvite {
    /// Decodes and validates; an empty body gives the defaults.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| CreateInvite {
            max_age: narrow(
                e.opt(o, "max_age", int_field(0, INVITE_MAX_AGE_MAX_S))
                    .unwrap_or(INVITE_MAX_AGE_DEFAULT_S),
            ),
            max_uses: narrow(
                e.opt(o, "max_uses", int_field(0, INVITE_MAX_USES_MAX))
                    .unwrap_or(0),
            ),
            temporary: e.opt(o, "temporary", bool_field).unwrap_or(false),
            unique: e.opt(o, "unique", bool_field).unwrap_or(false),
        })
    }
}

/// `PUT /guilds/{g}/bans/{u}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateBan {
    /// Delete the user's messages of the last this many seconds, 0..=604800.
    pub delete_message_seconds: u32,
}

impl CreateBan {
    /// Decodes and validates; an empty body gives the defaults. The legacy
    /// `delete_message_days` (0..=7) is accepted when `delete_message_seconds` is absent.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| {
            let seconds = e.opt(
                o,
                "delete_message_seconds",
                int_field(0, BAN_DELETE_SECONDS_MAX),
            );
            let days = e.opt(o, "delete_message_days", int_field(0, BAN_DELETE_DAYS_MAX));
            CreateBan {
                delete_message_seconds: narrow(seconds.or(days.map(|d| d * 86_400)).unwrap_or(0)),
            }
        })
    }
}

/// `POST /channels/{c}/messages/{m}/ack`: mark the channel read up to the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// Set by a user marking unread by hand (the read state may move backwards).
    pub manual: bool,
    /// With `manual`: the mention count to show.
    pub mention_count: Option<u32>,
}

impl Ack {
    /// Decodes and validates; an empty body (or `{"token": null}`, what clients send) is fine.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| Ack {
            manual: e.opt(o, "manual", bool_field).unwrap_or(false),
            mention_count: e
                .opt(o, "mention_count", int_field(0, u64::from(u32::MAX)))
                .map(narrow),
        })
    }
}
