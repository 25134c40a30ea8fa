//! MESSAGE_CREATE's shape (also the `POST /channels/{id}/messages` answer) from a borrowed
//! view, so the message store's records are serialized without being copied into a model.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::json::{partial_member_json, user_json};
use super::model::{Member, UserInfo};
use super::time::{iso8601, snowflake_ms};
use serde_json::{Value, json};

/// What a reply points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageReference {
    /// The message replied to.
    pub message_id: u64,
    /// Its channel.
    pub channel_id: u64,
    /// Its guild.
    pub guild_id: Option<u64>,
}

/// A message as the store holds it, borrowed for serialization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MessageView<'a> {
    /// Message id; its timestamp is the message's `timestamp`.
    pub id: u64,
    /// Channel.
    pub channel_id: u64,
    /// Guild (none in DMs).
    pub guild_id: Option<u64>,
    /// Message type (0 default, 19 reply...).
    pub kind: u8,
    /// Text.
    pub content: &'a str,
    /// Author.
    pub author: &'a UserInfo,
    /// Author's member in the guild (serialized without `user`).
    pub member: Option<&'a Member>,
    /// Users mentioned.
    pub mentions: &'a [UserInfo],
    /// Roles mentioned.
    pub mention_roles: &'a [u64],
    /// Whether @everyone or @here was mentioned (and allowed).
    pub mention_everyone: bool,
    /// Attachment objects, already in API shape.
    pub attachments: &'a [Value],
    /// Embed objects, already in API shape.
    pub embeds: &'a [Value],
    /// Component objects, already in API shape.
    pub components: &'a [Value],
    /// Reaction objects, already in API shape (omitted when empty).
    pub reactions: &'a [Value],
    /// Pinned.
    pub pinned: bool,
    /// Text-to-speech.
    pub tts: bool,
    /// Last edit, Unix milliseconds.
    pub edited_at_ms: Option<u64>,
    /// Message flags.
    pub flags: u64,
    /// The client's nonce, echoed back as given (string or integer).
    pub nonce: Option<&'a Value>,
    /// What it replies to.
    pub message_reference: Option<MessageReference>,
    /// The message replied to, already serialized (`Value::Null` when it was deleted).
    pub referenced_message: Option<&'a Value>,
}

impl<'a> MessageView<'a> {
    /// A plain message with nothing but text.
    pub fn new(
        id: u64,
        channel_id: u64,
        guild_id: Option<u64>,
        author: &'a UserInfo,
        content: &'a str,
    ) -> Self {
        Self {
            id,
            channel_id,
            guild_id,
            kind: 0,
            content,
            author,
            member: None,
            mentions: &[],
            mention_roles: &[],
            mention_everyone: false,
            attachments: &[],
            embeds: &[],
            components: &[],
            reactions: &[],
            pinned: false,
            tts: false,
            edited_at_ms: None,
            flags: 0,
            nonce: None,
            message_reference: None,
            referenced_message: None,
        }
    }
}

/// MESSAGE_CREATE's `d`.
pub fn message_json(m: &MessageView<'_>) -> Value {
    let mut v = json!({
        "id": m.id.to_string(),
        "channel_id": m.channel_id.to_string(),
        "type": m.kind,
        "content": m.content,
        "author": user_json(m.author),
        "mentions": m.mentions.iter().map(user_json).collect::<Vec<_>>(),
        "mention_roles": m.mention_roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "mention_everyone": m.mention_everyone,
        "mention_channels": [],
        "attachments": m.attachments,
        "embeds": m.embeds,
        "components": m.components,
        "pinned": m.pinned,
        "tts": m.tts,
        "timestamp": iso8601(snowflake_ms(m.id)),
        "edited_timestamp": m.edited_at_ms.map(iso8601),
        "flags": m.flags,
    });
    let Some(obj) = v.as_object_mut() else {
        return v;
    };
    if let Some(g) = m.guild_id {
        obj.insert("guild_id".into(), Value::String(g.to_string()));
    }
    if let Some(member) = m.member {
        obj.insert("member".into(), partial_member_json(member));
    }
    if let Some(n) = m.nonce {
        obj.insert("nonce".into(), n.clone());
    }
    if let Some(r) = m.message_reference {
        let mut reference = json!({
            "type": 0,
            "message_id": r.message_id.to_string(),
            "channel_id": r.channel_id.to_string(),
        });
        if let (Some(ro), Some(g)) = (reference.as_object_mut(), r.guild_id) {
            ro.insert("guild_id".into(), Value::String(g.to_string()));
        }
        obj.insert("message_reference".into(), reference);
        obj.insert(
            "referenced_message".into(),
            m.referenced_message.cloned().unwrap_or(Value::Null),
        );
    }
    if !m.reactions.is_empty() {
        obj.insert("reactions".into(), Value::from(m.reactions.to_vec()));
    }
    v
}
