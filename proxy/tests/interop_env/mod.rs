//! Two "nodes" in scratch network namespaces joined by a veth: node-z runs the `zring`
//! binary, node-t runs the real istio/ztunnel (`FAKE_CA=true`, dedicated mode). Both
//! trust ztunnel's public test root; zring's leaf is issued from it by `zring::tls::ca`.
//!
//! | netns | eth | node IP | workload (identity) | proxy ports |
//! |---|---|---|---|---|
//! | `zri-<pid>-<n>-z` | `zeth0` | 10.81.0.1 | 10.81.1.2 `zri/zsa` | zring: 15008, SOCKS5 10.81.1.2:15080, 15020, 15021 |
//! | `zri-<pid>-<n>-t` | `teth0` | 10.81.0.2 | 10.81.2.2 `zri/tsa` | ztunnel: 15008, SOCKS5 127.0.0.1:15080, 15020, 15021 |
//!
//! Each workload IP has an echo server on :9000 in its node's namespace.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plumbing::netns::{self, NetnsGuard};

use crate::common::Scratch;

pub mod procs;
pub mod topo;

use procs::{spawn_zring, spawn_zring_own_http2, spawn_ztunnel, Proc};
use topo::{namespaces, zring_certs};

pub const Z_WORKLOAD: &str = "10.81.1.2";
pub const T_WORKLOAD: &str = "10.81.2.2";
pub const SERVER_PORT: u16 = 9000;
/// The `zri/deny-denied-port` policy denies connections to this port on either node.
pub const DENIED_PORT: u16 = 9002;
pub const Z_ID: &str = "spiffe://cluster.local/ns/zri/sa/zsa";
pub const T_ID: &str = "spiffe://cluster.local/ns/zri/sa/tsa";
/// How long a proxy may take to become ready (ztunnel's fake CA signs at start).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `trustDomain` is spelled out: ztunnel defaults it to empty (`spiffe:///ns/..`).
/// The canonical/cluster/locality fields feed the workload metric labels.
/// `services: {}` because ztunnel refuses a workload without the key.
const WORKLOADS: &str = r#"workloads:
- uid: cluster1//v1/Pod/zri/zwl
  name: zwl
  workloadName: zwl-deploy
  canonicalName: zapp
  canonicalRevision: v1
  clusterId: cluster1
  locality: {region: r1, zone: z1, subzone: s1}
  namespace: zri
  serviceAccount: zsa
  workloadIps: ["10.81.1.2"]
  trustDomain: cluster.local
  protocol: HBONE
  node: node-z
  services: {}
- uid: cluster1//v1/Pod/zri/twl
  name: twl
  workloadName: twl-deploy
  canonicalName: tapp
  canonicalRevision: v2
  clusterId: cluster1
  locality: {region: r2, zone: z2, subzone: s2}
  namespace: zri
  serviceAccount: tsa
  workloadIps: ["10.81.2.2"]
  trustDomain: cluster.local
  protocol: HBONE
  node: node-t
  services: {}
policies:
- name: deny-denied-port
  namespace: zri
  scope: Namespace
  action: Deny
  dryRun: false
  rules:
  - - - destinationPorts: [9002]
"#;

/// The peer's files, beside the repository as in CI (`<repo>/../shared/peers`).
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers")
}

pub fn ztunnel_bin() -> PathBuf {
    peers_dir().join("ztunnel")
}

pub fn test_root() -> (PathBuf, PathBuf) {
    let d = peers_dir();
    (
        d.join("ztunnel-test-root-cert.pem"),
        d.join("ztunnel-test-root-key.pem"),
    )
}

/// False (after saying why) when the test cannot run here; panics under `CI=true`.
pub fn can_run(test: &str) -> bool {
    let (cert, key) = test_root();
    let bin = ztunnel_bin();
    let files = [bin.as_path(), cert.as_path(), key.as_path()];
    testsupport::require::can_run(test, &testsupport::require::missing(&["ip"], &files))
}

/// The running pair. Fields drop in order: processes first, then the namespaces, then
/// the scratch directory, also when a test panics.
pub struct Env {
    zring: Proc,
    ztunnel: Proc,
    pub z: NetnsGuard,
    pub t: NetnsGuard,
    pub scratch: Scratch,
}

/// Connects to `addr` from inside namespace `ns`.
pub fn connect_in(ns: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    netns::run_in(Some(ns), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .expect("enter netns")
}

/// `GET path` on `addr` inside `ns`: (status, body), or None when nothing answers.
pub fn get_in(ns: &str, addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = connect_in(ns, addr.parse().unwrap()).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        code,
        text.split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string(),
    ))
}

pub fn wait_ready(ns: &str, who: &str, log: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Some((200, _)) = get_in(ns, "127.0.0.1:15021", "/healthz/ready") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{who} was not ready on 15021 in {ns} within {READY_TIMEOUT:?}; its log:\n{log}");
}

fn echo_in(ns: &str, ip: &str) {
    let addr = format!("{ip}:{SERVER_PORT}");
    let l = netns::run_in(Some(ns), || TcpListener::bind(&addr))
        .expect("enter netns")
        .expect("bind echo server");
    testsupport::echo::spawn(l);
}

impl Env {
    pub fn start() -> Env {
        Env::start_with(false)
    }

    /// `own_http2`: zring runs HBONE's HTTP/2 of its own at both ends, whatever the test
    /// process's `ZRING_HBONE_OWN_HTTP2` says (else it inherits that).
    pub fn start_with(own_http2: bool) -> Env {
        let scratch = Scratch::new("zri-interop");
        let (z, t) = namespaces();
        std::fs::write(scratch.path().join("workloads.yaml"), WORKLOADS).unwrap();
        let certs = zring_certs(scratch.path());
        echo_in(z.name(), Z_WORKLOAD);
        echo_in(t.name(), T_WORKLOAD);
        let env = Env {
            zring: match own_http2 {
                true => spawn_zring_own_http2(z.name(), scratch.path(), &certs),
                false => spawn_zring(z.name(), scratch.path(), &certs),
            },
            ztunnel: spawn_ztunnel(t.name(), scratch.path()),
            z,
            t,
            scratch,
        };
        wait_ready(env.z.name(), "zring", &env.log("zring.log"));
        wait_ready(env.t.name(), "ztunnel", &env.log("ztunnel.log"));
        env
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    pub fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log(name)).unwrap_or_default()
    }

    /// The Prometheus text of the proxy in `ns` (both serve it on 15020).
    pub fn metrics(&self, ns: &str) -> String {
        match get_in(ns, "127.0.0.1:15020", "/metrics") {
            Some((200, body)) => body,
            other => panic!("no metrics on 15020 in {ns}: {other:?}"),
        }
    }

    /// Waits until some series of `metric` in `ns` carries every label in `labels` with
    /// a value ≥ 1; returns that line. Counters reach /metrics on the next tick.
    pub fn wait_series(&self, ns: &str, metric: &str, labels: &[String]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = self.metrics(ns);
            let hit = body.lines().find(|l| {
                l.starts_with(&format!("{metric}{{"))
                    && labels.iter().all(|want| l.contains(want.as_str()))
                    && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(1.0)
            });
            if let Some(line) = hit {
                return line.to_string();
            }
            if Instant::now() > deadline {
                panic!("no {metric} series with {labels:?} in {ns}:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until a line of log `name` contains every one of `needles`; returns it.
    pub fn wait_log_line(&self, name: &str, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.read_log(name);
            if let Some(l) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return l.to_string();
            }
            if Instant::now() > deadline {
                panic!("no line with {needles:?} in {name}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The last lines of each proxy's log when a test fails: what CI shows to explain it.
const LOG_TAIL: usize = 60;

impl Drop for Env {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in ["zring.log", "ztunnel.log"] {
            let log = self.read_log(name);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
            eprintln!("---- last {LOG_TAIL} lines of {name} ----\n{tail}");
        }
    }
}
