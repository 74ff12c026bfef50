//! The goals of issue 23 (zring vs ztunnel in the same run, medians), per shape: cross
//! node first, then same node (its fast path on, the default), each evaluated from a
//! report as met, not met or not measured (pure).

use super::goals::{added_ratio, x, Goal};
use super::model::{Figure, PeerReport, Shape};
use std::fmt::Write as _;

/// One shape's figures of a report.
#[derive(Clone, Copy)]
struct In<'a>(&'a PeerReport, Shape);

impl In<'_> {
    fn get(&self, key: &str) -> Option<&Figure> {
        self.0.figure_in(self.1, key)
    }

    /// zring/ztunnel of `metric` in figure `key`.
    fn ratio(&self, key: &str, metric: &str) -> Option<f64> {
        self.get(key)?.ratio(metric)
    }
}

/// What one report measured for a goal: its parts (a label and zring/ztunnel, `None`
/// when not measured) and, for a goal that counts them, zring's failures (`Some(None)`:
/// not measured).
#[derive(Debug, Clone, PartialEq)]
struct Measured {
    parts: Vec<(&'static str, Option<f64>)>,
    fails: Option<Option<u64>>,
}

/// One goal: where its parts come from and when a part's ratio meets it.
struct Spec {
    figure: &'static str,
    goal: &'static str,
    ok: fn(f64) -> bool,
    read: fn(In) -> Measured,
}

const fn spec(
    figure: &'static str,
    goal: &'static str,
    ok: fn(f64) -> bool,
    read: fn(In) -> Measured,
) -> Spec {
    Spec {
        figure,
        goal,
        ok,
        read,
    }
}

fn ratios(i: In, parts: &[(&'static str, &str)], metric: &str) -> Measured {
    Measured {
        parts: parts
            .iter()
            .map(|(l, k)| (*l, i.ratio(k, metric)))
            .collect(),
        fails: None,
    }
}

const BULK: [(&str, &str); 2] = [("1 stream", "bulk1"), ("4 streams", "bulk4")];

fn bulk_gbps(i: In) -> Measured {
    ratios(i, &BULK, "gbps")
}

fn bulk_cpu(i: In) -> Measured {
    ratios(i, &BULK, "cpu_s_per_gb")
}

fn echo_cpu(i: In, open: &'static str, key: &str) -> Measured {
    ratios(
        i,
        &[("closed loop", "echo_closed"), (open, key)],
        "cpu_s_per_1k",
    )
}

fn echo_cpu_5k(i: In) -> Measured {
    echo_cpu(i, "5k", "open_5k")
}

fn echo_cpu_10k(i: In) -> Measured {
    echo_cpu(i, "10k", "open_10k")
}

fn closed_p50(i: In) -> Measured {
    ratios(i, &[("p50", "echo_closed")], "p50_us")
}

fn open_5k_p99(i: In) -> Measured {
    ratios(i, &[("p99", "open_5k")], "p99_us")
}

fn added_p50(i: In) -> Measured {
    let r = i.get("echo_closed").and_then(|f| added_ratio(f, "p50_us"));
    Measured {
        parts: vec![("added p50", r)],
        fails: None,
    }
}

fn churn(i: In) -> Measured {
    let fails = ["churn1", "churn16"]
        .iter()
        .map(|k| Some(i.get(k)?.health("zring").0))
        .sum();
    Measured {
        fails: Some(fails),
        ..ratios(i, &[("c1", "churn1"), ("c16", "churn16")], "ops_s")
    }
}

fn held(i: In) -> Measured {
    ratios(i, &[("KB each", "held")], "rss_per_conn_kb")
}

/// The cross-node goals.
const CROSS: [Spec; 7] = [
    spec("bulk Gb/s", "≥ 1.3×", |v| v >= 1.3, bulk_gbps),
    spec(
        "proxy CPU s per GB (A + B)",
        "≤ 0.8×",
        |v| v <= 0.8,
        bulk_cpu,
    ),
    spec(
        "proxy CPU per echo (A + B)",
        "≤ 0.85×",
        |v| v <= 0.85,
        echo_cpu_5k,
    ),
    spec(
        "1 KiB echo closed loop p50",
        "≤ 1.0×",
        |v| v <= 1.0,
        closed_p50,
    ),
    spec(
        "1 KiB echo open loop 5k/s p99",
        "≤ 1.0×",
        |v| v <= 1.0,
        open_5k_p99,
    ),
    spec(
        "new connections/s",
        "≥ 1.2×, 0 failures",
        |v| v >= 1.2,
        churn,
    ),
    spec(
        "RSS per held connection (A + B)",
        "≤ 0.5×",
        |v| v <= 0.5,
        held,
    ),
];

/// The same-node goals (fast path on).
const SAME: [Spec; 5] = [
    spec("bulk Gb/s", "≥ 2×", |v| v >= 2.0, bulk_gbps),
    spec("proxy CPU s per GB", "≤ 0.4×", |v| v <= 0.4, bulk_cpu),
    spec("proxy CPU per echo", "≤ 0.5×", |v| v <= 0.5, echo_cpu_10k),
    spec(
        "1 KiB echo closed loop: added p50 (proxy − direct)",
        "≤ 0.5×",
        |v| v <= 0.5,
        added_p50,
    ),
    spec("RSS per held connection", "≤ 0.5×", |v| v <= 0.5, held),
];

fn specs(s: Shape) -> &'static [Spec] {
    match s {
        Shape::Cross => &CROSS,
        Shape::Same => &SAME,
    }
}

/// `label ratio, …` (and the failures), met when every part is measured and ok and no
/// counted failure happened.
fn judge(m: &Measured, ok: fn(f64) -> bool) -> (String, Option<bool>) {
    let shown: Vec<String> = m
        .parts
        .iter()
        .map(|(l, r)| format!("{l} {}", x(*r)))
        .collect();
    let met = m
        .parts
        .iter()
        .map(|(_, r)| r.map(ok))
        .collect::<Option<Vec<bool>>>()
        .map(|v| v.iter().all(|b| *b));
    match m.fails {
        None => (shown.join(", "), met),
        Some(None) => (shown.join(", "), None),
        Some(Some(n)) => (
            format!("{}; {n} zring failures", shown.join(", ")),
            met.map(|m| m && n == 0),
        ),
    }
}

/// Every goal of issue 23 for the shapes the report measured, in report order.
pub fn goals(r: &PeerReport) -> Vec<(Shape, Goal)> {
    let one = |s: Shape, spec: &Spec| {
        let (measured, met) = judge(&(spec.read)(In(r, s)), spec.ok);
        Goal {
            figure: spec.figure,
            goal: spec.goal,
            measured,
            met,
        }
    };
    r.shapes()
        .into_iter()
        .flat_map(|s| specs(s).iter().map(move |spec| (s, one(s, spec))))
        .collect()
}

/// The goals as a Markdown table.
pub fn table(r: &PeerReport) -> String {
    let mut o = String::from(
        "| shape | figure | goal | zring vs ztunnel | status |\n|---|---|---|---|---|\n",
    );
    for (s, g) in goals(r) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            s.title().to_lowercase(),
            g.figure,
            g.goal,
            g.measured,
            super::goals::status(g.met)
        );
    }
    o
}

/// The median of the measured values (`None` when there are none).
fn median(v: &[Option<f64>]) -> Option<f64> {
    let mut m: Vec<f64> = v.iter().flatten().copied().collect();
    m.sort_by(f64::total_cmp);
    let n = m.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(m[n / 2]),
        _ => Some((m[n / 2 - 1] + m[n / 2]) / 2.0),
    }
}

/// One row of [`over_runs`]: a part's ratio in each run, their median, its status.
fn part_row(o: &mut String, head: &str, label: &str, per_run: &[Option<f64>], ok: fn(f64) -> bool) {
    let runs: Vec<String> = per_run
        .iter()
        .map(|r| r.map_or("-".into(), |v| format!("{v:.2}")))
        .collect();
    let m = median(per_run);
    let _ = writeln!(
        o,
        "| {head} | {label} | {} | {} | {} |",
        runs.join(" / "),
        x(m),
        super::goals::status(m.map(ok))
    );
}

/// Issue 23's goals judged over several runs: each part's zring/ztunnel ratio in every
/// run and the median of those ratios, met when the median is; a goal that counts
/// failures also needs none in any run. A Markdown table, shapes in the order first seen.
pub fn over_runs(reports: &[PeerReport]) -> String {
    let mut shapes: Vec<Shape> = Vec::new();
    for s in reports.iter().flat_map(|r| r.shapes()) {
        if !shapes.contains(&s) {
            shapes.push(s);
        }
    }
    let mut o = String::from(
        "| shape | figure | goal | part | zring/ztunnel per run | median | status |\n|---|---|---|---|---|---|---|\n",
    );
    for s in shapes {
        for spec in specs(s) {
            let runs: Vec<Measured> = reports.iter().map(|r| (spec.read)(In(r, s))).collect();
            let head = format!(
                "{} | {} | {}",
                s.title().to_lowercase(),
                spec.figure,
                spec.goal
            );
            for (n, (label, _)) in runs[0].parts.iter().enumerate() {
                let per_run: Vec<Option<f64>> = runs.iter().map(|m| m.parts[n].1).collect();
                part_row(&mut o, &head, label, &per_run, spec.ok);
            }
            if runs[0].fails.is_some() {
                fails_row(&mut o, &head, &runs);
            }
        }
    }
    o
}

/// The zring failures a goal counts, per run and in all.
fn fails_row(o: &mut String, head: &str, runs: &[Measured]) {
    let per_run: Vec<Option<u64>> = runs.iter().map(|m| m.fails.flatten()).collect();
    let shown: Vec<String> = per_run
        .iter()
        .map(|f| f.map_or("-".into(), |n| n.to_string()))
        .collect();
    let total: Option<u64> = per_run.iter().copied().sum();
    let _ = writeln!(
        o,
        "| {head} | zring failures | {} | {} in all | {} |",
        shown.join(" / "),
        total.map_or("-".into(), |n| n.to_string()),
        super::goals::status(total.map(|n| n == 0))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::fixture::{cross_fixture, fixture};

    #[test]
    fn cross_goals_use_the_cross_figures_only() {
        let r = cross_fixture();
        let g = goals(&r);
        assert!(g.iter().all(|(s, _)| *s == Shape::Cross), "{g:?}");
        let find = |f: &str| &g.iter().find(|(_, x)| x.figure == f).unwrap().1;
        // bulk 9.5/7.7 = 1.23 and 10/8 = 1.25: under 1.3.
        let b = find("bulk Gb/s");
        assert_eq!(b.met, Some(false), "{b:?}");
        assert_eq!(b.measured, "1 stream 1.23×, 4 streams 1.25×");
        assert_eq!(find("proxy CPU s per GB (A + B)").met, Some(true));
        // CPU per echo 0.02/0.05 closed and 0.04/0.063 at 5k: both ≤ 0.85.
        assert_eq!(find("proxy CPU per echo (A + B)").met, Some(true));
        assert_eq!(find("1 KiB echo closed loop p50").met, Some(true));
        let churn = find("new connections/s");
        assert_eq!(churn.met, Some(false));
        assert!(churn.measured.ends_with("9 zring failures"), "{churn:?}");
        assert_eq!(find("RSS per held connection (A + B)").met, Some(false));
    }

    #[test]
    fn same_node_goals_and_missing_figures() {
        let r = fixture();
        let g = goals(&r);
        assert_eq!(g.len(), 5);
        assert!(g.iter().all(|(s, _)| *s == Shape::Same));
        // added p50 (49-20)/(78-20) = 0.5: met; bulk 1.23×: under 2×.
        assert_eq!(g[3].1.met, Some(true), "{:?}", g[3]);
        assert_eq!(g[0].1.met, Some(false));
        let mut partial = cross_fixture();
        partial.figures.retain(|f| f.key != "open_5k");
        let g = goals(&partial);
        let p99 = &g.iter().find(|(_, x)| x.figure.contains("5k/s")).unwrap().1;
        assert_eq!(p99.met, None);
        let md = table(&partial);
        assert!(md.contains("| cross node | bulk Gb/s | ≥ 1.3× |"), "{md}");
        assert!(md.contains("not measured"), "{md}");
    }

    /// `r` with zring's `metric` in figure `key` set to `v` in every sample.
    fn with_zring(mut r: PeerReport, key: &str, metric: &str, v: f64) -> PeerReport {
        let f = r.figures.iter_mut().find(|f| f.key == key).unwrap();
        for s in f.samples.get_mut("zring").unwrap() {
            s.values.insert(metric.into(), v);
        }
        r
    }

    #[test]
    fn over_runs_judges_each_part_by_the_median_of_the_runs() {
        // bulk1: ztunnel 7.7 Gb/s; zring 9.5 (1.23×), 11.55 (1.5×), 10.78 (1.4×).
        let base = cross_fixture();
        let runs = [
            base.clone(),
            with_zring(base.clone(), "bulk1", "gbps", 11.55),
            with_zring(base, "bulk1", "gbps", 10.78),
        ];
        let md = over_runs(&runs);
        let row = |part: &str| {
            md.lines()
                .find(|l| {
                    l.starts_with("| cross node | bulk Gb/s |")
                        && l.contains(&format!("| {part} |"))
                })
                .unwrap_or_else(|| panic!("no {part} row in\n{md}"))
                .to_string()
        };
        let one = row("1 stream");
        assert!(
            one.contains("| 1.23 / 1.50 / 1.40 | 1.40× | met |"),
            "{one}"
        );
        // 4 streams 1.25× in every run: the median misses 1.3×.
        assert!(row("4 streams").contains("| 1.25 / 1.25 / 1.25 | 1.25× | **not met** |"));
        // churn: 9 zring failures per run in the fixture, 27 in all: not met.
        let fails = md
            .lines()
            .find(|l| l.contains("| zring failures |"))
            .unwrap();
        assert!(
            fails.contains("| 9 / 9 / 9 | 27 in all | **not met** |"),
            "{fails}"
        );
    }

    #[test]
    fn over_runs_takes_the_median_of_the_runs_that_measured_a_part() {
        let mut partial = cross_fixture();
        partial.figures.retain(|f| f.key != "open_5k");
        let md = over_runs(&[partial.clone(), cross_fixture(), partial]);
        let p99 = md.lines().find(|l| l.contains("| p99 |")).unwrap();
        // Measured once (1 run of 3): that run's ratio is the median.
        assert!(p99.contains("| - / "), "{p99}");
        assert!(!p99.contains("not measured"), "{p99}");
        assert_eq!(median(&[None, None]), None);
        assert_eq!(median(&[Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median(&[Some(3.0), Some(1.0)]), Some(2.0));
    }
}
