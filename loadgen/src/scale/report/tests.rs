use super::*;

fn run(proxy: &str, workloads: usize, per_push_ms: f64) -> ProxyRun {
    let mut r = ProxyRun::new(
        proxy,
        Size {
            workloads,
            services: workloads / 10,
        },
    );
    r.ready_s = Some(1.5);
    r.idle_run_ms_per_s = Some(5.0);
    r.singles = (0..20)
        .map(|_| Push {
            resources: 1,
            ack_ms: 2.0,
            cpu_ms: per_push_ms,
            run_ms: Some(per_push_ms),
            window_ms: 100.0,
        })
        .collect();
    r
}

fn report(runs: Vec<ProxyRun>) -> ScaleReport {
    let mut sizes: Vec<Size> = runs.iter().map(|r| r.size).collect();
    sizes.dedup();
    ScaleReport {
        settings: ScaleSettings {
            sizes,
            singles: 20,
            bulk: 1000,
            ..ScaleSettings::default()
        },
        runs,
        ..ScaleReport::default()
    }
}

#[test]
fn growth_holds_for_flat_cpu_and_fails_for_linear_cpu() {
    let flat = report(vec![run("zring", 1000, 1.0), run("zring", 5000, 1.5)]);
    assert!(growth_check(&flat, "zring").is_ok());
    // Ticks: 0 at 1k and one tick at 5k is within the allowance.
    let ticks = report(vec![run("zring", 1000, 0.0), run("zring", 5000, 2.0)]);
    assert!(growth_check(&ticks, "zring").is_ok());
    let linear = report(vec![run("zring", 1000, 20.0), run("zring", 5000, 100.0)]);
    let e = growth_check(&linear, "zring").unwrap_err();
    assert!(
        e.contains("2000 ms at 5000 workloads vs 400 ms at 1000"),
        "{e}"
    );
    assert!(growth_check(&linear, "ztunnel").is_err());
    let mut broken = run("zring", 5000, 1.0);
    broken.error = Some("not ready".into());
    let e = growth_check(&report(vec![run("zring", 1000, 1.0), broken]), "zring");
    assert!(e.unwrap_err().contains("not ready"));
}

#[test]
fn markdown_has_a_column_per_proxy_and_the_check() {
    let r = report(vec![
        run("ztunnel", 1000, 1.0),
        run("zring", 1000, 1.0),
        run("ztunnel", 5000, 1.0),
        run("zring", 5000, 30.0),
    ]);
    let md = markdown(&r);
    assert!(md.contains("## 1000 workloads, 100 services"), "{md}");
    assert!(md.contains("| figure | ztunnel | zring |"), "{md}");
    assert!(
        md.contains("| ready after first response | 1.50 s | 1.50 s |"),
        "{md}"
    );
    assert!(md.contains("- holds: ztunnel"), "{md}");
    // 30 ms per push less 5 ms/s over a 100 ms window.
    assert!(
        md.contains("idle share of its window, median | 0.50 ms | 29.50 ms |"),
        "{md}"
    );
    assert!(md.contains("- **grows**: zring"), "{md}");
    let back: ScaleReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back.runs.len(), 4);
}
