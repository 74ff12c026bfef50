//! zring's own HTTP/2 on the HBONE listener (`--hbone-own-http2`), against the h2 crate's
//! client (the one ztunnel's hyper uses): flow control both ways with small windows, an
//! upstream that stops reading, END_STREAM ↔ FIN and RST_STREAM ↔ RST, many streams on
//! one connection, and a drain (GOAWAY, open streams finish). Then its client side (the
//! outbound pool) against our own server and the h2 crate's (zring with the flag off);
//! against ztunnel's it is `tests/interop.rs`. The hostile and end-to-end suites run
//! against both with `ZRING_HBONE_OWN_HTTP2=true`; no root.

mod common;
mod hostile_env;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use bytes::Bytes;
use hostile_env::*;
use testsupport::hbone::{self, Conn};
use zring::hbone::http2::frame;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    hbone::runtime().block_on(f)
}

/// A connection to `target` whose windows (ours to send into) are `stream` and
/// `connection` bytes.
async fn conn_with_windows(target: &Target, stream: u32, connection: u32) -> Conn {
    let tls = hbone::handshake(target.hbone, target.good_client())
        .await
        .unwrap();
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(stream)
        .initial_connection_window_size(connection);
    hbone::h2_with(tls, builder).await.unwrap()
}

/// A one-connection server on the workload IP running `serve` on its connection.
fn server(serve: impl FnOnce(std::net::TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind(format!("{SERVER_IP}:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((conn, _)) = listener.accept() {
            serve(conn);
        }
    });
    addr
}

/// Waits for END_STREAM with no more data (an empty DATA frame may carry the flag).
async fn end_of(rx: &mut h2::RecvStream) -> Result<(), String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.data()).await {
            Err(_) => return Err("no END_STREAM within 10 s".into()),
            Ok(None) => return Ok(()),
            Ok(Some(Ok(b))) if b.is_empty() => {}
            Ok(Some(other)) => return Err(format!("{other:?} before END_STREAM")),
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len / 4096)
        .flat_map(|i| common::block(i as u64, 4096))
        .collect()
}

#[test]
fn small_client_windows_hold_our_data_back_and_lose_nothing() {
    const BYTES: usize = 2 << 20;
    let target = Target::start_with(true);
    block_on(async {
        // 1 KiB per stream, 64 KiB per connection: every echo waits on WINDOW_UPDATEs.
        let mut conn = conn_with_windows(&target, 1024, 65_535).await;
        let mut tunnel = target.good_stream(&mut conn).await;
        let sent = pattern(BYTES);
        tunnel
            .tx
            .send_data(Bytes::from(sent.clone()), false)
            .unwrap();
        let back = tunnel.read_exact(BYTES).await.unwrap();
        assert!(back == sent, "the echo differs");
    });
}

#[test]
fn an_upstream_that_stops_reading_is_caught_up_with_in_order() {
    // More than our 4 MiB stream window: the client can send it all only if the window
    // comes back as the stalled bytes reach the upstream.
    const BYTES: usize = 12 << 20;
    let target = Target::start_with(true);
    let upstream = server(|mut s| {
        std::thread::sleep(Duration::from_millis(700));
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let ok = got == pattern(BYTES);
        s.write_all(if ok { b"intact" } else { b"broken" }).unwrap();
    });
    block_on(async {
        let mut conn = conn_with_windows(&target, 4 << 20, 16 << 20).await;
        let answer = hbone::connect(&mut conn, &upstream.to_string()).await;
        let mut tunnel = answer.tunnel().unwrap();
        tunnel
            .tx
            .send_data(Bytes::from(pattern(BYTES)), true)
            .unwrap();
        let verdict = tokio::time::timeout(Duration::from_secs(30), tunnel.read_exact(6))
            .await
            .expect("the upstream's verdict within 30 s")
            .unwrap();
        assert_eq!(verdict, b"intact");
    });
}

#[test]
fn end_stream_and_fin_map_to_each_other_both_ways() {
    let target = Target::start_with(true);
    let upstream = server(|mut s| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"request");
        s.write_all(b"reply after your FIN").unwrap();
    });
    block_on(async {
        let mut conn = conn_with_windows(&target, 4 << 20, 16 << 20).await;
        let mut tunnel = hbone::connect(&mut conn, &upstream.to_string())
            .await
            .tunnel()
            .unwrap();
        tunnel
            .tx
            .send_data(Bytes::from_static(b"request"), true)
            .unwrap();
        let back = tunnel.read_exact(20).await.unwrap();
        assert_eq!(back, b"reply after your FIN");
        assert_eq!(
            end_of(&mut tunnel.rx).await,
            Ok(()),
            "END_STREAM after the FIN"
        );
        assert!(tunnel.rx.is_end_stream());
    });
}

#[test]
fn a_client_reset_resets_the_upstream_and_an_upstream_reset_the_stream() {
    let target = Target::start_with(true);
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let reset_by_client = server(move |mut s| {
        let mut buf = [0u8; 64];
        let first = s.read(&mut buf);
        let after = s.read(&mut buf);
        seen_tx
            .send((first.ok(), after.map_err(|e| e.kind())))
            .unwrap();
    });
    let resetter = server(|s| {
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    block_on(async {
        let mut conn = conn_with_windows(&target, 4 << 20, 16 << 20).await;
        let mut tunnel = hbone::connect(&mut conn, &reset_by_client.to_string())
            .await
            .tunnel()
            .unwrap();
        tunnel
            .tx
            .send_data(Bytes::from_static(b"hi"), false)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        tunnel.tx.send_reset(h2::Reason::CANCEL);
        let mut other = hbone::connect(&mut conn, &resetter.to_string())
            .await
            .tunnel()
            .unwrap();
        let reset = tokio::time::timeout(Duration::from_secs(10), other.rx.data()).await;
        let reason = match reset {
            Ok(Some(Err(e))) => e.reason(),
            other => panic!("expected RST_STREAM after the upstream's RST, got {other:?}"),
        };
        assert_eq!(reason, Some(h2::Reason::CANCEL));
        // The connection goes on.
        target.good_stream(&mut conn).await;
    });
    let (first, after) = seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first, Some(2));
    assert_eq!(after, Err(std::io::ErrorKind::ConnectionReset));
}

#[test]
fn a_hundred_and_fifty_streams_on_one_connection_echo_at_once() {
    let target = Target::start_with(true);
    block_on(async {
        let mut conn = conn_with_windows(&target, 4 << 20, 16 << 20).await;
        let mut tunnels = Vec::new();
        for _ in 0..150 {
            tunnels.push(target.good_stream(&mut conn).await);
        }
        for round in 0..3u64 {
            for (i, t) in tunnels.iter_mut().enumerate() {
                let msg = common::block(round * 1000 + i as u64, 700);
                t.tx.send_data(Bytes::from(msg), false).unwrap();
            }
            for (i, t) in tunnels.iter_mut().enumerate() {
                let msg = common::block(round * 1000 + i as u64, 700);
                assert_eq!(t.read_exact(700).await.unwrap(), msg, "stream {i}");
            }
        }
    });
}

#[test]
fn drain_finishes_open_streams_and_refuses_new_ones() {
    let target = Target::start_with(true);
    let rt = hbone::runtime();
    let mut conn = rt.block_on(conn_with_windows(&target, 4 << 20, 16 << 20));
    let mut tunnel = rt.block_on(target.good_stream(&mut conn));
    std::thread::scope(|s| {
        let drained = s.spawn(|| target.drain(Duration::from_secs(20)));
        rt.block_on(async {
            // The GOAWAY's PING is answered by the client's driver; then the open stream
            // still echoes, and finishes with END_STREAM ↔ FIN.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(tunnel.echo(b"during drain").await.unwrap(), b"during drain");
            let refused = hbone::connect(&mut conn, &target.echo.to_string()).await;
            assert!(
                !matches!(refused, hbone::Answer::Status(200, _)),
                "a new stream after GOAWAY: {refused:?}"
            );
            tunnel.tx.send_data(Bytes::new(), true).unwrap();
            assert_eq!(end_of(&mut tunnel.rx).await, Ok(()));
        });
        assert!(
            drained.join().unwrap(),
            "the drain ends with the last stream"
        );
    });
}

/// Reads frames until a PING ACK carrying `payload`; false after 20 s without it.
async fn ping_acked(rx: &mut (impl tokio::io::AsyncRead + Unpin), payload: &[u8; 8]) -> bool {
    use tokio::io::AsyncReadExt;
    let read = async {
        loop {
            let mut head = [0u8; frame::HEADER_LEN];
            rx.read_exact(&mut head).await?;
            let head = frame::Head::parse(&head);
            let mut body = vec![0u8; head.len as usize];
            rx.read_exact(&mut body).await?;
            if head.kind == frame::kind::PING && head.has(frame::flag::ACK) && body == payload {
                return Ok::<_, std::io::Error>(true);
            }
        }
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(20), read).await,
        Ok(Ok(true))
    )
}

#[test]
fn a_peer_that_sends_pings_and_never_reads_is_read_no_further() {
    use tokio::io::AsyncWriteExt;
    let target = Target::start_with(true);
    block_on(async {
        let tls = hbone::handshake(target.hbone, target.good_client())
            .await
            .unwrap();
        let (mut rx, mut tx) = tokio::io::split(tls);
        let mut opening = frame::PREFACE.to_vec();
        frame::settings(&mut opening, &[]);
        tx.write_all(&opening).await.unwrap();
        // 1000 PINGs a write. Each answer is as long as its PING: with nothing read, the
        // answers fill this client's receive buffer, then the server's socket, then (had
        // it no bound) the server's memory.
        let mut pings = Vec::new();
        for _ in 0..1000 {
            frame::ping(&mut pings, false, *b"pingping");
        }
        let mut written = 0usize;
        loop {
            assert!(
                written < 64 << 20,
                "64 MiB of PINGs taken with none of their answers read: the server buffers them"
            );
            // A write cut short would leave half a frame: a stalled one is finished below.
            let mut write = std::pin::pin!(tx.write_all(&pings));
            if tokio::time::timeout(Duration::from_secs(3), write.as_mut())
                .await
                .is_ok()
            {
                written += pings.len();
                continue;
            }
            // The server stopped reading; once its answers are read it goes on, in order.
            let reader = tokio::spawn(async move { ping_acked(&mut rx, b"lastping").await });
            write.await.unwrap();
            let mut last = Vec::new();
            frame::ping(&mut last, false, *b"lastping");
            tx.write_all(&last).await.unwrap();
            tx.flush().await.unwrap();
            assert!(
                reader.await.unwrap(),
                "no answer to the last PING after {written} bytes of PINGs"
            );
            break;
        }
    });
}

// The client side: a zring with its own HTTP/2 dialling out (SOCKS5 in), to a zring
// server on ours or on the h2 crate's.

/// Client proxy A (own HTTP/2, SOCKS5) and server proxy B, with an echo workload behind B.
struct Pair {
    a: Option<zring::Proxy>,
    b: Option<zring::Proxy>,
    echo: SocketAddr,
    _scratch: common::Scratch,
}

impl Pair {
    fn start(server_own: bool) -> Pair {
        let scratch = common::Scratch::new("zri-own-client");
        let dir = scratch.path();
        let ids = [
            common::id("cluster.local", "default", "sleep"),
            common::id("cluster.local", "default", "httpbin"),
        ];
        common::make_certs(dir, &ids);
        let echo = common::echo_server(&format!("{SERVER_IP}:0"));
        let yaml = common::mesh_yaml("127.0.0.1", "cluster.local", SERVER_IP, echo.port());
        let config_path = dir.join("workloads.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        let base = common::base_config(dir, config_path);
        let b = zring::start(zring::config::Config {
            node_name: Some("node-b".into()),
            inbound_addr: Some(format!("{SERVER_IP}:0").parse().unwrap()),
            hbone_own_http2: server_own,
            ..base.clone()
        })
        .expect("start zring B");
        let a = zring::start(zring::config::Config {
            node_name: Some("node-a".into()),
            socks5_addr: Some("127.0.0.1:0".parse().unwrap()),
            hbone_port: b.addrs.inbound.unwrap().port(),
            hbone_own_http2: true,
            cores: 1,
            ..base
        })
        .expect("start zring A");
        Pair {
            a: Some(a),
            b: Some(b),
            echo,
            _scratch: scratch,
        }
    }

    fn connect(&self, target: SocketAddr) -> (std::net::TcpStream, u8) {
        let socks = self.a.as_ref().unwrap().addrs.socks5.unwrap();
        common::socks_connect(socks, target)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for p in [self.a.take(), self.b.take()].into_iter().flatten() {
            let _ = p.shutdown();
        }
    }
}

/// Both servers: ours, and the h2 crate's.
const SERVERS: [bool; 2] = [true, false];

#[test]
fn our_client_carries_bulk_both_ways_and_fin_follows_the_data() {
    for server_own in SERVERS {
        let pair = Pair::start(server_own);
        let (stream, code) = pair.connect(pair.echo);
        assert_eq!(
            code, 0,
            "CONNECT through our client (server own: {server_own})"
        );
        // 32 MiB each way: past every window (4 MiB stream, 16 MiB connection).
        common::echo_blocks(stream, 512, 64 * 1024);
    }
}

#[test]
fn our_client_runs_more_streams_than_one_connection_takes() {
    const STREAMS: usize = 150;
    for server_own in SERVERS {
        let pair = Pair::start(server_own);
        let streams: Vec<_> = (0..STREAMS)
            .map(|i| {
                let (mut s, code) = pair.connect(pair.echo);
                assert_eq!(code, 0, "stream {i} (server own: {server_own})");
                s.write_all(&common::block(i as u64, 1000)).unwrap();
                s
            })
            .collect();
        for (i, mut s) in streams.into_iter().enumerate() {
            let mut back = vec![0u8; 1000];
            s.read_exact(&mut back).unwrap();
            assert!(back == common::block(i as u64, 1000), "stream {i} echo");
        }
    }
}

#[test]
fn our_client_maps_refusals_and_resets() {
    for server_own in SERVERS {
        let pair = Pair::start(server_own);
        // A closed port: B answers 503, A refuses the SOCKS5 CONNECT.
        let closed = TcpListener::bind(format!("{SERVER_IP}:0")).unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let (_, code) = pair.connect(closed_addr);
        assert_eq!(code, 5, "refused after the 503 (server own: {server_own})");
        // An upstream that answers one byte and resets: the client is reset too.
        let resetter = common::one_byte_then_reset(SERVER_IP);
        let (mut s, code) = pair.connect(resetter);
        assert_eq!(code, 0);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"?").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), 1, "the byte before the reset");
        let err = s.read(&mut buf).expect_err("a reset, not FIN");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        // The connection still carries new streams.
        let (stream, code) = pair.connect(pair.echo);
        assert_eq!(code, 0);
        common::echo_blocks(stream, 4, 4096);
    }
}
