//! istiod's resources ↔ zring's configuration model, and the resource store behind the xDS
//! client.
//!
//! Decoding refuses a resource with a reason an operator can act on (it goes into the
//! NACK). [`XdsStore::apply`] never touches the store: the resources that decode become a
//! delta applied to a copy of the generation in force (O(delta × log N): see
//! [`super::delta`]) and returned as a [`Candidate`]; a resource whose change would make
//! the configuration invalid is refused by name and the rest still applies.
//! [`XdsStore::apply_and_publish`] keeps the candidate only once it was published — so the
//! store is never ahead of what the cores run, and the data path never sees half an
//! update. Encoding is the control plane's side (the load generator serves a LocalConfig).

use std::collections::BTreeMap;
use std::net::IpAddr;

use prost::Message;
use smallvec::{smallvec, SmallVec};
use zring_xds::delta::{Rejected, Update, Upsert};
use zring_xds::prost_types::Any;
use zring_xds::{security as ps, workload as pw, ADDRESS_TYPE, AUTHORIZATION_TYPE};

use super::delta::{self, Kind};
use super::index::{Name, Rec};
use super::local::{or_default, Locality, DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN};
use super::text::Str;
use super::{
    Action, Cidr, ConfigErrors, LocalConfig, Match, NetworkAddress, Policy, Protocol, Scope,
    Service, ServiceAccountMatch, Snapshot, StringMatch, Workload, WorkloadServices,
};

/// One `istio.workload.Address`.
#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    Workload(Box<Workload>),
    Service(Service),
}

/// The resources received so far, by xDS name: the generation the cores run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XdsStore {
    snapshot: Snapshot,
}

/// An update applied to a copy of the store: the store to keep once the cores run it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub store: XdsStore,
}

impl Candidate {
    /// The generation the cores would run.
    pub fn snapshot(&self) -> &Snapshot {
        &self.store.snapshot
    }
}

impl XdsStore {
    /// An empty store for a proxy on `node` (None: every workload is local).
    pub fn new(node: Option<&str>) -> XdsStore {
        XdsStore {
            snapshot: Snapshot::empty(node),
        }
    }

    /// The generation in force.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Applies one response to a copy of the store. Returns the refused resources (for the
    /// NACK) and, when anything changed, the candidate; `self` is left as it was.
    ///
    /// When the whole update would make the configuration invalid, only the changes that
    /// break it are refused (see [`apply_valid`]), each named with the problems it causes.
    pub fn apply(&self, update: &Update) -> (Vec<Rejected>, Option<Candidate>) {
        let (mut rejected, changes) = decode_all(update, &self.snapshot);
        let all = changes.iter().flat_map(|c| &c.deltas);
        let (next, changed) = match self.snapshot.try_apply(all) {
            Ok(applied) => applied,
            Err(_) => {
                let mut next = self.snapshot.clone();
                let (refused, changed) = apply_valid(&mut next, changes);
                rejected.extend(refused);
                (next, changed)
            }
        };
        let candidate = changed.then(|| Candidate {
            store: XdsStore { snapshot: next },
        });
        (rejected, candidate)
    }

    /// [`Self::apply`], then `publish` the candidate's generation; the candidate replaces
    /// the store only when `publish` succeeded. When it fails, every resource of the update
    /// is refused with its error and the store stays as it was, so a resend is applied
    /// again. Returns the refused resources.
    pub fn apply_and_publish<E: std::fmt::Display>(
        &mut self,
        update: &Update,
        publish: impl FnOnce(Snapshot) -> Result<(), E>,
    ) -> Vec<Rejected> {
        let (rejected, candidate) = self.apply(update);
        let Some(Candidate { store }) = candidate else {
            return rejected;
        };
        match publish(store.snapshot.clone()) {
            Ok(()) => {
                *self = store;
                rejected
            }
            Err(e) => refuse_all(update, &format!("cannot be put in force: {e}")),
        }
    }

    /// The store as a LocalConfig (sorted by name; O(N log N)).
    pub fn to_local_config(&self) -> LocalConfig {
        self.snapshot.to_local_config()
    }
}

/// Applies to `snap` the changes that keep the configuration valid and refuses the rest,
/// each with the problems it causes; returns them and whether anything changed.
/// Dependencies go first (see [`rank`]); then the changes are split in halves until a part
/// applies cleanly, so one bad resource costs about 2·log₂(n) trial deltas (each
/// O(part × log N)), not n. Passes repeat over the refused ones while one more applies.
fn apply_valid(snap: &mut Snapshot, mut changes: Vec<Change>) -> (Vec<Rejected>, bool) {
    changes.sort_by_key(|c| c.rank);
    let mut pending = changes;
    let mut changed = false;
    loop {
        let before = pending.len();
        let mut refused = Vec::new();
        apply_parts(snap, &pending, &mut refused, &mut changed);
        if refused.is_empty() || refused.len() == before {
            let refused = refused.into_iter().map(|(c, p)| c.refused(&p)).collect();
            return (refused, changed);
        }
        pending = refused.into_iter().map(|(c, _)| c).collect();
    }
}

/// Applies `changes` whole if the configuration stays valid, else each half in turn; a
/// single change that breaks it goes to `refused` with the problems.
fn apply_parts(
    snap: &mut Snapshot,
    changes: &[Change],
    refused: &mut Vec<(Change, ConfigErrors)>,
    changed: &mut bool,
) {
    let problems = match snap.try_apply(changes.iter().flat_map(|c| &c.deltas)) {
        Ok((next, any)) => {
            *snap = next;
            *changed |= any;
            return;
        }
        Err(problems) => problems,
    };
    match changes {
        [] => {}
        [one] => refused.push((one.clone(), problems)),
        _ => {
            let (first, second) = changes.split_at(changes.len() / 2);
            apply_parts(snap, first, refused, changed);
            apply_parts(snap, second, refused, changed);
        }
    }
}

/// One resource of an update as the delta it asks for.
#[derive(Debug, Clone)]
struct Change {
    name: Name,
    removal: bool,
    /// Order of application: a workload may name services and policies, so workloads go
    /// out first (0), services and policies come in (1), workloads come in (2), services
    /// and policies go out (3).
    rank: u8,
    /// Inline: at a cold start, 100k small vectors freed after the apply left holes in
    /// the pages the store's own allocations of their size share.
    deltas: SmallVec<[delta::Change; 2]>,
}

impl Change {
    fn refused(self, problems: &ConfigErrors) -> Rejected {
        let what = if self.removal {
            "removing this resource"
        } else {
            "this resource"
        };
        Rejected {
            name: self.name.to_string(),
            reason: format!("{what} would make the configuration invalid:\n{problems}"),
        }
    }

    /// An upsert: an Address name holds a workload or a service, never both. The store
    /// keeps `name`'s allocation, which the subscription shares for the version.
    fn upsert(name: &Name, item: Item) -> Change {
        let n = name.clone();
        let (rank, deltas) = match item {
            Item::Address(Address::Workload(w)) => (
                2,
                smallvec![
                    delta::Change::Drop(Kind::Service, n.clone()),
                    delta::Change::Workload(Rec::<Workload>::new(n, *w)),
                ],
            ),
            Item::Address(Address::Service(s)) => (
                1,
                smallvec![
                    delta::Change::Drop(Kind::Workload, n.clone()),
                    delta::Change::Service(Rec::<Service>::new(n, s)),
                ],
            ),
            Item::Policy(p) => (
                1,
                smallvec![delta::Change::Policy(Rec::<Policy>::new(n, p))],
            ),
        };
        Change {
            name: name.clone(),
            removal: false,
            rank,
            deltas,
        }
    }

    fn removal(type_url: &str, name: &str, snap: &Snapshot) -> Change {
        let n = Name::from(name);
        let deltas = if type_url == ADDRESS_TYPE {
            smallvec![
                delta::Change::Drop(Kind::Workload, n.clone()),
                delta::Change::Drop(Kind::Service, n.clone()),
            ]
        } else {
            smallvec![delta::Change::Drop(Kind::Policy, n.clone())]
        };
        let workload = type_url == ADDRESS_TYPE && snap.workloads.contains_key(name);
        Change {
            name: n,
            removal: true,
            rank: if workload { 0 } else { 3 },
            deltas,
        }
    }
}

/// One decoded resource.
#[derive(Debug, Clone)]
enum Item {
    Address(Address),
    Policy(Policy),
}

/// The update's resources decoded, in order (upserts, then removals), and the ones that
/// do not decode, refused with why. A large update (a cold start) is decoded on every
/// core the process may use ([`par_map`]): decoding is a fifth of a cold start.
fn decode_all(update: &Update, snap: &Snapshot) -> (Vec<Rejected>, Vec<Change>) {
    let mut rejected = Vec::new();
    // One allocation of the right size: grown by doubling, a cold start's ~100k changes
    // were copied ~17 times into fresh pages.
    let mut changes = Vec::with_capacity(update.upserts.len() + update.removed.len());
    let pieces = par_map(&update.upserts, |r| decode_upsert(&update.type_url, r));
    for decoded in pieces.into_iter().flatten() {
        match decoded {
            Ok(change) => changes.push(change),
            Err(r) => rejected.push(r),
        }
    }
    let removed = update.removed.iter();
    changes.extend(removed.map(|n| Change::removal(&update.type_url, n, snap)));
    (rejected, changes)
}

fn decode_upsert(type_url: &str, r: &Upsert) -> Result<Change, Rejected> {
    let decoded = r
        .body()
        .ok_or_else(|| "the resource has no body".to_string())
        .and_then(|body| decode(type_url, body, &r.name));
    match decoded {
        Ok(item) => Ok(Change::upsert(&r.name, item)),
        Err(reason) => Err(Rejected {
            name: r.name.to_string(),
            reason,
        }),
    }
}

/// Items per decoding thread below which an update is decoded on the calling thread.
const PAR_CHUNK: usize = 4096;

/// Items a decoding thread takes at a time.
const PIECE: usize = 1024;

/// `items.iter().map(f)`, in order, in pieces, split over up to `available_parallelism`
/// scoped threads when there are enough items. The threads take pieces as they go — the
/// calling thread from the front, the others from the back — so one that is slower
/// (fresh pages of its own, services decoded by prost, a busy core) does not keep the
/// rest waiting: a fixed split in halves left the calling thread idle for ~35 ms of a
/// 100k cold start. Each other thread starts with a piece of its own; a thread that
/// cannot be started leaves it to the calling thread.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<Vec<R>> {
    let threads = match items.len() / PAR_CHUNK {
        0 | 1 => 1,
        // Reads cgroup files: only for large updates.
        most => std::thread::available_parallelism().map_or(1, |n| n.get().min(most)),
    };
    if threads == 1 {
        return vec![items.iter().map(f).collect()];
    }
    let pieces: Vec<&[T]> = items.chunks(PIECE).collect();
    // The pieces no thread took yet: `front..back`.
    let untaken = std::sync::Mutex::new((0, pieces.len()));
    let take = |from_back: bool| {
        let mut u = untaken.lock().unwrap_or_else(|e| e.into_inner());
        (u.0 < u.1).then(|| match from_back {
            true => {
                u.1 -= 1;
                u.1
            }
            false => {
                u.0 += 1;
                u.0 - 1
            }
        })
    };
    let (pieces, f) = (&pieces, &f);
    let run = move |mut next: Option<usize>, from_back: bool| {
        let mut done = Vec::new();
        while let Some(i) = next {
            done.push((i, pieces[i].iter().map(f).collect::<Vec<R>>()));
            next = take(from_back);
        }
        done
    };
    let mut done: Vec<(usize, Vec<R>)> = std::thread::scope(|scope| {
        let spawned: Vec<_> = (1..threads)
            .filter_map(|_| take(true))
            .map(|first| {
                let thread = std::thread::Builder::new().name("zring-xds-decode".into());
                (
                    first,
                    thread
                        .spawn_scoped(scope, move || run(Some(first), true))
                        .ok(),
                )
            })
            .collect();
        let mut done = run(take(false), false);
        for (first, handle) in spawned {
            match handle.map(|h| h.join()) {
                Some(Ok(theirs)) => done.extend(theirs),
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => done.extend(run(Some(first), false)),
            }
        }
        done
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, piece)| piece).collect()
}

/// A resource's body `(type URL, bytes)` as the item of `type_url` it holds.
fn decode(type_url: &str, body: (&str, &[u8]), name: &Name) -> Result<Item, String> {
    match type_url {
        ADDRESS_TYPE => address(body, Some(name)).map(Item::Address),
        AUTHORIZATION_TYPE => authorization(body).map(Item::Policy),
        other => Err(format!("zring does not subscribe to {other}")),
    }
}

/// Every upsert and removal of `update`, refused with `reason`.
fn refuse_all(update: &Update, reason: &str) -> Vec<Rejected> {
    let names = update.upserts.iter().map(|r| &*r.name);
    names
        .chain(update.removed.iter().map(|n| n.as_str()))
        .map(|name| Rejected {
            name: name.to_string(),
            reason: reason.to_string(),
        })
        .collect()
}

/// Decodes one `istio.workload.Address`.
pub fn decode_address(any: &Any) -> Result<Address, String> {
    address((&any.type_url, &any.value), None)
}

/// [`decode_address`] of a body `(type URL, bytes)` of the resource `name`: a workload
/// straight from the wire (see [`wire`]), anything else through prost.
fn address((type_url, value): (&str, &[u8]), name: Option<&Name>) -> Result<Address, String> {
    check_type(type_url, ADDRESS_TYPE)?;
    match wire::workload(value, name) {
        Some(w) => w.map(|w| Address::Workload(Box::new(w))),
        None => prost_address(value),
    }
}

/// An Address's bytes decoded through prost's message types.
fn prost_address(value: &[u8]) -> Result<Address, String> {
    let a = pw::Address::decode(value).map_err(|e| format!("not an Address: {e}"))?;
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
    authorization((&any.type_url, &any.value))
}

fn authorization((type_url, value): (&str, &[u8])) -> Result<Policy, String> {
    check_type(type_url, AUTHORIZATION_TYPE)?;
    let a = ps::Authorization::decode(value).map_err(|e| format!("not an Authorization: {e}"))?;
    policy_from(a)
}

fn check_type(type_url: &str, want: &str) -> Result<(), String> {
    if type_url == want {
        Ok(())
    } else {
        Err(format!("body has type {type_url:?}, expected {want:?}"))
    }
}

/// Why a workload without an address is refused (both decoding paths say the same).
fn no_address(uid: &str) -> String {
    format!("workload {uid:?} has no address (hostname-only workloads are not supported by zring)")
}

fn workload_from(w: pw::Workload) -> Result<Workload, String> {
    if w.addresses.is_empty() {
        return Err(no_address(&w.uid));
    }
    let workload_ips = w
        .addresses
        .iter()
        .map(|b| ip_from(b))
        .collect::<Result<_, _>>()?;
    let mut services = WorkloadServices::default();
    for (key, list) in &w.services {
        services.insert(key.clone(), ports_from(&list.ports)?);
    }
    Ok(Workload {
        uid: Str::unique(&w.uid),
        name: Str::unique(&w.name),
        namespace: w.namespace.into(),
        service_account: or_default(&w.service_account, DEFAULT_SERVICE_ACCOUNT).into(),
        trust_domain: or_default(&w.trust_domain, DEFAULT_TRUST_DOMAIN).into(),
        workload_ips,
        protocol: match pw::TunnelProtocol::try_from(w.tunnel_protocol) {
            Ok(pw::TunnelProtocol::Hbone) => Protocol::Hbone,
            _ => Protocol::Tcp,
        },
        node: w.node.into(),
        services,
        authorization_policies: w.authorization_policies.into(),
        workload_name: w.workload_name.into(),
        canonical_name: w.canonical_name.into(),
        canonical_revision: w.canonical_revision.into(),
        cluster_id: w.cluster_id.into(),
        locality: w
            .locality
            .map(|l| Locality {
                region: l.region.into(),
                zone: l.zone.into(),
                subzone: l.subzone.into(),
            })
            .unwrap_or_default(),
        waypoint: super::waypoint::from_xds(w.waypoint)?.map(Box::new),
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
        waypoint: super::waypoint::from_xds(s.waypoint)?.map(Box::new),
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
        dry_run: a.dry_run,
        selector: None,
    })
}

fn match_from(m: &ps::Match) -> Result<Match, String> {
    Ok(Match {
        namespaces: strings_from(&m.namespaces)?,
        not_namespaces: strings_from(&m.not_namespaces)?,
        service_accounts: m.service_accounts.iter().map(account_from).collect(),
        not_service_accounts: m.not_service_accounts.iter().map(account_from).collect(),
        principals: strings_from(&m.principals)?,
        not_principals: strings_from(&m.not_principals)?,
        source_ips: cidrs_from(&m.source_ips)?,
        not_source_ips: cidrs_from(&m.not_source_ips)?,
        destination_ips: cidrs_from(&m.destination_ips)?,
        not_destination_ips: cidrs_from(&m.not_destination_ips)?,
        destination_ports: port_list(&m.destination_ports)?,
        not_destination_ports: port_list(&m.not_destination_ports)?,
    })
}

fn account_from(a: &ps::ServiceAccountMatch) -> ServiceAccountMatch {
    ServiceAccountMatch {
        namespace: a.namespace.clone(),
        service_account: a.service_account.clone(),
    }
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

pub(super) fn ip_from(b: &[u8]) -> Result<IpAddr, String> {
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
        w.uid.to_string()
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
        uid: w.uid.to_string(),
        name: w.name.to_string(),
        namespace: w.namespace.to_string(),
        addresses: w.workload_ips.iter().map(ip_bytes).collect(),
        tunnel_protocol: protocol.into(),
        trust_domain: w.trust_domain.to_string(),
        service_account: w.service_account.to_string(),
        node: w.node.to_string(),
        services: w
            .services
            .iter()
            .map(|(k, p)| (k.to_string(), pw::PortList { ports: ports_to(p) }))
            .collect(),
        authorization_policies: w.authorization_policies.to_vec(),
        workload_name: w.workload_name.to_string(),
        canonical_name: w.canonical_name.to_string(),
        canonical_revision: w.canonical_revision.to_string(),
        cluster_id: w.cluster_id.to_string(),
        locality: (w.locality != Locality::default()).then(|| pw::Locality {
            region: w.locality.region.to_string(),
            zone: w.locality.zone.to_string(),
            subzone: w.locality.subzone.to_string(),
        }),
        waypoint: w.waypoint.as_deref().map(super::waypoint::to_xds),
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
        waypoint: s.waypoint.as_deref().map(super::waypoint::to_xds),
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
        dry_run: p.dry_run,
    })
}

fn match_to(m: &Match) -> Result<ps::Match, String> {
    let ports = |v: &[u16]| v.iter().map(|p| u32::from(*p)).collect();
    Ok(ps::Match {
        namespaces: strings_to(&m.namespaces),
        not_namespaces: strings_to(&m.not_namespaces),
        service_accounts: m.service_accounts.iter().map(account_to).collect(),
        not_service_accounts: m.not_service_accounts.iter().map(account_to).collect(),
        principals: strings_to(&m.principals),
        not_principals: strings_to(&m.not_principals),
        source_ips: cidrs_to(&m.source_ips),
        not_source_ips: cidrs_to(&m.not_source_ips),
        destination_ips: cidrs_to(&m.destination_ips),
        not_destination_ips: cidrs_to(&m.not_destination_ips),
        destination_ports: ports(&m.destination_ports),
        not_destination_ports: ports(&m.not_destination_ports),
    })
}

fn account_to(a: &ServiceAccountMatch) -> ps::ServiceAccountMatch {
    ps::ServiceAccountMatch {
        namespace: a.namespace.clone(),
        service_account: a.service_account.clone(),
    }
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

#[path = "xds_wire.rs"]
mod wire;

#[cfg(test)]
#[path = "xds_tests.rs"]
mod tests;
