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

impl<K, V, S> PMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Default,
{
    /// The map of `entries`, built bottom-up: sorted by hash once, then cut into full
    /// leaves and branches, each node allocated once at its final size (a cold start,
    /// where inserting one by one walks and copies a path per entry and leaves its leaves
    /// about two thirds full). `finish` makes each key's value from the entries given
    /// under it, in their order (a [`Group`] of one or more), or leaves the key out (None).
    pub fn build<T>(
        entries: impl IntoIterator<Item = (K, T)>,
        mut finish: impl FnMut(&K, Group<'_, K, T>) -> Option<V>,
    ) -> Self {
        let hasher = S::default();
        let entries = entries.into_iter();
        let mut all: Vec<(u64, K, T)> = Vec::with_capacity(entries.size_hint().0);
        all.extend(entries.map(|(k, t)| (hasher.hash_one(&k), k, t)));
        // Stable: the entries of one key stay in their order.
        all.sort_by_key(|e| e.0);
        let mut done: Vec<(u64, K, V)> = Vec::with_capacity(all.len());
        let mut rest = all.into_iter();
        while let Some((h, k, t)) = rest.next() {
            let run = rest.as_slice().iter().take_while(|e| e.0 == h).count();
            if run > 0 && rest.as_slice()[..run].iter().any(|e| e.1 != k) {
                // Two keys of one hash (rare): each key's entries side by side.
                let mut others = key_by_key((h, k, t), rest.by_ref().take(run).collect());
                while let Some((h, k, t)) = others.next() {
                    let same = others.as_slice().iter().take_while(|e| e.1 == k).count();
                    let group = Group::new(t, others.by_ref().take(same));
                    done.extend(finish(&k, group).map(|v| (h, k, v)));
                }
                continue;
            }
            let group = Group::new(t, rest.by_ref().take(run));
            done.extend(finish(&k, group).map(|v| (h, k, v)));
        }
        PMap {
            len: done.len(),
            root: from_sorted(done),
            hasher,
        }
    }
}

/// `first` and `run` (entries of one hash) with each key's entries side by side, keys in
/// the order they first come.
fn key_by_key<K: Eq, T>(
    first: (u64, K, T),
    run: Vec<(u64, K, T)>,
) -> std::vec::IntoIter<(u64, K, T)> {
    let mut left: Vec<Option<(u64, K, T)>> = std::iter::once(first).chain(run).map(Some).collect();
    let mut out = Vec::with_capacity(left.len());
    for i in 0..left.len() {
        let Some(e) = left[i].take() else { continue };
        let mut same: Vec<(u64, K, T)> = Vec::new();
        for slot in &mut left[i + 1..] {
            if slot.as_ref().is_some_and(|o| o.1 == e.1) {
                same.extend(slot.take());
            }
        }
        out.push(e);
        out.extend(same);
    }
    out.into_iter()
}

/// The values given under one key to [`PMap::build`], in their order: at least one.
pub struct Group<'a, K, T> {
    first: Option<T>,
    rest: std::iter::Take<&'a mut std::vec::IntoIter<(u64, K, T)>>,
}

impl<'a, K, T> Group<'a, K, T> {
    fn new(first: T, rest: std::iter::Take<&'a mut std::vec::IntoIter<(u64, K, T)>>) -> Self {
        Group {
            first: Some(first),
            rest,
        }
    }
}

impl<K, T> Iterator for Group<'_, K, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.first.take().or_else(|| self.rest.next().map(|e| e.2))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.first.is_some()) + self.rest.len();
        (n, Some(n))
    }
}

impl<K, T> ExactSizeIterator for Group<'_, K, T> {}

impl<K, T> Drop for Group<'_, K, T> {
    /// What `finish` left unread is not the next key's.
    fn drop(&mut self) {
        self.rest.by_ref().for_each(drop);
    }
}

/// The tree over `sorted` (ascending hashes, one entry per key).
fn from_sorted<K, V>(sorted: Vec<(u64, K, V)>) -> Option<Arc<Node<K, V>>> {
    let ends = leaf_ends(|i| sorted[i].0, sorted.len());
    let mut items = sorted.into_iter();
    let mut level: Vec<(u64, Arc<Node<K, V>>)> = Vec::with_capacity(ends.len());
    let mut start = 0;
    for end in ends {
        let mut leaf = Sorted::new();
        // A vector of the exact length, which the leaf keeps.
        let mut mine = Vec::with_capacity(end - start);
        for (h, k, v) in items.by_ref().take(end - start) {
            leaf.hashes.push(h);
            mine.push((k, v));
        }
        leaf.items = SmallVec::from_vec(mine);
        level.push((leaf.hashes[0], Arc::new(Node::Leaf(leaf))));
        start = end;
    }
    while level.len() > 1 {
        let per = level.len().div_ceil(level.len().div_ceil(BRANCH_MAX));
        let mut kids = level.into_iter().peekable();
        let mut up = Vec::new();
        while kids.peek().is_some() {
            let mut b = Sorted::new();
            b.items.reserve_exact(per);
            for (h, kid) in kids.by_ref().take(per) {
                b.hashes.push(h);
                b.items.push(kid);
            }
            b.items.shrink_to_fit();
            up.push((b.hashes[0], Arc::new(Node::Branch(b))));
        }
        level = up;
    }
    level.pop().map(|(_, root)| root)
}

/// Where the leaves over `n` ascending hashes (`hash(i)`) end: as full as an even share
/// of [`LEAF_MAX`] allows, with each run of equal hashes kept in one leaf (before the cut
/// when it began after the leaf did, else after it).
fn leaf_ends(hash: impl Fn(usize) -> u64, n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let per = n.div_ceil(n.div_ceil(LEAF_MAX));
    let mut ends = Vec::with_capacity(n / per + 1);
    let mut start = 0;
    while start < n {
        let mut end = (start + per).min(n);
        if end < n && hash(end) == hash(end - 1) {
            let h = hash(end);
            let mut back = end - 1;
            while back > start && hash(back - 1) == h {
                back -= 1;
            }
            if back > start {
                end = back;
            } else {
                while end < n && hash(end) == h {
                    end += 1;
                }
            }
        }
        ends.push(end);
        start = end;
    }
    ends
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

#[cfg(test)]
#[path = "pmap_tests.rs"]
mod tests;
