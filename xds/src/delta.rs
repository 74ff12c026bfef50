//! The client side of one delta ADS stream (ztunnel's wildcard subscription), without I/O.
//!
//! A stream starts with one request per type (node on each, the versions already held in
//! `initial_resource_versions` so a reconnect resumes the session). Every response is
//! answered once, after the caller applied what it could: an ACK, or a NACK whose
//! `error_detail` names each refused resource and why. Versions are recorded only for
//! resources that were applied, so a refused resource is sent again on reconnect.
//!
//! A held version costs one small map entry: its name is the `Arc` the caller stores the
//! resource under ([`Update::names`]), and a content hash of 16 hex digits (what istiod and
//! `zring-loadgen` send) is kept as a number.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Node, Resource, Status};
use crate::XdsError;

/// The held versions' hasher: SipHash was most of recording a cold start's 100k versions.
type Hasher = foldhash::fast::RandomState;

/// gRPC code `INVALID_ARGUMENT`, the code of a NACK.
const INVALID_ARGUMENT: i32 = 3;

/// One response, validated against the subscription.
#[derive(Debug, Clone)]
pub struct Update {
    pub type_url: String,
    pub nonce: String,
    pub upserts: Vec<Resource>,
    pub removed: Vec<String>,
    /// `upserts[i].name`, shared: the caller stores resource `i` under `names[i]`, and the
    /// subscription keeps its version under the same allocation.
    names: Vec<Arc<str>>,
}

impl Update {
    pub fn new(
        type_url: String,
        nonce: String,
        upserts: Vec<Resource>,
        removed: Vec<String>,
    ) -> Self {
        let names = upserts.iter().map(|r| Arc::from(r.name.as_str())).collect();
        Update {
            type_url,
            nonce,
            upserts,
            removed,
            names,
        }
    }

    /// The names of the upserts, in their order.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }
}

/// A held resource's version: a 16-digit lowercase hex content hash as its number, any
/// other text as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Version {
    Hash(u64),
    Text(Box<str>),
}

impl Version {
    fn new(v: &str) -> Self {
        let hex = v.len() == 16 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match u64::from_str_radix(v, 16) {
            Ok(n) if hex => Version::Hash(n),
            _ => Version::Text(v.into()),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Hash(n) => write!(f, "{n:016x}"),
            Version::Text(t) => f.write_str(t),
        }
    }
}

/// A resource the caller refused, and why (goes into the NACK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Subscription {
    node: Node,
    types: Vec<String>,
    /// Per type: resource name → version applied.
    versions: HashMap<String, HashMap<Arc<str>, Version, Hasher>>,
}

impl Subscription {
    pub fn new(node: Node, types: &[&str]) -> Self {
        Subscription {
            node,
            types: types.iter().map(|t| t.to_string()).collect(),
            versions: HashMap::new(),
        }
    }

    /// The requests that open a (re)connected stream, one per type.
    pub fn initial_requests(&self) -> Vec<DeltaDiscoveryRequest> {
        self.types
            .iter()
            .map(|t| DeltaDiscoveryRequest {
                node: Some(self.node.clone()),
                type_url: t.clone(),
                initial_resource_versions: self
                    .versions
                    .get(t)
                    .map(|v| {
                        v.iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                ..Default::default()
            })
            .collect()
    }

    /// Checks a response's type; the caller then applies it and calls [`Self::answer`].
    pub fn receive(&self, resp: DeltaDiscoveryResponse) -> Result<Update, XdsError> {
        if !self.types.contains(&resp.type_url) {
            return Err(XdsError::UnexpectedType {
                got: resp.type_url,
                expected: self.types.clone(),
            });
        }
        Ok(Update::new(
            resp.type_url,
            resp.nonce,
            resp.resources,
            resp.removed_resources,
        ))
    }

    /// Records what was applied and builds the ACK (nothing rejected) or NACK.
    pub fn answer(&mut self, update: &Update, rejected: &[Rejected]) -> DeltaDiscoveryRequest {
        let versions = self.versions.entry(update.type_url.clone()).or_default();
        // One table of the right size on a cold start, not ~17 doublings.
        versions.reserve(update.upserts.len());
        let refused: HashSet<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
        let applied = |name: &str| !refused.contains(name);
        // A refused removal keeps its version: the resource is still held.
        for name in update.removed.iter().filter(|n| applied(n)) {
            versions.remove(name.as_str());
        }
        let upserts = update.names.iter().zip(&update.upserts);
        for (name, r) in upserts.filter(|(n, _)| applied(n)) {
            versions.insert(name.clone(), Version::new(&r.version));
        }
        DeltaDiscoveryRequest {
            type_url: update.type_url.clone(),
            response_nonce: update.nonce.clone(),
            error_detail: nack_status(rejected),
            ..Default::default()
        }
    }

    /// Names of the resources held for a type (for `/config_dump` and tests).
    pub fn held(&self, type_url: &str) -> impl Iterator<Item = &str> {
        self.versions
            .get(type_url)
            .into_iter()
            .flat_map(|v| v.keys().map(|k| &**k))
    }
}

fn nack_status(rejected: &[Rejected]) -> Option<Status> {
    if rejected.is_empty() {
        return None;
    }
    let message = rejected
        .iter()
        .map(|r| format!("{}: {}", r.name, r.reason))
        .collect::<Vec<_>>()
        .join("; ");
    Some(Status {
        code: INVALID_ARGUMENT,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ADDRESS_TYPE, AUTHORIZATION_TYPE};

    fn sub() -> Subscription {
        let node = Node {
            id: "ztunnel~10.0.0.1~n1.istio-system~istio-system.svc.cluster.local".into(),
            ..Default::default()
        };
        Subscription::new(node, &[ADDRESS_TYPE, AUTHORIZATION_TYPE])
    }

    fn resource(name: &str, version: &str) -> Resource {
        Resource {
            name: name.into(),
            version: version.into(),
            ..Default::default()
        }
    }

    fn response(resources: Vec<Resource>, removed: &[&str], nonce: &str) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            type_url: ADDRESS_TYPE.into(),
            resources,
            removed_resources: removed.iter().map(|s| s.to_string()).collect(),
            nonce: nonce.into(),
            ..Default::default()
        }
    }

    #[test]
    fn first_stream_subscribes_every_type_as_wildcard_with_the_node() {
        let reqs = sub().initial_requests();
        let types: Vec<_> = reqs.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(types, [ADDRESS_TYPE, AUTHORIZATION_TYPE]);
        for r in &reqs {
            assert!(r.node.as_ref().unwrap().id.starts_with("ztunnel~"));
            assert!(r.resource_names_subscribe.is_empty());
            assert!(r.initial_resource_versions.is_empty());
            assert!(r.response_nonce.is_empty());
        }
    }

    #[test]
    fn ack_records_versions_and_a_reconnect_resumes_from_them() {
        let mut s = sub();
        let u = s
            .receive(response(
                vec![resource("a", "1"), resource("b", "1")],
                &[],
                "n1",
            ))
            .unwrap();
        let ack = s.answer(&u, &[]);
        assert_eq!(ack.response_nonce, "n1");
        assert!(ack.error_detail.is_none());
        let u = s
            .receive(response(vec![resource("b", "2")], &["a"], "n2"))
            .unwrap();
        s.answer(&u, &[]);
        let resume = &s.initial_requests()[0];
        assert_eq!(resume.initial_resource_versions.len(), 1);
        assert_eq!(resume.initial_resource_versions["b"], "2");
    }

    #[test]
    fn nack_names_each_refused_resource_and_keeps_the_rest() {
        let mut s = sub();
        let u = s
            .receive(response(
                vec![resource("good", "1"), resource("bad", "1")],
                &[],
                "n1",
            ))
            .unwrap();
        let rejected = [Rejected {
            name: "bad".into(),
            reason: "workload has no address".into(),
        }];
        let nack = s.answer(&u, &rejected);
        let status = nack.error_detail.unwrap();
        assert_eq!(status.code, INVALID_ARGUMENT);
        assert_eq!(status.message, "bad: workload has no address");
        assert_eq!(nack.response_nonce, "n1");
        assert_eq!(s.held(ADDRESS_TYPE).collect::<Vec<_>>(), ["good"]);
    }

    #[test]
    fn a_refused_removal_keeps_its_version() {
        let mut s = sub();
        let u = s
            .receive(response(vec![resource("a", "1")], &[], "n1"))
            .unwrap();
        s.answer(&u, &[]);
        let u = s.receive(response(vec![], &["a"], "n2")).unwrap();
        let refused = [Rejected {
            name: "a".into(),
            reason: "still named by a workload".into(),
        }];
        s.answer(&u, &refused);
        assert_eq!(s.held(ADDRESS_TYPE).collect::<Vec<_>>(), ["a"]);
    }

    /// Content hashes are kept as numbers and any other version as its text; either way a
    /// reconnect reports exactly what was received.
    #[test]
    fn a_reconnect_reports_each_version_as_received() {
        let versions = [
            "00ff00ff00ff00ff",
            "0123456789abcdef",
            "0123456789ABCDEF",
            "7",
            "",
            "abc",
        ];
        let mut s = sub();
        let held: Vec<_> = (0..versions.len())
            .map(|i| resource(&format!("r{i}"), versions[i]))
            .collect();
        let u = s.receive(response(held, &[], "n1")).unwrap();
        s.answer(&u, &[]);
        let resume = &s.initial_requests()[0].initial_resource_versions;
        for (i, v) in versions.iter().enumerate() {
            assert_eq!(resume[&format!("r{i}")], *v);
        }
        assert_eq!(
            Version::new("0123456789abcdef"),
            Version::Hash(0x0123456789abcdef)
        );
        assert!(matches!(Version::new("+123456789abcdef"), Version::Text(_)));
    }

    /// The subscription holds a version under the caller's `Arc` of the name, not a copy.
    #[test]
    fn a_held_name_is_the_updates_allocation() {
        let mut s = sub();
        let u = s
            .receive(response(vec![resource("a", "1")], &[], "n1"))
            .unwrap();
        s.answer(&u, &[]);
        let held = s.versions[ADDRESS_TYPE].keys().next().unwrap();
        assert!(Arc::ptr_eq(held, &u.names()[0]));
    }

    #[test]
    fn a_response_of_an_unsubscribed_type_is_an_error() {
        let mut r = response(vec![], &[], "n");
        r.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster".into();
        assert!(matches!(
            sub().receive(r),
            Err(XdsError::UnexpectedType { .. })
        ));
    }
}
