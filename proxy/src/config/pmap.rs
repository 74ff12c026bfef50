//! A persistent hash map: a B+tree ordered by the keys' hashes, whose leaves hold the
//! entries inline in one array each.
//!
//! Cloning a map is one reference count. A change copies the leaf it lands in and the
//! branches above it (at most [`LEAF_MAX`] entries and [`BRANCH_MAX`] children each) when a
//! clone shares them, and edits them in place when it does not, so a cold start builds
//! every node once.
//!
//! Why not a hash trie (rpds): its entries live one per allocation behind two reference
//! counts and a node slot, ~110–160 B per entry; here an entry is its hash, key and value
//! in arrays kept at their exact length, ~40 B for a name → `Arc` map.
//!
//! Every leaf sits at the same depth. A child of a branch holds the hashes from its
//! separator up to the next child's, and a run of equal hashes is never split between two
//! leaves, so a lookup visits one leaf. A node keeps its hashes in an array of their own
//! and a lookup guesses the position from where the hash lies in the node's range (seeded
//! hashes are uniform), then steps to it: about one cache line per level, where a binary
//! search over the entries touched five.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use smallvec::{Array, SmallVec};

/// The most entries a leaf holds (a run of equal hashes may exceed it: it cannot split).
const LEAF_MAX: usize = 32;
/// The most children a branch holds.
const BRANCH_MAX: usize = 32;
/// A node with fewer entries (children) than this is merged into a neighbour that has room.
const MERGE_BELOW: usize = 8;

/// Room in a node's arrays: its most entries (children) and one more, held for a moment
/// before it splits.
const ROOM: usize = 33;

/// Items in ascending order of their hashes. The hashes sit inline in the node, so the
/// node's first cache lines are all a lookup reads before it picks an item; the items are
/// in an array of their own at its exact length (`A` is `[T; 0]`: a leaf and a branch are
/// the same size).
struct Sorted<A: Array> {
    hashes: SmallVec<[u64; ROOM]>,
    items: SmallVec<A>,
}

impl<A: Array> Sorted<A> {
    fn new() -> Self {
        Sorted {
            hashes: SmallVec::new(),
            items: SmallVec::new(),
        }
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }
}

impl<A: Array> Sorted<A>
where
    A::Item: Clone,
{
    /// A copy with room for one more item.
    fn copy_with_room(&self) -> Self {
        let mut c = Sorted::new();
        c.items.reserve_exact(self.len() + 1);
        c.hashes.extend_from_slice(&self.hashes);
        c.items.extend(self.items.iter().cloned());
        c
    }

    fn insert(&mut self, at: usize, hash: u64, item: A::Item) {
        self.hashes.insert(at, hash);
        self.items.reserve_exact(1);
        self.items.insert(at, item);
    }

    fn remove(&mut self, at: usize) -> A::Item {
        self.hashes.remove(at);
        self.items.remove(at)
    }

    /// Moves the items from `at` on into a new array; both keep their exact length.
    fn split_off(&mut self, at: usize) -> Self {
        let mut right = Sorted::new();
        right.items.reserve_exact(self.len() - at);
        right.hashes.extend(self.hashes.drain(at..));
        right.items.extend(self.items.drain(at..));
        self.items.shrink_to_fit();
        right
    }

    fn append(&mut self, other: &Self) {
        self.hashes.extend_from_slice(&other.hashes);
        self.items.reserve_exact(other.len());
        self.items.extend(other.items.iter().cloned());
    }
}

/// The hashes a node may hold, both ends included.
#[derive(Clone, Copy)]
struct Span {
    lo: u64,
    hi: u64,
}

const ALL: Span = Span {
    lo: 0,
    hi: u64::MAX,
};

/// The first position in `hashes` (ascending, within `span`) whose hash is not below `h`
/// (`above`: above `h`). The guess assumes uniform hashes; the steps make it exact for any.
fn position(hashes: &[u64], h: u64, span: Span, above: bool) -> usize {
    let n = hashes.len();
    let width = u128::from(span.hi - span.lo) + 1;
    let offset = u128::from(h.saturating_sub(span.lo));
    let mut i = ((offset * n as u128) / width).min(n as u128) as usize;
    let before = |x: u64| if above { x <= h } else { x < h };
    while i > 0 && !before(hashes[i - 1]) {
        i -= 1;
    }
    while i < n && before(hashes[i]) {
        i += 1;
    }
    i
}

type Kids<K, V> = Sorted<[Arc<Node<K, V>>; 0]>;
type Entries<K, V> = Sorted<[(K, V); 0]>;

enum Node<K, V> {
    Leaf(Entries<K, V>),
    /// `hashes[i]` is child i's separator: its least hash (for child 0: not read).
    Branch(Kids<K, V>),
}

impl<K, V> Node<K, V> {
    fn len(&self) -> usize {
        match self {
            Node::Leaf(l) => l.hashes.len(),
            Node::Branch(b) => b.hashes.len(),
        }
    }

    fn max(&self) -> usize {
        match self {
            Node::Leaf(_) => LEAF_MAX,
            Node::Branch(_) => BRANCH_MAX,
        }
    }

    fn empty_leaf() -> Arc<Node<K, V>>
    where
        K: Clone,
        V: Clone,
    {
        Arc::new(Node::Leaf(Sorted::new()))
    }
}

/// The child of a branch whose hashes include `h`, and its span.
fn route<K, V>(kids: &Kids<K, V>, h: u64, span: Span) -> (usize, Span) {
    let i = position(&kids.hashes, h, span, true).saturating_sub(1);
    let lo = if i == 0 { span.lo } else { kids.hashes[i] };
    let hi = kids.hashes.get(i + 1).map_or(span.hi, |next| next - 1);
    (i, Span { lo, hi })
}

/// Where `key` is in a leaf.
fn find<K, V, Q>(leaf: &Entries<K, V>, h: u64, span: Span, key: &Q) -> Option<usize>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    let i = position(&leaf.hashes, h, span, false);
    let run = leaf.hashes[i..].iter().take_while(|x| **x == h).count();
    leaf.items[i..i + run]
        .iter()
        .position(|(k, _)| k.borrow() == key)
        .map(|j| i + j)
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

    /// Whether `other` is this map or a clone of it no change has touched since (then
    /// both hold the same entries; maps that do not share a root may too).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.root, &other.root) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        }
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
            Some(Node::Leaf(l)) => it.leaf = l.items.iter(),
            Some(Node::Branch(b)) => it.stack.push(b.items.iter()),
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
        let (mut node, mut span) = (self.root.as_deref()?, ALL);
        loop {
            match node {
                Node::Branch(b) => {
                    let (i, s) = route(b, h, span);
                    (node, span) = (&b.items[i], s);
                }
                Node::Leaf(l) => {
                    let (k, v) = &l.items[find(l, h, span, key)?];
                    return Some((k, v));
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
        let h = self.hash_if_held(key)?;
        get_mut_in(self.root.as_mut()?, h, ALL, key)
    }

    /// Puts `value` under `key`, returning the value it replaced.
    pub fn insert_mut(&mut self, key: K, value: V) -> Option<V> {
        let h = self.hasher.hash_one(&key);
        let root = self.root.get_or_insert_with(Node::empty_leaf);
        let (old, split) = insert_in(root, h, ALL, (key, value));
        if let Some((sep, right)) = split {
            let left = std::mem::replace(root, Node::empty_leaf());
            let mut b = Sorted::new();
            b.hashes.extend([0, sep]);
            b.items.extend([left, right]);
            *root = Arc::new(Node::Branch(b));
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
        let (Some(h), Some(root)) = (self.hash_if_held(key), self.root.as_mut()) else {
            return false;
        };
        let removed = remove_in(root, h, ALL, key).is_some();
        self.len -= usize::from(removed);
        self.collapse_root();
        removed
    }

    /// `key`'s hash when the map holds it (an edit of a key it lacks copies nothing).
    fn hash_if_held<Q>(&self, key: &Q) -> Option<u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.contains_key(key).then(|| self.hasher.hash_one(key))
    }

    /// A root branch with one child is replaced by it; an empty root goes.
    fn collapse_root(&mut self) {
        while let Some(root) = &self.root {
            match &**root {
                Node::Branch(b) if b.len() == 1 => self.root = Some(b.items[0].clone()),
                n if n.len() == 0 => self.root = None,
                _ => return,
            }
        }
    }
}

/// `node` for editing: itself when no clone shares it, else a copy with room for one
/// more entry (the copy is what this generation keeps).
fn cow<K: Clone, V: Clone>(node: &mut Arc<Node<K, V>>) -> &mut Node<K, V> {
    if Arc::get_mut(node).is_none() {
        let copy = match &**node {
            Node::Leaf(l) => Node::Leaf(l.copy_with_room()),
            Node::Branch(b) => Node::Branch(b.copy_with_room()),
        };
        *node = Arc::new(copy);
    }
    Arc::get_mut(node).expect("a node just copied has one owner")
}

fn get_mut_in<'a, K, V, Q>(
    node: &'a mut Arc<Node<K, V>>,
    h: u64,
    span: Span,
    key: &Q,
) -> Option<&'a mut V>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    match cow(node) {
        Node::Branch(b) => {
            let (i, s) = route(b, h, span);
            get_mut_in(&mut b.items[i], h, s, key)
        }
        Node::Leaf(l) => {
            let i = find(l, h, span, key)?;
            Some(&mut l.items[i].1)
        }
    }
}

/// A node's right half after a split: its separator and itself.
type Split<K, V> = Option<(u64, Arc<Node<K, V>>)>;

/// Inserts `kv` (hash `h`) below `node`: the replaced value, and the right half of `node`
/// when it split.
fn insert_in<K: Eq + Clone, V: Clone>(
    node: &mut Arc<Node<K, V>>,
    h: u64,
    span: Span,
    kv: (K, V),
) -> (Option<V>, Split<K, V>) {
    match cow(node) {
        Node::Leaf(l) => {
            if let Some(i) = find(l, h, span, &kv.0) {
                return (Some(std::mem::replace(&mut l.items[i].1, kv.1)), None);
            }
            let at = position(&l.hashes, h, span, false);
            l.insert(at, h, kv);
            (None, split_leaf(l))
        }
        Node::Branch(b) => {
            let (i, s) = route(b, h, span);
            let (old, split) = insert_in(&mut b.items[i], h, s, kv);
            if let Some((sep, right)) = split {
                b.insert(i + 1, sep, right);
            }
            (old, split_branch(b))
        }
    }
}

/// The right half of an overfull leaf, cut where the hash changes.
fn split_leaf<K: Clone, V: Clone>(l: &mut Entries<K, V>) -> Split<K, V> {
    if l.len() <= LEAF_MAX {
        return None;
    }
    let same = |i: usize| l.hashes[i] == l.hashes[i - 1];
    let mut at = l.len() / 2;
    while at < l.len() && same(at) {
        at += 1;
    }
    if at == l.len() {
        at = l.len() / 2;
        while at > 0 && same(at) {
            at -= 1;
        }
    }
    if at == 0 {
        return None;
    }
    let right = l.split_off(at);
    Some((right.hashes[0], Arc::new(Node::Leaf(right))))
}

/// The right half of an overfull branch.
fn split_branch<K: Clone, V: Clone>(b: &mut Kids<K, V>) -> Split<K, V> {
    if b.len() <= BRANCH_MAX {
        return None;
    }
    let right = b.split_off(b.len() / 2);
    Some((right.hashes[0], Arc::new(Node::Branch(right))))
}

/// Removes `key` below `node` (it is there), merging a child left small into a neighbour.
fn remove_in<K, V, Q>(node: &mut Arc<Node<K, V>>, h: u64, span: Span, key: &Q) -> Option<V>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    match cow(node) {
        Node::Leaf(l) => {
            let i = find(l, h, span, key)?;
            Some(l.remove(i).1)
        }
        Node::Branch(b) => {
            let (i, s) = route(b, h, span);
            let v = remove_in(&mut b.items[i], h, s, key)?;
            rebalance(b, i);
            Some(v)
        }
    }
}

/// After a removal in child `i`: drops it when empty, merges it into a neighbour when small
/// and the two fit in one node.
fn rebalance<K: Clone, V: Clone>(b: &mut Kids<K, V>, i: usize) {
    let n = b.items[i].len();
    if n == 0 {
        b.remove(i);
        return;
    }
    if n >= MERGE_BELOW || b.len() < 2 {
        return;
    }
    let (x, y) = if i + 1 < b.len() {
        (i, i + 1)
    } else {
        (i - 1, i)
    };
    if b.items[x].len() + b.items[y].len() > b.items[x].max() {
        return;
    }
    let sep = b.hashes[y];
    let right = b.remove(y);
    match (cow(&mut b.items[x]), &*right) {
        (Node::Leaf(l), Node::Leaf(r)) => l.append(r),
        (Node::Branch(l), Node::Branch(r)) => {
            // `r`'s first separator was not read; in `l` it must bound that child.
            let at = l.len();
            l.append(r);
            l.hashes[at] = sep;
        }
        _ => unreachable!("every leaf is at the same depth"),
    }
}

/// The entries of a [`PMap`], in hash order.
pub struct Iter<'a, K, V> {
    stack: Vec<std::slice::Iter<'a, Arc<Node<K, V>>>>,
    leaf: std::slice::Iter<'a, (K, V)>,
    left: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.leaf.next() {
                self.left -= 1;
                return Some((k, v));
            }
            let top = self.stack.last_mut()?;
            match top.next().map(|n| &**n) {
                None => {
                    self.stack.pop();
                }
                Some(Node::Leaf(l)) => self.leaf = l.items.iter(),
                Some(Node::Branch(b)) => self.stack.push(b.items.iter()),
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

#[path = "pmap_build.rs"]
mod build;

#[cfg(test)]
#[path = "pmap_tests.rs"]
mod tests;
