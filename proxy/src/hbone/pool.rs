//! Per-core pool of HBONE (mTLS + HTTP/2) client connections.
//!
//! Keyed by (source identity, destination identity, destination address, source IP), as
//! ztunnel does, plus, for this node's own 15008, where the inbound end runs. A burst of
//! requests for a new key opens ONE connection: the first caller starts the connect and
//! the others await the same shared future. Connections carry at most `max_streams`
//! concurrent CONNECT streams; dead ones (GOAWAY, PING timeout, TCP error) are evicted;
//! idle ones are closed by [`Pool::evict_idle`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{AbortHandle, FutureExt, Shared};

use crate::identity::Identity;
use crate::runtime::placement::Placement;

/// What makes two tunnels shareable on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub src_identity: Identity,
    pub dst_identity: Identity,
    /// `<destination pod IP>:15008`.
    pub dst: SocketAddr,
    /// The spoofed source IP (client pod) when transparent; `None` otherwise.
    pub src_ip: Option<IpAddr>,
    /// For a connection to this node's own 15008, the core its inbound end runs on
    /// ([`Placement`]); `None` for another node.
    pub placement: Option<Placement>,
}

/// A pooled connection's request handle: the h2 crate's, or our own HTTP/2's
/// (`--hbone-own-http2`).
pub enum Handle {
    H2(h2::client::SendRequest<Bytes>),
    Own(crate::hbone::server::Shared),
}

/// The pooled HTTP/2 connection type the data plane uses.
pub type H2Conn = Conn<Handle>;

/// One pooled connection; `S` is its request handle.
pub struct Conn<S> {
    pub handle: S,
    active: Cell<usize>,
    dead: Rc<Cell<bool>>,
    idle_since: Cell<Instant>,
    abort: AbortHandle,
}

impl<S> Conn<S> {
    /// `dead` is set by the connection's driver task when it ends; `abort` stops that
    /// task when the pool drops the connection.
    pub fn new(handle: S, dead: Rc<Cell<bool>>, abort: AbortHandle) -> Self {
        Conn {
            handle,
            active: Cell::new(0),
            dead,
            idle_since: Cell::new(Instant::now()),
            abort,
        }
    }

    fn usable(&self, max_streams: usize) -> bool {
        !self.dead.get() && self.active.get() < max_streams
    }
}

impl<S> Drop for Conn<S> {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// A stream slot on a pooled connection; releases the slot when dropped.
pub struct Lease<S> {
    conn: Rc<Conn<S>>,
}

impl<S> Lease<S> {
    pub fn handle(&self) -> &S {
        &self.conn.handle
    }

    /// Marks the connection unusable (e.g. after an HTTP/2 connection error).
    pub fn mark_dead(&self) {
        self.conn.dead.set(true);
    }
}

impl<S> Drop for Lease<S> {
    fn drop(&mut self) {
        let left = self.conn.active.get() - 1;
        self.conn.active.set(left);
        if left == 0 {
            self.conn.idle_since.set(Instant::now());
        }
    }
}

type BoxedConnect<S, E> = Pin<Box<dyn Future<Output = Result<Rc<Conn<S>>, Rc<E>>>>>;
type ConnectFuture<S, E> = Shared<BoxedConnect<S, E>>;

/// The pool; `S` is the connection's request handle, `E` the connect error type.
pub struct Pool<S, E> {
    max_streams: usize,
    conns: RefCell<HashMap<PoolKey, Vec<Rc<Conn<S>>>>>,
    connecting: RefCell<HashMap<PoolKey, ConnectFuture<S, E>>>,
}

/// Index of the first connection with a free stream slot (pure, for tests).
fn pick<S>(conns: &[Rc<Conn<S>>], max_streams: usize) -> Option<usize> {
    conns.iter().position(|c| c.usable(max_streams))
}

impl<S: 'static, E: 'static> Pool<S, E> {
    pub fn new(max_streams: usize) -> Self {
        Pool {
            max_streams,
            conns: RefCell::default(),
            connecting: RefCell::default(),
        }
    }

    /// A stream slot for `key`, opening a connection with `connect` only when no pooled
    /// connection has room and no connect for this key is already under way.
    pub async fn checkout<F, Fut>(&self, key: &PoolKey, connect: F) -> Result<Lease<S>, Rc<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Conn<S>, E>> + 'static,
    {
        loop {
            if let Some(lease) = self.try_lease(key) {
                return Ok(lease);
            }
            let pending = self.connecting.borrow().get(key).cloned();
            let shared = match pending {
                Some(shared) => shared,
                None => self.start_connect(key, connect()),
            };
            let result = shared.clone().await;
            self.finish_connect(key, &shared, &result);
            result?;
        }
    }

    fn start_connect(
        &self,
        key: &PoolKey,
        fut: impl Future<Output = Result<Conn<S>, E>> + 'static,
    ) -> ConnectFuture<S, E> {
        let boxed: BoxedConnect<S, E> = Box::pin(fut.map(|r| r.map(Rc::new).map_err(Rc::new)));
        let shared = boxed.shared();
        self.connecting
            .borrow_mut()
            .insert(key.clone(), shared.clone());
        shared
    }

    /// The first waiter to wake moves the new connection from `connecting` into the pool;
    /// the pending entry is removed only if it is still this connect (a later connect for
    /// the same key may already be pending).
    fn finish_connect(
        &self,
        key: &PoolKey,
        shared: &ConnectFuture<S, E>,
        result: &Result<Rc<Conn<S>>, Rc<E>>,
    ) {
        let mut connecting = self.connecting.borrow_mut();
        if !connecting.get(key).is_some_and(|p| p.ptr_eq(shared)) {
            return;
        }
        connecting.remove(key);
        if let Ok(conn) = result {
            let mut conns = self.conns.borrow_mut();
            conns.entry(key.clone()).or_default().push(conn.clone());
        }
    }

    fn try_lease(&self, key: &PoolKey) -> Option<Lease<S>> {
        let mut conns = self.conns.borrow_mut();
        let list = conns.get_mut(key)?;
        list.retain(|c| !c.dead.get());
        let conn = list[pick(list, self.max_streams)?].clone();
        conn.active.set(conn.active.get() + 1);
        Some(Lease { conn })
    }

    /// Drops dead connections, those idle (no stream) for longer than `idle`, and every
    /// idle connection of a key beyond its first: once a burst that needed several
    /// connections to one destination is over, their TLS and HTTP/2 buffers go (5000
    /// streams held through the pool left ~27 MB behind for the idle timeout).
    pub fn evict_idle(&self, now: Instant, idle: Duration) -> usize {
        self.evict(|c, spare| !spare && now.duration_since(c.idle_since.get()) < idle)
    }

    /// Drops dead and idle connections, a key's first idle one too: when a burst of
    /// connections on the core is over (`runtime::trim`), the HTTP/2 stream tables that
    /// grew for it go with their connection. The key's next stream connects again.
    pub fn close_idle(&self) -> usize {
        self.evict(|_, _| false)
    }

    /// Drops dead connections and the idle ones `keep` refuses (`spare`: the key already
    /// kept an idle one); connections with streams stay.
    fn evict(&self, keep: impl Fn(&Conn<S>, bool) -> bool) -> usize {
        let mut evicted = 0;
        self.conns.borrow_mut().retain(|_, list| {
            let before = list.len();
            let mut spare = false;
            list.retain(|c| {
                if c.dead.get() {
                    return false;
                }
                if c.active.get() > 0 {
                    return true;
                }
                let kept = keep(c, spare);
                spare |= kept;
                kept
            });
            evicted += before - list.len();
            !list.is_empty()
        });
        evicted
    }

    /// Drops every connection whose key `gone` matches, busy or not (in-pod mode: the
    /// connections a released pod dialled from its own namespace). Returns how many.
    pub fn evict_keys(&self, gone: impl Fn(&PoolKey) -> bool) -> usize {
        let mut evicted = 0;
        self.conns.borrow_mut().retain(|key, list| {
            let drop_all = gone(key);
            if drop_all {
                evicted += list.len();
            }
            !drop_all
        });
        evicted
    }

    /// Number of pooled connections (all keys).
    pub fn len(&self) -> usize {
        self.conns.borrow().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
