//! Captured pods on the data path: every core's listeners inside each pod's network
//! namespace, and upstream sockets opened in the namespace of the pod they leave from or
//! deliver to, with the mark istio-cni's in-pod rules expect.
//!
//! | socket | namespace | options | why |
//! |---|---|---|---|
//! | 15001, 15006, 15008 listeners, one per core | the pod's | SO_REUSEPORT, IP_TRANSPARENT, mark 0x539 | the pod's REDIRECT rules send its traffic there; the kernel spreads accepts over the cores |
//! | upstream (HBONE dial, passthrough, delivery to the pod) | the source pod's, else the destination pod's | mark 0x539, spoofed source as in node mode | marked packets skip the pod's REDIRECT rules; their replies get connmark 0x111 and are routed back to our transparent socket (`testsupport::cni::rules`) |
//!
//! The pod of a socket is found by IP (a pod's addresses are read from its namespace at
//! AddWorkload): the legs need no change, and node mode pays one atomic load per upstream
//! socket (`netns_for` returns at once when in-pod mode is off).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock, RwLock};

use nix::sched::{setns, CloneFlags};
use socket2::SockRef;

use super::netns::Netns;
use super::registry::PodSink;
use super::{PodInfo, PodUid};
use crate::identity::Identity;
use crate::runtime::ListenerKind;
use crate::sockets;

/// ztunnel's in-pod `PACKET_MARK` (1337): istio-cni's rules skip packets carrying it.
pub const INPOD_MARK: u32 = 0x539;

/// The ports a pod's REDIRECT rules send to.
const POD_LISTENERS: [(ListenerKind, u16); 3] = [
    (ListenerKind::Outbound, 15001),
    (ListenerKind::InboundPlaintext, 15006),
    (ListenerKind::Inbound, HBONE_PORT),
];

/// Pod IP → the captured pod; set only in in-pod mode.
static PODS: OnceLock<RwLock<HashMap<IpAddr, Arc<Captured>>>> = OnceLock::new();

fn pods() -> &'static RwLock<HashMap<IpAddr, Arc<Captured>>> {
    PODS.get_or_init(RwLock::default)
}

/// A captured pod as the data path sees it: its namespace and what AddWorkload said.
pub struct Captured {
    netns: Netns,
    info: PodInfo,
}

impl Captured {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.netns.fd()
    }
}

/// The identity AddWorkload gave the captured pod at `ip`: ztunnel's fallback for a pod
/// the workload config does not know (yet). `None` for any other address.
pub fn identity_for(ip: IpAddr, trust_domain: &str) -> Option<Identity> {
    let map = PODS.get()?.read().ok()?;
    let info = &map.get(&ip)?.info;
    Some(Identity::new(
        trust_domain,
        &info.namespace,
        &info.service_account,
    ))
}

/// The namespace an upstream socket from `source` to `dst` belongs in; `None` for
/// node-level sockets. An HBONE dial (to port 15008) leaves from the source pod; anything
/// else to a captured pod is a delivery, made inside the destination pod (the spoofed
/// source may be a pod of this node too); else it leaves from the source pod.
pub fn netns_for(source: Option<IpAddr>, dst: SocketAddr) -> Option<Arc<Captured>> {
    let map = PODS.get()?.read().ok()?;
    let from = || source.and_then(|s| map.get(&s));
    let hit = if dst.port() == HBONE_PORT {
        from()
    } else {
        map.get(&dst.ip()).or_else(from)
    };
    hit.cloned()
}

/// Where in-pod HBONE is dialled and listened for.
const HBONE_PORT: u16 = 15008;

/// The namespace every thread of the process starts in and comes back to: one descriptor
/// for the process (one per thread would add a descriptor the first time each thread works
/// in a pod). Only [`in_netns`] enters other namespaces, and it always comes back.
static HOME: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// Opens the home namespace now (in-pod mode's start, on a thread that never left it).
pub fn open_home() -> io::Result<()> {
    home().map(|_| ())
}

fn home() -> io::Result<BorrowedFd<'static>> {
    HOME.get_or_init(|| {
        std::fs::File::open("/proc/thread-self/ns/net")
            .ok()
            .map(Into::into)
    })
    .as_ref()
    .map(AsFd::as_fd)
    .ok_or_else(|| io::Error::other("cannot open /proc/thread-self/ns/net"))
}

/// Runs `f` with this thread inside `ns` (sockets keep the namespace they were made in).
pub fn in_netns<T>(ns: BorrowedFd<'_>, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let home = home()?;
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let result = f();
    // A thread left in a pod's namespace would open every later socket there.
    if let Err(e) = setns(home, CloneFlags::CLONE_NEWNET) {
        panic!("cannot return to the process's own network namespace: {e}");
    }
    result
}

/// Marks an in-pod socket so the pod's rules let it through.
pub fn mark(socket: &impl AsFd) -> io::Result<()> {
    SockRef::from(socket).set_mark(INPOD_MARK)
}

/// A core's end of the ZDS thread's channel (tokio's: it wakes a monoio task across threads).
pub type PodInbox = tokio::sync::mpsc::UnboundedReceiver<PodCommand>;
pub type PodOutbox = tokio::sync::mpsc::UnboundedSender<PodCommand>;

/// What a core is told about pods.
pub enum PodCommand {
    /// Accept on these listeners (this core's share of the pod's).
    Add {
        uid: PodUid,
        listeners: Vec<(ListenerKind, TcpListener)>,
    },
    /// Close the pod's listeners at once; its connections finish up to the drain timeout,
    /// then are closed, and pooled HBONE connections from its addresses `ips` dropped.
    Del { uid: PodUid, ips: Vec<IpAddr> },
}

/// Starts and stops pods on every core ([`PodSink`] of the ZDS client).
pub struct CoreSink {
    pub cores: Vec<PodOutbox>,
    pub transparent: bool,
}

/// A started pod: its addresses and namespace.
pub struct Started {
    ips: Vec<IpAddr>,
    pod: Arc<Captured>,
}

impl PodSink for CoreSink {
    type Netns = Netns;
    type Pod = Started;

    fn start(&mut self, uid: &PodUid, info: &PodInfo, netns: Netns) -> Result<Started, String> {
        let ips = in_netns(netns.fd(), pod_addresses)
            .map_err(|e| format!("reading the pod's addresses: {e}"))?;
        if ips.is_empty() {
            return Err("the pod's network namespace has no address".into());
        }
        let mut per_core = Vec::with_capacity(self.cores.len());
        for _ in &self.cores {
            per_core.push(
                self.listeners(&netns)
                    .map_err(|e| format!("listening in the pod: {e}"))?,
            );
        }
        let pod = Arc::new(Captured {
            netns,
            info: info.clone(),
        });
        if let Ok(mut map) = pods().write() {
            for ip in &ips {
                map.insert(*ip, pod.clone());
            }
        }
        for (tx, listeners) in self.cores.iter().zip(per_core) {
            let _ = tx.send(PodCommand::Add {
                uid: uid.clone(),
                listeners,
            });
        }
        tracing::info!(
            uid = uid.0,
            name = info.name,
            namespace = info.namespace,
            ?ips,
            "pod captured (in-pod)"
        );
        Ok(Started { ips, pod })
    }

    fn stop(&mut self, uid: &PodUid, pod: Started) {
        for tx in &self.cores {
            let _ = tx.send(PodCommand::Del {
                uid: uid.clone(),
                ips: pod.ips.clone(),
            });
        }
        if let Ok(mut map) = pods().write() {
            for ip in &pod.ips {
                if map.get(ip).is_some_and(|n| Arc::ptr_eq(n, &pod.pod)) {
                    map.remove(ip);
                }
            }
        }
        tracing::info!(uid = uid.0, "pod released (in-pod)");
    }
}

impl CoreSink {
    fn listeners(&self, netns: &Netns) -> io::Result<Vec<(ListenerKind, TcpListener)>> {
        let mut out = Vec::with_capacity(POD_LISTENERS.len());
        for (kind, port) in POD_LISTENERS {
            let addr = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port);
            let l = in_netns(netns.fd(), || {
                sockets::reuseport_listener(addr, self.transparent)
            })?;
            mark(&l)?;
            out.push((kind, l));
        }
        Ok(out)
    }
}

/// The addresses of this thread's namespace, loopback left out.
fn pod_addresses() -> io::Result<Vec<IpAddr>> {
    let mut ips = Vec::new();
    for a in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        let Some(addr) = a.address else { continue };
        let ip: Option<IpAddr> = if let Some(v4) = addr.as_sockaddr_in() {
            Some(v4.ip().into())
        } else {
            addr.as_sockaddr_in6().map(|v6| v6.ip().into())
        };
        if let Some(ip) = ip.filter(|ip| !ip.is_loopback() && !is_link_local(ip)) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}
