//! Unix milliseconds to the ISO 8601 form Discord uses (`2026-11-23T14:28:01.123000+00:00`),
//! and snowflake timestamps. No calendar crate: the civil-from-days algorithm is a few lines.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds: snowflakes count from here.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Unix milliseconds when the snowflake `id` was made.
pub fn snowflake_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// `ms` (Unix, UTC) as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
pub fn iso8601(ms: u64) -> String {
    let days = ms / 86_400_000;
    let in_day = ms % 86_400_000;
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (in_day / 3_600_000, in_day % 3_600_000);
    let (min, rem) = (rem / 60_000, rem % 60_000);
    let (s, milli) = (rem / 1000, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}000+00:00")
}

/// (year, month, day) of the day `days` after 1970-01-01, proleptic Gregorian.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each 400-year era's years.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            iso8601(DISCORD_EPOCH_MS),
            "2015-01-01T00:00:00.000000+00:00"
        );
        // 2000-02-29 is a leap day of a century divisible by 400.
        assert_eq!(
            iso8601(951_782_400_000 + 1),
            "2000-02-29T00:00:00.001000+00:00"
        );
        assert_eq!(
            iso8601(1_795_444_081_123),
            "2026-11-23T14:28:01.123000+00:00"
        );
        assert_eq!(
            iso8601(4_107_542_399_999),
            "2100-02-28T23:59:59.999000+00:00"
        );
        assert_eq!(
            iso8601(4_107_542_400_000),
            "2100-03-01T00:00:00.000000+00:00"
        );
    }

    #[test]
    fn every_day_follows_the_previous() {
        // Walk 600 years day by day: dates must advance by exactly one calendar day.
        let mut prev = civil_from_days(0);
        for day in 1..(600 * 366) {
            let cur = civil_from_days(day);
            let next_in_month = (prev.0, prev.1, prev.2 + 1);
            let next_month = if prev.1 == 12 {
                (prev.0 + 1, 1, 1)
            } else {
                (prev.0, prev.1 + 1, 1)
            };
            assert!(
                cur == next_in_month || cur == next_month,
                "{prev:?} -> {cur:?}"
            );
            assert!(cur.2 <= 31);
            prev = cur;
        }
    }

    #[test]
    fn snowflake_time() {
        assert_eq!(snowflake_ms(175_928_847_299_117_063), 1_462_015_105_796);
    }
}
