//! Per-session resume ring: the last dispatched events (sequence number + shared tail),
//! bounded in count and bytes, replayed on Resume.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::{RESUME_RING_BYTES_MAX, RESUME_RING_EVENTS_MAX};
use bytes::Bytes;
use std::collections::VecDeque;

const _: () = assert!(
    RESUME_RING_BYTES_MAX < (u32::MAX / 2) as usize,
    "bytes is a u32"
);

/// The client's sequence is older than what the ring still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sequence too old to resume")]
pub struct TooOld;

/// Bounded history of dispatched events.
///
/// Sequence numbers are consecutive, so only the oldest one is stored. The first event gets a
/// deque of exactly one slot: an idle session holds READY alone, and growth only starts with the
/// second event.
#[derive(Debug, Default)]
pub struct ResumeRing {
    /// Sequence number of `events[0]`.
    first_seq: u64,
    events: VecDeque<Bytes>,
    /// Payload bytes held (at most `RESUME_RING_BYTES_MAX` plus one event).
    bytes: u32,
}

impl ResumeRing {
    /// Records event `seq`; evicts the oldest events past the bounds. Sequence numbers must be
    /// pushed in increasing order without gaps.
    pub fn push(&mut self, seq: u64, tail: Bytes) {
        if self.events.is_empty() {
            self.first_seq = seq;
            if self.events.capacity() == 0 {
                self.events.reserve_exact(1);
            }
        }
        debug_assert_eq!(seq, self.first_seq + self.events.len() as u64);
        self.bytes = self.bytes.saturating_add(tail.len() as u32);
        self.events.push_back(tail);
        while self.events.len() > RESUME_RING_EVENTS_MAX
            || (self.bytes() > RESUME_RING_BYTES_MAX && self.events.len() > 1)
        {
            if let Some(old) = self.events.pop_front() {
                self.bytes = self.bytes.saturating_sub(old.len() as u32);
                self.first_seq += 1;
            }
        }
    }

    /// Events with a sequence above `after`, given that `last` is the newest sequence sent.
    pub fn replay_after(
        &self,
        after: u64,
        last: u64,
    ) -> Result<impl Iterator<Item = (u64, &Bytes)>, TooOld> {
        if after < last && (self.events.is_empty() || self.first_seq > after + 1) {
            return Err(TooOld);
        }
        let first = self.first_seq;
        Ok(self
            .events
            .iter()
            .enumerate()
            .map(move |(i, b)| (first + i as u64, b))
            .filter(move |(s, _)| *s > after))
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn evicts_and_detects_too_old() {
        let mut r = ResumeRing::default();
        let n = RESUME_RING_EVENTS_MAX as u64 + 10;
        for s in 1..=n {
            r.push(s, Bytes::from_static(b"x"));
        }
        assert_eq!(r.len(), RESUME_RING_EVENTS_MAX);
        let oldest = n - RESUME_RING_EVENTS_MAX as u64 + 1;
        assert_eq!(
            r.replay_after(oldest - 1, n).unwrap().count(),
            RESUME_RING_EVENTS_MAX
        );
        assert_eq!(
            r.replay_after(n - 3, n)
                .unwrap()
                .map(|(s, _)| s)
                .collect::<Vec<_>>(),
            vec![n - 2, n - 1, n]
        );
        assert_eq!(r.replay_after(n, n).unwrap().count(), 0);
        assert!(r.replay_after(oldest - 2, n).is_err());
        assert!(r.replay_after(0, n).is_err());
        assert!(ResumeRing::default().replay_after(0, 0).is_ok());
        assert!(ResumeRing::default().replay_after(0, 1).is_err());
    }

    #[test]
    fn one_event_holds_one_slot() {
        let mut r = ResumeRing::default();
        r.push(1, Bytes::from_static(b"ready"));
        assert_eq!(r.events.capacity(), 1);
        assert_eq!(r.replay_after(0, 1).unwrap().count(), 1);
        r.push(2, Bytes::from_static(b"x"));
        assert_eq!(
            r.replay_after(0, 2)
                .unwrap()
                .map(|(s, _)| s)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn byte_bound() {
        let mut r = ResumeRing::default();
        let big = Bytes::from(vec![0u8; RESUME_RING_BYTES_MAX / 2 + 1]);
        r.push(1, big.clone());
        r.push(2, big.clone());
        assert_eq!(r.len(), 1);
        assert!(r.bytes() <= RESUME_RING_BYTES_MAX);
    }
}
