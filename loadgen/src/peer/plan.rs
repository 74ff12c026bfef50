//! The figures of a peer run and their sizes (full or `--quick`), which of them each
//! shape measures, and which measurement each one is.

use super::figures::{self, Target};
use super::held::{self, HeldPlan};
use super::model::{Sample, Shape};
use std::time::Duration;

/// One figure of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureKind {
    Bulk1,
    Bulk4,
    EchoClosed,
    Open2k,
    Open5k,
    Open10k,
    Sweep,
    Churn1,
    Churn16,
    Held,
}

impl FigureKind {
    /// Every figure, in report order.
    pub const ALL: [FigureKind; 10] = [
        FigureKind::Bulk1,
        FigureKind::Bulk4,
        FigureKind::EchoClosed,
        FigureKind::Open2k,
        FigureKind::Open5k,
        FigureKind::Open10k,
        FigureKind::Sweep,
        FigureKind::Churn1,
        FigureKind::Churn16,
        FigureKind::Held,
    ];

    /// The key in report.json.
    pub fn key(self) -> &'static str {
        match self {
            FigureKind::Bulk1 => "bulk1",
            FigureKind::Bulk4 => "bulk4",
            FigureKind::EchoClosed => "echo_closed",
            FigureKind::Open2k => "open_2k",
            FigureKind::Open5k => "open_5k",
            FigureKind::Open10k => "open_10k",
            FigureKind::Sweep => "sweep",
            FigureKind::Churn1 => "churn1",
            FigureKind::Churn16 => "churn16",
            FigureKind::Held => "held",
        }
    }

    /// The figure whose report key is `key`.
    pub fn from_key(key: &str) -> Option<FigureKind> {
        FigureKind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// The human title.
    pub fn title(self) -> String {
        match self {
            FigureKind::Bulk1 => "bulk, 1 stream",
            FigureKind::Bulk4 => "bulk, 4 streams",
            FigureKind::EchoClosed => "1 KiB echo, closed loop, 1 conn",
            FigureKind::Open2k => "1 KiB echo, open loop 2k/s, 8 conns",
            FigureKind::Open5k => "1 KiB echo, open loop 5k/s, 8 conns",
            FigureKind::Open10k => "1 KiB echo, open loop 10k/s, 8 conns",
            FigureKind::Sweep => "1 KiB echo, rate sweep, 8 conns",
            FigureKind::Churn1 => "connection churn, concurrency 1",
            FigureKind::Churn16 => "connection churn, concurrency 16",
            FigureKind::Held => "held idle connections",
        }
        .to_string()
    }

    /// Whether a direct (no proxy) column makes sense (not for proxy memory).
    pub fn has_direct(self) -> bool {
        self != FigureKind::Held
    }

    /// Whether `shape` measures this figure. Cross node has one open-loop rate (5k/s:
    /// a 1-core proxy pair's share of the 10k/s that two cores carry on one node) and no
    /// sweep; same node keeps the figures of its earlier reports.
    pub fn in_shape(self, shape: Shape) -> bool {
        use FigureKind::*;
        match shape {
            Shape::Cross => !matches!(self, Open2k | Open10k | Sweep),
            Shape::Same => self != Open5k,
        }
    }
}

/// Sizes of every figure.
#[derive(Debug, Clone)]
pub struct Plan {
    pub repeats: usize,
    pub bulk_bytes: u64,
    pub rr_secs: Duration,
    pub sweep_rates: Vec<f64>,
    pub sweep_secs: Duration,
    pub churn_ops: u64,
    pub held: HeldPlan,
    pub seed: u64,
    /// The figures to measure (empty: all).
    pub only: Vec<FigureKind>,
}

impl Plan {
    /// The full run (under 15 minutes on 2 cores) or the quick one (about a minute).
    pub fn new(quick: bool, seed: u64) -> Self {
        let secs = Duration::from_secs_f64;
        if quick {
            return Plan {
                repeats: 3,
                bulk_bytes: 128 << 20,
                rr_secs: secs(0.5),
                sweep_rates: vec![1000.0, 5000.0, 20_000.0],
                sweep_secs: secs(0.4),
                churn_ops: 300,
                held: HeldPlan {
                    conns: 200,
                    hold: secs(0.3),
                    after_close: secs(1.0),
                },
                seed,
                only: Vec::new(),
            };
        }
        Plan {
            repeats: 3,
            bulk_bytes: 2 << 30,
            rr_secs: secs(3.0),
            sweep_rates: vec![
                2000.0, 5000.0, 10_000.0, 15_000.0, 20_000.0, 30_000.0, 40_000.0,
            ],
            sweep_secs: secs(2.0),
            churn_ops: 5000,
            held: HeldPlan {
                conns: 5000,
                hold: secs(2.0),
                after_close: secs(15.0),
            },
            seed,
            only: Vec::new(),
        }
    }

    /// The figures `shape` measures, in report order.
    pub fn figures(&self, shape: Shape) -> Vec<FigureKind> {
        let all = FigureKind::ALL.into_iter().filter(|k| k.in_shape(shape));
        all.filter(|k| self.only.is_empty() || self.only.contains(k))
            .collect()
    }

    /// A rough duration of `shapes` (for the progress bar).
    pub fn estimate(&self, direct: bool, shapes: &[Shape]) -> Duration {
        let targets = if direct { 3.0 } else { 2.0 };
        let secs = |kind: FigureKind| {
            let h = &self.held;
            let once = match kind {
                FigureKind::Bulk1 | FigureKind::Bulk4 => self.bulk_bytes as f64 / 0.8e9,
                FigureKind::Sweep => {
                    self.sweep_secs.as_secs_f64() * 1.3 * self.sweep_rates.len() as f64
                }
                FigureKind::Churn1 | FigureKind::Churn16 => self.churn_ops as f64 / 2000.0,
                FigureKind::Held => {
                    (h.hold + h.after_close).as_secs_f64() + h.conns as f64 / 3000.0
                }
                _ => self.rr_secs.as_secs_f64() * 1.3,
            };
            let n = if kind.has_direct() { targets } else { 2.0 };
            once * n
        };
        let per: f64 = shapes.iter().flat_map(|s| self.figures(*s)).map(secs).sum();
        Duration::from_secs_f64(per * self.repeats as f64)
    }

    /// Measures figure `kind` once on `t`.
    pub fn measure(&self, kind: FigureKind, t: Target) -> Sample {
        let seed = self.seed;
        let open = |rate| figures::rr(t, &figures::open_loop(rate, 8, self.rr_secs, seed)).0;
        match kind {
            FigureKind::Bulk1 => figures::bulk(t, 1, self.bulk_bytes, seed),
            FigureKind::Bulk4 => figures::bulk(t, 4, self.bulk_bytes, seed),
            FigureKind::EchoClosed => figures::rr(t, &figures::closed_loop(self.rr_secs, seed)).0,
            FigureKind::Open2k => open(2000.0),
            FigureKind::Open5k => open(5000.0),
            FigureKind::Open10k => open(10_000.0),
            FigureKind::Sweep => figures::sweep(t, &self.sweep_rates, self.sweep_secs, seed),
            FigureKind::Churn1 => self.churn(t, 1),
            FigureKind::Churn16 => self.churn(t, 16),
            FigureKind::Held => held::held(t, self.held),
        }
    }

    fn churn(&self, t: Target, concurrency: usize) -> Sample {
        let p = figures::churn(concurrency, self.churn_ops, self.seed);
        let mut s = figures::rr(t, &p).0;
        if let Some(r) = s.values.remove("rps") {
            s.values.insert("ops_s".into(), r);
        }
        s.values.insert("failures".into(), s.failures as f64);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_plan_meets_the_issue_sizes() {
        let p = Plan::new(false, 1);
        assert!(p.repeats >= 3);
        assert!(p.bulk_bytes >= 2 << 30);
        assert!(p.churn_ops >= 5000 && p.held.conns >= 5000);
        assert_eq!(p.held.after_close, Duration::from_secs(15));
        let est = p.estimate(true, &Shape::ALL);
        assert!(est < Duration::from_secs(25 * 60), "{est:?}");
        assert!(p.estimate(true, &[Shape::Same]) < est);
    }

    #[test]
    fn quick_plan_is_about_a_minute() {
        let p = Plan::new(true, 1);
        let est = p.estimate(true, &Shape::ALL);
        assert!(est < Duration::from_secs(120), "{est:?}");
        assert_eq!(p.figures(Shape::Same).len(), 9);
        let cross = p.figures(Shape::Cross);
        assert_eq!(cross.len(), 7, "{cross:?}");
        assert!(cross.contains(&FigureKind::Open5k) && !cross.contains(&FigureKind::Sweep));
        assert!(!FigureKind::Held.has_direct());
    }

    #[test]
    fn only_selects_figures_by_key_in_report_order() {
        let mut p = Plan::new(true, 1);
        let keys = ["held", "bulk1"];
        p.only = keys
            .iter()
            .map(|k| FigureKind::from_key(k).unwrap())
            .collect();
        assert_eq!(
            p.figures(Shape::Cross),
            vec![FigureKind::Bulk1, FigureKind::Held]
        );
        p.only = vec![FigureKind::Open5k, FigureKind::Open10k];
        assert_eq!(p.figures(Shape::Cross), vec![FigureKind::Open5k]);
        assert_eq!(p.figures(Shape::Same), vec![FigureKind::Open10k]);
        assert_eq!(FigureKind::from_key("nope"), None);
    }
}
