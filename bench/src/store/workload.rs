//! The store benchmark's workload: Discord-like messages generated from their index alone, so
//! both stores get byte-identical messages without holding them in memory, and a checker can
//! count what each channel must hold.
//!
//! - Ids are Snowflakes (Discord epoch, worker 1, shard 0) whose time part walks evenly through
//!   `history_days` of history starting 2026-01-01, so partitions (10-day buckets) fill as a
//!   real channel's do.
//! - Each message goes to a channel drawn from the index's hash (uniform over `channels`);
//!   channel ids are Snowflakes too.
//! - Content is 200..=1000 bytes of word-like text cut from a corpus of pseudo-words with a
//!   skewed word frequency (it compresses like chat text, not like random bytes); 1 in 8
//!   messages carries an attachment's JSON metadata, 1 in 10 a mention, 1 in 20 a reply
//!   reference, 4 in 5 a client nonce.
//! - The key both stores order by is (channel, bucket, message id); RocksDB gets it as 20
//!   big-endian bytes and the value is msgstore's encoding of the message, so value sizes are the
//!   same for both.

use msgstore::Message;
use msgstore::codec::encode_version;
use msgstore::message::{Body, Version};
use msgstore::snowflake::{EPOCH_MS, bucket_of};

use super::limits::{
    CONTENT_BYTES_MAX, CONTENT_BYTES_MIN, CORPUS_BYTES, VOCABULARY_WORDS, WORD_LETTERS_MAX,
};

/// Unix milliseconds of the first message: 2026-01-01T00:00:00Z.
const FIRST_UNIX_MS: u64 = 1_767_225_600_000;
/// Worker bits of generated ids (node 1, shard 0), as the engine's generator lays them out.
const ID_WORKER_BITS: u64 = 1 << 17;
/// Milliseconds per day.
const DAY_MS: u64 = 24 * 3600 * 1000;
/// Bytes of a RocksDB key: channel (8), bucket (4), message id (8), big-endian.
pub const KEY_BYTES: usize = 20;

/// SplitMix64: a fast, well-mixed hash of an index (the generator needs no state).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The messages of one run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Messages appended.
    pub messages: u64,
    /// Channels they go to.
    pub channels: u64,
    seed: u64,
    first_ms: u64,
    ms_per_message: u64,
    corpus: String,
    /// Messages each channel index receives.
    per_channel: Vec<u64>,
    /// Index of each channel's newest message (`u64::MAX` if none).
    newest: Vec<u64>,
}

impl Workload {
    /// A workload of `messages` over `channels` spanning `history_days`, drawn from `seed`.
    pub fn new(messages: u64, channels: u64, history_days: u64, seed: u64) -> Self {
        let channels = channels.max(1);
        let span_ms = history_days.max(1) * DAY_MS;
        let mut w = Workload {
            messages,
            channels,
            seed,
            first_ms: FIRST_UNIX_MS - EPOCH_MS,
            ms_per_message: (span_ms / messages.max(1)).max(1),
            corpus: corpus(seed),
            per_channel: vec![0; channels as usize],
            newest: vec![u64::MAX; channels as usize],
        };
        for i in 0..messages {
            let c = w.channel_index(i) as usize;
            if let Some(n) = w.per_channel.get_mut(c) {
                *n += 1;
            }
            if let Some(n) = w.newest.get_mut(c) {
                *n = i;
            }
        }
        w
    }

    fn h(&self, i: u64, salt: u64) -> u64 {
        mix(i ^ self.seed.rotate_left(17) ^ salt.wrapping_mul(0xa076_1d64_78bd_642f))
    }

    /// Channel index (0..channels) of message `i`.
    pub fn channel_index(&self, i: u64) -> u64 {
        self.h(i, 1) % self.channels
    }

    /// Channel id (a Snowflake from 2016) of channel index `c`.
    pub fn channel_id(&self, c: u64) -> u64 {
        ((31_536_000_000 + c * 1000) << 22) | ID_WORKER_BITS | (c & 0xfff)
    }

    /// Snowflake of message `i`: strictly increasing in `i`.
    pub fn id_of(&self, i: u64) -> u64 {
        ((self.first_ms + i * self.ms_per_message) << 22) | ID_WORKER_BITS | (i & 0xfff)
    }

    /// Messages channel index `c` holds once all are appended.
    pub fn messages_in(&self, c: u64) -> u64 {
        self.per_channel.get(c as usize).copied().unwrap_or(0)
    }

    /// Id of channel index `c`'s newest message, if it has any.
    pub fn newest_id(&self, c: u64) -> Option<u64> {
        self.newest
            .get(c as usize)
            .filter(|i| **i != u64::MAX)
            .map(|i| self.id_of(*i))
    }

    /// Message `i`, the same every time.
    pub fn message(&self, i: u64) -> Message {
        let id = self.id_of(i);
        let channel_id = self.channel_id(self.channel_index(i));
        let h = self.h(i, 2);
        let len =
            CONTENT_BYTES_MIN + (h % (CONTENT_BYTES_MAX - CONTENT_BYTES_MIN + 1) as u64) as usize;
        let room = self
            .corpus
            .len()
            .saturating_sub(len + WORD_LETTERS_MAX + 1)
            .max(1);
        let mut start = (self.h(i, 3) % room as u64) as usize;
        // Start at a word boundary (the corpus is ASCII, so every index is a char boundary).
        while self
            .corpus
            .as_bytes()
            .get(start)
            .is_some_and(|b| *b != b' ')
            && start > 0
        {
            start -= 1;
        }
        let content = self
            .corpus
            .get(start..start + len)
            .unwrap_or_default()
            .trim_start()
            .to_owned();
        let author_id = (((20_000_000_000 + (h >> 20) % 5000) << 22) | ID_WORKER_BITS) | 7;
        let extra_json = if h.is_multiple_of(8) {
            let att = id + 1;
            format!(
                "{{\"attachments\":[{{\"id\":\"{att}\",\"filename\":\"image_{n}.png\",\
                 \"size\":{size},\"url\":\"https://cdn.example.com/attachments/{channel_id}/{att}/\
                 image_{n}.png\",\"content_type\":\"image/png\",\"width\":1280,\"height\":720}}]}}",
                n = h % 10_000,
                size = 20_000 + h % 2_000_000,
            )
            .into_bytes()
        } else {
            Vec::new()
        };
        Message {
            id,
            channel_id,
            guild_id: ((25_000_000_000u64) << 22) | ID_WORKER_BITS,
            author_id,
            kind: if h % 20 == 3 { 19 } else { 0 },
            content,
            flags: 0,
            edited_timestamp_ms: None,
            mentions: if h % 10 == 1 {
                vec![(((20_000_000_000 + (h >> 33) % 5000) << 22) | ID_WORKER_BITS) | 7]
            } else {
                Vec::new()
            },
            extra_json,
            reactions: Vec::new(),
            pinned: h % 500 == 7,
            referenced_message_id: (h % 20 == 3 && i > 0)
                .then(|| self.id_of(i - 1 - (h >> 50) % i.min(50))),
            nonce: (!h.is_multiple_of(5)).then(|| (id + (h >> 40) % 1000).to_string()),
        }
    }
}

/// The RocksDB key of a message: channel, bucket, id, big-endian so byte order is key order.
pub fn key(channel_id: u64, id: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    k[..8].copy_from_slice(&channel_id.to_be_bytes());
    k[8..12].copy_from_slice(&bucket_of(id).to_be_bytes());
    k[12..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The RocksDB value of a message: msgstore's encoding (what its log record carries).
pub fn value(m: Message, out: &mut Vec<u8>) {
    out.clear();
    encode_version(
        &Version {
            seq: 0,
            body: Body::Message(m),
        },
        out,
    );
}

/// Pseudo-words with a skewed frequency, joined by spaces, `CORPUS_BYTES` long.
fn corpus(seed: u64) -> String {
    let words: Vec<String> = (0..VOCABULARY_WORDS as u64)
        .map(|w| {
            let h = mix(w ^ seed);
            let n = 1 + (h % WORD_LETTERS_MAX as u64) as usize;
            (0..n)
                .map(|k| char::from(b'a' + (mix(h ^ k as u64) % 26) as u8))
                .collect()
        })
        .collect();
    let mut out = String::with_capacity(CORPUS_BYTES + WORD_LETTERS_MAX + 1);
    let mut k = 0u64;
    while out.len() < CORPUS_BYTES {
        // Squaring a uniform draw favours low indexes: a few words are very common, as in chat.
        let u = (mix(k ^ seed.rotate_left(7)) % 65_536) as f64 / 65_536.0;
        let idx = ((u * u) * VOCABULARY_WORDS as f64) as usize;
        if let Some(w) = words.get(idx) {
            out.push_str(w);
            out.push(' ');
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_deterministic_ordered_and_sized() {
        let w = Workload::new(10_000, 50, 120, 7);
        assert_eq!(w.message(1234), w.message(1234));
        for i in 1..10_000 {
            assert!(w.id_of(i) > w.id_of(i - 1));
        }
        let total: u64 = (0..50).map(|c| w.messages_in(c)).sum();
        assert_eq!(total, 10_000);
        for i in (0..10_000).step_by(97) {
            let m = w.message(i);
            assert!(
                m.content.len() >= CONTENT_BYTES_MIN - WORD_LETTERS_MAX - 1,
                "{}",
                m.content.len()
            );
            assert!(m.content.len() <= CONTENT_BYTES_MAX);
            msgstore::codec::check_message(&m).unwrap();
        }
        // History spans the requested days: first and last fall ~12 buckets apart.
        let span = bucket_of(w.id_of(9_999)) - bucket_of(w.id_of(0));
        assert!((11..=13).contains(&span), "{span}");
    }

    #[test]
    fn keys_sort_like_the_store() {
        let (a, b) = (key(5, 1 << 40), key(5, (1 << 40) + 1));
        assert!(a < b);
        assert!(key(5, u64::MAX >> 1) < key(6, 1));
    }
}
