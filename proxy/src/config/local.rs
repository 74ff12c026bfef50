//! ztunnel's static workload configuration (`LOCAL_XDS_PATH`): workloads, services, policies.
//!
//! The YAML is read into private `*Yaml` twins that also accept (and drop) the fields
//! ztunnel knows but zring does not use, then converted into the public types, collecting
//! every conversion and semantic problem so one run reports them all.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::local_yaml::LocalConfigYaml;
use super::policy::Policy;
use super::snapshot::Snapshot;
use super::text::Str;
use super::waypoint::GatewayAddress;
use super::workload_services::WorkloadServices;
use super::{ConfigError, ConfigErrors};

/// ztunnel's default when a workload names no trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// ztunnel's default when a workload names no service account.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// `s`, or `default` when it is empty (an unset proto3 or YAML field).
pub(crate) fn or_default<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() {
        default
    } else {
        s
    }
}

/// The whole static configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalConfig {
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
    pub policies: Vec<Policy>,
}

/// How traffic to a workload travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// Tunnel over mTLS + HTTP/2 CONNECT to `<pod ip>:15008`.
    #[serde(rename = "HBONE")]
    Hbone,
    /// Plain TCP passthrough (the workload is not in the mesh).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
}

/// One pod (or VM) the proxy may send to or receive for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub uid: Str,
    pub name: Str,
    pub namespace: Str,
    pub service_account: Str,
    pub trust_domain: Str,
    pub workload_ips: Box<[IpAddr]>,
    pub protocol: Protocol,
    /// Kubernetes node running the workload; empty when unknown.
    pub node: Str,
    /// `"<namespace>/<hostname>"` → (service port → target port override; may be empty).
    pub services: WorkloadServices,
    /// `"<namespace>/<name>"` of WorkloadSelector policies that select this workload.
    pub authorization_policies: Box<[String]>,
    /// The owning workload (Deployment, ...): ztunnel's `*_workload` metric label.
    pub workload_name: Str,
    /// Canonical service: ztunnel's `*_canonical_service` and `*_app` labels.
    pub canonical_name: Str,
    /// Canonical revision: ztunnel's `*_canonical_revision` and `*_version` labels.
    pub canonical_revision: Str,
    /// ztunnel's `*_cluster` label.
    pub cluster_id: Str,
    /// ztunnel's `*_region` / `*_zone` labels.
    pub locality: Locality,
    /// Traffic addressed to this workload's IP goes through this waypoint.
    /// Boxed: most workloads have none, and the 56 bytes it saves put a stored workload
    /// in a smaller allocator size class (320 B, was 448).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<Box<GatewayAddress>>,
}

/// Where a workload runs (ztunnel's `locality`; like ztunnel, all three keys are required).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locality {
    pub region: Str,
    pub zone: Str,
    pub subzone: Str,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            uid: Str::default(),
            name: Str::default(),
            namespace: Str::default(),
            service_account: Str::shared(DEFAULT_SERVICE_ACCOUNT),
            trust_domain: Str::shared(DEFAULT_TRUST_DOMAIN),
            workload_ips: Box::default(),
            protocol: Protocol::default(),
            node: Str::default(),
            services: WorkloadServices::default(),
            authorization_policies: Box::default(),
            workload_name: Str::default(),
            canonical_name: Str::default(),
            canonical_revision: Str::default(),
            cluster_id: Str::default(),
            locality: Locality::default(),
            waypoint: None,
        }
    }
}

/// Names a workload in messages: its uid when set, else `namespace/name`.
impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.uid.is_empty() {
            write!(f, "{}/{}", self.namespace, self.name)
        } else {
            f.write_str(&self.uid)
        }
    }
}

/// A Kubernetes service: virtual IPs and port translation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub hostname: String,
    pub vips: Vec<NetworkAddress>,
    /// Service port → target port.
    pub ports: BTreeMap<u16, u16>,
    /// Traffic addressed to this service goes through this waypoint.
    /// Boxed: most workloads have none, and the 56 bytes it saves put a stored workload
    /// in a smaller allocator size class (320 B, was 448).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<Box<GatewayAddress>>,
}

impl Service {
    /// The key workloads use in their `services` map: `"<namespace>/<hostname>"`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.hostname)
    }
}

/// An IP within a named network, written `"<network>/<ip>"` (`"/10.96.0.105"`: default network).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkAddress {
    pub network: String,
    pub ip: IpAddr,
}

impl FromStr for NetworkAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (network, ip) = s.split_once('/').unwrap_or(("", s));
        let ip = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        Ok(NetworkAddress {
            network: network.to_string(),
            ip,
        })
    }
}

impl fmt::Display for NetworkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.ip)
    }
}

impl Serialize for NetworkAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl LocalConfig {
    /// Parses and checks a LocalConfig document; `source` names it in errors (a file path).
    pub fn from_yaml(source: &str, text: &str) -> Result<LocalConfig, ConfigError> {
        let (cfg, mut problems) = LocalConfig::convert(source, text)?;
        if let Err(more) = cfg.validate() {
            problems.0.extend(more.0);
        }
        invalid_unless_empty(source, problems, cfg)
    }

    /// Parses a LocalConfig document; the rules between resources are left to the
    /// [`Snapshot`] built from it (which checks them through its indexes).
    pub(super) fn parse(source: &str, text: &str) -> Result<LocalConfig, ConfigError> {
        let (cfg, problems) = LocalConfig::convert(source, text)?;
        invalid_unless_empty(source, problems, cfg)
    }

    /// The YAML as a LocalConfig, with the problems found converting it.
    fn convert(source: &str, text: &str) -> Result<(LocalConfig, ConfigErrors), ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::YamlNoLocation {
                file: source.to_string(),
                message: "the file is empty; write `workloads: []` for an empty config".into(),
            });
        }
        let raw: LocalConfigYaml =
            serde_yaml::from_str(text).map_err(|e| yaml_error(source, &e))?;
        let mut problems = ConfigErrors::default();
        let cfg = raw.into_config(&mut problems);
        Ok((cfg, problems))
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<LocalConfig, ConfigError> {
        LocalConfig::from_yaml(&path.display().to_string(), &read(path)?)
    }

    /// All semantic problems of an already-built config (duplicates, unknown services, ...),
    /// found by indexing it as a [`Snapshot`] would.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        Snapshot::build(self.clone(), None).map(drop)
    }
}

fn invalid_unless_empty(
    source: &str,
    problems: ConfigErrors,
    cfg: LocalConfig,
) -> Result<LocalConfig, ConfigError> {
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid {
            file: source.to_string(),
            problems,
        })
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })
}

impl Snapshot {
    /// The file at `path` as a delta against `self` (None: nothing changed). The file is
    /// parsed once and its resources are checked while they are indexed; a reload's cost
    /// beyond parsing grows with what changed.
    pub fn load_file(&self, path: &Path) -> Result<Option<Snapshot>, ConfigError> {
        let source = path.display().to_string();
        let local = LocalConfig::parse(&source, &read(path)?)?;
        self.reload(local).map_err(|problems| ConfigError::Invalid {
            file: source,
            problems,
        })
    }
}

/// Fuzzing entry point: arbitrary bytes → parsed config or error, never a panic.
pub fn parse_local_config_bytes(b: &[u8]) -> Result<LocalConfig, ConfigError> {
    let text = std::str::from_utf8(b).map_err(|e| ConfigError::YamlNoLocation {
        file: "<bytes>".into(),
        message: format!("not UTF-8: {e}"),
    })?;
    LocalConfig::from_yaml("<bytes>", text)
}

fn yaml_error(source: &str, e: &serde_yaml::Error) -> ConfigError {
    let full = e.to_string();
    match e.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
            ConfigError::Yaml {
                file: source.to_string(),
                line: loc.line(),
                column: loc.column(),
                message,
            }
        }
        None => ConfigError::YamlNoLocation {
            file: source.to_string(),
            message: full,
        },
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
