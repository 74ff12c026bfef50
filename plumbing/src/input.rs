//! The small inputs the desired state is rendered from (constructible in code, or from YAML).

use std::net::Ipv4Addr;
use std::path::Path;

use serde::Deserialize;

use crate::model::TunnelKind;
use crate::PlumbError;

/// Node (host netns) side, per node: what Istio's CNI knew.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    /// The node's pod gateway (10.244.1.1 in the articles): `src` of table-100 routes and
    /// the source of node-local probes.
    pub gateway_ip: Ipv4Addr,
    /// The ztunnel pod's IP (10.244.1.2): remote end of istioin/istioout.
    pub ztunnel_ip: Ipv4Addr,
    /// Host-side veth of the ztunnel pod (veth08baa690).
    pub ztunnel_veth: String,
    /// Pods enrolled in the mesh (ipset members, one table-100 route each).
    #[serde(default)]
    pub pod_ips: Vec<Ipv4Addr>,
    /// Tunnel encapsulation wanted (GENEVE falls back to VXLAN when unsupported).
    #[serde(default)]
    pub tunnel: TunnelKind,
}

/// Ztunnel pod netns side: what ztunnel's init container knew.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZtunnelInput {
    /// The ztunnel pod's own IP (excluded from the 0x4d3 mark).
    pub ztunnel_ip: Ipv4Addr,
    /// The node's pod gateway: remote end of pistioin/pistioout.
    pub gateway_ip: Ipv4Addr,
    /// The pod's primary interface (eth0).
    #[serde(default = "default_eth0")]
    pub eth0: String,
    /// Tunnel encapsulation wanted (GENEVE falls back to VXLAN when unsupported).
    #[serde(default)]
    pub tunnel: TunnelKind,
}

fn default_eth0() -> String {
    "eth0".to_string()
}

/// Reads a YAML file into `T`, naming the file (and serde's line/column) on error.
pub fn from_yaml_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PlumbError> {
    let text = std::fs::read_to_string(path).map_err(|e| PlumbError::Input {
        path: path.into(),
        detail: e.to_string(),
    })?;
    serde_yaml::from_str(&text).map_err(|e| PlumbError::Input {
        path: path.into(),
        detail: e.to_string(),
    })
}
