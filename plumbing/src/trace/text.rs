//! The operator's rendering of a [`Trace`]: leg, packet, host by host. Pure.

use std::fmt::Write as _;

use super::drift::Divergence;
use super::eval::{Outcome, Step};
use super::flow::{PacketTrace, Trace, Verdict};
use super::Packet;

fn port(p: Option<u16>) -> String {
    p.map_or("*".into(), |p| p.to_string())
}

fn addrs(p: &Packet) -> String {
    format!(
        "{}:{} -> {}:{} {}",
        p.src,
        port(p.sport),
        p.dst,
        port(p.dport),
        p.proto.name()
    )
}

/// The whole trace as text.
pub fn render_text(t: &Trace) -> String {
    let q = &t.query;
    let mut s = format!(
        "trace {} -> {}:{} {}\n",
        q.src,
        q.dst,
        q.port,
        q.proto.name()
    );
    for leg in &t.legs {
        let _ = writeln!(s, "\nleg {}", leg.name);
        for p in &leg.packets {
            packet(&mut s, p);
        }
    }
    for n in &t.notes {
        let _ = writeln!(s, "\nnote: {n}");
    }
    s
}

fn packet(s: &mut String, p: &PacketTrace) {
    let first = p
        .steps
        .first()
        .map(|st| addrs(&st.packet))
        .unwrap_or_default();
    let _ = writeln!(s, "  {} {first}", p.what);
    for st in &p.steps {
        step(s, st);
    }
    let _ = writeln!(s, "    verdict: {}", verdict(&p.verdict));
}

fn step(s: &mut String, st: &Step) {
    let inp = st
        .packet
        .iif
        .as_deref()
        .map_or("a local socket".into(), |d| format!("in {d}"));
    let _ = writeln!(
        s,
        "    {} ({inp}) {}  mark {:#x}->{:#x}  connmark {:#x}->{:#x}",
        st.host,
        addrs(&st.packet),
        st.packet.mark,
        st.mark,
        st.packet.connmark,
        st.connmark
    );
    for m in &st.matched {
        let _ = writeln!(
            s,
            "      {:<6} {}  => {}  [#{}]",
            m.table, m.line, m.effect, m.position
        );
    }
    for n in &st.not_evaluated {
        let _ = writeln!(s, "      not evaluated: {n}");
    }
    let policy = st.policy.as_deref().unwrap_or("(none matched)");
    let _ = writeln!(s, "      rule   {policy}");
    let _ = writeln!(
        s,
        "      route  {}",
        st.route.as_deref().unwrap_or("(none)")
    );
    let _ = writeln!(s, "      =>     {}", outcome(&st.outcome));
}

fn outcome(o: &Outcome) -> String {
    match o {
        Outcome::Forward { dev, next } => format!("out {dev} to {next}"),
        Outcome::Encap {
            dev,
            tunnel,
            vni,
            remote,
            port,
        } => {
            format!("into {dev} ({tunnel} vni {vni}): UDP to {remote}:{port}")
        }
        Outcome::Decap { dev, tunnel } => format!("local UDP: decapsulated by {dev} ({tunnel})"),
        Outcome::Captured { port } => format!("local: TPROXY listener :{port}"),
        Outcome::Socket => "local: delivered to the connection's socket".into(),
        Outcome::Unreachable => "no route: dropped".into(),
    }
}

fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Captured { host, port } => format!("captured by {host} :{port}"),
        Verdict::Socket { host } => format!("delivered to a socket of {host} (no TPROXY)"),
        Verdict::Delivered {
            host,
            dev,
            bypassed,
        } => {
            let how = if *bypassed {
                "bypassed (0x200: main table)"
            } else {
                "passthrough"
            };
            format!("{how}, delivered by {host} out {dev} to the pod")
        }
        Verdict::Left { host, dev, next } => {
            format!("left {host} out {dev} toward {next} (host not traced)")
        }
        Verdict::Unreachable { host } => format!("unreachable on {host}"),
    }
}

/// The drift section: every packet whose path the drift changed, and why.
pub fn render_divergences(divs: &[Divergence], checked: bool) -> String {
    if !checked {
        return "\ndrift: not checked (pass --file node.yaml, or --gateway-ip/--ztunnel-ip/--ztunnel-veth/--pod-ip, to compare with the desired state)\n".into();
    }
    if divs.is_empty() {
        return "\ndrift: none on this path (live = desired)\n".into();
    }
    let mut s = format!("\ndrift that changes the path ({} packets):\n", divs.len());
    for d in divs {
        let want = d.desired.as_ref().map_or("no such packet".into(), verdict);
        let _ = writeln!(
            s,
            "  leg {}, {}, from {}: now {}; desired {}",
            d.leg,
            d.packet,
            d.at,
            verdict(&d.live),
            want
        );
        for b in &d.because {
            let _ = writeln!(s, "    because {b}");
        }
        if d.because.is_empty() {
            let _ = writeln!(
                s,
                "    (no drifted object on its own path: follows from a divergence above)"
            );
        }
    }
    s
}
