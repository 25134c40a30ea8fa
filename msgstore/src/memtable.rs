//! In-memory table of the newest durable versions, shaped for append-mostly partitions.

use std::collections::BTreeMap;

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

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.msgs.values().map(BTreeMap::len).sum::<usize>() + self.reads.len()
    }

    /// True if `v` is a tombstone body (helper for callers filtering rows).
    pub fn is_tombstone(v: &Version) -> bool {
        matches!(v.body, Body::Tombstone { .. })
    }
}
