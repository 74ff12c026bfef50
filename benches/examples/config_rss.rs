//! Memory and CPU of the config store at scale (issue 22), outside criterion:
//! `cargo run --release -p zring-benches --example config_rss -- <workloads> [pushes]`.
//! Builds the store from istiod's first response for [`cluster`]`(n)` (n/10 services), then
//! applies and publishes single-workload pushes (mean wall time), and measures what one
//! store holds: two more stores are built from the same response and the RSS growth of the
//! third is the size of one (the first two absorb the transient garbage). mimalloc serves
//! it, as it serves `zring`.

/// The allocator the `zring` binary runs on.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Instant;

use zring::config::xds::{encode, XdsStore};
use zring::config::{LocalConfig, Snapshot};
use zring_benches::{cluster, cluster_workload, update};
use zring_xds::ADDRESS_TYPE;

/// (VmRSS, VmHWM) in KiB.
fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

/// This thread's user + system CPU seconds.
fn cpu() -> f64 {
    zring_benches::cpu_seconds("/proc/thread-self/stat")
}

/// Publishing as `Shared::publish` does: the new generation behind a fresh `Arc`.
fn publish(held: &mut Option<Arc<Snapshot>>) -> impl FnOnce(Snapshot) -> Result<(), String> + '_ {
    move |s| {
        *held = Some(Arc::new(s));
        Ok(())
    }
}

/// The store built from `first`, and its wall and CPU seconds.
fn build(
    first: &zring_xds::delta::Update,
    held: &mut Option<Arc<Snapshot>>,
) -> (XdsStore, f64, f64) {
    let mut store = XdsStore::new(Some("node-0"));
    let (t, c) = (Instant::now(), cpu());
    assert!(store.apply_and_publish(first, publish(held)).is_empty());
    (store, t.elapsed().as_secs_f64(), cpu() - c)
}

fn main() {
    let arg = zring_benches::arg;
    let (n, pushes) = (arg(1, 100_000), arg(2, 20));
    let r = encode(&cluster(n)).unwrap();
    let first = update(ADDRESS_TYPE, &r.addresses, &[]);
    drop(r);
    let start = rss();
    let mut held = None;
    let (mut store, wall, secs) = build(&first, &mut held);
    let after = rss();
    println!(
        "n={n} cold apply+publish: {wall:.3} s wall, {secs:.3} s cpu; RSS {} → {} KiB (peak {})",
        start.0, after.0, after.1
    );
    let mut times = Vec::new();
    for k in 0..pushes {
        let one = LocalConfig {
            workloads: vec![cluster_workload(n + k, k % (n / 10).max(1))],
            ..LocalConfig::default()
        };
        let u = update(ADDRESS_TYPE, &encode(&one).unwrap().addresses, &[]);
        let (t, c) = (Instant::now(), cpu());
        assert!(store.apply_and_publish(&u, publish(&mut held)).is_empty());
        times.push((t.elapsed().as_secs_f64(), cpu() - c));
    }
    let mean =
        |f: fn(&(f64, f64)) -> f64| times.iter().map(f).sum::<f64>() / times.len().max(1) as f64;
    let (wall, cpu) = (mean(|t| t.0), mean(|t| t.1));
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = sorted.get(sorted.len() / 2).map_or(0.0, |t| t.0);
    println!(
        "n={n} {pushes} single-workload pushes: mean {:.1} µs wall, median {:.1} µs, mean thread CPU {:.1} µs",
        wall * 1e6,
        median * 1e6,
        cpu * 1e6
    );
    let mut keep = vec![store];
    let mut sizes = Vec::new();
    for _ in 0..2 {
        let before = rss().0;
        let mut h = None;
        keep.push(build(&first, &mut h).0);
        sizes.push(rss().0.saturating_sub(before));
    }
    let one = sizes.last().copied().unwrap_or(0);
    println!(
        "n={n} one more store: {sizes:?} KiB → {one} KiB, {:.0} B per workload (n/10 services included)",
        one as f64 * 1024.0 / n as f64
    );
}
