//! Starting each proxy the way its own documentation says, on the same cores and the
//! same LocalConfig: `zring run --cores N` and ztunnel in dedicated mode with a local
//! config, its fake CA and SOCKS5 enabled. Then the lab's servers, readiness and probes.

use super::setup::{self, Lab, SERVICE_ACCOUNT};
use super::Proxy;
use crate::error::Result;
use crate::mesh::NAMESPACE;
use crate::procs;
use std::path::{Path, PathBuf};

/// The two binaries and the inputs they share.
#[derive(Debug, Clone)]
pub struct Bins {
    pub zring: PathBuf,
    pub peer: PathBuf,
    /// Directory with `workloads.yaml` and `certs/`.
    pub dir: PathBuf,
}

/// Brings up the lab of `proxy` in namespace `<prefix><proxy>`.
pub fn start_lab(proxy: Proxy, prefix: &str, bins: &Bins, cores: usize) -> Result<Lab> {
    let netns = format!("{prefix}{}", proxy.name());
    setup::make_netns(&netns)?;
    setup::start_servers(&netns)?;
    let log = bins.dir.join(format!("{}.log", proxy.name()));
    let proc = match proxy {
        Proxy::Zring => spawn_zring(&netns, bins, cores, log)?,
        Proxy::Ztunnel => spawn_ztunnel(&netns, bins, cores, log)?,
    };
    setup::wait_ready(&netns, &proc)?;
    let mut lab = Lab {
        proxy,
        netns: netns.clone(),
        proc,
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

fn spawn_zring(netns: &str, bins: &Bins, cores: usize, log: PathBuf) -> Result<procs::Proc> {
    let args: Vec<String> = [
        "run",
        "--config",
        &path(&bins.dir.join("workloads.yaml")),
        "--cert-dir",
        &path(&bins.dir.join("certs")),
        "--cores",
        &cores.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let env = [quiet_log()];
    procs::spawn_in_env(netns, "zring", (&bins.zring, &args), &env, log)
}

fn spawn_ztunnel(netns: &str, bins: &Bins, cores: usize, log: PathBuf) -> Result<procs::Proc> {
    let s = |v: &str| v.to_string();
    let env = [
        quiet_log(),
        ("FAKE_CA", s("true")),
        ("XDS_ADDRESS", s("")),
        ("LOCAL_XDS_PATH", path(&bins.dir.join("workloads.yaml"))),
        ("PROXY_MODE", s("dedicated")),
        (
            "PROXY_WORKLOAD_INFO",
            format!("{NAMESPACE}/client/{SERVICE_ACCOUNT}"),
        ),
        ("UNSTABLE_ENABLE_SOCKS5", s("true")),
        ("ZTUNNEL_WORKER_THREADS", cores.to_string()),
    ];
    let args = [s("proxy")];
    procs::spawn_in_env(netns, "ztunnel", (&bins.peer, &args), &env, log)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
