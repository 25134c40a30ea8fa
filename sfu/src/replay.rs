//! Per-sender sliding replay window over the 32-bit nonce counter.
//!
//! The counter on the wire wraps at 2^32 (discord.py wraps it to 0), so it is first extended to
//! 64 bits by picking the candidate nearest to the highest counter seen, as SRTP does with its
//! rollover counter. The window then remembers the last [`REPLAY_WINDOW_LEN`] extended counters in
//! a bitmap: anything already seen, or older than the window, is refused.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::limits::REPLAY_WINDOW_LEN;

const WORDS: usize = (REPLAY_WINDOW_LEN / 64) as usize;

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// This counter was already accepted.
    #[error("duplicate nonce counter")]
    Duplicate,
    /// The counter is further behind the newest than the window reaches.
    #[error("nonce counter older than the replay window")]
    TooOld,
}

/// Replay state for one sender: 128 bytes of bitmap and the highest counter seen.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    highest: Option<u64>,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window: the first counter is always accepted.
    pub fn new() -> Self {
        ReplayWindow {
            highest: None,
            bits: [0; WORDS],
        }
    }

    /// Extends a wire counter to 64 bits relative to the highest seen so far.
    pub fn extend(&self, counter: u32) -> u64 {
        let Some(h) = self.highest else {
            return u64::from(counter);
        };
        let epoch = h >> 32;
        let base = (epoch << 32) | u64::from(counter);
        // Candidates in the previous, same and next 2^32 epoch; keep the nearest to `h`.
        [
            base.checked_sub(1 << 32),
            Some(base),
            base.checked_add(1 << 32),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|&c| c.abs_diff(h))
        .unwrap_or(base)
    }

    /// Checks the wire counter and, when fresh, records it.
    pub fn check_and_update(&mut self, counter: u32) -> Result<(), ReplayError> {
        let ext = self.extend(counter);
        self.check_and_update_extended(ext)
    }

    /// Checks an already extended counter without recording it.
    pub fn check_extended(&self, ext: u64) -> Result<(), ReplayError> {
        match self.highest {
            None => Ok(()),
            Some(h) if ext > h => Ok(()),
            Some(h) if h - ext >= REPLAY_WINDOW_LEN => Err(ReplayError::TooOld),
            Some(_) if self.bit(ext) => Err(ReplayError::Duplicate),
            Some(_) => Ok(()),
        }
    }

    /// Checks an already extended counter and, when fresh, records it.
    pub fn check_and_update_extended(&mut self, ext: u64) -> Result<(), ReplayError> {
        self.check_extended(ext)?;
        match self.highest {
            Some(h) if ext <= h => {}
            Some(h) => {
                // Slots between the old and new highest now stand for unseen counters.
                if ext - h >= REPLAY_WINDOW_LEN {
                    self.bits = [0; WORDS];
                } else {
                    for v in h + 1..ext {
                        self.clear_bit(v);
                    }
                }
                self.clear_bit(ext);
                self.highest = Some(ext);
            }
            None => {
                self.bits = [0; WORDS];
                self.highest = Some(ext);
            }
        }
        self.set_bit(ext);
        Ok(())
    }

    /// The highest extended counter accepted.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn slot(v: u64) -> (usize, u64) {
        let i = v % REPLAY_WINDOW_LEN;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn bit(&self, v: u64) -> bool {
        let (w, m) = Self::slot(v);
        self.bits.get(w).is_some_and(|word| word & m != 0)
    }

    fn set_bit(&mut self, v: u64) {
        let (w, m) = Self::slot(v);
        if let Some(word) = self.bits.get_mut(w) {
            *word |= m;
        }
    }

    fn clear_bit(&mut self, v: u64) {
        let (w, m) = Self::slot(v);
        if let Some(word) = self.bits.get_mut(w) {
            *word &= !m;
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn accepts_in_order_and_refuses_duplicates() {
        let mut w = ReplayWindow::new();
        for c in 0..3000u32 {
            assert_eq!(w.check_and_update(c), Ok(()));
        }
        assert_eq!(w.check_and_update(2999), Err(ReplayError::Duplicate));
        assert_eq!(w.check_and_update(2000), Err(ReplayError::Duplicate));
        assert_eq!(w.check_and_update(1976), Err(ReplayError::Duplicate));
        assert_eq!(w.check_and_update(1975), Err(ReplayError::TooOld));
    }

    #[test]
    fn accepts_reordered_within_window() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check_and_update(100), Ok(()));
        assert_eq!(w.check_and_update(90), Ok(()));
        assert_eq!(w.check_and_update(90), Err(ReplayError::Duplicate));
        assert_eq!(w.check_and_update(1100), Ok(()));
        // 100 is still inside (1100 - 1023 = 77), 76 is not.
        assert_eq!(w.check_and_update(100), Err(ReplayError::Duplicate));
        assert_eq!(w.check_and_update(95), Ok(()));
        assert_eq!(w.check_and_update(76), Err(ReplayError::TooOld));
    }

    #[test]
    fn big_jump_forgets_everything_behind() {
        let mut w = ReplayWindow::new();
        for c in 0..10 {
            w.check_and_update(c).expect("fresh");
        }
        assert_eq!(w.check_and_update(1_000_000), Ok(()));
        assert_eq!(w.check_and_update(999_999), Ok(()));
        assert_eq!(w.check_and_update(5), Err(ReplayError::TooOld));
    }

    #[test]
    fn survives_counter_wrap_like_discord_py() {
        let mut w = ReplayWindow::new();
        for c in (u32::MAX - 5)..=u32::MAX {
            assert_eq!(w.check_and_update(c), Ok(()));
        }
        for c in 0..5u32 {
            assert_eq!(w.check_and_update(c), Ok(()), "after wrap {c}");
        }
        assert_eq!(w.highest(), Some((1 << 32) + 4));
        assert_eq!(w.check_and_update(u32::MAX), Err(ReplayError::Duplicate));
        assert_eq!(w.check_and_update(2), Err(ReplayError::Duplicate));
        // A late pre-wrap packet inside the window is still fine.
        let mut w2 = ReplayWindow::new();
        w2.check_and_update(u32::MAX - 3).expect("fresh");
        w2.check_and_update(1).expect("fresh");
        assert_eq!(w2.check_and_update(u32::MAX - 1), Ok(()));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Forward(u16),
        Back(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u16..40).prop_map(Step::Forward),
            (0u16..1500).prop_map(Step::Back),
            (1000u16..3000).prop_map(Step::Forward),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The bitmap behaves exactly like "remember every accepted counter, refuse anything
        /// seen or more than a window behind the highest".
        #[test]
        fn matches_hash_set_model(start in 0u64..(1 << 40), steps in proptest::collection::vec(step(), 1..300)) {
            let mut w = ReplayWindow::new();
            let mut seen: HashSet<u64> = HashSet::new();
            let mut highest: Option<u64> = None;
            let mut cur = start;
            for s in steps {
                cur = match s {
                    Step::Forward(d) => cur + u64::from(d),
                    Step::Back(d) => cur.saturating_sub(u64::from(d)),
                };
                let expected = match highest {
                    None => Ok(()),
                    Some(h) if cur > h => Ok(()),
                    Some(h) if h - cur >= REPLAY_WINDOW_LEN => Err(ReplayError::TooOld),
                    Some(_) if seen.contains(&cur) => Err(ReplayError::Duplicate),
                    Some(_) => Ok(()),
                };
                prop_assert_eq!(w.check_and_update_extended(cur), expected);
                if expected.is_ok() {
                    seen.insert(cur);
                    highest = Some(highest.map_or(cur, |h| h.max(cur)));
                }
                prop_assert_eq!(w.highest(), highest);
            }
        }

        /// Wire counters extend to the true value while the sender stays within 2^31 of it.
        #[test]
        fn extension_recovers_true_counter(base in 0u64..(1 << 40), deltas in proptest::collection::vec(-2000i64..5000, 1..100)) {
            let mut w = ReplayWindow::new();
            let mut truth = base;
            w.check_and_update_extended(truth).expect("first");
            for d in deltas {
                truth = truth.saturating_add_signed(d);
                prop_assert_eq!(w.extend(truth as u32), truth);
                let _ = w.check_and_update_extended(truth);
            }
        }
    }
}
