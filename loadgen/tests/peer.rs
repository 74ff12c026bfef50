//! Root test: `zring-loadgen peer --quick` against istio/ztunnel (`../shared/peers/ztunnel`
//! beside the repository, as in CI's clone), in both shapes (cross node first, then same
//! node). Every figure must have numbers for both proxies, every checksum must hold, both
//! proxies must have had zero failures, and across nodes node B's proxy must have worked
//! (the traffic crossed the veth through both proxies).
//! Needs `cargo build -p zring-proxy` first (the zring binary next to zring-loadgen).

mod common;

use common::{can_run, loadgen_bin, zring_bin};
use std::path::PathBuf;
use std::process::Command;
use zring_loadgen::peer::model::{PeerReport, Shape};
use zring_loadgen::peer::setup::Labs;

fn peer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/ztunnel")
}

/// Panics under CI=true, else prints why the test is skipped.
fn require(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{what}");
        eprintln!("SKIPPED: {what}");
    }
    ok
}

fn run_peer(prefix: &str, out: &std::path::Path) -> PeerReport {
    let out_s = out.display().to_string();
    let peer_s = peer_bin().display().to_string();
    let res = Command::new(loadgen_bin())
        .args([
            "peer", "--quick", "--prefix", prefix, "--out", &out_s, "--peer", &peer_s,
        ])
        .output()
        .expect("zring-loadgen runs");
    let stdout = String::from_utf8_lossy(&res.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&res.stderr));
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("report directory: "))
        .unwrap_or_else(|| panic!("no report directory printed (exit {:?})", res.status));
    let dir = PathBuf::from(dir);
    let files = [
        "report.json",
        "report.md",
        "ratios.svg",
        "latency-cross.svg",
        "latency-same.svg",
    ];
    for f in files {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let at = |h: &str| {
        md.find(h)
            .unwrap_or_else(|| panic!("no {h:?} in report.md"))
    };
    assert!(at("## Cross node") < at("## Same node"), "cross node first");
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn peer_quick_measures_both_proxies_on_every_figure() {
    if !can_run("the peer comparison", &[]) {
        return;
    }
    let peer = peer_bin();
    if !require(
        peer.is_file(),
        &format!("{} missing: the peer binary is needed", peer.display()),
    ) || !require(
        zring_bin().is_file(),
        &format!(
            "{} missing: run cargo build -p zring-proxy",
            zring_bin().display()
        ),
    ) {
        return;
    }
    let prefix = format!("zrpt{}-", std::process::id());
    let _guard = Labs::new(&prefix).expect("no leftover namespaces");
    let out = std::env::temp_dir().join(format!("{prefix}results"));
    let _ = std::fs::remove_dir_all(&out);
    let r = run_peer(&prefix, &out);
    assert!(
        plumbing::netns::list(&prefix).unwrap().is_empty(),
        "peer leaves no namespace"
    );
    let keys = |s: Shape| -> Vec<&str> {
        let of = r.figures.iter().filter(|f| f.shape == s);
        of.map(|f| f.key.as_str()).collect()
    };
    assert_eq!(
        keys(Shape::Cross),
        [
            "bulk1",
            "bulk4",
            "echo_closed",
            "open_5k",
            "churn1",
            "churn16",
            "held"
        ]
    );
    assert_eq!(
        keys(Shape::Same).len(),
        9,
        "every same-node figure measured"
    );
    assert_eq!(r.figures[0].shape, Shape::Cross, "cross node first");
    for f in &r.figures {
        for proxy in ["ztunnel", "zring"] {
            let s = f
                .samples
                .get(proxy)
                .unwrap_or_else(|| panic!("{} has no {proxy}", f.key));
            assert!(s.len() >= 3, "{} {proxy}: {} repeats", f.key, s.len());
            assert!(
                s.iter().all(|x| !x.values.is_empty()),
                "{} {proxy} has a repeat without numbers: {s:?}",
                f.key
            );
            let (_, sums) = f.health(proxy);
            assert!(
                sums,
                "{} via {proxy}: checksum or byte count mismatch",
                f.key
            );
        }
        for proxy in ["ztunnel", "zring"] {
            let (failures, _) = f.health(proxy);
            assert_eq!(
                failures, 0,
                "{}: {proxy} failures {:?}",
                f.key, f.samples[proxy]
            );
        }
    }
    for shape in Shape::ALL {
        let bulk = r.figure_in(shape, "bulk1").unwrap();
        for t in ["direct", "ztunnel", "zring"] {
            assert!(
                bulk.stat(t, "gbps").is_some_and(|s| s.median > 0.0),
                "{shape:?} {t} bulk Gb/s"
            );
        }
    }
    // 128 MiB from A to B cost node B's proxy CPU time: it carried them.
    let bulk = r.figure_in(Shape::Cross, "bulk1").unwrap();
    for proxy in ["ztunnel", "zring"] {
        let b: f64 = bulk.samples[proxy].iter().map(|s| s.remote_cpu_s).sum();
        assert!(b > 0.0, "{proxy} B worked no CPU time on cross-node bulk");
    }
    assert!(r.failures.is_empty(), "report failures: {:?}", r.failures);
    let _ = std::fs::remove_dir_all(&out);
    let state = zring_loadgen::procs::state_dir(&format!("{prefix}peer"));
    let _ = std::fs::remove_dir_all(state);
}
