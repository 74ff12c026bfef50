//! One packet through one host: the netfilter hooks (mangle, then nat for a new
//! connection), the policy rules and the table chosen, and what happens next (forwarded,
//! encapsulated, decapsulated, captured by TPROXY, delivered to a socket). Pure.

use std::net::Ipv4Addr;

use serde::Serialize;

use super::chain::walk;
use super::route::{answer, decide, rule_text, table_name};
use super::{Answer, Host, Lookup, Packet, Proto};
use crate::model::{PolicyRule, RouteSpec, Table};

/// One iptables rule that matched, as `iptables-save` prints it, and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matched {
    /// `mangle` / `nat`.
    pub table: &'static str,
    /// `-A CHAIN SPEC`.
    pub line: String,
    /// Its number in the chain (1-based, as `iptables -L --line-numbers` counts; the same
    /// line can occur several times, e.g. the three `0x200 -j RETURN` of ztunnel-PREROUTING).
    pub position: usize,
    /// `mark 0x0 -> 0x100`, `connmark 0x0 -> 0x210`, `RETURN`, `TPROXY to :15001`, ...
    pub effect: String,
}

/// What the host does with the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// Routed out of `dev` toward `next` (the gateway, or the destination itself).
    Forward { dev: String, next: Ipv4Addr },
    /// Sent into tunnel `dev`: a UDP packet to `remote:port` carries it.
    Encap {
        dev: String,
        tunnel: &'static str,
        vni: u32,
        remote: Ipv4Addr,
        port: u16,
    },
    /// A tunnel packet delivered locally: `dev` decapsulates it.
    Decap { dev: String, tunnel: &'static str },
    /// TPROXY'd to the listener on `port` (mark 0x400 → local table).
    Captured { port: u16 },
    /// Delivered locally to an existing socket (a captured connection's later packets).
    Socket,
    /// No route.
    Unreachable,
}

/// One host's handling of one packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Host label.
    pub host: String,
    /// The packet as it entered (iif None = sent by a local socket).
    pub packet: Packet,
    /// Every iptables rule that matched, in evaluation order.
    pub matched: Vec<Matched>,
    /// Rules on the path the evaluator could not model.
    pub not_evaluated: Vec<String>,
    /// skb mark after the chains.
    pub mark: u32,
    /// Connection mark after the chains.
    pub connmark: u32,
    /// The policy rule that chose the table, as `ip rule` prints it.
    pub policy: Option<String>,
    /// `table N: ROUTE`.
    pub route: Option<String>,
    /// The lookup, repeatable with `ip route get`.
    pub lookup: Lookup,
    /// What happened next.
    pub outcome: Outcome,
    /// Object keys this step depended on (for drift attribution).
    #[serde(skip)]
    pub used: Vec<String>,
}

/// The packet arriving on `pkt.iif` of `h` (PREROUTING, routing, INPUT or FORWARD).
pub(crate) fn arrive(h: &Host, pkt: Packet, new_conn: bool) -> Step {
    let mut w = walk(h, pkt.clone(), false);
    w.hook("PREROUTING", new_conn);
    let (policy, route) = decide(h, w.pkt.dst, w.pkt.mark);
    let ans = answer(route.as_ref(), w.pkt.dst);
    let rmark = w.pkt.mark;
    let hook = if matches!(ans, Answer::Local { .. }) {
        "INPUT"
    } else {
        "FORWARD"
    };
    w.chain(Table::Mangle, hook);
    if hook == "FORWARD" {
        w.hook("POSTROUTING", new_conn);
    }
    let outcome = outcome(h, &w, route.as_ref());
    let at = (Some(w.pkt.src), rmark);
    finish(w, pkt, (policy, route, ans), at, outcome)
}

/// The packet sent by a local socket of `h` (routing, OUTPUT, reroute on a new mark, POSTROUTING).
pub(crate) fn originate(h: &Host, pkt: Packet, new_conn: bool, socket: bool) -> Step {
    let mut w = walk(h, pkt.clone(), socket);
    let (mut policy, mut route) = decide(h, w.pkt.dst, w.pkt.mark);
    let before = w.pkt.mark;
    w.hook("OUTPUT", new_conn);
    if w.pkt.mark != before {
        (policy, route) = decide(h, w.pkt.dst, w.pkt.mark);
    }
    let rmark = w.pkt.mark;
    w.hook("POSTROUTING", new_conn);
    let ans = answer(route.as_ref(), w.pkt.dst);
    let outcome = outcome(h, &w, route.as_ref());
    let at = (h.owns(pkt.src).then_some(pkt.src), rmark);
    finish(w, pkt, (policy, route, ans), at, outcome)
}

fn outcome(h: &Host, w: &super::chain::Walk<'_>, route: Option<&RouteSpec>) -> Outcome {
    let Some(r) = route else {
        return Outcome::Unreachable;
    };
    let p = &w.pkt;
    if r.local {
        return match (w.tproxy, decap(h, p)) {
            (Some(port), _) => Outcome::Captured { port },
            (None, Some(o)) => o,
            (None, None) => Outcome::Socket,
        };
    }
    let dev = r.dev.clone().unwrap_or_default();
    match h.tunnel(&dev) {
        Some(t) => Outcome::Encap {
            dev,
            tunnel: t.kind.name(),
            vni: t.spec.vni,
            remote: t.spec.remote,
            port: t.kind.udp_port(),
        },
        None => Outcome::Forward {
            next: r.gateway.unwrap_or(p.dst),
            dev,
        },
    }
}

/// A UDP packet to a tunnel port of `h`: the tunnel whose remote sent it decapsulates it.
fn decap(h: &Host, p: &Packet) -> Option<Outcome> {
    if p.proto != Proto::Udp {
        return None;
    }
    h.tunnels
        .iter()
        .find(|t| Some(t.kind.udp_port()) == p.dport && Some(t.spec.vni) == p.vni)
        .map(|t| Outcome::Decap {
            dev: t.spec.name.clone(),
            tunnel: t.kind.name(),
        })
}

type Decision = (Vec<PolicyRule>, Option<RouteSpec>, Answer);

/// `at`: the source the kernel can be asked about, and the mark at the route lookup.
fn finish(
    w: super::chain::Walk<'_>,
    pkt: Packet,
    (policy, route, answer): Decision,
    (src, mark): (Option<Ipv4Addr>, u32),
    outcome: Outcome,
) -> Step {
    let mut used = w.used;
    used.extend(policy.iter().map(|p| format!("rule {}", p.priority)));
    used.extend(
        route
            .as_ref()
            .map(|r| format!("route table {} {r}", r.table)),
    );
    if let Outcome::Encap { dev, .. } | Outcome::Decap { dev, .. } = &outcome {
        used.push(format!("link {dev}"));
    }
    Step {
        host: w.host.label.clone(),
        lookup: Lookup {
            host: w.host.label.clone(),
            netns: w.host.netns.clone(),
            dst: w.pkt.dst,
            src,
            iif: pkt.iif.clone(),
            mark,
            answer,
        },
        packet: pkt,
        matched: w.matched,
        not_evaluated: w.skipped,
        mark: w.pkt.mark,
        connmark: w.pkt.connmark,
        policy: (!policy.is_empty()).then(|| {
            policy
                .iter()
                .map(rule_text)
                .collect::<Vec<_>>()
                .join(", then ")
        }),
        route: route.map(|r| format!("table {}: {r}", table_name(r.table))),
        outcome,
        used,
    }
}
