//! Pointing a proxy at this control plane, as a node's istiod address, root and token
//! would: the environment zring and istio/ztunnel both read (`XDS_ADDRESS`, `CA_ADDRESS`,
//! their roots, `AUTH_TOKEN`), and ztunnel's own settings for a dedicated-mode proxy with
//! SOCKS5. One place for `demo --xds`, `scale` and the xDS tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use zring::config::xds_env::{
    ENV_AUTH_TOKEN, ENV_CA_ADDRESS, ENV_CA_ROOT_CA, ENV_CLUSTER_ID, ENV_XDS_ADDRESS,
    ENV_XDS_ROOT_CA,
};

use super::{ControlPlane, Settings};
use crate::error::{Error, Result};
use zring::config::LocalConfig;

/// The cluster id ztunnel and zring report (ztunnel's default).
pub const CLUSTER_ID: &str = "Kubernetes";
/// The name in the control plane's certificate besides its IP (istiod's service).
pub const ISTIOD_NAME: &str = "istiod.istio-system.svc";

/// Where a proxy finds the control plane and how it proves who it is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://<addr>` for both xDS and the CA.
    pub address: String,
    /// The dev CA's root (it signed the control plane's server certificate).
    pub root: PathBuf,
    /// The file holding the bearer token.
    pub token: PathBuf,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, ca_dir: &Path, token: PathBuf) -> Endpoint {
        Endpoint {
            address: format!("https://{addr}"),
            root: ca_dir.join("root-cert.pem"),
            token,
        }
    }

    /// What both proxies read to reach the control plane for workloads and certificates.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let root = self.root.display().to_string();
        vec![
            (ENV_XDS_ADDRESS, self.address.clone()),
            (ENV_CA_ADDRESS, self.address.clone()),
            (ENV_XDS_ROOT_CA, root.clone()),
            (ENV_CA_ROOT_CA, root),
            (ENV_AUTH_TOKEN, self.token.display().to_string()),
        ]
    }

    /// istio/ztunnel on node `node` in dedicated mode as `workload` (`ns/name/sa`), SOCKS5
    /// on, `threads` workers, its own CA client (no FAKE_CA, no local config).
    pub fn ztunnel_env(
        &self,
        node: &str,
        workload: &str,
        threads: usize,
    ) -> Vec<(&'static str, String)> {
        let mut env = self.env();
        env.extend([
            ("NODE_NAME", node.to_string()),
            (ENV_CLUSTER_ID, CLUSTER_ID.to_string()),
            ("PROXY_MODE", "dedicated".to_string()),
            ("PROXY_WORKLOAD_INFO", workload.to_string()),
            ("UNSTABLE_ENABLE_SOCKS5", "true".to_string()),
            ("ZTUNNEL_WORKER_THREADS", threads.to_string()),
        ]);
        env
    }
}

/// A dev CA in `dir/ca`, the token in `dir/istio-token`, and a control plane serving
/// `config` on `listen` inside `netns` (None: this namespace).
pub fn start(
    netns: Option<&str>,
    dir: &Path,
    listen: SocketAddr,
    token: &str,
    config: LocalConfig,
) -> Result<(ControlPlane, Endpoint)> {
    let ca_dir = dir.join("ca");
    zring::tls::init_ca(&ca_dir, crate::mesh::TRUST_DOMAIN, true)
        .map_err(|e| Error::Setup(format!("dev CA in {}: {e}", ca_dir.display())))?;
    let token_file = dir.join("istio-token");
    std::fs::write(&token_file, token)
        .map_err(Error::io(format!("writing {}", token_file.display())))?;
    let settings = Settings {
        listen,
        ca_dir: ca_dir.clone(),
        token: token.into(),
        dns_names: vec![ISTIOD_NAME.into()],
    };
    let cp = plumbing::netns::run_in(netns, || ControlPlane::start(settings, config))??;
    let endpoint = Endpoint::new(cp.addr(), &ca_dir, token_file);
    Ok((cp, endpoint))
}
