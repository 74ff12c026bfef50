//! istiod's resources ↔ zring's configuration model, and the resource store behind the xDS
//! client.
//!
//! Decoding refuses a resource with a reason an operator can act on (it goes into the
//! NACK). [`XdsStore::apply`] never touches the store: the resources that decode are merged
//! into a copy, the copy is validated as one [`LocalConfig`] and returned as a
//! [`Candidate`]; a resource whose change would make the configuration invalid is refused
//! by name and the rest still applies. [`XdsStore::apply_and_publish`] keeps the candidate
//! only once its configuration was published — so the store is never ahead of what the
//! cores run, and the data path never sees half an update. Encoding is the control plane's
//! side (the load generator serves a LocalConfig).

use std::collections::BTreeMap;
use std::net::IpAddr;

use prost::Message;
use zring_xds::delta::{Rejected, Update};
use zring_xds::prost_types::Any;
use zring_xds::{security as ps, workload as pw, ADDRESS_TYPE, AUTHORIZATION_TYPE};

use super::local::{Locality, DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN};
use super::{
    validate, Action, Cidr, ConfigErrors, LocalConfig, Match, NetworkAddress, Policy, Protocol,
    Scope, Service, ServiceAccountMatch, StringMatch, Workload,
};

/// One `istio.workload.Address`.
#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    Workload(Box<Workload>),
    Service(Service),
}

/// The resources received so far, by xDS name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XdsStore {
    addresses: BTreeMap<String, Address>,
    policies: BTreeMap<String, Policy>,
}

/// An update applied to a copy of the store: the configuration the cores would run, and
/// the store to keep once they run it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub store: XdsStore,
    pub config: LocalConfig,
}

impl XdsStore {
    /// Applies one response to a copy of the store. Returns the refused resources (for the
    /// NACK) and, when anything changed, the candidate; `self` is left as it was.
    ///
    /// When the whole update would make the configuration invalid, only the changes that
    /// break it are refused (see [`Self::apply_valid`]), each named with the problems it
    /// causes.
    pub fn apply(&self, update: &Update) -> (Vec<Rejected>, Option<Candidate>) {
        let (mut rejected, changes) = decode_all(update);
        let mut next = self.clone();
        for c in &changes {
            next.change(c);
        }
        let mut config = next.to_local_config();
        if !validate::problems(&config).is_empty() {
            next = self.clone();
            rejected.extend(next.apply_valid(changes));
            config = next.to_local_config();
        }
        if next == *self {
            return (rejected, None);
        }
        let candidate = Candidate {
            store: next,
            config,
        };
        (rejected, Some(candidate))
    }

    /// Applies the changes that keep the configuration valid and refuses the rest, each
    /// with the problems it causes. Dependencies go first (see [`Self::rank`]); then the
    /// changes are split in halves until a part applies cleanly, so one bad resource costs
    /// about 2·log₂(n) validations of the whole configuration, not n. Passes repeat over
    /// the refused ones while one more applies. Only run when the whole update is invalid.
    fn apply_valid(&mut self, mut changes: Vec<Change>) -> Vec<Rejected> {
        changes.sort_by_key(|c| self.rank(c));
        let mut pending = changes;
        loop {
            let before = pending.len();
            let mut refused = Vec::new();
            self.apply_parts(&pending, &mut refused);
            if refused.is_empty() || refused.len() == before {
                return refused.into_iter().map(|(c, p)| c.refused(&p)).collect();
            }
            pending = refused.into_iter().map(|(c, _)| c).collect();
        }
    }

    /// Applies `changes` whole if the configuration stays valid, else each half in turn;
    /// a single change that breaks it goes to `refused` with the problems.
    fn apply_parts(&mut self, changes: &[Change], refused: &mut Vec<(Change, ConfigErrors)>) {
        let mut trial = self.clone();
        for c in changes {
            trial.change(c);
        }
        let problems = validate::problems(&trial.to_local_config());
        if problems.is_empty() {
            *self = trial;
            return;
        }
        match changes {
            [] => {}
            [one] => refused.push((one.clone(), problems)),
            _ => {
                let (first, second) = changes.split_at(changes.len() / 2);
                self.apply_parts(first, refused);
                self.apply_parts(second, refused);
            }
        }
    }

    /// Order of application: a workload may name services and policies, so workloads go
    /// out first, services and policies come in, workloads come in, services go out.
    fn rank(&self, c: &Change) -> u8 {
        match c {
            Change::Remove(_, name) => match self.addresses.get(name) {
                Some(Address::Workload(_)) => 0,
                _ => 3,
            },
            Change::Upsert(_, Item::Address(Address::Workload(_))) => 2,
            Change::Upsert(..) => 1,
        }
    }

    fn change(&mut self, c: &Change) {
        match c {
            Change::Upsert(name, Item::Address(a)) => {
                self.addresses.insert(name.clone(), a.clone());
            }
            Change::Upsert(name, Item::Policy(p)) => {
                self.policies.insert(name.clone(), p.clone());
            }
            Change::Remove(type_url, name) => self.remove(type_url, name),
        }
    }

    /// [`Self::apply`], then `publish` the candidate's configuration; the candidate
    /// replaces the store only when `publish` succeeded. When it fails, every resource of
    /// the update is refused with its error and the store stays as it was, so a resend
    /// is applied again. Returns the refused resources.
    pub fn apply_and_publish<E: std::fmt::Display>(
        &mut self,
        update: &Update,
        publish: impl FnOnce(LocalConfig) -> Result<(), E>,
    ) -> Vec<Rejected> {
        let (rejected, candidate) = self.apply(update);
        let Some(Candidate { store, config }) = candidate else {
            return rejected;
        };
        match publish(config) {
            Ok(()) => {
                *self = store;
                rejected
            }
            Err(e) => refuse_all(update, &format!("cannot be put in force: {e}")),
        }
    }

    fn remove(&mut self, type_url: &str, name: &str) {
        if type_url == ADDRESS_TYPE {
            self.addresses.remove(name);
        } else {
            self.policies.remove(name);
        }
    }

    /// The store as the configuration the cores run.
    pub fn to_local_config(&self) -> LocalConfig {
        let mut c = LocalConfig::default();
        for a in self.addresses.values() {
            match a {
                Address::Workload(w) => c.workloads.push(w.as_ref().clone()),
                Address::Service(s) => c.services.push(s.clone()),
            }
        }
        c.policies = self.policies.values().cloned().collect();
        c
    }
}

/// One decoded resource.
#[derive(Debug, Clone)]
enum Item {
    Address(Address),
    Policy(Policy),
}

/// One change an update asks for, by resource name.
#[derive(Debug, Clone)]
enum Change {
    Upsert(String, Item),
    /// (type URL, name)
    Remove(String, String),
}

impl Change {
    fn refused(self, problems: &ConfigErrors) -> Rejected {
        let (name, what) = match self {
            Change::Upsert(name, _) => (name, "this resource"),
            Change::Remove(_, name) => (name, "removing this resource"),
        };
        Rejected {
            name,
            reason: format!("{what} would make the configuration invalid:\n{problems}"),
        }
    }
}

/// The update's resources decoded, in order (upserts, then removals), and the ones that
/// do not decode, refused with why.
fn decode_all(update: &Update) -> (Vec<Rejected>, Vec<Change>) {
    let mut rejected = Vec::new();
    let mut changes = Vec::new();
    for r in &update.upserts {
        let decoded = r
            .resource
            .as_ref()
            .ok_or_else(|| "the resource has no body".to_string())
            .and_then(|any| decode(&update.type_url, any));
        match decoded {
            Ok(item) => changes.push(Change::Upsert(r.name.clone(), item)),
            Err(reason) => rejected.push(Rejected {
                name: r.name.clone(),
                reason,
            }),
        }
    }
    let removed = update.removed.iter();
    changes.extend(removed.map(|n| Change::Remove(update.type_url.clone(), n.clone())));
    (rejected, changes)
}

fn decode(type_url: &str, any: &Any) -> Result<Item, String> {
    match type_url {
        ADDRESS_TYPE => decode_address(any).map(Item::Address),
        AUTHORIZATION_TYPE => decode_authorization(any).map(Item::Policy),
        other => Err(format!("zring does not subscribe to {other}")),
    }
}

/// Every upsert and removal of `update`, refused with `reason`.
fn refuse_all(update: &Update, reason: &str) -> Vec<Rejected> {
    let names = update
        .upserts
        .iter()
        .map(|r| &r.name)
        .chain(&update.removed);
    names
        .map(|name| Rejected {
            name: name.clone(),
            reason: reason.to_string(),
        })
        .collect()
}

/// Decodes one `istio.workload.Address`.
pub fn decode_address(any: &Any) -> Result<Address, String> {
    check_type(any, ADDRESS_TYPE)?;
    let a =
        pw::Address::decode(any.value.as_slice()).map_err(|e| format!("not an Address: {e}"))?;
    match a.r#type {
        Some(pw::address::Type::Workload(w)) => {
            workload_from(w).map(|w| Address::Workload(Box::new(w)))
        }
        Some(pw::address::Type::Service(s)) => service_from(s).map(Address::Service),
        None => Err("the Address holds neither a workload nor a service".into()),
    }
}

/// Decodes one `istio.security.Authorization`.
pub fn decode_authorization(any: &Any) -> Result<Policy, String> {
    check_type(any, AUTHORIZATION_TYPE)?;
    let a = ps::Authorization::decode(any.value.as_slice())
        .map_err(|e| format!("not an Authorization: {e}"))?;
    policy_from(a)
}

fn check_type(any: &Any, want: &str) -> Result<(), String> {
    if any.type_url == want {
        Ok(())
    } else {
        Err(format!(
            "body has type {:?}, expected {want:?}",
            any.type_url
        ))
    }
}

fn workload_from(w: pw::Workload) -> Result<Workload, String> {
    if w.addresses.is_empty() {
        return Err(format!(
            "workload {:?} has no address (hostname-only workloads are not supported by zring)",
            w.uid
        ));
    }
    let workload_ips = w
        .addresses
        .iter()
        .map(|b| ip_from(b))
        .collect::<Result<_, _>>()?;
    let mut services = BTreeMap::new();
    for (key, list) in &w.services {
        services.insert(key.clone(), ports_from(&list.ports)?);
    }
    Ok(Workload {
        uid: w.uid,
        name: w.name,
        namespace: w.namespace,
        service_account: or_default(w.service_account, DEFAULT_SERVICE_ACCOUNT),
        trust_domain: or_default(w.trust_domain, DEFAULT_TRUST_DOMAIN),
        workload_ips,
        protocol: match pw::TunnelProtocol::try_from(w.tunnel_protocol) {
            Ok(pw::TunnelProtocol::Hbone) => Protocol::Hbone,
            _ => Protocol::Tcp,
        },
        node: w.node,
        services,
        authorization_policies: w.authorization_policies,
        workload_name: w.workload_name,
        canonical_name: w.canonical_name,
        canonical_revision: w.canonical_revision,
        cluster_id: w.cluster_id,
        locality: w
            .locality
            .map(|l| Locality {
                region: l.region,
                zone: l.zone,
                subzone: l.subzone,
            })
            .unwrap_or_default(),
    })
}

fn service_from(s: pw::Service) -> Result<Service, String> {
    let vips = s
        .addresses
        .iter()
        .map(|a| {
            ip_from(&a.address).map(|ip| NetworkAddress {
                network: a.network.clone(),
                ip,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Service {
        ports: ports_from(&s.ports)?,
        name: s.name,
        namespace: s.namespace,
        hostname: s.hostname,
        vips,
    })
}

fn policy_from(a: ps::Authorization) -> Result<Policy, String> {
    let mut rules = Vec::with_capacity(a.rules.len());
    for r in &a.rules {
        let mut clauses = Vec::with_capacity(r.clauses.len());
        for c in &r.clauses {
            let matches = c.matches.iter().map(match_from).collect::<Result<_, _>>();
            clauses.push(matches.map_err(|e| format!("policy {:?}: {e}", a.name))?);
        }
        rules.push(clauses);
    }
    Ok(Policy {
        scope: match ps::Scope::try_from(a.scope) {
            Ok(ps::Scope::Global) => Scope::Global,
            Ok(ps::Scope::Namespace) => Scope::Namespace,
            Ok(ps::Scope::WorkloadSelector) => Scope::WorkloadSelector,
            Err(_) => return Err(format!("policy {:?}: unknown scope {}", a.name, a.scope)),
        },
        action: match ps::Action::try_from(a.action) {
            Ok(ps::Action::Allow) => Action::Allow,
            Ok(ps::Action::Deny) => Action::Deny,
            Err(_) => return Err(format!("policy {:?}: unknown action {}", a.name, a.action)),
        },
        rules,
        name: a.name,
        namespace: a.namespace,
        dry_run: false,
        selector: None,
    })
}

fn match_from(m: &ps::Match) -> Result<Match, String> {
    Ok(Match {
        namespaces: strings_from(&m.namespaces)?,
        not_namespaces: strings_from(&m.not_namespaces)?,
        principals: strings_from(&m.principals)?,
        not_principals: strings_from(&m.not_principals)?,
        source_ips: cidrs_from(&m.source_ips)?,
        not_source_ips: cidrs_from(&m.not_source_ips)?,
        destination_ips: cidrs_from(&m.destination_ips)?,
        not_destination_ips: cidrs_from(&m.not_destination_ips)?,
        destination_ports: port_list(&m.destination_ports)?,
        not_destination_ports: port_list(&m.not_destination_ports)?,
        ..Match::default()
    })
}

fn strings_from(v: &[ps::StringMatch]) -> Result<Vec<StringMatch>, String> {
    use ps::string_match::MatchType;
    v.iter()
        .map(|s| match &s.match_type {
            Some(MatchType::Exact(x)) => Ok(StringMatch::Exact(x.clone())),
            Some(MatchType::Prefix(x)) => Ok(StringMatch::Prefix(x.clone())),
            Some(MatchType::Suffix(x)) => Ok(StringMatch::Suffix(x.clone())),
            Some(MatchType::Presence(_)) => Ok(StringMatch::Presence),
            None => Err("a string match has no exact, prefix, suffix or presence".into()),
        })
        .collect()
}

fn cidrs_from(v: &[ps::Address]) -> Result<Vec<Cidr>, String> {
    v.iter()
        .map(|a| {
            let ip = ip_from(&a.address)?;
            let len =
                u8::try_from(a.length).map_err(|_| format!("prefix /{} is too long", a.length))?;
            Cidr::new(ip, len).map_err(|e| format!("{ip}: {e}"))
        })
        .collect()
}

fn port_list(v: &[u32]) -> Result<Vec<u16>, String> {
    v.iter().map(|p| port(*p)).collect()
}

fn port(p: u32) -> Result<u16, String> {
    u16::try_from(p).map_err(|_| format!("port {p} is not a TCP port (0-65535)"))
}

fn ports_from(v: &[pw::Port]) -> Result<BTreeMap<u16, u16>, String> {
    v.iter()
        .map(|p| Ok((port(p.service_port)?, port(p.target_port)?)))
        .collect()
}

fn ip_from(b: &[u8]) -> Result<IpAddr, String> {
    match b.len() {
        4 => Ok(IpAddr::from(
            <[u8; 4]>::try_from(b).expect("length checked"),
        )),
        16 => Ok(IpAddr::from(
            <[u8; 16]>::try_from(b).expect("length checked"),
        )),
        n => Err(format!(
            "an address of {n} bytes is neither IPv4 (4) nor IPv6 (16)"
        )),
    }
}

fn or_default(s: String, default: &str) -> String {
    if s.is_empty() {
        default.to_string()
    } else {
        s
    }
}

/// A LocalConfig as xDS resources `(name, body)`: Addresses, then Authorizations. Names
/// follow istiod: a workload's uid, `namespace/hostname` of a service, `namespace/name` of
/// a policy.
///
/// A workload without a uid is named `namespace/name`. A policy naming service accounts
/// is sent with them as principal suffixes (`/ns/<ns>/sa/<sa>`), which is what they
/// match; one naming both service accounts and principals in one match cannot be sent.
pub fn encode(c: &LocalConfig) -> Result<Resources, String> {
    let workloads = c.workloads.iter().map(|w| {
        let a = pw::Address {
            r#type: Some(pw::address::Type::Workload(workload_to(w))),
        };
        (workload_name(w), zring_xds::to_any(ADDRESS_TYPE, &a))
    });
    let services = c.services.iter().map(|s| {
        let a = pw::Address {
            r#type: Some(pw::address::Type::Service(service_to(s))),
        };
        (s.key(), zring_xds::to_any(ADDRESS_TYPE, &a))
    });
    let policies = c.policies.iter().map(|p| {
        let name = p.key();
        let body = policy_to(p).map_err(|e| format!("policy {name}: {e}"))?;
        Ok((name, zring_xds::to_any(AUTHORIZATION_TYPE, &body)))
    });
    Ok(Resources {
        addresses: workloads.chain(services).collect(),
        authorizations: policies.collect::<Result<_, String>>()?,
    })
}

/// xDS resources `(name, body)` by type.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub addresses: Vec<(String, Any)>,
    pub authorizations: Vec<(String, Any)>,
}

fn workload_name(w: &Workload) -> String {
    if w.uid.is_empty() {
        format!("{}/{}", w.namespace, w.name)
    } else {
        w.uid.clone()
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn ports_to(m: &BTreeMap<u16, u16>) -> Vec<pw::Port> {
    m.iter()
        .map(|(s, t)| pw::Port {
            service_port: (*s).into(),
            target_port: (*t).into(),
        })
        .collect()
}

fn workload_to(w: &Workload) -> pw::Workload {
    let protocol = match w.protocol {
        Protocol::Hbone => pw::TunnelProtocol::Hbone,
        Protocol::Tcp => pw::TunnelProtocol::None,
    };
    pw::Workload {
        uid: w.uid.clone(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        addresses: w.workload_ips.iter().map(ip_bytes).collect(),
        tunnel_protocol: protocol.into(),
        trust_domain: w.trust_domain.clone(),
        service_account: w.service_account.clone(),
        node: w.node.clone(),
        services: w
            .services
            .iter()
            .map(|(k, p)| (k.clone(), pw::PortList { ports: ports_to(p) }))
            .collect(),
        authorization_policies: w.authorization_policies.clone(),
        workload_name: w.workload_name.clone(),
        canonical_name: w.canonical_name.clone(),
        canonical_revision: w.canonical_revision.clone(),
        cluster_id: w.cluster_id.clone(),
        locality: (w.locality != Locality::default()).then(|| pw::Locality {
            region: w.locality.region.clone(),
            zone: w.locality.zone.clone(),
            subzone: w.locality.subzone.clone(),
        }),
        ..Default::default()
    }
}

fn service_to(s: &Service) -> pw::Service {
    pw::Service {
        name: s.name.clone(),
        namespace: s.namespace.clone(),
        hostname: s.hostname.clone(),
        addresses: s
            .vips
            .iter()
            .map(|v| pw::NetworkAddress {
                network: v.network.clone(),
                address: ip_bytes(&v.ip),
            })
            .collect(),
        ports: ports_to(&s.ports),
    }
}

fn policy_to(p: &Policy) -> Result<ps::Authorization, String> {
    let scope = match p.scope {
        Scope::Global => ps::Scope::Global,
        Scope::Namespace => ps::Scope::Namespace,
        Scope::WorkloadSelector => ps::Scope::WorkloadSelector,
    };
    let action = match p.action {
        Action::Allow => ps::Action::Allow,
        Action::Deny => ps::Action::Deny,
    };
    let mut rules = Vec::with_capacity(p.rules.len());
    for clauses in &p.rules {
        let mut rule = ps::Rule::default();
        for ms in clauses {
            let matches = ms.iter().map(match_to).collect::<Result<_, _>>()?;
            rule.clauses.push(ps::Clause { matches });
        }
        rules.push(rule);
    }
    Ok(ps::Authorization {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        scope: scope.into(),
        action: action.into(),
        rules,
    })
}

fn match_to(m: &Match) -> Result<ps::Match, String> {
    let ports = |v: &[u16]| v.iter().map(|p| u32::from(*p)).collect();
    Ok(ps::Match {
        namespaces: strings_to(&m.namespaces),
        not_namespaces: strings_to(&m.not_namespaces),
        principals: principals_to(&m.principals, &m.service_accounts)?,
        not_principals: principals_to(&m.not_principals, &m.not_service_accounts)?,
        source_ips: cidrs_to(&m.source_ips),
        not_source_ips: cidrs_to(&m.not_source_ips),
        destination_ips: cidrs_to(&m.destination_ips),
        not_destination_ips: cidrs_to(&m.not_destination_ips),
        destination_ports: ports(&m.destination_ports),
        not_destination_ports: ports(&m.not_destination_ports),
    })
}

fn principals_to(
    principals: &[StringMatch],
    accounts: &[ServiceAccountMatch],
) -> Result<Vec<ps::StringMatch>, String> {
    if accounts.is_empty() {
        return Ok(strings_to(principals));
    }
    if !principals.is_empty() {
        return Err(
            "a match names both principals and service accounts; xDS has no \
                    service-account field, so write the accounts as principals"
                .into(),
        );
    }
    let as_suffix = |a: &ServiceAccountMatch| {
        StringMatch::Suffix(format!("/ns/{}/sa/{}", a.namespace, a.service_account))
    };
    Ok(strings_to(
        &accounts.iter().map(as_suffix).collect::<Vec<_>>(),
    ))
}

fn strings_to(v: &[StringMatch]) -> Vec<ps::StringMatch> {
    use ps::string_match::MatchType;
    v.iter()
        .map(|s| ps::StringMatch {
            match_type: Some(match s {
                StringMatch::Exact(x) => MatchType::Exact(x.clone()),
                StringMatch::Prefix(x) => MatchType::Prefix(x.clone()),
                StringMatch::Suffix(x) => MatchType::Suffix(x.clone()),
                StringMatch::Presence => MatchType::Presence(()),
            }),
        })
        .collect()
}

fn cidrs_to(v: &[Cidr]) -> Vec<ps::Address> {
    v.iter()
        .map(|c| ps::Address {
            address: ip_bytes(&c.addr()),
            length: c.prefix().into(),
        })
        .collect()
}

#[cfg(test)]
#[path = "xds_tests.rs"]
mod tests;
