//! Pure rendering of the desired state from [`NodeInput`] / [`ZtunnelInput`]: every object of
//! the articles' appendices 1-5, in their order, and `show` in their notation.

use std::net::Ipv4Addr;

use crate::input::{NodeInput, ZtunnelInput};
use crate::model::{
    IptRule, PolicyRule, RouteSpec, RuleTarget, Scope, Sysctl, Table, TunnelKind, TunnelSpec,
};

/// The ipset of enrolled pods (hash:ip, family inet, hashsize 1024, maxelem 65536).
pub const IPSET_NAME: &str = "ztunnel-pods-ips";
/// TCP from an enrolled pod: route to ztunnel's outbound through table 101; nat ACCEPTs it.
pub const MARK_OUTBOUND: u32 = 0x100;
/// Tunnelled or ztunnel-owned: skip our tables (`goto 32766`).
pub const MARK_SKIP: u32 = 0x200;
/// From ztunnel's veth with a pod's source IP (ztunnel speaking as a pod); saved in conntrack.
pub const MARK_ZT_AS_POD: u32 = 0x210;
/// Ztunnel's own traffic and UDP; saved in conntrack.
pub const MARK_ZT_OWN: u32 = 0x220;
/// Later packets of a 0x210 connection: straight to ztunnel's veth via table 102.
pub const MARK_TO_ZT_VETH: u32 = 0x40;
/// TPROXY mark in the ztunnel pod (mask 0xfff): deliver locally via table 100.
pub const MARK_TPROXY: u32 = 0x400;
/// Non-tunnelled TCP entering the ztunnel pod's eth0 for a foreign IP (mask 0xfff).
pub const MARK_POD_LOCAL: u32 = 0x4d3;
/// Per-pod inbound routes (node) / `local default` (ztunnel pod).
pub const TABLE_INBOUND: u32 = 100;
/// Outbound: default via istioout.
pub const TABLE_OUTBOUND: u32 = 101;
/// Return path of ztunnel-as-pod connections: default via ztunnel's veth.
pub const TABLE_ZT_VETH: u32 = 102;
/// The rule priority after ours: main table.
pub const PRIO_MAIN: u32 = 32766;
/// Inbound tunnel: node istioin ↔ pod pistioin.
pub const VNI_IN: u32 = 1000;
/// Outbound tunnel: node istioout ↔ pod pistioout.
pub const VNI_OUT: u32 = 1001;
/// Node end of the inbound /30.
pub const NODE_IN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 126, 1);
/// Pod end of the inbound /30.
pub const POD_IN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 126, 2);
/// Node end of the outbound /30.
pub const NODE_OUT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 1);
/// Pod end of the outbound /30.
pub const POD_OUT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 2);
/// Ztunnel ports: HBONE inbound, outbound capture, plain-text inbound capture.
pub const PORTS: (u16, u16, u16) = (15008, 15001, 15006);

/// Which side a desired state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Host netns of a node.
    Node,
    /// The ztunnel pod's netns.
    Ztunnel,
}

/// Every object one side owns, in the articles' order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Node or ztunnel pod.
    pub side: Side,
    /// Tunnel encapsulation rendered (after any fallback).
    pub kind: TunnelKind,
    /// The ipset and its members (node only).
    pub ipset: Option<(String, Vec<Ipv4Addr>)>,
    /// Tunnel ends with their addresses.
    pub tunnels: Vec<TunnelSpec>,
    /// Chains we own (declared, flushed on apply, deleted on down).
    pub chains: Vec<(Table, String)>,
    /// iptables rules, mangle in appendix order then nat.
    pub iptables: Vec<IptRule>,
    /// Policy rules.
    pub rules: Vec<PolicyRule>,
    /// Routing tables whose whole content is ours.
    pub tables: Vec<u32>,
    /// Routes in those tables.
    pub routes: Vec<RouteSpec>,
    /// Sysctls to set.
    pub sysctls: Vec<Sysctl>,
}

impl Desired {
    /// The names of the chains we own in `table`.
    pub fn chains_of(&self, table: Table) -> Vec<String> {
        self.chains
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

fn ipt(table: Table, chain: &str, spec: String) -> IptRule {
    IptRule {
        table,
        chain: chain.to_string(),
        spec,
    }
}

fn mark(m: u32) -> String {
    format!("--set-xmark {m:#x}/{m:#x}")
}

/// Mangle `ztunnel-PREROUTING` (appendix 1, first 15 lines).
fn node_prerouting(i: &NodeInput, kind: TunnelKind) -> Vec<String> {
    let (veth, zt) = (&i.ztunnel_veth, i.ztunnel_ip);
    let (skip, m40, m210, m220) = (MARK_SKIP, MARK_TO_ZT_VETH, MARK_ZT_AS_POD, MARK_ZT_OWN);
    vec![
        format!("-i istioin -j MARK {}", mark(skip)),
        "-i istioin -j RETURN".into(),
        format!("-i istioout -j MARK {}", mark(skip)),
        "-i istioout -j RETURN".into(),
        format!("-p udp -m udp --dport {} -j RETURN", kind.udp_port()),
        format!(
            "-m connmark --mark {m220:#x}/{m220:#x} -j MARK {}",
            mark(skip)
        ),
        format!("-m mark --mark {skip:#x}/{skip:#x} -j RETURN"),
        format!(
            "! -i {veth} -m connmark --mark {m210:#x}/{m210:#x} -j MARK {}",
            mark(m40)
        ),
        format!("-m mark --mark {m40:#x}/{m40:#x} -j RETURN"),
        format!("! -s {zt}/32 -i {veth} -j MARK {}", mark(m210)),
        format!("-m mark --mark {skip:#x}/{skip:#x} -j RETURN"),
        format!("-i {veth} -j MARK {}", mark(m220)),
        format!("-p udp -j MARK {}", mark(m220)),
        format!("-m mark --mark {skip:#x}/{skip:#x} -j RETURN"),
        format!(
            "-p tcp -m set --match-set {IPSET_NAME} src -j MARK {}",
            mark(MARK_OUTBOUND)
        ),
    ]
}

fn save_marks() -> Vec<String> {
    [MARK_ZT_OWN, MARK_ZT_AS_POD]
        .iter()
        .map(|m| format!("-m mark --mark {m:#x}/{m:#x} -j CONNMARK --save-mark --nfmask {m:#x} --ctmask {m:#x}"))
        .collect()
}

/// The node's iptables rules: mangle exactly as appendix 1 (order included), then nat.
fn node_iptables(i: &NodeInput, kind: TunnelKind) -> Vec<IptRule> {
    let m = Table::Mangle;
    let mut v: Vec<IptRule> = node_prerouting(i, kind)
        .into_iter()
        .map(|s| ipt(m, "ztunnel-PREROUTING", s))
        .collect();
    v.push(ipt(m, "PREROUTING", "-j ztunnel-PREROUTING".into()));
    v.push(ipt(m, "POSTROUTING", "-j ztunnel-POSTROUTING".into()));
    let out = format!(
        "-s {}/32 -p tcp -m owner --socket-exists -m set --match-set {IPSET_NAME} dst -j MARK --set-xmark {MARK_ZT_OWN:#x}/0xffffffff",
        i.gateway_ip
    );
    v.push(ipt(m, "ztunnel-OUTPUT", out));
    v.push(ipt(m, "OUTPUT", "-j ztunnel-OUTPUT".into()));
    for chain in ["INPUT", "FORWARD"] {
        let ours = format!("ztunnel-{chain}");
        v.extend(save_marks().into_iter().map(|s| ipt(m, &ours, s)));
        v.push(ipt(m, chain, format!("-j {ours}")));
    }
    let accept = format!("-m mark --mark {MARK_OUTBOUND:#x}/{MARK_OUTBOUND:#x} -j ACCEPT");
    for chain in ["PREROUTING", "POSTROUTING"] {
        v.push(ipt(Table::Nat, chain, format!("-j ztunnel-{chain}")));
        v.push(ipt(Table::Nat, &format!("ztunnel-{chain}"), accept.clone()));
    }
    v
}

fn node_chains() -> Vec<(Table, String)> {
    let mangle = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        .map(|c| (Table::Mangle, format!("ztunnel-{c}")));
    let nat = ["PREROUTING", "POSTROUTING"].map(|c| (Table::Nat, format!("ztunnel-{c}")));
    mangle.into_iter().chain(nat).collect()
}

fn fw(priority: u32, m: u32, mask: u32, target: RuleTarget) -> PolicyRule {
    PolicyRule {
        priority,
        fwmark: Some((m, mask)),
        target,
    }
}

/// The per-pod inbound route: `POD via 192.168.126.2 dev istioin src GATEWAY` (table 100).
pub fn pod_route(gateway: Ipv4Addr, pod: Ipv4Addr) -> RouteSpec {
    RouteSpec::new(TABLE_INBOUND, pod, 32)
        .via(POD_IN_ADDR)
        .dev("istioin")
        .src(gateway)
}

fn node_routes(i: &NodeInput) -> Vec<RouteSpec> {
    let zt_host = |t| {
        RouteSpec::new(t, i.ztunnel_ip, 32)
            .dev(&i.ztunnel_veth)
            .scope(Scope::Link)
    };
    let any = Ipv4Addr::UNSPECIFIED;
    let mut v = vec![
        RouteSpec::new(TABLE_OUTBOUND, any, 0)
            .via(POD_OUT_ADDR)
            .dev("istioout"),
        zt_host(TABLE_OUTBOUND),
        RouteSpec::new(TABLE_ZT_VETH, any, 0)
            .via(i.ztunnel_ip)
            .dev(&i.ztunnel_veth)
            .onlink(),
        zt_host(TABLE_ZT_VETH),
        zt_host(TABLE_INBOUND),
    ];
    v.extend(i.pod_ips.iter().map(|p| pod_route(i.gateway_ip, *p)));
    v
}

fn rp_filter(dev: &str, value: &str) -> Sysctl {
    Sysctl::new(format!("net.ipv4.conf.{dev}.rp_filter"), value)
}

/// The node's desired state, with `kind` as the effective tunnel encapsulation.
pub fn node(i: &NodeInput, kind: TunnelKind) -> Desired {
    let tunnel = |name: &str, vni, addr| TunnelSpec {
        name: name.into(),
        vni,
        remote: i.ztunnel_ip,
        addr,
        prefix: 30,
    };
    Desired {
        side: Side::Node,
        kind,
        ipset: Some((IPSET_NAME.to_string(), i.pod_ips.clone())),
        tunnels: vec![
            tunnel("istioin", VNI_IN, NODE_IN_ADDR),
            tunnel("istioout", VNI_OUT, NODE_OUT_ADDR),
        ],
        chains: node_chains(),
        iptables: node_iptables(i, kind),
        rules: vec![
            fw(100, MARK_SKIP, MARK_SKIP, RuleTarget::Goto(PRIO_MAIN)),
            fw(
                101,
                MARK_OUTBOUND,
                MARK_OUTBOUND,
                RuleTarget::Lookup(TABLE_OUTBOUND),
            ),
            fw(
                102,
                MARK_TO_ZT_VETH,
                MARK_TO_ZT_VETH,
                RuleTarget::Lookup(TABLE_ZT_VETH),
            ),
            PolicyRule {
                priority: 103,
                fwmark: None,
                target: RuleTarget::Lookup(TABLE_INBOUND),
            },
        ],
        tables: vec![TABLE_INBOUND, TABLE_OUTBOUND, TABLE_ZT_VETH],
        routes: node_routes(i),
        sysctls: vec![
            Sysctl::new("net.ipv4.ip_forward".into(), "1"),
            // Off, not loose, on the ztunnel veth: a reply from a service VIP arrives there
            // and a node without a route for the service CIDR has no reverse path for it.
            // The kernel uses max(all, device), so `all` must be 0 too (`up` keeps every
            // other device's effective value when it lowers `all`).
            rp_filter("all", "0"),
            rp_filter(&i.ztunnel_veth, "0"),
            rp_filter("istioin", "2"),
            rp_filter("istioout", "2"),
        ],
    }
}

/// The ztunnel pod's mangle PREROUTING rules (appendix 4).
fn ztunnel_iptables(i: &ZtunnelInput) -> Vec<IptRule> {
    let t = |port: u16| {
        format!("-j TPROXY --on-port {port} --on-ip 127.0.0.1 --tproxy-mark {MARK_TPROXY:#x}/0xfff")
    };
    let (hbone, outbound, inbound) = PORTS;
    [
        format!("-i pistioin -p tcp -m tcp --dport {hbone} {}", t(hbone)),
        format!("-i pistioout -p tcp {}", t(outbound)),
        format!("-i pistioin -p tcp {}", t(inbound)),
        format!(
            "! -d {}/32 -i {} -p tcp -j MARK --set-xmark {MARK_POD_LOCAL:#x}/0xfff",
            i.ztunnel_ip, i.eth0
        ),
    ]
    .into_iter()
    .map(|s| ipt(Table::Mangle, "PREROUTING", s))
    .collect()
}

/// The ztunnel pod's desired state, with `kind` as the effective tunnel encapsulation.
pub fn ztunnel(i: &ZtunnelInput, kind: TunnelKind) -> Desired {
    let tunnel = |name: &str, vni, addr| TunnelSpec {
        name: name.into(),
        vni,
        remote: i.gateway_ip,
        addr,
        prefix: 30,
    };
    Desired {
        side: Side::Ztunnel,
        kind,
        ipset: None,
        tunnels: vec![
            tunnel("pistioin", VNI_IN, POD_IN_ADDR),
            tunnel("pistioout", VNI_OUT, POD_OUT_ADDR),
        ],
        chains: Vec::new(),
        iptables: ztunnel_iptables(i),
        rules: vec![
            fw(20000, MARK_TPROXY, 0xfff, RuleTarget::Lookup(TABLE_INBOUND)),
            fw(
                20003,
                MARK_POD_LOCAL,
                0xfff,
                RuleTarget::Lookup(TABLE_INBOUND),
            ),
        ],
        tables: vec![TABLE_INBOUND],
        routes: vec![RouteSpec::new(TABLE_INBOUND, Ipv4Addr::UNSPECIFIED, 0)
            .dev("lo")
            .local()],
        sysctls: vec![rp_filter("pistioin", "2"), rp_filter("pistioout", "2")],
    }
}

mod show;

#[cfg(test)]
mod tests;
