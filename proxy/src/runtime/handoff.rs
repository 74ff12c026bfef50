//! Same-node HBONE over two cores.
//!
//! When a client pod and its server pod share a node, a core's pooled HBONE client
//! connects to this node's own 15008, and SO_REUSEPORT hashes the accepted end onto either
//! core. Half of the time that is the same core: one thread then encrypts, decrypts and
//! relays both ends of every stream on that connection while the other core idles (a
//! 1-stream bulk run had 99% of zring's samples on one core thread). So the client end
//! registers its local address here, and a core that accepts a connection from an address
//! its own client end holds hands the socket to the next core.
//!
//! Cross-thread traffic is one map insert and remove per same-node pooled connection and
//! one channel send per handed socket; nothing per stream or per byte.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// An accepted inbound HBONE socket on its way to another core.
pub struct Handed {
    pub fd: OwnedFd,
    pub peer: SocketAddr,
}

/// A core's receiving end of handed sockets.
pub type Inbox = UnboundedReceiver<Handed>;

/// The registry of same-node client ends and the cores' inboxes.
pub struct Handoff {
    /// Local address of a same-node HBONE client socket → the core that owns it.
    origins: Mutex<HashMap<SocketAddr, usize>>,
    inboxes: Vec<UnboundedSender<Handed>>,
    handed: AtomicU64,
}

/// Where an HBONE connection accepted on core `accepted_on` is served (pure): on the
/// next core when its client end is a same-node socket of that same core, else where it
/// was accepted (`None`).
pub fn pick(origin: Option<usize>, accepted_on: usize, cores: usize) -> Option<usize> {
    (cores > 1 && origin == Some(accepted_on)).then_some((accepted_on + 1) % cores)
}

impl Handoff {
    /// The registry for `cores` cores and each core's inbox, in core order.
    pub fn new(cores: usize) -> (Arc<Handoff>, Vec<Inbox>) {
        let (senders, inboxes) = (0..cores).map(|_| unbounded_channel()).unzip();
        let handoff = Handoff {
            origins: Mutex::default(),
            inboxes: senders,
            handed: AtomicU64::new(0),
        };
        (Arc::new(handoff), inboxes)
    }

    /// Records that core `core` owns the same-node client socket bound to `local`, until
    /// the returned guard drops.
    pub fn register(self: &Arc<Self>, local: SocketAddr, core: usize) -> Registration {
        self.origins().insert(local, core);
        Registration {
            handoff: self.clone(),
            local,
        }
    }

    /// The core an HBONE connection from `peer`, accepted on `core`, should move to.
    pub fn target(&self, peer: SocketAddr, core: usize) -> Option<usize> {
        if self.inboxes.len() < 2 {
            return None;
        }
        let origin = self.origins().get(&peer).copied();
        pick(origin, core, self.inboxes.len())
    }

    /// Sends `handed` to core `target`; gives it back when that core has stopped.
    pub fn send(&self, target: usize, handed: Handed) -> Result<(), Handed> {
        self.inboxes[target].send(handed).map_err(|e| e.0)?;
        self.handed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sockets handed to another core so far.
    pub fn handed(&self) -> u64 {
        self.handed.load(Ordering::Relaxed)
    }

    fn origins(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, usize>> {
        // The map holds plain values; a panic elsewhere cannot leave it half-updated.
        self.origins.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A same-node client socket's entry; removed when the connection ends.
pub struct Registration {
    handoff: Arc<Handoff>,
    local: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.handoff.origins().remove(&self.local);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_only_a_connection_whose_client_end_is_on_the_accepting_core() {
        assert_eq!(pick(Some(0), 0, 2), Some(1));
        assert_eq!(pick(Some(1), 1, 2), Some(0));
        assert_eq!(pick(Some(2), 2, 3), Some(0));
        assert_eq!(pick(Some(0), 1, 2), None, "already on another core");
        assert_eq!(pick(None, 0, 2), None, "not a same-node client end");
        assert_eq!(pick(Some(0), 0, 1), None, "one core: nowhere to go");
    }

    #[test]
    fn registration_lasts_as_long_as_its_guard() {
        let (h, _inboxes) = Handoff::new(2);
        let local: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let guard = h.register(local, 1);
        assert_eq!(h.target(local, 1), Some(0));
        assert_eq!(h.target(local, 0), None);
        drop(guard);
        assert_eq!(h.target(local, 1), None);
    }

    #[test]
    fn send_reaches_the_target_inbox_and_is_counted() {
        let (h, mut inboxes) = Handoff::new(2);
        let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = sock.local_addr().unwrap();
        let handed = Handed {
            fd: OwnedFd::from(sock),
            peer,
        };
        assert!(h.send(1, handed).is_ok());
        assert_eq!(inboxes[1].try_recv().unwrap().peer, peer);
        assert!(inboxes[0].try_recv().is_err());
        assert_eq!(h.handed(), 1);
        drop(inboxes);
        let again = Handed {
            fd: OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
            peer,
        };
        assert!(
            h.send(0, again).is_err(),
            "a stopped core gives the socket back"
        );
    }
}
