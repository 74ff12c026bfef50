//! What every core reads on every connection: the workload snapshot and the certificates,
//! published by the control thread as one immutable value and swapped on reload.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{Config, LocalConfig, Snapshot};
use crate::error::ProxyError;
use crate::runtime::metrics::{Aggregate, CoreMetrics};
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
        let local = LocalConfig::load(&config.config_path)?;
        let snapshot = Snapshot::new(local, config.node_name.as_deref())?;
        let certs = CertStore::load(&config.cert_dir, &config.trust_domain)?;
        Ok(State {
            snapshot,
            certs,
            generation,
        })
    }
}

/// The control block shared by the control thread and the cores. Cores look at it on a
/// timer, never per connection.
pub struct Shared {
    current: Mutex<Arc<State>>,
    generation: AtomicU64,
    /// Config/cert changes the control thread refused (each one logged with its error).
    refused: AtomicU64,
    shutdown: AtomicBool,
    draining: AtomicBool,
    /// Per core: counters and the generation it has adopted, as of its last tick.
    cores: Mutex<Vec<(CoreMetrics, u64)>>,
}

impl Shared {
    pub fn new(state: State, cores: usize) -> Shared {
        Shared {
            cores: Mutex::new(vec![(CoreMetrics::default(), 0); cores]),
            generation: AtomicU64::new(state.generation),
            current: Mutex::new(Arc::new(state)),
            refused: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
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

    pub fn publish(&self, state: State) {
        let generation = state.generation;
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(state);
        self.generation.store(generation, Ordering::Release);
    }

    /// Counts a refused reload: the observable event behind the refusal's log line.
    pub fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::AcqRel);
    }

    /// How many config/cert changes were refused since start.
    pub fn refused_reloads(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }

    /// Stores one core's counters and adopted generation (called on its control tick).
    pub fn store_core(&self, core: usize, metrics: CoreMetrics, generation: u64) {
        let mut all = self.cores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = all.get_mut(core) {
            *slot = (metrics, generation);
        }
    }

    /// All cores' metrics summed per label set, as of their last control tick.
    pub fn aggregate(&self) -> Aggregate {
        let all = self.cores.lock().unwrap_or_else(|p| p.into_inner());
        let mut agg = Aggregate::default();
        for (metrics, _) in all.iter() {
            agg.add(metrics);
        }
        agg
    }

    /// The oldest generation any core still runs (0 before every core's first tick).
    pub fn adopted_generation(&self) -> u64 {
        let all = self.cores.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().map(|(_, g)| *g).min().unwrap_or(0)
    }

    /// Asks every core to drain (stop accepting, GOAWAY inbound HBONE connections).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::Release);
    }

    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}
