//! The xDS client thread: one delta ADS stream to istiod (gRPC over HTTP/2 over TLS, as
//! ztunnel speaks it), driven by `zring_xds::delta` and applied through
//! [`XdsStore`](crate::config::xds::XdsStore). Every applied update becomes a new
//! immutable generation for the cores (the same swap the file reload uses); refused
//! resources are NACKed with their reasons and the previous state stays in force. It
//! reconnects with backoff, resuming from the versions it holds. Readiness (15021) turns
//! on once both types have been received and applied. Off the data cores: its own thread
//! with a single-threaded tokio runtime.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http::Uri;
use zring_xds::delta::{Rejected, Subscription, Update};
use zring_xds::discovery::Node;
use zring_xds::grpc::{encode, Decoder};
use zring_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE, DELTA_ADS_PATH};

use crate::config::xds::XdsStore;
use crate::config::xds_env::{CaSettings, XdsSettings};
use crate::config::{Config, Snapshot};
use crate::error::ProxyError;
use crate::runtime::grpc::{err, grpc_status, recv, request, Server};
use crate::runtime::state::{Shared, State};
use crate::tls::CertStore;

const TYPES: [&str; 2] = [ADDRESS_TYPE, AUTHORIZATION_TYPE];
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long after a push the generations it superseded are looked at again when no
/// other push comes: longer than a core's housekeeping tick (1 s), on which an idle core
/// adopts the newest generation and lets go of the one it ran.
const RETIRE_AFTER: Duration = Duration::from_millis(1500);
/// Resources in a response from which its versions are recorded once the stream is idle
/// (see [`Client::record`]); a smaller one's are recorded right after its ACK. Waiting for
/// idle costs two passes of the runtime, each an `epoll_wait` (a profile of single-workload
/// pushes at 100k: 5 system calls per push, 2 of them these), while recording one
/// version takes well under a microsecond.
const RECORD_LATER: usize = 1024;

pub fn spawn(config: Arc<Config>, shared: Arc<Shared>) -> Result<JoinHandle<()>, ProxyError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProxyError::Xds(format!("cannot start the xDS runtime: {e}")))?;
    std::thread::Builder::new()
        .name("zring-xds".into())
        .spawn(move || {
            // The client runs as a task, not as `block_on`'s own future: tokio wakes the
            // `block_on` future through an extra non-blocking poll of the driver (one
            // more epoll_wait per push), while a task woken by the connection's task
            // runs in the same scheduler pass.
            if let Err(e) = rt.block_on(rt.spawn(run(config, shared))) {
                tracing::error!("the xDS client stopped: {e}");
            }
        })
        .map_err(|e| ProxyError::Xds(format!("cannot spawn the xDS thread: {e}")))
}

/// What survives reconnects: the subscription's versions and the applied resources.
struct Client {
    config: Arc<Config>,
    shared: Arc<Shared>,
    settings: XdsSettings,
    sub: Subscription,
    store: XdsStore,
    /// Types received and applied at least once (readiness needs all of them).
    seen: HashSet<String>,
    /// The generations this thread published that a core may still run (the newest
    /// last); see [`Client::retire`].
    retired: Vec<Arc<State>>,
    /// Responses ACKed whose versions are not recorded yet (see [`Client::record`]).
    unrecorded: Vec<(Update, Vec<Rejected>)>,
}

async fn run(config: Arc<Config>, shared: Arc<Shared>) {
    let Some(settings) = config.xds.clone() else {
        return;
    };
    let node = Node {
        id: settings.node_id.clone(),
        cluster: settings.cluster_id.clone(),
        metadata: Some(zring_xds::string_struct(
            settings
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )),
    };
    let mut c = Client {
        sub: Subscription::new(node, &TYPES),
        store: XdsStore::new(config.node_name.as_deref()),
        seen: HashSet::new(),
        retired: Vec::new(),
        unrecorded: Vec::new(),
        settings,
        config,
        shared,
    };
    if let Some(ca) = c.config.ca.clone() {
        spawn_ca(c.config.clone(), c.shared.clone(), ca);
    }
    let mut backoff = BACKOFF_MIN;
    let shared = c.shared.clone();
    while !shared.stopping() {
        let result = tokio::select! {
            r = c.session() => r,
            _ = stopped(&shared) => return,
        };
        match result {
            Ok(()) => {
                tracing::info!(address = %c.settings.address, "istiod ended the xDS stream; reconnecting");
                backoff = BACKOFF_MIN;
            }
            Err(e) => tracing::warn!(
                address = %c.settings.address,
                retry_in = ?backoff,
                "{e}; the last configuration stays in force (check XDS_ADDRESS, XDS_ROOT_CA, AUTH_TOKEN and that istiod is up)"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&shared) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Starts the CA loop on a thread of its own. On the xDS thread's runtime, a cold start's
/// certificate request waited for what that thread does after publishing (recording
/// and dropping 100k resources: 25-57 ms at 100k workloads), and readiness waits for the
/// certificate. When the thread cannot be started, the loop runs on this runtime.
fn spawn_ca(config: Arc<Config>, shared: Arc<Shared>, ca: CaSettings) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let started = rt.map_err(|e| e.to_string()).and_then(|rt| {
        let (config, shared, ca) = (config.clone(), shared.clone(), ca.clone());
        let thread = std::thread::Builder::new().name("zring-ca".into());
        // As the xDS client: a task, not `block_on`'s own future.
        thread
            .spawn(move || drop(rt.block_on(rt.spawn(super::ca::run(config, shared, ca)))))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = started {
        tracing::warn!("cannot start the CA thread ({e}); the CA client runs on the xDS thread");
        tokio::spawn(super::ca::run(config, shared, ca));
    }
}

/// Ready once the tasks woken before it (the HTTP/2 connection's reading what arrived)
/// have run: nothing ready to read by then means the stream is idle.
async fn idle() {
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
}

async fn stopped(shared: &Shared) {
    let mut bell = shared.bell();
    while !shared.stopping() {
        if bell.changed().await.is_err() {
            return;
        }
    }
}

impl Client {
    async fn session(&mut self) -> Result<(), ProxyError> {
        // The versions to resume from.
        self.record(|_| true);
        let uri: Uri = self.settings.address.parse().map_err(|e| {
            err(
                &format!("XDS_ADDRESS {:?} is not a URL", self.settings.address),
                e,
            )
        })?;
        let server = Server {
            uri: &uri,
            roots: &self.settings.root_ca,
            roots_env: "XDS_ROOT_CA",
            alt_hostname: self.settings.alt_hostname.as_deref(),
            timeout: self.config.connect_timeout,
        };
        let mut h2 = server.connect().await?;
        let req = request(
            &uri,
            DELTA_ADS_PATH,
            &self.settings.token,
            &self.settings.headers,
        )?;
        let (response, mut send) = h2
            .send_request(req, false)
            .map_err(|e| err("open the ADS stream", e))?;
        for r in self.sub.initial_requests() {
            send.send_data(encode(&r), false)
                .map_err(|e| err("send the subscription", e))?;
        }
        let response = response.await.map_err(|e| err("istiod's answer", e))?;
        grpc_status(response.headers())?;
        let _up = Connected::up(self.shared.clone());
        let mut body = response.into_body();
        let mut decoder = Decoder::default();
        // When the first byte of the message being received arrived (timeline in the log).
        let mut since: Option<Instant> = None;
        loop {
            let data = tokio::select! {
                biased;
                data = recv(&mut body, "read the ADS stream") => data?,
                _ = idle(), if !self.unrecorded.is_empty() => {
                    self.record(|_| true);
                    continue;
                }
                _ = tokio::time::sleep(RETIRE_AFTER), if self.retired.len() > 1 => {
                    self.retire();
                    continue;
                }
            };
            let Some(data) = data else { break };
            let first = *since.get_or_insert_with(Instant::now);
            decoder.push(&data);
            loop {
                let whole = Instant::now();
                let frame = decoder.next_frame();
                let Some(frame) = frame.map_err(|e| err("decode istiod's response", e))? else {
                    break;
                };
                // Read in place: each resource's body stays a slice of the frame.
                let update = self.sub.receive_frame(frame);
                let update = update.map_err(|e| err("istiod's response", e))?;
                let decoded = Instant::now();
                let rejected = self.on_response(&update);
                let answer = self.sub.ack(&update, &rejected);
                tracing::debug!(
                    resources = update.upserts.len(),
                    received = ?whole - first,
                    decoded = ?decoded - whole,
                    applied = ?decoded.elapsed(),
                    "response taken in"
                );
                since = None;
                send.send_data(encode(&answer), false)
                    .map_err(|e| err("send the ACK", e))?;
                // In order within a type.
                self.record(|t| t == update.type_url);
                if update.upserts.len() + update.removed.len() < RECORD_LATER {
                    self.sub.record(&update, &rejected);
                } else {
                    self.unrecorded.push((update, rejected));
                }
            }
        }
        decoder.finish().map_err(|e| err("the ADS stream", e))?;
        match body.trailers().await {
            Ok(Some(t)) => grpc_status(&t),
            Ok(None) => Ok(()),
            Err(e) => Err(err("the ADS stream's end", e)),
        }
    }

    /// Applies one response and returns the resources it refused (for its ACK or NACK).
    fn on_response(&mut self, update: &Update) -> Vec<Rejected> {
        // Take the store out so `publish` can borrow the rest of the client.
        let mut store = std::mem::take(&mut self.store);
        let rejected = store.apply_and_publish(update, |local| self.publish(local));
        self.store = store;
        self.retire();
        self.shared
            .control
            .xds_update(&update.type_url, !rejected.is_empty());
        for r in &rejected {
            tracing::warn!(resource = %r.name, type_url = %update.type_url, "refused: {}", r.reason);
        }
        if !self.seen.contains(&update.type_url) {
            self.seen.insert(update.type_url.clone());
        }
        if TYPES.iter().all(|t| self.seen.contains(*t)) && !self.shared.synced() {
            let generation = self.shared.generation();
            tracing::info!(generation, "first full state from istiod applied");
            self.shared.set_synced();
            // With a CA, readiness also waits for the local workloads' certificates.
            if self.config.ca.is_none() {
                self.shared.set_ready_at(generation);
            }
        }
        rejected
    }

    /// Records the versions of the ACKed responses of the types `which` picks, in the
    /// order they came, and lets go of them. Recording a cold start's 100k versions takes
    /// ~20 ms: it waits until the stream has nothing to read (or until the next response
    /// of the type), so the response that completes the first full state (readiness) is
    /// not held behind it.
    fn record(&mut self, which: impl Fn(&str) -> bool) {
        let (now, later) = std::mem::take(&mut self.unrecorded)
            .into_iter()
            .partition(|(u, _)| which(&u.type_url));
        self.unrecorded = later;
        for (update, rejected) in now {
            self.sub.record(&update, &rejected);
        }
    }

    /// Puts `snapshot` in force: a pointer swap for the cores (it shares what did not
    /// change with the generation before).
    fn publish(&self, snapshot: Snapshot) -> Result<(), ProxyError> {
        let generation = match self.config.ca {
            // The CA client owns the certificates: keep the ones in force.
            Some(_) => self
                .shared
                .publish(|current| (snapshot, current.certs.clone())),
            None => {
                let certs = CertStore::load(&self.config.cert_dir, &self.config.trust_domain)?;
                self.shared.publish(|_| (snapshot, certs))
            }
        };
        tracing::info!(generation, "configuration from istiod applied");
        Ok(())
    }
}

impl Client {
    /// Holds the generation in force and drops each earlier one this thread published
    /// once nothing else holds it, so the last reference to a superseded generation is
    /// always let go here: a core adopting a newer one only decrements a count. (A core
    /// that held the last one freed its unshared nodes, the paths the pushes since had
    /// copied: a profile of 100k workloads put ~13% of zring's CPU per push there, on a
    /// core, freeing memory this thread had allocated.)
    fn retire(&mut self) {
        let current = self.shared.current();
        if !self
            .retired
            .last()
            .is_some_and(|s| Arc::ptr_eq(s, &current))
        {
            self.retired.push(current);
        }
        // Nothing else holds one with a count of 1, and nothing can take it again: the
        // shared block and the cores hand out only what they hold.
        self.retired.retain(|s| Arc::strong_count(s) > 1);
    }
}

/// `zring_xds_connected` is 1 while this lives: from istiod's answer to the stream's end
/// (also when the session is dropped on shutdown).
struct Connected(Arc<Shared>);

impl Connected {
    fn up(shared: Arc<Shared>) -> Connected {
        shared.control.set_xds_connected(true);
        Connected(shared)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.control.set_xds_connected(false);
    }
}
