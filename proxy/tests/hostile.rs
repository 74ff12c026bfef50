//! Hostile input on the inbound HBONE listener (15008): each attack is refused with the
//! right TLS alert, HTTP/2 error code or HTTP status, and a stream opened before it, a new
//! stream on that connection and a new connection keep working. Real rustls and h2
//! clients (and hand-built frames where a library would refuse to misbehave) against an
//! in-process zring on 127.0.0.2; no root.

mod common;
mod hostile_env;

use std::time::{Duration, SystemTime};

use hostile_env::wire::*;
use hostile_env::*;
use rustls::AlertDescription as Alert;
use testsupport::h2raw;
use testsupport::hbone::{self, Answer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const DAY: Duration = Duration::from_secs(24 * 3600);
/// How long zring may let a client sit in the TLS handshake (any server timeout up to
/// this passes). ztunnel and any hardened server bound it; an unbounded wait lets idle
/// sockets pin file descriptors and memory forever.
const HANDSHAKE_BOUND: Duration = Duration::from_secs(20);

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    hbone::runtime().block_on(f)
}

#[test]
fn garbage_instead_of_tls_gets_at_most_an_alert_and_a_close() {
    let target = Target::start();
    block_on(async {
        let (mut conn, mut tunnel) = target.good_conn().await;
        let mut raw = TcpStream::connect(target.hbone).await.unwrap();
        raw.write_all(b"GET /config_dump HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        raw.write_all(&common::block(7, 4096)).await.unwrap();
        let back = drain(&mut raw, Duration::from_secs(5))
            .await
            .expect("garbage connection left open");
        // Nothing, or TLS alert records (content type 21) only: never an HTTP answer.
        assert!(
            back.is_empty() || back[0] == 21,
            "answered garbage with {back:?}"
        );
        eprintln!(
            "garbage instead of TLS: {} bytes back, then closed",
            back.len()
        );
        target.still_serving(&mut conn, &mut tunnel).await;
    });
}

#[test]
fn client_cert_from_another_trust_domain_is_refused() {
    let target = Target::start();
    block_on(async {
        let (mut conn, mut tunnel) = target.good_conn().await;
        // Signed by the node's own root: only the trust-domain check can refuse it.
        let evil = target
            .root
            .valid_leaf("spiffe://evil.local/ns/default/sa/sleep")
            .unwrap();
        let denied = [
            Alert::CertificateUnknown,
            Alert::AccessDenied,
            Alert::BadCertificate,
        ];
        refused_with(
            &target,
            target.client(Some(&evil)),
            &denied,
            "foreign trust domain",
        )
        .await;
        // Same identity, signed by a root the node does not trust.
        let stranger = testsupport::certs::Root::generate("cluster.local").unwrap();
        let leaf = stranger.valid_leaf(CLIENT_ID).unwrap();
        refused_with(
            &target,
            target.client(Some(&leaf)),
            &[Alert::UnknownCA],
            "foreign root",
        )
        .await;
        target.still_serving(&mut conn, &mut tunnel).await;
    });
}

#[test]
fn expired_and_not_yet_valid_client_certs_are_refused() {
    let target = Target::start();
    let now = SystemTime::now();
    block_on(async {
        let (mut conn, mut tunnel) = target.good_conn().await;
        let expired = target
            .root
            .leaf(CLIENT_ID, now - 2 * DAY, now - DAY)
            .unwrap();
        refused_with(
            &target,
            target.client(Some(&expired)),
            &[Alert::CertificateExpired],
            "expired",
        )
        .await;
        // TLS has one alert for both: "expired or not currently valid" (RFC 8446 §6.2).
        let future = target
            .root
            .leaf(CLIENT_ID, now + DAY, now + 2 * DAY)
            .unwrap();
        refused_with(
            &target,
            target.client(Some(&future)),
            &[Alert::CertificateExpired],
            "not yet valid",
        )
        .await;
        target.still_serving(&mut conn, &mut tunnel).await;
    });
}

#[test]
fn no_client_cert_is_refused() {
    let target = Target::start();
    block_on(async {
        let (mut conn, mut tunnel) = target.good_conn().await;
        refused_with(
            &target,
            target.client(None),
            &[Alert::CertificateRequired],
            "no client cert",
        )
        .await;
        target.still_serving(&mut conn, &mut tunnel).await;
    });
}

#[test]
fn h2_garbage_after_the_handshake_closes_only_that_connection() {
    let target = Target::start();
    block_on(async {
        let (mut conn, mut tunnel) = target.good_conn().await;
        // Not the HTTP/2 preface at all.
        let got = after_handshake(&target, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let code = goaway(&got);
        assert!(
            code.is_none() || code == Some(h2raw::PROTOCOL_ERROR),
            "bad preface: {got:?}"
        );
        // A valid preface, then DATA on stream 0 (RFC 9113 §6.1: connection error PROTOCOL_ERROR).
        let mut junk = h2raw::PREFACE.to_vec();
        junk.extend(h2raw::frame(h2raw::SETTINGS, 0, 0, &[]));
        junk.extend(h2raw::frame(h2raw::DATA, 0, 0, b"no stream"));
        let got = after_handshake(&target, &junk).await;
        assert_eq!(
            goaway(&got),
            Some(h2raw::PROTOCOL_ERROR),
            "DATA on stream 0: {got:?}"
        );
        target.still_serving(&mut conn, &mut tunnel).await;
    });
}

#[test]
fn connect_to_a_non_local_ip_or_a_bad_authority_gets_400() {
    let target = Target::start();
    block_on(async {
        bad_request(&target, "192.0.2.1:80").await;
        bad_request(&target, "127.0.0.9:80").await;
        bad_request(&target, "httpbin.default.svc.cluster.local:8000").await;
        bad_request(&target, SERVER_IP).await;
        bad_request(&target, "[::1]:80").await;
    });
}

#[test]
fn connect_to_the_proxy_itself_gets_400() {
    let target = Target::start();
    block_on(async {
        // The listener this connection arrived on, and the well-known proxy ports.
        let mut authorities = vec![target.hbone.to_string()];
        authorities.extend([15001, 15006, 15008, 15080].map(|p| format!("{SERVER_IP}:{p}")));
        let mut wrong = Vec::new();
        for authority in &authorities {
            let (mut conn, mut tunnel) = target.good_conn().await;
            match hbone::connect(&mut conn, authority).await {
                Answer::Status(400, None) => {}
                Answer::Status(code, _) => wrong.push(format!("{authority} -> {code}")),
                other => wrong.push(format!("{authority} -> {other:?}")),
            }
            target.still_serving(&mut conn, &mut tunnel).await;
        }
        assert!(
            wrong.is_empty(),
            "CONNECTs to the proxy's own ports must get 400: {wrong:?}"
        );
    });
}

#[test]
fn a_slow_handshake_is_cut_off() {
    let target = Target::start();
    block_on(async {
        let (mut conn, mut tunnel) = target.good_conn().await;
        // One silent client and one that stops halfway through a TLS record header.
        let mut silent = TcpStream::connect(target.hbone).await.unwrap();
        let mut partial = TcpStream::connect(target.hbone).await.unwrap();
        partial.write_all(&[22, 3, 1]).await.unwrap();
        target.still_serving(&mut conn, &mut tunnel).await;
        let limit = HANDSHAKE_BOUND + Duration::from_secs(2);
        let (a, b) = tokio::join!(drain(&mut silent, limit), drain(&mut partial, limit));
        assert!(
            a.is_ok(),
            "a client that never speaks was still connected after {limit:?}"
        );
        assert!(
            b.is_ok(),
            "a half-sent ClientHello was still connected after {limit:?}"
        );
    });
}

/// Concurrent streams zring accepts per HBONE connection (ARCHITECTURE.md, ztunnel's value).
const MAX_STREAMS: u32 = 200;

#[test]
fn more_streams_than_allowed_are_refused_and_the_rest_keep_flowing() {
    let target = Target::start();
    block_on(async {
        let tls = hbone::handshake(target.hbone, target.good_client())
            .await
            .unwrap();
        let (mut rx, mut tx) = tokio::io::split(tls);
        let mut hello = h2raw::PREFACE.to_vec();
        hello.extend(h2raw::frame(h2raw::SETTINGS, 0, 0, &[]));
        tx.write_all(&hello).await.unwrap();
        // The server's limit applies once we acknowledge its SETTINGS.
        read_until(&mut rx, |f| {
            f.ty == h2raw::SETTINGS && f.flags & h2raw::FLAG_ACK == 0
        })
        .await;
        let mut burst = h2raw::frame(h2raw::SETTINGS, h2raw::FLAG_ACK, 0, &[]);
        let echo = target.echo.to_string();
        for n in 0..=MAX_STREAMS {
            burst.extend(h2raw::connect_headers(2 * n + 1, &echo));
        }
        tx.write_all(&burst).await.unwrap();
        let (mut answered, mut refused) = (0, Vec::new());
        read_until(&mut rx, |f| {
            match f.ty {
                h2raw::HEADERS => answered += 1,
                h2raw::RST_STREAM => refused.push((f.stream, f.error_code())),
                h2raw::GOAWAY => panic!("the whole connection was closed: {f:?}"),
                _ => {}
            }
            answered == MAX_STREAMS && !refused.is_empty()
        })
        .await;
        let over = 2 * MAX_STREAMS + 1;
        assert_eq!(
            refused,
            vec![(over, Some(h2raw::REFUSED_STREAM))],
            "answered {answered}"
        );
        assert_eq!(answered, MAX_STREAMS);
        // Stream 1, opened first, still carries data both ways.
        tx.write_all(&h2raw::frame(h2raw::DATA, 0, 1, b"still here"))
            .await
            .unwrap();
        let got = read_until(&mut rx, |f| f.ty == h2raw::DATA && f.stream == 1).await;
        let last = got.last().expect("no frame after the refusal");
        assert_eq!(
            (last.stream, last.payload.as_slice()),
            (1, &b"still here"[..])
        );
        let (mut conn, mut tunnel) = target.good_conn().await;
        target.still_serving(&mut conn, &mut tunnel).await;
    });
}

/// Per-stream receive window of the stalling client: small, so a stream that is not read
/// reaches a zero window quickly. The connection window stays large (as ztunnel's and
/// zring's do), so only that stream stalls.
const STALL_WINDOW: u32 = 64 * 1024;
const STALLED_BYTES: usize = 8 * 1024 * 1024;

#[test]
fn a_stream_that_stops_reading_does_not_stall_the_others() {
    let target = Target::start();
    block_on(async {
        let tls = hbone::handshake(target.hbone, target.good_client())
            .await
            .unwrap();
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(STALL_WINDOW)
            .initial_connection_window_size(16 << 20);
        let mut conn = hbone::h2_with(tls, builder).await.unwrap();
        let mut stalled = target.good_stream(&mut conn).await;
        let sent: Vec<u8> = (0..STALLED_BYTES / 65536)
            .flat_map(|i| common::block(i as u64, 65536))
            .collect();
        // h2 buffers what the window does not let through; we never read the echo yet.
        stalled
            .tx
            .send_data(bytes::Bytes::from(sent.clone()), false)
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut other = target.good_stream(&mut conn).await;
        for i in 0..50u64 {
            let msg = common::block(500 + i, 1024);
            assert_eq!(
                other.echo(&msg).await.unwrap(),
                msg,
                "echo {i} beside a zero-window stream"
            );
        }
        let (mut fresh, mut t) = target.good_conn().await;
        target.still_serving(&mut fresh, &mut t).await;
        // The stalled stream resumes once read, and nothing of it was lost or reordered.
        let back = stalled.read_exact(STALLED_BYTES).await.unwrap();
        assert!(
            back == sent,
            "the stalled stream's echo differs after it resumed"
        );
    });
}
