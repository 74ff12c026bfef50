//! The client side of one delta ADS stream (ztunnel's wildcard subscription), without I/O.
//!
//! A stream starts with one request per type (node on each, the versions already held in
//! `initial_resource_versions` so a reconnect resumes the session). Every response is
//! answered once, after the caller applied what it could: an ACK, or a NACK whose
//! `error_detail` names each refused resource and why. Versions are recorded only for
//! resources that were applied, so a refused resource is sent again on reconnect.

use std::collections::{BTreeMap, HashMap};

use crate::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Node, Resource, Status};
use crate::XdsError;

/// gRPC code `INVALID_ARGUMENT`, the code of a NACK.
const INVALID_ARGUMENT: i32 = 3;

/// One response, validated against the subscription.
#[derive(Debug, Clone)]
pub struct Update {
    pub type_url: String,
    pub nonce: String,
    pub upserts: Vec<Resource>,
    pub removed: Vec<String>,
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
    versions: HashMap<String, BTreeMap<String, String>>,
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
                    .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
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
        Ok(Update {
            type_url: resp.type_url,
            nonce: resp.nonce,
            upserts: resp.resources,
            removed: resp.removed_resources,
        })
    }

    /// Records what was applied and builds the ACK (nothing rejected) or NACK.
    pub fn answer(&mut self, update: &Update, rejected: &[Rejected]) -> DeltaDiscoveryRequest {
        let versions = self.versions.entry(update.type_url.clone()).or_default();
        let applied = |name: &str| rejected.iter().all(|x| x.name != name);
        // A refused removal keeps its version: the resource is still held.
        for name in update.removed.iter().filter(|n| applied(n)) {
            versions.remove(name);
        }
        for r in update.upserts.iter().filter(|r| applied(&r.name)) {
            versions.insert(r.name.clone(), r.version.clone());
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
            .flat_map(|v| v.keys().map(String::as_str))
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
