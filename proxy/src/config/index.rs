//! The building blocks of a generation's indexes: persistent maps (a new generation shares
//! every node it did not touch with the one before), resources behind one `Arc` each, the
//! owners of a key, and a service's endpoints.
//!
//! Persistent maps are [`super::pmap`]'s hash-ordered B+trees: a lookup or a change walks
//! O(log N) nodes of up to 32 entries, and cloning a map is one reference count. A key has
//! one owner in a valid generation; [`Owners`] holds more only while an update is being
//! checked, so a contradictory update is found at the keys it gave a second owner.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use super::local::{Service, Workload};
use super::policy::Policy;

pub(super) type Map<K, V> = super::pmap::PMap<K, V, Hasher>;
pub(super) type Set<K> = super::pmap::PSet<K, Hasher>;
/// The maps' hasher: foldhash, seeded per map. Keys come from the control plane or the
/// operator's file, and SipHash (the default) made hashing a fifth of a cold start.
pub(super) type Hasher = foldhash::fast::RandomState;
/// A resource's name in the store: its xDS name, or its key when read from a file.
pub(super) type Name = Arc<str>;

/// One stored resource: its name, its configuration key (a workload's uid or
/// `namespace/name`, a service's `namespace/hostname`, a policy's `namespace/name`) and
/// the resource itself.
#[derive(Debug, PartialEq)]
pub(super) struct Rec<T> {
    pub name: Name,
    /// Shares `name`'s allocation when they are equal (a workload named by its uid).
    pub key: Name,
    pub item: T,
}

pub(super) type W = Arc<Rec<Workload>>;
pub(super) type S = Arc<Rec<Service>>;
pub(super) type P = Arc<Rec<Policy>>;

impl Rec<Workload> {
    /// A workload named by its uid (as istiod names them) holds one copy of it: `key` and
    /// `item.uid` share `name`'s allocation.
    pub fn new(name: Name, mut item: Workload) -> W {
        let key = if item.uid.is_empty() {
            item.to_string().into()
        } else if item.uid == *name {
            item.uid = name.clone().into();
            name.clone()
        } else {
            item.uid.as_str().into()
        };
        Arc::new(Rec { name, key, item })
    }
}

impl Rec<Service> {
    pub fn new(name: Name, item: Service) -> S {
        Arc::new(Rec {
            name,
            key: item.key().into(),
            item,
        })
    }
}

impl Rec<Policy> {
    pub fn new(name: Name, item: Policy) -> P {
        Arc::new(Rec {
            name,
            key: item.key().into(),
            item,
        })
    }
}

/// The resources that claim one key (an IP, a VIP, a hostname, a key).
#[derive(Debug, Clone)]
pub(super) enum Owners<T> {
    One(T),
    Many(Box<[T]>),
}

impl<T> Owners<T> {
    pub fn all(&self) -> &[T] {
        match self {
            Owners::One(t) => std::slice::from_ref(t),
            Owners::Many(v) => v,
        }
    }

    pub fn first(&self) -> &T {
        &self.all()[0]
    }

    /// Adds `owner` after the others.
    pub fn push(&mut self, owner: T)
    where
        T: Clone,
    {
        let mut v = self.all().to_vec();
        v.push(owner);
        *self = Owners::Many(v.into());
    }
}

/// Something that names the resource it came from.
pub(super) trait Named {
    fn name(&self) -> &str;
}

impl<T> Named for Arc<Rec<T>> {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for Name {
    fn name(&self) -> &str {
        self
    }
}

/// Adds `owner` to `key`'s owners; whether the key now has more than one (a conflict the
/// update's checks must look at).
pub(super) fn add_owner<K, T>(map: &mut Map<K, Owners<T>>, key: K, owner: T) -> bool
where
    K: Hash + Eq + Clone,
    T: Clone,
{
    match map.get_mut(&key) {
        None => {
            map.insert_mut(key, Owners::One(owner));
            false
        }
        Some(o) => {
            o.push(owner);
            true
        }
    }
}

/// Removes the owners named `name` from `key`'s owners (the key goes when none is left).
pub(super) fn remove_owner<K, Q, T>(map: &mut Map<K, Owners<T>>, key: &Q, name: &str)
where
    K: Hash + Eq + Clone + std::borrow::Borrow<Q>,
    Q: Hash + Eq + ?Sized,
    T: Clone + Named,
{
    let Some((k, o)) = map.get_key_value(key) else {
        return;
    };
    let k = k.clone();
    let rest: Vec<T> = o
        .all()
        .iter()
        .filter(|t| t.name() != name)
        .cloned()
        .collect();
    let mut rest = rest.into_iter();
    match (rest.next(), rest.len()) {
        (None, _) => {
            map.remove_mut::<K>(&k);
        }
        (Some(one), 0) => {
            map.insert_mut(k, Owners::One(one));
        }
        (Some(one), _) => {
            map.insert_mut(k, Owners::Many(std::iter::once(one).chain(rest).collect()));
        }
    }
}

/// A workload that backs a service, with its own port translation for that service.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub(super) rec: W,
    /// The workload's first IP (the one traffic is sent to).
    pub ip: IpAddr,
    /// The workload's service port → target port override (often empty).
    pub ports: Box<[(u16, u16)]>,
}

impl Endpoint {
    /// The override for `service_port`, if this workload has one.
    pub fn target_port(&self, service_port: u16) -> Option<u16> {
        self.ports
            .iter()
            .find(|(s, _)| *s == service_port)
            .map(|(_, t)| *t)
    }

    /// The workload behind this endpoint.
    pub fn workload(&self) -> &Workload {
        &self.rec.item
    }
}

/// The workloads that name one service key: those with an IP as a persistent vector the
/// round robin indexes into (a workload's position is kept, so adding or removing one is
/// O(log n): the last one takes the removed one's place), and those without an IP by name
/// (they still count as naming the service).
///
/// A workload's position is found by scanning a list of up to [`SCAN_MAX`] endpoints (most
/// services have a few) and from a name → position index in longer ones: the index cost
/// ~130 bytes per workload, a third of a small service's share of the store.
#[derive(Debug, Clone, Default)]
pub(super) struct Endpoints {
    pub list: rpds::VectorSync<Endpoint>,
    pos: Option<Map<Name, usize>>,
    ipless: Set<Name>,
}

/// The longest endpoint list searched without an index (it is built beyond this length
/// and dropped below half of it).
pub(super) const SCAN_MAX: usize = 32;

impl Endpoints {
    /// The endpoints of `members` (each workload once), in their order: what
    /// [`Self::put`] of each in turn would hold.
    pub fn of(members: impl IntoIterator<Item = Member>) -> Endpoints {
        let mut e = Endpoints::default();
        for m in members {
            match m {
                Member::Listed(ep) => e.list.push_back_mut(ep),
                Member::Ipless(name) => {
                    e.ipless.insert_mut(name);
                }
            }
        }
        if e.list.len() > SCAN_MAX {
            e.pos = Some(e.index());
        }
        e
    }

    /// Adds or replaces `w`'s entry, keeping its position when it had one. `listed`: it
    /// may have one (false: it is known not to, and the list is not searched).
    pub fn put(&mut self, w: &W, ports: Box<[(u16, u16)]>, listed: bool) {
        let Some(ip) = w.item.workload_ips.first().copied() else {
            if listed {
                self.remove(&w.name);
            }
            self.ipless.insert_mut(w.name.clone());
            return;
        };
        if listed {
            self.ipless.remove_mut(&w.name);
        }
        let ep = Endpoint {
            rec: w.clone(),
            ip,
            ports,
        };
        match listed.then(|| self.position(&w.name)).flatten() {
            Some(i) => {
                self.list.set_mut(i, ep);
            }
            None => {
                if let Some(pos) = &mut self.pos {
                    pos.insert_mut(w.name.clone(), self.list.len());
                }
                self.list.push_back_mut(ep);
                if self.pos.is_none() && self.list.len() > SCAN_MAX {
                    self.pos = Some(self.index());
                }
            }
        }
    }

    /// Removes `name`'s entry; the last endpoint moves into its place.
    pub fn remove(&mut self, name: &str) {
        self.ipless.remove_mut(name);
        let Some(i) = self.position(name) else {
            return;
        };
        let last = self.list.len() - 1;
        if i != last {
            let moved = self.list[last].clone();
            if let Some(pos) = &mut self.pos {
                pos.insert_mut(moved.rec.name.clone(), i);
            }
            self.list.set_mut(i, moved);
        }
        self.list.drop_last_mut();
        if let Some(pos) = &mut self.pos {
            pos.remove_mut(name);
        }
        if self.list.len() < SCAN_MAX / 2 {
            self.pos = None;
        }
    }

    /// Where `name`'s endpoint is in `list`.
    fn position(&self, name: &str) -> Option<usize> {
        match &self.pos {
            Some(pos) => pos.get(name).copied(),
            None => self.list.iter().position(|e| &*e.rec.name == name),
        }
    }

    /// The name → position index of `list`.
    fn index(&self) -> Map<Name, usize> {
        let names = self.list.iter().enumerate();
        let entries = names.map(|(i, e)| (e.rec.name.clone(), i));
        Map::build(entries, |_, mut i| i.next())
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.ipless.is_empty()
    }

    /// Names of the workloads naming this service (those with an IP first).
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        let listed = self.list.iter().map(|e| &e.rec.name);
        listed.chain(self.ipless.iter())
    }
}

/// A workload that names a service, as the service's [`Endpoints`] hold it.
pub(super) enum Member {
    Listed(Endpoint),
    /// It has no IP.
    Ipless(Name),
}

impl Member {
    /// `w`, whose port overrides for the service are `ports`.
    pub fn of(w: &W, ports: &BTreeMap<u16, u16>) -> Member {
        match w.item.workload_ips.first() {
            Some(ip) => Member::Listed(Endpoint {
                rec: w.clone(),
                ip: *ip,
                ports: ports.iter().map(|(s, t)| (*s, *t)).collect(),
            }),
            None => Member::Ipless(w.name.clone()),
        }
    }
}

/// Adds `p` to a policy list kept in key order (a scope's bucket: small).
pub(super) fn with_policy(list: Option<&Arc<[P]>>, p: &P) -> Arc<[P]> {
    let mut v: Vec<P> = list.map(|l| l.to_vec()).unwrap_or_default();
    v.retain(|q| q.name != p.name);
    let at = v.partition_point(|q| (&q.key, &q.name) < (&p.key, &p.name));
    v.insert(at, p.clone());
    v.into()
}

/// `list` without the policy named `name` (None when nothing is left).
pub(super) fn without_policy(list: &Arc<[P]>, name: &str) -> Option<Arc<[P]>> {
    let v: Vec<P> = list.iter().filter(|q| &*q.name != name).cloned().collect();
    (!v.is_empty()).then(|| v.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(n: u8) -> W {
        let w = Workload {
            name: format!("w{n}").into(),
            workload_ips: vec![IpAddr::from([10, 0, 0, n])].into(),
            ..Workload::default()
        };
        Rec::<Workload>::new(Name::from(format!("w{n}")), w)
    }

    /// A stored workload (with the `Arc`'s two counts) stays in mimalloc's 320-byte size
    /// class: one field more and 100k workloads take 12.8 MB more (the next class is 384).
    #[test]
    fn a_stored_workload_fits_its_size_class() {
        assert!(std::mem::size_of::<Rec<Workload>>() + 16 <= 320);
    }

    proptest! {
        /// Puts and removes across the index threshold keep the list as a swap-remove
        /// vector would, with every name found where it is.
        #[test]
        fn endpoints_match_a_swap_remove_vector(
            ops in proptest::collection::vec((any::<bool>(), 0u8..3 * SCAN_MAX as u8), 1..400)
        ) {
            let mut e = Endpoints::default();
            let mut model: Vec<String> = Vec::new();
            for (put, n) in ops {
                let name = format!("w{n}");
                if put {
                    e.put(&rec(n), Box::new([]), true);
                    if !model.contains(&name) {
                        model.push(name);
                    }
                } else {
                    e.remove(&name);
                    if let Some(i) = model.iter().position(|m| *m == name) {
                        model.swap_remove(i);
                    }
                }
                let names: Vec<String> = e.names().map(|n| n.to_string()).collect();
                prop_assert_eq!(&names, &model);
                prop_assert!(e.pos.is_none() || model.len() >= SCAN_MAX / 2);
                prop_assert!(e.pos.is_some() || model.len() <= SCAN_MAX);
                for (i, m) in model.iter().enumerate() {
                    prop_assert_eq!(e.position(m), Some(i));
                }
            }
        }
    }
}
