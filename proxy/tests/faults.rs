//! Fault injection on loopback, no root: zring A runs in-process (SOCKS5 outbound), the
//! peer B is a separate `zring run` process so it can be killed with SIGKILL mid-stream.
//! Checks that the client sees a reset within 1 s, that A's pool drops the dead
//! connection, and that the next connection to the restarted peer works.
//! (Upstream refused → 503 + client reset is `refused_upstream_gives_503_and_closes_the_client`
//! in e2e.rs.)

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use zring::config::Config;
use zring::Proxy;

const CLIENT_IP: &str = "127.0.0.1";
const SERVER_IP: &str = "127.0.0.2";

/// The peer proxy as a child process; SIGKILLed and reaped on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `zring run` as node-b with its HBONE inbound on `hbone`; waits until it listens.
fn spawn_peer(dir: &std::path::Path, hbone: SocketAddr, log: &str) -> Peer {
    let out = std::fs::File::create(dir.join(log)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_zring"))
        .arg("run")
        .arg("--config")
        .arg(dir.join("workloads.yaml"))
        .arg("--cert-dir")
        .arg(dir)
        .args([
            "--node-name",
            "node-b",
            "--cores",
            "1",
            "--transparent",
            "false",
        ])
        .args(["--inbound-addr", &hbone.to_string()])
        .args(["--outbound-addr", "off", "--inbound-plaintext-addr", "off"])
        .args([
            "--socks5-addr",
            "off",
            "--admin-addr",
            "off",
            "--stats-addr",
            "off",
        ])
        .args(["--readiness-addr", "off"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start zring peer");
    let peer = Peer(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(hbone).is_err() {
        assert!(
            Instant::now() < deadline,
            "peer never listened on {hbone}; see {log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    peer
}

/// A free port on SERVER_IP (bound, then released) for the peer to reuse across restarts.
fn free_hbone_addr() -> SocketAddr {
    TcpListener::bind(format!("{SERVER_IP}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start_a(dir: &std::path::Path, hbone_port: u16) -> Proxy {
    zring::start(Config {
        config_path: dir.join("workloads.yaml"),
        cert_dir: dir.to_path_buf(),
        node_name: Some("node-a".into()),
        transparent: false,
        outbound_addr: None,
        inbound_addr: None,
        inbound_plaintext_addr: None,
        socks5_addr: Some(format!("{CLIENT_IP}:0").parse().unwrap()),
        admin_addr: None,
        stats_addr: None,
        readiness_addr: None,
        hbone_port,
        cores: 1,
        ..Config::default()
    })
    .expect("start zring A")
}

/// One checksummed 64 KiB round trip on `s` (block `i`).
fn round_trip(s: &mut TcpStream, i: u64) {
    let data = block(i, 64 * 1024);
    s.write_all(&data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    assert!(back == data, "block {i} corrupted");
}

/// Waits up to `limit` for `done`, polling every 20 ms.
fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

#[test]
fn peer_killed_mid_stream_resets_client_and_pool_recovers() {
    let scratch = Scratch::new("faults");
    let dir = scratch.path();
    let ids = [
        id("cluster.local", "default", "sleep"),
        id("cluster.local", "default", "httpbin"),
    ];
    make_certs(dir, &ids);
    let echo = echo_server(&format!("{SERVER_IP}:0"));
    let yaml = mesh_yaml(CLIENT_IP, "cluster.local", SERVER_IP, echo.port());
    std::fs::write(dir.join("workloads.yaml"), yaml).unwrap();
    let hbone = free_hbone_addr();
    let mut peer = spawn_peer(dir, hbone, "peer-1.log");
    let a = start_a(dir, hbone.port());
    let socks = a.addrs.socks5.unwrap();

    let (mut s, code) = socks_connect(socks, echo);
    assert_eq!(code, 0, "first connection through the live peer");
    for i in 0..4 {
        round_trip(&mut s, i);
    }
    assert_eq!(
        established_to(hbone),
        1,
        "A pools one HBONE connection to B"
    );
    // Bytes in flight when the peer dies.
    s.write_all(&block(99, 256 * 1024)).unwrap();
    peer.0.kill().unwrap();
    let killed = Instant::now();
    peer.0.wait().unwrap();

    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let outcome = drain_until_closed(&mut s);
    let after = killed.elapsed();
    assert_eq!(
        outcome,
        Some(ErrorKind::ConnectionReset),
        "the client must see a reset (not EOF/timeout) when the peer dies; took {after:?}"
    );
    assert!(after < Duration::from_secs(1), "reset took {after:?}");
    assert!(
        eventually(Duration::from_secs(2), || established_to(hbone) == 0),
        "A still holds the dead HBONE connection"
    );

    let _peer = spawn_peer(dir, hbone, "peer-2.log");
    let (mut s2, code) = socks_connect(socks, echo);
    assert_eq!(code, 0, "the next connection after the restart must route");
    s2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 10..14 {
        round_trip(&mut s2, i);
    }
    assert_eq!(established_to(hbone), 1, "one fresh pooled connection");
    drop(s2);
    let _ = a.shutdown();
}

/// Reads until the stream ends: `None` on EOF, else the error kind (WouldBlock = timeout).
fn drain_until_closed(s: &mut TcpStream) -> Option<ErrorKind> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(_) => continue,
            Err(e) => return Some(e.kind()),
        }
    }
}
