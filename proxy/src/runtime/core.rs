//! One core: its monoio runtime, its own listeners, and the contexts it hands the legs
//! (`outbound::Context`: HBONE pool, round-robin state; `inbound::Context`; both over one
//! `context::Common`: the generation in force, TLS config caches, counters). Nothing here
//! is shared with other cores. The runtime calls into the legs; they do not call back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{abortable, AbortHandle};
use monoio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::context::Common;
use crate::error::ProxyError;
use crate::inpod::pods::PodInbox;
use crate::inpod::PodUid;
use crate::runtime::drain::Drain;
use crate::runtime::handoff::{Handed, Handoff, Inbox};
use crate::runtime::pods::{serve_pods, PodLive};
use crate::runtime::state::{CoreSlot, Shared};
use crate::runtime::trim::{Step, Trim};
use crate::runtime::ListenerKind;
use crate::{inbound, outbound, sys};

/// How often an idle core adopts a newer generation and reports its counters when no one
/// rings the bell ([`Shared::ring`]: draining, stopping, a metrics scrape and a wait for
/// adoption do; a connection adopts the newest generation itself); also its pool's idle
/// eviction period.
pub(crate) const CONTROL_TICK: Duration = Duration::from_secs(1);

/// One core's runtime side: its listeners' accept loops, its pods, its drain signal,
/// and the contexts it hands each accepted connection's leg.
pub struct Core {
    pub id: usize,
    pub config: Arc<Config>,
    pub(super) shared: Arc<Shared>,
    /// What every leg reads: the generation in force, TLS config caches, counters.
    pub(super) common: Rc<Common>,
    /// The outbound leg's (15001, 15080): HBONE pool, round robin, same-node placement.
    pub(super) outbound: Rc<outbound::Context>,
    /// The inbound leg's (15008, 15006).
    inbound: Rc<inbound::Context>,
    /// Raised when the process drains; inbound HBONE connections answer with GOAWAY.
    pub drain: Rc<Drain>,
    /// The accept loops, stopped (and their listeners closed) when draining starts.
    accepts: RefCell<Vec<AbortHandle>>,
    /// Places the inbound end of a same-node HBONE connection on this core or the next.
    handoff: Arc<Handoff>,
    /// In-pod mode: each captured pod's accept loops and connections on this core.
    pub(super) pods: RefCell<HashMap<PodUid, Rc<PodLive>>>,
}

impl Core {
    pub fn new(id: usize, config: Arc<Config>, shared: Arc<Shared>, handoff: Arc<Handoff>) -> Core {
        let state = shared.current();
        let (timeout, transparent) = (config.connect_timeout, config.transparent);
        let source = Some(shared.clone());
        let common = Rc::new(Common::new(id, state, source, timeout, transparent));
        let outbound = outbound::Context::new(common.clone(), &config, handoff.clone());
        let plaintext_port = config.inbound_plaintext_addr.map(|a| a.port());
        let inbound = inbound::Context::new(common.clone(), plaintext_port)
            .with_own_http2(config.hbone_own_http2);
        Core {
            id,
            config,
            shared,
            common,
            outbound: Rc::new(outbound),
            inbound: Rc::new(inbound),
            drain: Rc::default(),
            accepts: RefCell::default(),
            handoff,
            pods: RefCell::default(),
        }
    }

    /// The control tick's upkeep: the pool's idle eviction, and once a burst of
    /// connections is over ([`Trim`], `open`: the core's open connections), what it grew
    /// goes: the pool's idle connections, then the emptied allocator pages.
    fn housekeep(&self, trim: &mut Trim, open: u64) {
        let pool = &self.outbound.pool;
        pool.evict_idle(Instant::now(), self.config.pool_idle_timeout);
        match trim.tick(open) {
            Step::Nothing => {}
            Step::ClosePooled => drop(pool.close_idle()),
            Step::Collect => sys::allocator_collect(),
        }
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

    /// Adopts a newer generation if one was published since the last connection did.
    fn refresh(&self) {
        if self.common.refresh() {
            tracing::info!(
                core = self.id,
                generation = self.common.generation(),
                "core adopted new configuration"
            );
        }
    }
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
    let mut trim = Trim::default();
    let mut bell = core.shared.bell();
    while !core.shared.stopping() {
        let heard = *bell.borrow_and_update();
        core.refresh();
        core.drain_if_asked();
        let pooled = core.outbound.pool.len();
        let metrics = core.common.metrics.sample(pooled, sys::thread_cpu_time());
        let open = metrics.gauges.connections;
        trim.seen(open);
        let generation = core.common.generation();
        let slot = CoreSlot {
            metrics,
            generation,
            heard,
        };
        core.shared.store_core(core.id, slot);
        if last_evict.elapsed() >= CONTROL_TICK {
            core.housekeep(&mut trim, open);
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
                spawn_handler(&core, kind, stream, peer, pod.as_ref());
            }
            // A draining pod's listener was shut down (`PodLive::stop_accepting`).
            Err(_) if pod.as_ref().is_some_and(|p| p.drain.raised()) => return,
            Err(e) => {
                tracing::warn!(core = core.id, ?kind, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Spawns the task serving one accepted connection, handing it its leg's context only.
/// One task type per listener kind, so each task is the size of its own future: a task
/// per outbound connection must not be as large as the inbound HBONE connection's (TLS
/// and HTTP/2 handshakes) future.
fn spawn_handler(
    core: &Core,
    kind: ListenerKind,
    stream: TcpStream,
    peer: SocketAddr,
    pod: Option<&Rc<PodLive>>,
) {
    match kind {
        ListenerKind::Outbound => {
            let cx = core.outbound.clone();
            spawn_in(pod, async move {
                let result = outbound::serve_captured(&cx, stream, peer).await;
                finished(&cx.common, kind, peer, result)
            })
        }
        ListenerKind::Socks5 => {
            let cx = core.outbound.clone();
            spawn_in(pod, async move {
                let result = outbound::serve_socks5(&cx, stream, peer).await;
                finished(&cx.common, kind, peer, result)
            })
        }
        ListenerKind::Inbound => {
            if let Some(stream) = keep_or_hand_off(core, stream, peer, pod) {
                let drain = pod.map_or(&core.drain, |p| &p.drain).clone();
                spawn_in(
                    pod,
                    serve_inbound(core.inbound.clone(), stream, peer, drain),
                );
            }
        }
        ListenerKind::InboundPlaintext => {
            let cx = core.inbound.clone();
            spawn_in(pod, async move {
                let result = inbound::serve_plaintext(&cx, stream, peer).await;
                finished(&cx.common, kind, peer, result)
            })
        }
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

/// `drain`: the node's, or that of the captured pod whose 15008 accepted it (GOAWAY on
/// the pod's drain, not only the node's).
async fn serve_inbound(
    cx: Rc<inbound::Context>,
    stream: TcpStream,
    peer: SocketAddr,
    drain: Rc<Drain>,
) {
    let result = inbound::serve_hbone(&cx, stream, peer, &drain).await;
    finished(&cx.common, ListenerKind::Inbound, peer, result)
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
        let drain = pod.as_ref().map_or(&core.drain, |p| &p.drain).clone();
        match TcpStream::from_std(fd.into()) {
            Ok(stream) => spawn_in(
                pod.as_ref(),
                serve_inbound(core.inbound.clone(), stream, peer, drain),
            ),
            Err(e) => {
                tracing::warn!(core = core.id, %peer, error = %e, "taking a handed HBONE socket failed")
            }
        }
    }
}

fn finished(common: &Common, kind: ListenerKind, peer: SocketAddr, result: Result<(), ProxyError>) {
    if let Err(e) = result {
        common.metrics.failed_early();
        tracing::debug!(core = common.core, ?kind, %peer, error = %e, "connection failed");
    }
}
