//! Binary encoding of versions and keys, shared by the commit log and sorted files.
//!
//! Every decoder treats its input as hostile: bounded lengths, no panics.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::{
    CONTENT_BYTES_MAX, EMOJI_BYTES_MAX, EXTRA_JSON_BYTES_MAX, MENTIONS_MAX, NONCE_BYTES_MAX,
    REACTIONS_MAX,
};
use crate::message::{Body, Key, Message, PartitionKey, ReadState, Version};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Input ended early.
    #[error("truncated input")]
    Truncated,
    /// Unknown tag or enum value.
    #[error("bad tag {0}")]
    BadTag(u8),
    /// A length over its limit.
    #[error("length {0} over limit")]
    TooLong(usize),
    /// Text is not UTF-8.
    #[error("invalid utf-8")]
    Utf8,
    /// A checksum did not match.
    #[error("checksum mismatch")]
    Checksum,
    /// Wrong magic bytes.
    #[error("bad magic")]
    Magic,
    /// A format version this build does not read.
    #[error("unsupported format version {0}")]
    Version(u32),
    /// Structurally invalid content.
    #[error("invalid: {0}")]
    Invalid(&'static str),
}

/// Why a message cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Some field is over its limit in `limits.rs`.
    #[error("message field `{0}` over its limit")]
    Field(&'static str),
}

/// Checks a message against the limits before it is accepted.
pub fn check_message(m: &Message) -> Result<(), LimitError> {
    if m.content.len() > CONTENT_BYTES_MAX {
        return Err(LimitError::Field("content"));
    }
    if m.extra_json.len() > EXTRA_JSON_BYTES_MAX {
        return Err(LimitError::Field("extra_json"));
    }
    if m.mentions.len() > MENTIONS_MAX {
        return Err(LimitError::Field("mentions"));
    }
    if m.reactions.len() > REACTIONS_MAX
        || m.reactions.iter().any(|(e, _)| e.len() > EMOJI_BYTES_MAX)
    {
        return Err(LimitError::Field("reactions"));
    }
    if m.nonce.as_ref().is_some_and(|n| n.len() > NONCE_BYTES_MAX) {
        return Err(LimitError::Field("nonce"));
    }
    Ok(())
}

/// Little-endian reader over a slice.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(FormatError::Truncated)?;
        self.buf = tail;
        Ok(head)
    }
    /// Reads a u8.
    pub fn u8(&mut self) -> Result<u8, FormatError> {
        let b = self.take(1)?;
        b.first().copied().ok_or(FormatError::Truncated)
    }
    /// Reads a u16.
    pub fn u16(&mut self) -> Result<u16, FormatError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes(
            b.try_into().map_err(|_| FormatError::Truncated)?,
        ))
    }
    /// Reads a u32.
    pub fn u32(&mut self) -> Result<u32, FormatError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(
            b.try_into().map_err(|_| FormatError::Truncated)?,
        ))
    }
    /// Reads a u64.
    pub fn u64(&mut self) -> Result<u64, FormatError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| FormatError::Truncated)?,
        ))
    }
    fn bytes(&mut self, max: usize) -> Result<&'a [u8], FormatError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(FormatError::TooLong(n));
        }
        self.take(n)
    }
    fn string(&mut self, max: usize) -> Result<String, FormatError> {
        let b = self.bytes(max)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| FormatError::Utf8)
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, FormatError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u64()?)),
            t => Err(FormatError::BadTag(t)),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

const TAG_MESSAGE: u8 = 1;
const TAG_TOMBSTONE: u8 = 2;
const TAG_READ_STATE: u8 = 3;

/// Appends the encoding of `v` to `out`.
pub fn encode_version(v: &Version, out: &mut Vec<u8>) {
    out.extend_from_slice(&v.seq.to_le_bytes());
    match &v.body {
        Body::Message(m) => {
            out.push(TAG_MESSAGE);
            for x in [m.id, m.channel_id, m.guild_id, m.author_id] {
                out.extend_from_slice(&x.to_le_bytes());
            }
            out.push(m.kind);
            put_bytes(out, m.content.as_bytes());
            out.extend_from_slice(&m.flags.to_le_bytes());
            put_opt_u64(out, m.edited_timestamp_ms);
            out.extend_from_slice(&(m.mentions.len() as u32).to_le_bytes());
            for u in &m.mentions {
                out.extend_from_slice(&u.to_le_bytes());
            }
            put_bytes(out, &m.extra_json);
            out.extend_from_slice(&(m.reactions.len() as u32).to_le_bytes());
            for (e, c) in &m.reactions {
                put_bytes(out, e.as_bytes());
                out.extend_from_slice(&c.to_le_bytes());
            }
            out.push(u8::from(m.pinned));
            put_opt_u64(out, m.referenced_message_id);
            match &m.nonce {
                None => out.push(0),
                Some(n) => {
                    out.push(1);
                    put_bytes(out, n.as_bytes());
                }
            }
        }
        Body::Tombstone {
            channel_id,
            message_id,
            deleted_at_ms,
        } => {
            out.push(TAG_TOMBSTONE);
            for x in [*channel_id, *message_id, *deleted_at_ms] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Body::ReadState(r) => {
            out.push(TAG_READ_STATE);
            for x in [r.user_id, r.channel_id, r.last_read_id] {
                out.extend_from_slice(&x.to_le_bytes());
            }
            out.extend_from_slice(&r.mention_count.to_le_bytes());
        }
    }
}

/// Decodes one version; the whole input must be consumed.
pub fn decode_version(buf: &[u8]) -> Result<Version, FormatError> {
    let mut r = Reader::new(buf);
    let seq = r.u64()?;
    let body = match r.u8()? {
        TAG_MESSAGE => {
            let id = r.u64()?;
            let channel_id = r.u64()?;
            let guild_id = r.u64()?;
            let author_id = r.u64()?;
            let kind = r.u8()?;
            let content = r.string(CONTENT_BYTES_MAX)?;
            let flags = r.u64()?;
            let edited_timestamp_ms = r.opt_u64()?;
            let n = r.u32()? as usize;
            if n > MENTIONS_MAX {
                return Err(FormatError::TooLong(n));
            }
            let mut mentions = Vec::with_capacity(n);
            for _ in 0..n {
                mentions.push(r.u64()?);
            }
            let extra_json = r.bytes(EXTRA_JSON_BYTES_MAX)?.to_vec();
            let n = r.u32()? as usize;
            if n > REACTIONS_MAX {
                return Err(FormatError::TooLong(n));
            }
            let mut reactions = Vec::with_capacity(n);
            for _ in 0..n {
                let e = r.string(EMOJI_BYTES_MAX)?;
                reactions.push((e, r.u32()?));
            }
            let pinned = match r.u8()? {
                0 => false,
                1 => true,
                t => return Err(FormatError::BadTag(t)),
            };
            let referenced_message_id = r.opt_u64()?;
            let nonce = match r.u8()? {
                0 => None,
                1 => Some(r.string(NONCE_BYTES_MAX)?),
                t => return Err(FormatError::BadTag(t)),
            };
            Body::Message(Message {
                id,
                channel_id,
                guild_id,
                author_id,
                kind,
                content,
                flags,
                edited_timestamp_ms,
                mentions,
                extra_json,
                reactions,
                pinned,
                referenced_message_id,
                nonce,
            })
        }
        TAG_TOMBSTONE => Body::Tombstone {
            channel_id: r.u64()?,
            message_id: r.u64()?,
            deleted_at_ms: r.u64()?,
        },
        TAG_READ_STATE => Body::ReadState(ReadState {
            user_id: r.u64()?,
            channel_id: r.u64()?,
            last_read_id: r.u64()?,
            mention_count: r.u32()?,
        }),
        t => return Err(FormatError::BadTag(t)),
    };
    if r.remaining() != 0 {
        return Err(FormatError::Invalid("trailing bytes in version"));
    }
    Ok(Version { seq, body })
}

/// Encoded size of a key.
pub const KEY_BYTES: usize = 21;

/// Appends a fixed-size, order-irrelevant encoding of `k` (ordering uses `Key: Ord`).
pub fn encode_key(k: &Key, out: &mut Vec<u8>) {
    match *k {
        Key::Msg(p, id) => {
            out.push(0);
            out.extend_from_slice(&p.channel_id.to_le_bytes());
            out.extend_from_slice(&p.bucket.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        Key::Read(user, channel) => {
            out.push(1);
            out.extend_from_slice(&user.to_le_bytes());
            out.extend_from_slice(&channel.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
        }
    }
}

/// Decodes a key written by `encode_key`.
pub fn decode_key(r: &mut Reader<'_>) -> Result<Key, FormatError> {
    match r.u8()? {
        0 => {
            let channel_id = r.u64()?;
            let bucket = r.u32()?;
            let id = r.u64()?;
            Ok(Key::Msg(PartitionKey { channel_id, bucket }, id))
        }
        1 => {
            let user = r.u64()?;
            let channel = r.u64()?;
            r.take(4)?;
            Ok(Key::Read(user, channel))
        }
        t => Err(FormatError::BadTag(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Message {
        Message {
            id: 5 << 22,
            channel_id: 9,
            guild_id: 3,
            author_id: 4,
            kind: 0,
            content: "héllo".into(),
            flags: 2,
            edited_timestamp_ms: Some(7),
            mentions: vec![1, 2],
            extra_json: b"{\"a\":1}".to_vec(),
            reactions: vec![("👍".into(), 3)],
            pinned: true,
            referenced_message_id: Some(1),
            nonce: Some("n".into()),
        }
    }

    #[test]
    fn versions_round_trip_and_truncations_fail() {
        for body in [
            Body::Message(sample()),
            Body::Tombstone {
                channel_id: 1,
                message_id: 2,
                deleted_at_ms: 3,
            },
            Body::ReadState(ReadState {
                user_id: 1,
                channel_id: 2,
                last_read_id: 3,
                mention_count: 4,
            }),
        ] {
            let v = Version { seq: 42, body };
            let mut buf = Vec::new();
            encode_version(&v, &mut buf);
            assert_eq!(decode_version(&buf), Ok(v));
            for cut in 0..buf.len() {
                assert!(decode_version(buf.get(..cut).unwrap_or_default()).is_err());
            }
        }
    }

    #[test]
    fn keys_round_trip() {
        for k in [
            Key::Msg(
                PartitionKey {
                    channel_id: 1,
                    bucket: 2,
                },
                3,
            ),
            Key::Read(4, 5),
        ] {
            let mut buf = Vec::new();
            encode_key(&k, &mut buf);
            assert_eq!(buf.len(), KEY_BYTES);
            assert_eq!(decode_key(&mut Reader::new(&buf)), Ok(k));
        }
    }
}
