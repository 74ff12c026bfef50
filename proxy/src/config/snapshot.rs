//! An immutable, indexed view of one [`LocalConfig`], built once per (re)load.
//!
//! Lookups are hash-map hits; nothing here allocates after construction except
//! [`Snapshot::identity`], which builds an owned [`Identity`].

use std::collections::HashMap;
use std::net::IpAddr;

use super::local::{LocalConfig, Service, Workload};
use super::{ConfigError, ConfigErrors};
use crate::identity::Identity;

/// A workload that backs a service, with its own port translation for that service.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Index into [`Snapshot::workloads`].
    pub workload: usize,
    /// The workload's first IP (the one traffic is sent to).
    pub ip: IpAddr,
    /// The workload's service port → target port override (often empty).
    pub ports: Vec<(u16, u16)>,
}

impl Endpoint {
    /// The override for `service_port`, if this workload has one.
    pub fn target_port(&self, service_port: u16) -> Option<u16> {
        self.ports
            .iter()
            .find(|(s, _)| *s == service_port)
            .map(|(_, t)| *t)
    }
}

/// The proxy's view of the mesh; cheap to share (`Arc<Snapshot>`) across cores.
#[derive(Debug, Clone)]
pub struct Snapshot {
    local: LocalConfig,
    node: Option<String>,
    by_ip: HashMap<IpAddr, usize>,
    by_vip: HashMap<IpAddr, usize>,
    by_hostname: HashMap<String, usize>,
    /// Per service index: its endpoints.
    endpoints: Vec<Vec<Endpoint>>,
}

impl Snapshot {
    /// Validates `local` and indexes it. `node`: our node name (None: every workload is local).
    pub fn new(local: LocalConfig, node: Option<&str>) -> Result<Snapshot, ConfigError> {
        local.validate()?;
        Ok(Snapshot::index(local, node))
    }

    fn index(local: LocalConfig, node: Option<&str>) -> Snapshot {
        let mut by_ip = HashMap::new();
        for (i, w) in local.workloads.iter().enumerate() {
            for ip in &w.workload_ips {
                by_ip.insert(*ip, i);
            }
        }
        let mut by_vip = HashMap::new();
        let mut by_hostname = HashMap::new();
        for (i, s) in local.services.iter().enumerate() {
            by_hostname.insert(s.hostname.clone(), i);
            for vip in &s.vips {
                by_vip.insert(vip.ip, i);
            }
        }
        let endpoints = local
            .services
            .iter()
            .map(|s| endpoints_of(&local.workloads, s))
            .collect();
        Snapshot {
            node: node.map(str::to_string),
            local,
            by_ip,
            by_vip,
            by_hostname,
            endpoints,
        }
    }

    /// An empty snapshot: everything is passthrough, every connection allowed.
    pub fn empty(node: Option<&str>) -> Snapshot {
        Snapshot::index(LocalConfig::default(), node)
    }

    pub fn local(&self) -> &LocalConfig {
        &self.local
    }

    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    pub fn workloads(&self) -> &[Workload] {
        &self.local.workloads
    }

    pub fn services(&self) -> &[Service] {
        &self.local.services
    }

    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&Workload> {
        self.by_ip.get(&ip).map(|i| &self.local.workloads[*i])
    }

    pub fn service_by_vip(&self, ip: IpAddr) -> Option<&Service> {
        self.by_vip.get(&ip).map(|i| &self.local.services[*i])
    }

    pub fn service_by_hostname(&self, hostname: &str) -> Option<&Service> {
        self.by_hostname
            .get(hostname)
            .map(|i| &self.local.services[*i])
    }

    /// Whether `ip` is a workload on our node (every known workload when no node is set).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.workload_by_ip(ip)
            .is_some_and(|w| self.node.as_deref().is_none_or(|n| w.node == n))
    }

    /// The SPIFFE identity `w`'s certificate carries.
    pub fn identity(&self, w: &Workload) -> Identity {
        Identity::new(&w.trust_domain, &w.namespace, &w.service_account)
    }

    /// Index (into [`Snapshot::services`]) of the service owning VIP `ip`.
    pub(super) fn service_index_by_vip(&self, ip: IpAddr) -> Option<usize> {
        self.by_vip.get(&ip).copied()
    }

    pub(super) fn service_index_by_hostname(&self, hostname: &str) -> Option<usize> {
        self.by_hostname.get(hostname).copied()
    }

    /// Endpoints of the service at `index`.
    pub(super) fn endpoints_at(&self, index: usize) -> &[Endpoint] {
        &self.endpoints[index]
    }

    /// Workloads backing `svc`, in config order; empty for a service this snapshot lacks.
    pub fn endpoints(&self, svc: &Service) -> &[Endpoint] {
        self.service_index_by_hostname(&svc.hostname)
            .map_or(&[], |i| self.endpoints_at(i))
    }
}

fn endpoints_of(workloads: &[Workload], svc: &Service) -> Vec<Endpoint> {
    let key = svc.key();
    workloads
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let ports = w.services.get(&key)?;
            let ip = *w.workload_ips.first()?;
            Some(Endpoint {
                workload: i,
                ip,
                ports: ports.iter().map(|(s, t)| (*s, *t)).collect(),
            })
        })
        .collect()
}

impl From<ConfigErrors> for ConfigError {
    fn from(problems: ConfigErrors) -> ConfigError {
        ConfigError::Invalid {
            file: "workload config".into(),
            problems,
        }
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
