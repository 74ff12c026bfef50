//! [`PMap::build`]: a map built bottom-up from all its entries at once.
//!
//! Inserting N entries one by one walks and copies a path per entry and leaves the leaves
//! about two thirds full. Here the entries are hashed once and sorted by hash, each key's
//! entries are handed to the caller together (a [`Group`]), and the results fill leaves
//! in order: each node is allocated once, at its final size, and full. Nothing is kept
//! beside the sorted entries but the leaf being filled, so a cold start's transient memory
//! (pages the kernel must fault in and zero) is one array per index.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use smallvec::SmallVec;

use super::{Node, PMap, Sorted, BRANCH_MAX, LEAF_MAX, ROOM};

/// An entry while it is sorted: its hash, its place among the entries (so that an
/// unstable sort keeps a key's entries in their order), its key and value.
type Entry<K, T> = (u64, u32, K, T);

impl<K, V, S> PMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Default,
{
    /// The map of `entries`: `finish` makes each key's value from the entries given under
    /// it, in their order (a [`Group`] of one or more), or leaves the key out (None).
    pub fn build<T>(
        entries: impl IntoIterator<Item = (K, T)>,
        finish: impl FnMut(&K, Group<'_, K, T>) -> Option<V>,
    ) -> Self {
        Self::build_sized(0, entries, finish)
    }

    /// [`Self::build`] of about `n` entries (or more, when `entries` says so).
    pub fn build_sized<T>(
        n: usize,
        entries: impl IntoIterator<Item = (K, T)>,
        mut finish: impl FnMut(&K, Group<'_, K, T>) -> Option<V>,
    ) -> Self {
        let hasher = S::default();
        let entries = entries.into_iter();
        let mut all: Vec<Entry<K, T>> = Vec::with_capacity(n.max(entries.size_hint().0));
        let place = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        all.extend(
            entries
                .enumerate()
                .map(|(i, (k, t))| (hasher.hash_one(&k), place(i), k, t)),
        );
        all.sort_unstable_by_key(|e| (e.0, e.1));
        let mut leaves = Leaves::default();
        let mut rest = all.into_iter();
        while let Some((h, _, k, t)) = rest.next() {
            let run = rest.as_slice().iter().take_while(|e| e.0 == h).count();
            if run > 0 && rest.as_slice()[..run].iter().any(|e| e.2 != k) {
                // Two keys of one hash (rare): each key's entries side by side.
                let mut others = key_by_key((h, 0, k, t), rest.by_ref().take(run).collect());
                while let Some((h, _, k, t)) = others.next() {
                    let same = others.as_slice().iter().take_while(|e| e.2 == k).count();
                    let group = Group::new(t, others.by_ref().take(same));
                    if let Some(v) = finish(&k, group) {
                        leaves.push(h, k, v);
                    }
                }
                continue;
            }
            let group = Group::new(t, rest.by_ref().take(run));
            if let Some(v) = finish(&k, group) {
                leaves.push(h, k, v);
            }
        }
        PMap {
            len: leaves.len,
            root: leaves.into_root(),
            hasher,
        }
    }
}

/// `first` and `run` (entries of one hash) with each key's entries side by side, keys in
/// the order they first come.
fn key_by_key<K: Eq, T>(
    first: Entry<K, T>,
    run: Vec<Entry<K, T>>,
) -> std::vec::IntoIter<Entry<K, T>> {
    let mut left: Vec<Option<Entry<K, T>>> = std::iter::once(first).chain(run).map(Some).collect();
    let mut out = Vec::with_capacity(left.len());
    for i in 0..left.len() {
        let Some(e) = left[i].take() else { continue };
        let mut same = Vec::new();
        for slot in &mut left[i + 1..] {
            if slot.as_ref().is_some_and(|o| o.2 == e.2) {
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
    rest: std::iter::Take<&'a mut std::vec::IntoIter<Entry<K, T>>>,
}

impl<'a, K, T> Group<'a, K, T> {
    fn new(first: T, rest: std::iter::Take<&'a mut std::vec::IntoIter<Entry<K, T>>>) -> Self {
        Group {
            first: Some(first),
            rest,
        }
    }
}

impl<K, T> Iterator for Group<'_, K, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.first.take().or_else(|| self.rest.next().map(|e| e.3))
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

/// The leaves of a map being built, filled in hash order: each full ([`LEAF_MAX`]) but
/// the last, a run of equal hashes kept in one (moved whole to the next leaf when it began
/// after this one did).
struct Leaves<K, V> {
    done: Vec<(u64, Arc<Node<K, V>>)>,
    hashes: SmallVec<[u64; ROOM]>,
    items: Vec<(K, V)>,
    len: usize,
}

impl<K, V> Default for Leaves<K, V> {
    fn default() -> Self {
        Leaves {
            done: Vec::new(),
            hashes: SmallVec::new(),
            items: Vec::new(),
            len: 0,
        }
    }
}

impl<K, V> Leaves<K, V> {
    /// Adds the entry after the others (its hash is not below theirs).
    fn push(&mut self, h: u64, k: K, v: V) {
        if self.items.len() >= LEAF_MAX {
            let run = self.hashes.iter().rev().take_while(|x| **x == h).count();
            if run < self.items.len() {
                let at = self.items.len() - run;
                let hashes: SmallVec<[u64; ROOM]> = self.hashes.drain(at..).collect();
                let mut items = Vec::with_capacity(LEAF_MAX);
                items.extend(self.items.drain(at..));
                self.cut();
                (self.hashes, self.items) = (hashes, items);
            }
        }
        if self.items.capacity() == 0 {
            self.items.reserve_exact(LEAF_MAX);
        }
        self.hashes.push(h);
        self.items.push((k, v));
        self.len += 1;
    }

    /// Ends the leaf being filled (its items at their exact length).
    fn cut(&mut self) {
        if self.items.is_empty() {
            return;
        }
        let mut items = std::mem::take(&mut self.items);
        items.shrink_to_fit();
        let leaf = Sorted {
            hashes: std::mem::take(&mut self.hashes),
            items: SmallVec::from_vec(items),
        };
        self.done.push((leaf.hashes[0], Arc::new(Node::Leaf(leaf))));
    }

    /// The tree over the leaves: branches of an even share of [`BRANCH_MAX`] children,
    /// level by level.
    fn into_root(mut self) -> Option<Arc<Node<K, V>>> {
        self.cut();
        let mut level = self.done;
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
}
