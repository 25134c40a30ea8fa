//! Discord-compatible Snowflake ids, generated per shard and strictly increasing.
//!
//! Layout (most significant first): 42 bits of milliseconds since [`EPOCH_MS`], 5 bits worker
//! (the node), 5 bits process (the shard), 12 bits sequence. Clients sort and paginate by id, and
//! the message store keys partitions by it, so a generator must never hand out an id that is equal
//! to or below one it already gave, whatever the wall clock does.

/// Discord's epoch, 2015-01-01T00:00:00Z, in Unix milliseconds.
pub const EPOCH_MS: u64 = 1_420_070_400_000;
/// Bits of the sequence field.
pub const SEQUENCE_BITS: u32 = 12;
/// Bits of the process (shard) field.
pub const SHARD_BITS: u32 = 5;
/// Bits of the worker (node) field.
pub const WORKER_BITS: u32 = 5;
/// Bits of the timestamp field.
pub const TIMESTAMP_BITS: u32 = 42;
/// Shifts of each field within the id.
const SHARD_SHIFT: u32 = SEQUENCE_BITS;
const WORKER_SHIFT: u32 = SEQUENCE_BITS + SHARD_BITS;
const TIMESTAMP_SHIFT: u32 = SEQUENCE_BITS + SHARD_BITS + WORKER_BITS;
/// Number of distinct workers (nodes) and shards an id can name.
pub const WORKERS_MAX: u8 = 1 << WORKER_BITS;
/// Number of distinct shards per node an id can name: the node's shard count is capped by it.
pub const SHARDS_MAX: u8 = 1 << SHARD_BITS;
/// Ids one generator can hand out within one millisecond.
pub const SEQUENCE_MAX: u16 = (1 << SEQUENCE_BITS) - 1;
/// Largest timestamp (ms since [`EPOCH_MS`]) an id can carry: some time in the year 2154.
pub const TIMESTAMP_MAX: u64 = (1 << TIMESTAMP_BITS) - 1;

const _: () = assert!(TIMESTAMP_BITS + WORKER_BITS + SHARD_BITS + SEQUENCE_BITS == 64);

/// Why a generator or an id could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnowflakeError {
    /// The worker id does not fit in its 5 bits.
    #[error("worker id {0} out of range: must be below 32")]
    Worker(u8),
    /// The shard id does not fit in its 5 bits.
    #[error("shard id {0} out of range: must be below 32")]
    Shard(u8),
    /// The sequence does not fit in its 12 bits.
    #[error("sequence {0} out of range: must be below 4096")]
    Sequence(u16),
    /// The timestamp is before 2015 or after the 42-bit range.
    #[error("timestamp {0} ms out of the Snowflake range")]
    Timestamp(u64),
}

/// One shard's id generator: remembers the last millisecond and sequence it used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnowflakeGen {
    /// Worker and shard bits, already shifted into place.
    node_bits: u64,
    /// Milliseconds since [`EPOCH_MS`] of the last id handed out; never decreases.
    last_ms: u64,
    /// Sequence of the last id handed out, `None` before the first id.
    last_seq: Option<u16>,
}

impl SnowflakeGen {
    /// A generator for `worker` (node) and `shard`, both below 32.
    pub fn new(worker: u8, shard: u8) -> Result<Self, SnowflakeError> {
        if worker >= WORKERS_MAX {
            return Err(SnowflakeError::Worker(worker));
        }
        if shard >= SHARDS_MAX {
            return Err(SnowflakeError::Shard(shard));
        }
        Ok(SnowflakeGen {
            node_bits: (u64::from(worker) << WORKER_SHIFT) | (u64::from(shard) << SHARD_SHIFT),
            last_ms: 0,
            last_seq: None,
        })
    }

    /// A generator for `worker` and `shard` reduced into their 5 bits (for ids that are already
    /// bounded elsewhere, such as a shard index below `SHARDS_MAX`).
    pub fn masked(worker: u8, shard: u8) -> Self {
        SnowflakeGen {
            node_bits: (u64::from(worker % WORKERS_MAX) << WORKER_SHIFT)
                | (u64::from(shard % SHARDS_MAX) << SHARD_SHIFT),
            last_ms: 0,
            last_seq: None,
        }
    }

    /// The next id, given the wall clock in Unix milliseconds.
    ///
    /// Strictly greater than every id this generator returned before: a wall clock that steps
    /// backwards is ignored (the last millisecond is reused), and more than 4096 ids in one
    /// millisecond borrow the next millisecond, so ids may run slightly ahead of the clock under bursts.
    /// Clocks before 2015 count as the epoch; past [`TIMESTAMP_MAX`] (year 2154) the generator
    /// stops advancing and returns its last id again, the only case where it repeats.
    pub fn next(&mut self, wall_ms: u64) -> u64 {
        let wall = wall_ms.saturating_sub(EPOCH_MS).min(TIMESTAMP_MAX);
        let (ms, seq) = match self.last_seq {
            None => (wall, 0),
            Some(_) if wall > self.last_ms => (wall, 0),
            Some(seq) if seq < SEQUENCE_MAX => (self.last_ms, seq + 1),
            Some(_) if self.last_ms < TIMESTAMP_MAX => (self.last_ms + 1, 0),
            Some(seq) => (self.last_ms, seq),
        };
        self.last_ms = ms;
        self.last_seq = Some(seq);
        (ms << TIMESTAMP_SHIFT) | self.node_bits | u64::from(seq)
    }

    /// Make every later id greater than `id`: after a restart, call this with the highest id
    /// already stored, so that a wall clock that went back across the restart cannot reuse ids.
    pub fn advance_past(&mut self, id: u64) {
        let ms = id >> TIMESTAMP_SHIFT;
        let node_mask = (1u64 << TIMESTAMP_SHIFT) - 1 - u64::from(SEQUENCE_MAX);
        // Another node's or shard's id at the same millisecond may sort above any sequence of
        // ours, so only the next millisecond is safe for it.
        let seq = if id & node_mask == self.node_bits {
            sequence(id)
        } else {
            SEQUENCE_MAX
        };
        let behind = match self.last_seq {
            None => true,
            Some(last_seq) => (ms, seq) > (self.last_ms, last_seq),
        };
        if behind {
            self.last_ms = ms;
            self.last_seq = Some(seq);
        }
    }

    /// Milliseconds since [`EPOCH_MS`] of the last id handed out (0 before the first).
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }
}

/// Unix milliseconds at which `id` was made.
pub fn timestamp_ms(id: u64) -> u64 {
    (id >> TIMESTAMP_SHIFT) + EPOCH_MS
}

/// The worker (node) that made `id`.
pub fn worker(id: u64) -> u8 {
    // The mask keeps 5 bits, so the narrowing cannot lose anything.
    ((id >> WORKER_SHIFT) & u64::from(WORKERS_MAX - 1)) as u8
}

/// The shard (process) that made `id`.
pub fn shard(id: u64) -> u8 {
    ((id >> SHARD_SHIFT) & u64::from(SHARDS_MAX - 1)) as u8
}

/// The per-millisecond sequence of `id`.
pub fn sequence(id: u64) -> u16 {
    (id & u64::from(SEQUENCE_MAX)) as u16
}

/// Build an id from its parts; `unix_ms` is Unix milliseconds (not relative to the epoch).
pub fn from_parts(
    unix_ms: u64,
    worker: u8,
    shard: u8,
    sequence: u16,
) -> Result<u64, SnowflakeError> {
    let ms = unix_ms
        .checked_sub(EPOCH_MS)
        .filter(|ms| *ms <= TIMESTAMP_MAX)
        .ok_or(SnowflakeError::Timestamp(unix_ms))?;
    if worker >= WORKERS_MAX {
        return Err(SnowflakeError::Worker(worker));
    }
    if shard >= SHARDS_MAX {
        return Err(SnowflakeError::Shard(shard));
    }
    if sequence > SEQUENCE_MAX {
        return Err(SnowflakeError::Sequence(sequence));
    }
    Ok((ms << TIMESTAMP_SHIFT)
        | (u64::from(worker) << WORKER_SHIFT)
        | (u64::from(shard) << SHARD_SHIFT)
        | u64::from(sequence))
}

/// The smallest id that any generator could make at `unix_ms` (clamped to the id range):
/// the bound for "messages before/after this time" queries.
pub fn lowest_at(unix_ms: u64) -> u64 {
    unix_ms.saturating_sub(EPOCH_MS).min(TIMESTAMP_MAX) << TIMESTAMP_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_round_trip_through_an_id() {
        let mut g = SnowflakeGen::new(7, 19).unwrap();
        let now = EPOCH_MS + 123_456_789;
        let id = g.next(now);
        assert_eq!(timestamp_ms(id), now);
        assert_eq!(worker(id), 7);
        assert_eq!(shard(id), 19);
        assert_eq!(sequence(id), 0);
        assert_eq!(from_parts(now, 7, 19, 0), Ok(id));
    }

    #[test]
    fn matches_discord_documented_example() {
        // Discord's documentation decodes 175928847299117063 as 2016-04-30T11:18:25.796Z,
        // worker 1, process 0, increment 7.
        let id = 175_928_847_299_117_063;
        assert_eq!(timestamp_ms(id), 1_462_015_105_796);
        assert_eq!((worker(id), shard(id), sequence(id)), (1, 0, 7));
        assert_eq!(from_parts(1_462_015_105_796, 1, 0, 7), Ok(id));
    }

    #[test]
    fn rejects_out_of_range_parts() {
        assert_eq!(SnowflakeGen::new(32, 0), Err(SnowflakeError::Worker(32)));
        assert_eq!(SnowflakeGen::new(0, 32), Err(SnowflakeError::Shard(32)));
        assert_eq!(
            from_parts(EPOCH_MS, 0, 0, 4096),
            Err(SnowflakeError::Sequence(4096))
        );
        assert_eq!(
            from_parts(EPOCH_MS - 1, 0, 0, 0),
            Err(SnowflakeError::Timestamp(EPOCH_MS - 1))
        );
        assert!(from_parts(EPOCH_MS + TIMESTAMP_MAX + 1, 0, 0, 0).is_err());
        assert!(from_parts(EPOCH_MS + TIMESTAMP_MAX, 31, 31, SEQUENCE_MAX).is_ok());
    }

    #[test]
    fn backward_clock_step_keeps_the_last_millisecond() {
        let mut g = SnowflakeGen::new(0, 0).unwrap();
        let a = g.next(EPOCH_MS + 10_000);
        let b = g.next(EPOCH_MS + 5_000);
        assert!(b > a);
        assert_eq!(timestamp_ms(b), EPOCH_MS + 10_000);
        assert_eq!(sequence(b), 1);
    }

    #[test]
    fn sequence_overflow_borrows_the_next_millisecond() {
        let mut g = SnowflakeGen::new(1, 2).unwrap();
        let now = EPOCH_MS + 1_000;
        let ids: Vec<u64> = (0..=u32::from(SEQUENCE_MAX) + 1)
            .map(|_| g.next(now))
            .collect();
        let last = *ids.last().unwrap();
        assert_eq!(timestamp_ms(last), now + 1);
        assert_eq!(sequence(last), 0);
        // The clock catching up with the borrowed millisecond must not reuse it.
        let caught_up = g.next(now + 1);
        assert!(caught_up > last);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn lowest_at_bounds_every_id_of_that_millisecond() {
        let now = EPOCH_MS + 77;
        let low = lowest_at(now);
        assert!(from_parts(now, 0, 0, 0).unwrap() == low);
        assert!(from_parts(now - 1, 31, 31, SEQUENCE_MAX).unwrap() < low);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn ids_after_advance_past_are_greater(
            floor in any::<u64>(),
            worker_id in 0u8..32,
            shard_id in 0u8..32,
            wall in EPOCH_MS..EPOCH_MS + (1u64 << 41),
            before in 0usize..3,
        ) {
            // Keep the floor below the end of the id space so that a greater id exists.
            let floor = floor >> 1;
            let mut g = SnowflakeGen::new(worker_id, shard_id).unwrap();
            for _ in 0..before {
                g.next(wall);
            }
            g.advance_past(floor);
            let a = g.next(wall);
            prop_assert!(a > floor, "{} not above floor {}", a, floor);
            prop_assert!(g.next(wall) > a);
        }
    }

    /// One step of a wall clock: a jump (possibly backwards) then a burst of ids at that time.
    fn clock_steps() -> impl Strategy<Value = Vec<(i64, u16)>> {
        prop::collection::vec(
            (
                prop_oneof![-100_000i64..=0, 0i64..=3, 0i64..=100_000],
                prop_oneof![1u16..=4, 4000u16..=10_000],
            ),
            1..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn ids_strictly_increase_whatever_the_clock_does(
            start in EPOCH_MS..EPOCH_MS + (1u64 << 40),
            worker_id in 0u8..32,
            shard_id in 0u8..32,
            steps in clock_steps(),
        ) {
            let mut g = SnowflakeGen::new(worker_id, shard_id).unwrap();
            let mut wall = start;
            let mut prev: Option<u64> = None;
            let mut max_wall = 0;
            for (jump, burst) in steps {
                wall = wall.saturating_add_signed(jump).max(EPOCH_MS);
                max_wall = max_wall.max(wall);
                for _ in 0..burst {
                    let id = g.next(wall);
                    if let Some(p) = prev {
                        prop_assert!(id > p, "id {} not above {}", id, p);
                    }
                    prop_assert_eq!(worker(id), worker_id);
                    prop_assert_eq!(shard(id), shard_id);
                    // Never behind the furthest clock seen.
                    prop_assert!(timestamp_ms(id) >= max_wall);
                    prev = Some(id);
                }
            }
        }
    }
}
