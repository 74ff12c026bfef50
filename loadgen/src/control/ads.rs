//! One delta ADS stream: wildcard subscriptions per type, full state on subscribe, then
//! only differences on every push; ACKs and NACKs are recorded.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use http::Request;
use zring_xds::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use zring_xds::grpc::{encode, Decoder};
use zring_xds::prost_types::value::Kind;
use zring_xds::prost_types::Any;
use zring_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE};

use super::grpc::{start_reply, trailers, INTERNAL, INVALID_ARGUMENT};
use super::{Desired, Event, Shared};

/// Per type: resource name → (version, body).
type Served = HashMap<&'static str, BTreeMap<String, (String, Any)>>;

/// What this stream's client holds, per subscribed type: name → version.
#[derive(Default)]
struct Session {
    held: HashMap<&'static str, BTreeMap<String, String>>,
    nonce: u64,
    /// The stream's request headers (for the `Stream` event).
    headers: Vec<(String, String)>,
}

pub async fn stream(
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    shared: Arc<Shared>,
) {
    let headers = req
        .headers()
        .iter()
        .filter(|(name, _)| *name != http::header::AUTHORIZATION)
        .map(|(name, v)| {
            (
                name.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect::<BTreeMap<_, _>>();
    let mut body = req.into_body();
    let mut out = match start_reply(&mut respond) {
        Ok(s) => s,
        Err(e) => return tracing::warn!("control plane: reply to ADS stream: {e}"),
    };
    let mut config = shared.desired.clone();
    let Some(mut served) = resources(&config.borrow_and_update(), &mut out) else {
        return;
    };
    let mut session = Session {
        headers: headers.into_iter().collect(),
        ..Session::default()
    };
    let mut decoder = Decoder::default();
    loop {
        tokio::select! {
            data = body.data() => {
                let Some(Ok(data)) = data else { break };
                let _ = body.flow_control().release_capacity(data.len());
                decoder.push(&data);
                loop {
                    let req = match decoder.next_message::<DeltaDiscoveryRequest>("DeltaDiscoveryRequest") {
                        Ok(Some(r)) => r,
                        Ok(None) => break,
                        Err(e) => {
                            let _ = out.send_trailers(trailers(INVALID_ARGUMENT, &e.to_string()));
                            return;
                        }
                    };
                    for resp in session.on_request(req, &served, &shared) {
                        if out.send_data(encode(&resp), false).is_err() {
                            return;
                        }
                    }
                }
            }
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(now) = resources(&config.borrow_and_update(), &mut out) else {
                    return;
                };
                served = now;
                for resp in session.push(&served) {
                    if out.send_data(encode(&resp), false).is_err() {
                        return;
                    }
                }
            }
        }
    }
    let _ = out.send_trailers(trailers(0, ""));
}

/// The served configuration as resources with content versions, raw ones included;
/// `None` (the stream ended with INTERNAL) when it cannot be encoded.
fn resources(desired: &Desired, out: &mut h2::SendStream<Bytes>) -> Option<Served> {
    let r = match zring::config::xds::encode(&desired.config) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("control plane cannot serve its configuration: {e}");
            let _ = out.send_trailers(trailers(INTERNAL, &e));
            return None;
        }
    };
    let by_name = |items: Vec<(String, Any)>| {
        items
            .into_iter()
            .map(|(name, any)| (name, (version(&any), any)))
            .collect::<BTreeMap<_, _>>()
    };
    let mut s = Served::new();
    s.insert(ADDRESS_TYPE, by_name(r.addresses));
    s.insert(AUTHORIZATION_TYPE, by_name(r.authorizations));
    for raw in &desired.extra {
        match s.get_mut(raw.type_url.as_str()) {
            Some(of_type) => {
                let body = (version(&raw.body), raw.body.clone());
                of_type.insert(raw.name.clone(), body);
            }
            None => {
                tracing::warn!(type_url = %raw.type_url, "control plane: raw resource of an unserved type dropped")
            }
        }
    }
    Some(s)
}

fn version(any: &Any) -> String {
    let mut h = DefaultHasher::new();
    any.value.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Session {
    /// A subscription gets the state it lacks; an ACK or NACK is recorded.
    fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        served: &Served,
        shared: &Shared,
    ) -> Vec<DeltaDiscoveryResponse> {
        if let Some(node) = &req.node {
            if req.response_nonce.is_empty() && self.held.is_empty() {
                let metadata = node.metadata.iter().flat_map(|m| &m.fields);
                let metadata = metadata
                    .filter_map(|(k, v)| match &v.kind {
                        Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
                        _ => None,
                    })
                    .collect::<BTreeMap<_, _>>();
                shared.record(Event::Stream {
                    node: node.id.clone(),
                    metadata: metadata.into_iter().collect(),
                    headers: self.headers.clone(),
                });
            }
        }
        let Some((&type_url, _)) = served.get_key_value(req.type_url.as_str()) else {
            shared.record(Event::Refused {
                reason: format!("subscription to unserved type {}", req.type_url),
            });
            return Vec::new();
        };
        if !req.response_nonce.is_empty() {
            shared.record(match req.error_detail {
                Some(s) => Event::Nack {
                    type_url: req.type_url,
                    message: s.message,
                },
                None => Event::Ack {
                    type_url: req.type_url,
                },
            });
            return Vec::new();
        }
        let held = self.held.entry(type_url).or_default();
        held.extend(req.initial_resource_versions);
        self.diff(type_url, served).into_iter().collect()
    }

    /// Differences for every subscribed type after the configuration changed.
    fn push(&mut self, served: &Served) -> Vec<DeltaDiscoveryResponse> {
        let types: Vec<&'static str> = self.held.keys().copied().collect();
        types
            .into_iter()
            .filter_map(|t| self.diff(t, served))
            .collect()
    }

    /// What the client lacks of `type_url`, or `None` when it is up to date (except on
    /// subscribe, which is always answered so the client knows it has the full state).
    fn diff(&mut self, type_url: &'static str, served: &Served) -> Option<DeltaDiscoveryResponse> {
        let now = served.get(type_url).cloned().unwrap_or_default();
        let held = self.held.entry(type_url).or_default();
        let first = held.is_empty();
        let resources: Vec<Resource> = now
            .iter()
            .filter(|(name, (v, _))| held.get(*name) != Some(v))
            .map(|(name, (v, any))| Resource {
                name: name.clone(),
                version: v.clone(),
                resource: Some(any.clone()),
                ..Default::default()
            })
            .collect();
        let removed: Vec<String> = held
            .keys()
            .filter(|n| !now.contains_key(*n))
            .cloned()
            .collect();
        if resources.is_empty() && removed.is_empty() && !first {
            return None;
        }
        *held = now.into_iter().map(|(n, (v, _))| (n, v)).collect();
        self.nonce += 1;
        Some(DeltaDiscoveryResponse {
            type_url: type_url.to_string(),
            resources,
            removed_resources: removed,
            nonce: self.nonce.to_string(),
            ..Default::default()
        })
    }
}
