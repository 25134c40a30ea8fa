//! The route table and the router: `(method, path)` to a typed [`Route`] with parsed ids.
//!
//! # Paths
//! Discord API routes are served under `/api/v10` (what discord.py, serenity, twilight and
//! discord.js use), `/api/v9` (same shapes: v9 and v10 differ in gateway intents, not in the REST
//! objects we serve) and `/api` with no version (taken as v10, as the unversioned Discord API
//! served its default version). `/api/vN` for any other number answers 400 code 50041, as Discord
//! does for retired versions. The control API for integrators lives outside the Discord namespace,
//! under `/control`. One trailing slash is ignored; empty segments (`//`) match nothing. Every
//! segment is percent-decoded before matching, so `%40me` is `@me` and an emoji arrives decoded.
//!
//! # Matching
//! A path matches a template when the literal segments are equal and every `{param}` segment is
//! non-empty. Among the templates that match the path and the method, the one with more literal
//! segments wins (`/guilds/{g}/members/@me` over `/guilds/{g}/members/{user_id}` for PATCH).
//! Then the parameters are parsed: an id that is not a snowflake answers 400 code 50035 with
//! `NUMBER_TYPE_COERCE` under the parameter's name (as Discord does for `GET
//! /guilds/{g}/members/@me`), an unparseable reaction emoji 400 code 10014, a malformed invite code
//! 404 code 10006. A path that matches no template is 404; one that matches only templates of
//! other methods is 405.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::borrow::Cow;

use super::error::ApiError;
use super::form::{FormErrors, parse_snowflake_str};
use super::limits::{
    EMOJI_BYTES_MAX, EMOJI_NAME_BYTES_MAX, INVITE_CODE_BYTES_MAX, PATH_PARAMS_MAX,
    PATH_SEGMENTS_MAX,
};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// No credentials (`GET /gateway`, as on Discord).
    None,
    /// A user or bot token (`Authorization: Bot <token>` or the bare token).
    Token,
    /// The control-plane secret (`Authorization: Bearer <secret>`), see [`super::authenticate_control`].
    Control,
}

/// A rate limit bucket: routes sharing one share a limit (per user and major parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// `GET /gateway`, `GET /gateway/bot`.
    Gateway,
    /// Users and the current application.
    Users,
    /// Reading a guild.
    GuildRead,
    /// Changing or deleting a guild.
    GuildWrite,
    /// Creating a guild.
    GuildCreate,
    /// Reading channels.
    ChannelRead,
    /// Creating, changing, reordering and deleting channels.
    ChannelWrite,
    /// Reading roles.
    RoleRead,
    /// Creating, changing, reordering and deleting roles.
    RoleWrite,
    /// Reading and searching members.
    MemberRead,
    /// Changing members, their roles, and kicking them.
    MemberWrite,
    /// Bans.
    Bans,
    /// Invites (create, list, get, delete).
    Invites,
    /// Joining through an invite.
    InviteJoin,
    /// Reading messages and reactions.
    MessageRead,
    /// Sending messages.
    MessageCreate,
    /// Editing messages.
    MessageEdit,
    /// Deleting one message.
    MessageDelete,
    /// Bulk deletes.
    BulkDelete,
    /// Pins.
    Pins,
    /// Adding and removing reactions.
    Reactions,
    /// Typing indicators.
    Typing,
    /// Read-state acks.
    Ack,
    /// The control API: not rate limited (the control plane is trusted).
    Control,
}

impl Bucket {
    /// Every bucket, in declaration order (`Bucket::ALL[b as usize] == b`).
    pub const ALL: [Bucket; 24] = [
        Bucket::Gateway,
        Bucket::Users,
        Bucket::GuildRead,
        Bucket::GuildWrite,
        Bucket::GuildCreate,
        Bucket::ChannelRead,
        Bucket::ChannelWrite,
        Bucket::RoleRead,
        Bucket::RoleWrite,
        Bucket::MemberRead,
        Bucket::MemberWrite,
        Bucket::Bans,
        Bucket::Invites,
        Bucket::InviteJoin,
        Bucket::MessageRead,
        Bucket::MessageCreate,
        Bucket::MessageEdit,
        Bucket::MessageDelete,
        Bucket::BulkDelete,
        Bucket::Pins,
        Bucket::Reactions,
        Bucket::Typing,
        Bucket::Ack,
        Bucket::Control,
    ];
    /// How many buckets there are.
    pub const COUNT: usize = Bucket::ALL.len();

    /// The `X-RateLimit-Bucket` value: opaque to clients, stable across releases.
    pub fn id(self) -> &'static str {
        match self {
            Bucket::Gateway => "gateway",
            Bucket::Users => "users",
            Bucket::GuildRead => "guilds.read",
            Bucket::GuildWrite => "guilds.write",
            Bucket::GuildCreate => "guilds.create",
            Bucket::ChannelRead => "channels.read",
            Bucket::ChannelWrite => "channels.write",
            Bucket::RoleRead => "roles.read",
            Bucket::RoleWrite => "roles.write",
            Bucket::MemberRead => "members.read",
            Bucket::MemberWrite => "members.write",
            Bucket::Bans => "bans",
            Bucket::Invites => "invites",
            Bucket::InviteJoin => "invites.join",
            Bucket::MessageRead => "messages.read",
            Bucket::MessageCreate => "messages.create",
            Bucket::MessageEdit => "messages.edit",
            Bucket::MessageDelete => "messages.delete",
            Bucket::BulkDelete => "messages.bulk_delete",
            Bucket::Pins => "pins",
            Bucket::Reactions => "reactions",
            Bucket::Typing => "typing",
            Bucket::Ack => "ack",
            Bucket::Control => "control",
        }
    }
}

// A const block cannot use `get`; the loop bound keeps the index in range.
#[allow(clippy::indexing_slicing)]
const _: () = {
    let mut i = 0;
    while i < Bucket::COUNT {
        assert!(Bucket::ALL[i] as usize == i);
        i += 1;
    }
};

/// One row of the route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// Which route.
    pub kind: RouteKind,
    /// HTTP method.
    pub method: &'static str,
    /// Path template with `{param}` segments: relative to `/api/v10` for Discord routes, absolute
    /// (`/control/...`) for the control API.
    pub template: &'static str,
    /// Rate limit bucket.
    pub bucket: Bucket,
    /// Operation name (the OpenAPI `operationId`).
    pub name: &'static str,
    /// Who may call it.
    pub auth: Auth,
}

impl RouteSpec {
    /// Whether this is a control API route (outside `/api`).
    pub fn is_control(&self) -> bool {
        self.auth == Auth::Control
    }
}

/// A reaction emoji as it appears in a reaction path segment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReactionEmoji {
    /// A Unicode emoji (one or more scalar values, e.g. with skin tone or ZWJ sequences).
    Unicode(String),
    /// A guild emoji, written `name:id` (an `a:` prefix for animated ones is accepted and dropped).
    Custom {
        /// The emoji's name.
        name: String,
        /// The emoji's id.
        id: u64,
    },
}

impl ReactionEmoji {
    /// Parses a decoded path segment; anything that cannot be an emoji is 400 code 10014.
    ///
    /// Unicode emoji are checked by shape, not against the Unicode emoji list: at least one
    /// non-ASCII character, and ASCII only for keycap bases (`0-9`, `#`, `*`). Whether the emoji
    /// exists is the handler's question.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        if s.is_empty() || s.len() > EMOJI_BYTES_MAX {
            return Err(ApiError::unknown_emoji());
        }
        if let Some((name, id)) = s.rsplit_once(':') {
            let name = name.strip_prefix("a:").unwrap_or(name);
            let name_ok = !name.is_empty()
                && name.len() <= EMOJI_NAME_BYTES_MAX
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            let id = parse_snowflake_str(id).ok_or_else(ApiError::unknown_emoji)?;
            if !name_ok {
                return Err(ApiError::unknown_emoji());
            }
            return Ok(ReactionEmoji::Custom {
                name: name.to_owned(),
                id,
            });
        }
        let ascii_ok = s
            .bytes()
            .filter(u8::is_ascii)
            .all(|b| b.is_ascii_digit() || b == b'#' || b == b'*');
        let has_non_ascii = !s.is_ascii();
        let no_controls = !s.chars().any(char::is_control);
        if ascii_ok && has_non_ascii && no_controls {
            Ok(ReactionEmoji::Unicode(s.to_owned()))
        } else {
            Err(ApiError::unknown_emoji())
        }
    }

    /// The path segment form (`name:id` or the Unicode text), not percent-encoded.
    pub fn as_segment(&self) -> String {
        match self {
            ReactionEmoji::Unicode(s) => s.clone(),
            ReactionEmoji::Custom { name, id } => format!("{name}:{id}"),
        }
    }
}

/// Checks an invite code path segment: 1..=32 of `[A-Za-z0-9_-]`, else 404 code 10006.
pub fn parse_invite_code(s: &str) -> Result<String, ApiError> {
    let ok = !s.is_empty()
        && s.len() <= INVITE_CODE_BYTES_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ApiError::unknown_invite())
    }
}

/// A path parameter type: how a segment becomes a typed value and back.
trait PathParam: Sized {
    /// Parses `seg`; a refusal goes into `errs` (snowflakes) or is returned (emoji, invite).
    fn from_segment(
        name: &'static str,
        seg: &str,
        errs: &mut FormErrors,
    ) -> Result<Option<Self>, ApiError>;
    /// The segment text (not percent-encoded).
    fn render(&self) -> String;
}

impl PathParam for u64 {
    fn from_segment(
        name: &'static str,
        seg: &str,
        errs: &mut FormErrors,
    ) -> Result<Option<Self>, ApiError> {
        let id = parse_snowflake_str(seg);
        if id.is_none() {
            errs.not_snowflake(&[name], seg);
        }
        Ok(id)
    }

    fn render(&self) -> String {
        self.to_string()
    }
}

impl PathParam for ReactionEmoji {
    fn from_segment(
        _name: &'static str,
        seg: &str,
        _errs: &mut FormErrors,
    ) -> Result<Option<Self>, ApiError> {
        ReactionEmoji::parse(seg).map(Some)
    }

    fn render(&self) -> String {
        self.as_segment()
    }
}

/// Invite codes are the only `String` path parameter.
impl PathParam for String {
    fn from_segment(
        _name: &'static str,
        seg: &str,
        _errs: &mut FormErrors,
    ) -> Result<Option<Self>, ApiError> {
        parse_invite_code(seg).map(Some)
    }

    fn render(&self) -> String {
        self.clone()
    }
}

/// The parameters captured by a template match, by name.
struct Captured<'a> {
    params: [(&'static str, &'a str); PATH_PARAMS_MAX],
    len: usize,
}

impl<'a> Captured<'a> {
    fn get(&self, name: &str) -> &'a str {
        self.params
            .iter()
            .take(self.len)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or("")
    }
}

macro_rules! routes {
    ($(
        $(#[doc = $doc:expr])*
        $kind:ident { $($field:ident : $fty:ty),* }
            = $method:literal $template:literal, $bucket:ident, $name:literal, $auth:ident;
    )*) => {
        /// A matched route with its parsed path parameters.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Route {
            $(
                $(#[doc = $doc])*
                $kind {
                    $(
                        #[doc = concat!("Path parameter `", stringify!($field), "`.")]
                        $field: $fty,
                    )*
                },
            )*
        }

        /// Which route, without its parameters (one per row of [`ROUTES`], in order).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RouteKind {
            $(
                $(#[doc = $doc])*
                $kind,
            )*
        }

        /// The route table: every route with its method, template, bucket, name and auth. The
        /// router matches against it, the OpenAPI test iterates it.
        pub const ROUTES: &[RouteSpec] = &[
            $(
                RouteSpec {
                    kind: RouteKind::$kind,
                    method: $method,
                    template: $template,
                    bucket: Bucket::$bucket,
                    name: $name,
                    auth: Auth::$auth,
                },
            )*
        ];

        impl Route {
            /// Which route this is.
            pub fn kind(&self) -> RouteKind {
                match self {
                    $( Route::$kind { .. } => RouteKind::$kind, )*
                }
            }

            /// The concrete path (relative to `/api/v10` for Discord routes), not
            /// percent-encoded: for logs and tests.
            pub fn path(&self) -> String {
                match self {
                    $(
                        #[allow(unused_mut)]
                        Route::$kind { $($field),* } => {
                            let mut s = String::from($template);
                            $(
                                s = s.replace(
                                    concat!("{", stringify!($field), "}"),
                                    &PathParam::render($field),
                                );
                            )*
                            s
                        }
                    )*
                }
            }

            fn build(kind: RouteKind, cap: &Captured<'_>) -> Result<Route, ApiError> {
                let mut errs = FormErrors::default();
                match kind {
                    $(
                        RouteKind::$kind => {
                            $(
                                let $field = <$fty as PathParam>::from_segment(
                                    stringify!($field),
                                    cap.get(stringify!($field)),
                                    &mut errs,
                                )?;
                            )*
                            errs.into_result()?;
                            Ok(Route::$kind {
                                $( $field: $field.ok_or_else(ApiError::not_found)?, )*
                            })
                        }
                    )*
                }
            }
        }
    };
}

routes! {
    /// `GET /gateway`: the WebSocket URL.
    GetGateway {} = "GET" "/gateway", Gateway, "getGateway", None;
    /// `GET /gateway/bot`: URL, recommended shards and session start limits.
    GetGatewayBot {} = "GET" "/gateway/bot", Gateway, "getGatewayBot", Token;
    /// `GET /users/@me`.
    GetCurrentUser {} = "GET" "/users/@me", Users, "getCurrentUser", Token;
    /// `GET /users/{user_id}`.
    GetUser { user_id: u64 } = "GET" "/users/{user_id}", Users, "getUser", Token;
    /// `GET /oauth2/applications/@me`: the bot's application (discord.py asks at login).
    GetCurrentApplication {} = "GET" "/oauth2/applications/@me", Users,
        "getCurrentApplication", Token;
    /// `POST /guilds`.
    CreateGuild {} = "POST" "/guilds", GuildCreate, "createGuild", Token;
    /// `GET /guilds/{guild_id}`.
    GetGuild { guild_id: u64 } = "GET" "/guilds/{guild_id}", GuildRead, "getGuild", Token;
    /// `PATCH /guilds/{guild_id}`.
    ModifyGuild { guild_id: u64 } = "PATCH" "/guilds/{guild_id}", GuildWrite, "modifyGuild",
        Token;
    /// `DELETE /guilds/{guild_id}` (owner only).
    DeleteGuild { guild_id: u64 } = "DELETE" "/guilds/{guild_id}", GuildWrite, "deleteGuild",
        Token;
    /// `GET /guilds/{guild_id}/channels`.
    ListGuildChannels { guild_id: u64 } = "GET" "/guilds/{guild_id}/channels", ChannelRead,
        "listGuildChannels", Token;
    /// `POST /guilds/{guild_id}/channels`.
    CreateGuildChannel { guild_id: u64 } = "POST" "/guilds/{guild_id}/channels", ChannelWrite,
        "createGuildChannel", Token;
    /// `PATCH /guilds/{guild_id}/channels`: reorder channels.
    ModifyChannelPositions { guild_id: u64 } = "PATCH" "/guilds/{guild_id}/channels",
        ChannelWrite, "modifyGuildChannelPositions", Token;
    /// `GET /channels/{channel_id}`.
    GetChannel { channel_id: u64 } = "GET" "/channels/{channel_id}", ChannelRead, "getChannel",
        Token;
    /// `PATCH /channels/{channel_id}`.
    ModifyChannel { channel_id: u64 } = "PATCH" "/channels/{channel_id}", ChannelWrite,
        "modifyChannel", Token;
    /// `DELETE /channels/{channel_id}`.
    DeleteChannel { channel_id: u64 } = "DELETE" "/channels/{channel_id}", ChannelWrite,
        "deleteChannel", Token;
    /// `GET /guilds/{guild_id}/roles`.
    ListRoles { guild_id: u64 } = "GET" "/guilds/{guild_id}/roles", RoleRead, "listGuildRoles",
        Token;
    /// `POST /guilds/{guild_id}/roles`.
    CreateRole { guild_id: u64 } = "POST" "/guilds/{guild_id}/roles", RoleWrite,
        "createGuildRole", Token;
    /// `PATCH /guilds/{guild_id}/roles`: reorder roles.
    ModifyRolePositions { guild_id: u64 } = "PATCH" "/guilds/{guild_id}/roles", RoleWrite,
        "modifyGuildRolePositions", Token;
    /// `PATCH /guilds/{guild_id}/roles/{role_id}`.
    ModifyRole { guild_id: u64, role_id: u64 } = "PATCH" "/guilds/{guild_id}/roles/{role_id}",
        RoleWrite, "modifyGuildRole", Token;
    /// `DELETE /guilds/{guild_id}/roles/{role_id}`.
    DeleteRole { guild_id: u64, role_id: u64 } = "DELETE" "/guilds/{guild_id}/roles/{role_id}",
        RoleWrite, "deleteGuildRole", Token;
    /// `GET /guilds/{guild_id}/members` (`limit`, `after`).
    ListMembers { guild_id: u64 } = "GET" "/guilds/{guild_id}/members", MemberRead,
        "listGuildMembers", Token;
    /// `GET /guilds/{guild_id}/members/search` (`query`, `limit`).
    SearchMembers { guild_id: u64 } = "GET" "/guilds/{guild_id}/members/search", MemberRead,
        "searchGuildMembers", Token;
    /// `GET /guilds/{guild_id}/members/{user_id}`.
    GetMember { guild_id: u64, user_id: u64 } = "GET" "/guilds/{guild_id}/members/{user_id}",
        MemberRead, "getGuildMember", Token;
    /// `PATCH /guilds/{guild_id}/members/{user_id}`.
    ModifyMember { guild_id: u64, user_id: u64 } = "PATCH"
        "/guilds/{guild_id}/members/{user_id}", MemberWrite, "modifyGuildMember", Token;
    /// `DELETE /guilds/{guild_id}/members/{user_id}`: kick.
    RemoveMember { guild_id: u64, user_id: u64 } = "DELETE"
        "/guilds/{guild_id}/members/{user_id}", MemberWrite, "removeGuildMember", Token;
    /// `PATCH /guilds/{guild_id}/members/@me`: the caller's own nick.
    ModifyCurrentMember { guild_id: u64 } = "PATCH" "/guilds/{guild_id}/members/@me",
        MemberWrite, "modifyCurrentMember", Token;
    /// `PUT /guilds/{guild_id}/members/{user_id}/roles/{role_id}`.
    AddMemberRole { guild_id: u64, user_id: u64, role_id: u64 } = "PUT"
        "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", MemberWrite,
        "addGuildMemberRole", Token;
    /// `DELETE /guilds/{guild_id}/members/{user_id}/roles/{role_id}`.
    RemoveMemberRole { guild_id: u64, user_id: u64, role_id: u64 } = "DELETE"
        "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", MemberWrite,
        "removeGuildMemberRole", Token;
    /// `GET /guilds/{guild_id}/bans` (`limit`, `before`, `after`).
    ListBans { guild_id: u64 } = "GET" "/guilds/{guild_id}/bans", Bans, "listGuildBans", Token;
    /// `PUT /guilds/{guild_id}/bans/{user_id}`.
    CreateBan { guild_id: u64, user_id: u64 } = "PUT" "/guilds/{guild_id}/bans/{user_id}", Bans,
        "createGuildBan", Token;
    /// `DELETE /guilds/{guild_id}/bans/{user_id}`.
    RemoveBan { guild_id: u64, user_id: u64 } = "DELETE" "/guilds/{guild_id}/bans/{user_id}",
        Bans, "removeGuildBan", Token;
    /// `POST /channels/{channel_id}/invites`.
    CreateInvite { channel_id: u64 } = "POST" "/channels/{channel_id}/invites", Invites,
        "createChannelInvite", Token;
    /// `GET /channels/{channel_id}/invites`.
    ListChannelInvites { channel_id: u64 } = "GET" "/channels/{channel_id}/invites", Invites,
        "listChannelInvites", Token;
    /// `GET /invites/{invite_code}` (`with_counts`).
    GetInvite { invite_code: String } = "GET" "/invites/{invite_code}", Invites, "getInvite",
        Token;
    /// `DELETE /invites/{invite_code}`.
    DeleteInvite { invite_code: String } = "DELETE" "/invites/{invite_code}", Invites,
        "deleteInvite", Token;
    /// `POST /invites/{invite_code}`: join the guild.
    JoinInvite { invite_code: String } = "POST" "/invites/{invite_code}", InviteJoin,
        "acceptInvite", Token;
    /// `GET /channels/{channel_id}/messages` (`before`/`after`/`around`, `limit`).
    ListMessages { channel_id: u64 } = "GET" "/channels/{channel_id}/messages", MessageRead,
        "listMessages", Token;
    /// `POST /channels/{channel_id}/messages`.
    CreateMessage { channel_id: u64 } = "POST" "/channels/{channel_id}/messages", MessageCreate,
        "createMessage", Token;
    /// `GET /channels/{channel_id}/messages/{message_id}`.
    GetMessage { channel_id: u64, message_id: u64 } = "GET"
        "/channels/{channel_id}/messages/{message_id}", MessageRead, "getMessage", Token;
    /// `PATCH /channels/{channel_id}/messages/{message_id}`.
    EditMessage { channel_id: u64, message_id: u64 } = "PATCH"
        "/channels/{channel_id}/messages/{message_id}", MessageEdit, "editMessage", Token;
    /// `DELETE /channels/{channel_id}/messages/{message_id}`.
    DeleteMessage { channel_id: u64, message_id: u64 } = "DELETE"
        "/channels/{channel_id}/messages/{message_id}", MessageDelete, "deleteMessage", Token;
    /// `POST /channels/{channel_id}/messages/bulk-delete`.
    BulkDeleteMessages { channel_id: u64 } = "POST"
        "/channels/{channel_id}/messages/bulk-delete", BulkDelete, "bulkDeleteMessages", Token;
    /// `GET /channels/{channel_id}/pins`.
    ListPins { channel_id: u64 } = "GET" "/channels/{channel_id}/pins", Pins,
        "listPinnedMessages", Token;
    /// `PUT /channels/{channel_id}/pins/{message_id}`.
    PinMessage { channel_id: u64, message_id: u64 } = "PUT"
        "/channels/{channel_id}/pins/{message_id}", Pins, "pinMessage", Token;
    /// `DELETE /channels/{channel_id}/pins/{message_id}`.
    UnpinMessage { channel_id: u64, message_id: u64 } = "DELETE"
        "/channels/{channel_id}/pins/{message_id}", Pins, "unpinMessage", Token;
    /// `PUT .../reactions/{emoji}/@me`.
    AddOwnReaction { channel_id: u64, message_id: u64, emoji: ReactionEmoji } = "PUT"
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", Reactions,
        "addOwnReaction", Token;
    /// `DELETE .../reactions/{emoji}/@me`.
    RemoveOwnReaction { channel_id: u64, message_id: u64, emoji: ReactionEmoji } = "DELETE"
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", Reactions,
        "removeOwnReaction", Token;
    /// `DELETE .../reactions/{emoji}/{user_id}`.
    RemoveUserReaction { channel_id: u64, message_id: u64, emoji: ReactionEmoji, user_id: u64 }
        = "DELETE" "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}",
        Reactions, "removeUserReaction", Token;
    /// `GET .../reactions/{emoji}` (`after`, `limit`, `type`).
    ListReactions { channel_id: u64, message_id: u64, emoji: ReactionEmoji } = "GET"
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", MessageRead,
        "listReactions", Token;
    /// `DELETE .../reactions/{emoji}`: every reaction with that emoji.
    RemoveEmojiReactions { channel_id: u64, message_id: u64, emoji: ReactionEmoji } = "DELETE"
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", Reactions,
        "removeEmojiReactions", Token;
    /// `DELETE .../reactions`: every reaction on the message.
    RemoveAllReactions { channel_id: u64, message_id: u64 } = "DELETE"
        "/channels/{channel_id}/messages/{message_id}/reactions", Reactions,
        "removeAllReactions", Token;
    /// `POST /channels/{channel_id}/typing`.
    TriggerTyping { channel_id: u64 } = "POST" "/channels/{channel_id}/typing", Typing,
        "triggerTypingIndicator", Token;
    /// `POST /channels/{channel_id}/messages/{message_id}/ack`: read state.
    AckMessage { channel_id: u64, message_id: u64 } = "POST"
        "/channels/{channel_id}/messages/{message_id}/ack", Ack, "ackMessage", Token;
    /// `POST /control/users`: create a user, answer it with a token.
    ControlCreateUser {} = "POST" "/control/users", Control, "controlCreateUser", Control;
    /// `POST /control/applications`: create a bot user and its application, with a token.
    ControlCreateApplication {} = "POST" "/control/applications", Control,
        "controlCreateApplication", Control;
    /// `POST /control/guilds`: create a guild owned by an existing user.
    ControlCreateGuild {} = "POST" "/control/guilds", Control, "controlCreateGuild", Control;
    /// `POST /control/guilds/{guild_id}/members`: add a user to a guild without an invite.
    ControlAddGuildMember { guild_id: u64 } = "POST" "/control/guilds/{guild_id}/members",
        Control, "controlAddGuildMember", Control;
}

// `RouteKind::spec` indexes ROUTES by discriminant; the macro writes both in the same order.
#[allow(clippy::indexing_slicing)]
const _: () = {
    let mut i = 0;
    while i < ROUTES.len() {
        assert!(ROUTES[i].kind as usize == i);
        i += 1;
    }
};

impl RouteKind {
    /// The table row of this route.
    pub fn spec(self) -> &'static RouteSpec {
        // In bounds and in order: checked at compile time above.
        #[allow(clippy::indexing_slicing)]
        &ROUTES[self as usize]
    }
}

impl Route {
    /// The table row of this route.
    pub fn spec(&self) -> &'static RouteSpec {
        self.kind().spec()
    }

    /// The guild named in the path, if any.
    pub fn guild_id(&self) -> Option<u64> {
        match *self {
            Route::GetGuild { guild_id }
            | Route::ModifyGuild { guild_id }
            | Route::DeleteGuild { guild_id }
            | Route::ListGuildChannels { guild_id }
            | Route::CreateGuildChannel { guild_id }
            | Route::ModifyChannelPositions { guild_id }
            | Route::ListRoles { guild_id }
            | Route::CreateRole { guild_id }
            | Route::ModifyRolePositions { guild_id }
            | Route::ModifyRole { guild_id, .. }
            | Route::DeleteRole { guild_id, .. }
            | Route::ListMembers { guild_id }
            | Route::SearchMembers { guild_id }
            | Route::GetMember { guild_id, .. }
            | Route::ModifyMember { guild_id, .. }
            | Route::RemoveMember { guild_id, .. }
            | Route::ModifyCurrentMember { guild_id }
            | Route::AddMemberRole { guild_id, .. }
            | Route::RemoveMemberRole { guild_id, .. }
            | Route::ListBans { guild_id }
            | Route::CreateBan { guild_id, .. }
            | Route::RemoveBan { guild_id, .. }
            | Route::ControlAddGuildMember { guild_id } => Some(guild_id),
            _ => None,
        }
    }

    /// The channel named in the path, if any.
    pub fn channel_id(&self) -> Option<u64> {
        match *self {
            Route::GetChannel { channel_id }
            | Route::ModifyChannel { channel_id }
            | Route::DeleteChannel { channel_id }
            | Route::CreateInvite { channel_id }
            | Route::ListChannelInvites { channel_id }
            | Route::ListMessages { channel_id }
            | Route::CreateMessage { channel_id }
            | Route::GetMessage { channel_id, .. }
            | Route::EditMessage { channel_id, .. }
            | Route::DeleteMessage { channel_id, .. }
            | Route::BulkDeleteMessages { channel_id }
            | Route::ListPins { channel_id }
            | Route::PinMessage { channel_id, .. }
            | Route::UnpinMessage { channel_id, .. }
            | Route::AddOwnReaction { channel_id, .. }
            | Route::RemoveOwnReaction { channel_id, .. }
            | Route::RemoveUserReaction { channel_id, .. }
            | Route::ListReactions { channel_id, .. }
            | Route::RemoveEmojiReactions { channel_id, .. }
            | Route::RemoveAllReactions { channel_id, .. }
            | Route::TriggerTyping { channel_id }
            | Route::AckMessage { channel_id, .. } => Some(channel_id),
            _ => None,
        }
    }

    /// The rate limit major parameter: the top-level resource of the path (a channel or a
    /// guild), so that limits on one channel do not spill over to another, as on Discord.
    pub fn major(&self) -> Option<u64> {
        self.channel_id().or_else(|| self.guild_id())
    }
}

/// Decodes `%XX` escapes of one segment; a segment with a bad escape or that decodes to invalid
/// UTF-8 is kept as sent (it then matches no literal and fails every parameter parser).
fn percent_decode(seg: &str) -> Cow<'_, str> {
    if !seg.contains('%') {
        return Cow::Borrowed(seg);
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => return Cow::Borrowed(seg),
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(seg),
    }
}

/// Which part of the URL space a path belongs to.
enum Space<'a> {
    /// Under `/api[/vN]`: the rest of the path.
    Api(&'a str),
    /// A `/control/...` path, whole.
    Control(&'a str),
}

fn split_space(path: &str) -> Result<Space<'_>, ApiError> {
    if path.starts_with("/control/") {
        return Ok(Space::Control(path));
    }
    let Some(rest) = path.strip_prefix("/api") else {
        return Err(ApiError::not_found());
    };
    if rest.is_empty() {
        return Err(ApiError::not_found());
    }
    let Some(after_slash) = rest.strip_prefix('/') else {
        return Err(ApiError::not_found());
    };
    let (first, tail) = match after_slash.find('/') {
        Some(i) => after_slash.split_at(i),
        None => (after_slash, ""),
    };
    let version = first
        .strip_prefix('v')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    match version {
        Some("9") | Some("10") => {
            if tail.is_empty() {
                Err(ApiError::not_found())
            } else {
                Ok(Space::Api(tail))
            }
        }
        Some(_) => Err(ApiError::invalid_api_version()),
        // Unversioned: the whole rest is the route path.
        None => Ok(Space::Api(rest)),
    }
}

/// How many literal segments `template` has if it matches `segs`, else `None`.
fn match_template(template: &str, segs: &[Cow<'_, str>]) -> Option<usize> {
    let mut literals = 0;
    let mut n = 0;
    for t in template.split('/').skip(1) {
        let s = segs.get(n)?;
        n += 1;
        if t.starts_with('{') {
            if s.is_empty() {
                return None;
            }
        } else if t == s.as_ref() {
            literals += 1;
        } else {
            return None;
        }
    }
    (n == segs.len()).then_some(literals)
}

fn capture<'a>(template: &'static str, segs: &'a [Cow<'_, str>]) -> Captured<'a> {
    let mut cap = Captured {
        params: [("", ""); PATH_PARAMS_MAX],
        len: 0,
    };
    for (t, s) in template.split('/').skip(1).zip(segs.iter()) {
        if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}'))
            && let Some(slot) = cap.params.get_mut(cap.len)
        {
            *slot = (name, s.as_ref());
            cap.len += 1;
        }
    }
    cap
}

/// Routes a request: `path` is the request path without its query string.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    // One trailing slash is tolerated, as clients differ on it.
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    let (rel, control) = match split_space(path)? {
        Space::Api(rel) => (rel, false),
        Space::Control(p) => (p, true),
    };
    let mut segs: Vec<Cow<'_, str>> = Vec::with_capacity(PATH_SEGMENTS_MAX);
    for s in rel.split('/').skip(1) {
        if segs.len() == PATH_SEGMENTS_MAX {
            return Err(ApiError::not_found());
        }
        segs.push(percent_decode(s));
    }
    let mut path_known = false;
    let mut best: Option<(usize, &'static RouteSpec)> = None;
    for spec in ROUTES.iter().filter(|s| s.is_control() == control) {
        let Some(literals) = match_template(spec.template, &segs) else {
            continue;
        };
        path_known = true;
        if spec.method != method {
            continue;
        }
        if best.is_none_or(|(l, _)| literals > l) {
            best = Some((literals, spec));
        }
    }
    match best {
        Some((_, spec)) => Route::build(spec.kind, &capture(spec.template, &segs)),
        None if path_known => Err(ApiError::method_not_allowed()),
        None => Err(ApiError::not_found()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn templates_use_only_known_parameter_names_within_limits() {
        for spec in ROUTES {
            let params: Vec<&str> = spec
                .template
                .split('/')
                .filter_map(|t| t.strip_prefix('{').and_then(|t| t.strip_suffix('}')))
                .collect();
            assert!(params.len() <= PATH_PARAMS_MAX, "{}", spec.template);
            for p in params {
                assert!(
                    [
                        "guild_id",
                        "channel_id",
                        "message_id",
                        "user_id",
                        "role_id",
                        "emoji",
                        "invite_code"
                    ]
                    .contains(&p),
                    "{}",
                    spec.template
                );
            }
            assert!(spec.template.split('/').count() <= PATH_SEGMENTS_MAX);
        }
    }

    #[test]
    fn no_two_rows_share_method_and_template() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.template == b.template),
                    "{} {}",
                    a.method,
                    a.template
                );
            }
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%40me"), "@me");
        assert_eq!(percent_decode("%F0%9F%91%8D"), "\u{1F44D}");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("%FF"), "%FF");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
