//! What a peer run measured: per shape (cross node, same node), per figure, per target
//! (direct, ztunnel, zring), one [`Sample`] per repeat; and the statistics over repeats
//! (median, min, max) and the zring/ztunnel ratio the report prints (pure).

use crate::report::Machine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The targets of a figure, in column order.
pub const TARGETS: [&str; 3] = ["direct", "ztunnel", "zring"];

/// One repeat of one figure on one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Metric name → value (see `render::METRICS` for names and units).
    pub values: BTreeMap<String, f64>,
    /// Failed operations (connects, requests, streams).
    pub failures: u64,
    /// Distinct failure reasons (a few).
    pub reasons: Vec<String>,
    /// Checksums and byte counts held (false: the path corrupted or lost data).
    pub checksum_ok: bool,
    /// Host-wide CPU busy % over the measured phase (contention is visible).
    pub host_busy_pct: f64,
    /// The proxy's CPU seconds over the measured phase (0 for direct); across nodes
    /// both proxies' (A + B).
    pub proxy_cpu_s: f64,
    /// Of `proxy_cpu_s`, node B's proxy's (cross node; 0 otherwise): traffic that
    /// crossed the nodes cost B something.
    #[serde(default)]
    pub remote_cpu_s: f64,
}

impl Sample {
    /// An empty passing sample.
    pub fn new() -> Self {
        Sample {
            checksum_ok: true,
            ..Sample::default()
        }
    }

    /// Records a failure reason (up to 5 distinct ones).
    pub fn reason(&mut self, why: impl Into<String>) {
        let why = why.into();
        if self.reasons.len() < 5 && !self.reasons.contains(&why) {
            self.reasons.push(why);
        }
    }
}

/// Where the two ends of the measured connections are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Client on node A, server on node B: proxy A → HBONE over a veth → proxy B.
    Cross,
    /// One proxy carries both ends (SOCKS5 → its own 15008 → server). Reports written
    /// before the cross-node shape existed hold only this one.
    #[default]
    Same,
}

impl Shape {
    /// Report order: cross node first (where nearly all cluster traffic goes).
    pub const ALL: [Shape; 2] = [Shape::Cross, Shape::Same];

    /// `cross` or `same` (as in `--shape` and report.json).
    pub fn key(self) -> &'static str {
        match self {
            Shape::Cross => "cross",
            Shape::Same => "same",
        }
    }

    /// The section heading.
    pub fn title(self) -> &'static str {
        match self {
            Shape::Cross => "Cross node",
            Shape::Same => "Same node",
        }
    }
}

/// One figure: its samples per target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The shape it was measured in (absent in older reports: same node).
    #[serde(default)]
    pub shape: Shape,
    pub key: String,
    pub title: String,
    pub samples: BTreeMap<String, Vec<Sample>>,
}

impl Figure {
    /// Median, min and max of `metric` over the repeats of `target`.
    pub fn stat(&self, target: &str, metric: &str) -> Option<Stat> {
        let v: Vec<f64> = self
            .samples
            .get(target)?
            .iter()
            .filter_map(|s| s.values.get(metric).copied())
            .filter(|v| v.is_finite())
            .collect();
        Stat::of(&v)
    }

    /// zring's median over ztunnel's.
    pub fn ratio(&self, metric: &str) -> Option<f64> {
        let z = self.stat("zring", metric)?.median;
        let p = self.stat("ztunnel", metric)?.median;
        (p != 0.0).then(|| z / p)
    }

    /// Failures of `target` summed over repeats, and whether every checksum held.
    pub fn health(&self, target: &str) -> (u64, bool) {
        let s = self.samples.get(target).map(Vec::as_slice).unwrap_or(&[]);
        (
            s.iter().map(|x| x.failures).sum(),
            s.iter().all(|x| x.checksum_ok),
        )
    }
}

/// Median with the range over repeats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// Statistics of `v`; None when empty. An even count takes the mean of the middle two.
    pub fn of(v: &[f64]) -> Option<Stat> {
        if v.is_empty() {
            return None;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: s[0],
            max: s[n - 1],
        })
    }
}

/// How the run was set up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerSettings {
    pub cores: usize,
    pub repeats: usize,
    pub quick: bool,
    pub zring: String,
    pub peer: String,
    pub held_conns: usize,
    pub churn_ops: u64,
    pub bulk_bytes: u64,
    /// The shapes measured, in report order (absent in older reports: same node only).
    #[serde(default)]
    pub shapes: Vec<Shape>,
    /// Cores of each proxy in the cross-node shape (`cores` is the same-node one's).
    #[serde(default)]
    pub cross_cores: usize,
}

/// Everything `zring-loadgen peer` measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerReport {
    pub started_utc: String,
    pub commit: String,
    pub command_line: Vec<String>,
    pub seed: u64,
    pub machine: Machine,
    pub settings: PeerSettings,
    pub figures: Vec<Figure>,
    /// Setup or correctness problems (a figure that could not be measured, bad checksums).
    pub failures: Vec<String>,
}

impl PeerReport {
    /// The same-node figure named `key` (what `capacity` and the issue 8 goals read).
    pub fn figure(&self, key: &str) -> Option<&Figure> {
        self.figure_in(Shape::Same, key)
    }

    /// The figure named `key` measured in `shape`.
    pub fn figure_in(&self, shape: Shape, key: &str) -> Option<&Figure> {
        self.figures
            .iter()
            .find(|f| f.shape == shape && f.key == key)
    }

    /// The shapes that have figures, in report order.
    pub fn shapes(&self) -> Vec<Shape> {
        let has = |s| self.figures.iter().any(|f| f.shape == s);
        Shape::ALL.into_iter().filter(|s| has(*s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(zt: &[f64], zr: &[f64]) -> Figure {
        let mk = |v: &[f64]| {
            v.iter()
                .map(|x| {
                    let mut s = Sample::new();
                    s.values.insert("gbps".into(), *x);
                    s
                })
                .collect()
        };
        Figure {
            key: "bulk1".into(),
            title: "t".into(),
            samples: [("ztunnel".into(), mk(zt)), ("zring".into(), mk(zr))].into(),
            ..Figure::default()
        }
    }

    #[test]
    fn figures_are_found_per_shape_and_old_reports_read_as_same_node() {
        let mut cross = fig(&[1.0], &[2.0]);
        cross.shape = Shape::Cross;
        let r = PeerReport {
            figures: vec![cross, fig(&[1.0], &[4.0])],
            ..PeerReport::default()
        };
        assert_eq!(r.figure("bulk1").unwrap().ratio("gbps"), Some(4.0));
        let c = r.figure_in(Shape::Cross, "bulk1").unwrap();
        assert_eq!(c.ratio("gbps"), Some(2.0));
        assert_eq!(r.shapes(), vec![Shape::Cross, Shape::Same]);
        let old: Figure = serde_json::from_str(r#"{"key":"k","title":"t","samples":{}}"#).unwrap();
        assert_eq!(old.shape, Shape::Same);
        let json = serde_json::to_string(&r.figures[0]).unwrap();
        assert!(json.contains(r#""shape":"cross""#), "{json}");
    }

    #[test]
    fn stat_takes_median_and_range() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stat::of(&[1.0, 4.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(&[]), None);
    }

    #[test]
    fn ratio_is_zring_over_ztunnel_medians() {
        let f = fig(&[4.0, 5.0, 6.0], &[9.0, 10.0, 20.0]);
        assert_eq!(f.ratio("gbps"), Some(2.0));
        assert_eq!(f.ratio("missing"), None);
        assert_eq!(fig(&[0.0], &[1.0]).ratio("gbps"), None);
        assert_eq!(f.stat("direct", "gbps"), None);
    }

    #[test]
    fn health_sums_failures_and_ands_checksums() {
        let mut f = fig(&[1.0, 1.0], &[1.0]);
        let z = f.samples.get_mut("ztunnel").unwrap();
        z[0].failures = 2;
        z[1].failures = 3;
        z[1].checksum_ok = false;
        assert_eq!(f.health("ztunnel"), (5, false));
        assert_eq!(f.health("zring"), (0, true));
    }

    #[test]
    fn reasons_are_distinct_and_bounded() {
        let mut s = Sample::new();
        for i in 0..10 {
            s.reason(format!("r{}", i % 7));
            s.reason("r0");
        }
        assert_eq!(s.reasons.len(), 5);
    }
}
