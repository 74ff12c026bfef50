//! The in-pod figures: one [`Sample`] per proxy and repeat, medians per proxy and metric,
//! zring/ztunnel ratios and the two goals of issue 21 (pure: samples in, rows and Markdown
//! out).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One proxy, one repeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub proxy: String,
    pub repeat: usize,
    pub values: BTreeMap<String, f64>,
    /// Figures that failed (left out of the medians), with why.
    pub failures: Vec<String>,
}

impl Sample {
    pub fn new(proxy: &str, repeat: usize) -> Sample {
        Sample {
            proxy: proxy.into(),
            repeat,
            values: BTreeMap::new(),
            failures: Vec::new(),
        }
    }

    pub fn set(&mut self, key: &str, v: f64) {
        self.values.insert(key.into(), v);
    }

    pub fn fail(&mut self, why: String) {
        self.failures.push(why);
    }
}

/// The metrics in table order: key, label, whether lower is better.
pub const METRICS: &[(&str, &str, bool)] = &[
    ("rss_kb_per_pod", "memory per enrolled pod (KB RSS)", true),
    ("fds_per_pod", "descriptors per enrolled pod", true),
    (
        "ack_ms_per_pod",
        "AddWorkload → Ack, 100s of pods (ms each)",
        true,
    ),
    ("add_to_ack_ms", "client pod AddWorkload → Ack (ms)", true),
    (
        "add_to_first_conn_ms",
        "client pod AddWorkload → first captured echo (ms)",
        true,
    ),
    ("bulk_gbps", "bulk, 1 stream (Gbit/s)", false),
    ("bulk_cpu_s_per_gb", "bulk proxy CPU (s/GB)", true),
    ("echo_p50_us", "closed-loop 1 KiB echo p50 (µs)", true),
    ("echo_p99_us", "closed-loop 1 KiB echo p99 (µs)", true),
    ("echo_rps", "closed-loop echoes/s", false),
    ("echo_cpu_us_per_op", "proxy CPU per echo (µs)", true),
    ("churn1_rps", "churn c1 (conn/s)", false),
    (
        "churn1_cpu_us_per_op",
        "proxy CPU per churned connection, c1 (µs)",
        true,
    ),
    ("churn16_rps", "churn c16 (conn/s)", false),
    (
        "churn16_cpu_us_per_op",
        "proxy CPU per churned connection, c16 (µs)",
        true,
    ),
];

/// One metric: the median of each proxy's repeats (in `proxies` order).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: &'static str,
    pub label: &'static str,
    pub lower_better: bool,
    pub medians: Vec<(String, Option<f64>)>,
}

impl Row {
    fn median_of(&self, proxy: &str) -> Option<f64> {
        self.medians.iter().find(|(p, _)| p == proxy)?.1
    }

    /// `proxy`'s median over ztunnel's.
    pub fn ratio(&self, proxy: &str) -> Option<f64> {
        let z = self.median_of("ztunnel")?;
        let m = self.median_of(proxy)?;
        (z != 0.0).then(|| m / z)
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The proxies in first-seen order.
fn proxies(samples: &[Sample]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in samples {
        if !out.contains(&s.proxy) {
            out.push(s.proxy.clone());
        }
    }
    out
}

pub fn rows(samples: &[Sample]) -> Vec<Row> {
    let names = proxies(samples);
    METRICS
        .iter()
        .map(|&(key, label, lower_better)| Row {
            key,
            label,
            lower_better,
            medians: names
                .iter()
                .map(|p| {
                    let vals = samples
                        .iter()
                        .filter(|s| &s.proxy == p)
                        .filter_map(|s| s.values.get(key).copied())
                        .collect();
                    (p.clone(), median(vals))
                })
                .collect(),
        })
        .collect()
}

/// The goals: memory per pod ≤ 0.5× ztunnel's, and a pod's first captured connection no
/// later than ztunnel's (median ratio ≤ 1). `(goal, ratio, met)`.
pub fn goals(rows: &[Row]) -> Vec<(&'static str, Option<f64>, bool)> {
    let ratio = |k: &str| {
        rows.iter()
            .find(|r| r.key == k)
            .and_then(|r| r.ratio("zring"))
    };
    let memory = ratio("rss_kb_per_pod");
    let add = ratio("add_to_first_conn_ms");
    vec![
        (
            "memory per pod ≤ 0.5× ztunnel's",
            memory,
            memory.is_some_and(|r| r <= 0.5),
        ),
        (
            "not slower to add a pod (AddWorkload → first captured connection ≤ 1×)",
            add,
            add.is_some_and(|r| r <= 1.0),
        ),
    ]
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The table, the goals and every failure.
pub fn markdown(rows: &[Row], samples: &[Sample]) -> String {
    let names = proxies(samples);
    let zrings: Vec<&String> = names.iter().filter(|n| *n != "ztunnel").collect();
    let mut out = String::from("| figure (median) |");
    names.iter().for_each(|n| out.push_str(&format!(" {n} |")));
    zrings
        .iter()
        .for_each(|n| out.push_str(&format!(" {n}/ztunnel |")));
    out.push_str("\n|---|");
    (0..names.len() + zrings.len()).for_each(|_| out.push_str("---|"));
    out.push('\n');
    for r in rows {
        out.push_str(&format!("| {} |", r.label));
        r.medians
            .iter()
            .for_each(|(_, m)| out.push_str(&format!(" {} |", num(*m))));
        for z in &zrings {
            let ratio = r.ratio(z).map(|x| format!("{x:.2}×"));
            out.push_str(&format!(" {} |", ratio.unwrap_or("–".into())));
        }
        out.push('\n');
    }
    out.push_str("\nGoals (zring with its defaults):\n\n");
    for (goal, ratio, met) in goals(rows) {
        let r = ratio.map_or("–".into(), |x| format!("{x:.2}×"));
        let verdict = if met { "met" } else { "missed" };
        out.push_str(&format!("- {goal}: {r} — {verdict}\n"));
    }
    let failures: Vec<String> = samples
        .iter()
        .flat_map(|s| {
            s.failures
                .iter()
                .map(move |f| format!("- {} repeat {}: {f}", s.proxy, s.repeat + 1))
        })
        .collect();
    out.push_str(&format!("\nFailed figures: {}\n", failures.len()));
    failures
        .iter()
        .for_each(|f| out.push_str(&format!("{f}\n")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(proxy: &str, repeat: usize, rss: f64, first: f64) -> Sample {
        let mut s = Sample::new(proxy, repeat);
        s.set("rss_kb_per_pod", rss);
        s.set("add_to_first_conn_ms", first);
        s
    }

    #[test]
    fn medians_ratios_and_goals() {
        let samples = vec![
            sample("zring", 0, 10.0, 5.0),
            sample("ztunnel", 0, 80.0, 4.0),
            sample("ztunnel", 1, 90.0, 6.0),
            sample("zring", 1, 30.0, 7.0),
            sample("zring", 2, 20.0, 9.0),
            sample("ztunnel", 2, 100.0, 5.0),
        ];
        let rows = rows(&samples);
        let rss = rows.iter().find(|r| r.key == "rss_kb_per_pod").unwrap();
        assert_eq!(rss.medians[0], ("zring".into(), Some(20.0)));
        assert_eq!(rss.medians[1], ("ztunnel".into(), Some(90.0)));
        assert!((rss.ratio("zring").unwrap() - 20.0 / 90.0).abs() < 1e-9);
        let g = goals(&rows);
        assert!(g[0].2, "memory 0.22× meets ≤ 0.5×");
        assert!(!g[1].2, "first connection 7 vs 5 ms misses ≤ 1×");
        let md = markdown(&rows, &samples);
        assert!(
            md.contains("| memory per enrolled pod (KB RSS) | 20.0 | 90.0 | 0.22× |"),
            "{md}"
        );
        assert!(md.contains("missed"));
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0]), Some(2.0));
    }
}
