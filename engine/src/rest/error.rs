//! REST errors as Discord sends them: an HTTP status plus a JSON body `{code, message}`, with a
//! nested `errors` object for form validation and `retry_after`/`global` for rate limits.
//!
//! Clients branch on `code` (and on the status), never on `message`, so messages are short and ours.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::http::Response;

/// Discord's JSON error codes used by this layer and by the handlers behind it.
pub mod codes {
    /// General error: used with 401, 404, 405, 429 and 5xx answers.
    pub const GENERAL: u32 = 0;
    /// Unknown channel.
    pub const UNKNOWN_CHANNEL: u32 = 10003;
    /// Unknown guild.
    pub const UNKNOWN_GUILD: u32 = 10004;
    /// Unknown invite.
    pub const UNKNOWN_INVITE: u32 = 10006;
    /// Unknown member.
    pub const UNKNOWN_MEMBER: u32 = 10007;
    /// Unknown message.
    pub const UNKNOWN_MESSAGE: u32 = 10008;
    /// Unknown permission overwrite.
    pub const UNKNOWN_OVERWRITE: u32 = 10009;
    /// Unknown role.
    pub const UNKNOWN_ROLE: u32 = 10011;
    /// Unknown user.
    pub const UNKNOWN_USER: u32 = 10013;
    /// Unknown emoji (also a reaction emoji that does not parse).
    pub const UNKNOWN_EMOJI: u32 = 10014;
    /// Unknown ban.
    pub const UNKNOWN_BAN: u32 = 10026;
    /// A slowmode (`rate_limit_per_user`) refusal.
    pub const SLOWMODE: u32 = 20016;
    /// Maximum number of guilds reached.
    pub const MAX_GUILDS: u32 = 30001;
    /// Maximum number of pins in a channel reached.
    pub const MAX_PINS: u32 = 30003;
    /// Maximum number of roles in a guild reached.
    pub const MAX_ROLES: u32 = 30005;
    /// Maximum number of reactions on a message reached.
    pub const MAX_REACTIONS: u32 = 30010;
    /// Maximum number of channels in a guild reached.
    pub const MAX_CHANNELS: u32 = 30013;
    /// Maximum number of invites reached.
    pub const MAX_INVITES: u32 = 30016;
    /// The user is banned from this guild.
    pub const USER_BANNED: u32 = 40007;
    /// Missing access (cannot see the resource).
    pub const MISSING_ACCESS: u32 = 50001;
    /// Cannot send an empty message.
    pub const EMPTY_MESSAGE: u32 = 50006;
    /// Cannot send messages in a non-text channel.
    pub const NON_TEXT_CHANNEL: u32 = 50008;
    /// Missing permissions.
    pub const MISSING_PERMISSIONS: u32 = 50013;
    /// Cannot execute the action on this channel type.
    pub const WRONG_CHANNEL_TYPE: u32 = 50024;
    /// Bulk delete can only remove messages under 14 days old.
    pub const BULK_DELETE_TOO_OLD: u32 = 50034;
    /// Invalid form body: see the `errors` object.
    pub const INVALID_FORM_BODY: u32 = 50035;
    /// Invalid API version.
    pub const INVALID_API_VERSION: u32 = 50041;
    /// The request body is not valid JSON.
    pub const INVALID_JSON: u32 = 50109;
}

/// The value of the `Via` header on every 429: discord.py takes a 429 without it for a Cloudflare
/// ban (COMPAT.md).
pub const VIA_HEADER_VALUE: &str = "1.1 hearth";

/// Which limit a 429 hit, as `X-RateLimit-Scope` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitScope {
    /// A per-user, per-route bucket (or a per-user slowmode).
    User,
    /// The per-user global limit.
    Global,
    /// A limit shared by every user of a resource.
    Shared,
}

impl RateLimitScope {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitScope::User => "user",
            RateLimitScope::Global => "global",
            RateLimitScope::Shared => "shared",
        }
    }
}

/// What a 429 tells the client about when to come back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryAfter {
    /// Milliseconds until the request may be retried (at least 1).
    pub retry_after_ms: u64,
    /// Which limit was hit.
    pub scope: RateLimitScope,
}

/// A REST error: status, Discord JSON code, message and optional details.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("HTTP {status}, code {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Discord JSON error code ([`codes`]).
    pub code: u32,
    /// Human-readable message.
    pub message: Cow<'static, str>,
    /// Nested per-field errors of a 50035 answer.
    pub errors: Option<Value>,
    /// Set on 429 answers.
    pub retry: Option<RetryAfter>,
    /// Extra response headers (the `X-RateLimit-*` of the bucket that refused).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with a status, code and message and nothing else.
    pub fn new(status: u16, code: u32, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: None,
            retry: None,
            headers: Vec::new(),
        }
    }

    /// 401: missing, malformed or forged token.
    pub fn unauthorized() -> Self {
        Self::new(401, codes::GENERAL, "401: Unauthorized")
    }

    /// 404 for a path no route matches.
    pub fn not_found() -> Self {
        Self::new(404, codes::GENERAL, "404: Not Found")
    }

    /// 405 for a known path with a method it does not take.
    pub fn method_not_allowed() -> Self {
        Self::new(405, codes::GENERAL, "405: Method Not Allowed")
    }

    /// 500 when a handler fails for a reason the client cannot fix.
    pub fn internal() -> Self {
        Self::new(500, codes::GENERAL, "500: Internal Server Error")
    }

    /// 503 when a shard's mailbox is full (backpressure): the client should retry.
    pub fn unavailable() -> Self {
        Self::new(503, codes::GENERAL, "503: Service Unavailable")
    }

    /// 429 from a rate limit bucket or the global limit.
    pub fn rate_limited(retry_after_ms: u64, scope: RateLimitScope) -> Self {
        let mut e = Self::new(429, codes::GENERAL, "You are being rate limited.");
        e.retry = Some(RetryAfter {
            retry_after_ms: retry_after_ms.max(1),
            scope,
        });
        e
    }

    /// 429 from a channel's slowmode (`rate_limit_per_user`).
    pub fn slowmode(retry_after_ms: u64) -> Self {
        let mut e = Self::new(
            429,
            codes::SLOWMODE,
            "This action cannot be performed due to slowmode rate limit.",
        );
        e.retry = Some(RetryAfter {
            retry_after_ms: retry_after_ms.max(1),
            scope: RateLimitScope::User,
        });
        e
    }

    /// 404, 10003.
    pub fn unknown_channel() -> Self {
        Self::new(404, codes::UNKNOWN_CHANNEL, "Unknown Channel")
    }

    /// 404, 10004.
    pub fn unknown_guild() -> Self {
        Self::new(404, codes::UNKNOWN_GUILD, "Unknown Guild")
    }

    /// 404, 10006.
    pub fn unknown_invite() -> Self {
        Self::new(404, codes::UNKNOWN_INVITE, "Unknown Invite")
    }

    /// 404, 10007.
    pub fn unknown_member() -> Self {
        Self::new(404, codes::UNKNOWN_MEMBER, "Unknown Member")
    }

    /// 404, 10008.
    pub fn unknown_message() -> Self {
        Self::new(404, codes::UNKNOWN_MESSAGE, "Unknown Message")
    }

    /// 404, 10009.
    pub fn unknown_overwrite() -> Self {
        Self::new(404, codes::UNKNOWN_OVERWRITE, "Unknown Overwrite")
    }

    /// 404, 10011.
    pub fn unknown_role() -> Self {
        Self::new(404, codes::UNKNOWN_ROLE, "Unknown Role")
    }

    /// 404, 10013.
    pub fn unknown_user() -> Self {
        Self::new(404, codes::UNKNOWN_USER, "Unknown User")
    }

    /// 400, 10014: Discord answers a reaction emoji it cannot parse with 400, not 404.
    pub fn unknown_emoji() -> Self {
        Self::new(400, codes::UNKNOWN_EMOJI, "Unknown Emoji")
    }

    /// 404, 10026.
    pub fn unknown_ban() -> Self {
        Self::new(404, codes::UNKNOWN_BAN, "Unknown Ban")
    }

    /// 400, 30001, with the cap that was reached.
    pub fn max_guilds(max: usize) -> Self {
        Self::new(
            400,
            codes::MAX_GUILDS,
            format!("Maximum number of guilds reached ({max})"),
        )
    }

    /// 400, 30003, with the cap that was reached.
    pub fn max_pins(max: usize) -> Self {
        Self::new(
            400,
            codes::MAX_PINS,
            format!("Maximum number of pins reached ({max})"),
        )
    }

    /// 400, 30005, with the cap that was reached.
    pub fn max_roles(max: usize) -> Self {
        Self::new(
            400,
            codes::MAX_ROLES,
            format!("Maximum number of guild roles reached ({max})"),
        )
    }

    /// 400, 30010, with the cap that was reached.
    pub fn max_reactions(max: usize) -> Self {
        Self::new(
            400,
            codes::MAX_REACTIONS,
            format!("Maximum number of reactions reached ({max})"),
        )
    }

    /// 400, 30013, with the cap that was reached.
    pub fn max_channels(max: usize) -> Self {
        Self::new(
            400,
            codes::MAX_CHANNELS,
            format!("Maximum number of guild channels reached ({max})"),
        )
    }

    /// 400, 30016, with the cap that was reached.
    pub fn max_invites(max: usize) -> Self {
        Self::new(
            400,
            codes::MAX_INVITES,
            format!("Maximum number of invites reached ({max})"),
        )
    }

    /// 403, 40007: joining a guild that banned the user.
    pub fn user_banned() -> Self {
        Self::new(
            403,
            codes::USER_BANNED,
            "The user is banned from this guild.",
        )
    }

    /// 403, 50001: the user cannot see the resource (not a member, no VIEW_CHANNEL).
    pub fn missing_access() -> Self {
        Self::new(403, codes::MISSING_ACCESS, "Missing Access")
    }

    /// 403, 50013: the user sees the resource but lacks the permission for the action.
    pub fn missing_permissions() -> Self {
        Self::new(403, codes::MISSING_PERMISSIONS, "Missing Permissions")
    }

    /// 400, 50006: no content and no embeds.
    pub fn empty_message() -> Self {
        Self::new(400, codes::EMPTY_MESSAGE, "Cannot send an empty message")
    }

    /// 403, 50008: sending a message to a voice channel or category.
    pub fn non_text_channel() -> Self {
        Self::new(
            403,
            codes::NON_TEXT_CHANNEL,
            "Cannot send messages in a non-text channel",
        )
    }

    /// 400, 50024: an action the channel's type does not support.
    pub fn wrong_channel_type() -> Self {
        Self::new(
            400,
            codes::WRONG_CHANNEL_TYPE,
            "Cannot execute action on this channel type",
        )
    }

    /// 400, 50034: a bulk delete naming a message older than 14 days.
    pub fn bulk_delete_too_old() -> Self {
        Self::new(
            400,
            codes::BULK_DELETE_TOO_OLD,
            "You can only bulk delete messages that are under 14 days old.",
        )
    }

    /// 400, 50035 with Discord's nested `errors` object.
    pub fn invalid_form_body(errors: Value) -> Self {
        let mut e = Self::new(400, codes::INVALID_FORM_BODY, "Invalid Form Body");
        e.errors = Some(errors);
        e
    }

    /// 400, 50035 for one field: `{field: {"_errors": [{code, message}]}}`.
    pub fn invalid_field(field: &str, code: &str, message: impl Into<String>) -> Self {
        let mut leaf = Map::new();
        leaf.insert(
            "_errors".to_owned(),
            Value::Array(vec![field_error(code, message.into())]),
        );
        let mut root = Map::new();
        root.insert(field.to_owned(), Value::Object(leaf));
        Self::invalid_form_body(Value::Object(root))
    }

    /// 400, 50041: `/api/vN` with a version we do not serve.
    pub fn invalid_api_version() -> Self {
        Self::new(400, codes::INVALID_API_VERSION, "Invalid API version")
    }

    /// 400, 50109: the body does not parse as JSON.
    pub fn invalid_json() -> Self {
        Self::new(
            400,
            codes::INVALID_JSON,
            "The request body contains invalid JSON.",
        )
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("message".to_owned(), Value::from(self.message.as_ref()));
        m.insert("code".to_owned(), Value::from(self.code));
        if let Some(errors) = &self.errors {
            m.insert("errors".to_owned(), errors.clone());
        }
        if let Some(r) = &self.retry {
            m.insert(
                "retry_after".to_owned(),
                Value::from(seconds_f64(r.retry_after_ms)),
            );
            m.insert(
                "global".to_owned(),
                Value::from(r.scope == RateLimitScope::Global),
            );
        }
        Value::Object(m)
    }

    /// The engine response: JSON with content type exactly `application/json`, plus the rate limit
    /// headers (`Retry-After`, `X-RateLimit-Scope`, `X-RateLimit-Global`, `Via`) on a 429.
    pub fn into_response(self) -> Response {
        let mut resp = Response::json(self.status, self.body().to_string());
        if let Some(r) = &self.retry {
            resp.headers
                .push(("Retry-After", r.retry_after_ms.div_ceil(1000).to_string()));
            resp.headers
                .push(("X-RateLimit-Scope", r.scope.as_str().to_owned()));
            if r.scope == RateLimitScope::Global {
                resp.headers.push(("X-RateLimit-Global", "true".to_owned()));
            }
            resp.headers.push(("Via", VIA_HEADER_VALUE.to_owned()));
        }
        resp.headers.extend(self.headers);
        resp
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        e.into_response()
    }
}

/// One `{code, message}` entry of an `_errors` list.
pub(crate) fn field_error(code: &str, message: String) -> Value {
    let mut m = Map::new();
    m.insert("code".to_owned(), Value::from(code));
    m.insert("message".to_owned(), Value::from(message));
    Value::Object(m)
}

/// Milliseconds as fractional seconds, as Discord's `retry_after` and reset headers carry them.
pub(crate) fn seconds_f64(ms: u64) -> f64 {
    // Exact for any duration under 2^53 ms; ours are seconds to hours.
    ms as f64 / 1000.0
}

/// Milliseconds as a decimal seconds string with three fraction digits (`"1.250"`).
pub(crate) fn seconds_string(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}
