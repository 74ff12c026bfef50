//! Authorization policies, with ztunnel's evaluation semantics.
//!
//! Which policies apply to a destination workload: `Global` ones, `Namespace` ones of the
//! workload's namespace, `WorkloadSelector` ones naming it in the policy's
//! `selector.workloads` (a zring shorthand), and every policy the workload lists in its
//! `authorizationPolicies` as `"<ns>/<name>"`, whatever its scope (ztunnel's way). A listed
//! policy that is not (yet) known is skipped, as ztunnel skips it: the workload is not
//! refused, and the policy applies to connections opened after it arrives
//! ([`Snapshot::unknown_policies`] names the skipped ones). Dry-run policies are never enforced.
//!
//! Decision: any matching Deny → deny; no Allow applies → allow; an Allow matches → allow;
//! else deny. A policy matches when ANY rule matches; a rule when ALL its clauses match
//! (an empty clause matches); a clause when ANY of its matches holds (an empty match never
//! holds); a match when every field it sets holds (value in list, and not in the `not` list).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::local::Workload;
pub use super::matcher::{Match, ServiceAccountMatch, StringMatch};
use super::snapshot::Snapshot;
use crate::identity::Identity;

/// One authorization policy, in ztunnel's YAML shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub scope: Scope,
    pub action: Action,
    #[serde(default)]
    pub rules: Vec<Vec<Vec<Match>>>,
    /// Evaluated by ztunnel for logs only; zring does not enforce dry-run policies.
    #[serde(default)]
    pub dry_run: bool,
    /// zring shorthand for `WorkloadSelector` scope: workloads (by name) in the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
}

/// Which workloads a `WorkloadSelector` policy selects, besides ztunnel's `authorizationPolicies`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    pub workloads: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    Global,
    Namespace,
    WorkloadSelector,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
}

/// What authorization sees of one connection.
#[derive(Debug, Clone)]
pub struct ConnInfo<'a> {
    pub src_ip: IpAddr,
    /// Peer identity from its mTLS certificate; `None` for plaintext sources.
    pub src_identity: Option<Identity>,
    /// Destination pod IP and target port.
    pub dst: SocketAddr,
    pub dst_workload: &'a Workload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// `policy` is the `"<ns>/<name>"` of the Deny policy that matched, or, when no Allow
    /// policy matched, the comma-separated Allow policies that applied.
    Deny {
        policy: String,
    },
}

impl Snapshot {
    /// Authorizes one connection against the policies that apply to its destination,
    /// found through the scope indexes (not a scan of every policy). A Deny names the
    /// matching Deny policy with the smallest key; a default deny lists the applicable
    /// Allow policies in key order.
    pub fn authorize(&self, conn: &ConnInfo<'_>) -> Decision {
        let applicable = || self.applicable(conn.dst_workload);
        let denies = applicable().filter(|p| p.action == Action::Deny && p.matches(conn));
        if let Some(key) = denies.map(Policy::key).min() {
            return Decision::Deny { policy: key };
        }
        let mut allows = applicable()
            .filter(|p| p.action == Action::Allow)
            .peekable();
        if allows.peek().is_none() {
            return Decision::Allow;
        }
        if applicable().any(|p| p.action == Action::Allow && p.matches(conn)) {
            return Decision::Allow;
        }
        let mut names: Vec<String> = allows.map(Policy::key).collect();
        names.sort();
        names.dedup();
        Decision::Deny {
            policy: names.join(","),
        }
    }

    /// The policies `w` lists in `authorizationPolicies` that this generation does not
    /// hold: skipped by [`Snapshot::authorize`] (ztunnel skips them too), counted by the
    /// caller.
    pub fn unknown_policies<'a>(&'a self, w: &'a Workload) -> impl Iterator<Item = &'a str> + 'a {
        w.authorization_policies
            .iter()
            .map(String::as_str)
            .filter(|k| !self.ix.policy_keys.contains_key(*k))
    }

    /// The enforced policies that apply to `w` (a policy may come twice: in its scope's
    /// list and listed by the workload, which changes no decision).
    fn applicable<'a>(&'a self, w: &'a Workload) -> impl Iterator<Item = &'a Policy> + 'a {
        let global = self.ix.global.iter().flat_map(|l| l.iter());
        let namespace = self.ix.by_namespace.get(w.namespace.as_str());
        let named = self
            .ix
            .by_selector
            .get(w.namespace.as_str())
            .and_then(|m| m.get(w.name.as_str()));
        let listed = w.authorization_policies.iter().filter_map(|k| {
            let p = &self.ix.policy_keys.get(k.as_str())?.first().item;
            let same = k.split_once('/') == Some((p.namespace.as_str(), p.name.as_str()));
            (same && !p.dry_run).then_some(p)
        });
        global
            .chain(namespace.into_iter().flat_map(|l| l.iter()))
            .chain(named.into_iter().flat_map(|l| l.iter()))
            .map(|p| &p.item)
            .chain(listed)
    }
}

/// Authorizes `conn` against `policies` (see the module docs for the semantics).
pub fn authorize(policies: &[Policy], conn: &ConnInfo<'_>) -> Decision {
    let applicable = || {
        policies
            .iter()
            .filter(|p| !p.dry_run && p.applies_to(conn.dst_workload))
    };
    if let Some(p) = applicable().find(|p| p.action == Action::Deny && p.matches(conn)) {
        return Decision::Deny { policy: p.key() };
    }
    let mut allows = applicable()
        .filter(|p| p.action == Action::Allow)
        .peekable();
    if allows.peek().is_none() {
        return Decision::Allow;
    }
    if applicable().any(|p| p.action == Action::Allow && p.matches(conn)) {
        return Decision::Allow;
    }
    let names: Vec<String> = allows.map(Policy::key).collect();
    Decision::Deny {
        policy: names.join(","),
    }
}

impl Policy {
    /// `"<namespace>/<name>"`, the key workloads use in `authorizationPolicies`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether this policy applies to connections to `w`.
    pub fn applies_to(&self, w: &Workload) -> bool {
        let listed = w.authorization_policies.iter().any(|k| {
            k.split_once('/')
                .is_some_and(|(ns, name)| ns == self.namespace && name == self.name)
        });
        listed
            || match self.scope {
                Scope::Global => true,
                Scope::Namespace => self.namespace == w.namespace,
                Scope::WorkloadSelector => self.names(w),
            }
    }

    /// Whether the zring shorthand `selector.workloads` names `w`.
    fn names(&self, w: &Workload) -> bool {
        self.namespace == w.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.workloads.iter().any(|n| *n == w.name))
    }

    /// Whether the policy's rules match `conn` (ignoring scope and action).
    pub fn matches(&self, conn: &ConnInfo<'_>) -> bool {
        self.rules.iter().any(|rule| {
            rule.iter()
                .all(|clause| clause.is_empty() || clause.iter().any(|m| m.matches(conn)))
        })
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
