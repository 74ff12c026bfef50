//! The per-byte and per-message pure work of the HBONE data path: sealing and opening
//! TLS records with zring's rustls configs (aws-lc-rs provider), and a pool checkout.
//! Each reports a throughput figure.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::AbortHandle;
use zring::hbone::pool::{Conn, Pool, PoolKey};
use zring::identity::Identity;
use zring::tls::{self, CertStore};

/// A client and server connection of zring's own configs, handshaken in memory.
fn tls_pair() -> (rustls::ClientConnection, rustls::ServerConnection) {
    let dir = std::env::temp_dir().join(format!("zring-bench-{}", std::process::id()));
    let (a, b) = (
        Identity::new("cluster.local", "default", "a"),
        Identity::new("cluster.local", "default", "b"),
    );
    tls::init_ca(&dir, "cluster.local", true).unwrap();
    tls::issue(&dir, &a).unwrap();
    tls::issue(&dir, &b).unwrap();
    let store = CertStore::load(&dir, "cluster.local").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let ip: IpAddr = "10.244.2.7".parse().unwrap();
    let client_cfg = store.client_config(&a, std::slice::from_ref(&b)).unwrap();
    let mut client = rustls::ClientConnection::new(client_cfg, tls::server_name(ip)).unwrap();
    let mut server = rustls::ServerConnection::new(store.server_config(&b).unwrap()).unwrap();
    while client.is_handshaking() || server.is_handshaking() {
        shuttle(&mut client, &mut server);
        shuttle(&mut server, &mut client);
    }
    (client, server)
}

/// Moves every pending TLS byte from `from` to `to` and processes it.
fn shuttle(
    from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl rustls::SideData>>,
    to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl rustls::SideData>>,
) {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).unwrap();
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets().unwrap();
    }
}

fn records(c: &mut Criterion) {
    let (mut client, mut server) = tls_pair();
    let mut group = c.benchmark_group("TLS records");
    for size in [1024usize, 64 * 1024] {
        let data = vec![0x5au8; size];
        let mut wire = Vec::with_capacity(2 * size + 1024);
        let mut out = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("seal + open {size} B"), |b| {
            b.iter(|| {
                client.writer().write_all(black_box(&data)).unwrap();
                wire.clear();
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
                let mut rest = &wire[..];
                let mut got = 0;
                while !rest.is_empty() {
                    server.read_tls(&mut rest).unwrap();
                    server.process_new_packets().unwrap();
                    while let Ok(n) = server.reader().read(&mut out[got..]) {
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                }
                assert_eq!(got, size);
            })
        });
    }
    group.finish();
}

fn pool_checkout(c: &mut Criterion) {
    let pool: Pool<(), ()> = Pool::new(100);
    let key = PoolKey {
        src_identity: Identity::new("cluster.local", "default", "a"),
        dst_identity: Identity::new("cluster.local", "default", "b"),
        dst: "10.244.2.7:15008".parse().unwrap(),
        src_ip: None,
    };
    let connect = || async {
        let (abort, _) = AbortHandle::new_pair();
        Ok::<_, ()>(Conn::new((), Rc::new(Cell::new(false)), abort))
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut checkout = || {
        let fut = std::pin::pin!(pool.checkout(&key, connect));
        match fut.poll(&mut cx) {
            Poll::Ready(lease) => lease.unwrap(),
            Poll::Pending => unreachable!("a pooled connection is ready at once"),
        }
    };
    drop(checkout()); // the first checkout opens the connection
    let mut group = c.benchmark_group("pool");
    group.throughput(Throughput::Elements(1));
    group.bench_function("checkout + release (pooled connection)", |b| {
        b.iter(|| drop(black_box(checkout())))
    });
    group.finish();
}

criterion_group!(benches, records, pool_checkout);
criterion_main!(benches);
