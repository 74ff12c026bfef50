//! Root-only: the trace evaluator against the kernel. Builds the articles' two-node
//! topology in namespaces (`zrt-*`), applies the real plumbing on both nodes and ztunnel
//! pods, reads it back with the live readers, traces the golden flows, and asks the kernel
//! (`ip route get DST from SRC iif IIF mark M`) for every route lookup of every hop: its
//! answer (local or unicast, device, gateway, table) must be the trace's. Then real TCP
//! runs the main flow's first leg and the counters of the rules the trace says matched grow.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use plumbing::netns::{self, NetnsGuard};
use plumbing::render::Side;
use plumbing::trace::{self, Answer, HostSpec, Lookup, Proto, Query, Trace, Verdict};
use plumbing::{NodeInput, RouteSpec, Scope, TunnelKind, ZtunnelInput};
use socket2::{Domain, Socket, Type};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);

/// One node of the articles: gateway, ztunnel IP, eth0 address, its pod, the peer's CIDR.
struct Facts {
    gw: Ipv4Addr,
    zt: Ipv4Addr,
    eth: Ipv4Addr,
    pod: Ipv4Addr,
    peer: (Ipv4Addr, Ipv4Addr),
}

const A: Facts = Facts {
    gw: Ipv4Addr::new(10, 244, 1, 1),
    zt: Ipv4Addr::new(10, 244, 1, 2),
    eth: Ipv4Addr::new(172, 18, 0, 2),
    pod: CLIENT,
    peer: (Ipv4Addr::new(10, 244, 2, 0), Ipv4Addr::new(172, 18, 0, 3)),
};
const B: Facts = Facts {
    gw: Ipv4Addr::new(10, 244, 2, 1),
    zt: Ipv4Addr::new(10, 244, 2, 3),
    eth: Ipv4Addr::new(172, 18, 0, 3),
    pod: SERVER,
    peer: (Ipv4Addr::new(10, 244, 1, 0), Ipv4Addr::new(172, 18, 0, 2)),
};

static N: AtomicU32 = AtomicU32::new(0);

fn name(tag: &str) -> String {
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("zrt-{tag}-{}-{n}", std::process::id())
}

/// Node, ztunnel pod and workload pod namespaces of one node (deleted on drop).
struct Node {
    node: NetnsGuard,
    zt: NetnsGuard,
    _pod: NetnsGuard,
}

/// A pod behind a point-to-point veth (pod /32, default via the gateway onlink).
fn pod(node: &str, pod: &str, dev: &str, gw: Ipv4Addr, ip: Ipv4Addr) {
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

fn node(tag: &str, f: &Facts) -> Node {
    let n = Node {
        node: NetnsGuard::new(&name(tag)).unwrap(),
        zt: NetnsGuard::new(&name(&format!("{tag}z"))).unwrap(),
        _pod: NetnsGuard::new(&name(&format!("{tag}p"))).unwrap(),
    };
    pod(n.node.name(), n.zt.name(), "vzt", f.gw, f.zt);
    pod(n.node.name(), n._pod.name(), "vpod", f.gw, f.pod);
    n
}

/// The node link (eth0 ↔ eth0), addresses, routes to the other node's pod CIDR, default.
fn link(a: &Node, b: &Node) {
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

fn plumb(n: &Node, f: &Facts) {
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

fn specs(a: &Node, b: &Node) -> Vec<HostSpec> {
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

/// `ip route get` for `l` in its netns: the kernel's answer, first line.
fn kernel(l: &Lookup) -> String {
    let mut args = vec![
        "ip".to_string(),
        "route".into(),
        "get".into(),
        l.dst.to_string(),
    ];
    if let Some(s) = l.src {
        args.extend(["from".into(), s.to_string()]);
    }
    if let Some(i) = &l.iif {
        args.extend(["iif".into(), i.clone()]);
    }
    args.extend(["mark".into(), format!("{:#x}", l.mark)]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let ns = l.netns.as_deref().unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(&argv)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    format!("{} {err}", text.lines().next().unwrap_or(""))
        .trim()
        .to_string()
}

/// Whether the kernel's `ip route get` line says what the model answered.
fn agrees(a: &Answer, k: &str) -> bool {
    let words: Vec<&str> = k.split_whitespace().collect();
    let after = |w: &str| {
        words
            .iter()
            .position(|x| *x == w)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    let table = |t: u32| match (t, after("table")) {
        (254, None) | (254, Some("main")) => true,
        (255, Some("local")) => true,
        (t, Some(got)) => got == t.to_string(),
        _ => false,
    };
    match a {
        Answer::Local { table: t } => words.first() == Some(&"local") && table(*t),
        Answer::Unicast {
            table: t,
            dev,
            gateway,
        } => {
            after("dev") == Some(dev.as_str())
                && after("via") == gateway.map(|g| g.to_string()).as_deref()
                && table(*t)
        }
        Answer::Unreachable => k.contains("unreachable"),
    }
}

/// Every lookup of every hop of `t`, checked against the kernel; returns how many.
fn check_with_kernel(t: &Trace) -> usize {
    let mut n = 0;
    for leg in &t.legs {
        for p in &leg.packets {
            for s in &p.steps {
                let k = kernel(&s.lookup);
                assert!(
                    agrees(&s.lookup.answer, &k),
                    "{} / {} at {}: model {:?}, kernel `{k}`\n{}",
                    leg.name,
                    p.what,
                    s.host,
                    s.lookup,
                    trace::render_text(t)
                );
                n += 1;
            }
        }
    }
    n
}

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

/// `iptables-save -c` of mangle and nat in `ns`: (table, chain, number in chain) → packets.
fn counters(ns: &str) -> std::collections::HashMap<(String, String, usize), u64> {
    let mut out = std::collections::HashMap::new();
    for table in ["mangle", "nat"] {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for l in common::sh(ns, &["iptables-save", "-c", "-t", table]).lines() {
            let Some((c, rule)) = l.strip_prefix('[').and_then(|r| r.split_once("] -A ")) else {
                continue;
            };
            let chain = rule.split(' ').next().unwrap_or("").to_string();
            let n = seen.entry(chain.clone()).or_default();
            *n += 1;
            let pkts = c
                .split(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            out.insert((table.to_string(), chain, *n), pkts);
        }
    }
    out
}

/// Real TCP from the client pod to the server: captured by a transparent listener on
/// ztunnel A's 15001, one round trip; then every rule leg 1 says matched on node A or in
/// ztunnel A has counted packets.
fn counters_grow_on_the_traced_rules(a: &Node, main: &Trace) {
    let l = transparent_listener(a.zt.name(), 15001);
    let to = SocketAddr::from((SERVER, 8080));
    let client = netns::run_in(Some(a._pod.name()), move || {
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

fn round_trip(c: &mut TcpStream, s: &mut TcpStream) {
    use std::io::{Read, Write};
    for x in [&*c, &*s] {
        x.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    c.write_all(&[7u8; 10_000]).unwrap();
    let mut buf = vec![0u8; 10_000];
    s.read_exact(&mut buf).unwrap();
    s.write_all(b"pong").unwrap();
    let mut pong = [0u8; 4];
    c.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"pong");
}

fn transparent_listener(ns: &str, port: u16) -> TcpListener {
    netns::run_in(Some(ns), || {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.set_ip_transparent_v4(true)?;
        s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
        s.listen(16)?;
        Ok::<TcpListener, std::io::Error>(s.into())
    })
    .unwrap()
    .unwrap()
}

fn accept(l: &TcpListener) -> (TcpStream, SocketAddr) {
    l.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match l.accept() {
            Ok((s, p)) => {
                s.set_nonblocking(false).unwrap();
                return (s, p);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no captured connection: {e}"),
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
