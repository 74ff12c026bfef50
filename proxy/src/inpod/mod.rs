//! In-pod mode (issue 21): istio-cni redirects inside each enrolled pod's own network
//! namespace and hands that namespace to the node proxy over ZDS, a SOCK_SEQPACKET Unix
//! socket (`INPOD_UDS`, default `/var/run/ztunnel/ztunnel.sock`, as ztunnel).
//!
//! - [`zds`] — the messages to and from packets (pure).
//! - [`registry`] — the captured pods and what each request does to them (pure, ztunnel's
//!   snapshot semantics), over a [`registry::PodSink`] that starts and stops listeners.
//! - [`netns`] — a received namespace descriptor, checked to be a network namespace.
//! - [`pods`] — every core's listeners inside each pod's namespace, and upstream sockets
//!   opened in the pod's namespace with istio-cni's mark.
//! - [`client`] — the connection to the CNI on its own thread: hello, one Ack per request,
//!   reconnect with backoff (a dropped socket keeps the pods).

pub mod client;
pub mod netns;
pub mod pods;
pub mod registry;
pub mod zds;

/// Kubernetes pod UID, the key of every ZDS request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodUid(pub String);

/// What AddWorkload says about the pod (the fallback for its identity when the workload
/// config does not know it yet, as ztunnel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub service_account: String,
}

/// Which network namespace: nsfs device and inode (two descriptors of one namespace
/// compare equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

/// `INPOD_UDS`: the CNI's ZDS socket (ztunnel's variable and default).
pub const INPOD_UDS_ENV: &str = "INPOD_UDS";
pub const DEFAULT_INPOD_UDS: &str = "/var/run/ztunnel/ztunnel.sock";
