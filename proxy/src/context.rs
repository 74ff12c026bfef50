//! What every leg is handed on one core ([`Common`]): the configuration generation in
//! force, the TLS configs built from it, the counters, and the two settings every leg
//! reads. The runtime builds one per core and swaps the generation in; each leg's own
//! context (`outbound::Context`, `inbound::Context`) holds it beside what only that leg
//! uses. A test builds one from a snapshot, with no core and no listener.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::error::ProxyError;
use crate::identity::Identity;
use crate::runtime::metrics::Metrics;
use crate::runtime::state::{Shared, State};
use crate::sockets;
use crate::tls::CertStore;

/// The per-core parts every leg reads. Nothing here is shared with other cores.
pub struct Common {
    /// The core's number, for log lines.
    pub core: usize,
    /// Rc around the shared Arc so a connection's clone is a plain increment, not an
    /// atomic one (no atomics on the per-connection path).
    #[allow(clippy::redundant_allocation)]
    state: RefCell<Rc<Arc<State>>>,
    /// The number of the generation in `state`.
    generation: Cell<u64>,
    /// Where newer generations are published (none in a unit test): [`Common::state`]
    /// adopts the newest one, so a publish need not wake the core.
    source: Option<Arc<Shared>>,
    server_tls: RefCell<HashMap<Identity, Arc<rustls::ServerConfig>>>,
    client_tls: RefCell<HashMap<(Identity, Identity), Arc<rustls::ClientConfig>>>,
    pub metrics: Metrics,
    /// Upstream connects and inbound TLS handshakes give up after this.
    pub connect_timeout: Duration,
    /// Upstream sockets leave with the client's IP (`--transparent`).
    pub transparent: bool,
}

impl Common {
    /// `source`: where the runtime publishes generations (None: `state` stays in force).
    pub fn new(
        core: usize,
        state: Arc<State>,
        source: Option<Arc<Shared>>,
        connect_timeout: Duration,
        transparent: bool,
    ) -> Self {
        Common {
            core,
            generation: Cell::new(state.generation),
            source,
            state: RefCell::new(Rc::new(state)),
            server_tls: RefCell::default(),
            client_tls: RefCell::default(),
            metrics: Metrics::default(),
            connect_timeout,
            transparent,
        }
    }

    /// The configuration generation in force: the newest published one (one atomic load
    /// when it is already adopted, then a non-atomic Rc clone).
    #[allow(clippy::redundant_allocation)]
    pub fn state(&self) -> Rc<Arc<State>> {
        self.refresh();
        self.state.borrow().clone()
    }

    /// Adopts the newest published generation if this core does not run it yet; true
    /// when it did.
    pub fn refresh(&self) -> bool {
        let Some(shared) = &self.source else {
            return false;
        };
        if shared.generation() == self.generation.get() {
            return false;
        }
        self.adopt(shared.current());
        true
    }

    /// The number of the generation this core runs.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Puts `next` in force. A workload push keeps the certificates: the TLS configs built
    /// from them (and the client configs' resumption caches) stay valid; otherwise they
    /// are dropped.
    pub fn adopt(&self, next: Arc<State>) {
        if !same_certs(&self.state.borrow().certs, &next.certs) {
            self.server_tls.borrow_mut().clear();
            self.client_tls.borrow_mut().clear();
        }
        self.generation.set(next.generation);
        *self.state.borrow_mut() = Rc::new(next);
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

    /// Connects to a destination within [`connect_timeout`](Common::connect_timeout),
    /// leaving from `source` when set.
    pub async fn connect_upstream(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> Result<TcpStream, ProxyError> {
        monoio::time::timeout(self.connect_timeout, sockets::connect(addr, source))
            .await
            .map_err(|_| ProxyError::ConnectTimeout { addr })?
            .map_err(|source| ProxyError::Connect { addr, source })
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

/// A core's [`Common`] for `snapshot`, with no certificates: what a unit test hands a leg.
#[cfg(test)]
pub(crate) fn for_test(snapshot: crate::config::Snapshot) -> Rc<Common> {
    let root = testsupport::certs::Root::generate("leg tests").expect("a root");
    let bundle = std::path::Path::new("roots.pem");
    let certs = CertStore::from_pem(bundle, root.cert_pem.as_bytes(), "cluster.local", &[])
        .expect("a bundle alone is a store");
    let state = State {
        snapshot,
        certs,
        generation: 1,
    };
    Rc::new(Common::new(
        0,
        Arc::new(state),
        None,
        Duration::from_secs(1),
        true,
    ))
}
