//! The mesh half of the topology: certificates from `zring ca`, the LocalConfig YAML
//! that tells each zring which workloads exist (HBONE = enrolled, TCP = not), the node
//! and ztunnel-pod plumbing, and one `zring run` per ztunnel pod.
//!
//! In xDS mode the same LocalConfig is served by the project's control plane
//! ([`crate::control`]) on node A's link address, as istiod would be: both proxies get
//! their workloads over delta ADS and their certificates from its CA, with no config
//! file and no certificate directory.

use crate::control::proxies::{self, Endpoint};
use crate::control::ControlPlane;
use crate::error::{Error, Result};
use crate::inpod::demo::Cni;
use crate::procs::{self, State};
use crate::topo::plan::{Node, Plan, Role};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use zring::config::settings::ENV_POOL_IDLE_TIMEOUT;
use zring::config::{LocalConfig, Protocol, Workload};

/// The trust domain of the generated certificates and workloads.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The Kubernetes namespace of every generated workload.
pub const NAMESPACE: &str = "default";

/// zring's readiness port: once it accepts, the proxy's listeners are up.
const READINESS_PORT: u16 = 15021;
/// zring's admin port (`/config_dump`).
pub const ADMIN_PORT: u16 = 15000;
/// zring's metrics port.
pub const METRICS_PORT: u16 = 15020;
/// The control plane's port (istiod's xDS and CA port).
pub const CONTROL_PORT: u16 = 15012;
/// The bearer token the control plane expects and the proxies send.
const CONTROL_TOKEN: &str = "zring-demo-token";
/// How long an xDS-mode proxy may take to receive its workloads and certificates.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How to run the proxies.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// The `zring` binary.
    pub zring: PathBuf,
    /// `--cores` of each proxy.
    pub cores: usize,
    /// The proxies' pool idle timeout (`POOL_UNUSED_RELEASE_TIMEOUT`); None keeps zring's
    /// default.
    pub pool_idle: Option<std::time::Duration>,
    /// Serve the workloads and certificates from a control plane over xDS instead of a
    /// config file and a certificate directory.
    pub xds: bool,
    /// In-pod capture (`demo --inpod`): each zring runs with `--inpod` beside the fake
    /// istio-cni ([`crate::inpod::demo`]) instead of plumbing its node.
    pub inpod: bool,
}

/// The SPIFFE identity of a workload named `name`.
pub fn spiffe_id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{name}")
}

/// The config both proxies read: every app pod, HBONE when enrolled, TCP otherwise.
/// Built from zring's own config types, so the file is what the proxy parses.
pub fn local_config(plan: &Plan) -> LocalConfig {
    let workloads = plan
        .nodes()
        .iter()
        .flat_map(|n| {
            n.pods
                .iter()
                .filter(|p| p.role != Role::Ztunnel)
                .map(move |p| (n, p))
        })
        .map(|(n, p)| Workload {
            uid: format!("cluster1//v1/Pod/{NAMESPACE}/{}", p.name).into(),
            name: p.name.to_string().into(),
            namespace: NAMESPACE.to_string().into(),
            service_account: p.name.to_string().into(),
            trust_domain: TRUST_DOMAIN.to_string().into(),
            workload_ips: vec![IpAddr::V4(p.ip)].into(),
            protocol: if p.enrolled {
                Protocol::Hbone
            } else {
                Protocol::Tcp
            },
            node: n.name.to_string().into(),
            ..Workload::default()
        })
        .collect();
    LocalConfig {
        workloads,
        ..LocalConfig::default()
    }
}

/// Renders the config as YAML.
pub fn config_yaml(plan: &Plan) -> String {
    serde_yaml::to_string(&local_config(plan)).expect("config serialises")
}

pub(crate) fn run_zring(zring: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(zring)
        .args(args)
        .output()
        .map_err(Error::io(format!(
            "running {} (build it: cargo build --workspace)",
            zring.display()
        )))?;
    if !out.status.success() {
        return Err(Error::Topology(format!(
            "`zring {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn init_ca(zring: &Path, dir: &Path) -> Result<()> {
    let d = dir.to_string_lossy().to_string();
    run_zring(
        zring,
        &["ca", "init", "--dir", &d, "--trust-domain", TRUST_DOMAIN],
    )
}

/// Issues the CA and one certificate per enrolled workload into `dir`.
pub fn make_certs(zring: &Path, plan: &Plan, dir: &Path) -> Result<()> {
    init_ca(zring, dir)?;
    let d = dir.to_string_lossy().to_string();
    let ids: Vec<String> = plan
        .nodes()
        .iter()
        .flat_map(|n| {
            n.pods
                .iter()
                .filter(|p| p.enrolled)
                .map(|p| spiffe_id(p.name))
        })
        .collect();
    let mut args = vec!["ca", "issue", "--dir", d.as_str()];
    args.extend(ids.iter().map(String::as_str));
    run_zring(zring, &args)
}

/// The node plumbing's input for `node` with `pod_ips` enrolled.
pub fn node_input(node: &Node, pod_ips: Vec<std::net::Ipv4Addr>) -> plumbing::NodeInput {
    let zt = node.ztunnel();
    plumbing::NodeInput {
        gateway_ip: node.gateway,
        ztunnel_ip: zt.ip,
        ztunnel_veth: zt.host_veth.to_string(),
        pod_ips,
        tunnel: Default::default(),
    }
}

/// `zring run`'s arguments that make it plumb `node` from its ztunnel pod: the pod side,
/// and the node side in the node's namespace (found there by itself: veth, gateway, IP).
pub fn plumb_args(node: &Node) -> [String; 3] {
    [
        "--plumb".into(),
        "--host-netns".into(),
        plumbing::netns::path(&node.netns).display().to_string(),
    ]
}

/// Where the proxies find their workloads and certificates.
enum Source {
    Files { config: PathBuf, certs: PathBuf },
    Xds(Endpoint),
}

impl Source {
    fn args(&self) -> Vec<String> {
        match self {
            Source::Files { config, certs } => vec![
                "--config".into(),
                config.display().to_string(),
                "--cert-dir".into(),
                certs.display().to_string(),
            ],
            Source::Xds(_) => vec![],
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Source::Files { .. } => vec![],
            Source::Xds(endpoint) => endpoint.env(),
        }
    }
}

/// The static files: certificates for the enrolled workloads and the config YAML.
fn file_source(plan: &Plan, opts: &MeshOptions, dir: &Path) -> Result<Source> {
    let certs = dir.join("certs");
    make_certs(&opts.zring, plan, &certs)?;
    let config = dir.join("zring.yaml");
    std::fs::write(&config, config_yaml(plan))
        .map_err(Error::io(format!("writing {}", config.display())))?;
    Ok(Source::Files { config, certs })
}

/// A dev CA, a token file and the control plane on node A's link address, serving
/// [`local_config`]: reachable from both ztunnel pods through the node network, as
/// istiod's service is.
fn xds_source(plan: &Plan, dir: &Path) -> Result<(Source, ControlPlane)> {
    let listen = SocketAddr::from((plan.a.eth0_ip, CONTROL_PORT));
    let ns = Some(plan.a.netns.as_str());
    let (control, endpoint) = proxies::start(ns, dir, listen, CONTROL_TOKEN, local_config(plan))?;
    Ok((Source::Xds(endpoint), control))
}

/// Plumbs both nodes and starts a zring in each ztunnel pod; records the processes.
/// In xDS mode returns the control plane, which must outlive the proxies' use of it; in
/// in-pod mode the fake CNI that handed the pods over.
pub fn start(
    plan: &Plan,
    opts: &MeshOptions,
    state: &mut State,
) -> Result<(Option<ControlPlane>, Option<Cni>)> {
    let dir = procs::state_dir(&plan.prefix);
    let (source, control) = if opts.xds {
        let (s, c) = xds_source(plan, &dir)?;
        (s, Some(c))
    } else {
        (file_source(plan, opts, &dir)?, None)
    };
    let mut cni = None;
    for node in plan.nodes() {
        let zt = node.ztunnel();
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(source.args());
        args.extend([
            "--node-name".into(),
            node.name.into(),
            "--cores".into(),
            opts.cores.to_string(),
        ]);
        // zring plumbs its pod and its node itself and enrols the node's HBONE pods; in
        // in-pod mode the CNI hands it the pods instead.
        let zds = match opts.inpod {
            true => Some(crate::inpod::demo::listen(&dir, node)?),
            false => None,
        };
        match &zds {
            Some((_, uds)) => args.extend(crate::inpod::demo::args(uds)),
            None => args.extend(plumb_args(node)),
        }
        let log = dir.join(format!("zring-{}.log", node.name));
        let mut env = source.env();
        env.extend(
            opts.pool_idle
                .iter()
                .map(|d| (ENV_POOL_IDLE_TIMEOUT, format!("{}s", d.as_secs().max(1)))),
        );
        let p = procs::spawn_in_env(&zt.netns, "zring", (&opts.zring, &args), &env, log)?;
        state.procs.push(p.clone());
        state.save()?;
        if let Some((server, _)) = zds {
            cni.get_or_insert_with(Cni::default)
                .hand_over(server, node)?;
        }
        wait_ready(&zt.netns, &p)?;
    }
    Ok((control, cni))
}

/// Waits until the proxy's readiness endpoint answers 200 (in xDS mode: its workloads
/// and certificates are in force on every core), or the proxy died.
pub fn wait_ready(ns: &str, proc: &procs::Proc) -> Result<()> {
    let ready = SocketAddr::from(([127, 0, 0, 1], READINESS_PORT));
    crate::topo::wait_listening(ns, ready, proc)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = http_get_in(ns, ready, "/healthz/ready");
        if matches!(last, Ok((200, _))) {
            return Ok(());
        }
        if !procs::is_alive(proc.pid) || Instant::now() > deadline {
            return Err(Error::Child {
                what: format!("zring in {ns} (not ready: last answer {last:?})"),
                status: if procs::is_alive(proc.pid) {
                    "a timeout".into()
                } else {
                    "an exit".into()
                },
                log: proc.log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` on `addr` from inside `ns`: (status code, body).
pub fn http_get_in(ns: &str, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let what = || format!("GET http://{addr}{path} in {ns}");
    let mut s = plumbing::netns::run_in(Some(ns), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })?
    .map_err(Error::io(what()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(Error::io(what()))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .map_err(Error::io(what()))?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(Error::io(what()))?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::Setup(format!("{}: no HTTP status in {text:?}", what())))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_marks_enrolled_pods_hbone_and_others_tcp() {
        let yaml = config_yaml(&Plan::new("zrl-"));
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let w = v["workloads"].as_sequence().unwrap();
        assert_eq!(w.len(), 4);
        let find = |ip: &str| {
            w.iter()
                .find(|x| x["workloadIps"][0].as_str() == Some(ip))
                .unwrap()
        };
        assert_eq!(find("10.244.1.4")["protocol"].as_str(), Some("HBONE"));
        assert_eq!(find("10.244.1.4")["node"].as_str(), Some("node-a"));
        assert_eq!(
            find("10.244.2.5")["serviceAccount"].as_str(),
            Some("server")
        );
        assert_eq!(find("10.244.2.6")["protocol"].as_str(), Some("TCP"));
        assert_eq!(
            find("10.244.1.5")["trustDomain"].as_str(),
            Some("cluster.local")
        );
    }

    #[test]
    fn spiffe_ids_follow_the_ns_sa_form() {
        assert_eq!(
            spiffe_id("client"),
            "spiffe://cluster.local/ns/default/sa/client"
        );
    }
}
