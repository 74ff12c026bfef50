//! Deltas: a new generation is the previous one with a list of [`Change`]s applied to a
//! copy (O(1) to take: the maps are persistent), each resource checked on its own, then
//! the rules between resources checked at the keys the changes touched. The previous
//! generation is never modified, so refusing a delta is dropping the copy.
//!
//! The file path uses the same model: a LocalConfig becomes changes by key against the
//! generation in force ([`Snapshot::reload`]), so a reload costs what changed (plus parsing
//! the file), and a cold start is a reload against the empty generation. Changes to the
//! empty generation (a cold start, from istiod or a file) are built index by index
//! instead ([`super::bulk`]), to the same result.

use std::collections::HashSet;

use super::index::{Name, Rec, P, S, W};
use super::local::{LocalConfig, Service, Workload};
use super::policy::Policy;
use super::snapshot::Snapshot;
use super::validate::{self, Dirty};
use super::{ConfigError, ConfigErrors};

/// One change to a generation, by resource name.
#[derive(Debug, Clone)]
pub(super) enum Change {
    Workload(W),
    Service(S),
    Policy(P),
    Drop(Kind, Name),
}

/// The three kinds of resource (each with its own names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Workload,
    Service,
    Policy,
}

impl Snapshot {
    /// `changes` applied to a copy of this generation: the new generation and whether
    /// anything changed, or every problem the changes cause (this one is left as it was).
    /// A blank generation (a cold start) is built index by index ([`super::bulk`]).
    pub(super) fn try_apply<'a>(
        &self,
        changes: impl IntoIterator<Item = &'a Change>,
    ) -> Result<(Snapshot, bool), ConfigErrors> {
        if self.is_blank() {
            let changes: Vec<&Change> = changes.into_iter().collect();
            return self.try_build(&changes);
        }
        self.apply_each(changes)
    }

    /// [`Self::try_apply`], one change after another.
    pub(super) fn apply_each<'a>(
        &self,
        changes: impl IntoIterator<Item = &'a Change>,
    ) -> Result<(Snapshot, bool), ConfigErrors> {
        let mut next = self.clone();
        let mut dirty = Dirty::default();
        let mut errs = ConfigErrors::default();
        for c in changes {
            next.change(c, &mut dirty, &mut errs);
        }
        validate::check(&next, &dirty, &mut errs);
        errs.into_result((next, dirty.changed))
    }

    pub(super) fn change(&mut self, c: &Change, d: &mut Dirty, errs: &mut ConfigErrors) {
        match c {
            Change::Workload(w) => {
                validate::workload(&w.item, errs);
                self.put_workload(w.clone(), d);
            }
            Change::Service(s) => {
                validate::service(&s.item, errs);
                self.put_service(s.clone(), d);
            }
            Change::Policy(p) => {
                validate::policy(&p.item, errs);
                self.put_policy(p.clone(), d);
            }
            Change::Drop(Kind::Workload, n) => self.drop_workload(n, d),
            Change::Drop(Kind::Service, n) => self.drop_service(n, d),
            Change::Drop(Kind::Policy, n) => self.drop_policy(n, d),
        }
    }

    /// The generation `local` describes, built as a delta against this one: resources are
    /// named by key, unchanged ones are kept (shared), missing ones dropped. `Ok(None)`
    /// when nothing changed. All of `local` or nothing: a file is one unit.
    pub fn reload(&self, local: LocalConfig) -> Result<Option<Snapshot>, ConfigErrors> {
        let (changes, mut errs) = self.diff(local);
        match self.try_apply(&changes) {
            Ok((next, changed)) => errs.into_result(changed.then_some(next)),
            Err(more) => {
                errs.0.extend(more.0);
                Err(errs)
            }
        }
    }

    /// [`Self::reload`] that returns this generation when nothing changed.
    pub(super) fn apply_local(self, local: LocalConfig) -> Result<Snapshot, ConfigErrors> {
        Ok(self.reload(local)?.unwrap_or(self))
    }

    /// The changes that turn this generation into `local`, by key, and the keys given
    /// twice in `local` as problems.
    pub(super) fn diff(&self, local: LocalConfig) -> (Vec<Change>, ConfigErrors) {
        let mut errs = ConfigErrors::default();
        let mut changes = Vec::new();
        let mut seen = Seen::default();
        for w in local.workloads {
            let rec = Rec::<Workload>::new(Name::from(w.to_string()), w);
            if seen.first(Kind::Workload, &rec.name, &rec.key, "workload", &mut errs)
                && self
                    .workloads
                    .get(&rec.name)
                    .is_none_or(|o| o.item != rec.item)
            {
                changes.push(Change::Workload(rec));
            }
        }
        for s in local.services {
            let rec = Rec::<Service>::new(Name::from(s.key()), s);
            let kind = "service hostname";
            if seen.first(
                Kind::Service,
                &rec.name,
                &rec.item.hostname,
                kind,
                &mut errs,
            ) && self
                .services
                .get(&rec.name)
                .is_none_or(|o| o.item != rec.item)
            {
                changes.push(Change::Service(rec));
            }
        }
        for p in local.policies {
            let rec = Rec::<Policy>::new(Name::from(p.key()), p);
            if seen.first(Kind::Policy, &rec.name, &rec.key, "policy", &mut errs)
                && self
                    .policies
                    .get(&rec.name)
                    .is_none_or(|o| o.item != rec.item)
            {
                changes.push(Change::Policy(rec));
            }
        }
        self.drops(&seen, &mut changes);
        (changes, errs)
    }

    /// Drops of the resources `seen` does not name.
    fn drops(&self, seen: &Seen, changes: &mut Vec<Change>) {
        let gone = |names: &HashSet<Name>, kind, have: &mut dyn Iterator<Item = &Name>| {
            have.filter(|n| !names.contains(*n))
                .map(|n| Change::Drop(kind, n.clone()))
                .collect::<Vec<_>>()
        };
        let w = gone(&seen.workloads, Kind::Workload, &mut self.workloads.keys());
        let s = gone(&seen.services, Kind::Service, &mut self.services.keys());
        let p = gone(&seen.policies, Kind::Policy, &mut self.policies.keys());
        changes.extend(w.into_iter().chain(s).chain(p));
    }
}

/// The names a LocalConfig gave, per kind.
#[derive(Default)]
struct Seen {
    workloads: HashSet<Name>,
    services: HashSet<Name>,
    policies: HashSet<Name>,
}

impl Seen {
    /// Records `name` of kind `k`; false (and a problem naming `shown`) when it was there.
    fn first(
        &mut self,
        k: Kind,
        name: &Name,
        shown: &str,
        kind: &'static str,
        errs: &mut ConfigErrors,
    ) -> bool {
        let set = match k {
            Kind::Workload => &mut self.workloads,
            Kind::Service => &mut self.services,
            Kind::Policy => &mut self.policies,
        };
        let fresh = set.insert(name.clone());
        if !fresh {
            errs.push(ConfigError::Duplicate {
                kind,
                name: shown.to_string(),
            });
        }
        fresh
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
