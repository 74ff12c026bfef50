//! Root-only: HBONE between zring and the real istio/ztunnel (`../shared/peers/ztunnel`),
//! both directions, each proxy in its own network namespace ("node"), joined by a veth
//! (topology in `interop_env`). Bulk data is checksummed, 1 KiB echoes are verified
//! byte for byte, and each side's view of the SPIFFE identities is read back from its
//! metrics (and ztunnel's access log). With `CI=true` these tests fail, never skip, when
//! the peer binary is missing or the process is not root.

mod common;
mod interop_env;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use interop_env::*;
use plumbing::netns;
use testsupport::hbone::{self, Answer};

const BLOCK: usize = 64 * 1024;
const BULK_BYTES: u64 = 64 * 1024 * 1024;
const ECHOES: usize = 200;

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// SOCKS5 CONNECT from inside `ns` through `socks` to `target`.
fn socks_in(ns: &str, socks: SocketAddr, target: SocketAddr) -> TcpStream {
    let (s, code) = netns::run_in(Some(ns), || common::socks_connect(socks, target)).unwrap();
    assert_eq!(
        code, 0,
        "SOCKS5 CONNECT via {socks} to {target} refused ({code})"
    );
    s
}

/// Sends `BULK_BYTES` of seeded blocks through the echo path and checks every block
/// that comes back, then the FIN; returns the elapsed time.
fn bulk_round_trip(stream: TcpStream) -> Duration {
    let blocks = BULK_BYTES / BLOCK as u64;
    let started = Instant::now();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..blocks {
            writer.write_all(&common::block(i, BLOCK)).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = stream;
    reader
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = vec![0u8; BLOCK];
    for i in 0..blocks {
        reader.read_exact(&mut buf).unwrap();
        assert!(
            buf == common::block(i, BLOCK),
            "block {i} came back corrupted"
        );
    }
    assert_eq!(
        reader.read(&mut buf).unwrap(),
        0,
        "FIN must follow the data"
    );
    sender.join().unwrap();
    started.elapsed()
}

/// `ECHOES` round trips of 1 KiB, each a different block; returns the median.
fn echoes(mut s: TcpStream) -> Duration {
    let mut back = vec![0u8; 1024];
    let mut times = Vec::with_capacity(ECHOES);
    for i in 0..ECHOES as u64 {
        let msg = common::block(1_000_000 + i, 1024);
        let t = Instant::now();
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
        times.push(t.elapsed());
        assert!(back == msg, "echo {i} came back different");
    }
    times.sort();
    times[ECHOES / 2]
}

fn report(what: &str, bulk: Duration, echo_p50: Duration) {
    let gbps = (2 * BULK_BYTES * 8) as f64 / bulk.as_secs_f64() / 1e9;
    eprintln!("{what}: 64 MiB each way in {bulk:?} ({gbps:.2} Gb/s both ways, debug build); 1 KiB echo p50 {echo_p50:?}");
}

fn labels(reporter: &str, src: &str, dst: &str) -> Vec<String> {
    vec![
        format!("reporter=\"{reporter}\""),
        format!("source_principal=\"{src}\""),
        format!("destination_principal=\"{dst}\""),
    ]
}

const OPENED: &str = "istio_tcp_connections_opened_total";

/// ztunnel's access-log line for the bulk connection: who it saw on each end.
fn access_logged(env: &Env, direction: &str, src: &str, dst: &str, target: SocketAddr) {
    let needles = [
        "\taccess\t".to_string(),
        format!("direction=\"{direction}\""),
        format!("src.identity=\"{src}\""),
        format!("dst.identity=\"{dst}\""),
        format!("dst.hbone_addr={target}"),
        format!("bytes_sent={BULK_BYTES} bytes_recv={BULK_BYTES}"),
    ];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let line = env.wait_log_line("ztunnel.log", &needles);
    eprintln!("ztunnel's access log: {line}");
}

#[test]
fn ztunnel_outbound_to_zring_inbound() {
    if !can_run("interop ztunnel → zring") {
        return;
    }
    let env = Env::start();
    let (t, socks) = (env.t.name().to_string(), addr("127.0.0.1", 15080));
    let target = addr(Z_WORKLOAD, SERVER_PORT);
    let bulk = bulk_round_trip(socks_in(&t, socks, target));
    let p50 = echoes(socks_in(&t, socks, target));
    report("ztunnel → zring", bulk, p50);
    // zring (server side) saw ztunnel's certificate; ztunnel (client side) saw zring's.
    env.wait_series(env.z.name(), OPENED, &labels("destination", T_ID, Z_ID));
    env.wait_series(&t, OPENED, &labels("source", T_ID, Z_ID));
    access_logged(&env, "outbound", T_ID, Z_ID, target);
}

#[test]
fn zring_outbound_to_ztunnel_inbound() {
    if !can_run("interop zring → ztunnel") {
        return;
    }
    let env = Env::start();
    let (z, socks) = (env.z.name().to_string(), addr(Z_WORKLOAD, 15080));
    let target = addr(T_WORKLOAD, SERVER_PORT);
    let bulk = bulk_round_trip(socks_in(&z, socks, target));
    let p50 = echoes(socks_in(&z, socks, target));
    report("zring → ztunnel", bulk, p50);
    env.wait_series(&z, OPENED, &labels("source", Z_ID, T_ID));
    env.wait_series(env.t.name(), OPENED, &labels("destination", Z_ID, T_ID));
    access_logged(&env, "inbound", Z_ID, T_ID, target);
}

/// zring's own HTTP/2 client (`--hbone-own-http2`) against ztunnel's server (hyper),
/// whatever the suite's environment: CI runs the suite with the flag off.
#[test]
fn zring_own_http2_outbound_to_ztunnel_inbound() {
    if !can_run("interop zring (own HTTP/2) → ztunnel") {
        return;
    }
    let env = Env::start_with(true);
    let (z, socks) = (env.z.name().to_string(), addr(Z_WORKLOAD, 15080));
    let target = addr(T_WORKLOAD, SERVER_PORT);
    let bulk = bulk_round_trip(socks_in(&z, socks, target));
    let p50 = echoes(socks_in(&z, socks, target));
    report("zring (own HTTP/2) → ztunnel", bulk, p50);
    // ztunnel answers a CONNECT to a port nobody listens on with an error status: the
    // SOCKS5 client is refused, and the connection still carries the next stream.
    let (_, code) = netns::run_in(Some(&z), || {
        common::socks_connect(socks, addr(T_WORKLOAD, SERVER_PORT + 1))
    })
    .unwrap();
    assert_ne!(code, 0, "a CONNECT to a closed port must be refused");
    let p50 = echoes(socks_in(&z, socks, target));
    report("zring (own HTTP/2) → ztunnel after a refusal", bulk, p50);
    env.wait_series(&z, OPENED, &labels("source", Z_ID, T_ID));
    env.wait_series(env.t.name(), OPENED, &labels("destination", Z_ID, T_ID));
    access_logged(&env, "inbound", Z_ID, T_ID, target);
}

/// From inside `ns`, one HBONE connection to `server` as `client_id`: the server must
/// present `server_id`; a CONNECT to `foreign` (not a workload of that node) must be
/// refused, and a CONNECT to `local` on the same connection must still echo.
fn probe(
    ns: &str,
    server: SocketAddr,
    server_id: &str,
    client_id: &str,
    foreign: SocketAddr,
    local: SocketAddr,
) -> Answer {
    let (cert, key) = test_root();
    let root = testsupport::certs::Root::load(&cert, &key).unwrap();
    let leaf = root.valid_leaf(client_id).unwrap();
    let tls = hbone::client_config(&root.cert_pem, Some(&leaf)).unwrap();
    netns::run_in(Some(ns), move || {
        hbone::runtime().block_on(async move {
            let stream = hbone::handshake(server, tls).await.expect("TLS handshake");
            assert_eq!(hbone::server_identity(&stream).as_deref(), Some(server_id));
            let mut conn = hbone::h2(stream).await.expect("HTTP/2 handshake");
            let refused = hbone::connect(&mut conn, &foreign.to_string()).await;
            let mut ok = hbone::connect(&mut conn, &local.to_string())
                .await
                .tunnel()
                .unwrap();
            let back = ok.echo(b"still served").await.unwrap();
            assert_eq!(back, b"still served");
            refused
        })
    })
    .unwrap()
}

#[test]
fn connect_to_a_non_local_ip_is_refused_by_both() {
    if !can_run("interop non-local CONNECT") {
        return;
    }
    let env = Env::start();
    let (z_wl, t_wl) = (addr(Z_WORKLOAD, SERVER_PORT), addr(T_WORKLOAD, SERVER_PORT));
    // A peer on node-t asks zring (node-z) for node-t's own workload: not local to zring.
    let zring = probe(
        env.t.name(),
        addr(Z_WORKLOAD, 15008),
        Z_ID,
        T_ID,
        t_wl,
        z_wl,
    );
    assert!(
        matches!(zring, Answer::Status(400, None)),
        "zring answered {zring:?}"
    );
    let ztunnel = probe(
        env.z.name(),
        addr(T_WORKLOAD, 15008),
        T_ID,
        Z_ID,
        z_wl,
        t_wl,
    );
    let refused = match &ztunnel {
        Answer::Status(code, None) => (400..600).contains(code),
        Answer::Reset(_) => true,
        _ => false,
    };
    assert!(refused, "ztunnel answered {ztunnel:?}");
    // ... and for the right reason: the authority is not the address dialled.
    let why = format!("ip mismatch: {T_WORKLOAD} != {Z_WORKLOAD}");
    let line = env.wait_log_line(
        "ztunnel.log",
        &["connection failed", "direction=\"inbound\"", &why],
    );
    eprintln!("non-local CONNECT: zring {zring:?}, ztunnel {ztunnel:?}; ztunnel logged: {line}");
}
