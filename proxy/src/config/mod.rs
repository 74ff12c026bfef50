//! Configuration: what the proxy knows about the mesh and how it was asked to run.
//!
//! Everything here is pure except [`LocalConfig::load`], which reads one file, and
//! [`RunArgs::into_config`], which checks that the named files exist.
//!
//! | module | what |
//! |---|---|
//! | [`local`] | ztunnel's `LOCAL_XDS_PATH` YAML (workloads, services, policies), parsing + semantic checks |
//! | [`policy`] | authorization policy types and their evaluation (ztunnel semantics) |
//! | [`snapshot`] | one generation: resources by name and their indexes, persistent maps shared with the previous generation |
//! | `delta`, `store`, `index` | a generation built from the previous one and a list of changes (xDS update or file reload), O(delta × log N) |
//! | `bulk`, `pmap` | a cold start: the first generation built index by index, each map sorted once and cut into full nodes |
//! | `validate` | the rules, per resource and where a delta may have broken them |
//! | [`resolve`] | original destination → [`Route`] (HBONE tunnel or passthrough), round robin |
//! | [`waypoint`] | a service's or workload's waypoint (`GatewayAddress`): where it leads, whether a connection comes from it |
//! | [`settings`] | command-line / environment run settings → typed [`Config`] |
//!
//! Errors: every configuration problem is a [`ConfigError`]; checks that can find several
//! problems at once return them all in [`ConfigErrors`]. Per-connection resolution failures
//! are a separate [`ResolveError`] because the data plane counts them, not the operator.

mod bulk;
mod cidr;
mod delta;
mod index;
pub mod local;
mod local_yaml;
mod matcher;
mod pmap;
pub mod policy;
pub mod resolve;
pub mod settings;
mod settings_parse;
pub mod snapshot;
mod store;
mod text;
mod validate;
pub mod waypoint;
pub mod workload_services;
pub mod xds;
pub mod xds_env;

#[cfg(test)]
mod test_fixtures;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use cidr::Cidr;
pub use local::{
    parse_local_config_bytes, LocalConfig, Locality, NetworkAddress, Protocol, Service, Workload,
};
pub use policy::{
    Action, ConnInfo, Decision, Match, Policy, Scope, Selector, ServiceAccountMatch, StringMatch,
};
pub use resolve::{
    is_proxy_port, resolve, resolve_from, resolve_hostname, ResolveError, RoundRobin, Route,
    PROXY_PORTS,
};
pub use settings::{Config, RunArgs};
pub use snapshot::{Endpoint, Snapshot};
pub use text::Str;
pub use waypoint::{GatewayAddress, GatewayDestination};
pub use workload_services::WorkloadServices;

/// One configuration problem, phrased so an operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read workload config {path}: {error} (check --config / LOCAL_XDS_PATH and the file's permissions)")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message} (fix the YAML at this position; the format is ztunnel's LocalConfig: workloads/services/policies)")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{file}: {message} (the format is ztunnel's LocalConfig: workloads/services/policies)"
    )]
    YamlNoLocation { file: String, message: String },
    #[error("{file}: {} problem(s):\n{problems}", problems.0.len())]
    Invalid {
        file: String,
        problems: ConfigErrors,
    },
    #[error("workloads {first} and {second} both claim IP {ip}; each pod IP must belong to exactly one workload")]
    DuplicateWorkloadIp {
        ip: IpAddr,
        first: String,
        second: String,
    },
    #[error("{kind} {name} is defined twice; remove or rename one of them")]
    Duplicate { kind: &'static str, name: String },
    #[error("services {first} and {second} both claim VIP {ip}; a VIP must belong to exactly one service")]
    DuplicateVip {
        ip: IpAddr,
        first: String,
        second: String,
    },
    #[error("service {service}: VIP {vip:?} does not parse ({reason}); write \"<network>/<ip>\", e.g. \"/10.96.0.105\"")]
    BadVip {
        service: String,
        vip: String,
        reason: String,
    },
    #[error("workload {workload}: services key {key:?} must be \"<namespace>/<hostname>\"")]
    BadServiceKey { workload: String, key: String },
    #[error("workload {workload}: services entry {key:?} names no service in `services:`; add the service or fix the key (\"<namespace>/<hostname>\")")]
    UnknownService { workload: String, key: String },
    #[error("{object}: {field} has port 0; ports must be 1-65535")]
    ZeroPort { object: String, field: String },
    #[error("workload {workload}: {field} {value:?} {reason}; it becomes part of spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>")]
    BadIdentityPiece {
        workload: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{object}: {field} must not be empty")]
    Empty { object: String, field: &'static str },
    #[error("{flag} (env {env}) = {value:?}: {problem}")]
    BadSetting {
        flag: &'static str,
        env: &'static str,
        value: String,
        problem: String,
    },
    #[error("{first} and {second} both listen on {addr}; give each listener its own address or set one to `off`")]
    ListenerConflict {
        addr: SocketAddr,
        first: &'static str,
        second: &'static str,
    },
}

/// Several configuration problems, found in one pass and displayed one per line.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(v)` when no problem was recorded, else all of them.
    pub fn into_result<T>(self, v: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(v)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
