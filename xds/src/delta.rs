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

use bytes::Bytes;
use prost::Message;

use crate::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Node, Resource, Status};
use crate::wire::{Fields, Malformed, Value};
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
    pub upserts: Vec<Upsert>,
    pub removed: Vec<String>,
}

/// One resource put by a response. Taken from the wire ([`Subscription::receive_frame`]),
/// its version and body are slices of the response's one buffer, not copies.
#[derive(Debug, Clone)]
pub struct Upsert {
    /// Shared: the caller stores the resource under this allocation, and the subscription
    /// keeps its version under the same one.
    pub name: Arc<str>,
    version: Bytes,
    body: Option<Body>,
}

/// A resource's `Any`: its type URL (UTF-8) and its message's bytes.
#[derive(Debug, Clone)]
struct Body {
    type_url: Bytes,
    value: Bytes,
}

impl Upsert {
    /// From prost's message (the bytes move, they are not copied).
    pub fn new(r: Resource) -> Self {
        Upsert {
            name: Arc::from(r.name),
            version: Bytes::from(r.version),
            body: r.resource.map(|any| Body {
                type_url: Bytes::from(any.type_url),
                value: Bytes::from(any.value),
            }),
        }
    }

    pub fn version(&self) -> &str {
        text(&self.version)
    }

    /// The body's type URL and bytes; None when the resource has none.
    pub fn body(&self) -> Option<(&str, &[u8])> {
        self.body
            .as_ref()
            .map(|b| (text(&b.type_url), &b.value[..]))
    }
}

/// Bytes checked as UTF-8 when they were read.
fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

impl Update {
    pub fn new(
        type_url: String,
        nonce: String,
        upserts: Vec<Resource>,
        removed: Vec<String>,
    ) -> Self {
        Update {
            type_url,
            nonce,
            upserts: upserts.into_iter().map(Upsert::new).collect(),
            removed,
        }
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
        self.checked(Update::new(
            resp.type_url,
            resp.nonce,
            resp.resources,
            resp.removed_resources,
        ))
    }

    /// [`Self::receive`] of a response's bytes (one gRPC frame): read in place, so each
    /// resource's version and body stay slices of `frame`. A response this reader leaves
    /// to prost (see [`crate::wire`]) is decoded by prost, with prost's errors.
    pub fn receive_frame(&self, frame: Bytes) -> Result<Update, XdsError> {
        let update = match read_response(&frame) {
            Ok(u) => u,
            Err(Malformed) => {
                let resp =
                    DeltaDiscoveryResponse::decode(frame).map_err(|source| XdsError::Decode {
                        what: "DeltaDiscoveryResponse",
                        source,
                    })?;
                return self.receive(resp);
            }
        };
        self.checked(update)
    }

    fn checked(&self, update: Update) -> Result<Update, XdsError> {
        if !self.types.contains(&update.type_url) {
            return Err(XdsError::UnexpectedType {
                got: update.type_url,
                expected: self.types.clone(),
            });
        }
        Ok(update)
    }

    /// Records what was applied and builds the ACK (nothing rejected) or NACK:
    /// [`Self::record`], then [`Self::ack`].
    pub fn answer(&mut self, update: &Update, rejected: &[Rejected]) -> DeltaDiscoveryRequest {
        self.record(update, rejected);
        self.ack(update, rejected)
    }

    /// The ACK (nothing rejected) or NACK of `update`. It does not depend on the versions
    /// held, so it may be sent before [`Self::record`] is called, as long as `record` is
    /// called before the next update of the type is recorded and before the next
    /// [`Self::initial_requests`].
    pub fn ack(&self, update: &Update, rejected: &[Rejected]) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: update.type_url.clone(),
            response_nonce: update.nonce.clone(),
            error_detail: nack_status(rejected),
            ..Default::default()
        }
    }

    /// Records the versions of what `update` applied (all of it but `rejected`).
    pub fn record(&mut self, update: &Update, rejected: &[Rejected]) {
        let versions = self.versions.entry(update.type_url.clone()).or_default();
        // One table of the right size on a cold start, not ~17 doublings.
        versions.reserve(update.upserts.len());
        let refused: HashSet<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
        let applied = |name: &str| !refused.contains(name);
        // A refused removal keeps its version: the resource is still held.
        for name in update.removed.iter().filter(|n| applied(n)) {
            versions.remove(name.as_str());
        }
        for r in update.upserts.iter().filter(|r| applied(&r.name)) {
            versions.insert(r.name.clone(), Version::new(r.version()));
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

/// A `DeltaDiscoveryResponse` read in place from `frame` (see [`Upsert`]).
fn read_response(frame: &Bytes) -> Result<Update, Malformed> {
    // Counted first (each skipped by its length): a cold start's ~100k resources go into
    // one allocation of the right size.
    let resources = Fields::new(frame)
        .filter(|f| matches!(f, Ok((2, _))))
        .count();
    let mut u = Update {
        type_url: String::new(),
        nonce: String::new(),
        upserts: Vec::with_capacity(resources),
        removed: Vec::new(),
    };
    for field in Fields::new(frame) {
        match field? {
            // system_version_info: unused, but prost refuses it when not UTF-8.
            (1, v) => {
                v.str()?;
            }
            (2, v) => u.upserts.push(read_resource(frame, v.bytes()?)?),
            (4, v) => u.type_url = v.str()?.to_string(),
            (5, v) => u.nonce = v.str()?.to_string(),
            (6, v) => u.removed.push(v.str()?.to_string()),
            _ => {}
        }
    }
    Ok(u)
}

/// One `Resource` (`r`, a slice of `frame`); a body given twice (prost merges the two)
/// is left to prost.
fn read_resource(frame: &Bytes, r: &[u8]) -> Result<Upsert, Malformed> {
    let (mut name, mut version, mut body) = ("", Bytes::new(), None);
    for field in Fields::new(r) {
        match field? {
            (1, v) => version = slice(frame, v.str()?.as_bytes()),
            (2, v) if body.is_none() => body = Some(read_any(frame, v)?),
            (2, _) => return Err(Malformed),
            (3, v) => name = v.str()?,
            // aliases: unused, but prost refuses them when not UTF-8.
            (4, v) => {
                v.str()?;
            }
            _ => {}
        }
    }
    Ok(Upsert {
        name: Arc::from(name),
        version,
        body,
    })
}

fn read_any(frame: &Bytes, any: Value<'_>) -> Result<Body, Malformed> {
    let mut body = Body {
        type_url: Bytes::new(),
        value: Bytes::new(),
    };
    for field in Fields::new(any.bytes()?) {
        match field? {
            (1, v) => body.type_url = slice(frame, v.str()?.as_bytes()),
            (2, v) => body.value = slice(frame, v.bytes()?),
            _ => {}
        }
    }
    Ok(body)
}

/// `part` (a slice of `frame`) as a `Bytes` sharing `frame`'s buffer.
fn slice(frame: &Bytes, part: &[u8]) -> Bytes {
    if part.is_empty() {
        return Bytes::new();
    }
    frame.slice_ref(part)
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
    fn an_ack_sent_before_its_versions_are_recorded_is_the_answer() {
        let resp = || {
            let held = vec![resource("a", "1"), resource("b", "1")];
            response(held, &[], "n1")
        };
        let refused = [Rejected {
            name: "b".into(),
            reason: "workload has no address".into(),
        }];
        let mut s = sub();
        let u = s.receive(resp()).unwrap();
        let ack = s.ack(&u, &refused);
        assert_eq!(s.held(ADDRESS_TYPE).count(), 0);
        s.record(&u, &refused);
        let mut answered = sub();
        let u = answered.receive(resp()).unwrap();
        assert_eq!(ack, answered.answer(&u, &refused));
        assert_eq!(s.held(ADDRESS_TYPE).collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.initial_requests(), answered.initial_requests());
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
        assert!(Arc::ptr_eq(held, &u.upserts[0].name));
    }

    /// What an update holds, to compare the two ways in.
    fn seen(u: &Update) -> (String, String, Vec<String>, Vec<String>) {
        let each = |r: &Upsert| match r.body() {
            Some((t, v)) => format!("{} {} {t} {v:?}", r.name, r.version()),
            None => format!("{} {} -", r.name, r.version()),
        };
        let upserts = u.upserts.iter().map(each).collect();
        (
            u.type_url.clone(),
            u.nonce.clone(),
            upserts,
            u.removed.clone(),
        )
    }

    fn with_body(name: &str, version: &str, value: &[u8]) -> Resource {
        Resource {
            resource: Some(prost_types::Any {
                type_url: ADDRESS_TYPE.into(),
                value: value.to_vec(),
            }),
            aliases: vec!["alias".into()],
            ..resource(name, version)
        }
    }

    /// A response read in place holds what prost's decoding holds, its bodies borrowed
    /// from the frame.
    #[test]
    fn a_frame_read_in_place_is_the_response_prost_decodes() {
        let resp = DeltaDiscoveryResponse {
            system_version_info: "v".into(),
            ..response(
                vec![
                    with_body("a", "0123456789abcdef", &[1, 2, 3]),
                    resource("b", ""),
                    with_body("c", "7", &[]),
                ],
                &["gone"],
                "n1",
            )
        };
        let frame = Bytes::from(resp.encode_to_vec());
        let by_prost = sub().receive(resp).unwrap();
        let u = sub().receive_frame(frame.clone()).unwrap();
        assert_eq!(seen(&u), seen(&by_prost));
        let (_, value) = u.upserts[0].body().unwrap();
        let inside = frame.as_ptr_range();
        assert!(inside.contains(&value.as_ptr()), "the body was copied");
        let mut s = sub();
        s.answer(&u, &[]);
        let resume = &s.initial_requests()[0].initial_resource_versions;
        assert_eq!(resume["a"], "0123456789abcdef");
        assert_eq!(resume["c"], "7");
    }

    /// A resource whose body comes twice is merged by prost: the frame goes to it.
    #[test]
    fn a_frame_the_reader_leaves_to_prost_is_decoded_by_prost() {
        let resp = response(vec![with_body("a", "1", &[1])], &[], "n1");
        let mut r = with_body("a", "1", &[1]).encode_to_vec();
        let extra = with_body("a", "1", &[0x08, 0x01]);
        r.extend_from_slice(&extra.encode_to_vec());
        let mut wire = resp.encode_to_vec();
        // resources (field 2) once more, holding the resource with two bodies
        wire.push(0x12);
        prost::encoding::encode_varint(r.len() as u64, &mut wire);
        wire.extend_from_slice(&r);
        let frame = Bytes::from(wire);
        let by_prost = DeltaDiscoveryResponse::decode(frame.clone()).unwrap();
        assert!(read_response(&frame).is_err());
        let u = sub().receive_frame(frame).unwrap();
        assert_eq!(seen(&u), seen(&sub().receive(by_prost).unwrap()));
        assert_eq!(u.upserts.len(), 2);
    }

    #[test]
    fn a_broken_frame_is_refused_as_prost_refuses_it() {
        let resp = response(vec![with_body("a", "1", &[1])], &[], "n1");
        let wire = resp.encode_to_vec();
        for cut in 0..wire.len() {
            let frame = Bytes::copy_from_slice(&wire[..cut]);
            let ours = sub().receive_frame(frame.clone()).map(|u| seen(&u));
            let prosts = DeltaDiscoveryResponse::decode(frame)
                .map_err(|_| ())
                .and_then(|r| sub().receive(r).map_err(|_| ()))
                .map(|u| seen(&u));
            assert_eq!(ours.map_err(|_| ()), prosts, "cut at {cut}");
        }
        let mut bad = resp.clone();
        bad.nonce = "\u{1}x".into();
        let mut wire = bad.encode_to_vec();
        let at = wire.windows(2).position(|b| b == [1, b'x']).unwrap();
        wire[at] = 0xff;
        assert!(matches!(
            sub().receive_frame(Bytes::from(wire)),
            Err(XdsError::Decode { .. })
        ));
        let mut other = resp;
        other.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster".into();
        assert!(matches!(
            sub().receive_frame(Bytes::from(other.encode_to_vec())),
            Err(XdsError::UnexpectedType { .. })
        ));
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
