//! Destination resolution: where an outbound connection to `dst` really goes. Pure.
//!
//! - a service VIP: pick an endpoint (round robin), translate the service port to the
//!   target port (the endpoint's own override first, else the service's `ports`);
//! - a workload IP (directly, or the chosen endpoint): protocol HBONE → tunnel to
//!   `<pod ip>:<hbone port>` with authority `<pod ip>:<target port>`; TCP → passthrough;
//! - any other address: passthrough unchanged;
//! - a service with a `waypoint`, or a workload with one addressed by its own IP (unless
//!   the connection comes from that waypoint): through the waypoint ([`super::waypoint`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::index::S;
use super::local::{Protocol, Service, Workload};
use super::snapshot::{Endpoint, Snapshot};
use super::waypoint::{self, GatewayAddress};
use crate::identity::Identity;

/// The proxy's own well-known ports; a connection captured towards one of these on the
/// proxy itself would loop, so the data plane refuses it.
pub const PROXY_PORTS: [u16; 4] = [
    15001, // outbound capture
    15006, // inbound plaintext capture
    15008, // inbound HBONE
    15080, // SOCKS5
];

/// Whether `port` is one of [`PROXY_PORTS`].
pub fn is_proxy_port(port: u16) -> bool {
    PROXY_PORTS.contains(&port)
}

/// How to forward one outbound connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Tunnel: connect (mTLS, h2) to `hbone_addr`, then CONNECT `authority`.
    Hbone {
        /// Endpoint pod IP : HBONE port.
        hbone_addr: SocketAddr,
        /// Endpoint pod IP : target port (service port already translated).
        authority: SocketAddr,
        /// The identity the server certificate must carry.
        dst_identity: Identity,
        /// Service hostname when the destination was a service.
        service: Option<String>,
    },
    /// Plain TCP to `addr` (pod IP : target port for a service, else the original address).
    Passthrough { addr: SocketAddr },
}

/// Why a destination cannot be resolved; counted per connection by the data plane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("service {service} has no endpoints (no workload lists it in its `services`)")]
    NoEndpoints { service: String },
    #[error("service {service} does not expose port {port} (add it to the service's `ports`)")]
    UnknownServicePort { service: String, port: u16 },
    #[error("{host:?} is neither an IP address nor a known service hostname")]
    UnknownHostname { host: String },
    #[error("waypoint {waypoint} names no workload, and no service with endpoints and its port (check the waypoint's deployment and the `waypoint` of the destination)")]
    UnknownWaypoint { waypoint: String },
    #[error("service {service} has a waypoint but no VIP to address it by; connect to a VIP")]
    NoVip { service: String },
}

impl ResolveError {
    /// The waypoint a refusal is about, for its log line and metric.
    pub fn waypoint(&self) -> Option<&str> {
        match self {
            ResolveError::UnknownWaypoint { waypoint } => Some(waypoint),
            _ => None,
        }
    }
}

/// Per-core round-robin cursors, one per service (keyed by the address of the service's
/// record, so a pick hashes one integer). Not shared: no atomics. A service that is
/// replaced gets a new record and its cursor starts again, which only shifts the rotation.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: HashMap<usize, usize>,
}

/// Cursors kept before stale ones (of services gone) are forgotten.
const MAX_CURSORS: usize = 1 << 16;

impl RoundRobin {
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }

    /// Index of the next endpoint to use among `n` for the service `service` (n > 0).
    pub(super) fn pick(&mut self, service: usize, n: usize) -> usize {
        if self.next.len() >= MAX_CURSORS && !self.next.contains_key(&service) {
            self.next.clear();
        }
        let cursor = self.next.entry(service).or_insert(0);
        let i = *cursor % n;
        *cursor = cursor.wrapping_add(1);
        i
    }
}

/// Resolves the original destination `dst` of an outbound connection from an unknown
/// source (see [`resolve_from`]).
pub fn resolve(
    snap: &Snapshot,
    rr: &mut RoundRobin,
    dst: SocketAddr,
    hbone_port: u16,
) -> Result<Route, ResolveError> {
    resolve_from(snap, rr, None, dst, hbone_port)
}

/// Resolves the original destination `dst` of an outbound connection from the client
/// IP `src` (a connection from a workload's own waypoint is not sent back to it).
pub fn resolve_from(
    snap: &Snapshot,
    rr: &mut RoundRobin,
    src: Option<IpAddr>,
    dst: SocketAddr,
    hbone_port: u16,
) -> Result<Route, ResolveError> {
    if let Some(svc) = snap.service_rec_by_vip(dst.ip()) {
        return resolve_service(snap, rr, svc, (Some(dst.ip()), dst.port()), hbone_port);
    }
    let Some(w) = snap.workload_by_ip(dst.ip()) else {
        return Ok(Route::Passthrough { addr: dst });
    };
    match &w.waypoint {
        Some(gw) if !from_waypoint(snap, gw, src) => via_waypoint(snap, rr, gw, dst, None),
        _ => Ok(workload_route(snap, w, dst, hbone_port, None)),
    }
}

fn from_waypoint(snap: &Snapshot, gw: &GatewayAddress, src: Option<IpAddr>) -> bool {
    let src = src.and_then(|ip| Some((snap.workload_by_ip(ip)?, ip)));
    src.is_some_and(|(w, ip)| waypoint::is_from(snap, gw, w, ip))
}

/// Through the waypoint `gw`: HBONE to it (whatever the protocol of its workload), its
/// certificate must carry its workload's identity, and the CONNECT names the address the
/// client asked for, untranslated (ztunnel's `build_request`).
fn via_waypoint(
    snap: &Snapshot,
    rr: &mut RoundRobin,
    gw: &GatewayAddress,
    target: SocketAddr,
    service: Option<&str>,
) -> Result<Route, ResolveError> {
    let hop = waypoint::find(snap, rr, gw)?;
    Ok(Route::Hbone {
        hbone_addr: hop.addr,
        authority: target,
        dst_identity: snap.identity(hop.workload),
        service: service.map(str::to_string),
    })
}

/// Resolves a SOCKS5 domain-name destination: a service hostname or an IP literal.
pub fn resolve_hostname(
    snap: &Snapshot,
    rr: &mut RoundRobin,
    src: Option<IpAddr>,
    (host, port): (&str, u16),
    hbone_port: u16,
) -> Result<Route, ResolveError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return resolve_from(snap, rr, src, SocketAddr::new(ip, port), hbone_port);
    }
    let host_trimmed = host.strip_suffix('.').unwrap_or(host);
    match snap.service_rec_by_hostname(host_trimmed) {
        Some(svc) => resolve_service(snap, rr, svc, (None, port), hbone_port),
        None => Err(ResolveError::UnknownHostname {
            host: host.to_string(),
        }),
    }
}

/// A service addressed as `(vip, port)` (no VIP: by hostname).
fn resolve_service(
    snap: &Snapshot,
    rr: &mut RoundRobin,
    rec: &S,
    (vip, port): (Option<IpAddr>, u16),
    hbone_port: u16,
) -> Result<Route, ResolveError> {
    let svc = &rec.item;
    if let Some(gw) = &svc.waypoint {
        let vip = vip.or_else(|| svc.vips.first().map(|v| v.ip));
        let vip = vip.ok_or_else(|| ResolveError::NoVip {
            service: svc.hostname.clone(),
        })?;
        let target = SocketAddr::new(vip, port);
        return via_waypoint(snap, rr, gw, target, Some(&svc.hostname));
    }
    let Some(endpoints) = snap.endpoints_of(rec).filter(|e| !e.is_empty()) else {
        return Err(ResolveError::NoEndpoints {
            service: svc.hostname.clone(),
        });
    };
    let cursor = Arc::as_ptr(rec) as usize;
    let ep = &endpoints[rr.pick(cursor, endpoints.len())];
    let target = target_port(svc, ep, port).ok_or_else(|| ResolveError::UnknownServicePort {
        service: svc.hostname.clone(),
        port,
    })?;
    let addr = SocketAddr::new(ep.ip, target);
    Ok(workload_route(
        snap,
        ep.workload(),
        addr,
        hbone_port,
        Some(&svc.hostname),
    ))
}

/// Service port → target port: the endpoint's override, else the service's mapping.
fn target_port(svc: &Service, ep: &Endpoint, port: u16) -> Option<u16> {
    ep.target_port(port)
        .or_else(|| svc.ports.get(&port).copied())
        .filter(|t| *t != 0)
}

fn workload_route(
    snap: &Snapshot,
    w: &Workload,
    addr: SocketAddr,
    hbone_port: u16,
    service: Option<&str>,
) -> Route {
    match w.protocol {
        Protocol::Hbone => Route::Hbone {
            hbone_addr: SocketAddr::new(addr.ip(), hbone_port),
            authority: addr,
            dst_identity: snap.identity(w),
            service: service.map(str::to_string),
        },
        Protocol::Tcp => Route::Passthrough { addr },
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
