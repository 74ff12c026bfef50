//! Waypoints, differential: istio/ztunnel and zring get the same LocalConfig and the same
//! matrix of connections; each must send each connection to the same place, with the
//! same CONNECT authority and client identity, or refuse it (nothing reaches any hop).
//!
//! | netns | holds |
//! |---|---|
//! | `zwp-<pid>-<n>-p` (node P, 10.82.0.1) | the proxy under test (ztunnel, then zring), SOCKS5 on 127.0.0.1:15080; the client 10.82.1.1 and the waypoint's second IP 10.82.1.3 (its source when it calls out) |
//! | `zwp-<pid>-<n>-r` (node R, 10.82.0.2) | the test waypoint on 10.82.2.3:15008 (records, then forwards over HBONE to the server pod's hop with its own leaf); recording HBONE terminators standing for the pods `server` 10.82.2.2, `plain` 10.82.2.4 and `ghost` 10.82.2.5 (they echo) |
//!
//! A second test puts the proxy on the waypoint pod's own node (its IP 10.82.1.3 on P,
//! an echo server there on :80 and :8080) and sends CONNECTs naming the destinations it is
//! the waypoint of, its own address, and others: both proxies must admit and deliver, or
//! refuse, the same ones (ztunnel's inbound `validate_destination`).
//!
//! ztunnel runs in dedicated mode: one run per source workload. zring serves both sources
//! from one process (its SOCKS5 source IP names the workload). Root only; fails under
//! `CI=true` when it cannot run.

mod common;
mod waypoint_env;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plumbing::netns::{self, NetnsGuard};
use testsupport::waypoint::{self, Next, Record, Records};

use common::Scratch;
use waypoint_env::{logged, peers_dir, ready_within, sh, Proc};

const NS: &str = "zwp";
const CLIENT_IP: &str = "10.82.1.1";
const WAYPOINT_OUT_IP: &str = "10.82.1.3";
const WAYPOINT_IP: &str = "10.82.2.3";
const SERVER_IP: &str = "10.82.2.2";
const PLAIN_IP: &str = "10.82.2.4";
const GHOST_IP: &str = "10.82.2.5";
const SOCKS: &str = "127.0.0.1:15080";

/// Pods, services and waypoints. The server pod's own waypoint is the waypoint service's
/// VIP; service `server` names it by hostname, `server-by-ip` by the waypoint pod's IP;
/// `ghost` and the ghost pod name a waypoint that does not exist.
const CONFIG: &str = r#"workloads:
- {uid: k//Pod/zwp/client, name: client, namespace: zwp, serviceAccount: client, trustDomain: cluster.local, workloadIps: ["10.82.1.1"], protocol: HBONE, node: node-p, services: {}}
- uid: k//Pod/zwp/waypoint
  name: waypoint
  namespace: zwp
  serviceAccount: waypoint
  trustDomain: cluster.local
  workloadIps: ["10.82.2.3", "10.82.1.3"]
  protocol: HBONE
  node: node-p
  services: {"zwp/waypoint.zwp.svc.cluster.local": {}}
- uid: k//Pod/zwp/server
  name: server
  namespace: zwp
  serviceAccount: server
  trustDomain: cluster.local
  workloadIps: ["10.82.2.2"]
  protocol: HBONE
  node: node-r
  waypoint: {destination: "/10.96.1.3", hboneMtlsPort: 15008}
  services: {"zwp/server.zwp.svc.cluster.local": {}, "zwp/server-by-ip.zwp.svc.cluster.local": {}}
- {uid: k//Pod/zwp/plain, name: plain, namespace: zwp, serviceAccount: plain, trustDomain: cluster.local, workloadIps: ["10.82.2.4"], protocol: HBONE, node: node-r, services: {"zwp/plain.zwp.svc.cluster.local": {}}}
- uid: k//Pod/zwp/ghost
  name: ghost
  namespace: zwp
  serviceAccount: ghost
  trustDomain: cluster.local
  workloadIps: ["10.82.2.5"]
  protocol: HBONE
  node: node-r
  waypoint: {destination: "/10.82.2.99", hboneMtlsPort: 15008}
  services: {"zwp/ghost.zwp.svc.cluster.local": {}}
services:
- {name: waypoint, namespace: zwp, hostname: waypoint.zwp.svc.cluster.local, vips: ["/10.96.1.3"], ports: {15008: 15008}}
- name: server
  namespace: zwp
  hostname: server.zwp.svc.cluster.local
  vips: ["/10.96.1.1"]
  ports: {80: 8080}
  waypoint: {destination: "zwp/waypoint.zwp.svc.cluster.local", hboneMtlsPort: 15008}
- name: server-by-ip
  namespace: zwp
  hostname: server-by-ip.zwp.svc.cluster.local
  vips: ["/10.96.1.5"]
  ports: {80: 8080}
  waypoint: {destination: "/10.82.2.3", hboneMtlsPort: 15008}
- {name: plain, namespace: zwp, hostname: plain.zwp.svc.cluster.local, vips: ["/10.96.1.4"], ports: {80: 8080}}
- name: ghost
  namespace: zwp
  hostname: ghost.zwp.svc.cluster.local
  vips: ["/10.96.1.9"]
  ports: {80: 8080}
  waypoint: {destination: "/10.82.2.99", hboneMtlsPort: 15008}
"#;

/// (case, source workload, its IP, destination).
const MATRIX: [(&str, &str, &str, &str); 9] = [
    (
        "service without waypoint",
        "client",
        CLIENT_IP,
        "10.96.1.4:80",
    ),
    (
        "service, waypoint by hostname",
        "client",
        CLIENT_IP,
        "10.96.1.1:80",
    ),
    (
        "service, waypoint by pod IP",
        "client",
        CLIENT_IP,
        "10.96.1.5:80",
    ),
    (
        "workload without waypoint",
        "client",
        CLIENT_IP,
        "10.82.2.4:8080",
    ),
    (
        "workload, waypoint by service VIP",
        "client",
        CLIENT_IP,
        "10.82.2.2:8080",
    ),
    (
        "service, missing waypoint",
        "client",
        CLIENT_IP,
        "10.96.1.9:80",
    ),
    (
        "workload, missing waypoint",
        "client",
        CLIENT_IP,
        "10.82.2.5:8080",
    ),
    (
        "from the waypoint to its workload",
        "waypoint",
        WAYPOINT_OUT_IP,
        "10.82.2.2:8080",
    ),
    (
        "from the waypoint to its service",
        "waypoint",
        WAYPOINT_OUT_IP,
        "10.96.1.1:80",
    ),
];

/// What became of one connection: echoed through, and every CONNECT each hop saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    delivered: bool,
    hops: Vec<Record>,
}

fn spiffe(sa: &str) -> String {
    format!("spiffe://cluster.local/ns/{NS}/sa/{sa}")
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Nodes P and R joined by a veth, each pod address on its node.
fn nodes() -> (NetnsGuard, NetnsGuard) {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let prefix = format!("zwp-{}-{n}", std::process::id());
    let p = NetnsGuard::new(&format!("{prefix}-p")).expect("create netns p");
    let r = NetnsGuard::new(&format!("{prefix}-r")).expect("create netns r");
    netns::veth_pair(Some(p.name()), "peth0", "reth0", Some(r.name())).expect("veth");
    let sides = [
        (
            &p,
            "peth0",
            "10.82.0.1/24",
            "10.82.0.2",
            "10.82.2.0/24",
            &[CLIENT_IP, WAYPOINT_OUT_IP][..],
        ),
        (
            &r,
            "reth0",
            "10.82.0.2/24",
            "10.82.0.1",
            "10.82.1.0/24",
            &[WAYPOINT_IP, SERVER_IP, PLAIN_IP, GHOST_IP][..],
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
    (p, r)
}

/// The hops on node R, on a runtime of their own inside R until `Hops` drops.
struct Hops {
    records: Records,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hops {
    fn start(r: &str, root: &testsupport::certs::Root) -> Hops {
        let records = Records::default();
        let leaf = |sa: &str| root.valid_leaf(&spiffe(sa)).expect("leaf");
        let wp_leaf = leaf("waypoint");
        let client = testsupport::hbone::client_config(&root.cert_pem, Some(&wp_leaf)).unwrap();
        // The waypoint's own routing: the server's service (either VIP) and pod go to the
        // server pod's HBONE port, CONNECT to its target port.
        let route: waypoint::Route = Arc::new(|authority: &str| {
            let to_server = ["10.96.1.1:80", "10.96.1.5:80", "10.82.2.2:8080"];
            to_server.contains(&authority).then(|| {
                (
                    format!("{SERVER_IP}:15008").parse().unwrap(),
                    format!("{SERVER_IP}:8080"),
                )
            })
        });
        let mut hops = vec![(
            "waypoint",
            WAYPOINT_IP,
            wp_leaf,
            Next::Forward { client, route },
        )];
        for (sa, ip) in [
            ("server", SERVER_IP),
            ("plain", PLAIN_IP),
            ("ghost", GHOST_IP),
        ] {
            hops.push((sa, ip, leaf(sa), Next::Echo));
        }
        let hops: Vec<_> = hops
            .into_iter()
            .map(|(at, ip, leaf, next)| {
                let tls = waypoint::server_config(&root.cert_pem, &leaf).unwrap();
                (at.to_string(), format!("{ip}:15008"), tls, next)
            })
            .collect();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (r, recs) = (r.to_string(), records.clone());
        let thread = std::thread::spawn(move || {
            netns::run_in(Some(&r), move || {
                let rt = testsupport::hbone::runtime();
                rt.block_on(async move {
                    for (at, addr, tls, next) in hops {
                        let l = tokio::net::TcpListener::bind(&addr)
                            .await
                            .expect("bind hop");
                        tokio::spawn(waypoint::serve(l, at, tls, next, recs.clone()));
                    }
                    ready_tx.send(()).unwrap();
                    let _ = stopped.await;
                });
            })
            .expect("enter netns r");
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("hops listening");
        Hops {
            records,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

impl Drop for Hops {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process killed and reaped on drop.
fn ztunnel(p: &str, dir: &Path, source: &str) -> Proc {
    waypoint_env::ztunnel(p, dir, NS, source, "info")
}

fn zring(p: &str, dir: &Path, certs: &Path) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", p, env!("CARGO_BIN_EXE_zring"), "run"])
        .arg("--config")
        .arg(dir.join("workloads.yaml"))
        .arg("--cert-dir")
        .arg(certs)
        .args([
            "--node-name",
            "node-p",
            "--cores",
            "1",
            "--transparent",
            "false",
        ])
        .args(["--outbound-addr", "off", "--inbound-addr", "0.0.0.0:15008"])
        .args(["--inbound-plaintext-addr", "off", "--socks5-addr", SOCKS])
        .args([
            "--admin-addr",
            "127.0.0.1:15000",
            "--stats-addr",
            "0.0.0.0:15020",
        ])
        .args(["--readiness-addr", "0.0.0.0:15021"])
        .env("RUST_LOG", "info");
    logged(dir, "zring.log", &mut cmd)
}

fn wait_ready(p: &str, dir: &Path, log: &str) {
    if !ready_within(p, Duration::from_secs(30)) {
        let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
        panic!("{log}: not ready on 15021 within 30 s:\n{text}");
    }
}

/// SOCKS5 CONNECT from `src` (a pod IP on node P) to `dst`, then an echo through it.
fn try_connection(p: &str, src: &str, dst: &str) -> bool {
    let src: SocketAddr = format!("{src}:0").parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    let stream = netns::run_in(Some(p), || -> std::io::Result<TcpStream> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.bind(&src.into())?;
        s.connect_timeout(
            &SOCKS.parse::<SocketAddr>().unwrap().into(),
            Duration::from_secs(5),
        )?;
        Ok(s.into())
    });
    let mut s = stream.expect("enter netns p").expect("connect to SOCKS5");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let SocketAddr::V4(v4) = dst else {
        unreachable!()
    };
    let mut req = vec![5, 1, 0, 5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    let echoed = (|| -> std::io::Result<bool> {
        s.write_all(&req)?;
        let mut reply = [0u8; 12];
        s.read_exact(&mut reply)?;
        if reply[3] != 0 {
            return Ok(false);
        }
        s.write_all(b"through the mesh")?;
        let mut back = [0u8; 16];
        s.read_exact(&mut back)?;
        Ok(&back == b"through the mesh")
    })();
    echoed.unwrap_or(false)
}

/// Runs the cases of `source` through the proxy now running; records settle first.
fn run_cases(p: &str, hops: &Hops, source: &str) -> Vec<(&'static str, Outcome)> {
    let mut out = Vec::new();
    for (case, src_wl, src_ip, dst) in MATRIX.iter().filter(|c| c.1 == source) {
        let _ = src_wl;
        let delivered = try_connection(p, src_ip, dst);
        std::thread::sleep(Duration::from_millis(100));
        let mut hops_seen = hops.take();
        hops_seen.sort();
        out.push((
            *case,
            Outcome {
                delivered,
                hops: hops_seen,
            },
        ));
    }
    out
}

fn can_run() -> bool {
    let d = peers_dir();
    let files = [
        d.join("ztunnel"),
        d.join("ztunnel-test-root-cert.pem"),
        d.join("ztunnel-test-root-key.pem"),
    ];
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    testsupport::require::can_run(
        "waypoint_peer",
        &testsupport::require::missing(&["ip"], &files),
    )
}

fn rec(at: &str, authority: &str, peer: &str) -> Record {
    Record {
        at: at.into(),
        authority: authority.into(),
        peer: Some(spiffe(peer)),
    }
}

/// What ztunnel's semantics give (checked against both proxies, so a peer upgrade that
/// changes them shows here rather than as a silent agreement on something else).
fn expected(case: &str) -> Outcome {
    let via_wp = |authority: &str, from: &str| Outcome {
        delivered: true,
        hops: vec![
            rec("server", "10.82.2.2:8080", "waypoint"),
            rec("waypoint", authority, from),
        ],
    };
    let direct = |at: &str, authority: &str, from: &str| Outcome {
        delivered: true,
        hops: vec![rec(at, authority, from)],
    };
    match case {
        "service without waypoint" | "workload without waypoint" => {
            direct("plain", "10.82.2.4:8080", "client")
        }
        "service, waypoint by hostname" => via_wp("10.96.1.1:80", "client"),
        "service, waypoint by pod IP" => via_wp("10.96.1.5:80", "client"),
        "workload, waypoint by service VIP" => via_wp("10.82.2.2:8080", "client"),
        "from the waypoint to its workload" => direct("server", "10.82.2.2:8080", "waypoint"),
        "from the waypoint to its service" => via_wp("10.96.1.1:80", "waypoint"),
        _ => Outcome {
            delivered: false,
            hops: vec![],
        },
    }
}

/// The config, and zring's cert dir (ztunnel's test root, leaves for the client and the
/// waypoint) in a fresh scratch dir; the root, for the hops' leaves.
fn inputs(tag: &str) -> (Scratch, PathBuf, testsupport::certs::Root) {
    let scratch = Scratch::new(tag);
    let dir = scratch.path();
    std::fs::write(dir.join("workloads.yaml"), CONFIG).unwrap();
    let d = peers_dir();
    let (root_cert, root_key) = (
        d.join("ztunnel-test-root-cert.pem"),
        d.join("ztunnel-test-root-key.pem"),
    );
    let root = testsupport::certs::Root::load(&root_cert, &root_key).unwrap();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&root_cert, certs.join(zring::tls::ROOT_CERT_FILE)).unwrap();
    std::fs::copy(&root_key, certs.join(zring::tls::ROOT_KEY_FILE)).unwrap();
    for sa in ["client", "waypoint"] {
        let id = zring::identity::Identity::new("cluster.local", NS, sa);
        zring::tls::ca::issue(&certs, &id).expect("zring leaf from ztunnel's test root");
    }
    (scratch, certs, root)
}

#[test]
fn ztunnel_and_zring_hand_the_same_connections_to_the_same_waypoint() {
    if !can_run() {
        return;
    }
    let (scratch, certs, root) = inputs("waypoint-peer");
    let dir = scratch.path();
    let (p, r) = nodes();
    let hops = Hops::start(r.name(), &root);

    let mut peer = Vec::new();
    for source in ["client", "waypoint"] {
        let proc = ztunnel(p.name(), dir, source);
        wait_ready(p.name(), dir, &format!("ztunnel-{source}.log"));
        peer.extend(run_cases(p.name(), &hops, source));
        drop(proc);
    }
    let proc = zring(p.name(), dir, &certs);
    wait_ready(p.name(), dir, "zring.log");
    let mut ours = run_cases(p.name(), &hops, "client");
    ours.extend(run_cases(p.name(), &hops, "waypoint"));
    drop(proc);

    let mut report = String::new();
    let mut agree = true;
    for ((case, z), (_, o)) in peer.iter().zip(&ours) {
        let want = expected(case);
        let ok = z == o && *o == want;
        agree &= ok;
        report += &format!(
            "{} {case}\n  ztunnel: {z:?}\n  zring:   {o:?}\n",
            if ok { "ok  " } else { "DIFF" }
        );
    }
    assert_eq!(peer.len(), MATRIX.len());
    eprintln!("{report}");
    assert!(
        agree,
        "the proxies (or ztunnel's semantics) differ:\n{report}"
    );
}

/// CONNECTs that reach the waypoint pod's node proxy at the pod's second IP (node P),
/// as a node proxy hands traffic to a waypoint: (authority, what ztunnel's inbound
/// `validate_destination` decides).
const SANDWICH: [(&str, &str); 6] = [
    ("10.96.1.1:80", "service naming this waypoint by hostname"),
    ("10.96.1.5:80", "service naming this waypoint by pod IP"),
    ("10.82.2.2:8080", "pod naming this waypoint's service VIP"),
    ("10.82.1.3:8080", "the pod's own address"),
    ("10.96.1.4:80", "service without a waypoint"),
    ("10.82.2.4:8080", "pod without a waypoint"),
];

/// Each CONNECT of [`SANDWICH`] from node P to `10.82.1.3:15008` as the client: the
/// status, and whether an echo came back through the tunnel.
fn sandwich_answers(p: &str, root: &testsupport::certs::Root) -> Vec<(u16, bool)> {
    let leaf = root.valid_leaf(&spiffe("client")).unwrap();
    let config = testsupport::hbone::client_config(&root.cert_pem, Some(&leaf)).unwrap();
    let hbone: SocketAddr = format!("{WAYPOINT_OUT_IP}:15008").parse().unwrap();
    let run = move || {
        testsupport::hbone::runtime().block_on(async move {
            let mut out = Vec::new();
            for (authority, _) in SANDWICH {
                let tls = testsupport::hbone::handshake(hbone, config.clone()).await;
                let mut conn = testsupport::hbone::h2(tls.expect("TLS")).await.expect("h2");
                let answer = match testsupport::hbone::connect(&mut conn, authority).await {
                    testsupport::hbone::Answer::Status(200, Some(mut t)) => (
                        200,
                        t.echo(b"sandwich").await.is_ok_and(|b| b == b"sandwich"),
                    ),
                    testsupport::hbone::Answer::Status(code, _) => (code, false),
                    other => panic!("{authority}: {other:?}"),
                };
                out.push(answer);
            }
            out
        })
    };
    netns::run_in(Some(p), run).expect("enter netns p")
}

/// The node side of a "sandwiched" waypoint: ztunnel and zring, as the node proxy of the
/// waypoint pod, admit (and deliver to the pod, on the port asked for) exactly the
/// CONNECTs naming a destination this pod is the waypoint of, or the pod itself.
#[test]
fn ztunnel_and_zring_admit_the_same_connections_for_a_waypoint_pod() {
    if !can_run() {
        return;
    }
    let (scratch, certs, root) = inputs("waypoint-sandwich");
    let dir = scratch.path();
    let (p, _r) = nodes();
    for port in [80, 8080] {
        let addr = format!("{WAYPOINT_OUT_IP}:{port}");
        let l = netns::run_in(Some(p.name()), || std::net::TcpListener::bind(&addr));
        testsupport::echo::spawn(l.expect("enter netns p").expect("bind the pod's server"));
    }
    let proc = ztunnel(p.name(), dir, "waypoint");
    wait_ready(p.name(), dir, "ztunnel-waypoint.log");
    let peer = sandwich_answers(p.name(), &root);
    drop(proc);
    let proc = zring(p.name(), dir, &certs);
    wait_ready(p.name(), dir, "zring.log");
    let ours = sandwich_answers(p.name(), &root);
    drop(proc);
    let mut report = String::new();
    for (((authority, case), z), o) in SANDWICH.iter().zip(&peer).zip(&ours) {
        let mark = if z == o { "ok  " } else { "DIFF" };
        report += &format!("{mark} {authority} ({case}): ztunnel {z:?}, zring {o:?}\n");
    }
    eprintln!("{report}");
    assert_eq!(peer, ours, "the proxies differ:\n{report}");
    let delivered = peer.iter().filter(|(code, echoed)| *code == 200 && *echoed);
    assert_eq!(delivered.count(), 4, "{report}");
}
