//! The articles' two-node world (000_… appendices 1-9) as [`Host`]s: our objects from
//! [`render`], the rest (main and local tables) as the appendices print them. Pure; used
//! by the golden unit tests and by the README's example.

use std::net::Ipv4Addr;

use super::{Host, World};
use crate::input::{NodeInput, ZtunnelInput};
use crate::model::{PolicyRule, RouteSpec, RuleTarget, Scope, TunnelKind, MAIN_TABLE};
use crate::render::{self, Side};

const fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

/// Client pod, ztunnel A, node A's gateway and eth0.
pub(crate) const CLIENT: Ipv4Addr = ip(10, 244, 1, 4);
pub(crate) const ZT_A: Ipv4Addr = ip(10, 244, 1, 2);
pub(crate) const GW_A: Ipv4Addr = ip(10, 244, 1, 1);
const ETH_A: Ipv4Addr = ip(172, 18, 0, 2);
/// Server pod, ztunnel B, node B's gateway and eth0.
pub(crate) const SERVER: Ipv4Addr = ip(10, 244, 2, 5);
pub(crate) const ZT_B: Ipv4Addr = ip(10, 244, 2, 3);
const GW_B: Ipv4Addr = ip(10, 244, 2, 1);
const ETH_B: Ipv4Addr = ip(172, 18, 0, 3);

/// One side of the articles' example: addresses and the veths of its pods.
struct NodeFacts {
    label: char,
    gw: Ipv4Addr,
    zt: Ipv4Addr,
    eth: Ipv4Addr,
    zt_veth: &'static str,
    pod: (Ipv4Addr, &'static str),
    peer: (Ipv4Addr, Ipv4Addr),
}

const A: NodeFacts = NodeFacts {
    label: 'A',
    gw: GW_A,
    zt: ZT_A,
    eth: ETH_A,
    zt_veth: "veth08baa690",
    pod: (CLIENT, "veth7a81c12c"),
    peer: (ip(10, 244, 2, 0), ETH_B),
};
const B: NodeFacts = NodeFacts {
    label: 'B',
    gw: GW_B,
    zt: ZT_B,
    eth: ETH_B,
    zt_veth: "veth07706a33",
    pod: (SERVER, "veth935904a0"),
    peer: (ip(10, 244, 1, 0), ETH_A),
};

fn base_rules() -> Vec<PolicyRule> {
    [(0, 255), (32766, MAIN_TABLE), (32767, 253)]
        .map(|(priority, t)| PolicyRule {
            priority,
            fwmark: None,
            target: RuleTarget::Lookup(t),
        })
        .to_vec()
}

fn local(addr: Ipv4Addr, dev: &str) -> RouteSpec {
    RouteSpec::new(255, addr, 32).dev(dev).local()
}

fn link(t: u32, dst: Ipv4Addr, prefix: u8, dev: &str) -> RouteSpec {
    RouteSpec::new(t, dst, prefix).dev(dev).scope(Scope::Link)
}

fn node_host(f: &NodeFacts, enrolled: &[Ipv4Addr]) -> Host {
    let input = NodeInput {
        gateway_ip: f.gw,
        ztunnel_ip: f.zt,
        ztunnel_veth: f.zt_veth.into(),
        pod_ips: enrolled.to_vec(),
        tunnel: TunnelKind::Geneve,
    };
    let main = MAIN_TABLE;
    let routes = vec![
        local(f.gw, f.zt_veth),
        local(f.gw, f.pod.1),
        local(f.eth, "eth0"),
        local(render::NODE_IN_ADDR, "istioin"),
        local(render::NODE_OUT_ADDR, "istioout"),
        link(main, f.zt, 32, f.zt_veth).scope(Scope::Host),
        link(main, f.pod.0, 32, f.pod.1).scope(Scope::Host),
        RouteSpec::new(main, f.peer.0, 24).via(f.peer.1).dev("eth0"),
        link(main, ip(172, 18, 0, 0), 16, "eth0").src(f.eth),
    ];
    let empty = Host {
        label: format!("node {}", f.label),
        netns: None,
        side: Side::Node,
        rules: base_rules(),
        foreign_rules: vec![],
        routes,
        iptables: vec![],
        ipsets: vec![],
        tunnels: vec![],
    };
    empty.desired(&render::node(&input, TunnelKind::Geneve))
}

fn ztunnel_host(f: &NodeFacts) -> Host {
    let input = ZtunnelInput {
        ztunnel_ip: f.zt,
        gateway_ip: f.gw,
        eth0: "eth0".into(),
        tunnel: TunnelKind::Geneve,
    };
    let main = MAIN_TABLE;
    let subnet = Ipv4Addr::from(u32::from(f.gw) & 0xffff_ff00);
    let routes = vec![
        local(f.zt, "eth0"),
        local(render::POD_IN_ADDR, "pistioin"),
        local(render::POD_OUT_ADDR, "pistioout"),
        RouteSpec::new(main, Ipv4Addr::UNSPECIFIED, 0)
            .via(f.gw)
            .dev("eth0"),
        RouteSpec::new(main, subnet, 24)
            .via(f.gw)
            .dev("eth0")
            .src(f.zt),
        link(main, f.gw, 32, "eth0").src(f.zt),
    ];
    let empty = Host {
        label: format!("ztunnel {}", f.label),
        netns: None,
        side: Side::Ztunnel,
        rules: base_rules(),
        foreign_rules: vec![],
        routes,
        iptables: vec![],
        ipsets: vec![],
        tunnels: vec![],
    };
    empty.desired(&render::ztunnel(&input, TunnelKind::Geneve))
}

/// Node A (client 10.244.1.4 enrolled), ztunnel A, node B (server 10.244.2.5 enrolled),
/// ztunnel B, exactly as in the articles.
pub(crate) fn articles() -> World {
    articles_with(&[CLIENT], &[SERVER])
}

/// The same world with other enrolled pods per node.
pub(crate) fn articles_with(on_a: &[Ipv4Addr], on_b: &[Ipv4Addr]) -> World {
    World {
        hosts: vec![
            node_host(&A, on_a),
            ztunnel_host(&A),
            node_host(&B, on_b),
            ztunnel_host(&B),
        ],
    }
}
