//! Bloom filter over partitions, stored in each sorted file.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::{BLOOM_BITS_PER_KEY, BLOOM_PROBES};
use crate::message::Part;

/// A bloom filter with double hashing over CRC32C.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u8>,
}

fn hashes(p: &Part) -> (u32, u32) {
    let mut buf = [0u8; 13];
    match *p {
        Part::Msg(k) => {
            buf[0] = 0;
            buf[1..9].copy_from_slice(&k.channel_id.to_le_bytes());
            buf[9..13].copy_from_slice(&k.bucket.to_le_bytes());
        }
        Part::Read(u) => {
            buf[0] = 1;
            buf[1..9].copy_from_slice(&u.to_le_bytes());
        }
    }
    let h1 = crc32c::crc32c(&buf);
    let h2 = crc32c::crc32c_append(0x9e37_79b9, &buf) | 1;
    (h1, h2)
}

impl Bloom {
    /// Builds a filter holding `parts`.
    pub fn build<'a>(parts: impl ExactSizeIterator<Item = &'a Part>) -> Self {
        let nbits = (parts.len() * BLOOM_BITS_PER_KEY)
            .max(64)
            .next_multiple_of(8);
        let mut bits = vec![0u8; nbits / 8];
        for p in parts {
            let (h1, h2) = hashes(p);
            for i in 0..BLOOM_PROBES {
                let bit = h1.wrapping_add(i.wrapping_mul(h2)) as usize % nbits;
                if let Some(b) = bits.get_mut(bit / 8) {
                    *b |= 1 << (bit % 8);
                }
            }
        }
        Self { bits }
    }

    /// Rebuilds from stored bytes.
    pub fn from_bytes(bits: Vec<u8>) -> Self {
        Self { bits }
    }

    /// Stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// False means certainly absent.
    pub fn may_contain(&self, p: &Part) -> bool {
        let nbits = self.bits.len() * 8;
        if nbits == 0 {
            return true;
        }
        let (h1, h2) = hashes(p);
        (0..BLOOM_PROBES).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) as usize % nbits;
            self.bits
                .get(bit / 8)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::PartitionKey;

    #[test]
    fn members_are_found_and_most_others_not() {
        let parts: Vec<Part> = (0..500)
            .map(|c| {
                Part::Msg(PartitionKey {
                    channel_id: c,
                    bucket: 7,
                })
            })
            .collect();
        let b = Bloom::build(parts.iter());
        assert!(parts.iter().all(|p| b.may_contain(p)));
        let fp = (1000..11000)
            .filter(|u| b.may_contain(&Part::Read(*u)))
            .count();
        assert!(fp < 500, "false positives {fp}");
    }
}
