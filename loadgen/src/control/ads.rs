//! One delta ADS stream: wildcard subscriptions per type, the full state on subscribe,
//! then each push's [`Change`] as it is, less what the client already holds; ACKs and
//! NACKs are recorded. A push costs a stream the size of the change, not of the state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use http::Request;
use tokio::sync::mpsc;
use zring_xds::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use zring_xds::grpc::{encode, Decoder};
use zring_xds::prost_types::value::Kind;

use super::catalog::{Catalog, Change, Entry, TYPES};
use super::grpc::{start_reply, trailers, INVALID_ARGUMENT};
use super::{Event, Shared};

/// What this stream's client holds, per subscribed type: name → version.
#[derive(Default)]
struct Session {
    held: HashMap<&'static str, HashMap<String, String>>,
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
    let (tx, mut changes) = mpsc::unbounded_channel();
    shared.served().streams.push(tx);
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
                    for resp in session.on_request(req, &shared, &mut changes) {
                        if out.send_data(encode(&resp), false).is_err() {
                            return;
                        }
                    }
                }
            }
            change = changes.recv() => {
                let Some(change) = change else { break };
                for resp in session.forward(&change, &shared) {
                    if out.send_data(encode(&resp), false).is_err() {
                        return;
                    }
                }
            }
        }
    }
    let _ = out.send_trailers(trailers(0, ""));
}

impl Session {
    /// A subscription gets the state it lacks; an ACK or NACK is recorded.
    fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        shared: &Shared,
        changes: &mut mpsc::UnboundedReceiver<Arc<Change>>,
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
        let Some(&type_url) = TYPES.iter().find(|t| **t == req.type_url) else {
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
        // Changes already queued are in the catalog: the other types get them now, so
        // that none of them reaches this type's fresh state afterwards.
        let served = shared.served();
        let mut out = Vec::new();
        while let Ok(change) = changes.try_recv() {
            out.extend(self.forward(&change, shared));
        }
        let held = self.held.entry(type_url).or_default();
        held.extend(req.initial_resource_versions);
        let resp = self.full(type_url, &served.catalog);
        out.extend(resp.map(|r| self.sent(r, shared)));
        out
    }

    /// What the client lacks of `type_url`, or `None` when it is up to date (except on
    /// subscribe, which is always answered so the client knows it has the full state).
    fn full(
        &mut self,
        type_url: &'static str,
        catalog: &Catalog,
    ) -> Option<DeltaDiscoveryResponse> {
        let empty = BTreeMap::new();
        let now = catalog.resources(type_url).map_or(&empty, |(_, r)| r);
        let held = self.held.entry(type_url).or_default();
        let first = held.is_empty();
        let resources: Vec<Resource> = now
            .iter()
            .filter(|(name, e)| held.get(*name) != Some(&e.version))
            .map(|(name, e)| resource(name, e))
            .collect();
        let removed: Vec<String> = held
            .keys()
            .filter(|n| !now.contains_key(*n))
            .cloned()
            .collect();
        if resources.is_empty() && removed.is_empty() && !first {
            return None;
        }
        *held = now
            .iter()
            .map(|(n, e)| (n.clone(), e.version.clone()))
            .collect();
        Some(self.response(type_url, resources, removed))
    }

    /// A push's change, per subscribed type, less what the client already holds.
    fn forward(&mut self, change: &Change, shared: &Shared) -> Vec<DeltaDiscoveryResponse> {
        let mut out = Vec::new();
        for t in TYPES {
            let Some(held) = self.held.get_mut(t) else {
                continue;
            };
            let removed: Vec<String> = change
                .removed
                .iter()
                .filter(|(ty, name)| *ty == t && held.remove(name).is_some())
                .map(|(_, name)| name.clone())
                .collect();
            let mut resources = Vec::new();
            for (_, name, e) in change.put.iter().filter(|(ty, _, _)| *ty == t) {
                if held.get(name) != Some(&e.version) {
                    held.insert(name.clone(), e.version.clone());
                    resources.push(resource(name, e));
                }
            }
            if !resources.is_empty() || !removed.is_empty() {
                let r = self.response(t, resources, removed);
                out.push(self.sent(r, shared));
            }
        }
        out
    }

    fn response(
        &mut self,
        type_url: &str,
        resources: Vec<Resource>,
        removed: Vec<String>,
    ) -> DeltaDiscoveryResponse {
        self.nonce += 1;
        DeltaDiscoveryResponse {
            type_url: type_url.to_string(),
            resources,
            removed_resources: removed,
            nonce: self.nonce.to_string(),
            ..Default::default()
        }
    }

    /// Records that `r` is being sent.
    fn sent(&self, r: DeltaDiscoveryResponse, shared: &Shared) -> DeltaDiscoveryResponse {
        shared.record(Event::Sent {
            type_url: r.type_url.clone(),
            resources: r.resources.len(),
            removed: r.removed_resources.len(),
        });
        r
    }
}

fn resource(name: &str, e: &Entry) -> Resource {
    Resource {
        name: name.to_string(),
        version: e.version.clone(),
        resource: Some(e.body.clone()),
        ..Default::default()
    }
}
