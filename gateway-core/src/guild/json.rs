//! API v10 JSON shapes of the guild model: GUILD_CREATE and the guild object, channels,
//! roles, members, users, invites. Ids and permission bitfields are strings, as Discord sends
//! them (JavaScript clients cannot hold 64-bit integers); every non-optional field of the
//! documented objects is present, because stricter libraries than discord.py fail without.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::Guild;
use super::limits::MEMBERS_MAX;
use super::model::{Channel, ChannelKind, Invite, Member, Overwrite, Role, UserInfo};
use super::time::iso8601;
use crate::limits::LARGE_THRESHOLD_DEFAULT;
use serde_json::{Value, json};

pub use super::message::message_json;

/// Video users per voice channel announced in the guild object.
const MAX_VIDEO_CHANNEL_USERS: u32 = 25;
/// Video users per stage announced in the guild object.
const MAX_STAGE_VIDEO_CHANNEL_USERS: u32 = 50;
/// Locale announced for every guild.
const PREFERRED_LOCALE: &str = "en-US";

/// What GUILD_CREATE is built for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuildCreateOptions<'a> {
    /// The receiving user: their `joined_at`, and the only member listed in a large guild.
    pub user_id: Option<u64>,
    /// Identify's `large_threshold`: above it the guild is `large` and members are not listed.
    pub large_threshold: u32,
    /// Presence objects to include, as the presence service built them.
    pub presences: &'a [Value],
    /// Voice state objects to include, as the voice service built them.
    pub voice_states: &'a [Value],
}

impl Default for GuildCreateOptions<'_> {
    fn default() -> Self {
        Self {
            user_id: None,
            large_threshold: LARGE_THRESHOLD_DEFAULT,
            presences: &[],
            voice_states: &[],
        }
    }
}

impl<'a> GuildCreateOptions<'a> {
    /// For `user_id` with a large threshold and nothing else.
    pub fn for_user(user_id: u64, large_threshold: u32) -> Self {
        Self {
            user_id: Some(user_id),
            large_threshold,
            ..Self::default()
        }
    }
}

fn id_str(id: u64) -> Value {
    Value::String(id.to_string())
}

fn opt_id(id: Option<u64>) -> Value {
    id.map_or(Value::Null, id_str)
}

/// A user object.
pub fn user_json(u: &UserInfo) -> Value {
    json!({
        "id": id_str(u.id),
        "username": u.username,
        "discriminator": u.discriminator,
        "global_name": u.global_name,
        "avatar": u.avatar,
        "bot": u.bot,
        "public_flags": 0,
        "avatar_decoration_data": null,
    })
}

/// A role object (no `tags`: none of our roles belong to a bot, booster or subscription).
pub fn role_json(r: &Role) -> Value {
    json!({
        "id": id_str(r.id),
        "name": r.name,
        "color": r.color,
        "colors": {
            "primary_color": r.color,
            "secondary_color": null,
            "tertiary_color": null,
        },
        "hoist": r.hoist,
        "icon": null,
        "unicode_emoji": null,
        "position": r.position,
        "permissions": r.permissions.to_string(),
        "managed": r.managed,
        "mentionable": r.mentionable,
        "flags": r.flags,
    })
}

/// A permission overwrite object.
pub fn overwrite_json(o: &Overwrite) -> Value {
    json!({
        "id": id_str(o.id),
        "type": o.kind as u8,
        "allow": o.allow.to_string(),
        "deny": o.deny.to_string(),
    })
}

/// A guild channel object.
pub fn channel_json(guild_id: u64, c: &Channel) -> Value {
    let mut v = json!({
        "id": id_str(c.id),
        "type": c.kind.code(),
        "guild_id": id_str(guild_id),
        "position": c.position,
        "permission_overwrites": c.overwrites.iter().map(overwrite_json).collect::<Vec<_>>(),
        "name": c.name,
        "nsfw": c.nsfw,
        "parent_id": opt_id(c.parent_id),
        "flags": 0,
    });
    let Some(obj) = v.as_object_mut() else {
        return v;
    };
    match c.kind {
        ChannelKind::Text | ChannelKind::Announcement => {
            obj.insert("topic".into(), json!(c.topic));
            obj.insert("last_message_id".into(), opt_id(c.last_message_id));
            obj.insert("rate_limit_per_user".into(), json!(c.rate_limit_per_user));
            obj.insert("default_thread_rate_limit_per_user".into(), json!(0));
        }
        ChannelKind::Voice => {
            obj.insert("bitrate".into(), json!(c.bitrate));
            obj.insert("user_limit".into(), json!(c.user_limit));
            obj.insert("rtc_region".into(), Value::Null);
            obj.insert("last_message_id".into(), opt_id(c.last_message_id));
            obj.insert("rate_limit_per_user".into(), json!(c.rate_limit_per_user));
        }
        ChannelKind::Category => {}
    }
    v
}

/// A guild member object (with `user`).
pub fn member_json(m: &Member) -> Value {
    let mut v = partial_member_json(m);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("user".into(), user_json(&m.user));
    }
    v
}

/// A member object without `user`, as MESSAGE_CREATE's `member` carries it.
pub fn partial_member_json(m: &Member) -> Value {
    json!({
        "nick": m.nick,
        "avatar": null,
        "banner": null,
        "roles": m.roles.iter().map(|&r| id_str(r)).collect::<Vec<_>>(),
        "joined_at": iso8601(m.joined_at_ms),
        "premium_since": null,
        "deaf": m.deaf,
        "mute": m.mute,
        "flags": m.flags,
        "pending": false,
        "communication_disabled_until": null,
    })
}

/// The `d` of INVITE_CREATE.
pub fn invite_event_json(guild: &Guild, i: &Invite) -> Value {
    let mut v = json!({
        "channel_id": id_str(i.channel_id),
        "code": i.code,
        "created_at": iso8601(i.created_at_ms),
        "guild_id": id_str(guild.id),
        "max_age": i.max_age_s,
        "max_uses": i.max_uses,
        "temporary": i.temporary,
        "uses": i.uses,
        "expires_at": i.expires_at_ms().map(iso8601),
    });
    if let (Some(obj), Some(m)) = (
        v.as_object_mut(),
        i.inviter_id.and_then(|u| guild.members.get(&u)),
    ) {
        obj.insert("inviter".into(), user_json(&m.user));
    }
    v
}

/// An invite object with metadata (`GET /invites/{code}`, `GET /channels/{id}/invites`).
pub fn invite_json(guild: &Guild, i: &Invite) -> Value {
    let channel = guild.channels.get(&i.channel_id);
    let mut v = json!({
        "type": 0,
        "code": i.code,
        "guild": {
            "id": id_str(guild.id),
            "name": guild.name,
            "splash": null,
            "banner": null,
            "description": guild.description,
            "icon": guild.icon,
            "features": [],
            "verification_level": guild.verification_level,
            "vanity_url_code": null,
            "nsfw_level": 0,
            "premium_subscription_count": 0,
        },
        "channel": channel.map_or(Value::Null, |c| json!({
            "id": id_str(c.id),
            "type": c.kind.code(),
            "name": c.name,
        })),
        "expires_at": i.expires_at_ms().map(iso8601),
        "uses": i.uses,
        "max_uses": i.max_uses,
        "max_age": i.max_age_s,
        "temporary": i.temporary,
        "created_at": iso8601(i.created_at_ms),
    });
    if let (Some(obj), Some(m)) = (
        v.as_object_mut(),
        i.inviter_id.and_then(|u| guild.members.get(&u)),
    ) {
        obj.insert("inviter".into(), user_json(&m.user));
    }
    v
}

impl Guild {
    /// The guild object (GUILD_UPDATE's `d`, `GET /guilds/{id}`).
    pub fn to_guild_json(&self) -> Value {
        json!({
            "id": id_str(self.id),
            "name": self.name,
            "icon": self.icon,
            "icon_hash": self.icon,
            "splash": null,
            "discovery_splash": null,
            "owner_id": id_str(self.owner_id),
            "afk_channel_id": opt_id(self.afk_channel_id),
            "afk_timeout": self.afk_timeout_s,
            "widget_enabled": false,
            "widget_channel_id": null,
            "verification_level": self.verification_level,
            "default_message_notifications": self.default_message_notifications,
            "explicit_content_filter": self.explicit_content_filter,
            "roles": self.roles.values().map(role_json).collect::<Vec<_>>(),
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": null,
            "system_channel_id": opt_id(self.system_channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "max_presences": null,
            "max_members": MEMBERS_MAX,
            "vanity_url_code": null,
            "description": self.description,
            "banner": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": PREFERRED_LOCALE,
            "public_updates_channel_id": null,
            "max_video_channel_users": MAX_VIDEO_CHANNEL_USERS,
            "max_stage_video_channel_users": MAX_STAGE_VIDEO_CHANNEL_USERS,
            "nsfw_level": 0,
            "nsfw": false,
            "stickers": [],
            "premium_progress_bar_enabled": false,
            "safety_alerts_channel_id": null,
            "incidents_data": null,
        })
    }

    /// GUILD_CREATE's `d`: the guild object plus `joined_at`, `large`, `unavailable`,
    /// `member_count`, `voice_states`, `members`, `channels`, `threads`, `presences`,
    /// `stage_instances`, `guild_scheduled_events`, `soundboard_sounds`. Above the large
    /// threshold only the receiving user's own member is listed (clients ask for the rest
    /// with op 8 or lazy member lists).
    pub fn to_guild_create(&self, opts: &GuildCreateOptions<'_>) -> Value {
        let count = self.members.len();
        let large = count > opts.large_threshold as usize;
        let me = opts.user_id.and_then(|u| self.members.get(&u));
        let members: Vec<Value> = if large {
            me.map(member_json).into_iter().collect()
        } else {
            self.members.values().map(member_json).collect()
        };
        let joined_at = me.map_or(self.joined_at_ms, |m| m.joined_at_ms);
        let mut v = self.to_guild_json();
        if let Some(obj) = v.as_object_mut() {
            let extras = [
                ("joined_at", json!(iso8601(joined_at))),
                ("large", json!(large)),
                ("unavailable", json!(false)),
                ("member_count", json!(count)),
                ("voice_states", json!(opts.voice_states)),
                ("members", Value::Array(members)),
                (
                    "channels",
                    Value::Array(
                        self.channels
                            .values()
                            .map(|c| channel_json(self.id, c))
                            .collect(),
                    ),
                ),
                ("threads", json!([])),
                ("presences", json!(opts.presences)),
                ("stage_instances", json!([])),
                ("guild_scheduled_events", json!([])),
                ("soundboard_sounds", json!([])),
                ("lazy", json!(true)),
            ];
            for (k, val) in extras {
                obj.insert(k.into(), val);
            }
        }
        v
    }

    /// A channel object, if the channel exists.
    pub fn channel_json(&self, channel_id: u64) -> Option<Value> {
        self.channels
            .get(&channel_id)
            .map(|c| channel_json(self.id, c))
    }

    /// A member object (no `guild_id`, as GUILD_MEMBERS_CHUNK and REST want it), if the user
    /// is a member.
    pub fn member_json(&self, user_id: u64) -> Option<Value> {
        self.members.get(&user_id).map(member_json)
    }
}
