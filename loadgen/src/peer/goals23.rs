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

/// `label ratio, …`, met when every part is measured and `ok`.
fn parts(v: &[(&str, Option<f64>)], ok: impl Fn(f64) -> bool) -> (String, Option<bool>) {
    let measured: Vec<String> = v.iter().map(|(l, r)| format!("{l} {}", x(*r))).collect();
    let met = v
        .iter()
        .map(|(_, r)| r.map(&ok))
        .collect::<Option<Vec<bool>>>();
    (measured.join(", "), met.map(|m| m.iter().all(|b| *b)))
}

fn bulk(i: In, metric: &str, ok: impl Fn(f64) -> bool) -> (String, Option<bool>) {
    let v = [
        ("1 stream", i.ratio("bulk1", metric)),
        ("4 streams", i.ratio("bulk4", metric)),
    ];
    parts(&v, ok)
}

fn cpu_per_echo(i: In, open: &str, ok: impl Fn(f64) -> bool) -> (String, Option<bool>) {
    let v = [
        ("closed loop", i.ratio("echo_closed", "cpu_s_per_1k")),
        (open, i.ratio(&format!("open_{open}"), "cpu_s_per_1k")),
    ];
    parts(&v, ok)
}

fn churn(i: In, ok: impl Fn(f64) -> bool) -> (String, Option<bool>) {
    let v = [
        ("c1", i.ratio("churn1", "ops_s")),
        ("c16", i.ratio("churn16", "ops_s")),
    ];
    let (measured, met) = parts(&v, ok);
    let fails: Option<u64> = ["churn1", "churn16"]
        .iter()
        .map(|k| Some(i.get(k)?.health("zring").0))
        .sum();
    let Some(fails) = fails else {
        return (measured, None);
    };
    (
        format!("{measured}; {fails} zring failures"),
        met.map(|m| m && fails == 0),
    )
}

fn held(i: In) -> (String, Option<bool>) {
    parts(&[("KB each", i.ratio("held", "rss_per_conn_kb"))], |v| {
        v <= 0.5
    })
}

fn g(figure: &'static str, goal: &'static str, (measured, met): (String, Option<bool>)) -> Goal {
    Goal {
        figure,
        goal,
        measured,
        met,
    }
}

/// The cross-node goals.
fn cross(r: &PeerReport) -> Vec<Goal> {
    let i = In(r, Shape::Cross);
    let p50 = i.ratio("echo_closed", "p50_us");
    let p99 = i.ratio("open_5k", "p99_us");
    vec![
        g("bulk Gb/s", "≥ 1.3×", bulk(i, "gbps", |v| v >= 1.3)),
        g(
            "proxy CPU s per GB (A + B)",
            "≤ 0.8×",
            bulk(i, "cpu_s_per_gb", |v| v <= 0.8),
        ),
        g(
            "proxy CPU per echo (A + B)",
            "≤ 0.85×",
            cpu_per_echo(i, "5k", |v| v <= 0.85),
        ),
        g(
            "1 KiB echo closed loop p50",
            "≤ 1.0×",
            parts(&[("p50", p50)], |v| v <= 1.0),
        ),
        g(
            "1 KiB echo open loop 5k/s p99",
            "≤ 1.0×",
            parts(&[("p99", p99)], |v| v <= 1.0),
        ),
        g(
            "new connections/s",
            "≥ 1.2×, 0 failures",
            churn(i, |v| v >= 1.2),
        ),
        g("RSS per held connection (A + B)", "≤ 0.5×", held(i)),
    ]
}

/// The same-node goals (fast path on).
fn same(r: &PeerReport) -> Vec<Goal> {
    let i = In(r, Shape::Same);
    let p50 = i.get("echo_closed").and_then(|f| added_ratio(f, "p50_us"));
    vec![
        g("bulk Gb/s", "≥ 2×", bulk(i, "gbps", |v| v >= 2.0)),
        g(
            "proxy CPU s per GB",
            "≤ 0.4×",
            bulk(i, "cpu_s_per_gb", |v| v <= 0.4),
        ),
        g(
            "proxy CPU per echo",
            "≤ 0.5×",
            cpu_per_echo(i, "10k", |v| v <= 0.5),
        ),
        g(
            "1 KiB echo closed loop: added p50 (proxy − direct)",
            "≤ 0.5×",
            parts(&[("added p50", p50)], |v| v <= 0.5),
        ),
        g("RSS per held connection", "≤ 0.5×", held(i)),
    ]
}

/// Every goal of issue 23 for the shapes the report measured, in report order.
pub fn goals(r: &PeerReport) -> Vec<(Shape, Goal)> {
    let per = |s: Shape| match s {
        Shape::Cross => cross(r),
        Shape::Same => same(r),
    };
    r.shapes()
        .into_iter()
        .flat_map(|s| per(s).into_iter().map(move |g| (s, g)))
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
}
