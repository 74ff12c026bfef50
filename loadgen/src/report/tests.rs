use super::*;
use crate::capture::LinkSummary;
use crate::hist::Percentiles;

pub(crate) fn sample() -> Report {
    let lat = |p50, p99| Percentiles {
        count: 100,
        p50_us: p50,
        p90_us: p50,
        p99_us: p99,
        p999_us: p99,
        max_us: p99,
        mean_us: p50 as f64,
    };
    let rr = |rate: f64, p50, p99, cpu| RrResult {
        offered_rps: rate,
        achieved_rps: rate,
        ok: 100,
        latency: lat(p50, p99),
        proxy_cpu_s_per_1k: cpu,
        ..RrResult::default()
    };
    let point = |rate| RrPoint {
        offered_rps: rate,
        baseline: rr(rate, 50, 120, None),
        mesh: Some(rr(rate, 90, 300, Some(0.25))),
        saturated: false,
    };
    let bulk = |g| BulkResult {
        streams: 1,
        gbps: g,
        bytes: 1,
        seconds: 1.0,
        ..BulkResult::default()
    };
    Report {
        started_utc: "2026-11-22T04:00:00Z".into(),
        commit: "abc1234".into(),
        command_line: vec!["zring-loadgen".into(), "demo".into()],
        seed: 7,
        request_response: vec![point(1000.0), point(5000.0)],
        connect_per_request: vec![point(500.0)],
        bulk: vec![BulkPoint {
            streams: 1,
            baseline: bulk(20.0),
            mesh: Some(bulk(5.0)),
        }],
        ..Report::default()
    }
}

#[test]
fn markdown_has_tables_and_added_latency() {
    let md = markdown(&sample());
    assert!(
        md.contains("| req/resp 1000/s | 1000/s | 50µs / 120µs / 120µs |"),
        "{md}"
    );
    assert!(md.contains("+40/+180µs"), "{md}");
    assert!(md.contains("| 1 | 20.00 | 5.00 | 25% |"), "{md}");
    assert!(md.contains("PASSED"));
    assert!(md.contains("seed 7"));
    assert!(
        md.contains(
            "| req/resp 1000/s | mesh | 100 | 90µs | 90µs | 300µs | 300µs | 300µs | 0 | 0 |"
        ),
        "{md}"
    );
}

#[test]
fn failures_are_reported() {
    let mut r = sample();
    r.failures.push("wrong source".into());
    assert!(!r.passed());
    assert!(markdown(&r).contains("FAILED: wrong source"));
}

#[test]
fn utc_dates_are_civil() {
    assert_eq!(utc(0), ("1970-01-01".to_string(), "00:00:00".to_string()));
    assert_eq!(utc(1_795_305_600).0, "2026-11-22");
    assert_eq!(utc(951_782_400).0, "2000-02-29");
    assert_eq!(utc(86_399).1, "23:59:59");
}

#[test]
fn run_dir_avoids_existing_directories() {
    let root = std::env::temp_dir().join(format!("zrl-report-{}", std::process::id()));
    let first = run_dir(&root, "2026-11-22", "abc");
    assert_eq!(first, root.join("2026-11-22-abc"));
    std::fs::create_dir_all(&first).unwrap();
    assert_eq!(
        run_dir(&root, "2026-11-22", "abc"),
        root.join("2026-11-22-abc-2")
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn write_creates_all_files_and_json_round_trips() {
    let dir = std::env::temp_dir().join(format!("zrl-report-w-{}", std::process::id()));
    let files = write(&sample(), &dir).unwrap();
    assert_eq!(files.len(), 4);
    let json = std::fs::read_to_string(dir.join("report.json")).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.request_response.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn node_link_plaintext_fails_a_mesh_run_only() {
    let mut r = sample();
    r.check_node_link(LinkSummary {
        hbone_packets: 10,
        plaintext_packets: 0,
    });
    assert!(r.passed());
    assert!(markdown(&r).contains("10 HBONE SYN/FIN/RST packets, 0 plaintext"));
    r.check_node_link(LinkSummary {
        hbone_packets: 10,
        plaintext_packets: 3,
    });
    assert!(!r.passed());
    let mut baseline_only = Report::default();
    baseline_only.check_node_link(LinkSummary::default());
    assert!(baseline_only.passed());
}

#[test]
fn per_core_cost_lines_for_the_mesh_path() {
    let md = markdown(&sample());
    assert!(md.contains("## Per-core costs of the mesh path"), "{md}");
    assert!(
        md.contains("- per 1000 requests (keep-alive): 0.250 CPU s (one core: ≈4000 requests/s)"),
        "{md}"
    );
    assert!(md.contains("- per GB of bulk: not measured"), "{md}");
    let mut r = sample();
    r.bulk[0].mesh.as_mut().unwrap().proxy_cpu_s_per_gb = Some(2.0);
    assert!(cost_lines(&r).contains("- per GB of bulk: 2.000 CPU s (one core: ≈4.00 Gb/s)"));
}
