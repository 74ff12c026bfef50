//! One core: its monoio runtime, its own listeners, HBONE pool, TLS config caches,
//! round-robin state and counters. Nothing here is shared with other cores.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{abortable, AbortHandle};
use monoio::net::{TcpListener, TcpStream};

use crate::config::{Config, RoundRobin};
use crate::error::ProxyError;
use crate::hbone::client::Timing;
use crate::hbone::pool::Pool;
use crate::identity::Identity;
use crate::inpod::pods::PodInbox;
use crate::inpod::PodUid;
use crate::runtime::drain::Drain;
use crate::runtime::handoff::{BulkView, Handed, Handoff, Inbox};
use crate::runtime::metrics::Metrics;
use crate::runtime::pods::{serve_pods, PodLive};
use crate::runtime::state::{CoreSlot, Shared, State};
use crate::runtime::ListenerKind;
use crate::sys;
use crate::tls::CertStore;

/// How often a core looks for a new config generation or a shutdown request when no one
/// rings the bell ([`Shared::ring`]: publishing, draining, stopping and a metrics scrape
/// do); also its pool's idle eviction period.
pub(crate) const CONTROL_TICK: Duration = Duration::from_secs(1);

pub type HbonePool = Pool<h2::client::SendRequest<Bytes>, ProxyError>;

/// Per-core state handed to every connection task as `Rc<Core>`.
pub struct Core {
    pub id: usize,
    pub config: Arc<Config>,
    pub(super) shared: Arc<Shared>,
    /// Rc around the shared Arc so a connection's clone is a plain increment, not an
    /// atomic one (no atomics on the per-connection path).
    #[allow(clippy::redundant_allocation)]
    state: RefCell<Rc<Arc<State>>>,
    generation: Cell<u64>,
    pub rr: RefCell<RoundRobin>,
    pub pool: HbonePool,
    pub metrics: Metrics,
    /// Raised when the process drains; inbound HBONE connections answer with GOAWAY.
    pub drain: Drain,
    /// The accept loops, stopped (and their listeners closed) when draining starts.
    accepts: RefCell<Vec<AbortHandle>>,
    server_tls: RefCell<HashMap<Identity, Arc<rustls::ServerConfig>>>,
    client_tls: RefCell<HashMap<(Identity, Identity), Arc<rustls::ClientConfig>>>,
    /// Places the inbound end of a same-node HBONE connection on this core or the next.
    pub handoff: Arc<Handoff>,
    /// This core's copy of the bulk destinations ([`Handoff::placement`]).
    pub bulk: RefCell<BulkView>,
    /// Same-node HBONE tunnels this core's outbound side has open.
    pub same_node_open: Cell<usize>,
    /// In-pod mode: each captured pod's accept loops and connections on this core.
    pub(super) pods: RefCell<HashMap<PodUid, Rc<PodLive>>>,
}

impl Core {
    pub fn new(id: usize, config: Arc<Config>, shared: Arc<Shared>, handoff: Arc<Handoff>) -> Core {
        let state = shared.current();
        Core {
            id,
            pool: Pool::new(config.pool_max_streams as usize),
            config,
            generation: Cell::new(state.generation),
            state: RefCell::new(Rc::new(state)),
            shared,
            rr: RefCell::default(),
            metrics: Metrics::default(),
            drain: Drain::default(),
            accepts: RefCell::default(),
            server_tls: RefCell::default(),
            client_tls: RefCell::default(),
            handoff,
            bulk: RefCell::default(),
            same_node_open: Cell::new(0),
            pods: RefCell::default(),
        }
    }

    /// The configuration generation in force (cheap: a non-atomic Rc clone).
    #[allow(clippy::redundant_allocation)]
    pub fn state(&self) -> Rc<Arc<State>> {
        self.state.borrow().clone()
    }

    pub fn timing(&self) -> Timing {
        Timing {
            connect_timeout: self.config.connect_timeout,
            ping_interval: self.config.ping_interval,
            ping_timeout: self.config.ping_timeout,
        }
    }

    /// The server TLS config presenting `id`'s certificate, built once per generation.
    pub fn server_tls(&self, id: &Identity) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
        if let Some(config) = self.server_tls.borrow().get(id) {
            return Ok(config.clone());
        }
        let config = self.state().certs.server_config(id)?;
        self.server_tls
            .borrow_mut()
            .insert(id.clone(), config.clone());
        Ok(config)
    }

    /// The client TLS config presenting `src` and expecting `dst`, built once per generation.
    pub fn client_tls(
        &self,
        src: &Identity,
        dst: &Identity,
    ) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
        let key = (src.clone(), dst.clone());
        if let Some(config) = self.client_tls.borrow().get(&key) {
            return Ok(config.clone());
        }
        let config = self
            .state()
            .certs
            .client_config(src, std::slice::from_ref(dst))?;
        self.client_tls.borrow_mut().insert(key, config.clone());
        Ok(config)
    }

    /// Starts draining once the process asked for it: closes the listeners (their accept
    /// loops end) and raises the drain signal.
    fn drain_if_asked(&self) {
        if self.drain.raised() || !self.shared.draining() {
            return;
        }
        for accept in self.accepts.borrow_mut().drain(..) {
            accept.abort();
        }
        for pod in self.pods.borrow().values() {
            pod.stop_accepting();
        }
        self.drain.raise();
        tracing::info!(
            core = self.id,
            "draining: listeners closed, GOAWAY sent on inbound HBONE"
        );
    }

    /// Adopts a newer generation if the control thread published one.
    fn refresh(&self) {
        let published = self.shared.generation();
        if published == self.generation.get() {
            return;
        }
        let next = self.shared.current();
        // A workload push keeps the certificates: the TLS configs built from them (and
        // the client configs' resumption caches) stay valid.
        if !same_certs(&self.state.borrow().certs, &next.certs) {
            self.server_tls.borrow_mut().clear();
            self.client_tls.borrow_mut().clear();
        }
        *self.state.borrow_mut() = Rc::new(next);
        self.generation.set(published);
        tracing::info!(
            core = self.id,
            generation = published,
            "core adopted new configuration"
        );
    }
}

/// Whether two generations hold the very same trust bundle and certificates (the same
/// allocations: a generation that did not reload them shares them with the last one).
fn same_certs(a: &CertStore, b: &CertStore) -> bool {
    let same_key = |id| match (a.certified_key(id), b.certified_key(id)) {
        (Ok(x), Ok(y)) => Arc::ptr_eq(x, y),
        _ => false,
    };
    Arc::ptr_eq(a.roots(), b.roots())
        && a.identities().eq(b.identities())
        && a.identities().all(same_key)
}

/// Runs one core until shutdown: accept loops for each listener plus housekeeping.
pub async fn run(
    core: Rc<Core>,
    listeners: Vec<(ListenerKind, StdListener)>,
    inbox: Inbox,
    pods: Option<PodInbox>,
) -> Result<(), ProxyError> {
    monoio::spawn(serve_handed(core.clone(), inbox));
    if let Some(pods) = pods {
        monoio::spawn(serve_pods(core.clone(), pods));
    }
    for (kind, std_listener) in listeners {
        let handle = spawn_accept(&core, kind, std_listener, None)?;
        core.accepts.borrow_mut().push(handle);
    }
    let mut last_evict = Instant::now();
    let mut bell = core.shared.bell();
    while !core.shared.stopping() {
        let heard = *bell.borrow_and_update();
        core.refresh();
        core.drain_if_asked();
        let metrics = core
            .metrics
            .sample(core.pool.len(), crate::sys::thread_cpu_time());
        let generation = core.generation.get();
        let slot = CoreSlot {
            metrics,
            generation,
            heard,
        };
        core.shared.store_core(core.id, slot);
        if last_evict.elapsed() >= CONTROL_TICK {
            core.pool
                .evict_idle(Instant::now(), core.config.pool_idle_timeout);
            last_evict = Instant::now();
        }
        listen(&mut bell).await;
    }
    Ok(())
}

/// Until the bell rings or [`CONTROL_TICK`] passes.
async fn listen(bell: &mut tokio::sync::watch::Receiver<u64>) {
    // The sender lives in `Shared`: an error is not expected, but must not spin.
    if let Ok(Err(_)) = monoio::time::timeout(CONTROL_TICK, bell.changed()).await {
        monoio::time::sleep(CONTROL_TICK).await;
    }
}

/// Accepts on `l`; `pod`: the captured pod it listens in, whose connections it joins.
pub(super) fn spawn_accept(
    core: &Rc<Core>,
    kind: ListenerKind,
    l: StdListener,
    pod: Option<Rc<PodLive>>,
) -> Result<AbortHandle, ProxyError> {
    let listener = TcpListener::from_std(l)?;
    let (accepting, handle) = abortable(accept_loop(core.clone(), kind, listener, pod));
    monoio::spawn(accepting);
    Ok(handle)
}

async fn accept_loop(
    core: Rc<Core>,
    kind: ListenerKind,
    listener: TcpListener,
    pod: Option<Rc<PodLive>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                spawn_handler(core.clone(), kind, stream, peer, pod.clone());
            }
            Err(e) => {
                tracing::warn!(core = core.id, ?kind, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Spawns the task serving one accepted connection. One task type per listener kind, so
/// each task is the size of its own future: a task per outbound connection must not be
/// as large as the inbound HBONE connection's (TLS and HTTP/2 handshakes) future.
fn spawn_handler(
    core: Rc<Core>,
    kind: ListenerKind,
    stream: TcpStream,
    peer: SocketAddr,
    pod: Option<Rc<PodLive>>,
) {
    use crate::{inbound, outbound};
    match kind {
        ListenerKind::Outbound => spawn_in(pod.as_ref(), async move {
            let result = outbound::serve_captured(&core, stream, peer).await;
            finished(&core, kind, peer, result)
        }),
        ListenerKind::Socks5 => spawn_in(pod.as_ref(), async move {
            let result = outbound::serve_socks5(&core, stream, peer).await;
            finished(&core, kind, peer, result)
        }),
        ListenerKind::Inbound => spawn_in(pod.clone().as_ref(), async move {
            if let Some(stream) = keep_or_hand_off(&core, stream, peer, pod.as_ref()) {
                serve_inbound(core, stream, peer, pod).await;
            }
        }),
        ListenerKind::InboundPlaintext => spawn_in(pod.as_ref(), async move {
            let result = inbound::serve_plaintext(&core, stream, peer).await;
            finished(&core, kind, peer, result)
        }),
    };
}

/// Spawns a connection's task; a captured pod's joins the pod's connections (closed when
/// the pod's drain times out).
pub(super) fn spawn_in<F: std::future::Future<Output = ()> + 'static>(
    pod: Option<&Rc<PodLive>>,
    task: F,
) {
    match pod {
        Some(pod) => drop(monoio::spawn(pod.conns.track(task))),
        None => drop(monoio::spawn(task)),
    }
}

/// `pod`: the captured pod whose 15008 accepted it (GOAWAY on its drain, not only the
/// node's).
async fn serve_inbound(
    core: Rc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    pod: Option<Rc<PodLive>>,
) {
    let drain = pod.as_ref().map_or(&core.drain, |p| &p.drain);
    let result = crate::inbound::serve_hbone(&core, stream, peer, drain).await;
    finished(&core, ListenerKind::Inbound, peer, result)
}

/// `stream` back when this core serves it; `None` once another core has it: the
/// connection is a same-node client end's that its placement puts there ([`Handoff`]).
fn keep_or_hand_off(
    core: &Core,
    stream: TcpStream,
    peer: SocketAddr,
    pod: Option<&Rc<PodLive>>,
) -> Option<TcpStream> {
    if core.config.cores < 2 {
        return Some(stream);
    }
    // A same-node client end registered its address before its SYN left (`hbone::client`).
    let Some(target) = core.handoff.target(peer, core.id) else {
        return Some(stream);
    };
    let handed = Handed {
        fd: sys::into_owned_fd(stream),
        peer,
        pod: pod.map(|p| p.uid.clone()),
    };
    match core.handoff.send(target, handed) {
        Ok(()) => None,
        // The target core has stopped: serve it here.
        Err(back) => TcpStream::from_std(back.fd.into()).ok(),
    }
}

/// Serves the inbound HBONE sockets other cores hand to this one.
async fn serve_handed(core: Rc<Core>, mut inbox: Inbox) {
    while let Some(Handed { fd, peer, pod }) = inbox.recv().await {
        // A pod's connection joins that pod's on this core (it may have been released
        // meanwhile: then it is served as a node-level one).
        let pod = pod.and_then(|uid| core.pods.borrow().get(&uid).cloned());
        match TcpStream::from_std(fd.into()) {
            Ok(stream) => spawn_in(
                pod.as_ref(),
                serve_inbound(core.clone(), stream, peer, pod.clone()),
            ),
            Err(e) => {
                tracing::warn!(core = core.id, %peer, error = %e, "taking a handed HBONE socket failed")
            }
        }
    }
}

fn finished(core: &Core, kind: ListenerKind, peer: SocketAddr, result: Result<(), ProxyError>) {
    if let Err(e) = result {
        core.metrics.failed_early();
        tracing::debug!(core = core.id, ?kind, %peer, error = %e, "connection failed");
    }
}
