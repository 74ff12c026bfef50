//! The articles' two-node topology in `zrt-*` namespaces, plumbed for real.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use plumbing::netns::{self, NetnsGuard};
use plumbing::render::Side;
use plumbing::trace::HostSpec;
use plumbing::{NodeInput, RouteSpec, Scope, TunnelKind, ZtunnelInput};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);

/// One node of the articles: gateway, ztunnel IP, eth0 address, its pod, the peer's CIDR.
pub struct Facts {
    pub gw: Ipv4Addr,
    pub zt: Ipv4Addr,
    pub eth: Ipv4Addr,
    pub pod: Ipv4Addr,
    pub peer: (Ipv4Addr, Ipv4Addr),
}

pub const A: Facts = Facts {
    gw: Ipv4Addr::new(10, 244, 1, 1),
    zt: Ipv4Addr::new(10, 244, 1, 2),
    eth: Ipv4Addr::new(172, 18, 0, 2),
    pod: CLIENT,
    peer: (Ipv4Addr::new(10, 244, 2, 0), Ipv4Addr::new(172, 18, 0, 3)),
};
pub const B: Facts = Facts {
    gw: Ipv4Addr::new(10, 244, 2, 1),
    zt: Ipv4Addr::new(10, 244, 2, 3),
    eth: Ipv4Addr::new(172, 18, 0, 3),
    pod: SERVER,
    peer: (Ipv4Addr::new(10, 244, 1, 0), Ipv4Addr::new(172, 18, 0, 2)),
};

pub static N: AtomicU32 = AtomicU32::new(0);

pub fn name(tag: &str) -> String {
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("zrt-{tag}-{}-{n}", std::process::id())
}

/// Node, ztunnel pod and workload pod namespaces of one node (deleted on drop).
pub struct Node {
    pub node: NetnsGuard,
    pub zt: NetnsGuard,
    pub pod: NetnsGuard,
}

/// A pod behind a point-to-point veth (pod /32, default via the gateway onlink).
pub fn pod(node: &str, pod: &str, dev: &str, gw: Ipv4Addr, ip: Ipv4Addr) {
    netns::veth_pair(Some(node), dev, "eth0", Some(pod)).unwrap();
    netns::add_address(Some(node), dev, gw, 32).unwrap();
    netns::add_address(Some(pod), "eth0", ip, 32).unwrap();
    netns::set_link_up(Some(node), dev).unwrap();
    netns::set_link_up(Some(pod), "eth0").unwrap();
    let host = RouteSpec::new(254, ip, 32).dev(dev).scope(Scope::Link);
    netns::add_route(Some(node), &host).unwrap();
    let default = RouteSpec::new(254, Ipv4Addr::UNSPECIFIED, 0)
        .via(gw)
        .dev("eth0")
        .onlink();
    netns::add_route(Some(pod), &default).unwrap();
    let key = format!("net.ipv4.conf.{dev}.rp_filter");
    netns::set_sysctl(Some(node), &key, "2").unwrap();
}

pub fn node(tag: &str, f: &Facts) -> Node {
    let n = Node {
        node: NetnsGuard::new(&name(tag)).unwrap(),
        zt: NetnsGuard::new(&name(&format!("{tag}z"))).unwrap(),
        pod: NetnsGuard::new(&name(&format!("{tag}p"))).unwrap(),
    };
    pod(n.node.name(), n.zt.name(), "vzt", f.gw, f.zt);
    pod(n.node.name(), n.pod.name(), "vpod", f.gw, f.pod);
    n
}

/// The node link (eth0 ↔ eth0), addresses, routes to the other node's pod CIDR, default.
pub fn link(a: &Node, b: &Node) {
    let (na, nb) = (a.node.name(), b.node.name());
    netns::veth_pair(Some(na), "eth0", "zrt-tmp", Some(nb)).unwrap();
    netns::rename_link(Some(nb), "zrt-tmp", "eth0").unwrap();
    for (ns, f) in [(na, &A), (nb, &B)] {
        netns::add_address(Some(ns), "eth0", f.eth, 16).unwrap();
        netns::set_link_up(Some(ns), "eth0").unwrap();
        let r = RouteSpec::new(254, f.peer.0, 24).via(f.peer.1).dev("eth0");
        netns::add_route(Some(ns), &r).unwrap();
        // The nodes' default route (kind's is 172.18.0.1): loose rp_filter needs one for a
        // service VIP's reply source.
        let d = RouteSpec::new(254, Ipv4Addr::UNSPECIFIED, 0)
            .via(f.peer.1)
            .dev("eth0");
        netns::add_route(Some(ns), &d).unwrap();
    }
}

pub fn plumb(n: &Node, f: &Facts) {
    let node_in = NodeInput {
        gateway_ip: f.gw,
        ztunnel_ip: f.zt,
        ztunnel_veth: "vzt".into(),
        pod_ips: vec![f.pod],
        tunnel: TunnelKind::Geneve,
    };
    let zt_in = ZtunnelInput {
        ztunnel_ip: f.zt,
        gateway_ip: f.gw,
        eth0: "eth0".into(),
        tunnel: TunnelKind::Geneve,
    };
    plumbing::node_up(Some(n.node.name()), &node_in).unwrap();
    plumbing::ztunnel_up(Some(n.zt.name()), &zt_in).unwrap();
}

pub fn specs(a: &Node, b: &Node) -> Vec<HostSpec> {
    let s = |label: &str, ns: &NetnsGuard, side| HostSpec {
        label: label.into(),
        netns: Some(ns.name().into()),
        side,
    };
    vec![
        s("node A", &a.node, Side::Node),
        s("ztunnel A", &a.zt, Side::Ztunnel),
        s("node B", &b.node, Side::Node),
        s("ztunnel B", &b.zt, Side::Ztunnel),
    ]
}
