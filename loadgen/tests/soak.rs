//! Root test of `zring-loadgen soak`: a short soak through the two-node mesh (debug
//! build). CI has 2 shared cores and a time budget of minutes for everything, so this
//! runs 1,000 connections for 20 s instead of the full 10,000 × 5 min (recorded in
//! results/reliability.md); the checks are the same. Asserts the exit status and,
//! independently, the figures in the JSON report.
//! Needs `cargo build --workspace` first (the zring binary next to zring-loadgen).

mod common;

use common::{can_run, loadgen_bin, prefix, zring_bin, Teardown};
use std::process::Command;
use zring_loadgen::soak::SoakReport;

const CONNS: usize = 1_000;

#[test]
fn short_soak_loses_nothing_and_returns_to_baseline() {
    if !can_run("the soak", &["ip", "iptables-restore", "ipset"]) {
        return;
    }
    assert!(
        zring_bin().is_file(),
        "build zring first: cargo build --workspace"
    );
    let p = prefix("soak");
    let _guard = Teardown(p.clone());
    let json = std::env::temp_dir().join(format!("{p}soak.json"));
    let out = Command::new(loadgen_bin())
        .args(["soak", "--prefix", &p, "--duration", "20"])
        .args(["--conns", &CONNS.to_string(), "--json"])
        .arg(&json)
        .output()
        .expect("zring-loadgen soak runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "soak failed:\n{text}");
    let r: SoakReport = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let t = &r.totals;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(t.peak_open_conns, CONNS, "{text}");
    assert_eq!(
        (t.failed_conns, t.bytes_lost, t.corrupted_rounds),
        (0, 0, 0)
    );
    assert!(t.bytes_sent >= (CONNS * 1024 * 5) as u64, "{text}");
    assert_eq!(t.bytes_verified, t.bytes_sent);
    let peak_fds = r.during.iter().map(|s| s.fds[0]).max().unwrap();
    assert!(
        peak_fds >= r.baseline.fds[0] + CONNS,
        "node A held every connection: {text}"
    );
    assert!(r.during.iter().any(|s| s.pooled_hbone > 0), "{text}");
    assert_eq!(r.after.fds, r.baseline.fds, "{text}");
    assert_eq!(r.after.pooled_hbone, r.baseline.pooled_hbone);
}
