//! Small peer reports (same node, cross node) for the rendering, goal and capacity tests.

use super::model::*;
use std::collections::BTreeMap;

/// A small report for the rendering, goal and capacity tests.
pub(crate) fn fixture() -> PeerReport {
    let sample = |pairs: &[(&str, f64)], failures: u64| {
        let mut s = Sample::new();
        for (k, v) in pairs {
            s.values.insert(k.to_string(), *v);
        }
        s.failures = failures;
        s.host_busy_pct = 50.0;
        s
    };
    let fig = |key: &str, d: &[(&str, f64)], zt: &[(&str, f64)], zr: &[(&str, f64)], zr_fail| {
        let mut samples = BTreeMap::new();
        if !d.is_empty() {
            samples.insert("direct".to_string(), vec![sample(d, 0); 3]);
        }
        samples.insert("ztunnel".to_string(), vec![sample(zt, 0); 3]);
        samples.insert("zring".to_string(), vec![sample(zr, zr_fail); 3]);
        Figure {
            key: key.into(),
            title: format!("title of {key}"),
            samples,
            ..Figure::default()
        }
    };
    let bulk = |zt, zr| {
        fig(
            "bulk1",
            &[("gbps", 36.0)],
            &[("gbps", zt), ("cpu_s_per_gb", 1.3)],
            &[("gbps", zr), ("cpu_s_per_gb", 1.0)],
            0,
        )
    };
    let mut b4 = bulk(8.0, 10.0);
    b4.key = "bulk4".into();
    let lat = |p50: f64, p99: f64, cpu: f64| {
        vec![
            ("p50_us", p50),
            ("p90_us", p50),
            ("p99_us", p99),
            ("p999_us", p99),
            ("max_us", p99 * 2.0),
            ("cpu_s_per_1k", cpu),
            ("rps", 10_000.0),
        ]
    };
    let churn = |key: &str, zr_fail| {
        let c = |ops: f64, p99: f64, cpu: f64| {
            vec![
                ("ops_s", ops),
                ("p50_us", 100.0),
                ("p99_us", p99),
                ("cpu_s_per_1k", cpu),
            ]
        };
        fig(
            key,
            &c(15_000.0, 150.0, 0.0),
            &c(5800.0, 400.0, 0.3),
            &c(2500.0, 60_000.0, 0.6),
            zr_fail,
        )
    };
    PeerReport {
        started_utc: "2026-12-02T18:00:00Z".into(),
        commit: "abc1234".into(),
        command_line: vec!["zring-loadgen".into(), "peer".into()],
        seed: 1,
        settings: PeerSettings {
            cores: 2,
            repeats: 3,
            bulk_bytes: 2 << 30,
            churn_ops: 5000,
            held_conns: 5000,
            ..PeerSettings::default()
        },
        figures: vec![
            bulk(7.7, 9.5),
            b4,
            fig(
                "echo_closed",
                &lat(20.0, 32.0, 0.0),
                &lat(78.0, 110.0, 0.05),
                &lat(49.0, 60.0, 0.02),
                0,
            ),
            fig(
                "open_10k",
                &lat(29.0, 50.0, 0.0),
                &lat(94.0, 219.0, 0.063),
                &lat(60.0, 150.0, 0.04),
                0,
            ),
            fig(
                "sweep",
                &[("max_rate_p99_1ms", 40_000.0)],
                &[
                    ("max_rate_p99_1ms", 10_000.0),
                    ("p99_us_at_2000", 100.0),
                    ("p99_us_at_10000", 900.0),
                ],
                &[
                    ("max_rate_p99_1ms", 20_000.0),
                    ("p99_us_at_2000", 80.0),
                    ("p99_us_at_10000", 400.0),
                ],
                0,
            ),
            churn("churn1", 0),
            churn("churn16", 3),
            fig(
                "held",
                &[],
                &[
                    ("rss_per_conn_kb", 12.1),
                    ("rss_start_mb", 20.0),
                    ("rss_after_close_mb", 24.0),
                ],
                &[
                    ("rss_per_conn_kb", 20.5),
                    ("rss_start_mb", 20.0),
                    ("rss_after_close_mb", 114.0),
                ],
                0,
            ),
        ],
        ..PeerReport::default()
    }
}

/// The fixture's figures as a cross-node report (the 10k/s figure becomes 5k/s; no sweep).
pub(crate) fn cross_fixture() -> PeerReport {
    let mut r = fixture();
    r.figures
        .retain(|f| !matches!(f.key.as_str(), "open_2k" | "sweep"));
    for f in &mut r.figures {
        f.shape = Shape::Cross;
        if f.key == "open_10k" {
            f.key = "open_5k".into();
        }
    }
    r
}
