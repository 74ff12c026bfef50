//! The record layer of `tls::record` alone: one TLS 1.3 record sealed where it will be
//! sent from (plaintext copied once behind its header, sealed in place) and opened in
//! place, with the AES-128-GCM keys of a real handshake between zring's configs (the
//! suite zring and ztunnel negotiate). The whole data path per h2 DATA frame (records
//! through `tls::session`) is in `datapath`.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zring::identity::Identity;
use zring::tls::record::{content, Keys, HEADER, OVERHEAD};
use zring::tls::{self, CertStore};

/// The traffic secrets of a client handshaken in memory with zring's configs.
fn secrets() -> rustls::ConnectionTrafficSecrets {
    let dir = std::env::temp_dir().join(format!("zring-bench-rec-{}", std::process::id()));
    let (a, b) = (
        Identity::new("cluster.local", "default", "a"),
        Identity::new("cluster.local", "default", "b"),
    );
    tls::init_ca(&dir, "cluster.local", true).unwrap();
    tls::issue(&dir, &a).unwrap();
    tls::issue(&dir, &b).unwrap();
    let store = CertStore::load(&dir, "cluster.local").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let client_cfg: Arc<rustls::ClientConfig> =
        store.client_config(&a, std::slice::from_ref(&b)).unwrap();
    let ip: IpAddr = "10.244.2.7".parse().unwrap();
    let mut client = rustls::ClientConnection::new(client_cfg, tls::server_name(ip)).unwrap();
    let mut server = rustls::ServerConnection::new(store.server_config(&b).unwrap()).unwrap();
    while client.is_handshaking() || server.is_handshaking() {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        server.read_tls(&mut &wire[..]).unwrap();
        server.process_new_packets().unwrap();
        wire.clear();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        client.read_tls(&mut &wire[..]).unwrap();
        client.process_new_packets().unwrap();
    }
    #[allow(deprecated)] // no tickets or key updates are needed here
    let extracted = client.dangerous_extract_secrets().unwrap();
    extracted.tx.1
}

fn record_layer(c: &mut Criterion) {
    let secrets = secrets();
    assert!(matches!(
        secrets,
        rustls::ConnectionTrafficSecrets::Aes128Gcm { .. }
    ));
    let mut group = c.benchmark_group("TLS record layer (tls::record, AES-128-GCM)");
    for size in [1024usize, 16 * 1024] {
        let data = vec![0x5au8; size];
        let mut record = vec![0u8; size + OVERHEAD];
        group.throughput(Throughput::Bytes(size as u64));
        let mut tx = Keys::new(0, &secrets).unwrap();
        group.bench_function(format!("copy in + seal {size} B"), |b| {
            b.iter(|| {
                record[HEADER..HEADER + size].copy_from_slice(black_box(&data));
                black_box(
                    tx.seal(&mut record, size, content::APPLICATION_DATA)
                        .unwrap(),
                );
            })
        });
        // Open needs records sealed in sequence: seal a batch, then open it.
        let (mut tx, mut rx) = (
            Keys::new(0, &secrets).unwrap(),
            Keys::new(0, &secrets).unwrap(),
        );
        group.bench_function(format!("seal + open in place {size} B"), |b| {
            b.iter(|| {
                record[HEADER..HEADER + size].copy_from_slice(black_box(&data));
                tx.seal(&mut record, size, content::APPLICATION_DATA)
                    .unwrap();
                let opened = rx.open(&mut record).unwrap().unwrap();
                black_box(&record[opened.plain]);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, record_layer);
criterion_main!(benches);
