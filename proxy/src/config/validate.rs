//! The rules a configuration must keep, index-based: each resource is checked on its own
//! when it is put ([`workload`], [`service`], [`policy`]), and the rules between resources
//! (one owner per IP, VIP, hostname and key; every service a workload names exists) are checked
//! only at the keys an update touched ([`check`], driven by [`Dirty`]). No check scans the
//! whole configuration or compares pairs of resources.

use std::collections::HashSet;
use std::hash::Hash;
use std::net::IpAddr;

use super::index::{Hasher, Name, Owners, S, W};
use super::local::{Service, Workload};
use super::policy::Policy;
use super::snapshot::Snapshot;
use super::{ConfigError, ConfigErrors};

/// How many workloads a refused removal names (a service may have thousands).
const NAMED_REFERRERS: usize = 5;

/// Where an update may have broken a rule, as [`Snapshot`]'s `put_*`/`drop_*` noted it:
/// the keys it gave a second owner (a valid generation has one owner per key, so no other
/// key can have two), the workloads it put and the services it took away.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    pub changed: bool,
    pub ips: Vec<IpAddr>,
    pub workload_keys: Vec<Name>,
    /// Workloads put: the services they name must exist. (The policies they name need not:
    /// an unknown one is skipped, as ztunnel skips it; see `policy`.)
    pub workloads: Vec<Name>,
    pub vips: Vec<IpAddr>,
    pub hostnames: Vec<Box<str>>,
    /// Keys of services dropped or replaced: no workload may still name them.
    pub gone_service_keys: Vec<Name>,
    pub policy_keys: Vec<Name>,
}

/// Problems of one workload on its own.
pub(super) fn workload(w: &Workload, errs: &mut ConfigErrors) {
    identity_pieces(w, errs);
    for (key, ports) in &w.services {
        if !key_syntax_ok(key) {
            errs.push(ConfigError::BadServiceKey {
                workload: w.to_string(),
                key: key.to_string(),
            });
        }
        // Names are formatted only for a problem: this runs for every workload put.
        if ports.iter().any(|(s, t)| *s == 0 || *t == 0) {
            let object = format!("workload {w}");
            port_map(&object, &format!("services[{key:?}]"), ports, errs);
        }
    }
}

pub(super) fn key_syntax_ok(key: &str) -> bool {
    matches!(key.split_once('/'), Some((ns, host)) if !ns.is_empty() && !host.is_empty())
}

/// Updates putting more workloads than this check their references on a second thread.
const SPLIT_CHECKS: usize = 4096;

/// The rules between resources, at the keys `d` names, in the generation `s`. A large
/// update (a cold start) checks its workloads' references beside the rest.
pub(super) fn check(s: &Snapshot, d: &Dirty, errs: &mut ConfigErrors) {
    if d.workloads.len() <= SPLIT_CHECKS {
        owners(s, d, errs);
        references(s, d, errs);
        return;
    }
    let mut refs = ConfigErrors::default();
    std::thread::scope(|scope| {
        scope.spawn(|| references(s, d, &mut refs));
        owners(s, d, errs);
    });
    errs.0.extend(refs.0);
}

/// One owner per IP, workload key, VIP, hostname and policy key.
fn owners(s: &Snapshot, d: &Dirty, errs: &mut ConfigErrors) {
    for ip in dedup(&d.ips) {
        if let Some(Owners::Many(v)) = s.ix.by_ip.get(ip) {
            errs.push(duplicate_ip(*ip, v));
        }
    }
    for k in dedup(&d.workload_keys) {
        // The workload named by its own key is not in `workload_keys` (see there).
        let named = s.workloads.get(&**k).is_some_and(|w| w.key == *k);
        let others = s.ix.workload_keys.get(k).map_or(0, |o| o.all().len());
        if usize::from(named) + others > 1 {
            errs.push(duplicate("workload", k));
        }
    }
    for ip in dedup(&d.vips) {
        if let Some(Owners::Many(v)) = s.ix.by_vip.get(ip) {
            errs.push(duplicate_vip(*ip, v));
        }
    }
    for h in dedup(&d.hostnames) {
        if let Some(Owners::Many(_)) = s.ix.by_hostname.get(h) {
            errs.push(duplicate("service hostname", h));
        }
    }
    for k in dedup(&d.policy_keys) {
        if let Some(Owners::Many(_)) = s.ix.policy_keys.get(k) {
            errs.push(duplicate("policy", k));
        }
    }
}

/// Every service a put workload names exists; nothing names a dropped one.
fn references(s: &Snapshot, d: &Dirty, errs: &mut ConfigErrors) {
    for name in dedup(&d.workloads) {
        if let Some(w) = s.workloads.get(name) {
            unknown_services(&w.item, |k| !s.ix.service_keys.contains_key(k), errs);
        }
    }
    for key in dedup(&d.gone_service_keys) {
        if s.ix.service_keys.contains_key(key) {
            continue;
        }
        let Some(eps) = s.ix.endpoints.get(key) else {
            continue;
        };
        for w in referrers(s, eps.names()) {
            errs.push(ConfigError::UnknownService {
                workload: w.to_string(),
                key: key.to_string(),
            });
        }
    }
}

/// The services `w` names that are `missing` (a key of bad syntax is a problem of the
/// workload on its own, see [`workload`]).
pub(super) fn unknown_services(
    w: &Workload,
    missing: impl Fn(&str) -> bool,
    errs: &mut ConfigErrors,
) {
    for key in w.services.keys() {
        if key_syntax_ok(key) && missing(key) {
            errs.push(ConfigError::UnknownService {
                workload: w.to_string(),
                key: key.to_string(),
            });
        }
    }
}

/// The first few workloads among `names`.
fn referrers<'a>(
    s: &'a Snapshot,
    names: impl Iterator<Item = &'a Name>,
) -> impl Iterator<Item = &'a Workload> {
    names
        .filter_map(|n| s.workloads.get(n))
        .map(|w| &w.item)
        .take(NAMED_REFERRERS)
}

/// `v` without repeats (an update may touch a key several times), in its order. Hashed,
/// not sorted: comparing a cold start's 100k names while sorting them was a fifth of
/// its checks.
fn dedup<T: Hash + Eq>(v: &[T]) -> Vec<&T> {
    let mut seen = HashSet::with_capacity_and_hasher(v.len(), Hasher::default());
    v.iter().filter(|t| seen.insert(*t)).collect()
}

/// Two resources of `kind` claim `name`.
pub(super) fn duplicate(kind: &'static str, name: &str) -> ConfigError {
    ConfigError::Duplicate {
        kind,
        name: name.to_string(),
    }
}

/// The workloads `v` (two or more) claim `ip`.
pub(super) fn duplicate_ip(ip: IpAddr, v: &[W]) -> ConfigError {
    ConfigError::DuplicateWorkloadIp {
        ip,
        first: v[0].item.to_string(),
        second: v[1].item.to_string(),
    }
}

/// The services `v` (two or more) claim `ip`.
pub(super) fn duplicate_vip(ip: IpAddr, v: &[S]) -> ConfigError {
    ConfigError::DuplicateVip {
        ip,
        first: v[0].item.hostname.clone(),
        second: v[1].item.hostname.clone(),
    }
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
            value: value.to_string(),
            reason,
        });
    }
}

/// Problems of one service on its own.
pub(super) fn service(s: &Service, errs: &mut ConfigErrors) {
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

/// Problems of one policy on its own.
pub(super) fn policy(p: &Policy, errs: &mut ConfigErrors) {
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
