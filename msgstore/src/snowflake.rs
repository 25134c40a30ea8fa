//! Snowflake arithmetic: the time part of an id and the partition bucket it falls in.

use crate::limits::BUCKET_MS;

/// Discord epoch, 2015-01-01T00:00:00Z, in Unix milliseconds.
pub const EPOCH_MS: u64 = 1_420_070_400_000;

/// Milliseconds since the Discord epoch carried by a Snowflake.
pub fn timestamp_ms(id: u64) -> u64 {
    id >> 22
}

/// The time bucket (10-day window) a Snowflake belongs to.
pub fn bucket_of(id: u64) -> u32 {
    // 2^42 ms / 864e6 ms fits u32 comfortably.
    (timestamp_ms(id) / BUCKET_MS) as u32
}

/// Smallest Snowflake falling in `bucket`.
pub fn first_id_of_bucket(bucket: u32) -> u64 {
    (u64::from(bucket) * BUCKET_MS) << 22
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_match_ids() {
        let id = (123_456_789_000u64 << 22) | 77;
        let b = bucket_of(id);
        assert!(first_id_of_bucket(b) <= id);
        assert!(first_id_of_bucket(b + 1) > id);
        assert_eq!(bucket_of(first_id_of_bucket(b + 1) - 1), b);
    }
}
