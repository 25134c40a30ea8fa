//! A fixed-capacity arena of outgoing datagrams, filled by the room and drained by the engine
//! (one `sendmmsg` or a run of io_uring sends). Allocated once; `clear` makes it reusable.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::PACKET_LEN_MAX;

/// Outgoing datagrams with their destinations, each in a [`PACKET_LEN_MAX`]-byte slot.
#[derive(Debug)]
pub struct OutBatch<A> {
    buf: Box<[u8]>,
    sent: Vec<(A, u16)>,
    slots: usize,
}

impl<A: Copy> OutBatch<A> {
    /// A batch of `slots` datagrams. This is the only allocation the batch ever makes.
    pub fn new(slots: usize) -> Self {
        OutBatch {
            buf: vec![0u8; slots * PACKET_LEN_MAX].into_boxed_slice(),
            sent: Vec::with_capacity(slots),
            slots,
        }
    }

    /// Slots in total.
    pub fn capacity(&self) -> usize {
        self.slots
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Free slots.
    pub fn remaining(&self) -> usize {
        self.slots - self.sent.len()
    }

    /// Forgets every datagram (after the engine has sent them); keeps the memory.
    pub fn clear(&mut self) {
        self.sent.clear();
    }

    /// The `i`th datagram and its destination.
    pub fn get(&self, i: usize) -> Option<(A, &[u8])> {
        let &(dest, len) = self.sent.get(i)?;
        let start = i * PACKET_LEN_MAX;
        Some((dest, self.buf.get(start..start + usize::from(len))?))
    }

    /// Every datagram in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (A, &[u8])> + '_ {
        (0..self.sent.len()).filter_map(|i| self.get(i))
    }

    /// Lets `fill` write one datagram into the next free slot; it returns the length written, or
    /// `None` to leave the slot free. Returns false when the batch is full or `fill` declined.
    pub fn push_with<F>(&mut self, dest: A, fill: F) -> bool
    where
        F: FnOnce(&mut [u8]) -> Option<usize>,
    {
        let i = self.sent.len();
        if i >= self.slots {
            return false;
        }
        let start = i * PACKET_LEN_MAX;
        let Some(slot) = self.buf.get_mut(start..start + PACKET_LEN_MAX) else {
            return false;
        };
        match fill(slot) {
            Some(len) if len <= PACKET_LEN_MAX => {
                // PACKET_LEN_MAX fits in u16 (checked in limits.rs).
                self.sent.push((dest, len as u16));
                true
            }
            _ => false,
        }
    }

    /// Copies a ready datagram into the next free slot.
    pub fn push(&mut self, dest: A, datagram: &[u8]) -> bool {
        self.push_with(dest, |slot| {
            slot.get_mut(..datagram.len())?.copy_from_slice(datagram);
            Some(datagram.len())
        })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fills_reuses_and_refuses_when_full() {
        let mut b: OutBatch<u8> = OutBatch::new(2);
        assert!(b.is_empty());
        assert!(b.push(1, b"abc"));
        assert!(!b.push_with(9, |_| None));
        assert!(b.push_with(2, |s| {
            s[..2].copy_from_slice(b"xy");
            Some(2)
        }));
        assert!(!b.push(3, b"full"));
        assert_eq!(b.remaining(), 0);
        let all: Vec<_> = b.iter().map(|(d, p)| (d, p.to_vec())).collect();
        assert_eq!(all, vec![(1, b"abc".to_vec()), (2, b"xy".to_vec())]);
        b.clear();
        assert_eq!((b.len(), b.capacity()), (0, 2));
        assert!(b.push(4, &[0; PACKET_LEN_MAX]));
        assert!(!b.push(5, &[0; PACKET_LEN_MAX + 1]));
        assert_eq!(b.get(1), None);
    }
}
