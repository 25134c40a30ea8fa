//! Control API bodies: what an integrator's control plane sends to create users and bots and to
//! put users into guilds. Same validation style as the Discord routes (50035 with field errors).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::Value;

use super::error::ApiError;
use super::form::{FormErrors, Obj, with_object};
use super::limits::{
    APPLICATION_NAME_CHARS_MAX, APPLICATION_NAME_CHARS_MIN, GUILD_NAME_CHARS_MAX,
    GUILD_NAME_CHARS_MIN, MEMBER_ROLES_MAX, NICK_CHARS_MAX, USERNAME_CHARS_MAX, USERNAME_CHARS_MIN,
};

/// Substrings a username may not contain: they would break mention and code-block syntax.
const USERNAME_FORBIDDEN: [&str; 4] = ["@", "#", ":", "```"];
/// Usernames that would read as mass mentions.
const USERNAME_RESERVED: [&str; 2] = ["everyone", "here"];

/// A username: 2..=32 characters, not a mention keyword, none of `@ # : ```` `.
fn username(
    e: &mut FormErrors,
    o: &Obj<'_>,
    key: &str,
    v: &Value,
    min: usize,
    max: usize,
) -> Option<String> {
    let name = e.string(o, key, v, min, max)?;
    let trimmed = name.trim();
    let bad = USERNAME_FORBIDDEN.iter().any(|f| trimmed.contains(f))
        || USERNAME_RESERVED
            .iter()
            .any(|r| trimmed.eq_ignore_ascii_case(r))
        || trimmed.chars().count() < min;
    if bad {
        e.add_path(
            o.path(key, None),
            "USERNAME_INVALID",
            "Username is invalid.".to_owned(),
        );
        return None;
    }
    Some(trimmed.to_owned())
}

/// `POST /control/users`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlCreateUser {
    /// Username, 2..=32 characters (surrounding whitespace trimmed).
    pub username: String,
    /// Whether the user is a bot (its application id is its user id).
    pub bot: bool,
    /// Privileged gateway intents the user's application is granted (default: all of them);
    /// bits other than the privileged ones are ignored.
    pub privileged_intents: Option<u64>,
}

impl ControlCreateUser {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| ControlCreateUser {
            username: e
                .req(o, "username", |e, o, k, v| {
                    username(e, o, k, v, USERNAME_CHARS_MIN, USERNAME_CHARS_MAX)
                })
                .unwrap_or_default(),
            bot: e
                .opt(o, "bot", |e, o, k, v| e.boolean(o, k, v))
                .unwrap_or(false),
            privileged_intents: e.opt(o, "privileged_intents", |e, o, k, v| {
                e.int(o, k, v, 0, u64::MAX)
            }),
        })
    }
}

/// `POST /control/guilds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlCreateGuild {
    /// Guild name, 2..=100 characters.
    pub name: String,
    /// The owner (an existing user).
    pub owner_id: u64,
}

impl ControlCreateGuild {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| ControlCreateGuild {
            name: e
                .req(o, "name", |e, o, k, v| {
                    e.string(o, k, v, GUILD_NAME_CHARS_MIN, GUILD_NAME_CHARS_MAX)
                })
                .unwrap_or_default(),
            owner_id: e
                .req(o, "owner_id", |e, o, k, v| e.snowflake(o, k, v))
                .unwrap_or(0),
        })
    }
}

/// `POST /control/applications`: a bot user named like the application, plus the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlCreateApplication {
    /// Application (and bot user) name, 2..=32 characters.
    pub name: String,
    /// Owner user; `None`: the bot owns itself (what `GET /oauth2/applications/@me` then says).
    pub owner_id: Option<u64>,
}

impl ControlCreateApplication {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| ControlCreateApplication {
            name: e
                .req(o, "name", |e, o, k, v| {
                    username(
                        e,
                        o,
                        k,
                        v,
                        APPLICATION_NAME_CHARS_MIN,
                        APPLICATION_NAME_CHARS_MAX,
                    )
                })
                .unwrap_or_default(),
            owner_id: e.opt(o, "owner_id", |e, o, k, v| e.snowflake(o, k, v)),
        })
    }
}

/// `POST /control/guilds/{g}/members`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlAddGuildMember {
    /// The user to add.
    pub user_id: u64,
    /// Initial nick.
    pub nick: Option<String>,
    /// Initial roles (besides @everyone).
    pub roles: Vec<u64>,
}

impl ControlAddGuildMember {
    /// Decodes and validates.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |e, o| ControlAddGuildMember {
            user_id: e
                .req(o, "user_id", |e, o, k, v| e.snowflake(o, k, v))
                .unwrap_or(0),
            nick: e
                .opt(o, "nick", |e, o, k, v| e.string(o, k, v, 0, NICK_CHARS_MAX))
                .filter(|n| !n.is_empty()),
            roles: e
                .opt(o, "roles", |e, o, k, v| {
                    e.snowflakes(o, k, v, 0, MEMBER_ROLES_MAX)
                })
                .unwrap_or_default(),
        })
    }
}
