//! Per-core counters with Istio's standard TCP labels.
//!
//! A connection resolves its counter handle once (one hash lookup at open); the data path
//! then bumps plain `Cell`s. Each core copies its counters into the shared block on its
//! control tick; they are summed per label set only when `/metrics` is scraped. Names and
//! labels are ztunnel's so Istio dashboards keep working.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::rc::Rc;

use crate::config::{Route, Snapshot, Workload};
use crate::error::{ProxyError, ResponseFlag};
use crate::identity::Identity;
use crate::relay::Transferred;

/// Rendered for labels nobody could fill (Istio's convention).
const UNKNOWN: &str = "unknown";

/// One side's workload labels, derived from its LocalConfig entry as ztunnel does:
/// `workload` ← `workloadName`, `canonical_service` and `app` ← `canonicalName`,
/// `canonical_revision` and `version` ← `canonicalRevision`, `cluster` ← `clusterId`,
/// `region`/`zone` ← `locality`; anything empty (or no workload at all) is `unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    pub workload: String,
    pub namespace: String,
    pub principal: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub app: String,
    pub version: String,
    pub cluster: String,
    pub region: String,
    pub zone: String,
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() { UNKNOWN } else { s }.to_string()
}

impl Peer {
    /// The labels of `w` (`None`: not in the config) seen with `principal`.
    pub fn of(w: Option<&Workload>, principal: Option<&Identity>) -> Peer {
        let field = |f: fn(&Workload) -> &str| or_unknown(w.map_or("", f));
        Peer {
            workload: field(|w| &w.workload_name),
            namespace: field(|w| &w.namespace),
            principal: or_unknown(&principal.map(Identity::to_string).unwrap_or_default()),
            canonical_service: field(|w| &w.canonical_name),
            canonical_revision: field(|w| &w.canonical_revision),
            app: field(|w| &w.canonical_name),
            version: field(|w| &w.canonical_revision),
            cluster: field(|w| &w.cluster_id),
            region: field(|w| &w.locality.region),
            zone: field(|w| &w.locality.zone),
        }
    }
}

/// Istio's standard labels of one TCP connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels {
    /// `source` (outbound leg) or `destination` (inbound leg).
    pub reporter: &'static str,
    pub source: Peer,
    pub destination: Peer,
    pub destination_service: String,
    /// `mutual_tls` through HBONE, `unknown` for plain TCP.
    pub connection_security_policy: &'static str,
}

impl Labels {
    fn between(
        reporter: &'static str,
        snap: &Snapshot,
        src: IpAddr,
        src_principal: Option<&Identity>,
        dst: IpAddr,
    ) -> Labels {
        let d = snap.workload_by_ip(dst);
        Labels {
            reporter,
            source: Peer::of(snap.workload_by_ip(src), src_principal),
            destination: Peer::of(d, d.map(|w| snap.identity(w)).as_ref()),
            destination_service: UNKNOWN.to_string(),
            connection_security_policy: UNKNOWN,
        }
    }

    /// The outbound leg of a connection from `src` routed as `route`. The destination is
    /// the workload the tunnel reaches (a waypoint, when the route goes through one), as
    /// ztunnel labels it; the service is the one the client asked for.
    pub fn outbound(snap: &Snapshot, src: IpAddr, route: &Route) -> Labels {
        let src_id = snap.workload_by_ip(src).map(|w| snap.identity(w));
        match route {
            Route::Hbone {
                hbone_addr,
                service,
                ..
            } => Labels {
                destination_service: or_unknown(service.as_deref().unwrap_or_default()),
                connection_security_policy: "mutual_tls",
                ..Labels::between("source", snap, src, src_id.as_ref(), hbone_addr.ip())
            },
            Route::Passthrough { addr } => {
                Labels::between("source", snap, src, src_id.as_ref(), addr.ip())
            }
        }
    }

    /// The inbound leg: `client` as seen through HBONE (`principal` = its certificate)
    /// or plaintext (`principal` = None), to the local workload `dst`.
    pub fn inbound(
        snap: &Snapshot,
        client: IpAddr,
        principal: Option<&Identity>,
        dst: IpAddr,
    ) -> Labels {
        let mtls = if principal.is_some() {
            "mutual_tls"
        } else {
            UNKNOWN
        };
        Labels {
            connection_security_policy: mtls,
            ..Labels::between("destination", snap, client, principal, dst)
        }
    }
}

/// The counters of one label set on one core.
#[derive(Default)]
pub struct ConnCounters {
    opened: Cell<u64>,
    closed: Cell<u64>,
    failed: Cell<u64>,
    /// Closes (all failures) flagged `DENY` / `CONNECT`; the rest are `-`.
    denied: Cell<u64>,
    connect_failed: Cell<u64>,
    received_bytes: Cell<u64>,
    sent_bytes: Cell<u64>,
}

fn bump(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get() + n);
}

impl ConnCounters {
    pub fn opened(&self) {
        bump(&self.opened, 1);
    }

    /// Records the end of a connection: bytes on success, a failure otherwise.
    pub fn closed(&self, result: &Result<Transferred, ProxyError>) {
        bump(&self.closed, 1);
        match result {
            Ok(t) => {
                bump(&self.received_bytes, t.up);
                bump(&self.sent_bytes, t.down);
            }
            Err(e) => {
                bump(&self.failed, 1);
                match e.response_flag() {
                    ResponseFlag::Deny => bump(&self.denied, 1),
                    ResponseFlag::Connect => bump(&self.connect_failed, 1),
                    ResponseFlag::None => {}
                }
            }
        }
    }

    fn totals(&self) -> Totals {
        Totals {
            opened: self.opened.get(),
            closed: self.closed.get(),
            failed: self.failed.get(),
            denied: self.denied.get(),
            connect_failed: self.connect_failed.get(),
            received_bytes: self.received_bytes.get(),
            sent_bytes: self.sent_bytes.get(),
            hbone_accepted: 0,
        }
    }
}

/// One core's metrics.
#[derive(Default)]
pub struct Metrics {
    by_labels: RefCell<HashMap<Labels, Rc<ConnCounters>>>,
    /// Connections that failed before their labels were known (handshakes, routing).
    pub unlabeled_failed: Cell<u64>,
    /// TCP connections accepted on the HBONE port (not streams).
    pub hbone_accepted: Cell<u64>,
    /// Policies a destination workload lists but the generation does not hold, skipped
    /// while authorizing a connection (one per policy per connection).
    pub policies_skipped: Cell<u64>,
    /// Connections between two workloads on this node joined directly, without HBONE
    /// (the same-node fast path; each is also counted under both its label sets).
    pub fast_path: Cell<u64>,
    /// Outbound connections refused because of their waypoint, by waypoint (a refusal
    /// is rare: the map is touched only then).
    waypoint_refused: RefCell<BTreeMap<String, u64>>,
}

impl Metrics {
    /// The counters for `labels`, created on first use (once per connection, not per byte).
    pub fn handle(&self, labels: Labels) -> Rc<ConnCounters> {
        self.by_labels
            .borrow_mut()
            .entry(labels)
            .or_default()
            .clone()
    }

    pub fn failed_early(&self) {
        bump(&self.unlabeled_failed, 1);
    }

    pub fn hbone_accepted(&self) {
        bump(&self.hbone_accepted, 1);
    }

    pub fn policy_skipped(&self) {
        bump(&self.policies_skipped, 1);
    }

    pub fn fast_path(&self) {
        bump(&self.fast_path, 1);
    }

    /// An outbound connection refused because of the waypoint `waypoint`.
    pub fn waypoint_refused(&self, waypoint: &str) {
        let mut map = self.waypoint_refused.borrow_mut();
        match map.get_mut(waypoint) {
            Some(n) => *n += 1,
            None => drop(map.insert(waypoint.to_string(), 1)),
        }
    }

    /// A copy for the shared block.
    pub fn snapshot(&self) -> CoreMetrics {
        let by_labels = self.by_labels.borrow();
        CoreMetrics {
            by_labels: by_labels
                .iter()
                .map(|(l, c)| (l.clone(), c.totals()))
                .collect(),
            unlabeled_failed: self.unlabeled_failed.get(),
            hbone_accepted: self.hbone_accepted.get(),
            policies_skipped: self.policies_skipped.get(),
            fast_path: self.fast_path.get(),
            waypoint_refused: self.waypoint_refused.borrow().clone(),
            gauges: CoreGauges::default(),
        }
    }

    /// [`Metrics::snapshot`] with the tick's gauges: `pooled` connections, `busy` time.
    pub fn sample(&self, pooled: usize, busy: std::time::Duration) -> CoreMetrics {
        let mut core = self.snapshot();
        let open = |t: &Totals| t.opened.saturating_sub(t.closed);
        core.gauges = CoreGauges {
            connections: core.by_labels.iter().map(|(_, t)| open(t)).sum(),
            streams: core
                .by_labels
                .iter()
                .filter(|(l, _)| l.connection_security_policy == "mutual_tls")
                .map(|(_, t)| open(t))
                .sum(),
            pooled: pooled as u64,
            busy_ns: busy.as_nanos() as u64,
        };
        core
    }
}

/// Counter values (one label set, one core, or summed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub opened: u64,
    pub closed: u64,
    pub failed: u64,
    /// Of `closed` (and `failed`): flagged `DENY` and `CONNECT`.
    pub denied: u64,
    pub connect_failed: u64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    pub hbone_accepted: u64,
}

impl Totals {
    /// Of the closes (`failed`: failures), how many carry `flag`.
    pub fn flagged(&self, flag: ResponseFlag, of: u64) -> u64 {
        match flag {
            ResponseFlag::Deny => self.denied,
            ResponseFlag::Connect => self.connect_failed,
            ResponseFlag::None => of.saturating_sub(self.denied + self.connect_failed),
        }
    }
}

impl std::ops::Add for Totals {
    type Output = Totals;
    fn add(self, o: Totals) -> Totals {
        Totals {
            opened: self.opened + o.opened,
            closed: self.closed + o.closed,
            failed: self.failed + o.failed,
            denied: self.denied + o.denied,
            connect_failed: self.connect_failed + o.connect_failed,
            received_bytes: self.received_bytes + o.received_bytes,
            sent_bytes: self.sent_bytes + o.sent_bytes,
            hbone_accepted: self.hbone_accepted + o.hbone_accepted,
        }
    }
}

/// One core's metrics as of its last control tick.
#[derive(Debug, Default, Clone)]
pub struct CoreMetrics {
    pub by_labels: Vec<(Labels, Totals)>,
    pub unlabeled_failed: u64,
    pub hbone_accepted: u64,
    pub policies_skipped: u64,
    pub fast_path: u64,
    pub waypoint_refused: BTreeMap<String, u64>,
    pub gauges: CoreGauges,
}

/// A core's own data-plane state, sampled on its control tick (never on the data path).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CoreGauges {
    /// Connections open on the core (opened − closed over its label sets).
    pub connections: u64,
    /// Of those, the ones carried in an HBONE stream (`mutual_tls`), either direction.
    pub streams: u64,
    /// Pooled outbound HBONE connections the core holds.
    pub pooled: u64,
    /// CPU time the core's thread has used, in nanoseconds.
    pub busy_ns: u64,
}

/// Everything summed per label set over cores.
#[derive(Debug, Default, Clone)]
pub struct Aggregate {
    pub by_labels: BTreeMap<Labels, Totals>,
    pub unlabeled_failed: u64,
    pub hbone_accepted: u64,
    pub policies_skipped: u64,
    pub fast_path: u64,
    /// Outbound connections refused because of their waypoint, by waypoint.
    pub waypoint_refused: BTreeMap<String, u64>,
    /// Per core, in core order: rendered with a `core` label, not summed.
    pub cores: Vec<CoreGauges>,
    /// CA and xDS health (not per core).
    pub control: ControlSample,
    /// The node side's counters, when zring plumbs it.
    pub plumb: Option<std::sync::Arc<PlumbMetrics>>,
}

impl Aggregate {
    pub fn add(&mut self, core: &CoreMetrics) {
        self.cores.push(core.gauges);
        for (labels, t) in &core.by_labels {
            let slot = self.by_labels.entry(labels.clone()).or_default();
            *slot = *slot + *t;
        }
        self.unlabeled_failed += core.unlabeled_failed;
        self.hbone_accepted += core.hbone_accepted;
        self.policies_skipped += core.policies_skipped;
        self.fast_path += core.fast_path;
        for (waypoint, n) in &core.waypoint_refused {
            *self.waypoint_refused.entry(waypoint.clone()).or_default() += n;
        }
    }

    /// All label sets summed, early failures and HBONE accepts included.
    pub fn totals(&self) -> Totals {
        let sum = self
            .by_labels
            .values()
            .fold(Totals::default(), |a, t| a + *t);
        Totals {
            failed: sum.failed + self.unlabeled_failed,
            hbone_accepted: self.hbone_accepted,
            ..sum
        }
    }
}

pub(crate) mod control;
pub(crate) mod process;
pub use control::{ControlMetrics, ControlSample};
pub(crate) mod plumb;
pub use plumb::PlumbMetrics;
pub(crate) mod render;
pub use render::render;

#[cfg(test)]
mod tests;
