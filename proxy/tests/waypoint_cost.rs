//! What the waypoint hop costs, side by side (issue 25 item 4): 1 KiB echoes, closed loop
//! on one connection, client → proxy A → (the test waypoint →) proxy B → server, with
//! zring on both nodes against ztunnel on both nodes, the same test waypoint
//! (`testsupport::waypoint`) and the same client. Reports p50/p99 per echo and the two
//! proxies' CPU per echo, direct (a service without a waypoint) and through the waypoint.
//!
//! Not a pass/fail test: `cargo test --release -p zring-proxy --test waypoint_cost --
//! --ignored --nocapture` (root and the peer binary). `WAYPOINT_COST_ECHOES` (default
//! 5000) and `WAYPOINT_COST_ROUNDS` (3; the kinds alternate within each round).
//!
//! | netns | holds |
//! |---|---|
//! | `zwc-<pid>-p` (10.83.0.1) | the client 10.83.1.1, proxy A (SOCKS5 127.0.0.1:15080) |
//! | `zwc-<pid>-r` (10.83.0.2) | proxy B (15008), the server 10.83.2.2:9000, the test waypoint 10.83.2.3:15018 |

mod common;
mod waypoint_env;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plumbing::netns::{self, NetnsGuard};
use testsupport::waypoint::{self, Next, Records};

use common::Scratch;
use waypoint_env::{logged, peers_dir, ready_within, sh, Proc};

const CONFIG: &str = r#"workloads:
- {uid: k//Pod/zwc/client, name: client, namespace: zwc, serviceAccount: client, trustDomain: cluster.local, workloadIps: ["10.83.1.1"], protocol: HBONE, node: node-p, services: {}}
- {uid: k//Pod/zwc/waypoint, name: waypoint, namespace: zwc, serviceAccount: waypoint, trustDomain: cluster.local, workloadIps: ["10.83.2.3"], protocol: HBONE, node: node-w, services: {}}
- {uid: k//Pod/zwc/server, name: server, namespace: zwc, serviceAccount: server, trustDomain: cluster.local, workloadIps: ["10.83.2.2"], protocol: HBONE, node: node-r, services: {"zwc/server.zwc.svc.cluster.local": {}, "zwc/direct.zwc.svc.cluster.local": {}}}
services:
- name: server
  namespace: zwc
  hostname: server.zwc.svc.cluster.local
  vips: ["/10.96.2.1"]
  ports: {80: 9000}
  waypoint: {destination: "/10.83.2.3", hboneMtlsPort: 15018}
- {name: direct, namespace: zwc, hostname: direct.zwc.svc.cluster.local, vips: ["/10.96.2.4"], ports: {80: 9000}}
"#;

const PATHS: [(&str, &str); 2] = [("direct", "10.96.2.4:80"), ("waypoint", "10.96.2.1:80")];

fn nodes() -> (NetnsGuard, NetnsGuard) {
    let prefix = format!("zwc-{}", std::process::id());
    let p = NetnsGuard::new(&format!("{prefix}-p")).expect("create netns p");
    let r = NetnsGuard::new(&format!("{prefix}-r")).expect("create netns r");
    netns::veth_pair(Some(p.name()), "peth0", "reth0", Some(r.name())).expect("veth");
    let sides = [
        (
            &p,
            "peth0",
            "10.83.0.1/24",
            "10.83.0.2",
            "10.83.2.0/24",
            &["10.83.1.1"][..],
        ),
        (
            &r,
            "reth0",
            "10.83.0.2/24",
            "10.83.0.1",
            "10.83.1.0/24",
            &["10.83.2.2", "10.83.2.3"][..],
        ),
    ];
    for (ns, dev, node, gw, other, pods) in sides {
        let ns = ns.name();
        sh(ns, &["ip", "link", "set", "lo", "up"]);
        sh(ns, &["ip", "link", "set", dev, "up"]);
        sh(ns, &["ip", "addr", "add", node, "dev", dev]);
        for pod in pods {
            sh(ns, &["ip", "addr", "add", &format!("{pod}/32"), "dev", dev]);
        }
        sh(ns, &["ip", "route", "add", other, "via", gw]);
    }
    // ztunnel B reaches the server from the HBONE peer's IP; the replies come back to it.
    let rule = "from 10.83.2.2 ipproto tcp sport 9000 lookup 200";
    sh(
        r.name(),
        &["ip", "rule", "add"]
            .into_iter()
            .chain(rule.split(' '))
            .collect::<Vec<_>>(),
    );
    sh(
        r.name(),
        &[
            "ip",
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "200",
        ],
    );
    (p, r)
}

fn ztunnel(ns: &str, dir: &Path, workload: &str) -> Proc {
    waypoint_env::ztunnel(ns, dir, "zwc", workload, "warn")
}

fn zring(ns: &str, dir: &Path, certs: &Path, node: &str) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_zring"), "run"])
        .arg("--config")
        .arg(dir.join("workloads.yaml"))
        .arg("--cert-dir")
        .arg(certs)
        .args([
            "--node-name",
            node,
            "--cores",
            "1",
            "--transparent",
            "false",
        ])
        // Node P's proxy only sends: its inbound stays off.
        .args(["--outbound-addr", "off", "--inbound-addr", inbound(node)])
        .args([
            "--inbound-plaintext-addr",
            "off",
            "--socks5-addr",
            "127.0.0.1:15080",
        ])
        .args([
            "--admin-addr",
            "127.0.0.1:15000",
            "--stats-addr",
            "0.0.0.0:15020",
        ])
        .args(["--readiness-addr", "0.0.0.0:15021"])
        .env("RUST_LOG", "warn");
    logged(dir, &format!("zring-{node}.log"), &mut cmd)
}

/// Waits until the proxy ports of `ns` can be bound again: sockets a killed proxy left
/// (orphans finishing their close) keep them for a moment.
fn wait_ports_free(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let free = || {
        let binds = netns::run_in(Some(ns), || {
            [
                "0.0.0.0:15008",
                "127.0.0.1:15080",
                "0.0.0.0:15021",
                "0.0.0.0:15020",
            ]
            .iter()
            .all(|a| std::net::TcpListener::bind(a).is_ok())
        });
        binds.unwrap_or(false)
    };
    while !free() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn inbound(node: &str) -> &'static str {
    if node == "node-r" {
        "0.0.0.0:15008"
    } else {
        "off"
    }
}

fn wait_ready(ns: &str, dir: &Path) {
    if ready_within(ns, Duration::from_secs(30)) {
        return;
    }
    let mut logs = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            logs += &format!("---- {}\n{text}\n", e.path().display());
        }
    }
    panic!("no proxy ready on 15021 in {ns}:\n{logs}");
}

/// One SOCKS5 connection from the client to `dst`, then `n` 1 KiB echoes: their times.
fn echoes(p: &str, dst: &str, n: usize) -> Vec<Duration> {
    let dst: SocketAddr = dst.parse().unwrap();
    let stream = netns::run_in(Some(p), || -> std::io::Result<TcpStream> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.bind(&"10.83.1.1:0".parse::<SocketAddr>().unwrap().into())?;
        s.connect(&"127.0.0.1:15080".parse::<SocketAddr>().unwrap().into())?;
        Ok(s.into())
    });
    let mut s = stream.expect("enter netns p").expect("connect to SOCKS5");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let SocketAddr::V4(v4) = dst else {
        unreachable!()
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[3], 0, "SOCKS5 to {dst} refused");
    let (msg, mut back) = ([7u8; 1024], [0u8; 1024]);
    (0..n)
        .map(|_| {
            let t = Instant::now();
            s.write_all(&msg).unwrap();
            s.read_exact(&mut back).unwrap();
            t.elapsed()
        })
        .collect()
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6
}

/// The test waypoint on 10.83.2.3:15018 in `r`, forwarding the service to proxy B.
fn start_waypoint(r: &str, root: &testsupport::certs::Root) {
    let leaf = root
        .valid_leaf("spiffe://cluster.local/ns/zwc/sa/waypoint")
        .unwrap();
    let tls = waypoint::server_config(&root.cert_pem, &leaf).unwrap();
    let client = testsupport::hbone::client_config(&root.cert_pem, Some(&leaf)).unwrap();
    let route: waypoint::Route = Arc::new(|authority: &str| {
        (authority == "10.96.2.1:80").then(|| {
            (
                "10.83.2.2:15008".parse().unwrap(),
                "10.83.2.2:9000".to_string(),
            )
        })
    });
    let l = netns::run_in(Some(r), || std::net::TcpListener::bind("10.83.2.3:15018"));
    let l = l.expect("enter netns r").expect("bind the waypoint");
    l.set_nonblocking(true).unwrap();
    let r = r.to_string();
    std::thread::spawn(move || {
        netns::run_in(Some(&r), move || {
            testsupport::hbone::runtime().block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                let next = Next::Forward { client, route };
                waypoint::serve(l, "waypoint".into(), tls, next, Records::default()).await;
            })
        })
    });
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture (root, the peer binary)"]
fn the_waypoint_hop_costs_side_by_side() {
    let d = peers_dir();
    let (root_cert, root_key) = (
        d.join("ztunnel-test-root-cert.pem"),
        d.join("ztunnel-test-root-key.pem"),
    );
    let files = [d.join("ztunnel"), root_cert.clone(), root_key.clone()];
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let missing = testsupport::require::missing(&["ip"], &files);
    if !testsupport::require::can_run("waypoint_cost", &missing) {
        return;
    }
    let env_n = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, rounds) = (
        env_n("WAYPOINT_COST_ECHOES", 5000),
        env_n("WAYPOINT_COST_ROUNDS", 3),
    );
    let scratch = Scratch::new("waypoint-cost");
    let dir = scratch.path();
    std::fs::write(dir.join("workloads.yaml"), CONFIG).unwrap();
    let root = testsupport::certs::Root::load(&root_cert, &root_key).unwrap();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&root_cert, certs.join(zring::tls::ROOT_CERT_FILE)).unwrap();
    std::fs::copy(&root_key, certs.join(zring::tls::ROOT_KEY_FILE)).unwrap();
    for sa in ["client", "server"] {
        let id = zring::identity::Identity::new("cluster.local", "zwc", sa);
        zring::tls::ca::issue(&certs, &id).unwrap();
    }
    let (p, r) = nodes();
    let echo = netns::run_in(Some(r.name()), || {
        std::net::TcpListener::bind("10.83.2.2:9000")
    });
    testsupport::echo::spawn(echo.unwrap().unwrap());
    start_waypoint(r.name(), &root);
    println!("| round | proxies | path | p50 µs | p99 µs | proxy CPU µs/echo (A+B) |");
    println!("|---|---|---|---|---|---|");
    for round in 0..rounds {
        for kind in ["ztunnel", "zring"] {
            let (a, b) = match kind {
                "ztunnel" => (
                    ztunnel(p.name(), dir, "client"),
                    ztunnel(r.name(), dir, "server"),
                ),
                _ => (
                    zring(p.name(), dir, &certs, "node-p"),
                    zring(r.name(), dir, &certs, "node-r"),
                ),
            };
            wait_ready(p.name(), dir);
            wait_ready(r.name(), dir);
            for (path, dst) in PATHS.iter().copied() {
                echoes(p.name(), dst, 200);
                let cpu0 = a.cpu() + b.cpu();
                let mut t = echoes(p.name(), dst, n);
                let cpu = (a.cpu() + b.cpu() - cpu0) / n as f64 * 1e6;
                t.sort();
                println!(
                    "| {round} | {kind} | {path} | {:.0} | {:.0} | {cpu:.1} |",
                    pct(&t, 0.5),
                    pct(&t, 0.99)
                );
            }
            drop((a, b));
            wait_ports_free(p.name());
            wait_ports_free(r.name());
        }
    }
}
