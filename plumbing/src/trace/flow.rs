//! The legs of one flow across the hosts of a [`World`]: each leg's first packet, the
//! reply and a later packet (the connection marks saved by the first two change the
//! path of the third). Pure.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::eval::{self, Outcome, Step};
use super::{Host, Packet, Proto, World};
use crate::render::PORTS;

/// What the operator asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Query {
    /// Client (pod IP, or the node's own address for a node-local probe).
    pub src: Ipv4Addr,
    /// Destination (pod IP or service VIP).
    pub dst: Ipv4Addr,
    /// Destination port.
    pub port: u16,
    /// TCP or UDP.
    pub proto: Proto,
    /// For a service VIP: the endpoint ztunnel picks (legs 2-3 go there).
    pub endpoint: Option<Ipv4Addr>,
}

/// How one packet's path ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Verdict {
    /// TPROXY'd to ztunnel's listener.
    Captured { host: String, port: u16 },
    /// Delivered to a local socket of an established captured connection (no TPROXY).
    Socket { host: String },
    /// Reached the pod on `dev` of `host`; `bypassed` when a 0x200 mark skipped our tables.
    Delivered {
        host: String,
        dev: String,
        bypassed: bool,
    },
    /// Left the traced hosts through `dev` toward `next`.
    Left {
        host: String,
        dev: String,
        next: Ipv4Addr,
    },
    /// No route.
    Unreachable { host: String },
}

/// One packet's trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PacketTrace {
    /// `SYN`, `SYN-ACK`, `later`.
    pub what: String,
    /// Host by host.
    pub steps: Vec<Step>,
    /// How it ended.
    pub verdict: Verdict,
}

/// One TCP connection (or UDP flow) of the three.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leg {
    /// `1 client -> ztunnel A`, ...
    pub name: String,
    /// Its packets.
    pub packets: Vec<PacketTrace>,
}

/// A whole trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// The question.
    pub query: Query,
    /// The legs, in order.
    pub legs: Vec<Leg>,
    /// What the kernel state cannot say (ztunnel's own decisions, untraced hosts).
    pub notes: Vec<String>,
}

/// Where a packet starts.
#[derive(Debug, Clone)]
pub(crate) enum Start {
    /// Entering host `.0` on interface `.1`.
    Arrive(usize, String),
    /// Sent by a socket of host `.0`.
    Originate(usize),
}

/// Connection marks per (host, connection).
type Conntrack = HashMap<(usize, String), u32>;

const MAX_STEPS: usize = 16;
const EPHEMERAL: Option<u16> = None;

pub(crate) struct Run<'w> {
    pub world: &'w World,
    ct: Conntrack,
}

/// A packet in flight: where it is next, itself, its connection, and the inner packet
/// while it is inside a tunnel.
struct Cursor {
    at: Start,
    pkt: Packet,
    conn: String,
    inner: Option<Packet>,
    bypassed: bool,
}

impl<'w> Run<'w> {
    pub(crate) fn new(world: &'w World) -> Self {
        Self {
            world,
            ct: Conntrack::new(),
        }
    }

    fn host(&self, i: usize) -> &Host {
        &self.world.hosts[i]
    }

    /// Follows one packet from `at` until it is delivered, captured or leaves.
    pub(crate) fn packet(
        &mut self,
        what: &str,
        conn: &str,
        at: Start,
        pkt: Packet,
        new: bool,
    ) -> PacketTrace {
        let mut c = Cursor {
            at,
            pkt,
            conn: conn.to_string(),
            inner: None,
            bypassed: false,
        };
        let mut steps = Vec::new();
        loop {
            let step = self.step(&mut c, new);
            let i = c.at.host();
            let next = self.next(i, &step, &mut c);
            steps.push(step);
            match next {
                Ok(()) if steps.len() < MAX_STEPS => {}
                Ok(()) => {
                    return end(
                        what,
                        steps,
                        Verdict::Unreachable {
                            host: self.host(i).label.clone(),
                        },
                    )
                }
                Err(v) => return end(what, steps, v),
            }
        }
    }

    fn step(&mut self, c: &mut Cursor, new: bool) -> Step {
        let i = c.at.host();
        c.pkt.connmark = self.ct.get(&(i, c.conn.clone())).copied().unwrap_or(0);
        let step = match &c.at {
            Start::Arrive(_, dev) => {
                c.pkt.iif = Some(dev.clone());
                eval::arrive(self.host(i), c.pkt.clone(), new)
            }
            Start::Originate(_) => {
                c.pkt.iif = None;
                eval::originate(self.host(i), c.pkt.clone(), new, c.inner.is_none())
            }
        };
        self.ct.insert((i, c.conn.clone()), step.connmark);
        c.bypassed |= step.policy.as_deref().is_some_and(|p| p.contains("goto"));
        step
    }

    /// Moves `c` past `step` on host `i` (Err = the packet ends there).
    fn next(&self, i: usize, step: &Step, c: &mut Cursor) -> Result<(), Verdict> {
        let host = self.host(i).label.clone();
        match &step.outcome {
            Outcome::Captured { port } => Err(Verdict::Captured { host, port: *port }),
            Outcome::Socket => Err(Verdict::Socket { host }),
            Outcome::Unreachable => Err(Verdict::Unreachable { host }),
            Outcome::Encap {
                remote, port, vni, ..
            } => {
                let src = self.outer_src(i, *remote, step.mark).unwrap_or(c.pkt.src);
                c.inner = Some(c.pkt.clone());
                let outer = Packet::new(src, EPHEMERAL, *remote, Some(*port), Proto::Udp);
                c.pkt = Packet {
                    mark: step.mark,
                    vni: Some(*vni),
                    ..outer
                };
                c.conn.push_str(TUNNEL);
                c.at = Start::Originate(i);
                Ok(())
            }
            Outcome::Decap { dev, .. } => {
                let inner = c.inner.take().ok_or(Verdict::Socket { host })?;
                c.pkt = Packet {
                    mark: step.mark,
                    ..inner
                };
                c.conn.truncate(c.conn.len().saturating_sub(TUNNEL.len()));
                c.at = Start::Arrive(i, dev.clone());
                Ok(())
            }
            Outcome::Forward { dev, next } => {
                c.pkt.mark = 0;
                c.at = self.hop(i, dev, *next, c)?;
                Ok(())
            }
        }
    }

    /// The source of a tunnel's outer packet: the route's `src`, or the address of the
    /// device the route to the remote uses (the tunnel routes with the inner packet's mark).
    fn outer_src(&self, i: usize, remote: Ipv4Addr, mark: u32) -> Option<Ipv4Addr> {
        let h = self.host(i);
        let (_, route) = super::route::decide(h, remote, mark);
        let r = route?;
        r.src
            .or_else(|| r.dev.as_deref().and_then(|d| h.addr_on(d)))
    }

    /// The host and interface a packet routed out of `dev` toward `next` enters (marks do
    /// not cross a veth into another namespace).
    fn hop(&self, i: usize, dev: &str, next: Ipv4Addr, c: &Cursor) -> Result<Start, Verdict> {
        let h = self.host(i);
        if let Some(j) = self.world.owner(next, i) {
            let sender = h.addr_on(dev).unwrap_or(c.pkt.src);
            let iif = self
                .host(j)
                .dev_toward(sender)
                .unwrap_or_else(|| "eth0".into());
            return Ok(Start::Arrive(j, iif));
        }
        let (host, dev) = (h.label.clone(), dev.to_string());
        // An outer tunnel packet is for a ztunnel pod: one that is not traced.
        match next == c.pkt.dst && c.inner.is_none() {
            true => Err(Verdict::Delivered {
                host,
                dev,
                bypassed: c.bypassed,
            }),
            false => Err(Verdict::Left { host, dev, next }),
        }
    }
}

impl Start {
    fn host(&self) -> usize {
        match self {
            Start::Arrive(i, _) | Start::Originate(i) => *i,
        }
    }
}

const TUNNEL: &str = "/tunnel";

fn end(what: &str, steps: Vec<Step>, verdict: Verdict) -> PacketTrace {
    PacketTrace {
        what: what.to_string(),
        steps,
        verdict,
    }
}

/// The ports ztunnel listens on: HBONE inbound, outbound capture, plaintext inbound.
pub(crate) const HBONE: u16 = PORTS.0;
/// Ztunnel's outbound capture port.
pub(crate) const OUTBOUND: u16 = PORTS.1;
