//! Waypoints: istio's `GatewayAddress` on a service or workload, and where it leads. Pure.
//!
//! A service or workload with a `waypoint` must be reached through that waypoint (an L7
//! proxy that enforces the namespace's HTTP policies). The address is either
//! `"<network>/<ip>"` (a waypoint workload's IP or a waypoint service's VIP) or
//! `"<namespace>/<hostname>"` (a waypoint service), plus the port the waypoint takes
//! HBONE on. ztunnel's rules, which this module follows (`state.rs::fetch_waypoint`,
//! `proxy.rs::check_from_waypoint`):
//!
//! | destination | how it is found | HBONE to |
//! |---|---|---|
//! | an IP that is a service VIP | that service's endpoints, port `hboneMtlsPort` translated by the service (the port must be on the service) | endpoint IP : target port |
//! | an IP that is a workload | that workload | the IP : `hboneMtlsPort` |
//! | `ns/hostname` of a service | as for a VIP | endpoint IP : target port |
//! | anything else | not found: the connection is refused | – |
//!
//! A connection *comes from* the waypoint when its source workload is one of the
//! waypoint's workloads (same identity, and its IP is among theirs): the waypoint's own
//! onward connection is not sent back to it. Inbound, a CONNECT that reached a waypoint
//! pod on this node may name the destination the waypoint serves ([`serves`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::index::{Owners, S};
use super::local::{NetworkAddress, Workload};
use super::resolve::{ResolveError, RoundRobin};
use super::snapshot::Snapshot;

/// istio's `GatewayAddress`: where a waypoint takes HBONE.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayAddress {
    pub destination: GatewayDestination,
    /// The waypoint's HBONE (mTLS) port, normally 15008.
    pub hbone_mtls_port: u16,
}

/// A waypoint by address or by (namespaced) hostname; written as ztunnel writes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GatewayDestination {
    /// `"<network>/<ip>"`.
    Address(NetworkAddress),
    /// `"<namespace>/<hostname>"`.
    Hostname { namespace: String, hostname: String },
}

impl FromStr for GatewayDestination {
    type Err = String;

    /// ztunnel's order: `network/ip` when the part after the first `/` is an IP, else
    /// `namespace/hostname`.
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((left, right)) = s.split_once('/') else {
            return Err(format!(
                "{s:?} is neither \"<network>/<ip>\" nor \"<namespace>/<hostname>\""
            ));
        };
        Ok(match right.parse::<IpAddr>() {
            Ok(ip) => GatewayDestination::Address(NetworkAddress {
                network: left.to_string(),
                ip,
            }),
            Err(_) => GatewayDestination::Hostname {
                namespace: left.to_string(),
                hostname: right.to_string(),
            },
        })
    }
}

impl fmt::Display for GatewayDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayDestination::Address(a) => a.fmt(f),
            GatewayDestination::Hostname {
                namespace,
                hostname,
            } => write!(f, "{namespace}/{hostname}"),
        }
    }
}

impl fmt::Display for GatewayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.destination, self.hbone_mtls_port)
    }
}

impl Serialize for GatewayDestination {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GatewayDestination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The waypoint a connection is handed to: its HBONE address and its workload.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    pub addr: SocketAddr,
    pub workload: &'a Workload,
}

/// Finds the waypoint `gw` names (an endpoint of a waypoint service is picked round robin).
pub fn find<'a>(
    snap: &'a Snapshot,
    rr: &mut RoundRobin,
    gw: &GatewayAddress,
) -> Result<Hop<'a>, ResolveError> {
    let port = gw.hbone_mtls_port;
    let found = match &gw.destination {
        GatewayDestination::Address(a) => match snap.service_rec_by_vip(a.ip) {
            Some(svc) => via_service(snap, rr, svc, port),
            None => snap.workload_by_ip(a.ip).map(|workload| Hop {
                addr: SocketAddr::new(a.ip, port),
                workload,
            }),
        },
        GatewayDestination::Hostname { .. } => {
            service_by_key(snap, &gw.destination).and_then(|s| via_service(snap, rr, s, port))
        }
    };
    found.ok_or_else(|| ResolveError::UnknownWaypoint {
        waypoint: gw.to_string(),
    })
}

fn service_by_key<'a>(snap: &'a Snapshot, dest: &GatewayDestination) -> Option<&'a S> {
    let key = dest.to_string();
    snap.ix.service_keys.get(key.as_str()).map(Owners::first)
}

/// A waypoint service: an endpoint, and `port` as the service translates it (ztunnel's
/// waypoint resolution mode: the port must be on the service).
fn via_service<'a>(snap: &'a Snapshot, rr: &mut RoundRobin, svc: &S, port: u16) -> Option<Hop<'a>> {
    svc.item.ports.get(&port)?;
    let endpoints = snap.endpoints_of(svc).filter(|e| !e.is_empty())?;
    let cursor = Arc::as_ptr(svc) as usize;
    let ep = &endpoints[rr.pick(cursor, endpoints.len())];
    let target = ep
        .target_port(port)
        .or_else(|| svc.item.ports.get(&port).copied())
        .filter(|t| *t != 0)?;
    Some(Hop {
        addr: SocketAddr::new(ep.ip, target),
        workload: ep.workload(),
    })
}

/// Whether `src` (the source workload, at `src_ip`) is one of the workloads of the
/// waypoint `gw`: its connections are the waypoint's own and are not sent back to it.
pub fn is_from(snap: &Snapshot, gw: &GatewayAddress, src: &Workload, src_ip: IpAddr) -> bool {
    let id = snap.identity(src);
    let is_waypoint = |w: &Workload| w.workload_ips.contains(&src_ip) && snap.identity(w) == id;
    let svc = match &gw.destination {
        GatewayDestination::Address(a) => {
            if let Some(w) = snap.workload_by_ip(a.ip) {
                return is_waypoint(w);
            }
            snap.service_rec_by_vip(a.ip)
        }
        GatewayDestination::Hostname { .. } => service_by_key(snap, &gw.destination),
    };
    svc.and_then(|s| snap.endpoints_of(s))
        .is_some_and(|eps| eps.iter().any(|ep| is_waypoint(ep.workload())))
}

/// ztunnel's waypoint "sandwich" (its inbound `validate_destination`): a CONNECT that
/// reached the local pod `local` names another destination, `authority`; it is for this
/// pod when that destination (a workload at the IP, else a service VIP) has this pod as
/// its waypoint: the waypoint's workload at `local`, or its service with `local`'s
/// workload among the endpoints.
pub fn serves(snap: &Snapshot, authority: IpAddr, local: IpAddr) -> bool {
    let gw = match snap.workload_by_ip(authority) {
        Some(w) => w.waypoint.as_ref(),
        None => snap
            .service_by_vip(authority)
            .and_then(|s| s.waypoint.as_ref()),
    };
    let (Some(gw), Some(here)) = (gw, snap.workload_by_ip(local)) else {
        return false;
    };
    let svc = match &gw.destination {
        GatewayDestination::Address(a) => {
            if let Some(w) = snap.workload_by_ip(a.ip) {
                return w.workload_ips.contains(&local);
            }
            snap.service_rec_by_vip(a.ip)
        }
        GatewayDestination::Hostname { .. } => service_by_key(snap, &gw.destination),
    };
    svc.and_then(|s| snap.endpoints_of(s))
        .is_some_and(|eps| eps.iter().any(|ep| ep.workload() == here))
}

/// Decodes an xDS `GatewayAddress` (None: no waypoint). A waypoint without a destination
/// or with a port above 65535 refuses its whole resource, as ztunnel does.
pub(super) fn from_xds(
    gw: Option<zring_xds::workload::GatewayAddress>,
) -> Result<Option<GatewayAddress>, String> {
    use zring_xds::workload::gateway_address::Destination as D;
    let Some(gw) = gw else { return Ok(None) };
    let hbone_mtls_port = u16::try_from(gw.hbone_mtls_port)
        .map_err(|_| format!("waypoint port {} is above 65535", gw.hbone_mtls_port))?;
    let destination = match gw.destination {
        Some(D::Address(a)) => GatewayDestination::Address(NetworkAddress {
            network: a.network,
            ip: super::xds::ip_from(&a.address)?,
        }),
        Some(D::Hostname(h)) => GatewayDestination::Hostname {
            namespace: h.namespace,
            hostname: h.hostname,
        },
        None => return Err("waypoint has neither an address nor a hostname".into()),
    };
    Ok(Some(GatewayAddress {
        destination,
        hbone_mtls_port,
    }))
}

/// The xDS form of `gw` (the test control plane's encoder).
pub(super) fn to_xds(gw: &GatewayAddress) -> zring_xds::workload::GatewayAddress {
    use zring_xds::workload::{gateway_address::Destination as D, NamespacedHostname};
    let destination = match &gw.destination {
        GatewayDestination::Address(a) => D::Address(zring_xds::workload::NetworkAddress {
            network: a.network.clone(),
            address: match a.ip {
                IpAddr::V4(v) => v.octets().to_vec(),
                IpAddr::V6(v) => v.octets().to_vec(),
            },
        }),
        GatewayDestination::Hostname {
            namespace,
            hostname,
        } => D::Hostname(NamespacedHostname {
            namespace: namespace.clone(),
            hostname: hostname.clone(),
        }),
    };
    zring_xds::workload::GatewayAddress {
        destination: Some(destination),
        hbone_mtls_port: gw.hbone_mtls_port.into(),
    }
}

#[cfg(test)]
#[path = "waypoint_tests.rs"]
mod tests;
