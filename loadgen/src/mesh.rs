//! The mesh half of the topology: certificates from `zring ca`, the LocalConfig YAML
//! that tells each zring which workloads exist (HBONE = enrolled, TCP = not), the node
//! and ztunnel-pod plumbing, and one `zring run` per ztunnel pod.

use crate::error::{Error, Result};
use crate::procs::{self, State};
use crate::topo::plan::{Node, Plan, Role};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use zring::config::settings::ENV_POOL_IDLE_TIMEOUT;
use zring::config::{LocalConfig, Protocol, Workload};

/// The trust domain of the generated certificates and workloads.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The Kubernetes namespace of every generated workload.
pub const NAMESPACE: &str = "default";

/// zring's readiness port: once it accepts, the proxy's listeners are up.
const READINESS_PORT: u16 = 15021;

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
            uid: format!("cluster1//v1/Pod/{NAMESPACE}/{}", p.name),
            name: p.name.to_string(),
            namespace: NAMESPACE.to_string(),
            service_account: p.name.to_string(),
            trust_domain: TRUST_DOMAIN.to_string(),
            workload_ips: vec![IpAddr::V4(p.ip)],
            protocol: if p.enrolled {
                Protocol::Hbone
            } else {
                Protocol::Tcp
            },
            node: n.name.to_string(),
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

/// Issues the CA and one certificate per enrolled workload into `dir`.
pub fn make_certs(zring: &Path, plan: &Plan, dir: &Path) -> Result<()> {
    let d = dir.to_string_lossy().to_string();
    run_zring(
        zring,
        &["ca", "init", "--dir", &d, "--trust-domain", TRUST_DOMAIN],
    )?;
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

fn plumb(node: &Node) -> Result<()> {
    let zt = node.ztunnel();
    let input = plumbing::NodeInput {
        gateway_ip: node.gateway,
        ztunnel_ip: zt.ip,
        ztunnel_veth: zt.host_veth.to_string(),
        pod_ips: node.enrolled_ips(),
        tunnel: Default::default(),
    };
    plumbing::node_up(Some(&node.netns), &input)?;
    let zinput = plumbing::ZtunnelInput {
        ztunnel_ip: zt.ip,
        gateway_ip: node.gateway,
        eth0: crate::topo::plan::ETH0.to_string(),
        tunnel: Default::default(),
    };
    plumbing::ztunnel_up(Some(&zt.netns), &zinput)?;
    Ok(())
}

/// Plumbs both nodes and starts a zring in each ztunnel pod; records the processes.
pub fn start(plan: &Plan, opts: &MeshOptions, state: &mut State) -> Result<()> {
    let dir = procs::state_dir(&plan.prefix);
    let certs = dir.join("certs");
    make_certs(&opts.zring, plan, &certs)?;
    let config = dir.join("zring.yaml");
    std::fs::write(&config, config_yaml(plan))
        .map_err(Error::io(format!("writing {}", config.display())))?;
    for node in plan.nodes() {
        plumb(node)?;
        let zt = node.ztunnel();
        let args: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            config.display().to_string(),
            "--cert-dir".into(),
            certs.display().to_string(),
            "--node-name".into(),
            node.name.into(),
            "--cores".into(),
            opts.cores.to_string(),
        ];
        let log = dir.join(format!("zring-{}.log", node.name));
        let env: Vec<(&str, String)> = opts
            .pool_idle
            .iter()
            .map(|d| (ENV_POOL_IDLE_TIMEOUT, format!("{}s", d.as_secs().max(1))))
            .collect();
        let p = procs::spawn_in_env(&zt.netns, "zring", (&opts.zring, &args), &env, log)?;
        state.procs.push(p.clone());
        state.save()?;
        let ready = SocketAddr::from(([127, 0, 0, 1], READINESS_PORT));
        crate::topo::wait_listening(&zt.netns, ready, &p)?;
    }
    Ok(())
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
