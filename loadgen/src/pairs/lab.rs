//! The cross-node lab of one proxy: node namespaces A and B joined by a veth, M source
//! workload IPs on A, K destination workload IPs on B (each with the loadgen's echo
//! server), and a proxy in each node started fresh for every repeat.
//!
//! | netns | link | node IP | workloads | proxy |
//! |---|---|---|---|---|
//! | `<prefix><proxy>-a` | `pa0` | 10.9.0.1 | sources 10.9.1.1..M (`pairs-src-<i>`) | SOCKS5 on 10.9.0.1:15080 (zring) or 127.0.0.1:15080 (ztunnel) |
//! | `<prefix><proxy>-b` | `pb0` | 10.9.0.2 | destinations 10.9.2.1..K (`pairs-dst`), echo on :8080 | 15008, SYNs counted |
//!
//! Why every pair opens its own HBONE connection on both proxies: ztunnel keys its pool
//! by source identity, destination identities, destination and source IP, and in
//! dedicated mode every SOCKS5 client is the one `PROXY_WORKLOAD_INFO` workload, so the
//! distinct source IPs do it. zring keys by source identity, destination identity and
//! destination, plus the source IP only when it spoofs it (captured traffic in
//! transparent mode, never SOCKS5), so each source workload has its own service
//! account. The SYNs reaching node B's 15008 are counted (an iptables rule) to check it.

use crate::error::{Error, Result};
use crate::mesh::{NAMESPACE, TRUST_DOMAIN};
use crate::peer::setup;
use crate::procs::{self, Proc};
use crate::server::{self, ServeConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use zring::config::{LocalConfig, Protocol, Workload};

pub const NODE_A: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
pub const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
/// The echo server's port on every destination IP.
pub const ECHO_PORT: u16 = 8080;
const SINK_PORT: u16 = 8081;
/// Largest M and K: one /24 each.
pub const MAX_WORKLOADS: usize = 250;
const DST_SA: &str = "pairs-dst";
/// Pooled connections are let go after this long idle (both proxies), so a second pass
/// over the same pairs needs new connections, and zring can resume their sessions.
pub const POOL_IDLE: &str = "3s";

/// The service account of source workload i.
fn src_sa(i: usize) -> String {
    format!("pairs-src-{i}")
}

/// The i-th source workload's IP (node A).
pub fn source_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 9, 1, 1 + i as u8))
}

/// The j-th destination workload's IP (node B).
pub fn dest_ip(j: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 9, 2, 1 + j as u8))
}

/// Which proxy a lab runs: ztunnel, or a zring binary under a column name.
#[derive(Debug, Clone)]
pub enum Kind {
    Ztunnel(PathBuf),
    Zring(PathBuf),
}

/// One target's two nodes (the proxies come and go per repeat).
#[derive(Debug, Clone)]
pub struct Lab {
    pub name: String,
    pub kind: Kind,
    pub a: String,
    pub b: String,
}

impl Lab {
    /// Where the client's SOCKS5 requests go.
    pub fn socks(&self) -> SocketAddr {
        match self.kind {
            Kind::Zring(_) => SocketAddr::from((NODE_A, 15080)),
            Kind::Ztunnel(_) => SocketAddr::from(([127, 0, 0, 1], 15080)),
        }
    }
}

/// The LocalConfig both proxies read: M sources on node-a, K destinations on node-b.
pub fn local_config(m: usize, k: usize) -> LocalConfig {
    let wl = |name: String, sa: &str, ip, node: &str| Workload {
        uid: format!("cluster1//v1/Pod/{NAMESPACE}/{name}").into(),
        name: name.into(),
        namespace: NAMESPACE.to_string().into(),
        service_account: sa.to_string().into(),
        trust_domain: TRUST_DOMAIN.to_string().into(),
        workload_ips: vec![ip].into(),
        protocol: Protocol::Hbone,
        node: node.to_string().into(),
        ..Workload::default()
    };
    let src = (0..m).map(|i| wl(format!("src-{i}"), &src_sa(i), source_ip(i), "node-a"));
    let dst = (0..k).map(|j| wl(format!("dst-{j}"), DST_SA, dest_ip(j), "node-b"));
    LocalConfig {
        workloads: src.chain(dst).collect(),
        ..LocalConfig::default()
    }
}

/// Writes `workloads.yaml` and zring's cert dir (both identities, from the peer's root).
pub fn write_inputs(
    dir: &Path,
    zring: &Path,
    root: (&Path, &Path),
    m: usize,
    k: usize,
) -> Result<()> {
    let io = |what: String| Error::io(what);
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let config = dir.join("workloads.yaml");
    let yaml = serde_yaml::to_string(&local_config(m, k)).expect("config serialises");
    std::fs::write(&config, yaml).map_err(io(format!("writing {}", config.display())))?;
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).map_err(io(format!("creating {}", certs.display())))?;
    for (from, name) in [(root.0, "root-cert.pem"), (root.1, "root-key.pem")] {
        std::fs::copy(from, certs.join(name)).map_err(io(format!(
            "copying the test root {} (the peer's test root must be readable)",
            from.display()
        )))?;
    }
    let d = certs.display().to_string();
    for sa in (0..m).map(src_sa).chain([DST_SA.to_string()]) {
        let id = format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{sa}");
        crate::mesh::run_zring(zring, &["ca", "issue", "--dir", &d, &id])?;
    }
    Ok(())
}

fn ip_cmd(ns: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ip"])
        .args(args)
        .output()
        .map_err(Error::io("running ip (iproute2 must be installed)"))?;
    if !out.status.success() {
        return Err(Error::Topology(format!(
            "ip {} in {ns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Creates both nodes of `name` with their links, addresses, routes and echo servers.
pub fn build(prefix: &str, name: &str, kind: Kind, m: usize, k: usize) -> Result<Lab> {
    let lab = Lab {
        name: name.to_string(),
        kind,
        a: format!("{prefix}{name}-a"),
        b: format!("{prefix}{name}-b"),
    };
    for ns in [&lab.a, &lab.b] {
        plumbing::netns::create(ns)?;
        plumbing::netns::set_link_up(Some(ns), "lo")?;
    }
    plumbing::netns::veth_pair(Some(&lab.a), "pa0", "pb0", Some(&lab.b))?;
    let node = |ns: &str, dev: &str, addr: Ipv4Addr, other: &str, gw: &str| -> Result<()> {
        plumbing::netns::add_address(Some(ns), dev, addr, 24)?;
        plumbing::netns::set_link_up(Some(ns), dev)?;
        ip_cmd(ns, &["route", "add", other, "via", gw])
    };
    node(&lab.a, "pa0", NODE_A, "10.9.2.0/24", "10.9.0.2")?;
    node(&lab.b, "pb0", NODE_B, "10.9.1.0/24", "10.9.0.1")?;
    for i in 0..m {
        ip_cmd(
            &lab.a,
            &["addr", "add", &format!("{}/32", source_ip(i)), "dev", "lo"],
        )?;
    }
    for j in 0..k {
        ip_cmd(
            &lab.b,
            &["addr", "add", &format!("{}/32", dest_ip(j)), "dev", "lo"],
        )?;
    }
    // ztunnel's inbound leg reaches the server from the source workload's (remote) IP:
    // the server's replies must come back to its transparent socket, not leave for A.
    let port = ECHO_PORT.to_string();
    let from = [
        "rule",
        "add",
        "from",
        "10.9.2.0/24",
        "ipproto",
        "tcp",
        "sport",
        &port,
    ];
    ip_cmd(&lab.b, &[&from[..], &["lookup", "200"]].concat())?;
    ip_cmd(
        &lab.b,
        &[
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "200",
        ],
    )?;
    let cfg = ServeConfig {
        bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        http_port: ECHO_PORT,
        sink_port: SINK_PORT,
        cores: 1,
        stall: None,
    };
    server::start(&cfg, Some(&lab.b))?;
    let syn = syn_rule();
    let args: Vec<&str> = ["-w", "-I", "INPUT"]
        .into_iter()
        .chain(syn.iter().copied())
        .collect();
    iptables(&lab.b, &args)?;
    Ok(lab)
}

/// Starts the proxy of each node (1 worker each) and waits until both are ready.
pub fn start_proxies(lab: &Lab, dir: &Path) -> Result<[Proc; 2]> {
    let spawn = |ns: &str, node: &str| -> Result<Proc> {
        let log = dir.join(format!("{}-{node}.log", lab.name));
        let p = match &lab.kind {
            Kind::Zring(bin) => spawn_zring(ns, node, bin, dir, log)?,
            Kind::Ztunnel(bin) => spawn_ztunnel(ns, node, bin, dir, log)?,
        };
        setup::wait_ready(ns, &p)?;
        Ok(p)
    };
    let a = spawn(&lab.a, "a")?;
    match spawn(&lab.b, "b") {
        Ok(b) => Ok([a, b]),
        Err(e) => {
            procs::terminate(&[a.pid]);
            Err(e)
        }
    }
}

fn spawn_zring(ns: &str, node: &str, bin: &Path, dir: &Path, log: PathBuf) -> Result<Proc> {
    let socks = if node == "a" {
        SocketAddr::from((NODE_A, 15080)).to_string()
    } else {
        "off".to_string()
    };
    let s = |v: &str| v.to_string();
    let args = vec![
        s("run"),
        s("--config"),
        dir.join("workloads.yaml").display().to_string(),
        s("--cert-dir"),
        dir.join("certs").display().to_string(),
        s("--node-name"),
        format!("node-{node}"),
        s("--cores"),
        s("1"),
        s("--transparent"),
        s("false"),
        s("--outbound-addr"),
        s("off"),
        s("--inbound-addr"),
        s("0.0.0.0:15008"),
        s("--inbound-plaintext-addr"),
        s("off"),
        s("--socks5-addr"),
        socks,
        s("--readiness-addr"),
        s("127.0.0.1:15021"),
        s("--pool-idle-timeout"),
        s(POOL_IDLE),
    ];
    let env = [("RUST_LOG", s("warn"))];
    procs::spawn_in_env(ns, "zring", (bin, &args), &env, log)
}

fn spawn_ztunnel(ns: &str, node: &str, bin: &Path, dir: &Path, log: PathBuf) -> Result<Proc> {
    let s = |v: &str| v.to_string();
    let (wl, sa) = if node == "a" {
        ("src-0".to_string(), src_sa(0))
    } else {
        ("dst-0".to_string(), DST_SA.to_string())
    };
    let env = [
        ("RUST_LOG", s("warn")),
        ("FAKE_CA", s("true")),
        ("XDS_ADDRESS", s("")),
        (
            "LOCAL_XDS_PATH",
            dir.join("workloads.yaml").display().to_string(),
        ),
        ("PROXY_MODE", s("dedicated")),
        ("PROXY_WORKLOAD_INFO", format!("{NAMESPACE}/{wl}/{sa}")),
        ("UNSTABLE_ENABLE_SOCKS5", s("true")),
        ("ZTUNNEL_WORKER_THREADS", s("1")),
        ("POOL_UNUSED_RELEASE_TIMEOUT", s(POOL_IDLE)),
    ];
    procs::spawn_in_env(ns, "ztunnel", (bin, &[s("proxy")]), &env, log)
}

/// Established TCP connections in `ns` whose local port is `port`.
pub fn established(ns: &str, port: u16) -> Result<usize> {
    let filter = format!("( sport = :{port} )");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ss",
            "-Htn",
            "state",
            "established",
            &filter,
        ])
        .output()
        .map_err(Error::io("running ss (iproute2 must be installed)"))?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// The rule counting connection attempts to 15008 (SYN without ACK).
fn syn_rule() -> [&'static str; 9] {
    [
        "-p",
        "tcp",
        "--dport",
        "15008",
        "--tcp-flags",
        "SYN,ACK",
        "SYN",
        "-j",
        "ACCEPT",
    ]
}

fn iptables(ns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "iptables"])
        .args(args)
        .output()
        .map_err(Error::io(
            "running iptables (scripts/install-deps installs it)",
        ))?;
    if !out.status.success() {
        return Err(Error::Topology(format!(
            "iptables {} in {ns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// New connections to node B's 15008 since the last call (the SYN rule's packet count,
/// zeroed on read).
pub fn take_syns(ns: &str) -> Result<u64> {
    let listing = iptables(ns, &["-w", "-L", "INPUT", "-v", "-x", "-n", "-Z"])?;
    Ok(listing
        .lines()
        .find(|l| l.contains("dpt:15008"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0))
}
