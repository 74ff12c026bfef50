//! Same-node HBONE: which core serves the inbound end.
//!
//! When a client pod and its server pod share a node, a core's pooled HBONE client
//! connects to this node's own 15008, and SO_REUSEPORT hashes the accepted end onto either
//! core. The client end registers its local address here with the core it runs on and the
//! [`Placement`] it wants, and the core that accepts the connection hands the socket to
//! the core that placement names when that is another one: its own core for a quiet
//! destination, the next core for a bulk one (a 1-stream bulk run with both ends on one
//! core had 99% of zring's samples on that core thread).
//!
//! Cross-thread traffic is one map insert and remove per same-node pooled connection, one
//! channel send per handed socket, one atomic load per same-node stream (the version of
//! the bulk destinations) and a lock when a bulk stream ends; nothing per byte.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

pub use super::placement::Placement;
use super::placement::{is_heavy, Learner};

/// An accepted inbound HBONE socket on its way to another core.
pub struct Handed {
    pub fd: OwnedFd,
    pub peer: SocketAddr,
    /// In-pod mode: the captured pod whose 15008 accepted it (its drain covers it).
    pub pod: Option<crate::inpod::PodUid>,
}

/// A core's receiving end of handed sockets.
pub type Inbox = UnboundedReceiver<Handed>;

/// The registry of same-node client ends and the cores' inboxes.
pub struct Handoff {
    /// Local address of a same-node HBONE client socket → the core that owns it and where
    /// its inbound end should run.
    origins: Mutex<HashMap<SocketAddr, Origin>>,
    inboxes: Vec<UnboundedSender<Handed>>,
    handed: AtomicU64,
    /// Bulk destinations learned by any core ([`super::placement`]), and a version bumped on
    /// every change so that a core re-reads them only then.
    bulk: Mutex<Learner>,
    bulk_version: AtomicU64,
}

/// A core's copy of the bulk destinations and the version it was taken at.
#[derive(Debug, Default)]
pub struct BulkView {
    version: u64,
    learner: Learner,
}

/// A registered same-node client end: its core and the placement it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub core: usize,
    pub placement: Placement,
}

/// The core an HBONE connection accepted on core `accepted_on` moves to (pure), `None`
/// to serve it where it was accepted: a near one to its client end's core, a far one off
/// that core to the next; a connection that is not a same-node client end stays.
pub fn pick(origin: Option<Origin>, accepted_on: usize, cores: usize) -> Option<usize> {
    let Origin { core, placement } = origin?;
    if cores < 2 {
        return None;
    }
    match placement {
        Placement::Near => (accepted_on != core).then_some(core),
        Placement::Far => (accepted_on == core).then_some((core + 1) % cores),
    }
}

impl Handoff {
    /// The registry for `cores` cores and each core's inbox, in core order.
    pub fn new(cores: usize) -> (Arc<Handoff>, Vec<Inbox>) {
        let (senders, inboxes) = (0..cores).map(|_| unbounded_channel()).unzip();
        let handoff = Handoff {
            origins: Mutex::default(),
            inboxes: senders,
            handed: AtomicU64::new(0),
            bulk: Mutex::default(),
            bulk_version: AtomicU64::new(0),
        };
        (Arc::new(handoff), inboxes)
    }

    /// Records that `origin.core` owns the same-node client socket bound to `local`, until
    /// the returned guard drops.
    pub fn register(self: &Arc<Self>, local: SocketAddr, origin: Origin) -> Registration {
        self.origins().insert(local, origin);
        Registration {
            handoff: self.clone(),
            local,
        }
    }

    /// The core an HBONE connection from `peer`, accepted on `core`, should move to. A
    /// client end registered before its connect chose a source address is found by its
    /// port under the unspecified address (no other local socket can hold that port; a
    /// remote peer that happens to use it is moved too, which only changes its core).
    pub fn target(&self, peer: SocketAddr, core: usize) -> Option<usize> {
        if self.inboxes.len() < 2 {
            return None;
        }
        let any = match peer {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], peer.port())),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], peer.port())),
        };
        let origins = self.origins();
        let origin = origins.get(&peer).or_else(|| origins.get(&any)).copied();
        pick(origin, core, self.inboxes.len())
    }

    /// Sends `handed` to core `target`; gives it back when that core has stopped.
    pub fn send(&self, target: usize, handed: Handed) -> Result<(), Handed> {
        self.inboxes[target].send(handed).map_err(|e| e.0)?;
        self.handed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The placement of a new same-node stream to `dst`; `view` is the calling core's copy
    /// of the bulk destinations, refreshed only when another core learned one (one atomic
    /// load per stream otherwise).
    pub fn placement(&self, view: &mut BulkView, dst: SocketAddr, now: Instant) -> Placement {
        let version = self.bulk_version.load(Ordering::Acquire);
        if version != view.version {
            view.learner = self
                .bulk
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            view.version = version;
        }
        view.learner.choose(dst, now)
    }

    /// Notes a finished same-node stream to `dst` that moved `bytes` in `lived`; a bulk one
    /// spreads that destination's next streams on every core.
    pub fn finished(&self, dst: SocketAddr, bytes: u64, lived: Duration, now: Instant) {
        if !is_heavy(bytes, lived) {
            return;
        }
        let mut bulk = self.bulk.lock().unwrap_or_else(PoisonError::into_inner);
        bulk.record(dst, now);
        self.bulk_version.fetch_add(1, Ordering::Release);
    }

    /// Sockets handed to another core so far.
    pub fn handed(&self) -> u64 {
        self.handed.load(Ordering::Relaxed)
    }

    fn origins(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Origin>> {
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

    fn far(core: usize) -> Origin {
        Origin {
            core,
            placement: Placement::Far,
        }
    }

    fn near(core: usize) -> Origin {
        Origin {
            core,
            placement: Placement::Near,
        }
    }

    #[test]
    fn near_ends_join_their_client_core_and_far_ends_leave_it() {
        let far = |core| Some(far(core));
        let near = |core| Some(near(core));
        assert_eq!(pick(far(0), 0, 2), Some(1));
        assert_eq!(pick(far(1), 1, 2), Some(0));
        assert_eq!(pick(far(2), 2, 3), Some(0));
        assert_eq!(pick(far(0), 1, 2), None, "already on another core");
        assert_eq!(
            pick(near(0), 1, 2),
            Some(0),
            "back to the client end's core"
        );
        assert_eq!(pick(near(1), 0, 3), Some(1));
        assert_eq!(pick(near(0), 0, 2), None, "already there");
        assert_eq!(pick(None, 0, 2), None, "not a same-node client end");
        assert_eq!(pick(far(0), 0, 1), None, "one core: nowhere to go");
        assert_eq!(pick(near(0), 0, 1), None);
    }

    #[test]
    fn registration_lasts_as_long_as_its_guard() {
        let (h, _inboxes) = Handoff::new(2);
        let local: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let guard = h.register(local, far(1));
        assert_eq!(h.target(local, 1), Some(0));
        assert_eq!(h.target(local, 0), None);
        drop(guard);
        assert_eq!(h.target(local, 1), None);
        let unbound: SocketAddr = "0.0.0.0:40001".parse().unwrap();
        let _guard = h.register(unbound, near(0));
        let peer: SocketAddr = "10.0.0.1:40001".parse().unwrap();
        assert_eq!(h.target(peer, 1), Some(0), "found by its port");
    }

    #[test]
    fn a_bulk_stream_seen_on_one_core_spreads_its_destination_on_every_core() {
        let (h, _inboxes) = Handoff::new(2);
        let (mut core0, mut core1) = (BulkView::default(), BulkView::default());
        let dst: SocketAddr = "10.244.2.5:9000".parse().unwrap();
        let now = Instant::now();
        assert_eq!(h.placement(&mut core0, dst, now), Placement::Near);
        assert_eq!(h.placement(&mut core1, dst, now), Placement::Near);
        h.finished(dst, 1 << 20, Duration::from_secs(1), now);
        assert_eq!(
            h.placement(&mut core1, dst, now),
            Placement::Near,
            "not bulk"
        );
        h.finished(dst, 2 << 30, Duration::from_secs(3), now);
        assert_eq!(h.placement(&mut core1, dst, now), Placement::Far);
        assert_eq!(h.placement(&mut core0, dst, now), Placement::Far);
    }

    #[test]
    fn send_reaches_the_target_inbox_and_is_counted() {
        let (h, mut inboxes) = Handoff::new(2);
        let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = sock.local_addr().unwrap();
        let handed = Handed {
            fd: OwnedFd::from(sock),
            peer,
            pod: None,
        };
        assert!(h.send(1, handed).is_ok());
        assert_eq!(inboxes[1].try_recv().unwrap().peer, peer);
        assert!(inboxes[0].try_recv().is_err());
        assert_eq!(h.handed(), 1);
        drop(inboxes);
        let again = Handed {
            fd: OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
            peer,
            pod: None,
        };
        assert!(
            h.send(0, again).is_err(),
            "a stopped core gives the socket back"
        );
    }
}
