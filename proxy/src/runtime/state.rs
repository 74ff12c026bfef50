//! What every core reads on every connection: the workload snapshot and the certificates,
//! published as one immutable value (by the file reloader, the xDS client or the CA loop)
//! and swapped on every change; [`Shared::publish`] numbers the generations.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{Config, Snapshot};
use crate::error::ProxyError;
use crate::runtime::metrics::{Aggregate, ControlMetrics, CoreMetrics, PlumbMetrics};
use crate::tls::CertStore;

/// One loaded generation of configuration.
pub struct State {
    pub snapshot: Snapshot,
    pub certs: CertStore,
    pub generation: u64,
}

impl State {
    /// Loads workload config and certificates from the files named in `config`.
    pub fn load(config: &Config, generation: u64) -> Result<State, ProxyError> {
        let empty = Snapshot::empty(config.node_name.as_deref());
        let snapshot = empty.load_file(&config.config_path)?.unwrap_or(empty);
        let certs = CertStore::load(&config.cert_dir, &config.trust_domain)?;
        Ok(State {
            snapshot,
            certs,
            generation,
        })
    }

    /// xDS mode: `snapshot` (from istiod) with the certificates of the cert dir.
    pub fn with_snapshot(
        config: &Config,
        snapshot: Snapshot,
        generation: u64,
    ) -> Result<State, ProxyError> {
        let certs = CertStore::load(&config.cert_dir, &config.trust_domain)?;
        Ok(State {
            snapshot,
            certs,
            generation,
        })
    }
}

/// The kernel work around a change of the workloads this node carries (the node side of
/// `--plumb --host-netns`). [`Shared::publish`] calls `before` while the generation in
/// force is still the old one and `after` once `next` is in force, so a pod is plumbed
/// before any core treats it as HBONE and is unplumbed only after none does: the order is
/// the publish path's, not a caller's.
pub trait Enrolment: Send + Sync {
    /// Enrols what `next` adds.
    fn before(&self, next: &Snapshot);
    /// Withdraws what `next` no longer has.
    fn after(&self, next: &Snapshot);
}

/// The node side as the shared block sees it: its publish hooks and its counters.
pub struct NodeHooks {
    pub enrolment: Arc<dyn Enrolment>,
    pub metrics: Arc<PlumbMetrics>,
}

/// How long [`Shared::fresh_aggregate`] waits for busy cores to answer.
const SAMPLE_WAIT: Duration = Duration::from_millis(250);

/// The control block shared by the control thread and the cores. Per connection a core
/// reads one atomic (the published generation); the rest when the bell rings (and on a
/// slow housekeeping tick).
pub struct Shared {
    current: Mutex<Arc<State>>,
    generation: AtomicU64,
    /// Config/cert changes the control thread refused (each one logged with its error).
    refused: AtomicU64,
    shutdown: AtomicBool,
    draining: AtomicBool,
    /// 0 while an xDS-configured proxy has not received its first full state; then the
    /// generation holding it, which every core must have adopted before 15021 says ready.
    ready_at: AtomicU64,
    /// Set by the xDS client once the first full state is applied.
    synced: AtomicBool,
    /// Per core: counters, the generation it has adopted and the last ring of the bell it
    /// answered, as of its last look.
    cores: Mutex<Vec<CoreSlot>>,
    /// Rung on every event a core or the xDS thread acts on (a drain, a stop, a request
    /// for fresh counters or for the generation the cores run), so none of them polls.
    bell: watch::Sender<u64>,
    /// The last generation that changed the local identities, for the CA loop (a publish
    /// does not ring the bell: that would wake every core); also sent for the first full
    /// state and on a stop.
    news: watch::Sender<u64>,
    /// The plain threads' (control, reconcile, main) side of a stop.
    stopped: (Mutex<bool>, Condvar),
    /// Run once by [`Shared::stop`]: wake threads blocked in the kernel (an accept).
    on_stop: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
    /// CA and xDS health, bumped by the xDS thread.
    pub control: ControlMetrics,
    /// Set once when zring plumbs the node side.
    node: OnceLock<NodeHooks>,
    /// False while the node side is not yet in place (readiness waits for it).
    plumbed: AtomicBool,
    /// In-pod mode: false until the CNI's snapshot was reconciled, and again while the ZDS
    /// connection is down (ztunnel's readiness).
    zds_synced: AtomicBool,
}

impl Shared {
    pub fn new(state: State, cores: usize) -> Shared {
        Shared {
            cores: Mutex::new(vec![CoreSlot::default(); cores]),
            bell: watch::Sender::new(0),
            news: watch::Sender::new(0),
            stopped: (Mutex::new(false), Condvar::new()),
            on_stop: Mutex::new(Vec::new()),
            generation: AtomicU64::new(state.generation),
            current: Mutex::new(Arc::new(state)),
            refused: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            ready_at: AtomicU64::new(1),
            synced: AtomicBool::new(false),
            control: ControlMetrics::default(),
            node: OnceLock::new(),
            plumbed: AtomicBool::new(true),
            zds_synced: AtomicBool::new(true),
        }
    }

    /// Hooks the node side into publishing; readiness then also waits for
    /// [`Shared::set_plumbed`].
    pub fn set_node_side(&self, hooks: NodeHooks) {
        self.plumbed.store(false, Ordering::Release);
        let _ = self.node.set(hooks);
    }

    /// The node side and every local pod are in place (its first reconcile finished).
    pub fn set_plumbed(&self) {
        self.plumbed.store(true, Ordering::Release);
    }

    /// In-pod mode: whether the ZDS snapshot is reconciled on a live connection.
    pub fn set_zds_synced(&self, synced: bool) {
        self.zds_synced.store(synced, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<State> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Publishes the next generation and returns its number. `next` is given the state in
    /// force and returns the new snapshot and certificates; it runs under the lock, so the
    /// xDS thread, the CA loop and the file reloader can neither take the same number nor
    /// replace each other's change with a stale copy of the other half. Do the slow,
    /// fallible work (parsing, reading files) before calling.
    pub fn publish(&self, next: impl FnOnce(&State) -> (Snapshot, CertStore)) -> u64 {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (snapshot, certs) = next(&current);
        let identities_changed = !current.snapshot.same_local_identities(&snapshot);
        let node = self.node.get();
        if let Some(n) = node {
            n.enrolment.before(&snapshot);
        }
        let generation = current.generation + 1;
        *current = Arc::new(State {
            snapshot,
            certs,
            generation,
        });
        self.generation.store(generation, Ordering::Release);
        if let Some(n) = node {
            n.enrolment.after(&current.snapshot);
        }
        // No ring: a core adopts it with its next connection (`context::Common::state`),
        // so a push does not wake every core; what waits for adoption rings. Nor is the
        // CA loop's thread woken unless the certificates it must hold may have changed.
        if identities_changed {
            self.news.send_replace(generation);
        }
        generation
    }

    /// Runs `f` on the generation in force while no other generation can be published
    /// (for work that must not interleave with [`Shared::publish`]'s hooks).
    pub fn with_current<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&current)
    }

    /// Counts a refused reload: the observable event behind the refusal's log line.
    pub fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::AcqRel);
    }

    /// How many config/cert changes were refused since start.
    pub fn refused_reloads(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }

    /// Stores one core's counters, adopted generation and the ring it answers.
    pub fn store_core(&self, core: usize, slot: CoreSlot) {
        let mut all = self.cores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = all.get_mut(core) {
            *s = slot;
        }
    }

    /// Rings the bell; returns the ring's number.
    pub fn ring(&self) -> u64 {
        let mut rung = 0;
        self.bell.send_modify(|n| {
            *n += 1;
            rung = *n;
        });
        rung
    }

    /// A listener for generations that change the local identities (and for the first
    /// full state and a stop): what the CA loop acts on.
    pub fn news(&self) -> watch::Receiver<u64> {
        self.news.subscribe()
    }

    /// A listener for the bell (its value is the number of the last ring).
    pub fn bell(&self) -> watch::Receiver<u64> {
        self.bell.subscribe()
    }

    /// [`Shared::aggregate`] once every core has counted up to now: rings the bell and
    /// waits (at most [`SAMPLE_WAIT`], for a core busy with a long task) for each core to
    /// answer.
    pub fn fresh_aggregate(&self) -> Aggregate {
        self.ask_cores();
        self.aggregate()
    }

    /// Rings the bell and waits (at most [`SAMPLE_WAIT`]) until every core answered.
    fn ask_cores(&self) {
        let asked = self.ring();
        let deadline = Instant::now() + SAMPLE_WAIT;
        while self.answered() < asked && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn answered(&self) -> u64 {
        let all = self.cores.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().map(|s| s.heard).min().unwrap_or(u64::MAX)
    }

    /// All cores' metrics summed per label set, as of their last look.
    pub fn aggregate(&self) -> Aggregate {
        let all = self.cores.lock().unwrap_or_else(|p| p.into_inner());
        let mut agg = Aggregate {
            control: self.control.sample(),
            plumb: self.node.get().map(|n| n.metrics.clone()),
            ..Aggregate::default()
        };
        for slot in all.iter() {
            agg.add(&slot.metrics);
        }
        agg
    }

    /// The oldest generation any core runs. Cores adopt a generation lazily, so when
    /// one may be behind the published generation they are asked first.
    pub fn adopted_generation(&self) -> u64 {
        if self.last_told_generation() < self.generation() {
            self.ask_cores();
        }
        self.last_told_generation()
    }

    /// The oldest generation the cores said they run (0 before every core's first look).
    fn last_told_generation(&self) -> u64 {
        let all = self.cores.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().map(|s| s.generation).min().unwrap_or(0)
    }

    /// Asks every core to drain (stop accepting, GOAWAY inbound HBONE connections).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.ring();
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Ready once every core runs `generation` (0: not ready).
    pub fn set_ready_at(&self, generation: u64) {
        self.ready_at.store(generation, Ordering::Release);
    }

    /// Marks the first full state applied and tells the news listeners (the CA loop,
    /// which declares readiness once it also holds the local certificates).
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
        self.news.send_modify(|_| {});
    }

    /// Whether the xDS client applied its first full state.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Whether a first full state was received (it may not be adopted yet).
    pub fn has_state(&self) -> bool {
        self.ready_at.load(Ordering::Acquire) != 0
    }

    /// Whether 15021 may report ready (the drain flag aside): the first full state is in
    /// force on every core (a file-configured proxy starts on generation 1), the node
    /// side, when zring plumbs it, is in place, and in in-pod mode the CNI's snapshot.
    pub fn ready(&self) -> bool {
        let at = self.ready_at.load(Ordering::Acquire);
        at != 0
            && (at == 1 || self.adopted_generation() >= at)
            && self.plumbed.load(Ordering::Acquire)
            && self.zds_synced.load(Ordering::Acquire)
    }

    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::Release);
        let (flag, cv) = &self.stopped;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        self.ring();
        self.news.send_modify(|_| {});
        let hooks = std::mem::take(&mut *self.on_stop.lock().unwrap_or_else(|p| p.into_inner()));
        for hook in hooks {
            hook();
        }
    }

    /// Runs `hook` when the process stops (at once if it already has).
    pub fn on_stop(&self, hook: Box<dyn FnOnce() + Send>) {
        let mut hooks = self.on_stop.lock().unwrap_or_else(|p| p.into_inner());
        if self.stopping() {
            drop(hooks);
            hook();
        } else {
            hooks.push(hook);
        }
    }

    /// Blocks a plain thread for `timeout` or until the process stops; true when it stops.
    pub fn wait_stop(&self, timeout: Duration) -> bool {
        let (flag, cv) = &self.stopped;
        let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

/// What a core last told [`Shared`].
#[derive(Debug, Clone, Default)]
pub struct CoreSlot {
    pub metrics: CoreMetrics,
    /// The generation it runs.
    pub generation: u64,
    /// The last ring of the bell it had heard when it counted `metrics`.
    pub heard: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let root = testsupport::certs::Root::generate("publish test").unwrap();
        let certs = CertStore::from_pem(
            std::path::Path::new("root.pem"),
            root.cert_pem.as_bytes(),
            "cluster.local",
            &[],
        )
        .unwrap();
        State {
            snapshot: Snapshot::empty(None),
            certs,
            generation: 1,
        }
    }

    /// A snapshot (every workload local) of one workload per `(name, service account)`.
    fn snapshot_of(workloads: &[(&str, &str)]) -> Snapshot {
        let yaml: String = workloads
            .iter()
            .enumerate()
            .map(|(i, (name, sa))| {
                format!(
                    "- {{name: {name}, namespace: default, serviceAccount: {sa}, \
                     workloadIps: [\"10.0.0.{}\"]}}\n",
                    i + 1
                )
            })
            .collect();
        let local =
            crate::config::LocalConfig::from_yaml("test", &format!("workloads:\n{yaml}")).unwrap();
        Snapshot::new(local, None).unwrap()
    }

    #[test]
    fn the_ca_loop_hears_of_a_publish_only_when_the_local_identities_change() {
        let shared = Shared::new(state(), 1);
        let mut news = shared.news();
        news.borrow_and_update();
        let publish = |snapshot: Snapshot| shared.publish(|cur| (snapshot, cur.certs.clone()));
        publish(snapshot_of(&[("a", "sleep")]));
        assert!(news.has_changed().unwrap(), "a first local identity");
        news.borrow_and_update();
        publish(snapshot_of(&[("a", "sleep"), ("b", "sleep")]));
        assert!(
            !news.has_changed().unwrap(),
            "a workload of a held identity"
        );
        publish(snapshot_of(&[("a", "sleep"), ("b", "httpbin")]));
        assert!(news.has_changed().unwrap(), "a new identity");
        news.borrow_and_update();
        shared.set_synced();
        assert!(news.has_changed().unwrap(), "the first full state");
        news.borrow_and_update();
        shared.stop();
        assert!(news.has_changed().unwrap(), "a stop");
    }

    #[test]
    fn concurrent_publishers_each_get_their_own_generation() {
        let shared = Shared::new(state(), 1);
        let per_thread = 200;
        let numbers: Vec<u64> = std::thread::scope(|s| {
            let publishers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        (0..per_thread)
                            .map(|_| {
                                shared.publish(|cur| (cur.snapshot.clone(), cur.certs.clone()))
                            })
                            .collect::<Vec<u64>>()
                    })
                })
                .collect();
            publishers
                .into_iter()
                .flat_map(|p| p.join().unwrap())
                .collect()
        });
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            numbers.len(),
            "a generation number was taken twice"
        );
        assert_eq!(shared.generation(), 1 + 3 * per_thread);
        assert_eq!(shared.current().generation, shared.generation());
    }
}
