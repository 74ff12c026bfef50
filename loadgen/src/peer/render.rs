//! The peer report as Markdown: the goals marked met or not, then per shape (cross node
//! first) one table per figure (direct | ztunnel | zring | zring/ztunnel), failures (pure).

use super::model::{Figure, PeerReport, Shape, Stat, TARGETS};
use std::fmt::Write as _;

/// Whether a larger value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// A metric the report shows: figure key, metric name, label, direction.
pub type MetricDef = (&'static str, &'static str, &'static str, Better);

const H: Better = Better::Higher;
const L: Better = Better::Lower;

/// Every metric row of the report, in order.
pub const METRICS: &[MetricDef] = &[
    ("bulk1", "gbps", "Gb/s", H),
    ("bulk1", "cpu_s_per_gb", "proxy CPU s/GB", L),
    ("bulk4", "gbps", "Gb/s", H),
    ("bulk4", "cpu_s_per_gb", "proxy CPU s/GB", L),
    ("echo_closed", "p50_us", "p50 µs", L),
    ("echo_closed", "p90_us", "p90 µs", L),
    ("echo_closed", "p99_us", "p99 µs", L),
    ("echo_closed", "p999_us", "p99.9 µs", L),
    ("echo_closed", "max_us", "max µs", L),
    ("echo_closed", "cpu_s_per_1k", "proxy CPU s/1000 req", L),
    ("open_2k", "p50_us", "p50 µs", L),
    ("open_2k", "p99_us", "p99 µs", L),
    ("open_2k", "p999_us", "p99.9 µs", L),
    ("open_2k", "max_us", "max µs", L),
    ("open_2k", "cpu_s_per_1k", "proxy CPU s/1000 req", L),
    ("open_5k", "p50_us", "p50 µs", L),
    ("open_5k", "p90_us", "p90 µs", L),
    ("open_5k", "p99_us", "p99 µs", L),
    ("open_5k", "p999_us", "p99.9 µs", L),
    ("open_5k", "max_us", "max µs", L),
    ("open_5k", "cpu_s_per_1k", "proxy CPU s/1000 req", L),
    ("open_10k", "p50_us", "p50 µs", L),
    ("open_10k", "p90_us", "p90 µs", L),
    ("open_10k", "p99_us", "p99 µs", L),
    ("open_10k", "p999_us", "p99.9 µs", L),
    ("open_10k", "max_us", "max µs", L),
    ("open_10k", "cpu_s_per_1k", "proxy CPU s/1000 req", L),
    (
        "sweep",
        "max_rate_p99_1ms",
        "highest rate with p99 < 1 ms, req/s",
        H,
    ),
    (
        "sweep",
        "max_achieved_rps",
        "highest achieved rate, req/s",
        H,
    ),
    ("churn1", "ops_s", "connections/s", H),
    ("churn1", "p50_us", "p50 µs", L),
    ("churn1", "p99_us", "p99 µs", L),
    ("churn1", "failures", "failures", L),
    ("churn1", "cpu_s_per_1k", "proxy CPU s/1000 conns", L),
    ("churn16", "ops_s", "connections/s", H),
    ("churn16", "p50_us", "p50 µs", L),
    ("churn16", "p99_us", "p99 µs", L),
    ("churn16", "failures", "failures", L),
    ("churn16", "cpu_s_per_1k", "proxy CPU s/1000 conns", L),
    ("held", "rss_per_conn_kb", "proxy RSS per held conn, KB", L),
    ("held", "rss_start_mb", "proxy RSS before, MB", L),
    ("held", "rss_held_mb", "proxy RSS while held, MB", L),
    (
        "held",
        "rss_after_close_mb",
        "proxy RSS after close + wait, MB",
        L,
    ),
];

/// A number with precision that suits its size.
pub fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// `median (min–max)`, or `-`.
pub fn cell(s: Option<Stat>) -> String {
    match s {
        Some(s) if s.min == s.max => num(s.median),
        Some(s) => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
        None => "-".into(),
    }
}

/// Which proxy is better on this metric, given zring/ztunnel.
pub fn better(ratio: f64, dir: Better) -> &'static str {
    match (ratio, dir) {
        (r, _) if (r - 1.0).abs() < 0.02 => "even",
        (r, Better::Higher) if r > 1.0 => "zring",
        (r, Better::Lower) if r < 1.0 => "zring",
        _ => "ztunnel",
    }
}

fn figure_table(o: &mut String, f: &Figure) {
    let _ = writeln!(o, "\n### {}\n", f.title);
    let _ = writeln!(
        o,
        "| metric | direct | ztunnel | zring | zring/ztunnel | better |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for (_, m, label, dir) in METRICS.iter().filter(|d| d.0 == f.key) {
        let cells: Vec<String> = TARGETS.iter().map(|t| cell(f.stat(t, m))).collect();
        let ratio = f.ratio(m);
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} | {} | {} |",
            cells[0],
            cells[1],
            cells[2],
            ratio.map_or("-".into(), |r| format!("{r:.2}×")),
            ratio.map_or("-", |r| better(r, *dir)),
        );
    }
    let busy: Vec<String> = TARGETS
        .iter()
        .filter_map(|t| {
            let s = f.samples.get(*t)?;
            let v: Vec<f64> = s.iter().map(|x| x.host_busy_pct).collect();
            Some(format!("{t} {}%", num(Stat::of(&v)?.median)))
        })
        .collect();
    let _ = writeln!(
        o,
        "\nhost CPU busy during the phase (median): {}",
        busy.join(", ")
    );
}

fn failures(o: &mut String, r: &PeerReport) {
    let _ = writeln!(o, "\n## Failures\n");
    let mut any = false;
    for f in &r.figures {
        for t in TARGETS {
            let (n, sums) = f.health(t);
            let reasons: Vec<&String> = f
                .samples
                .get(t)
                .into_iter()
                .flatten()
                .flat_map(|s| &s.reasons)
                .collect();
            if n > 0 || !sums || !reasons.is_empty() {
                any = true;
                let why: Vec<&str> = reasons.iter().take(3).map(|s| s.as_str()).collect();
                let sums = if sums { "" } else { ", CHECKSUM MISMATCH" };
                let _ = writeln!(
                    o,
                    "- {} {} via {t}: {n} failed{sums}: {}",
                    f.shape.key(),
                    f.key,
                    why.join("; ")
                );
            }
        }
    }
    for f in &r.failures {
        any = true;
        let _ = writeln!(o, "- {f}");
    }
    if !any {
        let _ = writeln!(o, "none: every operation succeeded and every checksum held");
    }
}

/// What each shape's figures went through.
fn shape_intro(r: &PeerReport, shape: Shape) -> String {
    let s = &r.settings;
    match shape {
        Shape::Cross => format!(
            "Each proxy on two nodes: network namespaces A and B joined by a veth \
             (10.9.0.1 / 10.9.0.2), one proxy process on each, {} core(s) each; client \
             (10.250.0.1, on A) → SOCKS5 → proxy A → HBONE (mTLS + HTTP/2 CONNECT) over the \
             veth → proxy B → server (10.250.0.2, on B). Proxy CPU and RSS are A + B. The \
             direct column is the client straight to the server over the same veth.",
            s.cross_cores.max(1)
        ),
        Shape::Same => format!(
            "Each proxy in its own network namespace, {} core(s), carrying both ends: \
             client → SOCKS5 → the proxy → server, both workloads on its node (zring joins \
             them directly unless its same-node fast path is off; ztunnel opens HBONE to \
             its own 15008).",
            s.cores
        ),
    }
}

/// The report as Markdown.
pub fn markdown(r: &PeerReport) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let s = &r.settings;
    let _ = writeln!(o, "# zring vs istio/ztunnel, {}\n", r.started_utc);
    let _ = writeln!(
        o,
        "commit `{}`, seed {}, machine: {} cores, kernel {}, {}\n\n`{}`\n",
        r.commit,
        r.seed,
        m.cores,
        m.kernel,
        m.cpu_model,
        r.command_line.join(" ")
    );
    let _ = writeln!(
        o,
        "Both proxies get the same LocalConfig, servers and client. {} repeats per figure, \
         order alternated; cells are median (min–max). Bulk {} MiB per figure, churn {} \
         connections, {} held connections{}.\n",
        s.repeats,
        s.bulk_bytes >> 20,
        s.churn_ops,
        s.held_conns,
        if s.quick { " (--quick)" } else { "" }
    );
    let shapes = r.shapes();
    for &shape in &shapes {
        let _ = writeln!(o, "- **{}**: {}", shape.title(), shape_intro(r, shape));
    }
    let _ = writeln!(o, "\n## Goals (issue 23)\n\n{}", super::goals23::table(r));
    for shape in shapes {
        let _ = writeln!(o, "## {}", shape.title());
        let figs = r.figures.iter().filter(|f| f.shape == shape);
        figs.for_each(|f| figure_table(&mut o, f));
        o.push('\n');
    }
    if r.figures.iter().any(|f| f.shape == Shape::Same) {
        let _ = writeln!(
            o,
            "## Goals of issue 8 (same node)\n\n{}",
            super::goals::table(r)
        );
    }
    failures(&mut o, r);
    o
}

#[cfg(test)]
mod tests;
