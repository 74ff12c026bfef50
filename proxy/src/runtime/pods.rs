//! In-pod mode on one core: each captured pod as one value ([`PodLive`]: its accept loops,
//! its drain signal, its connections), added when the ZDS thread hands the core the pod's
//! listeners and drained when it says DelWorkload ([`drain_pod`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::ProxyError;

use crate::inpod::pods::{PodCommand, PodInbox};
use crate::inpod::PodUid;
use crate::runtime::core::{spawn_accept, Core};
use crate::runtime::drain::{Conns, Drain};

/// How often a draining pod's open connections are counted.
const POD_DRAIN_POLL: Duration = Duration::from_millis(100);

/// A captured pod on one core: its accept loops, its drain signal (GOAWAY on its inbound
/// HBONE connections) and its connections, closed when its drain times out.
pub struct PodLive {
    pub(super) uid: PodUid,
    /// A duplicate of each of its listeners, to shut them down.
    pub(super) listeners: RefCell<Vec<std::net::TcpListener>>,
    pub drain: Rc<Drain>,
    pub(super) conns: Rc<Conns>,
}

impl PodLive {
    pub(super) fn new(uid: PodUid) -> Self {
        PodLive {
            uid,
            listeners: RefCell::default(),
            drain: Rc::default(),
            conns: Rc::default(),
        }
    }

    /// Shuts the pod's listeners down and raises its drain signal. A shut-down listener
    /// resets the connections in its backlog and fails the accept in flight, whose loop
    /// then ends (it sees the drain raised). Aborting the loop instead could leak the
    /// socket of an accept the kernel completed while it was being cancelled: a
    /// connection nobody reads, left in CLOSE-WAIT.
    pub(super) fn stop_accepting(&self) {
        self.drain.raise();
        for l in self.listeners.borrow_mut().drain(..) {
            let _ = socket2::SockRef::from(&l).shutdown(std::net::Shutdown::Both);
        }
    }
}

/// In-pod mode: starts or stops accepting in pods as the ZDS thread says, as soon as it
/// says so (the AddWorkload's Ack was sent once the listeners existed: SYNs wait in their
/// backlog until this core takes them).
pub(super) async fn serve_pods(core: Rc<Core>, mut inbox: PodInbox) {
    while let Some(cmd) = inbox.recv().await {
        match cmd {
            PodCommand::Add { uid, listeners } => {
                let pod = Rc::new(PodLive::new(uid.clone()));
                for (kind, l) in listeners {
                    let started = l.try_clone().map_err(ProxyError::from).and_then(|dup| {
                        spawn_accept(&core, kind, l, Some(pod.clone()))?;
                        Ok(dup)
                    });
                    match started {
                        Ok(dup) => pod.listeners.borrow_mut().push(dup),
                        Err(e) => {
                            tracing::warn!(core = core.id, uid = uid.0, error = %e, "pod listener failed")
                        }
                    }
                }
                if let Some(old) = core.pods.borrow_mut().insert(uid.clone(), pod) {
                    // The pod's sandbox came back with a new namespace: the old one drains.
                    monoio::spawn(drain_pod(core.clone(), uid, old, Vec::new()));
                }
            }
            PodCommand::Del { uid, ips } => {
                if let Some(pod) = core.pods.borrow_mut().remove(&uid) {
                    monoio::spawn(drain_pod(core.clone(), uid, pod, ips));
                }
            }
        }
    }
}

/// DelWorkload on this core: the pod's listeners close at once (a new connection to it
/// is refused), its inbound HBONE connections get GOAWAY, its open connections finish for
/// up to the drain timeout and are then closed; last, pooled HBONE connections that left
/// from its addresses are dropped. Nothing of the pod is left on the core after this.
async fn drain_pod(core: Rc<Core>, uid: PodUid, pod: Rc<PodLive>, ips: Vec<std::net::IpAddr>) {
    pod.stop_accepting();
    let deadline = Instant::now() + core.config.drain_timeout;
    while !pod.conns.is_empty() && !core.shared.stopping() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        monoio::time::sleep(left.min(POD_DRAIN_POLL)).await;
    }
    let closed = pod.conns.close_all();
    if closed > 0 {
        tracing::info!(
            core = core.id,
            uid = uid.0,
            closed,
            "pod drain timed out; its connections closed"
        );
    }
    let pooled = core
        .outbound
        .pool
        .evict_keys(|k| k.src_ip.is_some_and(|ip| ips.contains(&ip)));
    tracing::debug!(core = core.id, uid = uid.0, pooled, "pod drained");
}
