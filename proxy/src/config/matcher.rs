//! Policy match predicates: string, service-account, CIDR and port matches, and how one
//! [`Match`] is evaluated against a connection (ztunnel semantics).

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
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
