//! What the control plane serves, kept by type and name so a change costs its own size:
//! every resource with its content version, the identities of the served workloads (for
//! the CA), and the [`Change`] each push makes, which every stream forwards as it is.
//!
//! A whole configuration ([`Catalog::build`]) is encoded and compared once per push
//! (O(N), for tests and the demo); an [`Update`] is encoded alone and applied by name
//! (O(size of the update × log N)), which is what `zring-loadgen scale` times.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use zring::config::LocalConfig;
use zring::identity::Identity;
use zring_xds::prost_types::Any;
use zring_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE};

use super::Raw;

/// The types served, in the order a push sends them.
pub const TYPES: [&str; 2] = [ADDRESS_TYPE, AUTHORIZATION_TYPE];

/// One served resource: its content version and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub version: String,
    pub body: Any,
}

impl Entry {
    pub fn new(body: Any) -> Entry {
        let mut h = DefaultHasher::new();
        body.value.hash(&mut h);
        Entry {
            version: format!("{:016x}", h.finish()),
            body,
        }
    }
}

/// A change to the served resources, applied as given: its cost is its own size, not
/// the size of what is served.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Workloads, services and policies added, or replaced when a resource of the same
    /// name is served (a workload is named by its uid, a service `namespace/hostname`, a
    /// policy `namespace/name`).
    pub put: LocalConfig,
    /// Resources removed: (`ADDRESS_TYPE` or `AUTHORIZATION_TYPE`, name).
    pub remove: Vec<(&'static str, String)>,
}

/// What one push changed, per type: resources put (new or with a new version) and names
/// removed. Streams forward it to their clients, filtered by what each client holds.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub put: Vec<(&'static str, String, Entry)>,
    pub removed: Vec<(&'static str, String)>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.removed.is_empty()
    }
}

/// Every served resource by type and name, and who may ask for a certificate.
#[derive(Debug, Default)]
pub struct Catalog {
    by_type: HashMap<&'static str, BTreeMap<String, Entry>>,
    identities: Identities,
}

impl Catalog {
    /// The catalog of a whole configuration with `extra` raw resources beside it (a raw
    /// resource named like one of the configuration's replaces it).
    pub fn build(config: &LocalConfig, extra: &[Raw]) -> Result<Catalog, String> {
        let mut c = Catalog::default();
        let all = encoded(config)?;
        c.identities = Identities::of(config, &all);
        for (t, name, entry) in all {
            c.of_type(t).insert(name, entry);
        }
        for raw in extra {
            match TYPES.iter().find(|t| **t == raw.type_url) {
                Some(t) => {
                    let entry = Entry::new(raw.body.clone());
                    c.of_type(t).insert(raw.name.clone(), entry);
                }
                None => {
                    tracing::warn!(type_url = %raw.type_url, "control plane: raw resource of an unserved type dropped")
                }
            }
        }
        Ok(c)
    }

    fn of_type(&mut self, t: &'static str) -> &mut BTreeMap<String, Entry> {
        self.by_type.entry(t).or_default()
    }

    /// The served resources of `type_url` (None: not a served type).
    pub fn resources(&self, type_url: &str) -> Option<(&'static str, &BTreeMap<String, Entry>)> {
        static EMPTY: BTreeMap<String, Entry> = BTreeMap::new();
        let t = TYPES.into_iter().find(|t| *t == type_url)?;
        Some((t, self.by_type.get(t).unwrap_or(&EMPTY)))
    }

    /// Replaces everything with `next` and returns what changed (O(N)).
    pub fn replace(&mut self, next: Catalog) -> Change {
        let mut change = Change::default();
        for t in TYPES {
            let old = self.by_type.get(t);
            let new = next.by_type.get(t);
            for (name, e) in new.into_iter().flatten() {
                if old.and_then(|o| o.get(name)).map(|o| &o.version) != Some(&e.version) {
                    change.put.push((t, name.clone(), e.clone()));
                }
            }
            let gone = old.into_iter().flatten().map(|(n, _)| n);
            let gone = gone.filter(|n| !new.is_some_and(|m| m.contains_key(*n)));
            change.removed.extend(gone.map(|n| (t, n.clone())));
        }
        *self = next;
        change
    }

    /// Applies `u` by name and returns what changed (O(size of `u` × log N)).
    pub fn update(&mut self, u: &Update) -> Result<Change, String> {
        let put = encoded(&u.put)?;
        let mut change = Change::default();
        for (t, name) in &u.remove {
            if self.of_type(t).remove(name).is_some() {
                self.identities.remove(name);
                change.removed.push((t, name.clone()));
            }
        }
        for (w, (_, name, _)) in u.put.workloads.iter().zip(&put) {
            self.identities.set(name.clone(), identity(w));
        }
        for (t, name, entry) in put {
            let slot = self.of_type(t);
            if slot.get(&name).map(|e| &e.version) != Some(&entry.version) {
                slot.insert(name.clone(), entry.clone());
                change.put.push((t, name, entry));
            }
        }
        // A name both removed and put in one update is put: a response must not carry
        // it in both lists.
        if !change.removed.is_empty() && !change.put.is_empty() {
            let put: std::collections::HashSet<_> = change
                .put
                .iter()
                .map(|(t, n, _)| (*t, n.as_str()))
                .collect();
            change
                .removed
                .retain(|(t, n)| !put.contains(&(*t, n.as_str())));
        }
        Ok(change)
    }

    /// True when a served workload has this identity.
    pub fn serves_identity(&self, id: &Identity) -> bool {
        self.identities.count.contains_key(id)
    }
}

/// `(type, name, entry)` of every resource of `c`: its workloads first, in order (the
/// encoder names them, so their names are taken from here).
fn encoded(c: &LocalConfig) -> Result<Vec<(&'static str, String, Entry)>, String> {
    let r = zring::config::xds::encode(c)?;
    let tagged = |t, v: Vec<(String, Any)>| v.into_iter().map(move |(n, a)| (t, n, Entry::new(a)));
    Ok(tagged(ADDRESS_TYPE, r.addresses)
        .chain(tagged(AUTHORIZATION_TYPE, r.authorizations))
        .collect())
}

fn identity(w: &zring::config::Workload) -> Identity {
    Identity::new(&w.trust_domain, &w.namespace, &w.service_account)
}

/// The identities of the served workloads, counted, so that a removal is O(1).
#[derive(Debug, Default)]
struct Identities {
    by_name: HashMap<String, Identity>,
    count: HashMap<Identity, usize>,
}

impl Identities {
    /// The identities of `c`'s workloads, named as in `encoded` (its first entries).
    fn of(c: &LocalConfig, encoded: &[(&'static str, String, Entry)]) -> Identities {
        let mut ids = Identities::default();
        for (w, (_, name, _)) in c.workloads.iter().zip(encoded) {
            ids.set(name.clone(), identity(w));
        }
        ids
    }

    fn set(&mut self, name: String, id: Identity) {
        self.remove(&name);
        *self.count.entry(id.clone()).or_default() += 1;
        self.by_name.insert(name, id);
    }

    fn remove(&mut self, name: &str) {
        let Some(id) = self.by_name.remove(name) else {
            return;
        };
        if let Some(n) = self.count.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.count.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
