//! The record layer of `tls::record` alone: one TLS 1.3 record sealed where it will be
//! sent from (plaintext copied once behind its header, sealed in place) and opened in
//! place, with the AES-128-GCM keys of a real handshake between zring's configs (the
//! suite zring and ztunnel negotiate). The whole data path per h2 DATA frame (records
//! through `tls::session`) is in `datapath`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zring::tls::record::{content, Keys, HEADER, OVERHEAD};
use zring_benches::{identities, tls_pair};

/// The traffic secrets of a client handshaken in memory with zring's configs.
fn secrets() -> rustls::ConnectionTrafficSecrets {
    let (client, _server) = tls_pair(identities("rec").configs());
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
