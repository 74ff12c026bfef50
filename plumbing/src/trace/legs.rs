//! Which legs a flow has, from where each packet starts: client → ztunnel A (captured by
//! 15001), ztunnel A → ztunnel B (HBONE to the pod's :15008, spoofing the client), ztunnel
//! B → server; or a single bypassed/passthrough leg. Pure.

use std::net::Ipv4Addr;

use super::flow::{Leg, Query, Run, Start, Trace, Verdict, HBONE, OUTBOUND};
use super::{Packet, Proto, World};

/// One connection to trace: its name, its key in conntrack, both ends and where each
/// end's packets start.
struct Conn {
    name: String,
    key: &'static str,
    from: (Ipv4Addr, Start),
    to: (Ipv4Addr, u16),
}

/// Traces `q` across `world` (`world.hosts[0]` is the source's node).
pub fn trace(world: &World, q: &Query) -> Trace {
    let mut run = Run::new(world);
    let mut notes = Vec::new();
    let first = Conn {
        name: format!("1 client -> {}:{}", q.dst, q.port),
        key: "1",
        from: (q.src, source_start(world, q.src)),
        to: (q.dst, q.port),
    };
    let (leg, verdict) = leg(&mut run, q, &first);
    let mut legs = vec![leg];
    if let Verdict::Captured { host, port } = verdict {
        legs.extend(after_capture(&mut run, q, (&host, port), &mut notes));
    }
    notes.extend(legs.iter().flat_map(asymmetric));
    notes.extend(world.hosts.iter().flat_map(|h| {
        h.foreign_rules.iter().map(move |r| {
            format!(
                "{}: policy rule not evaluated (selector other than fwmark): {r}",
                h.label
            )
        })
    }));
    Trace {
        query: q.clone(),
        legs,
        notes,
    }
}

fn source_start(world: &World, src: Ipv4Addr) -> Start {
    let node = &world.hosts[0];
    match node.owns(src) {
        true => Start::Originate(0),
        false => Start::Arrive(0, node.dev_toward(src).unwrap_or_else(|| "eth0".into())),
    }
}

/// A leg's SYN, its reply and a later packet; the SYN's verdict decides what follows.
fn leg(run: &mut Run<'_>, q: &Query, c: &Conn) -> (Leg, Verdict) {
    let [first_name, reply_name, later_name] = match q.proto {
        Proto::Tcp => ["SYN", "SYN-ACK (reply)", "later packet"],
        Proto::Udp => ["first datagram", "reply", "later datagram"],
    };
    let syn = Packet::new(c.from.0, None, c.to.0, Some(c.to.1), q.proto);
    let first = run.packet(first_name, c.key, c.from.1.clone(), syn.clone(), true);
    let mut packets = vec![first.clone()];
    if let Some(back) = reply_start(run.world, &first.verdict) {
        let rep = Packet::new(c.to.0, Some(c.to.1), c.from.0, None, q.proto);
        packets.push(run.packet(reply_name, c.key, back, rep, false));
        packets.push(run.packet(later_name, c.key, c.from.1.clone(), syn, false));
    }
    let name = format!("{} ({})", c.name, q.proto.name());
    (Leg { name, packets }, first.verdict)
}

/// Where the reply to a first packet starts: the socket that got it, or the pod it reached.
fn reply_start(world: &World, v: &Verdict) -> Option<Start> {
    let idx = |label: &str| world.hosts.iter().position(|h| h.label == label);
    match v {
        Verdict::Captured { host, .. } | Verdict::Socket { host } => {
            idx(host).map(Start::Originate)
        }
        Verdict::Delivered { host, dev, .. } => idx(host).map(|i| Start::Arrive(i, dev.clone())),
        Verdict::Left { .. } | Verdict::Unreachable { .. } => None,
    }
}

/// Legs 2 and 3 after ztunnel on `host` captured leg 1 on `port`.
fn after_capture(
    run: &mut Run<'_>,
    q: &Query,
    (host, port): (&str, u16),
    notes: &mut Vec<String>,
) -> Vec<Leg> {
    let world = run.world;
    let Some(zt) = world.hosts.iter().position(|h| h.label == host) else {
        return vec![];
    };
    let target = q.endpoint.unwrap_or(q.dst);
    if port != OUTBOUND {
        return vec![server_leg(run, q, zt, target, &format!("2 {host} -> server")).0];
    }
    let known = world.enrolled(target) || world.node_of_pod(target).is_some();
    let hbone = world.enrolled(target) || !known;
    let to = if hbone {
        (target, HBONE)
    } else {
        (target, q.port)
    };
    notes.push(leg2_note(q, target, known, hbone));
    let c = Conn {
        name: format!("2 {host} -> {}", to.0),
        key: "2",
        from: (q.src, Start::Originate(zt)),
        to,
    };
    let (l2, v2) = leg(run, q, &c);
    let mut legs = vec![l2];
    if let Verdict::Captured {
        host: b,
        port: HBONE,
    } = v2
    {
        if let Some(zb) = world.hosts.iter().position(|h| h.label == b) {
            legs.push(server_leg(run, q, zb, target, &format!("3 {b} -> server")).0);
        }
    }
    legs
}

/// Ztunnel on host `zt` connecting to the server `target:port` as the client.
fn server_leg(
    run: &mut Run<'_>,
    q: &Query,
    zt: usize,
    target: Ipv4Addr,
    name: &str,
) -> (Leg, Verdict) {
    let c = Conn {
        name: name.into(),
        key: "3",
        from: (q.src, Start::Originate(zt)),
        to: (target, q.port),
    };
    leg(run, q, &c)
}

/// A reply or later packet TPROXY'd to a listener belongs to no connection there: the
/// kernel answers it with a reset (the path is asymmetric).
fn asymmetric(leg: &Leg) -> Vec<String> {
    leg.packets
        .iter()
        .skip(1)
        .filter_map(|p| match &p.verdict {
            Verdict::Captured { host, port } => Some(format!(
                "leg {}: the {} is TPROXY'd to {host} :{port}, which has no such connection: it is reset (asymmetric path)",
                leg.name, p.what
            )),
            _ => None,
        })
        .collect()
}

/// What ztunnel A decides from its workload config (the kernel state cannot say).
fn leg2_note(q: &Query, target: Ipv4Addr, known: bool, hbone: bool) -> String {
    let how = match hbone {
        true => format!("HBONE to {target}:{HBONE}"),
        false => format!("plain TCP to {target}:{} (passthrough)", q.port),
    };
    let why = match (known, hbone) {
        (false, _) => format!("{target} is no pod of a traced node: assumed a mesh pod of an untraced node (for a service VIP pass --endpoint POD_IP; add --peer-netns to trace its node)"),
        (true, true) => format!("{target} is enrolled"),
        (true, false) => format!("{target} is not enrolled"),
    };
    format!("{why}: ztunnel A opens {how} as {} (IP_TRANSPARENT)", q.src)
}
