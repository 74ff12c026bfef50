//! Authorization policies, with ztunnel's evaluation semantics.
//!
//! Which policies apply to a destination workload: `Global` ones, `Namespace` ones of the
//! workload's namespace, and `WorkloadSelector` ones that select it (listed in the
//! workload's `authorizationPolicies` as `"<ns>/<name>"`, ztunnel's way, or naming it in the
//! policy's `selector.workloads`, a zring shorthand). Dry-run policies are never enforced.
//!
//! Decision: any matching Deny → deny; no Allow applies → allow; an Allow matches → allow;
//! else deny. A policy matches when ANY rule matches; a rule when ALL its clauses match
//! (an empty clause matches); a clause when ANY of its matches holds (an empty match never
//! holds); a match when every field it sets holds (value in list, and not in the `not` list).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::cidr::Cidr;
use super::local::Workload;
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

/// One match: every non-empty field must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<ServiceAccountMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_source_ips: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ips: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_destination_ips: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_destination_ports: Vec<u16>,
}

/// A string pattern. YAML: ztunnel's `{Exact: x}` / `{Prefix: x}` / `{Suffix: x}` /
/// `{Presence: {}}`, or Istio's plain form: `"x"`, `"x*"`, `"*x"`, `"*"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "StringMatchYaml")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Presence,
}

/// A source service account. YAML: `{namespace: ns, serviceAccount: sa}` or `"ns/sa"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "ServiceAccountMatchYaml")]
pub struct ServiceAccountMatch {
    pub namespace: String,
    pub service_account: String,
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
    /// Authorizes one connection against this snapshot's policies.
    pub fn authorize(&self, conn: &ConnInfo<'_>) -> Decision {
        authorize(&self.local().policies, conn)
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
        match self.scope {
            Scope::Global => true,
            Scope::Namespace => self.namespace == w.namespace,
            Scope::WorkloadSelector => self.selects(w),
        }
    }

    fn selects(&self, w: &Workload) -> bool {
        let listed = w.authorization_policies.iter().any(|k| {
            k.split_once('/')
                .is_some_and(|(ns, name)| ns == self.namespace && name == self.name)
        });
        let named = self.namespace == w.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.workloads.contains(&w.name));
        listed || named
    }

    /// Whether the policy's rules match `conn` (ignoring scope and action).
    pub fn matches(&self, conn: &ConnInfo<'_>) -> bool {
        self.rules.iter().any(|rule| {
            rule.iter()
                .all(|clause| clause.is_empty() || clause.iter().any(|m| m.matches(conn)))
        })
    }
}

impl Match {
    pub fn is_empty(&self) -> bool {
        *self == Match::default()
    }

    /// Whether every field set in this match holds for `conn`; an empty match never holds.
    pub fn matches(&self, conn: &ConnInfo<'_>) -> bool {
        if self.is_empty() {
            return false;
        }
        let id = conn.src_identity.as_ref();
        let ns = id.map_or("", |i| i.namespace.as_str());
        let principal = || {
            id.map(|i| {
                format!(
                    "{}/ns/{}/sa/{}",
                    i.trust_domain, i.namespace, i.service_account
                )
            })
        };
        field(&self.destination_ips, &self.not_destination_ips, |c| {
            c.contains(conn.dst.ip())
        }) && field(&self.source_ips, &self.not_source_ips, |c| {
            c.contains(conn.src_ip)
        }) && field(&self.destination_ports, &self.not_destination_ports, |p| {
            *p == conn.dst.port()
        }) && field(&self.service_accounts, &self.not_service_accounts, |m| {
            id.is_some_and(|i| m.matches(i))
        }) && field(&self.namespaces, &self.not_namespaces, |m| m.matches(ns))
            && principals_hold(self, principal)
    }
}

fn principals_hold(m: &Match, principal: impl FnOnce() -> Option<String>) -> bool {
    if m.principals.is_empty() && m.not_principals.is_empty() {
        return true;
    }
    let p = principal();
    field(&m.principals, &m.not_principals, |s| {
        p.as_deref().is_some_and(|p| s.matches_principal(p))
    })
}

/// ztunnel's per-field rule: some positive entry holds (if any) and no negative entry does.
fn field<T>(positive: &[T], negative: &[T], holds: impl Fn(&T) -> bool) -> bool {
    (positive.is_empty() || positive.iter().any(&holds)) && !negative.iter().any(&holds)
}

impl StringMatch {
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StringMatch::Exact(x) => s == x,
            StringMatch::Prefix(x) => s.starts_with(x.as_str()),
            StringMatch::Suffix(x) => s.ends_with(x.as_str()),
            StringMatch::Presence => !s.is_empty(),
        }
    }

    /// Matches a principal written without its scheme (`td/ns/x/sa/y`); patterns may carry
    /// a `spiffe://` prefix, which is ignored.
    pub fn matches_principal(&self, principal: &str) -> bool {
        let strip = |x: &str| x.strip_prefix("spiffe://").unwrap_or(x).to_string();
        match self {
            StringMatch::Exact(x) => principal == strip(x),
            StringMatch::Prefix(x) => principal.starts_with(&strip(x)),
            other => other.matches(principal),
        }
    }
}

/// Always the tagged form (`{Exact: x}`), which reads back unambiguously.
impl Serialize for StringMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        match self {
            StringMatch::Exact(x) => map.serialize_entry("Exact", x)?,
            StringMatch::Prefix(x) => map.serialize_entry("Prefix", x)?,
            StringMatch::Suffix(x) => map.serialize_entry("Suffix", x)?,
            StringMatch::Presence => map.serialize_entry("Presence", &BTreeMap::<u8, u8>::new())?,
        }
        map.end()
    }
}

impl ServiceAccountMatch {
    pub fn matches(&self, id: &Identity) -> bool {
        id.namespace == self.namespace && id.service_account == self.service_account
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringMatchYaml {
    Plain(String),
    Tagged(TaggedStringMatch),
}

#[derive(Deserialize)]
enum TaggedStringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Presence(IgnoredAny),
}

impl From<StringMatchYaml> for StringMatch {
    fn from(y: StringMatchYaml) -> StringMatch {
        match y {
            StringMatchYaml::Plain(s) if s == "*" => StringMatch::Presence,
            StringMatchYaml::Plain(s) => match (s.strip_prefix('*'), s.strip_suffix('*')) {
                (Some(suffix), _) => StringMatch::Suffix(suffix.to_string()),
                (None, Some(prefix)) => StringMatch::Prefix(prefix.to_string()),
                (None, None) => StringMatch::Exact(s),
            },
            StringMatchYaml::Tagged(TaggedStringMatch::Exact(s)) => StringMatch::Exact(s),
            StringMatchYaml::Tagged(TaggedStringMatch::Prefix(s)) => StringMatch::Prefix(s),
            StringMatchYaml::Tagged(TaggedStringMatch::Suffix(s)) => StringMatch::Suffix(s),
            StringMatchYaml::Tagged(TaggedStringMatch::Presence(_)) => StringMatch::Presence,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ServiceAccountMatchYaml {
    Plain(String),
    Map {
        namespace: String,
        #[serde(rename = "serviceAccount")]
        service_account: String,
    },
}

impl TryFrom<ServiceAccountMatchYaml> for ServiceAccountMatch {
    type Error = String;

    fn try_from(y: ServiceAccountMatchYaml) -> Result<Self, String> {
        let (namespace, service_account) = match y {
            ServiceAccountMatchYaml::Map {
                namespace,
                service_account,
            } => (namespace, service_account),
            ServiceAccountMatchYaml::Plain(s) => match s.split_once('/') {
                Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() => (ns.into(), sa.into()),
                _ => {
                    return Err(format!(
                        "service account {s:?} must be \"<namespace>/<serviceAccount>\""
                    ))
                }
            },
        };
        Ok(ServiceAccountMatch {
            namespace,
            service_account,
        })
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
