//! Policy match predicates: string, service-account, CIDR and port matches, and how one
//! [`Match`] is evaluated against a connection (ztunnel semantics).

use serde::{Deserialize, Serialize};

use super::cidr::Cidr;
use super::policy::ConnInfo;
use crate::identity::Identity;

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

/// A string pattern, read and written exactly as ztunnel's LocalConfig does: a YAML tag
/// naming the kind, `!Exact "x"`, `!Prefix "x"`, `!Suffix "x"` or `!Presence []` (serde's
/// externally tagged enum under serde_yaml 0.9, ztunnel's own shape). The map form
/// `{Exact: x}` and plain strings are refused, as ztunnel refuses them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "StringMatchYaml", into = "StringMatchYaml")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Presence,
}

/// A source service account: `{namespace: ns, serviceAccount: sa}` (ztunnel's shape).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountMatch {
    pub namespace: String,
    pub service_account: String,
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
    // As ztunnel: the identity without `spiffe://` against the pattern as written (a
    // pattern that keeps `spiffe://` never matches); no identity matches nothing.
    let p = principal();
    field(&m.principals, &m.not_principals, |s| {
        p.as_deref().is_some_and(|p| s.matches(p))
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
}

impl ServiceAccountMatch {
    pub fn matches(&self, id: &Identity) -> bool {
        id.namespace == self.namespace && id.service_account == self.service_account
    }
}

/// ztunnel's own serde shape of a string match (`Presence()` is a tuple variant with no
/// fields, hence `!Presence []`).
#[derive(Clone, Serialize, Deserialize)]
enum StringMatchYaml {
    Prefix(String),
    Suffix(String),
    Exact(String),
    Presence(),
}

impl From<StringMatchYaml> for StringMatch {
    fn from(y: StringMatchYaml) -> StringMatch {
        match y {
            StringMatchYaml::Exact(s) => StringMatch::Exact(s),
            StringMatchYaml::Prefix(s) => StringMatch::Prefix(s),
            StringMatchYaml::Suffix(s) => StringMatch::Suffix(s),
            StringMatchYaml::Presence() => StringMatch::Presence,
        }
    }
}

impl From<StringMatch> for StringMatchYaml {
    fn from(m: StringMatch) -> StringMatchYaml {
        match m {
            StringMatch::Exact(s) => StringMatchYaml::Exact(s),
            StringMatch::Prefix(s) => StringMatchYaml::Prefix(s),
            StringMatch::Suffix(s) => StringMatchYaml::Suffix(s),
            StringMatch::Presence => StringMatchYaml::Presence(),
        }
    }
}
