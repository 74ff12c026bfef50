//! Where the xDS client connects and what it says about itself: ztunnel's environment
//! variables, read once at start.

use std::path::PathBuf;

use serde::Serialize;

/// ztunnel's xDS server address (`https://istiod.istio-system.svc:15012` in a cluster).
pub const ENV_XDS_ADDRESS: &str = "XDS_ADDRESS";
pub const ENV_XDS_ROOT_CA: &str = "XDS_ROOT_CA";
pub const ENV_AUTH_TOKEN: &str = "AUTH_TOKEN";
pub const ENV_ALT_XDS_HOSTNAME: &str = "ALT_XDS_HOSTNAME";
pub const ENV_CLUSTER_ID: &str = "CLUSTER_ID";
pub const DEFAULT_ROOT_CA: &str = "./var/run/secrets/istio/root-cert.pem";
pub const DEFAULT_TOKEN: &str = "./var/run/secrets/tokens/istio-token";
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";
const META_PREFIX: &str = "ISTIO_META_";
const HEADER_PREFIX: &str = "XDS_HEADER_";

/// How to reach istiod for workloads and policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XdsSettings {
    /// `https://host:port`.
    pub address: String,
    /// PEM roots that verify the server (`XDS_ROOT_CA`).
    pub root_ca: PathBuf,
    /// Bearer token file (`AUTH_TOKEN`), read again on every connect (it is rotated).
    pub token: PathBuf,
    /// Name to verify instead of the address's host (`ALT_XDS_HOSTNAME`).
    pub alt_hostname: Option<String>,
    pub cluster_id: String,
    /// The xDS node id, as ztunnel builds it.
    pub node_id: String,
    /// Node metadata: `ISTIO_META_*` (prefix removed) plus CLUSTER_ID and NODE_NAME.
    pub metadata: Vec<(String, String)>,
    /// Extra request headers from `XDS_HEADER_*`.
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
}

impl XdsSettings {
    /// From the environment, or `None` when `address` (XDS_ADDRESS) is empty.
    pub fn from_env(address: Option<&str>, node_name: Option<&str>) -> Option<XdsSettings> {
        let address = address.map(str::trim).filter(|a| !a.is_empty())?;
        let address = if address.contains("://") {
            address.to_string()
        } else {
            format!("https://{address}")
        };
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let cluster_id = var(ENV_CLUSTER_ID).unwrap_or_else(|| DEFAULT_CLUSTER_ID.into());
        let mut metadata: Vec<(String, String)> = prefixed(META_PREFIX).collect();
        metadata.push(("CLUSTER_ID".into(), cluster_id.clone()));
        if let Some(n) = node_name {
            metadata.push(("NODE_NAME".into(), n.into()));
        }
        let headers = prefixed(HEADER_PREFIX)
            .map(|(k, v)| (k.to_ascii_lowercase().replace('_', "-"), v))
            .collect();
        Some(XdsSettings {
            address,
            root_ca: var(ENV_XDS_ROOT_CA)
                .unwrap_or_else(|| DEFAULT_ROOT_CA.into())
                .into(),
            token: var(ENV_AUTH_TOKEN)
                .unwrap_or_else(|| DEFAULT_TOKEN.into())
                .into(),
            alt_hostname: var(ENV_ALT_XDS_HOSTNAME),
            node_id: node_id(&var),
            cluster_id,
            metadata,
            headers,
        })
    }
}

/// `ztunnel~<INSTANCE_IP>~<POD_NAME>.<POD_NAMESPACE>~<POD_NAMESPACE>.svc.cluster.local`.
fn node_id(var: &dyn Fn(&str) -> Option<String>) -> String {
    let ip = var("INSTANCE_IP").unwrap_or_else(|| "1.1.1.1".into());
    let pod = var("POD_NAME").unwrap_or_default();
    let ns = var("POD_NAMESPACE").unwrap_or_default();
    format!("ztunnel~{ip}~{pod}.{ns}~{ns}.svc.cluster.local")
}

fn prefixed(prefix: &'static str) -> impl Iterator<Item = (String, String)> {
    std::env::vars().filter_map(move |(k, v)| {
        let name = k.strip_prefix(prefix)?;
        (!name.is_empty()).then(|| (name.to_string(), v))
    })
}

pub const ENV_CA_ADDRESS: &str = "CA_ADDRESS";
pub const ENV_CA_ROOT_CA: &str = "CA_ROOT_CA";
pub const ENV_ALT_CA_HOSTNAME: &str = "ALT_CA_HOSTNAME";
pub const ENV_SECRET_TTL: &str = "SECRET_TTL";
/// ztunnel's default requested certificate lifetime.
pub const DEFAULT_SECRET_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How to reach the Istio CA for workload certificates (xDS mode only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaSettings {
    /// `https://host:port`.
    pub address: String,
    /// PEM roots that verify the CA and, as the mesh's trust bundle, HBONE peers.
    pub root_ca: PathBuf,
    pub alt_hostname: Option<String>,
    /// Bearer token file (AUTH_TOKEN).
    pub token: PathBuf,
    /// Requested validity (`SECRET_TTL`, e.g. `24h`).
    pub ttl: std::time::Duration,
}

impl CaSettings {
    /// From the environment, or `None` when CA_ADDRESS is unset or empty. `Err` names a
    /// bad SECRET_TTL.
    pub fn from_env() -> Result<Option<CaSettings>, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let Some(address) = var(ENV_CA_ADDRESS) else {
            return Ok(None);
        };
        let address = if address.contains("://") {
            address
        } else {
            format!("https://{address}")
        };
        let ttl = match var(ENV_SECRET_TTL) {
            None => DEFAULT_SECRET_TTL,
            Some(v) => super::settings::parse_duration(&v)
                .map_err(|e| format!("{ENV_SECRET_TTL}={v:?}: {e}"))?,
        };
        Ok(Some(CaSettings {
            address,
            root_ca: var(ENV_CA_ROOT_CA)
                .unwrap_or_else(|| DEFAULT_ROOT_CA.into())
                .into(),
            alt_hostname: var(ENV_ALT_CA_HOSTNAME),
            token: var(ENV_AUTH_TOKEN)
                .unwrap_or_else(|| DEFAULT_TOKEN.into())
                .into(),
            ttl,
        }))
    }
}
