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

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::policy::Policy;
use super::{validate, ConfigError, ConfigErrors};

/// ztunnel's default when a workload names no trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// ztunnel's default when a workload names no service account.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

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
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub trust_domain: String,
    pub workload_ips: Vec<IpAddr>,
    pub protocol: Protocol,
    /// Kubernetes node running the workload; empty when unknown.
    pub node: String,
    /// `"<namespace>/<hostname>"` → (service port → target port override; may be empty).
    pub services: BTreeMap<String, BTreeMap<u16, u16>>,
    /// `"<namespace>/<name>"` of WorkloadSelector policies that select this workload.
    pub authorization_policies: Vec<String>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            uid: String::new(),
            name: String::new(),
            namespace: String::new(),
            service_account: DEFAULT_SERVICE_ACCOUNT.to_string(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_string(),
            workload_ips: Vec::new(),
            protocol: Protocol::default(),
            node: String::new(),
            services: BTreeMap::new(),
            authorization_policies: Vec::new(),
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
        problems.0.extend(validate::problems(&cfg).0);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid {
                file: source.to_string(),
                problems,
            })
        }
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<LocalConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        LocalConfig::from_yaml(&path.display().to_string(), &text)
    }

    /// All semantic problems of an already-built config (duplicates, unknown services, ...).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        validate::problems(self).into_result(())
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LocalConfigYaml {
    #[serde(default)]
    workloads: Vec<WorkloadYaml>,
    #[serde(default)]
    services: Vec<ServiceYaml>,
    #[serde(default)]
    policies: Vec<Policy>,
}

impl LocalConfigYaml {
    fn into_config(self, problems: &mut ConfigErrors) -> LocalConfig {
        LocalConfig {
            workloads: self.workloads.into_iter().map(Workload::from).collect(),
            services: self
                .services
                .into_iter()
                .map(|s| s.into_service(problems))
                .collect(),
            policies: self.policies,
        }
    }
}

/// ztunnel's workload fields; the `_`-prefixed ones are accepted and ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WorkloadYaml {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    name: String,
    namespace: String,
    #[serde(default)]
    service_account: String,
    #[serde(default)]
    trust_domain: String,
    #[serde(default)]
    workload_ips: Vec<IpAddr>,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    node: String,
    #[serde(default)]
    services: BTreeMap<String, BTreeMap<u16, u16>>,
    #[serde(default)]
    authorization_policies: Vec<String>,
    #[serde(default, rename = "waypoint")]
    _waypoint: IgnoredAny,
    #[serde(default, rename = "networkGateway")]
    _network_gateway: IgnoredAny,
    #[serde(default, rename = "networkMode")]
    _network_mode: IgnoredAny,
    #[serde(default, rename = "network")]
    _network: IgnoredAny,
    #[serde(default, rename = "workloadName")]
    _workload_name: IgnoredAny,
    #[serde(default, rename = "workloadType")]
    _workload_type: IgnoredAny,
    #[serde(default, rename = "canonicalName")]
    _canonical_name: IgnoredAny,
    #[serde(default, rename = "canonicalRevision")]
    _canonical_revision: IgnoredAny,
    #[serde(default, rename = "hostname")]
    _hostname: IgnoredAny,
    #[serde(default, rename = "nativeTunnel")]
    _native_tunnel: IgnoredAny,
    #[serde(default, rename = "applicationTunnel")]
    _application_tunnel: IgnoredAny,
    #[serde(default, rename = "status")]
    _status: IgnoredAny,
    #[serde(default, rename = "clusterId")]
    _cluster_id: IgnoredAny,
    #[serde(default, rename = "locality")]
    _locality: IgnoredAny,
    #[serde(default, rename = "capacity")]
    _capacity: IgnoredAny,
}

fn or_default(s: String, default: &str) -> String {
    if s.is_empty() {
        default.to_string()
    } else {
        s
    }
}

impl From<WorkloadYaml> for Workload {
    fn from(w: WorkloadYaml) -> Workload {
        Workload {
            uid: w.uid,
            name: w.name,
            namespace: w.namespace,
            service_account: or_default(w.service_account, DEFAULT_SERVICE_ACCOUNT),
            trust_domain: or_default(w.trust_domain, DEFAULT_TRUST_DOMAIN),
            workload_ips: w.workload_ips,
            protocol: w.protocol,
            node: w.node,
            services: w.services,
            authorization_policies: w.authorization_policies,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceYaml {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    hostname: String,
    #[serde(default)]
    vips: Vec<String>,
    #[serde(default)]
    ports: BTreeMap<u16, u16>,
    #[serde(default, rename = "endpoints")]
    _endpoints: IgnoredAny,
    #[serde(default, rename = "subjectAltNames")]
    _subject_alt_names: IgnoredAny,
    #[serde(default, rename = "waypoint")]
    _waypoint: IgnoredAny,
    #[serde(default, rename = "loadBalancer")]
    _load_balancer: IgnoredAny,
    #[serde(default, rename = "ipFamilies")]
    _ip_families: IgnoredAny,
}

impl ServiceYaml {
    fn into_service(self, problems: &mut ConfigErrors) -> Service {
        let mut vips = Vec::with_capacity(self.vips.len());
        for vip in self.vips {
            match vip.parse::<NetworkAddress>() {
                Ok(a) => vips.push(a),
                Err(reason) => problems.push(ConfigError::BadVip {
                    service: self.hostname.clone(),
                    vip,
                    reason,
                }),
            }
        }
        Service {
            name: self.name,
            namespace: self.namespace,
            hostname: self.hostname,
            vips,
            ports: self.ports,
        }
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
