//! One access-log line per closed connection on the `access` tracing target, with
//! ztunnel's field names (`src.addr`, `src.workload`, ... `dst.cluster`, `bytes_sent`,
//! `duration`, `error`), so log pipelines built for ztunnel parse zring's lines. JSON when the process
//! runs with `LOG_FORMAT=json` (as ztunnel), else the plain `key=value` format.
//!
//! The fields are resolved once, when the connection's labels are; nothing is done per
//! byte. With the target off (`RUST_LOG=access=off`) nothing is resolved at all.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use crate::config::{Snapshot, Str};
use crate::error::ProxyError;
use crate::relay::Transferred;
use crate::runtime::metrics::{ConnCounters, Labels, Metrics, Peer};

/// The tracing target of access-log lines.
pub const TARGET: &str = "access";

/// Label values rendered `unknown` are left out of the line (as ztunnel leaves them).
fn known(s: &str) -> Option<&str> {
    (s != "unknown").then_some(s)
}

/// One side as logged: the pod's name (else its canonical service), namespace, identity.
/// Shared text ([`Str`]): an open connection holds references, not copies (5000 held
/// connections carried ~0.7 MB of copied strings on each node).
struct Side {
    addr: SocketAddr,
    workload: Str,
    namespace: Str,
    cluster: Str,
    identity: Str,
}

impl Side {
    fn new(snap: &Snapshot, addr: SocketAddr, peer: &Peer, mtls: bool) -> Side {
        let workload = snap
            .workload_by_ip(addr.ip())
            .map(|w| w.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| shared_known(&peer.canonical_service));
        Side {
            addr,
            workload,
            namespace: shared_known(&peer.namespace),
            cluster: shared_known(&peer.cluster),
            identity: match mtls {
                true => shared_known(&peer.principal),
                false => Str::default(),
            },
        }
    }
}

/// `s` as shared text, empty when `unknown` (left out of the line).
fn shared_known(s: &str) -> Str {
    known(s).map(Str::shared).unwrap_or_default()
}

/// A field's value, `None` when empty (left out of the line).
fn field(s: &Str) -> Option<&str> {
    (!s.is_empty()).then_some(s.as_str())
}

/// A connection's access-log fields, resolved when it opens.
pub struct AccessLog {
    src: Side,
    dst: Side,
    hbone_addr: Option<SocketAddr>,
    service: Str,
    outbound: bool,
    /// Carried by the same-node fast path (`fast_path=true`; absent on HBONE lines).
    fast_path: bool,
    start: Instant,
}

impl AccessLog {
    /// The fields for a connection `src` → `dst` (the L4 address; `hbone_addr` the
    /// CONNECT authority when tunnelled) labelled `labels`; `None` when the target is off.
    pub fn open(
        snap: &Snapshot,
        labels: &Labels,
        src: SocketAddr,
        dst: SocketAddr,
        hbone_addr: Option<SocketAddr>,
    ) -> Option<Box<AccessLog>> {
        if !tracing::enabled!(target: TARGET, tracing::Level::ERROR) {
            return None;
        }
        let mtls = labels.connection_security_policy == "mutual_tls";
        // The destination workload is found by the address it was reached at: outbound,
        // the tunnel's (a waypoint's, when it goes through one); inbound, the authority.
        let outbound = labels.reporter == "source";
        let dst_wl_addr = if outbound {
            dst
        } else {
            hbone_addr.unwrap_or(dst)
        };
        let mut dst_side = Side::new(snap, dst_wl_addr, &labels.destination, mtls);
        dst_side.addr = dst;
        Some(Box::new(AccessLog {
            src: Side::new(snap, src, &labels.source, mtls),
            dst: dst_side,
            hbone_addr,
            service: shared_known(&labels.destination_service),
            outbound,
            fast_path: false,
            start: Instant::now(),
        }))
    }

    /// Writes the line for the connection's end: INFO on success, ERROR with `error`.
    pub fn close(&self, result: &Result<Transferred, ProxyError>) {
        let t = result
            .as_ref()
            .map_or(Transferred { up: 0, down: 0 }, |t| *t);
        // Bytes as the workload sees them: outbound, what the client sent goes upstream.
        let (bytes_sent, bytes_recv) = if self.outbound {
            (t.up, t.down)
        } else {
            (t.down, t.up)
        };
        let direction = if self.outbound { "outbound" } else { "inbound" };
        let duration = format!("{}ms", self.start.elapsed().as_millis());
        let error = result.as_ref().err().map(ToString::to_string);
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(
                    target: TARGET,
                    $level,
                    src.addr = %self.src.addr,
                    src.workload = field(&self.src.workload),
                    src.namespace = field(&self.src.namespace),
                    src.identity = field(&self.src.identity),
                    src.cluster = field(&self.src.cluster),
                    dst.addr = %self.dst.addr,
                    dst.hbone_addr = self.hbone_addr.map(tracing::field::display),
                    dst.service = field(&self.service),
                    dst.workload = field(&self.dst.workload),
                    dst.namespace = field(&self.dst.namespace),
                    dst.identity = field(&self.dst.identity),
                    dst.cluster = field(&self.dst.cluster),
                    direction,
                    bytes_sent,
                    bytes_recv,
                    duration = duration.as_str(),
                    error = error.as_deref(),
                    fast_path = self.fast_path.then_some(true),
                    "connection complete"
                )
            };
        }
        if error.is_some() {
            line!(tracing::Level::ERROR);
        } else {
            line!(tracing::Level::INFO);
        }
    }
}

/// What a connection reports from open to close: its metric series and its access-log
/// fields (boxed: most of the time the access log is off, and every open connection's
/// task holds this for its whole life). A connection whose task is dropped before it
/// closed (an in-pod drain that timed out, a core stopping) is counted closed, as failed,
/// when this is dropped: opened and closed stay equal once nothing is open.
pub struct Accounting {
    counters: Rc<ConnCounters>,
    log: Option<Box<AccessLog>>,
    closed: bool,
}

impl Accounting {
    /// Counts the connection `src` → `dst` as opened under `labels`.
    pub fn open(
        snap: &Snapshot,
        metrics: &Metrics,
        labels: Labels,
        (src, dst): (SocketAddr, SocketAddr),
        hbone_addr: Option<SocketAddr>,
    ) -> Accounting {
        let log = AccessLog::open(snap, &labels, src, dst, hbone_addr);
        let counters = metrics.handle(labels);
        counters.opened();
        Accounting {
            counters,
            log,
            closed: false,
        }
    }

    /// Marks the connection as carried by the same-node fast path in its access-log line.
    pub fn fast_path(mut self) -> Accounting {
        if let Some(log) = &mut self.log {
            log.fast_path = true;
        }
        self
    }

    /// Counts the connection's end and writes its access-log line.
    pub fn close(mut self, result: &Result<Transferred, ProxyError>) {
        self.finish(result);
    }

    fn finish(&mut self, result: &Result<Transferred, ProxyError>) {
        self.closed = true;
        self.counters.closed(result);
        if let Some(log) = self.log.take() {
            log.close(result);
        }
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        if !self.closed {
            let aborted = std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "closed before it finished (drain timeout or shutdown)",
            );
            self.finish(&Err(ProxyError::Io(aborted)));
        }
    }
}
