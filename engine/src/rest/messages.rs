//! Message bodies: create, edit, bulk delete, with embeds, allowed mentions and replies.
//!
//! Embeds are decoded into typed structs (only the fields Discord lets a bot set), so what the
//! store keeps and what the gateway sends back is exactly what was validated: unknown keys are
//! dropped, never echoed to other users.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use super::form::{FormErrors, Obj, Patch, with_object};
use super::limits::{
    ALLOWED_MENTIONS_IDS_MAX, BULK_DELETE_AGE_MAX_MS, BULK_DELETE_MAX, BULK_DELETE_MIN, COLOR_MAX,
    EMBED_AUTHOR_CHARS_MAX, EMBED_DESCRIPTION_CHARS_MAX, EMBED_FIELD_NAME_CHARS_MAX,
    EMBED_FIELD_VALUE_CHARS_MAX, EMBED_FIELDS_MAX, EMBED_FOOTER_CHARS_MAX, EMBED_TITLE_CHARS_MAX,
    EMBED_URL_CHARS_MAX, EMBEDS_MAX, EMBEDS_TOTAL_CHARS_MAX, MESSAGE_CONTENT_CHARS_MAX,
    MESSAGE_NONCE_CHARS_MAX,
};

/// Message flag: do not show embeds for links in the content.
pub const FLAG_SUPPRESS_EMBEDS: u64 = 1 << 2;
/// Message flag: do not notify mentioned users.
pub const FLAG_SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;
/// The flags a client may set when sending or editing a message.
pub const MESSAGE_FLAGS_SETTABLE: u64 = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS;
/// Most characters of an embed timestamp (ISO 8601 with nanoseconds and an offset is 35).
const EMBED_TIMESTAMP_CHARS_MAX: usize = 40;

/// A client nonce, echoed back in MESSAGE_CREATE: clients send strings or integers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Nonce {
    /// A string of at most 25 characters.
    Str(String),
    /// An integer.
    Int(i64),
}

/// `allowed_mentions`: which mentions in the content notify.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AllowedMentions {
    /// `parse` contains `everyone`: @everyone and @here notify.
    pub parse_everyone: bool,
    /// `parse` contains `roles`: every role mention notifies.
    pub parse_roles: bool,
    /// `parse` contains `users`: every user mention notifies.
    pub parse_users: bool,
    /// Roles that may be notified (exclusive with `parse_roles`).
    pub roles: Vec<u64>,
    /// Users that may be notified (exclusive with `parse_users`).
    pub users: Vec<u64>,
    /// Whether a reply notifies the replied-to author.
    pub replied_user: bool,
}

/// `message_reference`: the message this one replies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageReference {
    /// The replied-to message.
    pub message_id: u64,
    /// Its channel, if the client said (must be the target channel for a reply).
    pub channel_id: Option<u64>,
    /// Its guild, if the client said.
    pub guild_id: Option<u64>,
    /// Refuse the send when the message does not exist (default true); else send as a plain
    /// message.
    pub fail_if_not_exists: bool,
}

/// An embed's footer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EmbedFooter {
    /// Text, 1..=2048 characters.
    pub text: String,
    /// Icon URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

/// An embed's image or thumbnail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EmbedMedia {
    /// Source URL (http, https or attachment).
    pub url: String,
}

/// An embed's author.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EmbedAuthor {
    /// Name, 1..=256 characters.
    pub name: String,
    /// Link on the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Icon URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

/// One embed field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EmbedField {
    /// Name, 1..=256 characters.
    pub name: String,
    /// Value, 1..=1024 characters.
    pub value: String,
    /// Shown inline.
    pub inline: bool,
}

/// A rich embed, serialized as Discord's embed object (`type: "rich"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Embed {
    /// Always `rich` for embeds sent by clients.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Link on the title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// ISO 8601 timestamp, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// 24-bit RGB color.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<u32>,
    /// Footer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub footer: Option<EmbedFooter>,
    /// Image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<EmbedMedia>,
    /// Thumbnail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<EmbedMedia>,
    /// Author.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<EmbedAuthor>,
    /// Fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<EmbedField>,
}

impl Embed {
    /// Characters counted against the 6000-character total of a message's embeds.
    pub fn text_chars(&self) -> usize {
        let n = |s: &Option<String>| s.as_deref().map_or(0, |s| s.chars().count());
        n(&self.title)
            + n(&self.description)
            + self.footer.as_ref().map_or(0, |f| f.text.chars().count())
            + self.author.as_ref().map_or(0, |a| a.name.chars().count())
            + self
                .fields
                .iter()
                .map(|f| f.name.chars().count() + f.value.chars().count())
                .sum::<usize>()
    }
}

/// `POST /channels/{c}/messages`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateMessage {
    /// Content, at most 2000 characters (empty when only embeds are sent).
    pub content: String,
    /// Client nonce, echoed back.
    pub nonce: Option<Nonce>,
    /// Text to speech.
    pub tts: bool,
    /// Embeds, at most 10.
    pub embeds: Vec<Embed>,
    /// Mention restrictions; `None` is Discord's default (everything in the content notifies).
    pub allowed_mentions: Option<AllowedMentions>,
    /// The message replied to.
    pub message_reference: Option<MessageReference>,
    /// Flags ([`MESSAGE_FLAGS_SETTABLE`] only).
    pub flags: u64,
    /// With a nonce: a second send with the same nonce within a few seconds returns the first
    /// message instead of creating another.
    pub enforce_nonce: bool,
}

/// `PATCH /channels/{c}/messages/{m}`. Whether the edited message would be empty (50006)
/// depends on the stored message, so the handler checks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EditMessage {
    /// New content (`null` clears it).
    pub content: Patch<String>,
    /// New embeds (`null` or `[]` removes them).
    pub embeds: Patch<Vec<Embed>>,
    /// New flags (only [`FLAG_SUPPRESS_EMBEDS`] changes on edit).
    pub flags: Option<u64>,
    /// Mention restrictions for the new content.
    pub allowed_mentions: Option<AllowedMentions>,
}

/// `POST /channels/{c}/messages/bulk-delete`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkDelete {
    /// 2..=100 message ids, duplicates removed (first occurrence kept).
    pub messages: Vec<u64>,
}

impl BulkDelete {
    /// Refuses (50034) when a message is older than 14 days at `now_ms` (Unix milliseconds),
    /// judged by its snowflake, as Discord does without a lookup.
    pub fn check_age(&self, now_ms: u64) -> Result<(), ApiError> {
        let oldest_ok = now_ms.saturating_sub(BULK_DELETE_AGE_MAX_MS);
        if self
            .messages
            .iter()
            .any(|id| crate::snowflake::timestamp_ms(*id) < oldest_ok)
        {
            Err(ApiError::bulk_delete_too_old())
        } else {
            Ok(())
        }
    }
}

/// Whether `s` looks like an ISO 8601 date-time that Python's `fromisoformat` and JavaScript's
/// `Date` both read: `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM]`.
pub fn is_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Option<u32> {
        let part = b.get(from..from + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let date_ok = matches!(
        (digits(0, 4), digits(5, 2), digits(8, 2)),
        (Some(_), Some(1..=12), Some(1..=31))
    ) && sep(4, b'-')
        && sep(7, b'-');
    let time_ok = matches!(
        (digits(11, 2), digits(14, 2), digits(17, 2)),
        (Some(0..=23), Some(0..=59), Some(0..=59))
    ) && (sep(10, b'T') || sep(10, b' '))
        && sep(13, b':')
        && sep(16, b':');
    if !date_ok || !time_ok {
        return false;
    }
    let mut i = 19;
    if sep(i, b'.') {
        let n = b
            .get(i + 1..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
        if n == 0 || n > 9 {
            return false;
        }
        i += 1 + n;
    }
    match b.get(i) {
        None => true,
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            matches!(
                (digits(i + 1, 2), digits(i + 4, 2)),
                (Some(0..=23), Some(0..=59))
            ) && sep(i + 3, b':')
                && i + 6 == b.len()
        }
        _ => false,
    }
}

fn url(errs: &mut FormErrors, o: &Obj<'_>, key: &str, v: &Value) -> Option<String> {
    let s = errs.string(o, key, v, 1, EMBED_URL_CHARS_MAX)?;
    let scheme_ok = ["http://", "https://", "attachment://"]
        .iter()
        .any(|p| s.starts_with(p));
    if scheme_ok && !s.chars().any(char::is_whitespace) {
        Some(s)
    } else {
        errs.add_path(
            o.path(key, None),
            "URL_TYPE_INVALID_SCHEME",
            "Scheme must be one of (http, https, attachment).".to_owned(),
        );
        None
    }
}

fn embed(errs: &mut FormErrors, o: &Obj<'_>) -> Option<Embed> {
    let before = errs.count();
    let title = errs.opt(o, "title", |e, o, k, v| {
        e.string(o, k, v, 0, EMBED_TITLE_CHARS_MAX)
    });
    let description = errs.opt(o, "description", |e, o, k, v| {
        e.string(o, k, v, 0, EMBED_DESCRIPTION_CHARS_MAX)
    });
    let url_ = errs.opt(o, "url", url);
    let timestamp = errs.opt(o, "timestamp", |e, o, k, v| {
        let s = e.string(o, k, v, 1, EMBED_TIMESTAMP_CHARS_MAX)?;
        if is_iso8601(&s) {
            Some(s)
        } else {
            e.add_path(
                o.path(k, None),
                "DATE_TIME_TYPE_PARSE",
                format!("Could not parse {s}. Should be ISO8601."),
            );
            None
        }
    });
    let color = errs.opt(o, "color", |e, o, k, v| e.int(o, k, v, 0, COLOR_MAX));
    let footer = errs.opt(o, "footer", |e, o, k, v| {
        let f = o.nested(k, None, v, e)?;
        let text = e.req(&f, "text", |e, o, k, v| {
            e.string(o, k, v, 1, EMBED_FOOTER_CHARS_MAX)
        });
        let icon_url = e.opt(&f, "icon_url", url);
        Some(EmbedFooter {
            text: text?,
            icon_url,
        })
    });
    let media = |e: &mut FormErrors, o: &Obj<'_>, k: &str, v: &Value| {
        let m = o.nested(k, None, v, e)?;
        let url = e.req(&m, "url", url)?;
        Some(EmbedMedia { url })
    };
    let image = errs.opt(o, "image", media);
    let thumbnail = errs.opt(o, "thumbnail", media);
    let author = errs.opt(o, "author", |e, o, k, v| {
        let a = o.nested(k, None, v, e)?;
        let name = e.req(&a, "name", |e, o, k, v| {
            e.string(o, k, v, 1, EMBED_AUTHOR_CHARS_MAX)
        });
        let url_ = e.opt(&a, "url", url);
        let icon_url = e.opt(&a, "icon_url", url);
        Some(EmbedAuthor {
            name: name?,
            url: url_,
            icon_url,
        })
    });
    let fields = errs
        .opt(o, "fields", |e, o, k, v| {
            let items = e.array(o, k, v, 0, EMBED_FIELDS_MAX)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Some(f) = o.nested(k, Some(i), item, e) else {
                    continue;
                };
                let name = e.req(&f, "name", |e, o, k, v| {
                    e.string(o, k, v, 1, EMBED_FIELD_NAME_CHARS_MAX)
                });
                let value = e.req(&f, "value", |e, o, k, v| {
                    e.string(o, k, v, 1, EMBED_FIELD_VALUE_CHARS_MAX)
                });
                let inline = e.opt(&f, "inline", |e, o, k, v| e.boolean(o, k, v));
                if let (Some(name), Some(value)) = (name, value) {
                    out.push(EmbedField {
                        name,
                        value,
                        inline: inline.unwrap_or(false),
                    });
                }
            }
            Some(out)
        })
        .unwrap_or_default();
    if errs.count() != before {
        return None;
    }
    Some(Embed {
        kind: "rich",
        title,
        description,
        url: url_,
        timestamp,
        color: color.and_then(|c| u32::try_from(c).ok()),
        footer,
        image,
        thumbnail,
        author,
        fields,
    })
}

fn embeds(errs: &mut FormErrors, o: &Obj<'_>, key: &str, v: &Value) -> Option<Vec<Embed>> {
    let items = errs.array(o, key, v, 0, EMBEDS_MAX)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(e) = o
            .nested(key, Some(i), item, errs)
            .and_then(|eo| embed(errs, &eo))
        {
            out.push(e);
        }
    }
    let total: usize = out.iter().map(Embed::text_chars).sum();
    if total > EMBEDS_TOTAL_CHARS_MAX {
        errs.add_path(
            o.path(key, None),
            "BASE_TYPE_MAX_LENGTH",
            format!("Embed size exceeds maximum size of {EMBEDS_TOTAL_CHARS_MAX}"),
        );
        return None;
    }
    (out.len() == items.len()).then_some(out)
}

fn allowed_mentions(
    errs: &mut FormErrors,
    o: &Obj<'_>,
    key: &str,
    v: &Value,
) -> Option<AllowedMentions> {
    let a = o.nested(key, None, v, errs)?;
    let parse = errs
        .opt(&a, "parse", |e, o, k, v| {
            e.string_choices(o, k, v, &["everyone", "roles", "users"])
        })
        .unwrap_or_default();
    let roles = errs
        .opt(&a, "roles", |e, o, k, v| {
            e.snowflakes(o, k, v, 0, ALLOWED_MENTIONS_IDS_MAX)
        })
        .unwrap_or_default();
    let users = errs
        .opt(&a, "users", |e, o, k, v| {
            e.snowflakes(o, k, v, 0, ALLOWED_MENTIONS_IDS_MAX)
        })
        .unwrap_or_default();
    let replied_user = errs
        .opt(&a, "replied_user", |e, o, k, v| e.boolean(o, k, v))
        .unwrap_or(false);
    let has = |p: &str| parse.iter().any(|x| x == p);
    let out = AllowedMentions {
        parse_everyone: has("everyone"),
        parse_roles: has("roles"),
        parse_users: has("users"),
        roles,
        users,
        replied_user,
    };
    // Discord refuses both a blanket `parse` and an explicit list for the same kind.
    for (kind, blanket, list) in [
        ("users", out.parse_users, !out.users.is_empty()),
        ("roles", out.parse_roles, !out.roles.is_empty()),
    ] {
        if blanket && list {
            errs.add_path(
                o.path(key, None),
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                format!("parse:[\"{kind}\"] and {kind}: [ids] are mutually exclusive."),
            );
            return None;
        }
    }
    Some(out)
}

fn message_reference(
    errs: &mut FormErrors,
    o: &Obj<'_>,
    key: &str,
    v: &Value,
) -> Option<MessageReference> {
    let r = o.nested(key, None, v, errs)?;
    let message_id = errs.req(&r, "message_id", |e, o, k, v| e.snowflake(o, k, v));
    let channel_id = errs.opt(&r, "channel_id", |e, o, k, v| e.snowflake(o, k, v));
    let guild_id = errs.opt(&r, "guild_id", |e, o, k, v| e.snowflake(o, k, v));
    let fail_if_not_exists = errs
        .opt(&r, "fail_if_not_exists", |e, o, k, v| e.boolean(o, k, v))
        .unwrap_or(true);
    // Forwards (type 1) need attachments and snapshots we do not keep.
    errs.opt(&r, "type", |e, o, k, v| e.choice(o, k, v, &[0]));
    Some(MessageReference {
        message_id: message_id?,
        channel_id,
        guild_id,
        fail_if_not_exists,
    })
}

fn content(errs: &mut FormErrors, o: &Obj<'_>, key: &str, v: &Value) -> Option<String> {
    errs.string(o, key, v, 0, MESSAGE_CONTENT_CHARS_MAX)
}

fn nonce(errs: &mut FormErrors, o: &Obj<'_>, key: &str, v: &Value) -> Option<Nonce> {
    match v {
        Value::Number(n) => {
            let i = n.as_i64();
            if i.is_none() {
                errs.add_path(
                    o.path(key, None),
                    "NUMBER_TYPE_COERCE",
                    format!("Value \"{n}\" is not int."),
                );
            }
            i.map(Nonce::Int)
        }
        _ => errs
            .string(o, key, v, 0, MESSAGE_NONCE_CHARS_MAX)
            .map(Nonce::Str),
    }
}

fn flags(errs: &mut FormErrors, o: &Obj<'_>, key: &str, v: &Value) -> Option<u64> {
    let f = errs.int(o, key, v, 0, u64::MAX)?;
    if f & !MESSAGE_FLAGS_SETTABLE != 0 {
        errs.add_path(
            o.path(key, None),
            "MESSAGE_FLAGS_INVALID",
            "Only SUPPRESS_EMBEDS and SUPPRESS_NOTIFICATIONS can be set.".to_owned(),
        );
        return None;
    }
    Some(f)
}

impl CreateMessage {
    /// Decodes and validates a JSON body: 50109 for invalid JSON, 50035 for invalid fields,
    /// then 50006 when there is neither content (whitespace does not count) nor an embed.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let msg = with_object(body, |errs, o| CreateMessage {
            content: errs.opt(o, "content", content).unwrap_or_default(),
            nonce: errs.opt(o, "nonce", nonce),
            tts: errs
                .opt(o, "tts", |e, o, k, v| e.boolean(o, k, v))
                .unwrap_or(false),
            embeds: errs.opt(o, "embeds", embeds).unwrap_or_default(),
            allowed_mentions: errs.opt(o, "allowed_mentions", allowed_mentions),
            message_reference: errs.opt(o, "message_reference", message_reference),
            flags: errs.opt(o, "flags", flags).unwrap_or(0),
            enforce_nonce: errs
                .opt(o, "enforce_nonce", |e, o, k, v| e.boolean(o, k, v))
                .unwrap_or(false),
        })?;
        if msg.content.trim().is_empty() && msg.embeds.is_empty() {
            return Err(ApiError::empty_message());
        }
        Ok(msg)
    }
}

impl EditMessage {
    /// Decodes and validates a JSON body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        with_object(body, |errs, o| EditMessage {
            content: errs.patch(o, "content", content),
            embeds: errs.patch(o, "embeds", embeds),
            flags: errs.opt(o, "flags", flags),
            allowed_mentions: errs.opt(o, "allowed_mentions", allowed_mentions),
        })
    }
}

impl BulkDelete {
    /// Decodes and validates a JSON body (2..=100 ids, strings or integers).
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let ids = with_object(body, |errs, o| {
            errs.req(o, "messages", |e, o, k, v| {
                e.snowflakes(o, k, v, BULK_DELETE_MIN, BULK_DELETE_MAX)
            })
        })?;
        let mut messages: Vec<u64> = Vec::with_capacity(BULK_DELETE_MAX);
        for id in ids.unwrap_or_default() {
            if !messages.contains(&id) {
                messages.push(id);
            }
        }
        Ok(BulkDelete { messages })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_shapes() {
        for ok in [
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.123456+00:00",
            "2024-12-31 23:59:59-05:30",
        ] {
            assert!(is_iso8601(ok), "{ok}");
        }
        for bad in [
            "",
            "2024-13-02T03:04:05",
            "2024-01-02T24:04:05",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05+0000",
            "2024-01-02T03:04:05Zjunk",
            "yesterday",
        ] {
            assert!(!is_iso8601(bad), "{bad}");
        }
    }
}
