//! What a node proxy running in its own pod needs to plumb the node by itself: the facts
//! the kernel can tell ([`detect`]: its host-side veth, its gateway, its own IP), whether
//! a workload IP is a pod of this node ([`pod_on_node`]), and the pods enrolled now
//! ([`enrolled`]), so a restarted proxy adopts what the previous one left.

use std::net::Ipv4Addr;

use rtnetlink::packet_route::link::LinkAttribute;

use crate::model::RouteSpec;
use crate::render::IPSET_NAME;
use crate::{ipset, nl, state, PlumbError};

/// The node-side facts of the proxy's own pod, read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The pod's gateway (its default route's next hop): the node's pod gateway.
    pub gateway_ip: Ipv4Addr,
    /// The pod's own IPv4 address on `eth0`.
    pub ztunnel_ip: Ipv4Addr,
    /// The host-side peer of the pod's `eth0`, named as the host netns names it.
    pub ztunnel_veth: String,
}

const HINT: &str = "run zring in its pod's network namespace, or pass the --plumb-* overrides";

/// Reads [`Detected`] from the caller's netns (`eth0`: its veth) and `host_netns` (where
/// the veth's peer lives).
pub fn detect(host_netns: &str, eth0: &str) -> Result<Detected, PlumbError> {
    let (peer, gateway_ip, ztunnel_ip) = nl::with_handle(None, |h| async move {
        let link = nl::link_by_name(&h, eth0)
            .await?
            .ok_or_else(|| missing(eth0, "the pod's interface is not here"))?;
        let peer = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Link(i) => Some(*i),
            _ => None,
        });
        let peer = peer.ok_or_else(|| missing(eth0, "it is not a veth (no peer ifindex)"))?;
        let ip = nl::addrs(&h, link.header.index)
            .await?
            .first()
            .map(|(ip, _)| *ip)
            .ok_or_else(|| missing(eth0, "it has no IPv4 address"))?;
        let routes = state::routes_in(&h, &[254]).await?;
        let gw = default_gateway(&routes).ok_or_else(|| PlumbError::LinkMissing {
            dev: "default route".into(),
            netns: crate::netns::current_label(),
            hint: "the pod needs a default route via the node's pod gateway",
        })?;
        Ok((peer, gw, ip))
    })?;
    let ztunnel_veth = nl::with_handle(Some(host_netns), |h| async move {
        let names = nl::link_names(&h).await?;
        names.get(&peer).cloned().ok_or_else(|| {
            missing(
                &format!("ifindex {peer}"),
                "the veth's peer is not in this host netns",
            )
        })
    })?;
    Ok(Detected {
        gateway_ip,
        ztunnel_ip,
        ztunnel_veth,
    })
}

fn missing(dev: &str, why: &'static str) -> PlumbError {
    PlumbError::LinkMissing {
        dev: format!("{dev} ({why})"),
        netns: crate::netns::current_label(),
        hint: HINT,
    }
}

/// The next hop of the main table's default route.
fn default_gateway(main: &[RouteSpec]) -> Option<Ipv4Addr> {
    main.iter()
        .find(|r| r.prefix == 0 && !r.local)
        .and_then(|r| r.gateway)
}

/// Why `pod` is not a pod of this node (None: it is): the host's main table must reach it
/// directly on a pod interface — not through a gateway (another node), not locally, not
/// over the capture tunnels.
pub fn pod_on_node(host_netns: Option<&str>, pod: Ipv4Addr) -> Result<Option<String>, PlumbError> {
    nl::with_handle(host_netns, |h| async move {
        let main = state::routes_in(&h, &[254]).await?;
        Ok(placement(&main, pod))
    })
}

/// The pure part of [`pod_on_node`]: the longest-prefix route of `pod` in `main`.
pub(crate) fn placement(main: &[RouteSpec], pod: Ipv4Addr) -> Option<String> {
    let covers = |r: &&RouteSpec| {
        let mask = u32::MAX.checked_shl(32 - u32::from(r.prefix)).unwrap_or(0);
        u32::from(pod) & mask == u32::from(r.dst) & mask
    };
    let Some(best) = main.iter().filter(covers).max_by_key(|r| r.prefix) else {
        return Some("no route to it on this node".into());
    };
    let dev = best.dev.as_deref().unwrap_or("");
    if let Some(gw) = best.gateway {
        Some(format!("routed via {gw} (not a pod of this node)"))
    } else if best.local || dev == "lo" {
        Some("it is an address of the node itself".into())
    } else if dev == "istioin" || dev == "istioout" {
        Some(format!("routed into the capture tunnel {dev}"))
    } else {
        None
    }
}

/// The IPv4 members of `ztunnel-pods-ips` in `host_netns`, sorted (empty without the set).
pub fn enrolled(host_netns: Option<&str>) -> Result<Vec<Ipv4Addr>, PlumbError> {
    crate::netns::run_in(host_netns, || {
        Ok(ipset::list(IPSET_NAME)?.map(|(_, m)| m).unwrap_or_default())
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Scope;

    fn route(dst: &str, prefix: u8, dev: &str) -> RouteSpec {
        RouteSpec::new(254, dst.parse().unwrap(), prefix).dev(dev)
    }

    #[test]
    fn a_pod_is_reached_directly_on_a_pod_interface() {
        let mut via = route("10.244.2.0", 24, "eth0");
        via.gateway = Some("10.0.0.2".parse().unwrap());
        let mut lo = route("10.244.1.1", 32, "lo");
        lo.scope = Scope::Host;
        let main = [
            route("10.244.1.0", 24, "cni0"),
            route("10.244.1.9", 32, "vethabc"),
            via,
            route("10.244.3.7", 32, "istioin"),
            lo,
        ];
        let at = |ip: &str| placement(&main, ip.parse().unwrap());
        assert_eq!(at("10.244.1.4"), None);
        assert_eq!(at("10.244.1.9"), None);
        assert!(at("10.244.2.5").unwrap().contains("via 10.0.0.2"));
        assert!(at("10.244.3.7").unwrap().contains("istioin"));
        assert!(at("10.244.1.1").unwrap().contains("node itself"));
        assert!(at("192.168.0.1").unwrap().contains("no route"));
    }

    #[test]
    fn the_default_route_names_the_gateway() {
        let mut d = route("0.0.0.0", 0, "eth0");
        d.gateway = Some("10.244.1.1".parse().unwrap());
        assert_eq!(
            default_gateway(&[route("10.244.1.0", 24, "eth0"), d]),
            Some("10.244.1.1".parse().unwrap())
        );
        assert_eq!(default_gateway(&[route("10.244.1.0", 24, "eth0")]), None);
    }
}
