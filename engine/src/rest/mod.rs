//! The sans-IO REST layer: routing, authentication, rate limits, request decoding and errors,
//! for the Discord API v10 subset Hearth serves and for the control API. No sockets, no clocks:
//! the caller passes the parsed [`Request`] and `now_ms`, and gets typed input or a ready
//! [`ApiError`]. The handlers that run a route on the right shard sit on top of this.
//!
//! # Pipeline (what a handler does, in this order, as Discord answers)
//! 1. [`route`]`(method, path)`: 404 unknown path, 405 wrong method, 400 bad id in the path.
//! 2. Auth per [`RouteSpec::auth`]: [`authenticate`] (401) for [`Auth::Token`],
//!    [`authenticate_control`] for [`Auth::Control`], nothing for [`Auth::None`].
//! 3. [`RateLimiter::check`] with the token's user id (429 with `retry_after` and `Via`).
//! 4. [`decode`]`(&route, &req.query, &req.body)`: 400 with 50109 (invalid JSON), 50035 (invalid
//!    fields, Discord's nested `errors`) or a route's own code (50006 empty message).
//! 5. Execute; answer with JSON (`application/json` exactly) plus [`RateLimitInfo::apply`]'s
//!    headers, or with [`ApiError::into_response`].
//!
//! [`prepare`] runs steps 1 to 4.
//!
//! # What is left to the handlers
//! Everything that needs state: existence (10003 Unknown Channel, ...), permissions (50001,
//! 50013), channel-type rules, an edit that would empty a message, bulk-delete age
//! ([`BulkDelete::check_age`] does it given `now_ms`), slowmode ([`ApiError::slowmode`]).
//!
//! # Files
//! `routes.rs` (table and router), `query.rs`, `messages.rs`, `guilds.rs`, `control.rs` (typed
//! inputs), `form.rs` (field validation into Discord's error tree), `error.rs`, `auth.rs`,
//! `ratelimit.rs`, `openapi.rs` (the committed `engine/openapi.json` and its generator), `limits.rs`.
//!
//! Everything here parses hostile input, so `unwrap` and unchecked indexing are denied.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod auth;
mod control;
mod error;
mod form;
mod guilds;
pub mod limits;
mod messages;
mod openapi;
mod query;
mod ratelimit;
mod routes;

pub use auth::{authenticate, authenticate_control};
pub use control::{
    ControlAddGuildMember, ControlCreateApplication, ControlCreateGuild, ControlCreateUser,
};
pub use error::{ApiError, RateLimitScope, RetryAfter, VIA_HEADER_VALUE, codes};
pub use form::{Patch, parse_snowflake_str, snowflake_from_value};
pub use guilds::{
    Ack, CHANNEL_TYPE_ANNOUNCEMENT, CHANNEL_TYPE_CATEGORY, CHANNEL_TYPE_TEXT, CHANNEL_TYPE_VOICE,
    CHANNEL_TYPES, ChannelPosition, CreateBan, CreateChannel, CreateGuild, CreateInvite,
    CreateRole, ModifyChannel, ModifyCurrentMember, ModifyGuild, ModifyMember, ModifyRole,
    OVERWRITE_TYPE_MEMBER, OVERWRITE_TYPE_ROLE, Overwrite, ROLE_NAME_DEFAULT, RolePosition,
};
pub use messages::{
    AllowedMentions, BulkDelete, CreateMessage, EditMessage, Embed, EmbedAuthor, EmbedField,
    EmbedFooter, EmbedMedia, FLAG_SUPPRESS_EMBEDS, FLAG_SUPPRESS_NOTIFICATIONS,
    MESSAGE_FLAGS_SETTABLE, MessageReference, Nonce, is_iso8601,
};
pub use openapi::{OPENAPI_JSON, document as openapi_document};
pub use query::{
    ListBansQuery, ListMembersQuery, ListMessagesQuery, ListReactionsQuery, MessageAnchor, Query,
    SearchMembersQuery, WithCountsQuery,
};
pub use ratelimit::{
    BULK_DELETE_LIMIT, BucketLimit, GLOBAL, MEMBER_WRITE_LIMIT, MESSAGE_CREATE_LIMIT,
    MESSAGE_DELETE_LIMIT, REACTION_LIMIT, READ_LIMIT, RateLimitConfig, RateLimitInfo, RateLimiter,
    WRITE_LIMIT,
};
pub use routes::{
    Auth, Bucket, ROUTES, ReactionEmoji, Route, RouteKind, RouteSpec, parse_invite_code, route,
};

use gateway_core::token::{TokenClaims, TokenKey};

use crate::http::Request;

/// The decoded query or body of a request, one variant per shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The route takes no query and no body (or ignores them).
    None,
    /// `GET /guilds/{g}` and `GET /invites/{code}`.
    WithCounts(WithCountsQuery),
    /// `GET /channels/{c}/messages`.
    ListMessages(ListMessagesQuery),
    /// `GET /guilds/{g}/members`.
    ListMembers(ListMembersQuery),
    /// `GET /guilds/{g}/members/search`.
    SearchMembers(SearchMembersQuery),
    /// `GET /guilds/{g}/bans`.
    ListBans(ListBansQuery),
    /// `GET .../reactions/{emoji}`.
    ListReactions(ListReactionsQuery),
    /// `POST /guilds`.
    CreateGuild(CreateGuild),
    /// `PATCH /guilds/{g}`.
    ModifyGuild(ModifyGuild),
    /// `POST /guilds/{g}/channels`.
    CreateChannel(CreateChannel),
    /// `PATCH /channels/{c}`.
    ModifyChannel(ModifyChannel),
    /// `PATCH /guilds/{g}/channels`.
    ChannelPositions(Vec<ChannelPosition>),
    /// `POST /guilds/{g}/roles`.
    CreateRole(CreateRole),
    /// `PATCH /guilds/{g}/roles/{r}`.
    ModifyRole(ModifyRole),
    /// `PATCH /guilds/{g}/roles`.
    RolePositions(Vec<RolePosition>),
    /// `PATCH /guilds/{g}/members/{u}`.
    ModifyMember(ModifyMember),
    /// `PATCH /guilds/{g}/members/@me`.
    ModifyCurrentMember(ModifyCurrentMember),
    /// `PUT /guilds/{g}/bans/{u}`.
    CreateBan(CreateBan),
    /// `POST /channels/{c}/invites`.
    CreateInvite(CreateInvite),
    /// `POST /channels/{c}/messages`.
    CreateMessage(Box<CreateMessage>),
    /// `PATCH /channels/{c}/messages/{m}`.
    EditMessage(Box<EditMessage>),
    /// `POST /channels/{c}/messages/bulk-delete`.
    BulkDelete(BulkDelete),
    /// `POST /channels/{c}/messages/{m}/ack`.
    Ack(Ack),
    /// `POST /control/users`.
    ControlCreateUser(ControlCreateUser),
    /// `POST /control/applications`.
    ControlCreateApplication(ControlCreateApplication),
    /// `POST /control/guilds`.
    ControlCreateGuild(ControlCreateGuild),
    /// `POST /control/guilds/{g}/members`.
    ControlAddGuildMember(ControlAddGuildMember),
}

/// Decodes the query string and body `route` takes. Bodies of routes that take none are ignored,
/// as are query keys a route does not know.
pub fn decode(route: &Route, query: &str, body: &[u8]) -> Result<Input, ApiError> {
    Ok(match route.kind() {
        RouteKind::GetGuild | RouteKind::GetInvite => {
            Input::WithCounts(WithCountsQuery::parse(query)?)
        }
        RouteKind::ListMessages => Input::ListMessages(ListMessagesQuery::parse(query)?),
        RouteKind::ListMembers => Input::ListMembers(ListMembersQuery::parse(query)?),
        RouteKind::SearchMembers => Input::SearchMembers(SearchMembersQuery::parse(query)?),
        RouteKind::ListBans => Input::ListBans(ListBansQuery::parse(query)?),
        RouteKind::ListReactions => Input::ListReactions(ListReactionsQuery::parse(query)?),
        RouteKind::CreateGuild => Input::CreateGuild(CreateGuild::parse(body)?),
        RouteKind::ModifyGuild => Input::ModifyGuild(ModifyGuild::parse(body)?),
        RouteKind::CreateGuildChannel => Input::CreateChannel(CreateChannel::parse(body)?),
        RouteKind::ModifyChannel => Input::ModifyChannel(ModifyChannel::parse(body)?),
        RouteKind::ModifyChannelPositions => {
            Input::ChannelPositions(ChannelPosition::parse_list(body)?)
        }
        RouteKind::CreateRole => Input::CreateRole(CreateRole::parse(body)?),
        RouteKind::ModifyRole => Input::ModifyRole(ModifyRole::parse(body)?),
        RouteKind::ModifyRolePositions => Input::RolePositions(RolePosition::parse_list(body)?),
        RouteKind::ModifyMember => Input::ModifyMember(ModifyMember::parse(body)?),
        RouteKind::ModifyCurrentMember => {
            Input::ModifyCurrentMember(ModifyCurrentMember::parse(body)?)
        }
        RouteKind::CreateBan => Input::CreateBan(CreateBan::parse(body)?),
        RouteKind::CreateInvite => Input::CreateInvite(CreateInvite::parse(body)?),
        RouteKind::CreateMessage => Input::CreateMessage(Box::new(CreateMessage::parse(body)?)),
        RouteKind::EditMessage => Input::EditMessage(Box::new(EditMessage::parse(body)?)),
        RouteKind::BulkDeleteMessages => Input::BulkDelete(BulkDelete::parse(body)?),
        RouteKind::AckMessage => Input::Ack(Ack::parse(body)?),
        RouteKind::ControlCreateUser => Input::ControlCreateUser(ControlCreateUser::parse(body)?),
        RouteKind::ControlCreateApplication => {
            Input::ControlCreateApplication(ControlCreateApplication::parse(body)?)
        }
        RouteKind::ControlCreateGuild => {
            Input::ControlCreateGuild(ControlCreateGuild::parse(body)?)
        }
        RouteKind::ControlAddGuildMember => {
            Input::ControlAddGuildMember(ControlAddGuildMember::parse(body)?)
        }
        RouteKind::GetGateway
        | RouteKind::GetGatewayBot
        | RouteKind::GetCurrentUser
        | RouteKind::GetUser
        | RouteKind::GetCurrentApplication
        | RouteKind::DeleteGuild
        | RouteKind::ListGuildChannels
        | RouteKind::GetChannel
        | RouteKind::DeleteChannel
        | RouteKind::ListRoles
        | RouteKind::DeleteRole
        | RouteKind::GetMember
        | RouteKind::RemoveMember
        | RouteKind::AddMemberRole
        | RouteKind::RemoveMemberRole
        | RouteKind::RemoveBan
        | RouteKind::ListChannelInvites
        | RouteKind::DeleteInvite
        | RouteKind::JoinInvite
        | RouteKind::GetMessage
        | RouteKind::DeleteMessage
        | RouteKind::ListPins
        | RouteKind::PinMessage
        | RouteKind::UnpinMessage
        | RouteKind::AddOwnReaction
        | RouteKind::RemoveOwnReaction
        | RouteKind::RemoveUserReaction
        | RouteKind::RemoveEmojiReactions
        | RouteKind::RemoveAllReactions
        | RouteKind::TriggerTyping => Input::None,
    })
}

/// A request that passed routing, auth, rate limits and decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// The route.
    pub route: Route,
    /// Token claims for [`Auth::Token`] routes.
    pub claims: Option<TokenClaims>,
    /// Headers to add to the answer (`None`: route not limited).
    pub rate_limit: Option<RateLimitInfo>,
    /// The decoded query or body.
    pub input: Input,
}

/// What [`prepare`] checks credentials against.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    /// The token signing key.
    pub token_key: &'a TokenKey,
    /// The control API secret (empty: no secret configured, the control API is open).
    pub control_secret: &'a [u8],
}

/// Steps 1 to 4 of the pipeline (see the module docs). `now_ms` is Unix milliseconds.
pub fn prepare(
    req: &Request,
    creds: Credentials<'_>,
    limiter: &mut RateLimiter,
    now_ms: u64,
) -> Result<Prepared, ApiError> {
    let route = route(&req.method, &req.path)?;
    let claims = match route.spec().auth {
        Auth::Token => Some(authenticate(req, creds.token_key)?),
        Auth::Control => {
            authenticate_control(req, creds.control_secret)?;
            None
        }
        Auth::None => None,
    };
    let user_id = claims.map_or(0, |c| c.user_id);
    let rate_limit = limiter.check(user_id, &route, now_ms)?;
    let input = decode(&route, &req.query, &req.body)?;
    Ok(Prepared {
        route,
        claims,
        rate_limit,
        input,
    })
}
