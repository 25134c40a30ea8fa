//! Open-loop send schedule: request `seq` is due at `start + seq / rate`, on connection
//! `seq % conns`, whatever happened to earlier requests.
//!
//! Latency is measured from the due time, not from the moment the request was actually written,
//! so a stalled server (or a request queued behind a slow answer on the same connection) is
//! charged for the whole wait: coordinated omission is accounted for, as in wrk2.

use crate::BenchError;

const NANOS_PER_S: u128 = 1_000_000_000;

/// A fixed-rate schedule spread round-robin over `conns` connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    start_ns: u64,
    rate_per_s: u64,
    conns: u32,
}

impl Schedule {
    /// A schedule starting at `start_ns` (any monotonic origin) offering `rate_per_s` in total.
    pub fn new(start_ns: u64, rate_per_s: u64, conns: u32) -> Result<Self, BenchError> {
        if rate_per_s == 0 || conns == 0 {
            return Err(BenchError::Invalid(
                "rate and connection count must be positive".into(),
            ));
        }
        Ok(Schedule {
            start_ns,
            rate_per_s,
            conns,
        })
    }

    /// When request `seq` is due. Computed from `seq` directly so rounding never accumulates.
    pub fn due_ns(&self, seq: u64) -> u64 {
        let offset = u128::from(seq) * NANOS_PER_S / u128::from(self.rate_per_s);
        self.start_ns
            .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    /// Which connection sends request `seq`.
    pub fn conn_of(&self, seq: u64) -> u32 {
        // The remainder is below `conns`, a u32.
        (seq % u64::from(self.conns)) as u32
    }

    /// How many requests are due at or before `now_ns` (requests `0..n`).
    pub fn due_count(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        // Exact inverse of `due_ns`'s floor: seq is due iff seq * 1e9 < (elapsed + 1) * rate.
        let elapsed = u128::from(now_ns - self.start_ns);
        let n = ((elapsed + 1) * u128::from(self.rate_per_s)).div_ceil(NANOS_PER_S);
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// The next request after `seq` on the same connection.
    pub fn next_on_conn(&self, seq: u64) -> u64 {
        seq + u64::from(self.conns)
    }

    /// Interval between two requests of one connection, nanoseconds (rounded down).
    pub fn per_conn_interval_ns(&self) -> u64 {
        let ns = u128::from(self.conns) * NANOS_PER_S / u128::from(self.rate_per_s);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_thousand_per_second_is_one_every_25_us() {
        let s = Schedule::new(1_000, 40_000, 1000).unwrap();
        assert_eq!(s.due_ns(0), 1_000);
        assert_eq!(s.due_ns(1), 1_000 + 25_000);
        assert_eq!(s.due_ns(40_000), 1_000 + 1_000_000_000);
        assert_eq!(s.per_conn_interval_ns(), 25_000_000);
    }

    #[test]
    fn due_count_matches_due_times() {
        let s = Schedule::new(500, 30_000, 7).unwrap();
        assert_eq!(s.due_count(499), 0);
        for seq in [0u64, 1, 2, 29_999, 30_000, 123_457] {
            let t = s.due_ns(seq);
            assert_eq!(s.due_count(t), seq + 1, "at the due time of {seq}");
            assert_eq!(s.due_count(t - 1), seq, "just before {seq}");
        }
    }

    #[test]
    fn rounding_does_not_drift_over_an_hour() {
        // 3 per second does not divide a second evenly; an hour later it is still exact.
        let s = Schedule::new(0, 3, 1).unwrap();
        assert_eq!(s.due_ns(3 * 3600), 3600 * 1_000_000_000);
        assert_eq!(s.due_ns(1), 333_333_333);
    }

    #[test]
    fn round_robin_over_connections() {
        let s = Schedule::new(0, 40_000, 1000).unwrap();
        assert_eq!(s.conn_of(0), 0);
        assert_eq!(s.conn_of(999), 999);
        assert_eq!(s.conn_of(1000), 0);
        let seq = 1234;
        let next = s.next_on_conn(seq);
        assert_eq!(s.conn_of(next), s.conn_of(seq));
        assert_eq!(s.due_ns(next) - s.due_ns(seq), s.per_conn_interval_ns());
    }

    #[test]
    fn rejects_zero_rate_and_zero_conns() {
        assert!(Schedule::new(0, 0, 1).is_err());
        assert!(Schedule::new(0, 1, 0).is_err());
    }
}
