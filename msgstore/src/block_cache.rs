//! Bounded cache of decoded data blocks, least recently used out first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::message::Version;

/// Cache key: (file number, block index).
pub type BlockId = (u64, u32);

/// A decoded block, shared between the cache and the queries that loaded it (no deep copy).
pub type Block = Arc<Vec<Version>>;

/// Decoded blocks bounded by their encoded size.
#[derive(Debug)]
pub struct BlockCache {
    capacity_bytes: usize,
    used_bytes: usize,
    tick: u64,
    map: HashMap<BlockId, (Block, usize, u64)>,
    by_age: BTreeMap<u64, BlockId>,
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes`.
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            capacity_bytes,
            used_bytes: 0,
            tick: 0,
            map: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// Marks a block recently used; false if absent.
    pub fn touch(&mut self, id: BlockId) -> bool {
        self.tick += 1;
        let Some(e) = self.map.get_mut(&id) else {
            return false;
        };
        self.by_age.remove(&e.2);
        e.2 = self.tick;
        self.by_age.insert(self.tick, id);
        true
    }

    /// A cached block, without changing its age (call `touch` first).
    pub fn peek(&self, id: BlockId) -> Option<&Vec<Version>> {
        self.map.get(&id).map(|e| &*e.0)
    }

    /// Inserts a block of `bytes` encoded size, evicting old ones.
    pub fn insert(&mut self, id: BlockId, block: Block, bytes: usize) {
        if bytes > self.capacity_bytes {
            return;
        }
        self.remove(id);
        while self.used_bytes + bytes > self.capacity_bytes {
            let Some((_, old)) = self.by_age.pop_first() else {
                break;
            };
            if let Some((_, b, _)) = self.map.remove(&old) {
                self.used_bytes -= b;
            }
        }
        self.tick += 1;
        self.used_bytes += bytes;
        self.map.insert(id, (block, bytes, self.tick));
        self.by_age.insert(self.tick, id);
    }

    /// Drops a block (its file was compacted away).
    pub fn remove(&mut self, id: BlockId) {
        if let Some((_, b, t)) = self.map.remove(&id) {
            self.used_bytes -= b;
            self.by_age.remove(&t);
        }
    }

    /// Bytes held.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_capacity_and_evicts_oldest() {
        let mut c = BlockCache::new(100);
        for i in 0..10 {
            c.insert((1, i), Block::default(), 30);
            assert!(c.used_bytes() <= 100);
        }
        assert!(!c.touch((1, 0)));
        assert!(c.touch((1, 9)) && c.peek((1, 9)).is_some());
    }
}
