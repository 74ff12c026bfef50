//! A small Istio control plane for the load generator's topology and for tests: delta ADS
//! (`istio.workload.Address`, `istio.security.Authorization`) and the certificate service
//! (`IstioCertificateService/CreateCertificate`), both gRPC over HTTP/2 over TLS on one
//! port, as istiod serves them on 15012. It serves a [`LocalConfig`] and pushes every
//! change given to [`ControlPlane::push`] as deltas; CSRs are signed by the dev CA. Tests
//! can serve [`Raw`] resources beside the configuration ([`ControlPlane::push_with`]) to
//! see how a proxy refuses a malformed or contradictory one.
//!
//! What is served is a [`catalog`] of resources by name. A whole configuration is compared
//! with it once per push; an [`Update`] ([`ControlPlane::update`]) is applied by name, so
//! a push of one workload costs the control plane O(log N), not O(N), and each stream
//! sends its client only the [`catalog::Change`] (`zring-loadgen scale` times proxies
//! with it, so the control plane's own work must not count).
//!
//! It runs on its own thread with a single-threaded tokio runtime and only ever listens
//! on the address it is given (127.0.0.1 or an address inside a test's namespace).
//! Clients must present the bearer token; a certificate is only issued for an identity
//! of a workload in the served configuration.

mod ads;
mod ca;
pub mod catalog;
mod grpc;
pub mod proxies;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use zring::config::LocalConfig;
use zring_xds::prost_types::Any;

use crate::error::Error;
pub use catalog::Update;
use catalog::{Catalog, Change};

/// What the control plane saw, in order (for tests and the demo's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A delta ADS stream opened by this node id, with the node's string metadata and
    /// the stream's request headers (all but `authorization`), each sorted by name.
    Stream {
        node: String,
        metadata: Vec<(String, String)>,
        headers: Vec<(String, String)>,
    },
    /// A response of this type was ACKed.
    Ack { type_url: String },
    /// A response of this type was NACKed with this message.
    Nack { type_url: String, message: String },
    /// A response of this type was sent with this many resources and removals.
    Sent {
        type_url: String,
        resources: usize,
        removed: usize,
    },
    /// A certificate was issued for this SPIFFE identity.
    Issued { identity: String },
    /// A request was refused (bad token, unknown identity, bad CSR...), and why.
    Refused { reason: String },
}

/// How to run the control plane.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Dev CA directory (`zring ca init`): signs CSRs and the server's own certificate.
    pub ca_dir: PathBuf,
    /// The bearer token clients must send.
    pub token: String,
    /// DNS names in the server certificate (besides the listen IP).
    pub dns_names: Vec<String>,
}

/// A resource served as given, not encoded from the configuration: a body that does not
/// decode, or one that contradicts the rest.
#[derive(Debug, Clone)]
pub struct Raw {
    /// `ADDRESS_TYPE` or `AUTHORIZATION_TYPE` (any other type is not served).
    pub type_url: String,
    pub name: String,
    pub body: Any,
}

/// What is served, and the open streams each change goes to.
#[derive(Default)]
pub(crate) struct Served {
    pub catalog: Catalog,
    pub streams: Vec<mpsc::UnboundedSender<Arc<Change>>>,
}

impl Served {
    /// Sends `change` to every open stream (closed ones are dropped).
    fn publish(&mut self, change: Change) {
        if change.is_empty() {
            return;
        }
        let change = Arc::new(change);
        self.streams.retain(|s| s.send(change.clone()).is_ok());
    }
}

pub(crate) struct Shared {
    pub settings: Settings,
    pub events: Mutex<Vec<(Instant, Event)>>,
    pub served: Mutex<Served>,
}

impl Shared {
    pub fn record(&self, e: Event) {
        match &e {
            Event::Nack { .. } | Event::Refused { .. } => {
                tracing::warn!(event = ?e, "control plane")
            }
            Event::Sent { .. } => tracing::debug!(event = ?e, "control plane"),
            _ => tracing::info!(event = ?e, "control plane"),
        }
        let now = Instant::now();
        self.events.lock().expect("events lock").push((now, e));
    }

    pub fn served(&self) -> std::sync::MutexGuard<'_, Served> {
        self.served.lock().expect("served lock")
    }
}

/// A running control plane; stopped on drop.
pub struct ControlPlane {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ControlPlane {
    pub fn start(settings: Settings, initial: LocalConfig) -> Result<ControlPlane, Error> {
        let listener =
            std::net::TcpListener::bind(settings.listen).map_err(|source| Error::Io {
                what: format!("bind the control plane on {}", settings.listen),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            what: "read the control plane's address".into(),
            source,
        })?;
        let tls = grpc::server_tls(&settings, addr.ip())?;
        let catalog = Catalog::build(&initial, &[]).map_err(|e| {
            Error::Setup(format!(
                "the control plane cannot serve its configuration: {e}"
            ))
        })?;
        let shared = Arc::new(Shared {
            settings,
            events: Mutex::new(Vec::new()),
            served: Mutex::new(Served {
                catalog,
                streams: Vec::new(),
            }),
        });
        let (stop, stopped) = oneshot::channel();
        let thread = grpc::spawn(listener, tls, shared.clone(), stopped)?;
        Ok(ControlPlane {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the served configuration; connected clients get the difference.
    pub fn push(&self, config: LocalConfig) {
        self.push_with(config, Vec::new());
    }

    /// [`Self::push`], serving `extra` beside the configuration's resources until the
    /// next push; a client gets them in the same response as the configuration's changes
    /// of their type. A raw resource named like one of the configuration's replaces it.
    /// A configuration that cannot be encoded is not served (a `Refused` event says why).
    pub fn push_with(&self, config: LocalConfig, extra: Vec<Raw>) {
        match Catalog::build(&config, &extra) {
            Ok(next) => {
                let mut served = self.shared.served();
                let change = served.catalog.replace(next);
                served.publish(change);
            }
            Err(e) => self.shared.record(Event::Refused {
                reason: format!("cannot serve the pushed configuration: {e}"),
            }),
        }
    }

    /// Applies `u` by name: its cost is its own size, not the size of what is served.
    pub fn update(&self, u: &Update) -> Result<(), Error> {
        let mut served = self.shared.served();
        let change = served
            .catalog
            .update(u)
            .map_err(|e| Error::Setup(format!("the control plane cannot serve an update: {e}")))?;
        served.publish(change);
        Ok(())
    }

    pub fn events(&self) -> Vec<Event> {
        let events = self.shared.events.lock().expect("events lock");
        events.iter().map(|(_, e)| e.clone()).collect()
    }

    /// The events from the `from`th on, with the time each was recorded.
    pub fn events_since(&self, from: usize) -> Vec<(Instant, Event)> {
        let events = self.shared.events.lock().expect("events lock");
        events.get(from..).unwrap_or_default().to_vec()
    }

    /// How many events were recorded so far.
    pub fn event_count(&self) -> usize {
        self.shared.events.lock().expect("events lock").len()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
