//! The config path at cluster scale (issue 22): one delta ADS response applied to the
//! store and its generation published, as the xDS thread does it, at 10k and 100k
//! workloads (n/10 services); and the cold start of 100k workloads, from the first
//! response and from a LocalConfig.
//!
//! "Publish" is what `Shared::publish` does with the snapshot: wrap it in a new `Arc`
//! behind a lock; a core's adoption is then a pointer copy.

/// The allocator the `zring` binary runs on.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use zring::config::xds::{encode, XdsStore};
use zring::config::{LocalConfig, Snapshot};
use zring_benches::{cluster, cluster_workload, update};
use zring_xds::ADDRESS_TYPE;

/// The generation the cores would adopt.
type Published = Mutex<Arc<Snapshot>>;

fn publish(slot: &Published) -> impl FnOnce(Snapshot) -> Result<(), String> + '_ {
    move |s| {
        *slot.lock().unwrap() = Arc::new(s);
        Ok(())
    }
}

/// A store holding `n` workloads, as after istiod's first response.
fn store(local: &LocalConfig) -> XdsStore {
    let r = encode(local).unwrap();
    let mut store = XdsStore::new(Some("node-0"));
    let slot = Published::default();
    for u in [
        update(ADDRESS_TYPE, &r.addresses, &[]),
        update(zring_xds::AUTHORIZATION_TYPE, &r.authorizations, &[]),
    ] {
        assert!(store.apply_and_publish(&u, publish(&slot)).is_empty());
    }
    store
}

/// The response that adds (or updates) workload `i`, behind service 0.
fn one_workload(i: usize) -> zring_xds::delta::Update {
    let one = LocalConfig {
        workloads: vec![cluster_workload(i, 0)],
        ..LocalConfig::default()
    };
    update(ADDRESS_TYPE, &encode(&one).unwrap().addresses, &[])
}

fn single_push(c: &mut Criterion) {
    let mut g = c.benchmark_group("xds apply+publish one workload");
    for n in [10_000, 100_000] {
        let base = store(&cluster(n));
        let slot = Published::default();
        let add = one_workload(n);
        g.bench_function(format!("add @{n}"), |b| {
            b.iter_batched(
                || base.clone(),
                |mut s| {
                    assert!(s
                        .apply_and_publish(black_box(&add), publish(&slot))
                        .is_empty());
                    s
                },
                BatchSize::SmallInput,
            )
        });
        let mut moved = cluster_workload(7, 0);
        moved.canonical_revision = "v2".into();
        let one = LocalConfig {
            workloads: vec![moved],
            ..LocalConfig::default()
        };
        let change = update(ADDRESS_TYPE, &encode(&one).unwrap().addresses, &[]);
        g.bench_function(format!("update @{n}"), |b| {
            b.iter_batched(
                || base.clone(),
                |mut s| {
                    assert!(s
                        .apply_and_publish(black_box(&change), publish(&slot))
                        .is_empty());
                    s
                },
                BatchSize::SmallInput,
            )
        });
        let gone = update(ADDRESS_TYPE, &[], &["c//v1/Pod/default/w7".to_string()]);
        g.bench_function(format!("remove @{n}"), |b| {
            b.iter_batched(
                || base.clone(),
                |mut s| {
                    assert!(s
                        .apply_and_publish(black_box(&gone), publish(&slot))
                        .is_empty());
                    s
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn cold(c: &mut Criterion) {
    let mut g = c.benchmark_group("cold build");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let local = cluster(100_000);
    let r = encode(&local).unwrap();
    let first = update(ADDRESS_TYPE, &r.addresses, &[]);
    g.bench_function("xds first response @100000", |b| {
        b.iter_with_large_drop(|| {
            let mut s = XdsStore::new(Some("node-0"));
            let slot = Published::default();
            assert!(s.apply_and_publish(&first, publish(&slot)).is_empty());
            s
        })
    });
    g.bench_function("LocalConfig → Snapshot @100000", |b| {
        b.iter_batched(
            || local.clone(),
            |l| Snapshot::new(l, Some("node-0")).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, single_push, cold);
criterion_main!(benches);
