//! Per-session resume ring: the last dispatched events (sequence number + shared tail),
//! bounded in count and bytes, replayed on Resume.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::{RESUME_RING_BYTES_MAX, RESUME_RING_EVENTS_MAX};
use bytes::Bytes;
use std::collections::VecDeque;

/// The client's sequence is older than what the ring still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sequence too old to resume")]
pub struct TooOld;

/// Bounded history of dispatched events.
#[derive(Debug, Default)]
pub struct ResumeRing {
    events: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl ResumeRing {
    /// Records event `seq`; evicts the oldest events past the bounds. Sequence numbers must be
    /// pushed in increasing order without gaps.
    pub fn push(&mut self, seq: u64, tail: Bytes) {
        self.bytes += tail.len();
        self.events.push_back((seq, tail));
        while self.events.len() > RESUME_RING_EVENTS_MAX
            || (self.bytes > RESUME_RING_BYTES_MAX && self.events.len() > 1)
        {
            if let Some((_, old)) = self.events.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// Events with a sequence above `after`, given that `last` is the newest sequence sent.
    pub fn replay_after(
        &self,
        after: u64,
        last: u64,
    ) -> Result<impl Iterator<Item = &(u64, Bytes)>, TooOld> {
        if after < last {
            match self.events.front() {
                Some(&(oldest, _)) if oldest <= after + 1 => {}
                _ => return Err(TooOld),
            }
        }
        Ok(self.events.iter().filter(move |(s, _)| *s > after))
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
        self.bytes
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
                .map(|(s, _)| *s)
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
    fn byte_bound() {
        let mut r = ResumeRing::default();
        let big = Bytes::from(vec![0u8; RESUME_RING_BYTES_MAX / 2 + 1]);
        r.push(1, big.clone());
        r.push(2, big.clone());
        assert_eq!(r.len(), 1);
        assert!(r.bytes() <= RESUME_RING_BYTES_MAX);
    }
}
