//! Root-only end-to-end test: real TCP through the plumbing on one node. A client pod's
//! connection to a remote pod is captured into the ztunnel pod's 15001 listener (TPROXY,
//! original destination kept), and a remote host's connection to the client pod's 15008 is
//! captured into 15008; data then flows both ways over the plain veth (0x40 / 0x4d3 path).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use plumbing::netns::{self, NetnsGuard};
use plumbing::{NodeInput, RouteSpec, Scope, TunnelKind, ZtunnelInput};
use socket2::{Domain, Socket, Type};

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const ZT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
const NODE_ETH: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
const REMOTE_HOST: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 3);

struct Topology {
    node: NetnsGuard,
    zt: NetnsGuard,
    client: NetnsGuard,
    remote: NetnsGuard,
}

/// A pod netns behind a point-to-point veth (pod /32, default via the gateway onlink, as
/// kind's ptp CNI does: the pod never ARPs for its neighbours).
fn pod(node: &str, pod: &str, node_dev: &str, ip: Ipv4Addr) {
    netns::veth_pair(Some(node), node_dev, "eth0", Some(pod)).unwrap();
    netns::add_address(Some(node), node_dev, GW, 32).unwrap();
    netns::add_address(Some(pod), "eth0", ip, 32).unwrap();
    netns::set_link_up(Some(node), node_dev).unwrap();
    netns::set_link_up(Some(pod), "eth0").unwrap();
    netns::add_route(
        Some(node),
        &RouteSpec::new(254, ip, 32).dev(node_dev).scope(Scope::Link),
    )
    .unwrap();
    let default = RouteSpec::new(254, Ipv4Addr::UNSPECIFIED, 0)
        .via(GW)
        .dev("eth0")
        .onlink();
    netns::add_route(Some(pod), &default).unwrap();
    netns::set_sysctl(
        Some(node),
        &format!("net.ipv4.conf.{node_dev}.rp_filter"),
        "2",
    )
    .unwrap();
}

fn topology() -> Topology {
    let t = Topology {
        node: NetnsGuard::new(&common::unique("tn")).unwrap(),
        zt: NetnsGuard::new(&common::unique("tz")).unwrap(),
        client: NetnsGuard::new(&common::unique("tc")).unwrap(),
        remote: NetnsGuard::new(&common::unique("tr")).unwrap(),
    };
    let (n, r) = (t.node.name(), t.remote.name());
    pod(n, t.zt.name(), "vzt", ZT);
    pod(n, t.client.name(), "vclient", CLIENT);
    netns::veth_pair(Some(n), "eth0", "reth0", Some(r)).unwrap();
    netns::add_address(Some(n), "eth0", NODE_ETH, 16).unwrap();
    netns::add_address(Some(r), "reth0", REMOTE_HOST, 16).unwrap();
    netns::set_link_up(Some(n), "eth0").unwrap();
    netns::set_link_up(Some(r), "reth0").unwrap();
    netns::add_route(
        Some(n),
        &RouteSpec::new(254, Ipv4Addr::new(10, 244, 2, 0), 24).via(REMOTE_HOST),
    )
    .unwrap();
    netns::add_route(
        Some(r),
        &RouteSpec::new(254, Ipv4Addr::new(10, 244, 1, 0), 24).via(NODE_ETH),
    )
    .unwrap();
    t
}

/// A transparent listener inside `ns` (what ztunnel binds for 15001/15008).
fn transparent_listener(ns: &str, port: u16) -> TcpListener {
    netns::run_in(Some(ns), || {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.set_ip_transparent_v4(true)?;
        s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
        s.listen(16)?;
        s.set_nonblocking(true)?;
        Ok::<TcpListener, std::io::Error>(s.into())
    })
    .unwrap()
    .unwrap()
}

fn accept_within(l: &TcpListener, limit: Duration) -> (TcpStream, SocketAddr) {
    let deadline = Instant::now() + limit;
    loop {
        match l.accept() {
            Ok((s, peer)) => {
                s.set_nonblocking(false).unwrap();
                return (s, peer);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no captured connection within {limit:?}: {e}"),
        }
    }
}

/// Connects from `ns` to `to`, accepts on `l`, checks the addresses and a round trip.
fn captured(ns: &str, to: SocketAddr, l: &TcpListener, from: Ipv4Addr) {
    std::thread::scope(|s| {
        let c = s.spawn(|| {
            netns::run_in(Some(ns), || {
                TcpStream::connect_timeout(&to, Duration::from_secs(5))
            })
        });
        let (mut server, peer) = accept_within(l, Duration::from_secs(5));
        assert_eq!(
            server.local_addr().unwrap(),
            to,
            "original destination kept"
        );
        assert_eq!(peer.ip(), from);
        let mut client = c.join().unwrap().unwrap().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(&[7u8; 100_000]).unwrap();
        let mut buf = vec![0u8; 100_000];
        server.read_exact(&mut buf).unwrap();
        server.write_all(b"pong").unwrap();
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"pong");
    });
}

fn inputs() -> (NodeInput, ZtunnelInput) {
    let node_in = NodeInput {
        gateway_ip: GW,
        ztunnel_ip: ZT,
        ztunnel_veth: "vzt".into(),
        pod_ips: vec![CLIENT],
        tunnel: TunnelKind::Geneve,
    };
    let zt_in = ZtunnelInput {
        ztunnel_ip: ZT,
        gateway_ip: GW,
        eth0: "eth0".into(),
        tunnel: TunnelKind::Geneve,
    };
    (node_in, zt_in)
}

/// The `sysctl …` objects `plumb check` reports on the node, sorted.
fn sysctl_drift(node: &str, i: &NodeInput) -> Vec<String> {
    let mut v: Vec<String> = plumbing::node_check(Some(node), i)
        .unwrap()
        .drift
        .into_iter()
        .map(|d| d.object)
        .collect();
    v.sort();
    v
}

/// Whether a connection from the client pod to `to` completes within 2 s.
fn connects(client_ns: &str, to: SocketAddr) -> bool {
    netns::run_in(Some(client_ns), || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2))
    })
    .unwrap()
    .is_ok()
}

/// A service VIP the node's main table has no route for (no default route either): the
/// ztunnel pod answers from the VIP, and that reply arrives on the ztunnel veth, where loose
/// rp_filter finds no reverse path. `up` turns rp_filter off there (and `all`, keeping
/// other devices' effective value), `check` reports either drifting back, and with the veth
/// back at loose the connection hangs again (what the issue saw).
#[test]
fn service_vip_without_a_node_route_connects() {
    if !common::can_run("service_vip_without_a_node_route_connects") {
        return;
    }
    let t = topology();
    let n = t.node.name();
    let vip = SocketAddr::from((Ipv4Addr::new(10, 96, 0, 10), 80));
    let routes = common::sh(
        n,
        &[
            "ip",
            "route",
            "show",
            "table",
            "main",
            "match",
            "10.96.0.10",
        ],
    );
    assert!(
        routes.is_empty(),
        "node must have no route to the VIP: {routes}"
    );
    let (node_in, zt_in) = inputs();
    // A device of someone else at 0 under a loose `all`: effectively loose, and must stay so.
    netns::set_sysctl(Some(n), "net.ipv4.conf.all.rp_filter", "2").unwrap();
    netns::set_sysctl(Some(n), "net.ipv4.conf.eth0.rp_filter", "0").unwrap();
    plumbing::node_up(Some(n), &node_in).unwrap();
    plumbing::ztunnel_up(Some(t.zt.name()), &zt_in).unwrap();
    let rp = |dev: &str| netns::read_sysctl(Some(n), &format!("net.ipv4.conf.{dev}.rp_filter"));
    assert_eq!(
        [rp("all").unwrap(), rp("vzt").unwrap(), rp("eth0").unwrap()],
        ["0", "0", "2"],
        "all, ztunnel veth, foreign eth0"
    );
    assert!(sysctl_drift(n, &node_in).is_empty());
    let outbound = transparent_listener(t.zt.name(), 15001);
    captured(t.client.name(), vip, &outbound, CLIENT);

    netns::set_sysctl(Some(n), "net.ipv4.conf.vzt.rp_filter", "2").unwrap();
    assert_eq!(
        sysctl_drift(n, &node_in),
        ["sysctl net.ipv4.conf.vzt.rp_filter"]
    );
    assert!(
        !connects(t.client.name(), vip),
        "loose rp_filter on the veth let the reply in"
    );
    netns::set_sysctl(Some(n), "net.ipv4.conf.vzt.rp_filter", "0").unwrap();
    netns::set_sysctl(Some(n), "net.ipv4.conf.all.rp_filter", "1").unwrap();
    assert_eq!(
        sysctl_drift(n, &node_in),
        ["sysctl net.ipv4.conf.all.rp_filter"]
    );
    plumbing::node_up(Some(n), &node_in).unwrap();
    assert!(sysctl_drift(n, &node_in).is_empty());
    captured(t.client.name(), vip, &outbound, CLIENT);

    // Settings, not objects: `down` leaves them (a running ztunnel still needs them).
    plumbing::ztunnel_down(Some(t.zt.name()), &zt_in).unwrap();
    plumbing::node_down(Some(n), &node_in).unwrap();
    assert_eq!(rp("vzt").unwrap(), "0");
}

#[test]
fn tcp_is_captured_both_ways_and_flows() {
    if !common::can_run("tcp_is_captured_both_ways_and_flows") {
        return;
    }
    let t = topology();
    let (node_in, zt_in) = inputs();
    plumbing::node_up(Some(t.node.name()), &node_in).unwrap();
    plumbing::ztunnel_up(Some(t.zt.name()), &zt_in).unwrap();
    let outbound = transparent_listener(t.zt.name(), 15001);
    let hbone = transparent_listener(t.zt.name(), 15008);

    captured(
        t.client.name(),
        SocketAddr::from((REMOTE_POD, 8080)),
        &outbound,
        CLIENT,
    );
    captured(
        t.remote.name(),
        SocketAddr::from((CLIENT, 15008)),
        &hbone,
        REMOTE_HOST,
    );

    plumbing::ztunnel_down(Some(t.zt.name()), &zt_in).unwrap();
    plumbing::node_down(Some(t.node.name()), &node_in).unwrap();
}
