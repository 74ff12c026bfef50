//! The same-node fast path: a connection from a workload on this node (captured on 15001,
//! or over SOCKS5) to another workload on this node is joined directly to its destination
//! instead of through an HBONE tunnel to our own 15008. This process would terminate both
//! ends of that tunnel, so its mTLS and HTTP/2 add no assurance; the destination's
//! authorization policy is evaluated with the source's identity by the inbound path's own
//! evaluation ([`crate::inbound::authorize`]), and both sides are counted and logged as the
//! tunnel's two ends would be. A destination (service or workload) with a waypoint never
//! takes it. `--same-node-fast-path false` turns it off.

use std::net::{IpAddr, SocketAddr};

use monoio::net::TcpStream;

use crate::access_log::Accounting;
use crate::config::{ConnInfo, Decision, Route, Snapshot};
use crate::context::Common;
use crate::error::ProxyError;
use crate::hbone::proto::Rejection;
use crate::identity::Identity;
use crate::runtime::metrics::Labels;

/// A connection the fast path may carry: what its inbound side needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direct {
    /// The destination pod's HBONE address, where the tunnel would have gone.
    pub hbone_addr: SocketAddr,
    /// The destination pod's IP and target port (the CONNECT authority).
    pub authority: SocketAddr,
    /// The source workload's identity, as its client certificate would carry it.
    pub src_identity: Identity,
}

/// Whether `route`, asked for by the client at `src`, joins two workloads on this node
/// with no waypoint between them. Pure.
///
/// A route through a waypoint dials the waypoint's address, never the destination's own
/// HBONE address, so it fails the first check; the destination's own waypoint (workload
/// or service) is checked again so that no reading of the route can bypass one.
pub fn eligible(snap: &Snapshot, src: IpAddr, route: &Route, hbone_port: u16) -> Option<Direct> {
    let Route::Hbone {
        hbone_addr,
        authority,
        service,
        ..
    } = route
    else {
        return None;
    };
    if *hbone_addr != SocketAddr::new(authority.ip(), hbone_port) {
        return None;
    }
    if !snap.is_local(src) || !snap.is_local(authority.ip()) {
        return None;
    }
    let source = snap.workload_by_ip(src)?;
    let dst = snap.workload_by_ip(authority.ip())?;
    let service_waypoint = service
        .as_deref()
        .and_then(|s| snap.service_by_hostname(s))
        .is_some_and(|s| s.waypoint.is_some());
    if dst.waypoint.is_some() || service_waypoint {
        return None;
    }
    Some(Direct {
        hbone_addr: *hbone_addr,
        authority: *authority,
        src_identity: snap.identity(source),
    })
}

/// The inbound side of a fast-path connection, open until its relay ends.
pub struct Inbound {
    accounting: Accounting,
}

impl Inbound {
    /// Counts the inbound side closed. `moved` is as the outbound side saw it (client
    /// first); the inbound side counts from the destination's end, as its relay would.
    pub fn close(self, moved: Result<crate::relay::Transferred, ProxyError>) {
        let swapped = moved.map(|t| crate::relay::Transferred {
            up: t.down,
            down: t.up,
        });
        self.accounting.close(&swapped);
    }
}

/// Opens the inbound side of `direct` for the client at `peer`: counts it, authorizes it
/// as inbound HBONE would, and connects the destination (leaving from `source`). A
/// failure is recorded on the inbound side and returned as the tunnel's client would see
/// it (the status the inbound side would have answered).
pub async fn connect(
    common: &Common,
    direct: &Direct,
    peer: SocketAddr,
    source: Option<IpAddr>,
) -> Result<(TcpStream, Inbound), ProxyError> {
    let accounting = {
        let state = common.state();
        let snap = &state.snapshot;
        let labels = Labels::inbound(
            snap,
            peer.ip(),
            Some(&direct.src_identity),
            direct.authority.ip(),
        );
        let ends = (peer, direct.hbone_addr);
        Accounting::open(snap, &common.metrics, labels, ends, Some(direct.authority)).fast_path()
    };
    common.metrics.fast_path();
    let refused = |status| ProxyError::Status {
        addr: direct.hbone_addr,
        status,
    };
    if let Err(rejection) = admit(common, direct, peer) {
        let status = rejection.status();
        accounting.close(&Err(ProxyError::Rejected {
            local: direct.hbone_addr,
            rejection,
        }));
        return Err(refused(status));
    }
    match common.connect_upstream(direct.authority, source).await {
        Ok(upstream) => Ok((upstream, Inbound { accounting })),
        Err(e) => {
            accounting.close(&Err(e));
            Err(refused(http::StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

/// The destination's policy for the source identity, by the inbound path's evaluation.
fn admit(common: &Common, direct: &Direct, peer: SocketAddr) -> Result<(), Rejection> {
    let state = common.state();
    let snap = &state.snapshot;
    let workload = snap
        .workload_by_ip(direct.authority.ip())
        .ok_or(Rejection::UnknownWorkload(direct.authority.ip()))?;
    let info = ConnInfo {
        src_ip: peer.ip(),
        src_identity: Some(direct.src_identity.clone()),
        dst: direct.authority,
        dst_workload: workload,
    };
    match crate::inbound::authorize(&common.metrics, snap, &info) {
        Decision::Allow => Ok(()),
        Decision::Deny { policy } => Err(Rejection::Denied(policy)),
    }
}

#[cfg(test)]
#[path = "fast_path_tests.rs"]
mod tests;
