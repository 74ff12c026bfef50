//! `zring plumb trace`: read the namespaces, evaluate the flow, compare with the desired
//! state when the node's inputs are given, print text or JSON.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;

use serde::Serialize;

use super::NodeArgs;
use crate::check::Drift;
use crate::input::{NodeInput, ZtunnelInput};
use crate::render::{self, Side};
use crate::trace::{self, Divergence, HostSpec, Proto, Query, Trace, World};
use crate::{ops, PlumbError};

/// What the trace prints, explained (shown by `--help`).
pub(crate) const ABOUT: &str = "\
Explain a flow's path through marks, chains, policy rules, tables and tunnels.

Reads the live state of the named namespaces (the same readers `plumb check` uses) and
evaluates it; no packet is sent. The flow is traced leg by leg: 1 client -> ztunnel A
(captured by TPROXY), 2 ztunnel A -> destination (HBONE to POD:15008, spoofing the client;
or plain TCP for a non-mesh destination), 3 ztunnel B -> server. Each leg shows its SYN,
the reply and a later packet (the connection marks saved by the first two change the path
of the third: 0x210 -> 0x40 -> table 102, 0x4d3 in the ztunnel pod).

Each hop prints:
  HOST (in IFACE | a local socket) SRC:SPORT -> DST:DPORT PROTO  mark IN->OUT  connmark IN->OUT
    mangle|nat -A CHAIN SPEC  => effect  [#N]
                                           every iptables rule that matched, as iptables-save prints
                                           it, and its number in the chain
    not evaluated: ...                     rules with options the evaluator does not model
    rule   PRIO: ...                       the policy rules taken (gotos, then the lookup that found a route)
    route  table T: ROUTE                  the route chosen, as `ip route show table T` prints it
    =>     what happened next              out DEV to NEXT | into istioin/istioout (geneve|vxlan vni N):
                                           UDP to REMOTE:PORT | decapsulated by pistioin/pistioout |
                                           TPROXY listener :15001/15006/15008 | the connection's socket
  verdict: captured by ztunnel X :PORT (TPROXY; the kernel drops it if nothing listens there) |
           delivered to a socket of X (no TPROXY) |
           bypassed (0x200: main table) / passthrough, delivered to the pod | left toward an untraced host

With the node's inputs (--file or --gateway-ip/--ztunnel-ip/--ztunnel-veth/--pod-ip) the
trace of the desired state is compared with the live one, and every packet whose path
differs is listed with the missing/extra/different objects it depended on (exit 1).
--json prints {trace, divergences, drift_checked} for tools.";

/// `zring plumb trace` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// Source IP: a client pod of the node, or the node's own address (node-local probe).
    pub src: Ipv4Addr,
    /// Destination IP:PORT (pod or service VIP).
    pub dst: SocketAddrV4,
    /// Trace TCP (the default).
    #[arg(long, conflicts_with = "udp")]
    pub tcp: bool,
    /// Trace UDP.
    #[arg(long)]
    pub udp: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The ztunnel pod's netns on the source's node.
    #[arg(long)]
    pub ztunnel_netns: Option<String>,
    /// The destination's node netns (when it is another node).
    #[arg(long)]
    pub peer_netns: Option<String>,
    /// The ztunnel pod's netns on the destination's node.
    #[arg(long)]
    pub peer_ztunnel_netns: Option<String>,
    /// For a service VIP: the endpoint ztunnel picks (legs 2-3 go there).
    #[arg(long)]
    pub endpoint: Option<Ipv4Addr>,
    /// The source node's netns (--netns) and, optionally, its desired-state inputs.
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Serialize)]
struct Output<'a> {
    trace: &'a Trace,
    divergences: &'a [Divergence],
    drift_checked: bool,
}

impl TraceArgs {
    fn query(&self) -> Query {
        Query {
            src: self.src,
            dst: *self.dst.ip(),
            port: self.dst.port(),
            proto: if self.udp { Proto::Udp } else { Proto::Tcp },
            endpoint: self.endpoint,
        }
    }

    fn specs(&self) -> Vec<HostSpec> {
        let spec = |label: &str, netns: &Option<String>, side| HostSpec {
            label: label.into(),
            netns: netns.clone(),
            side,
        };
        let mut v = vec![spec("node A", &self.node.netns, Side::Node)];
        let more = [
            ("ztunnel A", &self.ztunnel_netns, Side::Ztunnel),
            ("node B", &self.peer_netns, Side::Node),
            ("ztunnel B", &self.peer_ztunnel_netns, Side::Ztunnel),
        ];
        v.extend(
            more.into_iter()
                .filter(|(_, n, _)| n.is_some())
                .map(|(l, n, s)| spec(l, n, s)),
        );
        v
    }
}

/// The desired world (our objects of node A and ztunnel A from the inputs) and the drift.
fn desired(
    a: &TraceArgs,
    live: &World,
    input: &NodeInput,
) -> Result<(World, Vec<Drift>), PlumbError> {
    let report = ops::node_check(a.node.netns.as_deref(), input)?;
    let mut world = live.clone();
    world.hosts[0] = live.hosts[0].desired(&render::node(input, report.kind));
    let mut drift = report.drift;
    if let (Some(ns), Some(i)) = (
        &a.ztunnel_netns,
        live.hosts.iter().position(|h| h.label == "ztunnel A"),
    ) {
        let zin = ZtunnelInput {
            ztunnel_ip: input.ztunnel_ip,
            gateway_ip: input.gateway_ip,
            eth0: "eth0".into(),
            tunnel: input.tunnel,
        };
        let z = ops::ztunnel_check(Some(ns), &zin)?;
        world.hosts[i] = live.hosts[i].desired(&render::ztunnel(&zin, z.kind));
        drift.extend(z.drift);
    }
    Ok((world, drift))
}

/// The source must be a pod of node A (a route to it) or one of node A's addresses.
fn check_source(live: &World, q: &Query) -> Result<(), PlumbError> {
    match live.source_known(q.src) {
        true => Ok(()),
        false => Err(PlumbError::Trace {
            what: format!("{} is neither an address of node A nor routed by its main table", q.src),
            hint: "pass a pod IP of the node given with --netns (or its gateway IP for a node-local probe)",
        }),
    }
}

/// Runs `zring plumb trace`; exit 1 when drift changes the path.
pub(crate) fn run(a: TraceArgs) -> Result<ExitCode, PlumbError> {
    let live = trace::read_world(&a.specs())?;
    let q = a.query();
    check_source(&live, &q)?;
    let t = trace::trace(&live, &q);
    let (divs, checked) = match a.node.resolve() {
        Ok(input) => {
            let (world, drift) = desired(&a, &live, &input)?;
            (trace::diverge(&t, &trace::trace(&world, &q), &drift), true)
        }
        Err(PlumbError::MissingInput(..)) => (Vec::new(), false),
        Err(e) => return Err(e),
    };
    if a.json {
        let out = Output {
            trace: &t,
            divergences: &divs,
            drift_checked: checked,
        };
        let json =
            serde_json::to_string_pretty(&out).expect("plain data with string keys serializes");
        println!("{json}");
    } else {
        print!("{}", trace::render_text(&t));
        print!("{}", trace::render_divergences(&divs, checked));
    }
    Ok(if divs.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
