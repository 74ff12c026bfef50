//! The pairs report as Markdown: per pass, medians (min–max) over repeats per target,
//! each zring column's ratio to ztunnel, and issue 23's goal for new pairs (pure).

use super::{PairSample, PairsReport};
use std::fmt::Write;

/// pairs/s at least this many times ztunnel's.
pub const GOAL_PAIRS_PER_S: f64 = 2.0;
/// Proxy CPU per new pair at most this share of ztunnel's.
pub const GOAL_CPU_PER_PAIR: f64 = 0.5;

/// The median of `v` (upper median for an even count; 0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

type Metric = fn(&PairSample) -> f64;

fn stat(r: &PairsReport, pass: &str, col: &str, f: Metric) -> (f64, f64, f64) {
    let samples = r.samples.get(pass).and_then(|p| p.get(col));
    let v: Vec<f64> = samples.map_or(vec![], |s| s.iter().map(f).collect());
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(v), lo, hi)
}

/// Row name, metric, decimals.
const ROWS: [(&str, Metric, usize); 6] = [
    ("new pairs/s", |s| s.pairs_per_s, 0),
    ("connect + first echo p50 µs", |s| s.p50_us as f64, 0),
    ("connect + first echo p99 µs", |s| s.p99_us as f64, 0),
    (
        "proxy CPU ms per new pair (A + B)",
        |s| s.cpu_ms_per_pair,
        3,
    ),
    (
        "new HBONE connections (SYNs at B's 15008)",
        |s| s.hbone_conns as f64,
        0,
    ),
    ("failures", |s| s.failures as f64, 0),
];

/// The ratio of `col`'s median to ztunnel's in `pass` (`None` without ztunnel's).
pub fn ratio(r: &PairsReport, pass: &str, col: &str, f: Metric) -> Option<f64> {
    let zt = stat(r, pass, "ztunnel", f).0;
    (zt > 0.0).then(|| stat(r, pass, col, f).0 / zt)
}

fn pass_text(pass: &str) -> &'static str {
    match pass {
        "cold" => "every pair for the first time",
        _ => {
            "the same pairs again once both pools let their connections go (a new \
             connection each; zring may resume its TLS sessions, ztunnel's client does not \
             resume)"
        }
    }
}

fn table(out: &mut String, r: &PairsReport, pass: &str) {
    let cols = &r.columns;
    let _ = writeln!(out, "| figure (median, min–max) | {} |", cols.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(cols.len()));
    for (name, f, d) in ROWS {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| {
                let (med, lo, hi) = stat(r, pass, c, f);
                format!("{med:.d$} ({lo:.d$}–{hi:.d$})")
            })
            .collect();
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    }
    let _ = writeln!(
        out,
        "\n| zring/ztunnel, {pass} | pairs/s | p99 | CPU per pair | goal (≥ {GOAL_PAIRS_PER_S}×, ≤ {GOAL_CPU_PER_PAIR}×) |\n|---|---|---|---|---|"
    );
    for c in cols.iter().filter(|c| *c != "ztunnel") {
        let pps = ratio(r, pass, c, ROWS[0].1);
        let p99 = ratio(r, pass, c, ROWS[2].1);
        let cpu = ratio(r, pass, c, ROWS[3].1);
        let x = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}×"));
        let met = matches!((pps, cpu),
            (Some(p), Some(c)) if p >= GOAL_PAIRS_PER_S && c <= GOAL_CPU_PER_PAIR);
        let goal = if met { "met" } else { "missed" };
        let _ = writeln!(
            out,
            "| {c} | {} | {} | {} | {goal} |",
            x(pps),
            x(p99),
            x(cpu)
        );
    }
}

/// The whole report.
pub fn markdown(r: &PairsReport) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "# New pod pairs across nodes, {}\n\ncommit `{}`, {} cores, kernel {}, {}; seed {}; \
         `{}`\n\n{} sources × {} destinations = {} pairs per pass, {} in flight, {} repeats \
         (targets alternate; each repeat starts both proxies fresh, 1 worker each, and runs \
         a cold then a warm pass); load before `{}`, after `{}`.",
        r.started_utc,
        r.commit,
        m.cores,
        m.kernel,
        m.cpu_model,
        r.seed,
        r.command_line.join(" "),
        r.sources,
        r.dests,
        r.sources * r.dests,
        r.concurrency,
        r.repeats,
        r.uptime_before,
        r.uptime_after,
    );
    for pass in super::PASSES {
        let _ = writeln!(out, "\n## {pass}: {}\n", pass_text(pass));
        table(&mut out, r, pass);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pps: f64, cpu: f64) -> PairSample {
        PairSample {
            pairs: 100,
            pairs_per_s: pps,
            cpu_ms_per_pair: cpu,
            p99_us: 1000,
            hbone_conns: 100,
            ..PairSample::default()
        }
    }

    #[test]
    fn ratios_and_goal_from_medians() {
        let mut r = PairsReport {
            columns: vec!["ztunnel".into(), "zring".into()],
            ..PairsReport::default()
        };
        let warm = r.samples.entry("warm".into()).or_default();
        let zt = [(100.0, 1.0), (90.0, 1.2), (300.0, 0.1)];
        let zr = [(250.0, 0.4), (200.0, 0.5), (210.0, 0.3)];
        warm.insert("ztunnel".into(), zt.map(|(p, c)| sample(p, c)).to_vec());
        warm.insert("zring".into(), zr.map(|(p, c)| sample(p, c)).to_vec());
        assert_eq!(ratio(&r, "warm", "zring", ROWS[0].1), Some(2.1));
        assert_eq!(ratio(&r, "cold", "zring", ROWS[0].1), None);
        let md = markdown(&r);
        assert!(
            md.contains("| zring | 2.10× | 1.00× | 0.40× | met |"),
            "{md}"
        );
        for s in r.samples.get_mut("warm").unwrap().get_mut("zring").unwrap() {
            s.pairs_per_s = 150.0;
        }
        assert!(markdown(&r).contains("| zring | 1.50× | 1.00× | 0.40× | missed |"));
    }

    #[test]
    fn median_is_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![]), 0.0);
    }
}
