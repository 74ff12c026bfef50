//! The per-connection pure work: destination resolution, CONNECT build + validate, SOCKS5
//! request parsing; and the per-reload work: parsing and indexing a workload config.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use zring::config::{resolve, LocalConfig, RoundRobin, Snapshot};
use zring::hbone::proto;
use zring::socks5;
use zring_benches::mesh_yaml;

fn per_connection(c: &mut Criterion) {
    let snap = Snapshot::new(
        LocalConfig::from_yaml("bench", &mesh_yaml(1000)).unwrap(),
        None,
    )
    .unwrap();
    let mut rr = RoundRobin::new();
    let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let pod: SocketAddr = "10.244.2.7:8080".parse().unwrap();
    c.bench_function("resolve service VIP (1000 endpoints)", |b| {
        b.iter(|| resolve(&snap, &mut rr, black_box(vip), 15008).unwrap())
    });
    c.bench_function("resolve pod IP", |b| {
        b.iter(|| resolve(&snap, &mut rr, black_box(pod), 15008).unwrap())
    });
    let client: SocketAddr = "10.244.1.4:40000".parse().unwrap();
    let hbone: SocketAddr = "10.244.2.7:15008".parse().unwrap();
    c.bench_function("CONNECT build + validate", |b| {
        b.iter(|| {
            let req = proto::connect_request(black_box(pod), client);
            proto::validate(&req, Some(hbone), |_| true).unwrap()
        })
    });
    let socks_req = [5u8, 1, 0, 1, 10, 96, 0, 10, 0, 80];
    c.bench_function("SOCKS5 request parse", |b| {
        b.iter(|| socks5::parse_request(black_box(&socks_req)).unwrap())
    });
}

fn per_reload(c: &mut Criterion) {
    let yaml = mesh_yaml(1000);
    c.bench_function("parse + index 1000-workload config", |b| {
        b.iter(|| {
            Snapshot::new(
                LocalConfig::from_yaml("bench", black_box(&yaml)).unwrap(),
                None,
            )
            .unwrap()
        })
    });
}

criterion_group!(benches, per_connection, per_reload);
criterion_main!(benches);
