//! Thread per core, shared nothing: [`start`] binds every listener once per core
//! (SO_REUSEPORT), starts one pinned monoio runtime per core, a control thread that
//! reloads configuration and certificates, and the admin/stats/readiness endpoints.
//!
//! - [`state`] — the immutable configuration generation and the control block.
//! - [`core`] — a core's runtime, accept loops and caches.
//! - [`control`] — file watching and reload.
//! - [`xds`] — the xDS client thread (workloads and policies from istiod).
//! - [`endpoints`] — admin, stats and readiness HTTP listeners, each serving only its own pages.
//! - [`metrics`] — per-core counters and their Prometheus rendering.

mod ca;
pub mod control;
pub mod core;
pub mod drain;
pub mod endpoints;
mod grpc;
pub mod handoff;
pub mod metrics;
pub mod placement;
mod pods;
pub mod state;
pub mod trim;
pub mod tunables;
pub mod xds;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::config::{Config, Snapshot};
use crate::error::ProxyError;
use crate::inpod::pods::{PodInbox, PodOutbox};
use crate::sockets;
use state::{Shared, State};

/// The data-plane listeners each core owns a copy of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// 15001: TPROXY-captured outbound traffic.
    Outbound,
    /// 15008: inbound HBONE.
    Inbound,
    /// 15006: captured inbound plaintext.
    InboundPlaintext,
    /// 15080: SOCKS5 outbound (no root needed).
    Socks5,
}

impl ListenerKind {
    fn flag(self) -> &'static str {
        match self {
            ListenerKind::Outbound => "outbound-addr",
            ListenerKind::Inbound => "inbound-addr",
            ListenerKind::InboundPlaintext => "inbound-plaintext-addr",
            ListenerKind::Socks5 => "socks5-addr",
        }
    }

    fn transparent(self, config: &Config) -> bool {
        config.transparent && self != ListenerKind::Socks5
    }
}

/// Where each listener actually bound (port 0 in the config becomes a real port).
#[derive(Debug, Clone, Default)]
pub struct BoundAddrs {
    pub outbound: Option<SocketAddr>,
    pub inbound: Option<SocketAddr>,
    pub inbound_plaintext: Option<SocketAddr>,
    pub socks5: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub stats: Option<SocketAddr>,
    pub readiness: Option<SocketAddr>,
}

/// A running proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    handoff: Arc<handoff::Handoff>,
    cores: Vec<JoinHandle<Result<(), ProxyError>>>,
    helpers: Vec<JoinHandle<()>>,
    pub addrs: BoundAddrs,
}

impl Proxy {
    /// Counters summed over cores, each core counting when asked.
    pub fn totals(&self) -> metrics::Totals {
        self.shared.fresh_aggregate().totals()
    }

    /// The configuration generation every core has adopted (1 at start, +1 per
    /// successful reload; 0 until each core's first control tick).
    pub fn generation(&self) -> u64 {
        self.shared.adopted_generation()
    }

    /// Graceful drain: every core stops accepting and sends GOAWAY on its inbound HBONE
    /// connections; returns once no connection is open (each core counting after it
    /// raised its drain) or after `timeout`. True when everything finished in time.
    pub fn drain(&self, timeout: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        self.shared.drain();
        loop {
            // A core answers the bell after draining, so these counts follow the raise.
            let t = self.totals();
            if t.opened == t.closed {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Same-node inbound HBONE connections a core handed to another core
    /// ([`handoff`]).
    pub fn handoffs(&self) -> u64 {
        self.handoff.handed()
    }

    /// How many configuration changes the control thread refused (bad YAML, bad
    /// certificates); the running generation stayed in force each time.
    pub fn refused_reloads(&self) -> u64 {
        self.shared.refused_reloads()
    }

    /// Stops every core and helper thread and waits for them.
    pub fn shutdown(self) -> Result<(), ProxyError> {
        self.shared.stop();
        let mut result = Ok(());
        for core in self.cores {
            if let Ok(Err(e)) = core.join() {
                result = Err(e);
            }
        }
        for helper in self.helpers {
            let _ = helper.join();
        }
        result
    }

    /// True once shutdown was requested (e.g. by a signal handler).
    pub fn stopping(&self) -> bool {
        self.shared.stopping()
    }
}

/// Loads configuration, binds every listener on every core, and starts the threads.
pub fn start(config: Config) -> Result<Proxy, ProxyError> {
    start_with(config, None)
}

/// [`start`], with the node side plumbed by this process (`--plumb --host-netns`): the
/// first generation's pods are enrolled before any core runs it.
pub fn start_with(
    config: Config,
    node: Option<Arc<crate::plumb::NodeSide>>,
) -> Result<Proxy, ProxyError> {
    let seen = control::fingerprint(&config);
    let state = match (&config.xds, &config.ca) {
        (Some(_), Some(ca)) => State {
            snapshot: Snapshot::empty(config.node_name.as_deref()),
            certs: ca::store(ca, &config.trust_domain, &[])?,
            generation: 1,
        },
        (Some(_), None) => {
            State::with_snapshot(&config, Snapshot::empty(config.node_name.as_deref()), 1)?
        }
        _ => State::load(&config, 1)?,
    };
    if let Some(n) = &node {
        state::Enrolment::before(n.as_ref(), &state.snapshot);
    }
    let cores = config.cores;
    let shared = Arc::new(Shared::new(state, cores));
    if config.xds.is_some() {
        shared.set_ready_at(0);
    }
    let config = Arc::new(config);
    let (per_core, mut addrs) = bind_all(&config, cores)?;
    let mut helpers = Vec::new();
    endpoints::start(&config, &shared, &mut addrs, &mut helpers)?;
    helpers.push(control::spawn_reloader(
        config.clone(),
        shared.clone(),
        seen,
    ));
    if let Some(n) = &node {
        let every = config.reload_interval * RECONCILE_EVERY_RELOADS;
        helpers.push(n.attach(&shared, every, config.xds.is_none()));
    }
    if config.xds.is_some() {
        helpers.push(xds::spawn(config.clone(), shared.clone())?);
    }
    let (handoff, inboxes) = handoff::Handoff::new(cores);
    let (pod_txs, pod_rxs) = pod_channels(&config);
    let core_threads = spawn_cores(
        &config,
        &shared,
        &handoff,
        per_core.into_iter().zip(inboxes).zip(pod_rxs),
    )?;
    if let Some(uds) = &config.inpod {
        shared.set_zds_synced(false);
        helpers.push(spawn_zds(
            uds.clone(),
            pod_txs,
            config.transparent,
            shared.clone(),
        )?);
    }
    Ok(Proxy {
        shared,
        handoff,
        cores: core_threads,
        helpers,
        addrs,
    })
}

/// The node side is reconciled every this many reload intervals (10 s by default).
const RECONCILE_EVERY_RELOADS: u32 = 5;

type CoreListeners = Vec<(ListenerKind, StdListener)>;

fn listener_addrs(config: &Config) -> [(ListenerKind, Option<SocketAddr>); 4] {
    [
        (ListenerKind::Outbound, config.outbound_addr),
        (ListenerKind::Inbound, config.inbound_addr),
        (
            ListenerKind::InboundPlaintext,
            config.inbound_plaintext_addr,
        ),
        (ListenerKind::Socks5, config.socks5_addr),
    ]
}

fn bind_all(config: &Config, cores: usize) -> Result<(Vec<CoreListeners>, BoundAddrs), ProxyError> {
    let mut per_core: Vec<CoreListeners> = (0..cores).map(|_| Vec::new()).collect();
    let mut addrs = BoundAddrs::default();
    for (kind, addr) in listener_addrs(config) {
        let Some(addr) = addr else { continue };
        let err = |source| ProxyError::Listen {
            flag: kind.flag(),
            addr,
            source,
        };
        sockets::probe_free(addr).map_err(err)?;
        let mut bound = addr;
        for listeners in per_core.iter_mut() {
            let l = sockets::reuseport_listener(bound, kind.transparent(config)).map_err(err)?;
            bound = l.local_addr().map_err(err)?;
            listeners.push((kind, l));
        }
        *slot(&mut addrs, kind) = Some(bound);
    }
    Ok((per_core, addrs))
}

fn slot(addrs: &mut BoundAddrs, kind: ListenerKind) -> &mut Option<SocketAddr> {
    match kind {
        ListenerKind::Outbound => &mut addrs.outbound,
        ListenerKind::Inbound => &mut addrs.inbound,
        ListenerKind::InboundPlaintext => &mut addrs.inbound_plaintext,
        ListenerKind::Socks5 => &mut addrs.socks5,
    }
}

fn spawn_cores(
    config: &Arc<Config>,
    shared: &Arc<Shared>,
    handoff: &Arc<handoff::Handoff>,
    per_core: impl Iterator<Item = ((CoreListeners, handoff::Inbox), Option<PodInbox>)>,
) -> Result<Vec<JoinHandle<Result<(), ProxyError>>>, ProxyError> {
    let core_ids = pin_targets(config);
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for (id, ((listeners, inbox), pods)) in per_core.enumerate() {
        let (config, shared, ready) = (config.clone(), shared.clone(), ready_tx.clone());
        let handoff = handoff.clone();
        let pin = core_ids.get(id % core_ids.len().max(1)).copied();
        let thread = std::thread::Builder::new()
            .name(format!("zring-core-{id}"))
            .spawn(move || {
                let core = core::Core::new(id, config, shared, handoff);
                core_main(core, pin, (listeners, inbox, pods), ready)
            })
            .map_err(|source| ProxyError::Runtime { core: id, source })?;
        threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..threads.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shared.stop();
                return Err(e);
            }
            Err(_) => break,
        }
    }
    Ok(threads)
}

/// In-pod mode: a channel per core from the ZDS thread; node mode: none.
fn pod_channels(config: &Config) -> (Vec<PodOutbox>, Vec<Option<PodInbox>>) {
    if config.inpod.is_none() {
        return (Vec::new(), (0..config.cores).map(|_| None).collect());
    }
    (0..config.cores)
        .map(|_| tokio::sync::mpsc::unbounded_channel())
        .map(|(tx, rx)| (tx, Some(rx)))
        .unzip()
}

/// In-pod mode: the ZDS client's thread; at shutdown it releases every pod.
fn spawn_zds(
    uds: std::path::PathBuf,
    cores: Vec<PodOutbox>,
    transparent: bool,
    shared: Arc<Shared>,
) -> Result<JoinHandle<()>, ProxyError> {
    use crate::inpod::{client, pods::CoreSink, registry::Registry};
    // Before any thread enters a pod: the namespace they all come back to.
    crate::inpod::pods::open_home().map_err(|source| ProxyError::Runtime {
        core: usize::MAX,
        source,
    })?;
    std::thread::Builder::new()
        .name("zring-zds".into())
        .spawn(move || {
            let mut sink = CoreSink { cores, transparent };
            let mut registry = Registry::default();
            let hooks = client::Hooks {
                stop: &|| shared.stopping(),
                synced: &|s| shared.set_zds_synced(s),
            };
            client::run(&uds, &mut registry, &mut sink, &hooks);
            registry.stop_all(&mut sink);
        })
        .map_err(|source| ProxyError::Runtime {
            core: usize::MAX,
            source,
        })
}

/// The CPUs the cores are pinned to, in order; empty when they are not pinned.
fn pin_targets(config: &Config) -> Vec<core_affinity::CoreId> {
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    let online = crate::sys::online_cpus().unwrap_or(allowed.len());
    let pin = config.pin.pins(allowed.len(), online);
    tracing::info!(
        allowed = allowed.len(),
        online,
        mode = ?config.pin,
        pinned = pin,
        "core thread placement"
    );
    if pin {
        allowed
    } else {
        Vec::new()
    }
}

type CoreRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// One core's runtime. `tuned`: the ring only ever has this thread as submitter
/// (SINGLE_ISSUER), and completions' task work runs when the thread next enters the
/// kernel instead of interrupting it (COOP_TASKRUN); without `tuned` (a kernel that
/// refuses those flags), kernel defaults. Against defaults and DEFER_TASKRUN the
/// difference was within this machine's noise (ARCHITECTURE.md).
fn build_runtime(entries: u32, tuned: bool) -> std::io::Result<CoreRuntime> {
    let mut ring = io_uring::IoUring::builder();
    if tuned {
        ring.setup_single_issuer().setup_coop_taskrun();
    }
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(entries)
        .uring_builder(ring)
        .enable_timer()
        .build()
}

fn core_main(
    core: core::Core,
    pin: Option<core_affinity::CoreId>,
    (listeners, inbox, pods): (CoreListeners, handoff::Inbox, Option<PodInbox>),
    ready: mpsc::Sender<Result<(), ProxyError>>,
) -> Result<(), ProxyError> {
    if let Some(pin) = pin {
        core_affinity::set_for_current(pin);
    }
    let entries = core.config.io_uring_entries;
    let runtime = build_runtime(entries, true).or_else(|_| build_runtime(entries, false));
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(source) => {
            let _ = ready.send(Err(ProxyError::Runtime {
                core: core.id,
                source,
            }));
            return Ok(());
        }
    };
    let core = Rc::new(core);
    runtime.block_on(async move {
        let _ = ready.send(Ok(()));
        core::run(core, listeners, inbox, pods).await
    })
}
