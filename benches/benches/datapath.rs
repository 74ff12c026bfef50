//! The per-byte and per-message pure work of the HBONE data path: sealing and opening
//! TLS records with zring's rustls configs (ring provider) through `tls::session`
//! (rustls's unbuffered API on our buffers, what the proxy runs) and, for reference,
//! through rustls's buffered API (what it ran before); and a pool checkout. Each reports a
//! throughput figure.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::AbortHandle;
use tokio::io::ReadBuf;
use zring::hbone::pool::{Conn, Pool, PoolKey};
use zring::identity::Identity;
use zring::tls::session::{Handshake, Session};
use zring_benches::{identities, server_name, tls_pair};

/// Two `Session`s handshaken in memory.
fn session_pair() -> (Session, Session) {
    let (client_cfg, server_cfg) = identities("dp").configs();
    let client =
        rustls::client::UnbufferedClientConnection::new(client_cfg, server_name()).unwrap();
    let server = rustls::server::UnbufferedServerConnection::new(server_cfg).unwrap();
    let (mut client, mut server) = (Session::new(client), Session::new(server));
    loop {
        let c = client.handshake().unwrap();
        transfer(&mut client, &mut server);
        let s = server.handshake().unwrap();
        transfer(&mut server, &mut client);
        if c == Handshake::Complete && s == Handshake::Complete {
            break;
        }
    }
    let mut mem = vec![MaybeUninit::uninit(); 4096];
    client.read(&mut ReadBuf::uninit(&mut mem)).unwrap(); // the server's tickets
    (client, server)
}

/// Moves every queued record of `from` into `to`'s receive buffer, as a read op would.
fn transfer(from: &mut Session, to: &mut Session) {
    let n = from.outgoing().len();
    let mut buf = to.read_buffer();
    buf.extend_from_slice(from.outgoing());
    from.sent(n);
    to.received(buf, n.max(1));
}

/// What the proxy does per h2 DATA frame: a 9-byte header and the payload sealed into
/// records, the records opened where they were received, the plaintext copied to h2.
fn session_records(c: &mut Criterion) {
    let (mut client, mut server) = session_pair();
    let mut group = c.benchmark_group("TLS records (tls::session)");
    for size in [1024usize, 64 * 1024] {
        let header = [0u8; 9];
        let data = vec![0x5au8; size];
        let mut mem = vec![MaybeUninit::uninit(); size + 9];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("seal + open {size} B"), |b| {
            b.iter(|| {
                let slices = [IoSlice::new(&header), IoSlice::new(black_box(&data))];
                assert_eq!(client.write(&slices).unwrap(), size + 9);
                transfer(&mut client, &mut server);
                let mut out = ReadBuf::uninit(&mut mem);
                while out.remaining() > 0 {
                    server.read(&mut out).unwrap();
                }
                black_box(out.filled());
            })
        });
    }
    group.finish();
}

fn records(c: &mut Criterion) {
    let (mut client, mut server) = tls_pair(identities("dp").configs());
    let mut group = c.benchmark_group("TLS records (rustls buffered API, reference)");
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
        placement: None,
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

criterion_group!(benches, session_records, records, pool_checkout);
criterion_main!(benches);
