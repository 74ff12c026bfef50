//! Starting each proxy the way its own documentation says, on the same cores and the
//! same LocalConfig: `zring run --cores N` and ztunnel in dedicated mode with a local
//! config, its fake CA and SOCKS5 enabled. Then the lab's servers, readiness and probes
//! (same node here; the cross-node pairs in [`super::cross`]).

use super::setup::{self, Lab, SERVICE_ACCOUNT};
use super::Proxy;
use crate::error::Result;
use crate::mesh::NAMESPACE;
use crate::procs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The two binaries and the inputs they share.
#[derive(Debug, Clone)]
pub struct Bins {
    pub zring: PathBuf,
    pub peer: PathBuf,
    /// Directory with `workloads.yaml` and `certs/`.
    pub dir: PathBuf,
}

/// One proxy process: its LocalConfig, cores and, on a node of the cross-node shape, the
/// node's name (and zring's SOCKS5 listener when it is not the default).
#[derive(Debug, Clone)]
pub struct Node<'a> {
    pub config: &'a Path,
    pub cores: usize,
    /// Set: this proxy serves only this node's workloads (cross node). zring then runs
    /// with `--transparent false` (its inbound leg leaves from its own address).
    pub name: Option<&'a str>,
    pub socks: Option<SocketAddr>,
    /// The workload a dedicated-mode ztunnel acts as (`PROXY_WORKLOAD_INFO`): one on
    /// this node (same node: the client).
    pub workload: &'a str,
}

/// Starts `proxy` in `netns` as `node` says, logging to `log`.
pub fn spawn(
    proxy: Proxy,
    netns: &str,
    bins: &Bins,
    node: &Node,
    log: PathBuf,
) -> Result<procs::Proc> {
    match proxy {
        Proxy::Zring => spawn_zring(netns, bins, node, log),
        Proxy::Ztunnel => spawn_ztunnel(netns, bins, node, log),
    }
}

/// Brings up the lab of `proxy` in namespace `<prefix><proxy>`.
pub fn start_lab(proxy: Proxy, prefix: &str, bins: &Bins, cores: usize) -> Result<Lab> {
    let netns = format!("{prefix}{}", proxy.name());
    setup::make_netns(&netns)?;
    setup::start_servers(&netns)?;
    let log = bins.dir.join(format!("{}.log", proxy.name()));
    let node = Node {
        config: &bins.dir.join("workloads.yaml"),
        cores,
        name: None,
        socks: None,
        workload: "client",
    };
    let proc = spawn(proxy, &netns, bins, &node, log)?;
    setup::wait_ready(&netns, &proc)?;
    let mut lab = Lab {
        proxy,
        netns: netns.clone(),
        proc,
        remote: None,
        socks: std::net::SocketAddr::from(setup::SOCKS_ADDR),
        seen_ip: super::SERVER_IP,
        direct_ip: super::SERVER_IP,
    };
    lab.seen_ip = setup::probe(&netns, Some(lab.via()))?;
    lab.direct_ip = setup::probe(&netns, None)?;
    Ok(lab)
}

fn quiet_log() -> (&'static str, String) {
    ("RUST_LOG", "warn".to_string())
}

fn spawn_zring(netns: &str, bins: &Bins, node: &Node, log: PathBuf) -> Result<procs::Proc> {
    let mut args: Vec<String> = [
        "run",
        "--config",
        &path(node.config),
        "--cert-dir",
        &path(&bins.dir.join("certs")),
        "--cores",
        &node.cores.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(name) = node.name {
        let flags = ["--node-name", name, "--transparent", "false"];
        args.extend(flags.map(String::from));
    }
    if let Some(a) = node.socks {
        args.extend(["--socks5-addr".to_string(), a.to_string()]);
    }
    let env = [quiet_log()];
    procs::spawn_in_env(netns, "zring", (&bins.zring, &args), &env, log)
}

fn spawn_ztunnel(netns: &str, bins: &Bins, node: &Node, log: PathBuf) -> Result<procs::Proc> {
    let s = |v: &str| v.to_string();
    let mut env = vec![
        quiet_log(),
        ("FAKE_CA", s("true")),
        ("XDS_ADDRESS", s("")),
        ("LOCAL_XDS_PATH", path(node.config)),
        ("PROXY_MODE", s("dedicated")),
        (
            "PROXY_WORKLOAD_INFO",
            format!("{NAMESPACE}/{}/{SERVICE_ACCOUNT}", node.workload),
        ),
        ("UNSTABLE_ENABLE_SOCKS5", s("true")),
        ("ZTUNNEL_WORKER_THREADS", node.cores.to_string()),
    ];
    if let Some(name) = node.name {
        env.push(("NODE_NAME", s(name)));
    }
    let args = [s("proxy")];
    procs::spawn_in_env(netns, "ztunnel", (&bins.peer, &args), &env, log)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
