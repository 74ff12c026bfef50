//! [`Str`]: the text fields of the mesh's resources, shared between the resources that
//! hold the same value.
//!
//! At 100k workloads most text repeats: a namespace, service account, node, trust domain,
//! owning workload or service key is held by many pods. Each such field was its own
//! `String` (24 bytes inline and a heap block each). A `Str` is 16 bytes, the empty text
//! holds nothing, and [`Str::shared`] hands out one allocation per distinct value from a
//! process-wide set. The set forgets a value once no resource holds it (it is swept when
//! it has doubled since its last sweep), so churn does not grow it. Each thread keeps the
//! values it took lately in a small cache in front of the set.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Immutable text, cheap to clone; see the module's comment.
#[derive(Clone, Default)]
pub struct Str(Option<Arc<str>>);

impl Str {
    /// `s` from the process-wide set: equal values share one allocation.
    pub fn shared(s: &str) -> Str {
        if s.is_empty() {
            return Str(None);
        }
        Str(Some(RECENT.with(|r| r.borrow_mut().get(s))))
    }

    /// `s` in an allocation of its own: for values no other resource holds (a uid, a pod's
    /// name), which would only fill the set.
    pub fn unique(s: &str) -> Str {
        Str((!s.is_empty()).then(|| Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
}

impl Deref for Str {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Str {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Str {
        Str::shared(s)
    }
}

impl From<String> for Str {
    fn from(s: String) -> Str {
        Str::shared(&s)
    }
}

impl From<&String> for Str {
    fn from(s: &String) -> Str {
        Str::shared(s)
    }
}

impl From<Arc<str>> for Str {
    fn from(s: Arc<str>) -> Str {
        Str((!s.is_empty()).then_some(s))
    }
}

/// The shared allocation itself (for the empty text, a new empty one): a map keyed by
/// `Arc<str>` holds the value without a copy.
impl From<&Str> for Arc<str> {
    fn from(s: &Str) -> Arc<str> {
        s.0.clone().unwrap_or_else(|| Arc::from(""))
    }
}

impl From<&Str> for String {
    fn from(s: &Str) -> String {
        s.as_str().to_owned()
    }
}

impl From<Str> for String {
    fn from(s: Str) -> String {
        s.as_str().to_owned()
    }
}

impl PartialEq for Str {
    fn eq(&self, other: &Str) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl Eq for Str {}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Str {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Str> for str {
    fn eq(&self, other: &Str) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Str> for &str {
    fn eq(&self, other: &Str) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Str> for String {
    fn eq(&self, other: &Str) -> bool {
        self == other.as_str()
    }
}

impl PartialOrd for Str {
    fn partial_cmp(&self, other: &Str) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Str {
    fn cmp(&self, other: &Str) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Str {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Str {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Str::shared(&s))
    }
}

/// Slots of a thread's cache of values it took from the set lately.
const RECENT_SLOTS: usize = 256;

thread_local! {
    /// Decoding a cold start takes ~8 shared values per workload, mostly the same few:
    /// a hit here skips the shard's lock. Its holds keep at most 256 values per thread
    /// from a sweep.
    static RECENT: RefCell<Recent> = RefCell::new(Recent {
        slots: std::array::from_fn(|_| None),
    });
}

struct Recent {
    slots: [Option<Arc<str>>; RECENT_SLOTS],
}

impl Recent {
    fn get(&mut self, s: &str) -> Arc<str> {
        let slot = &mut self.slots[interner().hasher.hash_one(s) as usize % RECENT_SLOTS];
        match slot {
            Some(a) if **a == *s => a.clone(),
            _ => slot.insert(interner().get(s)).clone(),
        }
    }
}

/// Shards of the process-wide set, so decoding threads rarely wait on each other.
const SHARDS: usize = 16;

struct Interner {
    hasher: foldhash::fast::FixedState,
    shards: [Mutex<Shard>; SHARDS],
}

#[derive(Default)]
struct Shard {
    set: HashSet<Arc<str>, foldhash::fast::FixedState>,
    /// The set's size after its last sweep.
    swept: usize,
}

fn interner() -> &'static Interner {
    static I: OnceLock<Interner> = OnceLock::new();
    I.get_or_init(|| Interner {
        hasher: foldhash::fast::FixedState::default(),
        shards: std::array::from_fn(|_| Mutex::default()),
    })
}

/// A shard never holds fewer than this many values before it sweeps.
const SWEEP_MIN: usize = 1024;

impl Interner {
    fn get(&self, s: &str) -> Arc<str> {
        let shard = (self.hasher.hash_one(s) >> 32) as usize % SHARDS;
        let mut shard = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = shard.set.get(s) {
            return a.clone();
        }
        if shard.set.len() >= (2 * shard.swept).max(SWEEP_MIN) {
            // Values only the set still holds are no one's any more.
            shard.set.retain(|a| Arc::strong_count(a) > 1);
            shard.swept = shard.set.len();
        }
        let a: Arc<str> = Arc::from(s);
        shard.set.insert(a.clone());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_allocation_and_empty_holds_none() {
        let a = Str::shared("istio-system");
        let b = Str::from(String::from("istio-system"));
        assert!(Arc::ptr_eq(a.0.as_ref().unwrap(), b.0.as_ref().unwrap()));
        assert_eq!(a, b);
        assert_eq!(a, "istio-system");
        assert!(Str::shared("").0.is_none() && Str::default().is_empty());
    }

    #[test]
    fn values_no_one_holds_are_swept() {
        let before = (0..SHARDS)
            .map(|i| interner().shards[i].lock().unwrap().set.len())
            .sum::<usize>();
        for i in 0..50 * SWEEP_MIN {
            drop(Str::shared(&format!("swept-{i}")));
        }
        let after = (0..SHARDS)
            .map(|i| interner().shards[i].lock().unwrap().set.len())
            .sum::<usize>();
        assert!(
            after <= before + SHARDS * SWEEP_MIN,
            "{after} values held after 51200 short-lived ones (before: {before})"
        );
        let kept = Str::shared("kept-across-sweeps");
        for i in 0..50 * SWEEP_MIN {
            drop(Str::shared(&format!("swept-again-{i}")));
        }
        assert!(Arc::ptr_eq(
            kept.0.as_ref().unwrap(),
            Str::shared("kept-across-sweeps").0.as_ref().unwrap()
        ));
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let s: Str = serde_yaml::from_str("\"a/b\"").unwrap();
        assert_eq!(s, "a/b");
        assert_eq!(serde_yaml::to_string(&s).unwrap().trim(), "a/b");
    }
}
