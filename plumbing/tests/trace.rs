//! Root-only: the trace evaluator against the kernel. Builds the articles' two-node
//! topology in namespaces (`zrt-*`), applies the real plumbing on both nodes and ztunnel
//! pods, reads it back with the live readers, traces the golden flows, and asks the kernel
//! (`ip route get DST from SRC iif IIF mark M`) for every route lookup of every hop: its
//! answer (local or unicast, device, gateway, table) must be the trace's. Then real TCP
//! runs the main flow's first leg and the counters of the rules the trace says matched grow.

mod common;
#[path = "trace/kernel.rs"]
mod kernel;
#[path = "trace/tcp.rs"]
mod tcp;
#[path = "trace/topo.rs"]
mod topo;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use plumbing::cli::{PlumbCommand, TraceArgs};
use plumbing::netns;
use plumbing::trace::{self, Answer, HostSpec, Proto, Query, Trace, Verdict};
use plumbing::{NodeInput, TunnelKind};
use std::process::ExitCode;

use kernel::{agrees, check_with_kernel};
use tcp::{accept, counters, round_trip, transparent_listener};
use topo::{link, node, plumb, specs, Node, A, B, CLIENT, SERVER};

fn q(src: Ipv4Addr, dst: Ipv4Addr, port: u16, proto: Proto) -> Query {
    Query {
        src,
        dst,
        port,
        proto,
        endpoint: None,
    }
}

fn verdicts(t: &Trace) -> Vec<Verdict> {
    t.legs
        .iter()
        .map(|l| l.packets[0].verdict.clone())
        .collect()
}

fn captured(host: &str, port: u16) -> Verdict {
    Verdict::Captured {
        host: host.into(),
        port,
    }
}

fn delivered(host: &str, bypassed: bool) -> Verdict {
    Verdict::Delivered {
        host: host.into(),
        dev: "vpod".into(),
        bypassed,
    }
}

/// Traces `query` over the live state, checks its verdicts and every lookup with the kernel.
fn golden(specs: &[HostSpec], query: Query, want: Vec<Verdict>) -> (Trace, usize) {
    let world = trace::read_world(specs).unwrap();
    let t = trace::trace(&world, &query);
    assert_eq!(verdicts(&t), want, "{}", trace::render_text(&t));
    let unknown: Vec<_> = t
        .legs
        .iter()
        .flat_map(|l| &l.packets)
        .flat_map(|p| &p.steps)
        .flat_map(|s| &s.not_evaluated)
        .collect();
    assert!(
        unknown.is_empty(),
        "our own rules read back unparsed: {unknown:?}"
    );
    let n = check_with_kernel(&t);
    (t, n)
}

#[test]
fn trace_agrees_with_the_kernel_on_every_hop_and_counters() {
    if !common::can_run("trace_agrees_with_the_kernel_on_every_hop_and_counters") {
        return;
    }
    let (a, b) = (node("na", &A), node("nb", &B));
    link(&a, &b);
    plumb(&a, &A);
    plumb(&b, &B);
    let specs = specs(&a, &b);
    let main_want = vec![
        captured("ztunnel A", 15001),
        captured("ztunnel B", 15008),
        delivered("node B", true),
    ];
    let (main, mut n) = golden(&specs, q(CLIENT, SERVER, 8080, Proto::Tcp), main_want);
    n += golden(
        &specs,
        q(CLIENT, SERVER, 53, Proto::Udp),
        vec![delivered("node B", true)],
    )
    .1;
    n += golden(
        &specs,
        q(A.gw, CLIENT, 8080, Proto::Tcp),
        vec![delivered("node A", true)],
    )
    .1;
    let vip = Query {
        endpoint: Some(SERVER),
        ..q(CLIENT, Ipv4Addr::new(10, 96, 0, 10), 80, Proto::Tcp)
    };
    let vip_want = vec![
        captured("ztunnel A", 15001),
        captured("ztunnel B", 15008),
        delivered("node B", true),
    ];
    n += golden(&specs, vip, vip_want).1;
    n += not_enrolled(&a, &specs);
    assert!(n >= 40, "only {n} lookups checked");
    counters_grow_on_the_traced_rules(&a, &main);
    cli_exit_says_whether_drift_changed_the_path(&a, &b);
}

/// `zring plumb trace` with the node's inputs: exit 0 on the plumbed state, 1 once rule
/// 101 is deleted (the live trace then differs from the desired one).
fn cli_exit_says_whether_drift_changed_the_path(a: &Node, b: &Node) {
    let args = |ns: &Node| plumbing::cli::NodeArgs {
        netns: Some(ns.node.name().into()),
        gateway_ip: Some(A.gw),
        ztunnel_ip: Some(A.zt),
        ztunnel_veth: Some("vzt".into()),
        pod_ips: vec![CLIENT],
        ..Default::default()
    };
    let run = || {
        let t = TraceArgs {
            src: CLIENT,
            dst: std::net::SocketAddrV4::new(SERVER, 8080),
            tcp: true,
            udp: false,
            json: true,
            ztunnel_netns: Some(a.zt.name().into()),
            peer_netns: Some(b.node.name().into()),
            peer_ztunnel_netns: Some(b.zt.name().into()),
            endpoint: None,
            node: args(a),
        };
        plumbing::cli::run(PlumbCommand::Trace(Box::new(t))).unwrap()
    };
    assert_eq!(run(), ExitCode::SUCCESS);
    common::sh(a.node.name(), &["ip", "rule", "del", "priority", "101"]);
    assert_eq!(run(), ExitCode::FAILURE);
}

/// Withdraws the client: its SYN is no longer captured on node A but inbound on node B.
fn not_enrolled(a: &Node, specs: &[HostSpec]) -> usize {
    let input = NodeInput {
        gateway_ip: A.gw,
        ztunnel_ip: A.zt,
        ztunnel_veth: "vzt".into(),
        pod_ips: vec![CLIENT],
        tunnel: TunnelKind::Geneve,
    };
    plumbing::pod_del(Some(a.node.name()), &input, CLIENT).unwrap();
    let want = vec![captured("ztunnel B", 15006), delivered("node B", true)];
    let n = golden(specs, q(CLIENT, SERVER, 8080, Proto::Tcp), want).1;
    plumbing::pod_add(Some(a.node.name()), &input, CLIENT).unwrap();
    n
}

/// Real TCP from the client pod to the server: captured by a transparent listener on
/// ztunnel A's 15001, one round trip; then every rule leg 1 says matched on node A or in
/// ztunnel A has counted packets.
fn counters_grow_on_the_traced_rules(a: &Node, main: &Trace) {
    let l = transparent_listener(a.zt.name(), 15001);
    let to = SocketAddr::from((SERVER, 8080));
    let client = netns::run_in(Some(a.pod.name()), move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(5))
    })
    .unwrap();
    let mut c = client.expect("connect through the capture");
    let (mut s, peer) = accept(&l);
    assert_eq!(
        (s.local_addr().unwrap(), peer.ip()),
        (to, std::net::IpAddr::V4(CLIENT))
    );
    round_trip(&mut c, &mut s);
    let by_host = [
        ("node A", counters(a.node.name())),
        ("ztunnel A", counters(a.zt.name())),
    ];
    for p in &main.legs[0].packets {
        for st in &p.steps {
            let Some((_, cs)) = by_host.iter().find(|(h, _)| *h == st.host) else {
                continue;
            };
            for m in &st.matched {
                let chain = m.line.split(' ').nth(1).unwrap_or("").to_string();
                let key = (m.table.to_string(), chain, m.position);
                let n = cs.get(&key).copied().unwrap_or(0);
                assert!(
                    n > 0,
                    "{} at {}: `{}` (#{}) counted nothing",
                    p.what,
                    st.host,
                    m.line,
                    m.position
                );
            }
        }
    }
}

#[test]
fn kernel_answers_are_compared_strictly() {
    let k = "10.244.2.5 from 10.244.1.4 via 192.168.127.2 dev istioout table 101 mark 0x100";
    let right = Answer::Unicast {
        table: 101,
        dev: "istioout".into(),
        gateway: Some(Ipv4Addr::new(192, 168, 127, 2)),
    };
    assert!(agrees(&right, k));
    for wrong in [
        Answer::Unicast {
            table: 254,
            dev: "istioout".into(),
            gateway: Some(Ipv4Addr::new(192, 168, 127, 2)),
        },
        Answer::Unicast {
            table: 101,
            dev: "eth0".into(),
            gateway: Some(Ipv4Addr::new(192, 168, 127, 2)),
        },
        Answer::Unicast {
            table: 101,
            dev: "istioout".into(),
            gateway: None,
        },
        Answer::Local { table: 101 },
        Answer::Unreachable,
    ] {
        assert!(!agrees(&wrong, k), "{wrong:?}");
    }
    assert!(agrees(
        &Answer::Local { table: 255 },
        "local 10.244.1.2 from 10.244.1.1 dev lo table local"
    ));
}
