//! Root-only: TLS session resumption between nodes, end to end. Two node namespaces
//! joined by a veth (`interop_env::topo`); node z runs zring with three source workloads
//! (two share the service account `zsa`, one is `osa`), node t runs zring or the real
//! istio/ztunnel in front of an echo server. zring logs each handshake and whether it
//! resumed (`zring::tls` at debug, JSON). With `CI=true` these tests fail, never skip,
//! when the peer binary is missing or the process is not root.

mod common;
mod interop_env;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use interop_env::procs::{spawn_ztunnel, Proc};
use interop_env::topo::{namespaces, sh, zring_certs_for};
use interop_env::{get_in, wait_ready, SERVER_PORT, T_WORKLOAD, Z_WORKLOAD};
use plumbing::netns;

/// A second source workload on node z with the same identity as `Z_WORKLOAD`.
const Z_TWIN: &str = "10.81.1.3";
/// A source workload on node z with another identity (`osa`), denied on node t.
const Z_OTHER: &str = "10.81.1.4";
const ZSA: &str = "spiffe://cluster.local/ns/zri/sa/zsa";
const SOCKS: &str = "10.81.0.1:15080";

/// Node t's workload admits only `zsa` (so a resumed session must still say `zsa`).
const WORKLOADS: &str = r#"workloads:
- {uid: c//v1/Pod/zri/zwl, name: zwl, workloadName: zwl, namespace: zri, serviceAccount: zsa, workloadIps: ["10.81.1.2"], trustDomain: cluster.local, protocol: HBONE, node: node-z, services: {}}
- {uid: c//v1/Pod/zri/zwl2, name: zwl2, workloadName: zwl2, namespace: zri, serviceAccount: zsa, workloadIps: ["10.81.1.3"], trustDomain: cluster.local, protocol: HBONE, node: node-z, services: {}}
- {uid: c//v1/Pod/zri/owl, name: owl, workloadName: owl, namespace: zri, serviceAccount: osa, workloadIps: ["10.81.1.4"], trustDomain: cluster.local, protocol: HBONE, node: node-z, services: {}}
- {uid: c//v1/Pod/zri/twl, name: twl, workloadName: twl, namespace: zri, serviceAccount: tsa, workloadIps: ["10.81.2.2"], trustDomain: cluster.local, protocol: HBONE, node: node-t, services: {}, authorizationPolicies: ["zri/only-zsa"]}
policies:
- name: only-zsa
  namespace: zri
  scope: WorkloadSelector
  action: Allow
  dryRun: false
  rules:
  - - - principals: [!Exact "cluster.local/ns/zri/sa/zsa"]
"#;

fn zring(ns: &str, dir: &Path, node: &str, socks: &str) -> Proc {
    let log = std::fs::File::create(dir.join(format!("zring-{node}.log"))).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_zring"), "run"])
        .arg("--config")
        .arg(dir.join("workloads.yaml"))
        .arg("--cert-dir")
        .arg(dir.join("certs"))
        .args([
            "--node-name",
            node,
            "--cores",
            "1",
            "--transparent",
            "false",
        ])
        .args(["--outbound-addr", "off", "--inbound-plaintext-addr", "off"])
        .args(["--inbound-addr", "0.0.0.0:15008", "--socks5-addr", socks])
        .args([
            "--stats-addr",
            "0.0.0.0:15020",
            "--readiness-addr",
            "0.0.0.0:15021",
        ])
        // An idle pooled connection closes within ~2 s: the next pair needs a handshake.
        .args(["--pool-idle-timeout", "1s"])
        .env("RUST_LOG", "info,zring::tls=debug")
        .env("LOG_FORMAT", "json")
        .env("ZRING_SAME_NODE_FAST_PATH", "false")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start zring");
    Proc(child)
}

struct Env {
    _procs: Vec<Proc>,
    z: netns::NetnsGuard,
    t: netns::NetnsGuard,
    scratch: common::Scratch,
}

impl Env {
    /// Node z runs zring; node t runs zring (`ztunnel: false`) or ztunnel.
    fn start(ztunnel: bool) -> Env {
        let scratch = common::Scratch::new("zri-resume");
        let (z, t) = namespaces();
        for ip in [Z_TWIN, Z_OTHER] {
            sh(
                z.name(),
                &["ip", "addr", "add", &format!("{ip}/32"), "dev", "zeth0"],
            );
        }
        let dir = scratch.path();
        std::fs::write(dir.join("workloads.yaml"), WORKLOADS).unwrap();
        zring_certs_for(dir, &[("zri", "zsa"), ("zri", "osa"), ("zri", "tsa")]);
        for (ns, ip) in [(z.name(), Z_WORKLOAD), (t.name(), T_WORKLOAD)] {
            let addr = format!("{ip}:{SERVER_PORT}");
            let l = netns::run_in(Some(ns), || std::net::TcpListener::bind(&addr)).unwrap();
            testsupport::echo::spawn(l.expect("bind echo server"));
        }
        let mut procs = vec![zring(z.name(), dir, "node-z", SOCKS)];
        wait_ready(z.name(), "zring z", &dir.join("zring-node-z.log"));
        if ztunnel {
            procs.push(spawn_ztunnel(t.name(), dir));
            wait_ready(t.name(), "ztunnel", &dir.join("ztunnel.log"));
        } else {
            procs.push(zring(t.name(), dir, "node-t", "off"));
            wait_ready(t.name(), "zring t", &dir.join("zring-node-t.log"));
        }
        Env {
            _procs: procs,
            z,
            t,
            scratch,
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.scratch.path().join(name)).unwrap_or_default()
    }

    /// zring's handshakes in log `name` so far: (full, resumed).
    fn handshakes(&self, name: &str) -> (usize, usize) {
        let lines: Vec<String> = self
            .log(name)
            .lines()
            .filter(|l| l.contains("TLS handshake complete"))
            .map(str::to_string)
            .collect();
        let resumed = lines
            .iter()
            .filter(|l| l.contains("\"resumed\":true"))
            .count();
        (lines.len() - resumed, resumed)
    }

    /// Waits until node z holds no HBONE connection (the pool let it go).
    fn wait_pool_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let dst = format!("dst {T_WORKLOAD}:15008");
        loop {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    self.z.name(),
                    "ss",
                    "-Htn",
                    "state",
                    "established",
                ])
                .arg(&dst)
                .output()
                .expect("run ss");
            if out.stdout.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "zring kept its idle HBONE connection"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// SOCKS5 CONNECT from `src` in `ns` via `socks` to `target`: the stream and reply code.
fn socks_from(
    ns: &str,
    src: &str,
    socks: SocketAddr,
    target: SocketAddr,
) -> (Option<TcpStream>, u8) {
    netns::run_in(Some(ns), || {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let ip: IpAddr = src.parse().unwrap();
        sock.bind(&SocketAddr::new(ip, 0).into()).unwrap();
        sock.connect_timeout(&socks.into(), Duration::from_secs(5))
            .unwrap();
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&[5, 1, 0]).unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).unwrap();
        let IpAddr::V4(v4) = target.ip() else {
            unreachable!()
        };
        let mut req = vec![5, 1, 0, 1];
        req.extend_from_slice(&v4.octets());
        req.extend_from_slice(&target.port().to_be_bytes());
        s.write_all(&req).unwrap();
        let mut reply = [0u8; 10];
        match s.read_exact(&mut reply) {
            Ok(()) if reply[1] == 0 => (Some(s), 0),
            Ok(()) => (None, reply[1]),
            Err(_) => (None, 255),
        }
    })
    .unwrap()
}

/// One echo from `src` (node z) to `dst`: true when it came back.
fn echo(env: &Env, src: &str, dst: SocketAddr) -> bool {
    let (s, _) = socks_from(env.z.name(), src, SOCKS.parse().unwrap(), dst);
    let Some(mut s) = s else { return false };
    let msg = format!("hello from {src}");
    let mut back = vec![0u8; msg.len()];
    s.write_all(msg.as_bytes()).is_ok() && s.read_exact(&mut back).is_ok() && back == msg.as_bytes()
}

/// A series of `metric` at 15020 in `ns` with every label in `labels`, and its value.
fn series(ns: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    let (_, body) = get_in(ns, "127.0.0.1:15020", "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(&format!("{metric}{{")) && labels.iter().all(|w| l.contains(w)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn zring_to_zring_resumes_and_authorizes_the_resumed_identity() {
    if !interop_env::can_run("zring_to_zring_resumes_and_authorizes_the_resumed_identity") {
        return;
    }
    let env = Env::start(false);
    let dst = addr(T_WORKLOAD, SERVER_PORT);
    assert!(
        echo(&env, Z_WORKLOAD, dst),
        "first pair (full handshake) did not echo"
    );
    // Once the pool let that connection go, the twin (another pod, same identity) needs
    // a new one, from the same client config and so with the ticket the first left.
    env.wait_pool_empty();
    assert!(
        echo(&env, Z_TWIN, dst),
        "second pair (resumed) did not echo"
    );
    let (full, resumed) = env.handshakes("zring-node-t.log");
    assert_eq!(
        (full, resumed),
        (1, 1),
        "node t's handshakes (full, resumed)"
    );
    assert_eq!(
        env.handshakes("zring-node-z.log"),
        (1, 1),
        "node z's handshakes"
    );
    // Inbound authorization saw the resumed session's identity: the policy admits only
    // zsa, and the metrics name zsa for the twin's connection.
    let twin = [
        "reporter=\"destination\"",
        "source_workload=\"zwl2\"",
        &format!("source_principal=\"{ZSA}\""),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    while series(env.t.name(), "istio_tcp_connections_opened_total", &twin).unwrap_or(0.0) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no inbound series for the resumed twin with {ZSA}: {:?}",
            get_in(env.t.name(), "127.0.0.1:15020", "/metrics")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another identity gets no session of zsa's and is denied.
    assert!(
        !echo(&env, Z_OTHER, dst),
        "osa must be denied by node t's policy"
    );
    let (_, resumed_after) = env.handshakes("zring-node-t.log");
    assert_eq!(resumed_after, 1, "osa's handshake must be a full one");
    // Once the pool lets go, the same pair comes back on a resumed session.
    env.wait_pool_empty();
    assert!(echo(&env, Z_WORKLOAD, dst), "reconnected pair did not echo");
    assert_eq!(env.handshakes("zring-node-t.log").1, 2);
}

#[test]
fn zring_and_ztunnel_interoperate_with_resumption_on() {
    if !interop_env::can_run("zring_and_ztunnel_interoperate_with_resumption_on") {
        return;
    }
    let env = Env::start(true);
    // zring → ztunnel: full, then (after the pool let go) on a new connection with
    // zring's session cache on: ztunnel must accept whatever zring offers (a resumption
    // attempt if ztunnel issued a ticket; at 62d826530e5c both were full handshakes).
    let dst = addr(T_WORKLOAD, SERVER_PORT);
    assert!(echo(&env, Z_WORKLOAD, dst), "zring → ztunnel did not echo");
    env.wait_pool_empty();
    assert!(
        echo(&env, Z_WORKLOAD, dst),
        "zring → ztunnel on a new connection did not echo"
    );
    let z = env.handshakes("zring-node-z.log");
    assert_eq!(z.0 + z.1, 2, "two client handshakes on node z: {z:?}");
    // ztunnel → zring: ztunnel's client has resumption off and receives zring's tickets
    // after the handshake; several echoes on the connection must still flow.
    let ztunnel_socks = addr("127.0.0.1", 15080);
    let (s, code) = netns::run_in(Some(env.t.name()), || {
        common::socks_connect(ztunnel_socks, addr(Z_WORKLOAD, SERVER_PORT))
    })
    .unwrap();
    assert_eq!(code, 0, "ztunnel → zring refused ({code})");
    let mut s = s;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..5u8 {
        let msg = [i; 512];
        s.write_all(&msg).unwrap();
        let mut back = [0u8; 512];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg, "echo {i} through ztunnel → zring");
    }
    eprintln!("node z's handshakes (full, resumed): {z:?}");
}
