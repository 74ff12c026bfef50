//! Semantic checks of a [`LocalConfig`]: every problem is collected, none stops the scan.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::local::{LocalConfig, Service, Workload};
use super::policy::Policy;
use super::{ConfigError, ConfigErrors};

/// All problems found in `cfg` (empty when it is valid).
pub(super) fn problems(cfg: &LocalConfig) -> ConfigErrors {
    let mut errs = ConfigErrors::default();
    let services: HashSet<String> = cfg.services.iter().map(Service::key).collect();
    let policies: HashSet<String> = cfg.policies.iter().map(Policy::key).collect();
    workloads(cfg, &services, &policies, &mut errs);
    for s in &cfg.services {
        service(s, &mut errs);
    }
    duplicate_services(&cfg.services, &mut errs);
    for p in &cfg.policies {
        policy(p, &mut errs);
    }
    duplicates("policy", cfg.policies.iter().map(Policy::key), &mut errs);
    errs
}

fn workloads(
    cfg: &LocalConfig,
    services: &HashSet<String>,
    policies: &HashSet<String>,
    errs: &mut ConfigErrors,
) {
    let mut owner: HashMap<IpAddr, &Workload> = HashMap::new();
    for w in &cfg.workloads {
        identity_pieces(w, errs);
        service_entries(w, services, errs);
        for key in &w.authorization_policies {
            if !policies.contains(key) {
                errs.push(ConfigError::UnknownPolicy {
                    workload: w.to_string(),
                    key: key.clone(),
                });
            }
        }
        for ip in &w.workload_ips {
            if let Some(first) = owner.insert(*ip, w) {
                errs.push(ConfigError::DuplicateWorkloadIp {
                    ip: *ip,
                    first: first.to_string(),
                    second: w.to_string(),
                });
            }
        }
    }
    let keys = cfg.workloads.iter().map(|w| w.to_string());
    duplicates("workload", keys, errs);
}

/// Each piece must survive the round trip through a SPIFFE URI.
fn identity_pieces(w: &Workload, errs: &mut ConfigErrors) {
    if w.uid.is_empty() && w.name.is_empty() {
        errs.push(ConfigError::Empty {
            object: format!(
                "a workload in namespace {:?} with IPs {:?}",
                w.namespace, w.workload_ips
            ),
            field: "name (or uid)",
        });
    }
    let pieces = [
        ("namespace", &w.namespace),
        ("serviceAccount", &w.service_account),
        ("trustDomain", &w.trust_domain),
    ];
    for (field, value) in pieces {
        let reason = if value.is_empty() {
            "is empty"
        } else if value.contains('/') {
            "contains '/'"
        } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            "contains whitespace or control characters"
        } else {
            continue;
        };
        errs.push(ConfigError::BadIdentityPiece {
            workload: w.to_string(),
            field,
            value: value.clone(),
            reason,
        });
    }
}

fn service_entries(w: &Workload, services: &HashSet<String>, errs: &mut ConfigErrors) {
    for (key, ports) in &w.services {
        match key.split_once('/') {
            Some((ns, host)) if !ns.is_empty() && !host.is_empty() => {
                if !services.contains(key) {
                    errs.push(ConfigError::UnknownService {
                        workload: w.to_string(),
                        key: key.clone(),
                    });
                }
            }
            _ => errs.push(ConfigError::BadServiceKey {
                workload: w.to_string(),
                key: key.clone(),
            }),
        }
        let object = format!("workload {w}");
        port_map(&object, &format!("services[{key:?}]"), ports, errs);
    }
}

fn service(s: &Service, errs: &mut ConfigErrors) {
    let object = format!("service {}", s.hostname);
    if s.hostname.is_empty() {
        errs.push(ConfigError::Empty {
            object: format!("service {}/{}", s.namespace, s.name),
            field: "hostname",
        });
    }
    if s.namespace.is_empty() {
        errs.push(ConfigError::Empty {
            object: object.clone(),
            field: "namespace",
        });
    }
    port_map(&object, "ports", &s.ports, errs);
}

fn duplicate_services(services: &[Service], errs: &mut ConfigErrors) {
    duplicates(
        "service hostname",
        services.iter().map(|s| s.hostname.clone()),
        errs,
    );
    let mut owner: HashMap<IpAddr, &str> = HashMap::new();
    for s in services {
        for vip in &s.vips {
            if let Some(first) = owner.insert(vip.ip, &s.hostname) {
                errs.push(ConfigError::DuplicateVip {
                    ip: vip.ip,
                    first: first.to_string(),
                    second: s.hostname.clone(),
                });
            }
        }
    }
}

fn port_map<'a>(
    object: &str,
    field: &str,
    ports: impl IntoIterator<Item = (&'a u16, &'a u16)>,
    errs: &mut ConfigErrors,
) {
    for (svc_port, target) in ports {
        if *svc_port == 0 || *target == 0 {
            errs.push(ConfigError::ZeroPort {
                object: object.to_string(),
                field: format!("{field} entry {svc_port}: {target}"),
            });
        }
    }
}

fn policy(p: &Policy, errs: &mut ConfigErrors) {
    let object = format!("policy {}", p.key());
    if p.name.is_empty() {
        errs.push(ConfigError::Empty {
            object: object.clone(),
            field: "name",
        });
    }
    for (r, rule) in p.rules.iter().enumerate() {
        for (c, clause) in rule.iter().enumerate() {
            for (m, mat) in clause.iter().enumerate() {
                let ports = mat
                    .destination_ports
                    .iter()
                    .chain(&mat.not_destination_ports);
                if ports.into_iter().any(|p| *p == 0) {
                    errs.push(ConfigError::ZeroPort {
                        object: object.clone(),
                        field: format!("rules[{r}][{c}][{m}] destination ports"),
                    });
                }
            }
        }
    }
}

fn duplicates(kind: &'static str, keys: impl Iterator<Item = String>, errs: &mut ConfigErrors) {
    let mut seen = HashSet::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            errs.push(ConfigError::Duplicate { kind, name: k });
        }
    }
}
