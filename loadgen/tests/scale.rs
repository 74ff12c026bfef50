//! Root-only: `zring-loadgen scale --quick` for zring, in-process: the control plane
//! serves 1,000 and then 5,000 workloads to zring, pushes single workloads, a bulk and its
//! removal, and zring's CPU over the single pushes at 5,000 must stay within
//! `GROWTH_RATIO`× that at 1,000 plus an allowance for /proc's 10 ms ticks: a change
//! costs O(change), not O(cluster). No timed threshold: both sizes run on the same
//! machine a few seconds apart. Fails, never skips, under CI.

mod common;

use std::time::Duration;

use zring_loadgen::peer::Proxy;
use zring_loadgen::scale::report::{growth_check, markdown};
use zring_loadgen::scale::{self, ScaleOptions, QUICK_SIZES};

#[test]
fn zrings_cpu_per_push_does_not_grow_with_the_cluster() {
    if !common::can_run("the scale test", &["ip"]) {
        return;
    }
    let peer = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/ztunnel");
    let mut o = ScaleOptions::new(common::zring_bin(), peer, &QUICK_SIZES);
    o.proxies = vec![Proxy::Zring];
    o.prefix = common::prefix("sc");
    o.quick = true;
    o.ready_timeout = Duration::from_secs(180);
    o.ack_timeout = Duration::from_secs(120);
    let r = scale::run(&o, vec!["loadgen/tests/scale.rs".into()]).expect("scale run");
    let md = markdown(&r);
    assert!(r.failures().is_empty(), "{md}");
    for run in &r.runs {
        assert_eq!(run.singles.len(), 20, "{md}");
        assert!(run
            .bulk_remove
            .as_ref()
            .is_some_and(|p| p.resources == 1020));
        assert!(run.rss_ready_mb.is_some_and(|m| m > 0.0), "{md}");
    }
    match growth_check(&r, "zring") {
        Ok(line) => eprintln!("{line}\n{md}"),
        Err(line) => panic!("zring's CPU per push grows with the cluster: {line}\n{md}"),
    }
    // The logs and CAs stay for a failed run only.
    let _ = std::fs::remove_dir_all(zring_loadgen::procs::state_dir(&format!(
        "{}scale",
        o.prefix
    )));
}
