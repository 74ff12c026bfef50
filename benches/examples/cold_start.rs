//! A cold start's critical path from the wire bytes on, in process (issue 22):
//! `cargo run --release -p zring-benches --example cold_start -- <workloads> [rounds] [node]`.
//! istiod's first Address response for [`cluster`]`(n)` (n/10 services) is framed as
//! gRPC, then taken in as the xDS thread takes it: pushed into the gRPC decoder in 16 KiB
//! chunks (as HTTP/2 hands them out), decoded, checked by the subscription, applied and
//! published, and answered, as `zring`'s xDS thread does. Each phase's wall time and the process's CPU (every thread)
//! are printed per round; mimalloc serves it, as it serves `zring`.

/// The allocator the `zring` binary runs on.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Instant;

use zring::config::xds::{encode, XdsStore};
use zring::config::Snapshot;
use zring_benches::cluster;
use zring_xds::delta::Subscription;
use zring_xds::discovery::{DeltaDiscoveryResponse, Node, Resource};
use zring_xds::grpc::Decoder;
use zring_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE};

/// The size of the chunks HTTP/2 hands the xDS thread (its default largest frame).
const CHUNK: usize = 16 * 1024;

/// The process's user + system CPU seconds (all threads).
fn cpu() -> f64 {
    zring_benches::cpu_seconds("/proc/self/stat")
}

/// The first Address response for `n` workloads as gRPC frames it (content-hash
/// versions, as the control plane sends).
fn wire(n: usize) -> Vec<u8> {
    let r = encode(&cluster(n)).unwrap();
    let resources = r
        .addresses
        .into_iter()
        .enumerate()
        .map(|(i, (name, any))| Resource {
            name,
            version: format!(
                "{:016x}",
                0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)
            ),
            resource: Some(any),
            ..Default::default()
        });
    let resp = DeltaDiscoveryResponse {
        type_url: ADDRESS_TYPE.into(),
        resources: resources.collect(),
        nonce: "1".into(),
        ..Default::default()
    };
    zring_xds::grpc::encode(&resp).to_vec()
}

/// One cold start from `bytes` on a proxy of `node` (`node-0`: half the workloads are
/// local; a node no workload names, as `zring-loadgen scale`'s proxy's, holds none);
/// prints each phase.
fn round(bytes: &[u8], node: &str) {
    let mut sub = Subscription::new(Node::default(), &[ADDRESS_TYPE, AUTHORIZATION_TYPE]);
    let mut store = XdsStore::new(Some(node));
    let mut held: Option<Arc<Snapshot>> = None;
    let mut phases = Vec::new();
    let mut mark = (Instant::now(), cpu());
    let mut lap = |name: &'static str| {
        let now = (Instant::now(), cpu());
        phases.push((name, now.0 - mark.0, now.1 - mark.1));
        mark = now;
    };
    let mut d = Decoder::default();
    for chunk in bytes.chunks(CHUNK) {
        d.push(chunk);
    }
    lap("receive (gRPC buffer)");
    let frame = d.next_frame().unwrap().expect("one whole message");
    lap("frame");
    let update = sub.receive_frame(frame).unwrap();
    lap("read the response");
    let publish = |s| {
        held = Some(Arc::new(s));
        Ok::<(), String>(())
    };
    let rejected = store.apply_and_publish(&update, publish);
    assert!(rejected.is_empty(), "{rejected:?}");
    lap("apply and publish");
    let ack = sub.answer(&update, &rejected);
    assert!(ack.error_detail.is_none());
    lap("answer");
    drop(update);
    lap("drop the update");
    let total = phases
        .iter()
        .fold((0.0, 0.0), |t, p| (t.0 + p.1.as_secs_f64(), t.1 + p.2));
    for (name, wall, cpu) in phases {
        println!(
            "  {name:<22} {:7.1} ms wall {:7.1} ms cpu",
            wall.as_secs_f64() * 1e3,
            cpu * 1e3
        );
    }
    println!(
        "  {:<22} {:7.1} ms wall {:7.1} ms cpu",
        "total",
        total.0 * 1e3,
        total.1 * 1e3
    );
}

fn main() {
    let arg = zring_benches::arg;
    let (n, rounds) = (arg(1, 100_000), arg(2, 3));
    let node = std::env::args().nth(3).unwrap_or_else(|| "node-0".into());
    let bytes = wire(n);
    println!("n={n}: a first response of {} bytes", bytes.len());
    for r in 0..rounds {
        println!("round {r}:");
        round(&bytes, &node);
    }
}
