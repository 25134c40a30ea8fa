//! The stored data model: messages, their versions and read states.

use crate::snowflake::bucket_of;

/// A message row. Edits store a whole new version; attachments and embeds stay opaque JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Snowflake id; orders rows within a partition.
    pub id: u64,
    /// Channel the message lives in.
    pub channel_id: u64,
    /// Guild, 0 for direct messages.
    pub guild_id: u64,
    /// Author user id.
    pub author_id: u64,
    /// Discord message type.
    pub kind: u8,
    /// Text content.
    pub content: String,
    /// Message flags bitfield.
    pub flags: u64,
    /// Unix milliseconds of the last edit.
    pub edited_timestamp_ms: Option<u64>,
    /// Mentioned user ids.
    pub mentions: Vec<u64>,
    /// Attachments and embeds metadata as opaque JSON bytes.
    pub extra_json: Vec<u8>,
    /// Reactions: emoji to count, in insertion order.
    pub reactions: Vec<(String, u32)>,
    /// Whether the message is pinned.
    pub pinned: bool,
    /// Id of the message this one replies to.
    pub referenced_message_id: Option<u64>,
    /// Client nonce, as sent.
    pub nonce: Option<String>,
}

/// Per (user, channel) read position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadState {
    /// Reader.
    pub user_id: u64,
    /// Channel read.
    pub channel_id: u64,
    /// Last message id the user has read.
    pub last_read_id: u64,
    /// Mentions of the user since `last_read_id`.
    pub mention_count: u32,
}

/// A partition: one channel's messages in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// Channel.
    pub channel_id: u64,
    /// Time bucket of the Snowflake (see `snowflake::bucket_of`).
    pub bucket: u32,
}

impl PartitionKey {
    /// Partition of message `id` in `channel_id`.
    pub fn of(channel_id: u64, id: u64) -> Self {
        Self {
            channel_id,
            bucket: bucket_of(id),
        }
    }
}

/// What one version of a key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A message, created or edited.
    Message(Message),
    /// A deletion of message `message_id` in `channel_id`.
    Tombstone {
        /// Channel.
        channel_id: u64,
        /// Deleted id.
        message_id: u64,
        /// Caller's clock at deletion; compaction drops the tombstone after a TTL.
        deleted_at_ms: u64,
    },
    /// A read state.
    ReadState(ReadState),
}

/// A versioned write: the commit-log record and the sorted-file entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Log sequence number; the highest wins.
    pub seq: u64,
    /// Content.
    pub body: Body,
}

/// Sort key of a version: messages by (channel, bucket, id), then read states by (user, channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// A message row.
    Msg(PartitionKey, u64),
    /// A read state row (user, channel).
    Read(u64, u64),
}

impl Key {
    /// The partition a key belongs to: messages by (channel, bucket), read states by user.
    pub fn partition(&self) -> Part {
        match *self {
            Key::Msg(p, _) => Part::Msg(p),
            Key::Read(user, _) => Part::Read(user),
        }
    }
}

/// Partition of a key, used by the partition index and bloom filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// Message partition.
    Msg(PartitionKey),
    /// All read states of a user.
    Read(u64),
}

impl Body {
    /// The key this body is stored under.
    pub fn key(&self) -> Key {
        match self {
            Body::Message(m) => Key::Msg(PartitionKey::of(m.channel_id, m.id), m.id),
            Body::Tombstone {
                channel_id,
                message_id,
                ..
            } => Key::Msg(PartitionKey::of(*channel_id, *message_id), *message_id),
            Body::ReadState(r) => Key::Read(r.user_id, r.channel_id),
        }
    }

    /// Rough memory footprint, for memtable accounting.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Body::Message(m) => {
                96 + m.content.len()
                    + m.extra_json.len()
                    + 8 * m.mentions.len()
                    + m.reactions.iter().map(|(e, _)| e.len() + 28).sum::<usize>()
                    + m.nonce.as_ref().map_or(0, String::len)
            }
            Body::Tombstone { .. } | Body::ReadState(_) => 48,
        }
    }
}
