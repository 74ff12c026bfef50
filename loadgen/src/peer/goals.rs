//! The goals of issue 8 (zring vs ztunnel in the same run, same node), each evaluated
//! from a report as met, not met or not measured (pure).

use super::model::{Figure, PeerReport};
use super::render::num;
use std::fmt::Write as _;

/// One goal and what the run measured for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub figure: &'static str,
    pub goal: &'static str,
    pub measured: String,
    /// None: not measured by this run.
    pub met: Option<bool>,
}

/// A ratio as `1.23×`, or `-`.
pub(super) fn x(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}×"))
}

/// (proxy − direct) of zring over that of ztunnel, on the medians.
pub fn added_ratio(f: &Figure, metric: &str) -> Option<f64> {
    let d = f.stat("direct", metric)?.median;
    let z = f.stat("zring", metric)?.median - d;
    let p = f.stat("ztunnel", metric)?.median - d;
    (p > 0.0).then(|| z / p)
}

fn both(
    r: &PeerReport,
    figs: [&str; 2],
    metric: &str,
    ok: impl Fn(f64) -> bool,
) -> (String, Option<bool>) {
    let v: Vec<Option<f64>> = figs.iter().map(|k| r.figure(k)?.ratio(metric)).collect();
    let measured = format!("{}: {}, {}: {}", figs[0], x(v[0]), figs[1], x(v[1]));
    let met = v.iter().map(|r| r.map(&ok)).collect::<Option<Vec<bool>>>();
    (measured, met.map(|m| m.iter().all(|b| *b)))
}

fn one(
    r: &PeerReport,
    fig: &str,
    ratio: impl Fn(&Figure) -> Option<f64>,
    ok: impl Fn(f64) -> bool,
) -> (String, Option<bool>) {
    let v = r.figure(fig).and_then(ratio);
    (x(v), v.map(ok))
}

fn slo_rate(r: &PeerReport) -> (String, Option<bool>) {
    let m = |t| {
        r.figure("sweep")?
            .stat(t, "max_rate_p99_1ms")
            .map(|s| s.median)
    };
    match (m("zring"), m("ztunnel")) {
        (Some(z), Some(p)) if p > 0.0 => (x(Some(z / p)), Some(z / p >= 2.0)),
        (Some(z), Some(_)) if z > 0.0 => (format!("zring {z:.0}/s, ztunnel never"), Some(true)),
        (Some(_), Some(_)) => (
            "neither kept p99 < 1 ms at the lowest swept rate".into(),
            Some(false),
        ),
        _ => ("-".into(), None),
    }
}

fn churn(r: &PeerReport) -> (String, Option<bool>) {
    let mut parts = Vec::new();
    let mut met = Some(true);
    for key in ["churn1", "churn16"] {
        let Some(f) = r.figure(key) else {
            return ("-".into(), None);
        };
        let (rate, p99) = (f.ratio("ops_s"), f.ratio("p99_us"));
        let fails = f.health("zring").0;
        parts.push(format!(
            "{key}: {} conn/s, p99 {}, {fails} zring failures",
            x(rate),
            x(p99)
        ));
        let ok = rate
            .zip(p99)
            .map(|(a, b)| a >= 2.0 && b <= 1.0 && fails == 0);
        met = met.zip(ok).map(|(a, b)| a && b);
    }
    (parts.join("; "), met)
}

fn held(r: &PeerReport) -> (String, Option<bool>) {
    let Some(f) = r.figure("held") else {
        return ("-".into(), None);
    };
    let per = f.ratio("rss_per_conn_kb");
    let start = f.stat("zring", "rss_start_mb").map(|s| s.median);
    let after = f.stat("zring", "rss_after_close_mb").map(|s| s.median);
    let back = start
        .zip(after)
        .filter(|(s, _)| *s > 0.0)
        .map(|(s, a)| a / s);
    let measured = format!(
        "per conn {}; zring RSS after close {} of its start",
        x(per),
        back.map_or("-".into(), |b| format!("{}%", num(b * 100.0)))
    );
    (measured, per.zip(back).map(|(p, b)| p <= 0.5 && b <= 1.2))
}

/// Every goal of issue 8, evaluated.
pub fn goals(r: &PeerReport) -> Vec<Goal> {
    let g = |figure, goal, (measured, met): (String, Option<bool>)| Goal {
        figure,
        goal,
        measured,
        met,
    };
    vec![
        g(
            "bulk Gb/s, 1 and 4 streams",
            "≥ 1.2×",
            both(r, ["bulk1", "bulk4"], "gbps", |v| v >= 1.2),
        ),
        g(
            "proxy CPU s per GB",
            "≤ 0.8×",
            both(r, ["bulk1", "bulk4"], "cpu_s_per_gb", |v| v <= 0.8),
        ),
        g(
            "1 KiB echo closed loop: added p50 (proxy − direct)",
            "≤ 0.5×",
            one(r, "echo_closed", |f| added_ratio(f, "p50_us"), |v| v <= 0.5),
        ),
        g(
            "1 KiB echo open loop 10k/s: added p99",
            "≤ 0.5×",
            one(r, "open_10k", |f| added_ratio(f, "p99_us"), |v| v <= 0.5),
        ),
        g(
            "proxy CPU s per 1000 echoes (10k/s)",
            "≤ 0.5×",
            one(r, "open_10k", |f| f.ratio("cpu_s_per_1k"), |v| v <= 0.5),
        ),
        g("highest rate with p99 < 1 ms", "≥ 2×", slo_rate(r)),
        g(
            "new connections/s at concurrency 1 and 16",
            "≥ 2×, zero failures, p99 ≤ ztunnel's",
            churn(r),
        ),
        g(
            "RSS per held idle connection",
            "≤ 0.5×; 15 s after close RSS within 20% of its start",
            held(r),
        ),
        g(
            "loadgen demo, mesh path",
            "20k req/s on 2 cores without saturating (p99 < 5 ms)",
            (
                "measured by `zring-loadgen demo`, not by this run".into(),
                None,
            ),
        ),
    ]
}

/// A goal's status cell.
pub fn status(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// The goals as a Markdown table.
pub fn table(r: &PeerReport) -> String {
    let mut o = String::from("| figure | goal | zring vs ztunnel | status |\n|---|---|---|---|\n");
    for g in goals(r) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            g.figure,
            g.goal,
            g.measured,
            status(g.met)
        );
    }
    o
}
