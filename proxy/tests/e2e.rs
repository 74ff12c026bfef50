//! In-process end to end without root: client → SOCKS5 → zring A → HBONE (mTLS + HTTP/2
//! CONNECT) on loopback → zring B → echo server. Runs under io_uring and, via
//! `MONOIO_FORCE_LEGACY_DRIVER=1` in scripts/test-all, under the epoll fallback.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use zring::config::Config;
use zring::hbone::client::{self, Timing};
use zring::hbone::pool::{Handle, PoolKey};
use zring::{BoundAddrs, Proxy, ProxyError};

const CLIENT_IP: &str = "127.0.0.1";
const SERVER_IP: &str = "127.0.0.2";

/// Two proxies on loopback: A (node-a, SOCKS5 only) and B (node-b, HBONE inbound).
struct Mesh {
    scratch: Scratch,
    a: Option<Proxy>,
    b: Option<Proxy>,
    echo: SocketAddr,
}

impl Mesh {
    fn start(a_cores: usize, client_td: &str) -> Mesh {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let scratch = Scratch::new("e2e");
        let ids = [
            id("cluster.local", "default", "sleep"),
            id("cluster.local", "default", "httpbin"),
        ];
        make_certs(scratch.path(), &ids);
        let echo = echo_server(&format!("{SERVER_IP}:0"));
        let yaml = mesh_yaml(CLIENT_IP, client_td, SERVER_IP, echo.port());
        let config_path = scratch.path().join("workloads.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        let base = base_config(scratch.path(), config_path);
        let b = zring::start(Config {
            node_name: Some("node-b".into()),
            inbound_addr: Some(format!("{SERVER_IP}:0").parse().unwrap()),
            cores: 2,
            ..base.clone()
        })
        .expect("start zring B");
        let hbone_port = b.addrs.inbound.unwrap().port();
        let (a_certs, a_td) = client_certs(scratch.path(), client_td);
        let a = zring::start(Config {
            node_name: Some("node-a".into()),
            cert_dir: a_certs,
            trust_domain: a_td,
            socks5_addr: Some("127.0.0.1:0".parse().unwrap()),
            stats_addr: Some("127.0.0.1:0".parse().unwrap()),
            readiness_addr: Some("127.0.0.1:0".parse().unwrap()),
            hbone_port,
            cores: a_cores,
            ..base
        })
        .expect("start zring A");
        Mesh {
            scratch,
            a: Some(a),
            b: Some(b),
            echo,
        }
    }

    fn a(&self) -> &BoundAddrs {
        &self.a.as_ref().unwrap().addrs
    }

    fn hbone(&self) -> SocketAddr {
        self.b.as_ref().unwrap().addrs.inbound.unwrap()
    }
}

/// Node A's cert dir: the shared one, or for another trust domain a dir holding the
/// same root (so only B's trust-domain check can refuse it) and the client's leaf.
fn client_certs(shared: &std::path::Path, td: &str) -> (std::path::PathBuf, String) {
    if td == "cluster.local" {
        return (shared.to_path_buf(), td.to_string());
    }
    let dir = shared.join("node-a-certs");
    std::fs::create_dir_all(&dir).unwrap();
    for f in [zring::tls::ROOT_CERT_FILE, zring::tls::ROOT_KEY_FILE] {
        std::fs::copy(shared.join(f), dir.join(f)).unwrap();
    }
    zring::tls::ca::issue(&dir, &id(td, "default", "sleep")).unwrap();
    (dir, td.to_string())
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for p in [self.a.take(), self.b.take()].into_iter().flatten() {
            let _ = p.shutdown();
        }
    }
}

#[test]
fn bulk_256_mib_each_way_checksummed() {
    const BLOCK: usize = 64 * 1024;
    const BLOCKS: u64 = 256 * 1024 * 1024 / BLOCK as u64;
    let mesh = Mesh::start(2, "cluster.local");
    let (stream, code) = socks_connect(mesh.a().socks5.unwrap(), mesh.echo);
    assert_eq!(code, 0, "SOCKS5 CONNECT through the mesh must succeed");
    echo_blocks(stream, BLOCKS, BLOCK);
}

#[test]
fn two_hundred_concurrent_streams_share_two_connections() {
    const STREAMS: usize = 200;
    let mesh = Mesh::start(1, "cluster.local");
    let socks = mesh.a().socks5.unwrap();
    let echo = mesh.echo;
    let barrier = Arc::new(Barrier::new(STREAMS + 1));
    let done = Arc::new(Barrier::new(STREAMS + 1));
    let clients: Vec<_> = (0..STREAMS)
        .map(|i| {
            let (barrier, done) = (barrier.clone(), done.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let (mut s, code) = socks_connect(socks, echo);
                assert_eq!(code, 0, "stream {i} refused");
                let msg = format!("stream {i}");
                s.write_all(msg.as_bytes()).unwrap();
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).unwrap();
                assert_eq!(back, msg.as_bytes());
                done.wait();
                drop(s);
            })
        })
        .collect();
    barrier.wait();
    done.wait();
    // All 200 streams are open now: at most 100 per pooled connection, one connect per burst.
    assert_eq!(
        established_to(mesh.hbone()),
        2,
        "TCP connections to B's HBONE port"
    );
    for c in clients {
        c.join().unwrap();
    }
}

#[test]
fn service_vip_is_translated_to_the_target_port() {
    let mesh = Mesh::start(2, "cluster.local");
    let vip: SocketAddr = "10.96.0.105:8000".parse().unwrap();
    let (mut s, code) = socks_connect(mesh.a().socks5.unwrap(), vip);
    assert_eq!(code, 0);
    s.write_all(b"via the VIP").unwrap();
    let mut back = [0u8; 11];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"via the VIP");
}

#[test]
fn wrong_trust_domain_client_is_refused() {
    // Node A's client workload claims trust domain evil.local; its certificate is signed by
    // the shared root, so only B's trust-domain check can refuse it.
    let mesh = Mesh::start(1, "evil.local");
    let (mut s, code) = socks_connect(mesh.a().socks5.unwrap(), mesh.echo);
    assert_ne!(
        code, 0,
        "a client from another trust domain must be refused"
    );
    let mut buf = [0u8; 1];
    assert_eq!(
        s.read(&mut buf).unwrap_or(0),
        0,
        "connection must be closed"
    );
    // B saw the TLS connection but no CONNECT stream got through.
    let b = mesh.b.as_ref().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = b.totals();
    assert!(t.hbone_accepted >= 1, "A never reached B: {t:?}");
    assert_eq!(
        t.opened, 0,
        "B must not open a stream for a foreign trust domain"
    );
}

fn raw_connect(mesh: &Mesh, authority: &str) -> Result<(), ProxyError> {
    let store = zring::tls::CertStore::load(mesh.scratch.path(), "cluster.local").unwrap();
    let sleep = id("cluster.local", "default", "sleep");
    let httpbin = id("cluster.local", "default", "httpbin");
    let tls = store
        .client_config(&sleep, std::slice::from_ref(&httpbin))
        .unwrap();
    let key = PoolKey {
        src_identity: sleep,
        dst_identity: httpbin,
        dst: mesh.hbone(),
        src_ip: None,
        placement: None,
    };
    let timing = Timing {
        connect_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(10),
        ping_timeout: Duration::from_secs(20),
        own_http2: common::own_http2(),
    };
    let authority: SocketAddr = authority.parse().unwrap();
    let hbone = mesh.hbone();
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(async move {
        let session = zring::tls::server_name(hbone.ip());
        let conn = client::open(key, tls, session, timing, None).await?;
        let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
        match &conn.handle {
            Handle::H2(send) => client::connect_stream(send, hbone, authority, client)
                .await
                .map(drop),
            Handle::Own(own) => client::connect_own(own, hbone, authority, client)
                .await
                .map(drop),
        }
    })
}

fn status_of(result: Result<(), ProxyError>) -> u16 {
    match result {
        Err(ProxyError::Status { status, .. }) => status.as_u16(),
        other => panic!("expected an HTTP status, got {other:?}"),
    }
}

#[test]
fn connect_to_non_local_ip_gets_400() {
    let mesh = Mesh::start(1, "cluster.local");
    assert_eq!(status_of(raw_connect(&mesh, "192.0.2.1:80")), 400);
    // The same connection machinery succeeds for the local workload.
    let ok = raw_connect(&mesh, &mesh.echo.to_string());
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn refused_upstream_gives_503_and_closes_the_client() {
    let mesh = Mesh::start(1, "cluster.local");
    let closed = TcpListener::bind(format!("{SERVER_IP}:0")).unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    assert_eq!(status_of(raw_connect(&mesh, &closed_addr.to_string())), 503);
    let (mut s, code) = socks_connect(mesh.a().socks5.unwrap(), closed_addr);
    assert_eq!(code, 5, "SOCKS5 'connection refused' after HBONE 503");
    let mut buf = [0u8; 1];
    assert_eq!(
        s.read(&mut buf).unwrap_or(0),
        0,
        "client connection must be closed"
    );
}

#[test]
fn metrics_count_connections_and_bytes() {
    let mesh = Mesh::start(1, "cluster.local");
    let (mut s, code) = socks_connect(mesh.a().socks5.unwrap(), mesh.echo);
    assert_eq!(code, 0);
    s.write_all(&[7u8; 1000]).unwrap();
    let mut back = [0u8; 1000];
    s.read_exact(&mut back).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(s.read(&mut back).unwrap(), 0);
    let a = mesh.a.as_ref().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while a.totals().closed < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = a.totals();
    assert_eq!((t.opened, t.closed), (1, 1));
    assert_eq!((t.received_bytes, t.sent_bytes), (1000, 1000));
    let mut http = std::net::TcpStream::connect(a.addrs.stats.unwrap()).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with("istio_tcp_sent_bytes_total{"))
        .unwrap_or_else(|| panic!("no sent-bytes series in {body}"));
    for label in [
        "reporter=\"source\"",
        "source_workload=\"sleep\"",
        "destination_workload=\"httpbin\"",
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/httpbin\"",
        "connection_security_policy=\"mutual_tls\"",
    ] {
        assert!(line.contains(label), "{label} missing in {line}");
    }
    assert!(line.ends_with(" 1000"), "{line}");
}

#[test]
fn second_proxy_on_a_taken_port_is_refused() {
    let mesh = Mesh::start(1, "cluster.local");
    let taken = mesh.a().socks5.unwrap();
    let err = zring::start(Config {
        config_path: mesh.scratch.path().join("workloads.yaml"),
        cert_dir: mesh.scratch.path().to_path_buf(),
        transparent: false,
        cores: 1,
        outbound_addr: None,
        inbound_addr: None,
        inbound_plaintext_addr: None,
        admin_addr: None,
        stats_addr: None,
        readiness_addr: None,
        socks5_addr: Some(taken),
        ..Config::default()
    })
    .err()
    .expect("a second bind on a busy port must fail");
    assert!(matches!(err, ProxyError::Listen { .. }), "{err}");
    assert!(err.to_string().contains("socks5-addr"), "{err}");
}

fn wait_generation(proxy: &Proxy, at_least: u64) -> bool {
    wait_until(|| proxy.generation() >= at_least)
}

/// Polls `done` every 50 ms for up to 10 s.
fn wait_until(done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

#[test]
fn config_reload_applies_good_files_and_refuses_bad_ones() {
    let mesh = Mesh::start(1, "cluster.local");
    let a = mesh.a.as_ref().unwrap();
    let path = mesh.scratch.path().join("workloads.yaml");
    let good = std::fs::read_to_string(&path).unwrap();
    // A loopback address nothing listens on: before the reload it is an unknown
    // destination (plain passthrough, refused); afterwards a VIP of the service.
    let new_vip: SocketAddr = "127.0.0.106:8000".parse().unwrap();
    let (_, code) = socks_connect(a.addrs.socks5.unwrap(), new_vip);
    assert_eq!(code, 5, "127.0.0.106 is not a service yet");

    // A second VIP for the service: picked up without a restart.
    let with_vip = good.replace(r#"["/10.96.0.105"]"#, r#"["/10.96.0.105", "/127.0.0.106"]"#);
    std::fs::write(&path, &with_vip).unwrap();
    assert!(wait_generation(a, 2), "A did not reload the changed config");
    let (mut s, code) = socks_connect(a.addrs.socks5.unwrap(), new_vip);
    assert_eq!(code, 0, "the reloaded VIP must route");
    s.write_all(b"reloaded").unwrap();
    let mut back = [0u8; 8];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"reloaded");

    // A broken file is refused; the running generation keeps serving.
    assert_eq!(a.refused_reloads(), 0, "nothing refused yet");
    std::fs::write(&path, "workloads: [ {uid: x, workloadIps: [not-an-ip]} ]\n").unwrap();
    assert!(
        wait_until(|| a.refused_reloads() >= 1),
        "A never refused the broken config"
    );
    assert_eq!(
        a.generation(),
        2,
        "a bad config must not become a generation"
    );
    let (_, code) = socks_connect(a.addrs.socks5.unwrap(), new_vip);
    assert_eq!(code, 0, "the last good config stays in force");
}

#[test]
fn server_reset_resets_the_client() {
    let mesh = Mesh::start(1, "cluster.local");
    // A server that answers one byte, then aborts the connection (RST, not FIN).
    let resetter_addr = one_byte_then_reset(SERVER_IP);
    let (mut s, code) = socks_connect(mesh.a().socks5.unwrap(), resetter_addr);
    assert_eq!(code, 0);
    s.write_all(b"?").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        s.read(&mut buf).unwrap(),
        1,
        "the byte before the reset arrives"
    );
    let err = s
        .read(&mut buf)
        .expect_err("a reset upstream must reset the client, not FIN it");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}

#[test]
fn passthrough_splices_both_ways_with_a_slow_server() {
    let mesh = Mesh::start(1, "cluster.local");
    // Not a workload: plain TCP passthrough (splice). The server answers only after a
    // pause, so the proxy must wait for readiness instead of failing on EAGAIN.
    let slow = TcpListener::bind("127.0.0.3:0").unwrap();
    let slow_addr = slow.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = slow.accept() {
            let mut req = [0u8; 4];
            conn.read_exact(&mut req).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            conn.write_all(&[req, req].concat()).unwrap();
        }
    });
    let (mut s, code) = socks_connect(mesh.a().socks5.unwrap(), slow_addr);
    assert_eq!(code, 0);
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 8];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"pingping");
    assert_eq!(
        s.read(&mut back).unwrap(),
        0,
        "server FIN reaches the client"
    );
}

#[test]
fn drain_lets_a_running_transfer_finish_and_refuses_new_tunnels() {
    const BLOCK: usize = 64 * 1024;
    const BLOCKS: u64 = 48;
    let mesh = Mesh::start(1, "cluster.local");
    let socks = mesh.a().socks5.unwrap();
    let (stream, code) = socks_connect(socks, mesh.echo);
    assert_eq!(code, 0);
    let mut writer = stream.try_clone().unwrap();
    // A slow sender: the transfer is still running when B starts draining.
    let sender = std::thread::spawn(move || {
        for i in 0..BLOCKS {
            writer.write_all(&block(i, BLOCK)).unwrap();
            std::thread::sleep(Duration::from_millis(25));
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let b = mesh.b.as_ref().unwrap();
    let started = std::time::Instant::now();
    let drainer = std::thread::scope(|s| {
        let drain = s.spawn(|| b.drain(Duration::from_secs(20)));
        let mut reader = stream;
        let mut buf = vec![0u8; BLOCK];
        for i in 0..BLOCKS {
            reader.read_exact(&mut buf).unwrap();
            assert!(buf == block(i, BLOCK), "block {i} corrupted during drain");
        }
        assert_eq!(
            reader.read(&mut buf).unwrap(),
            0,
            "FIN must follow the data"
        );
        drain.join().unwrap()
    });
    sender.join().unwrap();
    assert!(drainer, "drain must end once the transfer finished");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drain waited for its timeout instead of the last connection: {:?}",
        started.elapsed()
    );
    let (_, code) = socks_connect(socks, mesh.echo);
    assert_ne!(code, 0, "a drained node must not take new tunnels");
}

#[test]
fn readiness_turns_503_while_draining() {
    let mut mesh = Mesh::start(1, "cluster.local");
    let a = mesh.a.take().unwrap();
    let ready = |proxy: &Proxy| {
        let addr = proxy.addrs.readiness.unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /healthz/ready HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    };
    assert!(ready(&a).starts_with("HTTP/1.1 200"), "{}", ready(&a));
    assert!(
        a.drain(Duration::from_secs(5)),
        "an idle node drains at once"
    );
    assert!(ready(&a).starts_with("HTTP/1.1 503"), "{}", ready(&a));
    a.shutdown().unwrap();
}
