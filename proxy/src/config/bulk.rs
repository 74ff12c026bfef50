//! A cold start: the first generation built at once from an update to the empty one.
//!
//! Applying the changes one by one walks every index once per change. Here the loops are
//! turned around: each index is built from all the changes in one go, sorted by hash and
//! cut into full nodes ([`PMap::build`](super::pmap::PMap::build)), and the indexes of a
//! large update are built on two threads. The rules between resources fall out of the
//! build: a key with two owners is found where its entries are merged, and a service
//! workloads name is looked up once per service, not once per workload.
//!
//! The result is what applying the changes one by one makes, problems included (the tests
//! check the two against each other). Policies are few and go one by one after the rest.

use std::collections::HashSet;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use super::delta::{Change, Kind};
use super::index::{Endpoints, Hasher, Map, Member, Name, Owners, Rec, S, W};
use super::local::{Service, Workload};
use super::snapshot::Snapshot;
use super::validate::{self, Dirty};
use super::{ConfigError, ConfigErrors};

/// Updates of at least this many changes are built on two threads.
const SPLIT: usize = 4096;

/// A change's place in the update: owners and endpoints keep this order.
type Seq = u32;

impl Snapshot {
    /// Whether this generation holds no resource (every index is then empty too).
    pub(super) fn is_blank(&self) -> bool {
        self.workloads.is_empty() && self.services.is_empty() && self.policies.is_empty()
    }

    /// [`Snapshot::try_apply`] for a blank `self`: built index by index, or one by one
    /// when a name comes twice in `changes`.
    pub(super) fn try_build(&self, changes: &[&Change]) -> Result<(Snapshot, bool), ConfigErrors> {
        match self.build_at_once(changes) {
            Some(built) => built,
            None => self.apply_each(changes.iter().copied()),
        }
    }

    /// `changes` built into `self`; None when a name comes twice. A large update is built
    /// on two threads: this one files the workloads by name, IP, key and node; the other
    /// builds the services' indexes and the endpoints; each checks half the resources on
    /// its own. Neither waits for the other: when the build goes through (no name twice)
    /// the workloads filed are every workload put, in order, so the endpoints are built
    /// from the changes themselves.
    pub(super) fn build_at_once(
        &self,
        changes: &[&Change],
    ) -> Option<Result<(Snapshot, bool), ConfigErrors>> {
        let workloads = puts(changes, Kind::Workload);
        let mut next = self.clone();
        let (ws, found, (sides, more)) = if changes.len() >= SPLIT {
            let half = changes.len() / 2;
            std::thread::scope(|scope| {
                let work = move || {
                    let side = services_side(changes);
                    let endpoints = endpoints(&put_workloads(changes));
                    (side, endpoints, own(&changes[half..], half))
                };
                let thread = std::thread::Builder::new().name("zring-build".into());
                let spawned = thread.spawn_scoped(scope, work);
                let (map, ws) = resolve(workloads, changes)?;
                let mut found = self.workloads_side(&mut next, map, &ws);
                found.own = own(&changes[..half], 0);
                let (side, endpoints, theirs) = match spawned {
                    Ok(side) => side.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    // No second thread: its share on this one.
                    Err(_) => (
                        services_side(changes),
                        endpoints(&ws),
                        own(&changes[half..], half),
                    ),
                };
                found.own.extend(theirs);
                next.ix.endpoints = endpoints;
                Some((ws, found, side?))
            })?
        } else {
            let (map, ws) = resolve(workloads, changes)?;
            let mut found = self.workloads_side(&mut next, map, &ws);
            found.own = own(changes, 0);
            next.ix.endpoints = endpoints(&ws);
            (ws, found, services_side(changes)?)
        };
        sides.put_in(&mut next);
        let mut errs = found.and(more).in_order();
        let mut dirty = Dirty::default();
        for c in changes {
            if matches!(c, Change::Policy(_) | Change::Drop(Kind::Policy, _)) {
                next.change(c, &mut dirty, &mut errs);
            }
        }
        validate::check(&next, &dirty, &mut errs);
        references(&next, &ws, &mut errs);
        // One by one, every put changes a blank generation.
        let put = |c: &&Change| matches!(c, Change::Workload(_) | Change::Service(_));
        let changed = changes.iter().any(put) || dirty.changed;
        Some(errs.into_result((next, changed)))
    }

    /// Puts the workloads `map` (`ws`: the same in the order they were put) in `next`
    /// with the indexes that follow from them alone, but the endpoints.
    fn workloads_side(&self, next: &mut Snapshot, map: Map<Name, W>, ws: &[&W]) -> Problems {
        let mut found = Problems::default();
        let ips = ws.iter().enumerate().flat_map(|(i, w)| {
            let ips = w.item.workload_ips.iter();
            ips.map(move |ip| (i as Seq, *ip, (*w).clone()))
        });
        next.ix.by_ip = owners(ws.len(), ips, |i, ip, o| {
            if let Owners::Many(v) = o {
                found.ips.push((i, validate::duplicate_ip(*ip, v)));
            }
        });
        // A workload named by its key is not filed under it (see `workload_keys`).
        let keyed = ws.iter().enumerate().filter(|(_, w)| *w.key != *w.name);
        let keys = keyed.map(|(i, w)| (i as Seq, w.key.clone(), w.name.clone()));
        next.ix.workload_keys = owners(0, keys, |i, k, o| {
            let named = map.get(k).is_some_and(|w| w.key == *k);
            if usize::from(named) + o.all().len() > 1 {
                found.keys.push((i, validate::duplicate("workload", k)));
            }
        });
        let local: Vec<&W> = ws
            .iter()
            .copied()
            .filter(|w| self.on_our_node(&w.item))
            .collect();
        let ids = local.iter().map(|w| (self.identity(&w.item), 1));
        next.ix.local_ids = Map::build(ids, |_, ones| Some(ones.sum()));
        let names = local.iter().map(|w| (w.name.clone(), (*w).clone()));
        next.ix.local = Map::build(names, |_, mut w| w.next());
        next.workloads = map;
        found
    }
}

/// The problems of its own of each workload and service among `changes` (the update's
/// from its `first`th change on), in order.
fn own(changes: &[&Change], first: usize) -> Vec<(Seq, ConfigError)> {
    let mut found = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let mut errs = ConfigErrors::default();
        match c {
            Change::Workload(w) => validate::workload(&w.item, &mut errs),
            Change::Service(s) => validate::service(&s.item, &mut errs),
            _ => continue,
        }
        found.extend(errs.0.into_iter().map(|e| ((first + i) as Seq, e)));
    }
    found
}

/// The services and their indexes; None when a service's name comes twice.
fn services_side(changes: &[&Change]) -> Option<(Sides, Problems)> {
    let mut found = Problems::default();
    let (services, ss) = resolve(puts::<Service>(changes, Kind::Service), changes)?;
    let each = || ss.iter().enumerate().map(|(i, s)| (i as Seq, *s));
    let vips = each().flat_map(|(i, s)| s.item.vips.iter().map(move |v| (i, v.ip, s.clone())));
    let by_vip = owners(ss.len(), vips, |i, ip, o| {
        if let Owners::Many(v) = o {
            found.vips.push((i, validate::duplicate_vip(*ip, v)));
        }
    });
    let hosts = each().map(|(i, s)| (i, Box::<str>::from(s.item.hostname.as_str()), s.clone()));
    let by_hostname = owners(ss.len(), hosts, |i, h, o| {
        if let Owners::Many(_) = o {
            found
                .hostnames
                .push((i, validate::duplicate("service hostname", h)));
        }
    });
    // Two services of one key have two hostnames: `by_hostname` finds them.
    let keys = each().map(|(i, s)| (i, s.key.clone(), s.clone()));
    let service_keys = owners(ss.len(), keys, |_, _, _| {});
    let sides = Sides {
        services,
        by_vip,
        by_hostname,
        service_keys,
    };
    Some((sides, found))
}

/// The services' part of a generation.
struct Sides {
    services: Map<Name, S>,
    by_vip: Map<IpAddr, Owners<S>>,
    by_hostname: Map<Box<str>, Owners<S>>,
    service_keys: Map<Name, Owners<S>>,
}

impl Sides {
    fn put_in(self, next: &mut Snapshot) {
        next.services = self.services;
        next.ix.by_vip = self.by_vip;
        next.ix.by_hostname = self.by_hostname;
        next.ix.service_keys = self.service_keys;
    }
}

/// Problems found while building, each at the place of the change it starts from, kept
/// apart as one by one they are found apart: each resource's own (as it is put), then
/// the keys with two owners, by kind.
#[derive(Default)]
struct Problems {
    own: Vec<(Seq, ConfigError)>,
    ips: Vec<(Seq, ConfigError)>,
    keys: Vec<(Seq, ConfigError)>,
    vips: Vec<(Seq, ConfigError)>,
    hostnames: Vec<(Seq, ConfigError)>,
}

impl Problems {
    fn and(mut self, o: Problems) -> Problems {
        self.own.extend(o.own);
        self.ips.extend(o.ips);
        self.keys.extend(o.keys);
        self.vips.extend(o.vips);
        self.hostnames.extend(o.hostnames);
        self
    }

    fn in_order(self) -> ConfigErrors {
        let mut errs = ConfigErrors::default();
        for mut part in [self.own, self.ips, self.keys, self.vips, self.hostnames] {
            // Stable: one change's problems keep their order.
            part.sort_by_key(|(i, _)| *i);
            errs.0.extend(part.into_iter().map(|(_, e)| e));
        }
        errs
    }
}

/// A put (`Some`) or a drop (`None`) of a resource, by name, at its place in the update.
type Put<T> = (Name, (Seq, Option<Arc<Rec<T>>>));

/// Every workload `changes` puts, in order: what [`resolve`] files when no name comes
/// twice.
fn put_workloads<'a>(changes: &[&'a Change]) -> Vec<&'a W> {
    changes
        .iter()
        .filter_map(|c| Holds::<Workload>::held(*c))
        .collect()
}

/// The puts (`Some`) and drops (`None`) of `kind` among `changes`, in their order: only
/// the drops that follow a put of their kind (the generation is blank: a drop before
/// that changes nothing).
fn puts<'a, T>(changes: &'a [&'a Change], kind: Kind) -> impl Iterator<Item = Put<T>> + 'a
where
    Change: Holds<T>,
{
    let mut any = false;
    let each = changes.iter().enumerate();
    each.filter_map(move |(i, c)| match (c.held(), c) {
        (Some(r), _) => {
            any = true;
            Some((r.name.clone(), (i as Seq, Some(r.clone()))))
        }
        (None, Change::Drop(k, n)) if *k == kind && any => Some((n.clone(), (i as Seq, None))),
        _ => None,
    })
}

/// The puts of one kind by name, and the resources (as `changes` holds them) in the
/// order they were put; None when a name comes twice (put twice, or put and dropped: what
/// remains, and where, is then for one by one to say).
#[allow(clippy::type_complexity)]
fn resolve<'a, T>(
    puts: impl Iterator<Item = Put<T>>,
    changes: &[&'a Change],
) -> Option<(Map<Name, Arc<Rec<T>>>, Vec<&'a Arc<Rec<T>>>)>
where
    Change: Holds<T>,
{
    let mut kept = Vec::with_capacity(changes.len());
    let mut twice = false;
    let map = Map::build_sized(changes.len(), puts, |_, mut given| {
        twice |= given.len() > 1;
        // None: a drop of a name never put (the generation is blank).
        let (seq, put) = given.next()?;
        kept.extend(put.is_some().then_some(seq));
        put
    });
    if twice {
        return None;
    }
    kept.sort_unstable();
    let held = kept.into_iter().filter_map(|i| changes[i as usize].held());
    Some((map, held.collect()))
}

/// The resource of type `T` a change puts.
trait Holds<T> {
    fn held(&self) -> Option<&Arc<Rec<T>>>;
}

impl Holds<Workload> for Change {
    fn held(&self) -> Option<&W> {
        match self {
            Change::Workload(w) => Some(w),
            _ => None,
        }
    }
}

impl Holds<Service> for Change {
    fn held(&self) -> Option<&S> {
        match self {
            Change::Service(s) => Some(s),
            _ => None,
        }
    }
}

/// `key → owners` of `entries` (about `n`; owners in their order); `check` sees each
/// key's owners and the place of its first.
fn owners<K: Hash + Eq, T>(
    n: usize,
    entries: impl IntoIterator<Item = (Seq, K, T)>,
    mut check: impl FnMut(Seq, &K, &Owners<T>),
) -> Map<K, Owners<T>> {
    let entries = entries.into_iter().map(|(i, k, t)| (k, (i, t)));
    Map::build_sized(n, entries, |k, mut given| {
        let (i, first) = given.next()?;
        let o = match given.len() {
            0 => Owners::One(first),
            _ => Owners::Many(std::iter::once(first).chain(given.map(|g| g.1)).collect()),
        };
        check(i, k, &o);
        Some(o)
    })
}

/// Service key → the endpoints of the workloads `ws` (in order) that name it.
fn endpoints(ws: &[&W]) -> Map<Name, Endpoints> {
    let named = ws.iter().flat_map(|w| {
        let keys = w.item.services.entries();
        keys.map(|(k, ports)| (Name::from(k), Member::of(w, ports)))
    });
    Map::build_sized(ws.len(), named, |_, members| Some(Endpoints::of(members)))
}

/// Every service the workloads `ws` (all of `s`'s, in the order they were put) name
/// exists: looked up once per service named.
fn references(s: &Snapshot, ws: &[&W], errs: &mut ConfigErrors) {
    let named = s.ix.endpoints.keys();
    let missing: HashSet<&str, Hasher> = named
        .filter(|k| validate::key_syntax_ok(k) && !s.ix.service_keys.contains_key(*k))
        .map(|k| &**k)
        .collect();
    if missing.is_empty() {
        return;
    }
    for w in ws {
        validate::unknown_services(&w.item, |k| missing.contains(k), errs);
    }
}

#[cfg(test)]
#[path = "bulk_tests.rs"]
mod tests;
