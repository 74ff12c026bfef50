use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use proptest::prelude::*;

use super::*;

/// Hashes every key to one of `buckets` values, so runs of equal hashes are common.
#[derive(Clone, Default)]
struct Few<const N: u64>;

struct FewHasher<const N: u64>(u64);

impl<const N: u64> Hasher for FewHasher<N> {
    fn finish(&self) -> u64 {
        self.0 % N
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.wrapping_mul(31).wrapping_add(u64::from(*b));
        }
    }
}

impl<const N: u64> BuildHasher for Few<N> {
    type Hasher = FewHasher<N>;

    fn build_hasher(&self) -> FewHasher<N> {
        FewHasher(0)
    }
}

/// Checks the tree's shape: sorted hashes, separators bounding their children, every
/// leaf at one depth, no node above its size unless it is one run of a hash; returns
/// (depth, entries).
fn check<K, V>(node: &Node<K, V>, lo: u64, hi: Option<u64>) -> (usize, usize) {
    match node {
        Node::Leaf(l) => {
            let hs = &l.hashes;
            assert_eq!(hs.len(), l.items.len());
            assert!(hs.windows(2).all(|w| w[0] <= w[1]));
            assert!(hs.iter().all(|h| *h >= lo && hi.is_none_or(|x| *h < x)));
            let runs = hs.windows(2).filter(|w| w[0] != w[1]).count() + 1;
            assert!(hs.len() <= LEAF_MAX || runs <= 2, "leaf of {}", hs.len());
            (1, hs.len())
        }
        Node::Branch(b) => {
            assert_eq!(b.hashes.len(), b.items.len());
            assert!(!b.items.is_empty() && b.items.len() <= BRANCH_MAX);
            let mut depth = None;
            let mut total = 0;
            for (i, kid) in b.items.iter().enumerate() {
                let from = if i == 0 { lo } else { b.hashes[i] };
                assert!(from >= lo);
                let to = b.hashes.get(i + 1).copied().or(hi);
                let (d, n) = check(kid, from, to);
                assert!(depth.is_none_or(|x| x == d), "leaves at two depths");
                depth = Some(d);
                total += n;
            }
            (depth.unwrap_or(0) + 1, total)
        }
    }
}

fn same_as<S: BuildHasher>(m: &PMap<u16, u32, S>, model: &HashMap<u16, u32>) {
    assert_eq!(m.size(), model.len());
    if let Some(root) = &m.root {
        assert_eq!(check(root, 0, None).1, model.len());
    }
    assert_eq!(m.iter().len(), model.len());
    let seen: HashMap<u16, u32> = m.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(&seen, model);
    for (k, v) in model {
        assert_eq!(m.get(k), Some(v));
    }
}

type TestMap<S> = PMap<u16, u32, S>;

fn run_ops<S: BuildHasher + Clone + Default>(ops: &[(u8, u16, u32)]) {
    let mut m: TestMap<S> = PMap::default();
    let mut model = HashMap::new();
    let mut kept: Vec<(TestMap<S>, HashMap<u16, u32>)> = Vec::new();
    for (i, &(op, k, v)) in ops.iter().enumerate() {
        match op % 4 {
            0 | 1 => assert_eq!(m.insert_mut(k, v), model.insert(k, v)),
            2 => assert_eq!(m.remove_mut(&k), model.remove(&k).is_some()),
            _ => {
                if let Some(x) = m.get_mut(&k) {
                    *x = v;
                }
                if let Some(x) = model.get_mut(&k) {
                    *x = v;
                }
            }
        }
        if i % 37 == 0 {
            kept.push((m.clone(), model.clone()));
        }
    }
    same_as(&m, &model);
    // Every earlier generation is unchanged by what came after it.
    for (old, model) in &kept {
        same_as(old, model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Inserts, removes and edits across many splits and merges match a `HashMap`, and
    /// clones taken along the way keep their contents.
    #[test]
    fn matches_a_hash_map(ops in proptest::collection::vec((any::<u8>(), 0u16..3000, any::<u32>()), 1..4000)) {
        run_ops::<foldhash::fast::RandomState>(&ops);
    }

    /// The same with only 5 distinct hashes: long runs of equal hashes, and positions
    /// guessed far from where they are.
    #[test]
    fn matches_a_hash_map_with_colliding_hashes(ops in proptest::collection::vec((any::<u8>(), 0u16..400, any::<u32>()), 1..2000)) {
        run_ops::<Few<5>>(&ops);
    }

    /// With 300 distinct hashes: runs of equal hashes beside splits.
    #[test]
    fn matches_a_hash_map_with_some_collisions(ops in proptest::collection::vec((any::<u8>(), 0u16..3000, any::<u32>()), 1..4000)) {
        run_ops::<Few<300>>(&ops);
    }
}

#[test]
fn growing_and_emptying_returns_to_no_root() {
    let mut m: PMap<u32, u32, foldhash::fast::RandomState> = PMap::default();
    for i in 0..20_000 {
        m.insert_mut(i, i);
    }
    let depth = check(m.root.as_ref().unwrap(), 0, None).0;
    assert!(depth >= 3, "20k entries make a tree of depth {depth}");
    let old = m.clone();
    for i in 0..20_000 {
        assert!(m.remove_mut(&i));
    }
    assert!(m.root.is_none() && m.is_empty());
    assert_eq!(old.size(), 20_000);
    assert_eq!(old.get(&19_999), Some(&19_999));
}

#[test]
fn a_change_copies_only_its_path() {
    let mut m: PMap<u32, u32, foldhash::fast::RandomState> = PMap::default();
    for i in 0..10_000 {
        m.insert_mut(i, i);
    }
    let before = m.clone();
    m.insert_mut(5, 6);
    let (Some(Node::Branch(a)), Some(Node::Branch(b))) =
        (before.root.as_deref(), m.root.as_deref())
    else {
        panic!("10k entries are more than one leaf");
    };
    let shared = a
        .items
        .iter()
        .zip(&b.items)
        .filter(|(x, y)| Arc::ptr_eq(x, y))
        .count();
    assert_eq!(shared, a.len() - 1, "all but the changed child are shared");
}

#[test]
fn a_clone_is_the_same_map_until_either_changes() {
    let mut m: PMap<u32, u32, foldhash::fast::RandomState> = PMap::default();
    assert!(m.ptr_eq(&PMap::default()), "two empty maps");
    m.insert_mut(1, 1);
    let before = m.clone();
    assert!(m.ptr_eq(&before));
    m.insert_mut(1, 2);
    assert!(!m.ptr_eq(&before), "an edit copies the root");
    m.remove_mut(&1);
    assert!(!m.ptr_eq(&before) && m.ptr_eq(&PMap::default()));
}

#[test]
fn sets_add_and_remove() {
    let mut s: PSet<String, foldhash::fast::RandomState> = PSet::default();
    assert!(s.insert_mut("a".into()));
    assert!(!s.insert_mut("a".into()));
    assert_eq!(s.iter().collect::<Vec<_>>(), ["a"]);
    assert!(s.remove_mut("a") && !s.remove_mut("a") && s.is_empty());
}

/// What `run_build`'s maps hold for a key given `vs`, in order: depends on the order,
/// sometimes reads only the first, sometimes leaves the key out.
fn fold_values(mut vs: impl Iterator<Item = u32>) -> Option<u32> {
    let first = vs.next().expect("a group holds one value or more");
    if matches!(first % 5, 0) {
        return Some(first);
    }
    let v = vs.fold(first, |a, x| a.wrapping_mul(31).wrapping_add(x));
    (v % 3 != 0).then_some(v)
}

/// `entries` built at once against the same entries grouped in a `HashMap`; then single
/// inserts and removals on the built map.
fn run_build<S: BuildHasher + Clone + Default>(entries: &[(u16, u32)], ops: &[(u8, u16, u32)]) {
    let mut groups: HashMap<u16, Vec<u32>> = HashMap::new();
    for (k, v) in entries {
        groups.entry(*k).or_default().push(*v);
    }
    let model: HashMap<u16, u32> = groups
        .into_iter()
        .filter_map(|(k, vs)| Some((k, fold_values(vs.into_iter())?)))
        .collect();
    let m: TestMap<S> = PMap::build(entries.iter().copied(), |_, vs| fold_values(vs));
    same_as(&m, &model);
    if let Some(root) = &m.root {
        full_leaves(root);
    }
    let mut edited = m.clone();
    let mut edited_model = model.clone();
    for &(op, k, v) in ops {
        if op % 2 == 0 {
            assert_eq!(edited.insert_mut(k, v), edited_model.insert(k, v));
        } else {
            assert_eq!(edited.remove_mut(&k), edited_model.remove(&k).is_some());
        }
    }
    same_as(&edited, &edited_model);
    same_as(&m, &model);
}

/// Every leaf but the last is at least half full: a built tree holds no small nodes.
fn full_leaves<K, V>(root: &Node<K, V>) {
    let mut leaves = Vec::new();
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        match n {
            Node::Leaf(l) => leaves.push(l.len()),
            Node::Branch(b) => stack.extend(b.items.iter().rev().map(|k| &**k)),
        }
    }
    let total: usize = leaves.iter().sum();
    assert!(
        leaves.len() == 1 || leaves.len() <= total.div_ceil(LEAF_MAX / 2),
        "{} leaves for {total} entries",
        leaves.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A map built at once matches a `HashMap` of the same entries, keeps the tree's
    /// shape, and takes single changes after it.
    #[test]
    fn a_built_map_matches_a_hash_map(
        entries in proptest::collection::vec((0u16..3000, 0u32..1000), 0..3000),
        ops in proptest::collection::vec((any::<u8>(), 0u16..3000, any::<u32>()), 0..500),
    ) {
        run_build::<foldhash::fast::RandomState>(&entries, &ops);
    }

    /// The same with 5 and 300 distinct hashes: runs of equal hashes longer than a leaf,
    /// and runs at the cuts between leaves.
    #[test]
    fn a_built_map_matches_a_hash_map_with_colliding_hashes(
        entries in proptest::collection::vec((0u16..400, 0u32..1000), 0..2000),
        ops in proptest::collection::vec((any::<u8>(), 0u16..400, any::<u32>()), 0..300),
    ) {
        run_build::<Few<5>>(&entries, &ops);
        run_build::<Few<300>>(&entries, &ops);
    }
}

#[test]
fn a_built_map_has_full_leaves() {
    let m: PMap<u32, u32, foldhash::fast::RandomState> =
        PMap::build((0..100_000).map(|i| (i, i)), |_, mut v| v.next());
    let mut leaves = 0;
    let mut stack = vec![m.root.as_deref().unwrap()];
    while let Some(n) = stack.pop() {
        match n {
            Node::Leaf(l) => {
                leaves += 1;
                assert_eq!(l.items.capacity(), l.len());
            }
            Node::Branch(b) => stack.extend(b.items.iter().map(|k| &**k)),
        }
    }
    assert_eq!(leaves, 100_000usize.div_ceil(LEAF_MAX));
    assert_eq!(m.get(&99_999), Some(&99_999));
}
