//! A persistent hash map: a B+tree ordered by the keys' hashes, whose leaves hold the
//! entries inline in one array each.
//!
//! Cloning a map is one reference count. A change copies the leaf it lands in and the
//! branches above it (at most [`LEAF_MAX`] entries and [`BRANCH_MAX`] children each) when a
//! clone shares them, and edits them in place when it does not, so a cold start builds
//! every node once. A lookup is a binary search per level, O(log N).
//!
//! Why not a hash trie (rpds): its entries live one per allocation behind two reference
//! counts and a node slot, ~110–160 B per entry; here an entry is its hash, key and value
//! in an array kept at its exact length, ~40 B for a name → `Arc` map.
//!
//! Every leaf sits at the same depth. A child of a branch holds the hashes from its
//! separator up to the next child's (the first child's separator is not read), and a run
//! of equal hashes is never split between two leaves, so a lookup visits one leaf.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// The most entries a leaf holds (a run of equal hashes may exceed it: it cannot split).
const LEAF_MAX: usize = 32;
/// The most children a branch holds.
const BRANCH_MAX: usize = 32;
/// A node with fewer entries (children) than this is merged into a neighbour that has room.
const MERGE_BELOW: usize = 8;

#[derive(Clone)]
struct Entry<K, V> {
    hash: u64,
    key: K,
    value: V,
}

type Child<K, V> = (u64, Arc<Node<K, V>>);

enum Node<K, V> {
    Leaf(Vec<Entry<K, V>>),
    Branch(Vec<Child<K, V>>),
}

impl<K, V> Node<K, V> {
    fn len(&self) -> usize {
        match self {
            Node::Leaf(es) => es.len(),
            Node::Branch(kids) => kids.len(),
        }
    }

    fn max(&self) -> usize {
        match self {
            Node::Leaf(_) => LEAF_MAX,
            Node::Branch(_) => BRANCH_MAX,
        }
    }
}

/// A persistent map from `K` to `V`, hashed by `S`.
pub struct PMap<K, V, S> {
    root: Option<Arc<Node<K, V>>>,
    len: usize,
    hasher: S,
}

impl<K, V, S: Clone> Clone for PMap<K, V, S> {
    fn clone(&self) -> Self {
        PMap {
            root: self.root.clone(),
            len: self.len,
            hasher: self.hasher.clone(),
        }
    }
}

impl<K, V, S: Default> Default for PMap<K, V, S> {
    fn default() -> Self {
        PMap {
            root: None,
            len: 0,
            hasher: S::default(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for PMap<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V, S> PMap<K, V, S> {
    pub fn size(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries in hash order (no order a caller may rely on).
    pub fn iter(&self) -> Iter<'_, K, V> {
        let mut it = Iter {
            stack: Vec::new(),
            leaf: [].iter(),
            left: self.len,
        };
        match self.root.as_deref() {
            None => {}
            Some(Node::Leaf(es)) => it.leaf = es.iter(),
            Some(Node::Branch(kids)) => it.stack.push(kids.iter()),
        }
        it
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

impl<K, V, S> PMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).map(|(_, v)| v)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).is_some()
    }

    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let h = self.hasher.hash_one(key);
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Branch(kids) => node = &kids[route(kids, h)].1,
                Node::Leaf(es) => {
                    let e = &es[find(es, h, key)?];
                    return Some((&e.key, &e.value));
                }
            }
        }
    }

    /// `key`'s value, for editing in place (the path to it is copied if shared).
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        let h = self.hasher.hash_one(key);
        get_mut_in(self.root.as_mut()?, h, key)
    }

    /// Puts `value` under `key`, returning the value it replaced.
    pub fn insert_mut(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hasher.hash_one(&key);
        let root = self
            .root
            .get_or_insert_with(|| Arc::new(Node::Leaf(Vec::new())));
        let (old, split) = insert_in(root, Entry { hash, key, value });
        if let Some(right) = split {
            let left = std::mem::replace(root, Arc::new(Node::Leaf(Vec::new())));
            *root = Arc::new(Node::Branch(vec![(0, left), right]));
        }
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`; whether it was there. Nothing is copied when it was not.
    pub fn remove_mut<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.contains_key(key) {
            return false;
        }
        let h = self.hasher.hash_one(key);
        let Some(root) = self.root.as_mut() else {
            return false;
        };
        let removed = remove_in(root, h, key).is_some();
        self.len -= usize::from(removed);
        self.collapse_root();
        removed
    }

    /// A root branch with one child is replaced by it; an empty root goes.
    fn collapse_root(&mut self) {
        while let Some(root) = &self.root {
            match &**root {
                Node::Branch(kids) if kids.len() == 1 => self.root = Some(kids[0].1.clone()),
                n if n.len() == 0 => self.root = None,
                _ => return,
            }
        }
    }
}

/// The child of `kids` whose range holds `h`.
fn route<T>(kids: &[(u64, T)], h: u64) -> usize {
    kids.partition_point(|k| k.0 <= h).saturating_sub(1)
}

/// The index of `key`'s entry in a leaf.
fn find<K, V, Q>(es: &[Entry<K, V>], h: u64, key: &Q) -> Option<usize>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    let i = es.partition_point(|e| e.hash < h);
    let mut run = es[i..].iter().take_while(|e| e.hash == h);
    run.position(|e| e.key.borrow() == key).map(|j| i + j)
}

/// `node` for editing: itself when no clone shares it, else a copy with room for one
/// more entry (the copy is what this generation keeps).
fn cow<K: Clone, V: Clone>(node: &mut Arc<Node<K, V>>) -> &mut Node<K, V> {
    if Arc::get_mut(node).is_none() {
        let copy = match &**node {
            Node::Leaf(es) => Node::Leaf(copy_with_room(es)),
            Node::Branch(kids) => Node::Branch(copy_with_room(kids)),
        };
        *node = Arc::new(copy);
    }
    Arc::get_mut(node).expect("a node just copied has one owner")
}

fn copy_with_room<T: Clone>(items: &[T]) -> Vec<T> {
    let mut v = Vec::with_capacity(items.len() + 1);
    v.extend_from_slice(items);
    v
}

fn get_mut_in<'a, K, V, Q>(node: &'a mut Arc<Node<K, V>>, h: u64, key: &Q) -> Option<&'a mut V>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    match cow(node) {
        Node::Branch(kids) => {
            let i = route(kids, h);
            get_mut_in(&mut kids[i].1, h, key)
        }
        Node::Leaf(es) => {
            let i = find(es, h, key)?;
            Some(&mut es[i].value)
        }
    }
}

/// Inserts `e` below `node`: the replaced value, and the right half of `node` when it
/// split (its separator and itself).
fn insert_in<K: Eq + Clone, V: Clone>(
    node: &mut Arc<Node<K, V>>,
    e: Entry<K, V>,
) -> (Option<V>, Option<Child<K, V>>) {
    match cow(node) {
        Node::Leaf(es) => {
            if let Some(i) = find(es, e.hash, &e.key) {
                return (Some(std::mem::replace(&mut es[i].value, e.value)), None);
            }
            let at = es.partition_point(|x| x.hash < e.hash);
            es.reserve_exact(1);
            es.insert(at, e);
            (None, split_leaf(es))
        }
        Node::Branch(kids) => {
            let i = route(kids, e.hash);
            let (old, split) = insert_in(&mut kids[i].1, e);
            if let Some(right) = split {
                kids.reserve_exact(1);
                kids.insert(i + 1, right);
            }
            (old, split_branch(kids))
        }
    }
}

/// The right half of an overfull leaf, cut where the hash changes.
fn split_leaf<K, V>(es: &mut Vec<Entry<K, V>>) -> Option<Child<K, V>> {
    if es.len() <= LEAF_MAX {
        return None;
    }
    let same = |i: usize| es[i].hash == es[i - 1].hash;
    let mut at = es.len() / 2;
    while at < es.len() && same(at) {
        at += 1;
    }
    if at == es.len() {
        at = es.len() / 2;
        while at > 0 && same(at) {
            at -= 1;
        }
    }
    if at == 0 {
        return None;
    }
    let right = es.split_off(at);
    es.shrink_to_fit();
    Some((right[0].hash, Arc::new(Node::Leaf(right))))
}

/// The right half of an overfull branch.
fn split_branch<K, V>(kids: &mut Vec<Child<K, V>>) -> Option<Child<K, V>> {
    if kids.len() <= BRANCH_MAX {
        return None;
    }
    let right = kids.split_off(kids.len() / 2);
    kids.shrink_to_fit();
    Some((right[0].0, Arc::new(Node::Branch(right))))
}

/// Removes `key` below `node` (it is there), merging a child left small into a neighbour.
fn remove_in<K, V, Q>(node: &mut Arc<Node<K, V>>, h: u64, key: &Q) -> Option<V>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    match cow(node) {
        Node::Leaf(es) => {
            let i = find(es, h, key)?;
            Some(es.remove(i).value)
        }
        Node::Branch(kids) => {
            let i = route(kids, h);
            let v = remove_in(&mut kids[i].1, h, key)?;
            rebalance(kids, i);
            Some(v)
        }
    }
}

/// After a removal in child `i`: drops it when empty, merges it into a neighbour when small
/// and the two fit in one node.
fn rebalance<K: Clone, V: Clone>(kids: &mut Vec<Child<K, V>>, i: usize) {
    let n = kids[i].1.len();
    if n == 0 {
        kids.remove(i);
        return;
    }
    if n >= MERGE_BELOW || kids.len() < 2 {
        return;
    }
    let (a, b) = if i + 1 < kids.len() {
        (i, i + 1)
    } else {
        (i - 1, i)
    };
    if kids[a].1.len() + kids[b].1.len() > kids[a].1.max() {
        return;
    }
    let (sep, right) = kids.remove(b);
    match (cow(&mut kids[a].1), &*right) {
        (Node::Leaf(l), Node::Leaf(r)) => l.extend_from_slice(r),
        (Node::Branch(l), Node::Branch(r)) => {
            // `r`'s first separator was never read; in `l` it must bound that child.
            let at = l.len();
            l.extend_from_slice(r);
            l[at].0 = sep;
        }
        _ => unreachable!("every leaf is at the same depth"),
    }
}

/// The entries of a [`PMap`], in hash order.
pub struct Iter<'a, K, V> {
    stack: Vec<std::slice::Iter<'a, Child<K, V>>>,
    leaf: std::slice::Iter<'a, Entry<K, V>>,
    left: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.leaf.next() {
                self.left -= 1;
                return Some((&e.key, &e.value));
            }
            let top = self.stack.last_mut()?;
            match top.next().map(|c| &*c.1) {
                None => {
                    self.stack.pop();
                }
                Some(Node::Leaf(es)) => self.leaf = es.iter(),
                Some(Node::Branch(kids)) => self.stack.push(kids.iter()),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

/// A persistent set: a [`PMap`] to `()`.
pub struct PSet<K, S>(PMap<K, (), S>);

impl<K, S: Clone> Clone for PSet<K, S> {
    fn clone(&self) -> Self {
        PSet(self.0.clone())
    }
}

impl<K, S: Default> Default for PSet<K, S> {
    fn default() -> Self {
        PSet(PMap::default())
    }
}

impl<K: fmt::Debug, S> fmt::Debug for PSet<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<K, S> PSet<K, S> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.0.keys()
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher> PSet<K, S> {
    /// Adds `key`; whether it was new.
    pub fn insert_mut(&mut self, key: K) -> bool {
        self.0.insert_mut(key, ()).is_none()
    }

    pub fn remove_mut<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.remove_mut(key)
    }
}

#[cfg(test)]
#[path = "pmap_tests.rs"]
mod tests;
