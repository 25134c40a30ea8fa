//! Query strings: `key=value` pairs, percent-decoded (`+` is a space), decoded into one typed
//! struct per route. Refusals are 50035 with the parameter's name as the field, as Discord answers
//! them. An empty value (`before=`) counts as absent; unknown keys are ignored; only the first
//! [`QUERY_PAIRS_MAX`] pairs are read and the first occurrence of a key wins.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::borrow::Cow;

use super::error::ApiError;
use super::form::{FormErrors, parse_snowflake_str};
use super::limits::{
    BANS_LIMIT_MAX, MEMBER_SEARCH_QUERY_CHARS_MAX, MEMBERS_LIMIT_DEFAULT, MEMBERS_LIMIT_MAX,
    MESSAGES_LIMIT_DEFAULT, MESSAGES_LIMIT_MAX, QUERY_PAIRS_MAX, REACTIONS_LIMIT_DEFAULT,
    REACTIONS_LIMIT_MAX,
};

/// Percent-decodes a query component (`+` is a space); bad escapes are kept as sent.
fn decode_component(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                } else {
                    out.push(b);
                    i += 1;
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A parsed query string.
#[derive(Debug, Default)]
pub struct Query<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Query<'a> {
    /// Parses `q` (without the `?`).
    pub fn parse(q: &'a str) -> Self {
        let pairs = q
            .split('&')
            .filter(|p| !p.is_empty())
            .take(QUERY_PAIRS_MAX)
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode_component(k), decode_component(v))
            })
            .collect();
        Query { pairs }
    }

    /// The first non-empty value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
            .filter(|v| !v.is_empty())
    }

    fn snowflake(&self, key: &str, errs: &mut FormErrors) -> Option<u64> {
        let v = self.get(key)?;
        let id = parse_snowflake_str(v);
        if id.is_none() {
            errs.not_snowflake(&[key], v);
        }
        id
    }

    fn int(&self, key: &str, min: u64, max: u64, default: u64, errs: &mut FormErrors) -> u64 {
        let Some(v) = self.get(key) else {
            return default;
        };
        match v.parse::<u64>() {
            Ok(n) if n < min => {
                errs.add(
                    &[key],
                    "NUMBER_TYPE_MIN",
                    format!("int value should be greater than or equal to {min}."),
                );
                default
            }
            Ok(n) if n > max => {
                errs.add(
                    &[key],
                    "NUMBER_TYPE_MAX",
                    format!("int value should be less than or equal to {max}."),
                );
                default
            }
            Ok(n) => n,
            Err(_)
                if v.starts_with('-') && v.get(1..).is_some_and(|d| d.parse::<u64>().is_ok()) =>
            {
                errs.add(
                    &[key],
                    "NUMBER_TYPE_MIN",
                    format!("int value should be greater than or equal to {min}."),
                );
                default
            }
            Err(_) => {
                let shown: String = v.chars().take(64).collect();
                errs.add(
                    &[key],
                    "NUMBER_TYPE_COERCE",
                    format!("Value \"{shown}\" is not int."),
                );
                default
            }
        }
    }

    /// Booleans as clients write them: `true`/`false` (any case) or `1`/`0` (discord.py sends
    /// `int(with_counts)`).
    fn boolean(&self, key: &str, errs: &mut FormErrors) -> bool {
        let Some(v) = self.get(key) else {
            return false;
        };
        if v == "1" || v.eq_ignore_ascii_case("true") {
            true
        } else if v == "0" || v.eq_ignore_ascii_case("false") {
            false
        } else {
            let shown: String = v.chars().take(64).collect();
            errs.add(
                &[key],
                "BOOLEAN_TYPE_COERCE",
                format!("Value \"{shown}\" is not boolean."),
            );
            false
        }
    }
}

/// Where a message page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageAnchor {
    /// Messages older than this id, newest first.
    Before(u64),
    /// Messages newer than this id.
    After(u64),
    /// Messages around this id (about half before, half after, the id itself included).
    Around(u64),
}

/// `GET /channels/{c}/messages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListMessagesQuery {
    /// Where to start; `None` is the newest messages. Discord documents the three keys as
    /// mutually exclusive; given several, `around` wins over `before` over `after` (no error, so
    /// that a client sending two still gets an answer).
    pub anchor: Option<MessageAnchor>,
    /// Page size, 1..=100, default 50.
    pub limit: u32,
}

impl ListMessagesQuery {
    /// Decodes and validates.
    pub fn parse(q: &str) -> Result<Self, ApiError> {
        let q = Query::parse(q);
        let mut errs = FormErrors::default();
        let around = q.snowflake("around", &mut errs).map(MessageAnchor::Around);
        let before = q.snowflake("before", &mut errs).map(MessageAnchor::Before);
        let after = q.snowflake("after", &mut errs).map(MessageAnchor::After);
        let limit = q.int(
            "limit",
            1,
            MESSAGES_LIMIT_MAX,
            MESSAGES_LIMIT_DEFAULT,
            &mut errs,
        );
        errs.into_result()?;
        Ok(ListMessagesQuery {
            anchor: around.or(before).or(after),
            limit: clamp_u32(limit),
        })
    }
}

/// `GET /guilds/{g}/members`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListMembersQuery {
    /// Page size, 1..=1000, default 1.
    pub limit: u32,
    /// Members with a user id above this one, in id order (default 0: from the start).
    pub after: u64,
}

impl ListMembersQuery {
    /// Decodes and validates.
    pub fn parse(q: &str) -> Result<Self, ApiError> {
        let q = Query::parse(q);
        let mut errs = FormErrors::default();
        let limit = q.int(
            "limit",
            1,
            MEMBERS_LIMIT_MAX,
            MEMBERS_LIMIT_DEFAULT,
            &mut errs,
        );
        let after = q.snowflake("after", &mut errs).unwrap_or(0);
        errs.into_result()?;
        Ok(ListMembersQuery {
            limit: clamp_u32(limit),
            after,
        })
    }
}

/// `GET /guilds/{g}/members/search`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchMembersQuery {
    /// Prefix matched against username and nick (required, 1..=100 characters).
    pub query: String,
    /// Page size, 1..=1000, default 1.
    pub limit: u32,
}

impl SearchMembersQuery {
    /// Decodes and validates.
    pub fn parse(q: &str) -> Result<Self, ApiError> {
        let q = Query::parse(q);
        let mut errs = FormErrors::default();
        let query = match q.get("query") {
            None => {
                errs.add(
                    &["query"],
                    "BASE_TYPE_REQUIRED",
                    "This field is required.".to_owned(),
                );
                String::new()
            }
            Some(s) if s.chars().count() > MEMBER_SEARCH_QUERY_CHARS_MAX => {
                errs.add(
                    &["query"],
                    "BASE_TYPE_MAX_LENGTH",
                    format!("Must be {MEMBER_SEARCH_QUERY_CHARS_MAX} or fewer in length."),
                );
                String::new()
            }
            Some(s) => s.to_owned(),
        };
        let limit = q.int(
            "limit",
            1,
            MEMBERS_LIMIT_MAX,
            MEMBERS_LIMIT_DEFAULT,
            &mut errs,
        );
        errs.into_result()?;
        Ok(SearchMembersQuery {
            query,
            limit: clamp_u32(limit),
        })
    }
}

/// `GET /guilds/{g}/bans`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListBansQuery {
    /// Page size, 1..=1000, default 1000.
    pub limit: u32,
    /// Bans of users with an id below this one.
    pub before: Option<u64>,
    /// Bans of users with an id above this one.
    pub after: Option<u64>,
}

impl ListBansQuery {
    /// Decodes and validates.
    pub fn parse(q: &str) -> Result<Self, ApiError> {
        let q = Query::parse(q);
        let mut errs = FormErrors::default();
        let limit = q.int("limit", 1, BANS_LIMIT_MAX, BANS_LIMIT_MAX, &mut errs);
        let before = q.snowflake("before", &mut errs);
        let after = q.snowflake("after", &mut errs);
        errs.into_result()?;
        Ok(ListBansQuery {
            limit: clamp_u32(limit),
            before,
            after,
        })
    }
}

/// `GET .../reactions/{emoji}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListReactionsQuery {
    /// Users with an id above this one.
    pub after: Option<u64>,
    /// Page size, 1..=100, default 25.
    pub limit: u32,
    /// `type=1`: super reactions. We have none, so such a page is always empty.
    pub burst: bool,
}

impl ListReactionsQuery {
    /// Decodes and validates.
    pub fn parse(q: &str) -> Result<Self, ApiError> {
        let q = Query::parse(q);
        let mut errs = FormErrors::default();
        let after = q.snowflake("after", &mut errs);
        let limit = q.int(
            "limit",
            1,
            REACTIONS_LIMIT_MAX,
            REACTIONS_LIMIT_DEFAULT,
            &mut errs,
        );
        let kind = q.int("type", 0, 1, 0, &mut errs);
        errs.into_result()?;
        Ok(ListReactionsQuery {
            after,
            limit: clamp_u32(limit),
            burst: kind == 1,
        })
    }
}

/// `GET /guilds/{g}` and `GET /invites/{code}`: optional counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WithCountsQuery {
    /// Include approximate member and presence counts.
    pub with_counts: bool,
    /// Include the invite's expiry (`GET /invites/{code}` only).
    pub with_expiration: bool,
}

impl WithCountsQuery {
    /// Decodes and validates.
    pub fn parse(q: &str) -> Result<Self, ApiError> {
        let q = Query::parse(q);
        let mut errs = FormErrors::default();
        let with_counts = q.boolean("with_counts", &mut errs);
        let with_expiration = q.boolean("with_expiration", &mut errs);
        errs.into_result()?;
        Ok(WithCountsQuery {
            with_counts,
            with_expiration,
        })
    }
}

/// Page sizes are validated against limits far below `u32::MAX`.
fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn decodes_components() {
        let q = Query::parse("query=a+b%21&x=%zz&&empty=&query=second");
        assert_eq!(q.get("query"), Some("a b!"));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.get("empty"), None);
        assert_eq!(q.get("missing"), None);
    }

    #[test]
    fn pairs_beyond_the_cap_are_ignored() {
        let mut s: String = (0..QUERY_PAIRS_MAX).map(|i| format!("k{i}=1&")).collect();
        s.push_str("limit=5");
        let q = Query::parse(&s);
        assert_eq!(q.get("limit"), None);
        assert_eq!(q.get("k0"), Some("1"));
    }
}
