//! One generation of the proxy's view of the mesh: the resources by name and the indexes
//! lookups and checks need, all persistent maps. A new generation is the previous one with
//! a delta applied ([`super::delta`]): it shares every untouched node, so building it costs
//! O(delta × log N) and cloning it (publishing, a core adopting it) costs a few reference
//! counts.
//!
//! | index | key → value | used by |
//! |---|---|---|
//! | `by_ip` | workload IP → workload | routing, inbound checks, metrics labels; duplicate IPs |
//! | `by_vip`, `by_hostname` | VIP / hostname → service | routing; duplicate VIPs and hostnames |
//! | `service_keys`, `endpoints` | `ns/hostname` → service, endpoints | round robin; a workload's `services` must name a service |
//! | `policy_keys` | `ns/name` → policy | `authorizationPolicies` resolve (an unknown name is skipped, as in ztunnel) |
//! | `global`, `by_namespace`, `by_selector` | scope → policies (key order) | authorization without scanning every policy |
//! | `local_ids` | identity → local workloads | certificates to request |
//! | `local` | name → workload on our node | the pods the node side enrols |

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use super::index::{Endpoints, Map, Name, Owners, Rec, P, S, W};
use super::local::{LocalConfig, Service, Workload};
use super::{ConfigError, ConfigErrors};
use crate::identity::Identity;

pub use super::index::Endpoint;

/// The proxy's view of the mesh; cheap to clone and share across cores.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub(super) node: Option<Arc<str>>,
    pub(super) workloads: Map<Name, W>,
    pub(super) services: Map<Name, S>,
    pub(super) policies: Map<Name, P>,
    pub(super) ix: Indexes,
}

/// Policy lists by a name (namespace or workload), each in key order.
pub(super) type Buckets = Map<Box<str>, Arc<[P]>>;

/// See the module's table.
#[derive(Debug, Clone, Default)]
pub(super) struct Indexes {
    pub by_ip: Map<IpAddr, Owners<W>>,
    /// Key → names of the workloads whose name is not their key (a workload named by its
    /// key, as every file workload and every xDS one with a uid is, is found in
    /// `workloads` under it: this index then holds nothing for it).
    pub workload_keys: Map<Name, Owners<Name>>,
    pub by_vip: Map<IpAddr, Owners<S>>,
    pub by_hostname: Map<Box<str>, Owners<S>>,
    pub service_keys: Map<Name, Owners<S>>,
    pub endpoints: Map<Name, Endpoints>,
    pub policy_keys: Map<Name, Owners<P>>,
    pub global: Option<Arc<[P]>>,
    pub by_namespace: Buckets,
    /// Namespace → workload name → the `WorkloadSelector` policies naming it.
    pub by_selector: Map<Box<str>, Buckets>,
    pub local_ids: Map<Identity, u32>,
    /// The workloads on our node, by name.
    pub local: Map<Name, W>,
}

impl Snapshot {
    /// Validates `local` and indexes it. `node`: our node name (None: every workload is local).
    pub fn new(local: LocalConfig, node: Option<&str>) -> Result<Snapshot, ConfigError> {
        Ok(Snapshot::build(local, node)?)
    }

    /// [`Snapshot::new`], with every problem of `local` on failure.
    pub fn build(local: LocalConfig, node: Option<&str>) -> Result<Snapshot, ConfigErrors> {
        Snapshot::empty(node).apply_local(local)
    }

    /// An empty snapshot: everything is passthrough, every connection allowed.
    pub fn empty(node: Option<&str>) -> Snapshot {
        Snapshot {
            node: node.map(Arc::from),
            ..Snapshot::default()
        }
    }

    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The workloads, in no particular order.
    pub fn workloads(&self) -> Resources<'_, Workload> {
        Resources(&self.workloads)
    }

    /// The services, in no particular order.
    pub fn services(&self) -> Resources<'_, Service> {
        Resources(&self.services)
    }

    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&Workload> {
        self.ix.by_ip.get(&ip).map(|o| &o.first().item)
    }

    pub fn service_by_vip(&self, ip: IpAddr) -> Option<&Service> {
        self.service_rec_by_vip(ip).map(|s| &s.item)
    }

    pub fn service_by_hostname(&self, hostname: &str) -> Option<&Service> {
        self.service_rec_by_hostname(hostname).map(|s| &s.item)
    }

    pub(super) fn service_rec_by_vip(&self, ip: IpAddr) -> Option<&S> {
        self.ix.by_vip.get(&ip).map(Owners::first)
    }

    pub(super) fn service_rec_by_hostname(&self, hostname: &str) -> Option<&S> {
        self.ix.by_hostname.get(hostname).map(Owners::first)
    }

    /// Whether `ip` is a workload on our node (every known workload when no node is set).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.workload_by_ip(ip).is_some_and(|w| self.on_our_node(w))
    }

    pub(super) fn on_our_node(&self, w: &Workload) -> bool {
        self.node.as_deref().is_none_or(|n| w.node == n)
    }

    /// The SPIFFE identity `w`'s certificate carries.
    pub fn identity(&self, w: &Workload) -> Identity {
        Identity::new(&w.trust_domain, &w.namespace, &w.service_account)
    }

    /// The identities of the workloads on our node, sorted (from the identity index).
    pub fn local_identities(&self) -> Vec<Identity> {
        let mut ids: Vec<Identity> = self.ix.local_ids.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Whether `other` has the same [`Self::local_identities`]. O(1) when the identity
    /// index is shared with `other`'s, as it is after a delta that touched no workload
    /// of our node (a single-workload push elsewhere in the mesh).
    pub fn same_local_identities(&self, other: &Snapshot) -> bool {
        self.ix.local_ids.ptr_eq(&other.ix.local_ids)
            || self.local_identities() == other.local_identities()
    }

    /// The workloads on our node (every workload when no node is set), in no particular
    /// order: O(local workloads), whatever the size of the mesh.
    pub fn local_workloads(&self) -> impl Iterator<Item = &Workload> {
        self.ix.local.values().map(|w| &w.item)
    }

    /// Workloads backing `svc`; empty for a service this snapshot lacks.
    pub fn endpoints(&self, svc: &Service) -> &rpds::VectorSync<Endpoint> {
        static NONE: OnceLock<rpds::VectorSync<Endpoint>> = OnceLock::new();
        match self.ix.endpoints.get(svc.key().as_str()) {
            Some(e) => &e.list,
            None => NONE.get_or_init(rpds::VectorSync::new_sync),
        }
    }

    /// Endpoints of the service `s` (by its key; no allocation).
    pub(super) fn endpoints_of(&self, s: &S) -> Option<&rpds::VectorSync<Endpoint>> {
        self.ix.endpoints.get(&s.key).map(|e| &e.list)
    }

    /// The configuration as a LocalConfig, each list sorted by name (for `/config_dump`
    /// and tests; O(N log N)).
    pub fn to_local_config(&self) -> LocalConfig {
        LocalConfig {
            workloads: sorted_items(&self.workloads),
            services: sorted_items(&self.services),
            policies: sorted_items(&self.policies),
        }
    }
}

fn sorted_items<T: Clone>(m: &Map<Name, Arc<Rec<T>>>) -> Vec<T> {
    let mut v: Vec<_> = m.values().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v.into_iter().map(|r| r.item.clone()).collect()
}

/// Two snapshots hold the same resources under the same names (indexes follow from them).
impl PartialEq for Snapshot {
    fn eq(&self, other: &Snapshot) -> bool {
        self.node == other.node
            && same(&self.workloads, &other.workloads)
            && same(&self.services, &other.services)
            && same(&self.policies, &other.policies)
    }
}

fn same<T: PartialEq>(a: &Map<Name, Arc<T>>, b: &Map<Name, Arc<T>>) -> bool {
    a.size() == b.size() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| w == v))
}

/// A read-only view of one kind of resource.
pub struct Resources<'a, T>(&'a Map<Name, Arc<Rec<T>>>);

impl<'a, T: 'a> Resources<'a, T> {
    pub fn iter(&self) -> impl Iterator<Item = &'a T> + 'a {
        self.0.values().map(|r| &r.item)
    }

    pub fn len(&self) -> usize {
        self.0.size()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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
