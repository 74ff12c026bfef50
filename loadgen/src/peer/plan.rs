//! The figures of a peer run and their sizes (full or `--quick`), and which measurement
//! each one is.

use super::figures::{self, Target};
use super::held::{self, HeldPlan};
use super::model::Sample;
use std::time::Duration;

/// One figure of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureKind {
    Bulk1,
    Bulk4,
    EchoClosed,
    Open2k,
    Open10k,
    Sweep,
    Churn1,
    Churn16,
    Held,
}

impl FigureKind {
    /// Every figure, in report order.
    pub const ALL: [FigureKind; 9] = [
        FigureKind::Bulk1,
        FigureKind::Bulk4,
        FigureKind::EchoClosed,
        FigureKind::Open2k,
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

    /// The figures measured, in report order.
    pub fn figures(&self) -> Vec<FigureKind> {
        let all = FigureKind::ALL.into_iter();
        all.filter(|k| self.only.is_empty() || self.only.contains(k))
            .collect()
    }

    /// A rough duration of the whole run (for the progress bar).
    pub fn estimate(&self, direct: bool) -> Duration {
        let targets = if direct { 3.0 } else { 2.0 };
        let rr = self.rr_secs.as_secs_f64() * 1.3 * 3.0;
        let sweep = self.sweep_secs.as_secs_f64() * 1.3 * self.sweep_rates.len() as f64;
        let bulk = self.bulk_bytes as f64 * 2.0 / 0.8e9;
        let churn = self.churn_ops as f64 * 2.0 / 2000.0;
        let h = &self.held;
        let held = (h.hold + h.after_close).as_secs_f64() + h.conns as f64 / 3000.0;
        let per = (rr + sweep + bulk + churn) * targets + held * 2.0;
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
        assert!(
            p.estimate(true) < Duration::from_secs(15 * 60),
            "{:?}",
            p.estimate(true)
        );
    }

    #[test]
    fn quick_plan_is_about_a_minute() {
        let p = Plan::new(true, 1);
        assert!(
            p.estimate(true) < Duration::from_secs(90),
            "{:?}",
            p.estimate(true)
        );
        assert_eq!(FigureKind::ALL.len(), p.figures().len());
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
        assert_eq!(p.figures(), vec![FigureKind::Bulk1, FigureKind::Held]);
        assert_eq!(FigureKind::from_key("nope"), None);
    }
}
