//! Latency histograms: HdrHistogram in microseconds, merged across cores, summarised
//! as the percentiles the report prints.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Highest trackable latency: 60 s, in microseconds.
const MAX_US: u64 = 60_000_000;
/// Three significant digits: 0.1% value precision, as wrk2 and HdrHistogram default.
const SIGFIG: u8 = 3;

/// One histogram of request latencies (µs). Values above 60 s are clamped.
#[derive(Debug, Clone)]
pub struct LatencyHist {
    h: Histogram<u64>,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    /// An empty histogram covering 1 µs .. 60 s.
    pub fn new() -> Self {
        let h = Histogram::new_with_bounds(1, MAX_US, SIGFIG).expect("constant bounds are valid");
        LatencyHist { h }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_US);
        self.h.saturating_record(us);
    }

    /// Adds all samples of `other` (per-core histograms are merged this way).
    pub fn merge(&mut self, other: &LatencyHist) {
        self.h
            .add(&other.h)
            .expect("same bounds on every histogram");
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.h.len()
    }

    /// True when no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// The percentiles the report shows.
    pub fn summary(&self) -> Percentiles {
        let q = |p: f64| self.h.value_at_quantile(p);
        Percentiles {
            count: self.h.len(),
            mean_us: self.h.mean(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.h.max(),
        }
    }
}

/// Latency percentiles of one phase, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = LatencyHist::new();
        let mut b = LatencyHist::new();
        for us in 1..=100 {
            a.record(Duration::from_micros(us));
        }
        b.record(Duration::from_millis(50));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 101);
        assert_eq!(s.p50_us, 51);
        assert!(s.max_us >= 49_950 && s.max_us <= 50_050, "max {}", s.max_us);
    }

    #[test]
    fn clamps_out_of_range_values() {
        let mut h = LatencyHist::new();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(3600));
        let s = h.summary();
        assert_eq!(s.count, 2);
        assert!(s.max_us >= MAX_US - MAX_US / 1000);
    }
}
