//! Latency summaries taken from an HDR histogram of nanoseconds, reported in microseconds.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles plotted on the latency curve; 100 stands for the maximum.
pub const CURVE_PERCENTILES: [f64; 10] = [
    50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// One point of the percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Latency at that percentile, microseconds.
    pub us: f64,
}

/// The numbers a report shows for one latency distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// 99.99th percentile, µs.
    pub p9999_us: f64,
    /// Maximum, µs.
    pub max_us: f64,
    /// The curve for plots.
    pub curve: Vec<CurvePoint>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl LatencySummary {
    /// Summarises a histogram of nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        let at = |p: f64| us(h.value_at_quantile(p / 100.0));
        LatencySummary {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            p999_us: at(99.9),
            p9999_us: at(99.99),
            max_us: us(h.max()),
            curve: CURVE_PERCENTILES
                .iter()
                .map(|&p| CurvePoint {
                    percentile: p,
                    us: if p >= 100.0 { us(h.max()) } else { at(p) },
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 1..=10_000u64 {
            h.record(i * 1000).unwrap(); // 1 µs .. 10 ms
        }
        let s = LatencySummary::from_ns(&h);
        assert_eq!(s.count, 10_000);
        // Three significant digits: within 0.1 %.
        assert!((s.p50_us - 5000.0).abs() <= 5.0, "{}", s.p50_us);
        assert!((s.p99_us - 9900.0).abs() <= 10.0, "{}", s.p99_us);
        assert!((s.max_us - 10_000.0).abs() <= 10.0, "{}", s.max_us);
        assert_eq!(s.curve.len(), CURVE_PERCENTILES.len());
        assert!(s.curve.windows(2).all(|w| w[0].us <= w[1].us));
    }
}
