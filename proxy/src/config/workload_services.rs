//! A workload's `services`: `"<namespace>/<hostname>"` → (service port → target port
//! override), held as one boxed slice sorted by key.
//!
//! A workload names one service or a few, and the store holds one per workload: a
//! `BTreeMap` allocates an 11-slot node (~540 B) for a single entry, the slice holds what
//! it names (one entry: 40 B; the key is shared with every workload naming the service).
//! Lookups are a binary search over a handful of keys.

use std::collections::BTreeMap;
use std::ops::Index;

use serde::{Serialize, Serializer};

use super::text::Str;

/// Service port → target port (empty: the service's own target ports apply).
pub type Ports = BTreeMap<u16, u16>;

/// See the module's comment. Built from any `(key, ports)` list; a later entry of the same
/// key replaces an earlier one, as a map's insert does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadServices(Box<[(Str, Ports)]>);

impl WorkloadServices {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&Ports> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Adds or replaces `key`'s ports (O(n): a workload names few services).
    pub fn insert(&mut self, key: String, ports: Ports) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        match v.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => v[i].1 = ports,
            Err(i) => v.insert(i, (key.into(), ports)),
        }
        self.0 = v.into_boxed_slice();
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Ports)> {
        self.0.iter().map(|(k, p)| (k.as_str(), p))
    }

    /// The entries in key order, each key as the shared [`Str`] it is held in.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (&Str, &Ports)> {
        self.0.iter().map(|(k, p)| (k, p))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, Ports)> for WorkloadServices {
    fn from_iter<I: IntoIterator<Item = (String, Ports)>>(iter: I) -> Self {
        let mut v: Vec<(String, Ports)> = iter.into_iter().collect();
        // Stable, then the last of equal keys kept: a map's insert semantics.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Str, Ports)> = Vec::with_capacity(v.len());
        for (key, ports) in v {
            match out.last_mut() {
                Some(last) if last.0 == key => last.1 = ports,
                _ => out.push((key.into(), ports)),
            }
        }
        WorkloadServices(out.into_boxed_slice())
    }
}

impl From<BTreeMap<String, Ports>> for WorkloadServices {
    fn from(m: BTreeMap<String, Ports>) -> Self {
        m.into_iter().collect()
    }
}

impl<const N: usize> From<[(String, Ports); N]> for WorkloadServices {
    fn from(a: [(String, Ports); N]) -> Self {
        a.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a WorkloadServices {
    type Item = (&'a str, &'a Ports);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Str, Ports)>,
        fn(&'a (Str, Ports)) -> (&'a str, &'a Ports),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, p)| (k.as_str(), p))
    }
}

impl Index<&str> for WorkloadServices {
    type Output = Ports;

    /// Panics when `key` is absent, as a map's index does.
    fn index(&self, key: &str) -> &Ports {
        self.get(key).expect("no such service key")
    }
}

/// As the map it replaces: `{key: {port: target}}`.
impl Serialize for WorkloadServices {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_the_map_it_replaces() {
        let mut s: WorkloadServices = [
            ("b/y".to_string(), Ports::new()),
            ("a/x".to_string(), Ports::from([(80, 8080)])),
            ("b/y".to_string(), Ports::from([(1, 2)])),
        ]
        .into();
        assert_eq!(s.keys().collect::<Vec<_>>(), ["a/x", "b/y"]);
        assert_eq!(s["b/y"].get(&1), Some(&2));
        s.insert("a/w".into(), Ports::new());
        s.insert("a/x".into(), Ports::new());
        assert_eq!(s.len(), 3);
        assert!(s.contains_key("a/w") && s["a/x"].is_empty() && !s.contains_key("c"));
        let as_map: BTreeMap<String, Ports> =
            s.iter().map(|(k, p)| (k.to_string(), p.clone())).collect();
        assert_eq!(WorkloadServices::from(as_map), s);
        assert_eq!(
            serde_yaml::to_string(&s).unwrap(),
            "a/w: {}\na/x: {}\nb/y:\n  1: 2\n"
        );
    }
}
