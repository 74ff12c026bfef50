//! The conformance lab: the real ztunnel pair and the zring pair, each in two "node"
//! namespaces joined by a veth, all four reading the same LocalConfig of a run. The
//! processes, certificates and readiness come from `interop_env`.
//!
//! | netns | node IP | workloads | proxy |
//! |---|---|---|---|
//! | `zpc-<pid>-<n>-{z,t}a` | 10.82.0.1 | `front/web` 10.82.1.2 (the client) | zring / ztunnel (`front/web/web`), SOCKS5 |
//! | `zpc-<pid>-<n>-{z,t}b` | 10.82.0.2 | `back/api`: 10.82.2.0/24 local, one IP per cell | zring / ztunnel (`back/api/api`), echo on 9000-9002 |
//!
//! Node A routes 10.82.2.0/24 via B with source 10.82.1.2, so both proxies' HBONE
//! connections come from the client's IP and both B proxies see it as the source.
#![allow(dead_code)]

pub mod random;
pub mod shapes;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plumbing::netns::{self, NetnsGuard};

use crate::common::Scratch;
use crate::interop_env::procs::{spawn_zring_as, spawn_ztunnel_as, Proc, Run};
use crate::interop_env::topo::{sh, zring_certs_for};
use crate::interop_env::wait_ready;

static SEQ: AtomicUsize = AtomicUsize::new(0);
const A_NODE: &str = "10.82.0.1/24";
const B_NODE: &str = "10.82.0.2/24";
/// How long a probe waits for its echo; a denial closes well before.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What one connection through a proxy pair got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
    /// No answer and no close within [`PROBE_TIMEOUT`].
    Hung,
}

/// Node A and node B of one proxy kind.
pub struct Pair {
    pub a: NetnsGuard,
    pub b: NetnsGuard,
}

/// Both pairs and the scratch directory (config, certificates, logs); processes of a
/// run stop at its end, the namespaces on drop.
pub struct Lab {
    pub zring: Pair,
    pub ztunnel: Pair,
    pub scratch: Scratch,
    certs: PathBuf,
}

fn pair(prefix: &str, kind: char) -> Pair {
    let a = NetnsGuard::new(&format!("{prefix}-{kind}a")).expect("create netns a");
    let b = NetnsGuard::new(&format!("{prefix}-{kind}b")).expect("create netns b");
    netns::veth_pair(Some(a.name()), "pca0", "pcb0", Some(b.name())).expect("veth");
    for (ns, dev, node) in [(a.name(), "pca0", A_NODE), (b.name(), "pcb0", B_NODE)] {
        sh(ns, &["ip", "link", "set", "lo", "up"]);
        sh(ns, &["ip", "link", "set", dev, "up"]);
        sh(ns, &["ip", "addr", "add", node, "dev", dev]);
    }
    let client = format!("{}/32", shapes::CLIENT_IP);
    sh(a.name(), &["ip", "addr", "add", &client, "dev", "pca0"]);
    let cells = format!("{}.0/24", shapes::CELL_NET);
    let (a_ns, b_ns) = (a.name(), b.name());
    sh(
        a_ns,
        &[
            "ip",
            "route",
            "add",
            &cells,
            "via",
            "10.82.0.2",
            "src",
            shapes::CLIENT_IP,
        ],
    );
    sh(b_ns, &["ip", "route", "add", "local", &cells, "dev", "lo"]);
    sh(
        b_ns,
        &["ip", "route", "add", "10.82.1.0/24", "via", "10.82.0.1"],
    );
    // ztunnel's inbound leg reaches the server from the client's (non-local) IP: the
    // server's replies must come back to its transparent socket (interop_env does the same).
    sh(
        b_ns,
        &[
            "ip",
            "rule",
            "add",
            "from",
            &cells,
            "ipproto",
            "tcp",
            "sport",
            "9000-9002",
            "lookup",
            "200",
        ],
    );
    sh(
        b_ns,
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
    for port in shapes::PORTS {
        let l = netns::run_in(Some(b_ns), || TcpListener::bind(("0.0.0.0", port)))
            .expect("enter netns")
            .expect("bind echo server");
        testsupport::echo::spawn(l);
    }
    Pair { a, b }
}

impl Lab {
    pub fn start() -> Lab {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("zpc-{}-{n}", std::process::id());
        let scratch = Scratch::new("zpc-conformance");
        let certs = zring_certs_for(scratch.path(), &[("front", "web"), ("back", "api")]);
        Lab {
            zring: pair(&prefix, 'z'),
            ztunnel: pair(&prefix, 't'),
            scratch,
            certs,
        }
    }

    /// Starts the four proxies on `yaml` (run `run`), waits until each is ready, probes
    /// every (cell, port) through both pairs and stops them: (zring's, ztunnel's)
    /// outcomes in cell-major order. Panics, with the proxy's log, when one refuses the
    /// config or never becomes ready.
    pub fn run(&self, run: usize, yaml: &str, cells: usize) -> (Vec<Outcome>, Vec<Outcome>) {
        let config = format!("run-{run}.yaml");
        std::fs::write(self.scratch.path().join(&config), yaml).unwrap();
        let dir = self.scratch.path();
        let logs: Vec<String> = ["za", "zb", "ta", "tb"]
            .iter()
            .map(|p| format!("run-{run}-{p}.log"))
            .collect();
        let (socks_a, socks_b) = (format!("{}:15080", shapes::CLIENT_IP), "127.0.0.1:15080");
        let runs = [
            ("node-a", socks_a.as_str(), &logs[0]),
            ("node-b", socks_b, &logs[1]),
            ("front/web/web", socks_b, &logs[2]),
            ("back/api/api", socks_b, &logs[3]),
        ]
        .map(|(node, socks, log)| Run {
            node,
            socks,
            config: &config,
            log,
            rust_log: "warn",
        });
        let procs: Vec<(Proc, &str, &Run)> = vec![
            (
                spawn_zring_as(self.zring.a.name(), dir, &self.certs, &runs[0]),
                self.zring.a.name(),
                &runs[0],
            ),
            (
                spawn_zring_as(self.zring.b.name(), dir, &self.certs, &runs[1]),
                self.zring.b.name(),
                &runs[1],
            ),
            (
                spawn_ztunnel_as(self.ztunnel.a.name(), dir, &runs[2]),
                self.ztunnel.a.name(),
                &runs[2],
            ),
            (
                spawn_ztunnel_as(self.ztunnel.b.name(), dir, &runs[3]),
                self.ztunnel.b.name(),
                &runs[3],
            ),
        ];
        for (_, ns, r) in &procs {
            wait_ready(ns, r.log, &dir.join(r.log));
        }
        let zring_socks: SocketAddr = socks_a.parse().unwrap();
        let ztunnel_socks: SocketAddr = socks_b.parse().unwrap();
        let z = probe_all(self.zring.a.name(), zring_socks, cells);
        let t = probe_all(self.ztunnel.a.name(), ztunnel_socks, cells);
        drop(procs);
        (z, t)
    }

    /// The log of one proxy of run `run` (`za`, `zb`, `ta`, `tb`).
    pub fn log(&self, run: usize, which: &str) -> String {
        let p = self.scratch.path().join(format!("run-{run}-{which}.log"));
        std::fs::read_to_string(p).unwrap_or_default()
    }
}

/// Every (cell, port) through the SOCKS5 port `socks` of node `ns`, 8 connections at a time.
fn probe_all(ns: &str, socks: SocketAddr, cells: usize) -> Vec<Outcome> {
    let targets: Vec<SocketAddr> = (0..cells)
        .flat_map(|i| shapes::PORTS.map(|p| format!("{}:{p}", shapes::cell_ip(i))))
        .map(|a| a.parse().unwrap())
        .collect();
    let chunks: Vec<Vec<(usize, SocketAddr)>> = (0..8)
        .map(|k| {
            targets
                .iter()
                .copied()
                .enumerate()
                .skip(k)
                .step_by(8)
                .collect()
        })
        .collect();
    let mut out = vec![Outcome::Hung; targets.len()];
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(i, t)| (i, probe(ns, socks, t)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, o) in h.join().unwrap() {
                out[i] = o;
            }
        }
    });
    out
}

/// One SOCKS5 CONNECT to `target` and one echo.
fn probe(ns: &str, socks: SocketAddr, target: SocketAddr) -> Outcome {
    let attempt = || -> std::io::Result<bool> {
        let mut s = netns::run_in(Some(ns), || {
            TcpStream::connect_timeout(&socks, PROBE_TIMEOUT)
        })
        .expect("enter netns")?;
        s.set_read_timeout(Some(PROBE_TIMEOUT))?;
        s.write_all(&[5, 1, 0])?;
        let mut greet = [0u8; 2];
        s.read_exact(&mut greet)?;
        let std::net::IpAddr::V4(ip) = target.ip() else {
            unreachable!("IPv4 cells")
        };
        let mut req = vec![5, 1, 0, 1];
        req.extend_from_slice(&ip.octets());
        req.extend_from_slice(&target.port().to_be_bytes());
        s.write_all(&req)?;
        let mut reply = [0u8; 10];
        s.read_exact(&mut reply)?;
        if reply[1] != 0 {
            return Ok(false);
        }
        s.write_all(b"conformance")?;
        let mut back = [0u8; 11];
        s.read_exact(&mut back)?;
        Ok(&back == b"conformance")
    };
    match attempt() {
        Ok(true) => Outcome::Allowed,
        Ok(false) => Outcome::Denied,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Outcome::Hung
        }
        Err(_) => Outcome::Denied,
    }
}
