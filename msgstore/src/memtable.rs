//! In-memory table of the newest durable versions, shaped for append-mostly partitions.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use crate::message::{Body, Key, PartitionKey, Version};

/// Newest version per key; only acknowledged (durable) writes enter it.
#[derive(Debug, Default)]
pub struct Memtable {
    msgs: BTreeMap<PartitionKey, BTreeMap<u64, Version>>,
    reads: BTreeMap<(u64, u64), Version>,
    bytes: usize,
    max_seq: u64,
}

impl Memtable {
    /// Inserts `v`, replacing any older version of its key.
    pub fn insert(&mut self, v: Version) {
        self.max_seq = self.max_seq.max(v.seq);
        self.bytes += v.body.approx_bytes();
        match v.body.key() {
            Key::Msg(p, id) => {
                if let Some(old) = self.msgs.entry(p).or_default().insert(id, v) {
                    self.bytes = self.bytes.saturating_sub(old.body.approx_bytes());
                }
            }
            Key::Read(u, c) => {
                if let Some(old) = self.reads.insert((u, c), v) {
                    self.bytes = self.bytes.saturating_sub(old.body.approx_bytes());
                }
            }
        }
    }

    /// Approximate memory held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Highest sequence number inserted (0 when empty).
    pub fn max_seq(&self) -> u64 {
        self.max_seq
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty() && self.reads.is_empty()
    }

    /// Rows of one partition.
    pub fn partition(&self, p: &PartitionKey) -> Option<&BTreeMap<u64, Version>> {
        self.msgs.get(p)
    }

    /// Read state version of (user, channel).
    pub fn read_state(&self, user: u64, channel: u64) -> Option<&Version> {
        self.reads.get(&(user, channel))
    }

    /// Partitions present.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionKey> {
        self.msgs.keys()
    }

    /// All versions in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Version> {
        self.msgs
            .values()
            .flat_map(|m| m.values())
            .chain(self.reads.values())
    }

    /// Versions with keys strictly after `after` (all of them for `None`), in key order: a
    /// flush resumes here on its next step.
    pub fn iter_after(&self, after: Option<Key>) -> Box<dyn Iterator<Item = &Version> + '_> {
        match after {
            None => Box::new(self.iter()),
            Some(Key::Msg(p, id)) => {
                let rest_of_partition = self
                    .msgs
                    .get(&p)
                    .into_iter()
                    .flat_map(move |m| m.range((Excluded(id), Unbounded)).map(|(_, v)| v));
                let later_partitions = self
                    .msgs
                    .range((Excluded(p), Unbounded))
                    .flat_map(|(_, m)| m.values());
                Box::new(
                    rest_of_partition
                        .chain(later_partitions)
                        .chain(self.reads.values()),
                )
            }
            Some(Key::Read(u, c)) => Box::new(
                self.reads
                    .range((Excluded((u, c)), Unbounded))
                    .map(|(_, v)| v),
            ),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.msgs.values().map(BTreeMap::len).sum::<usize>() + self.reads.len()
    }

    /// True if `v` is a tombstone body (helper for callers filtering rows).
    pub fn is_tombstone(v: &Version) -> bool {
        matches!(v.body, Body::Tombstone { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, ReadState};

    fn msg(seq: u64, channel_id: u64, id: u64) -> Version {
        Version {
            seq,
            body: Body::Message(Message {
                id,
                channel_id,
                ..Message::default()
            }),
        }
    }

    #[test]
    fn iter_after_resumes_exactly_after_a_key() {
        let mut m = Memtable::default();
        let mut seq = 0;
        for ch in [3u64, 1, 2] {
            for id in [5u64 << 22, 9 << 22, 7 << 22] {
                seq += 1;
                m.insert(msg(seq, ch, id));
            }
        }
        for user in [4u64, 2] {
            seq += 1;
            m.insert(Version {
                seq,
                body: Body::ReadState(ReadState {
                    user_id: user,
                    channel_id: 1,
                    ..ReadState::default()
                }),
            });
        }
        let all: Vec<Key> = m.iter().map(|v| v.body.key()).collect();
        assert_eq!(all.len(), 11);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "key order");
        assert_eq!(m.iter_after(None).count(), all.len());
        // Resuming after each key yields exactly the keys after it, whatever its kind.
        for (i, k) in all.iter().enumerate() {
            let rest: Vec<Key> = m.iter_after(Some(*k)).map(|v| v.body.key()).collect();
            assert_eq!(rest, all[i + 1..].to_vec(), "after {k:?}");
        }
    }
}
