//! Root-only tests of the public `netns` topology helpers.

mod common;

use std::net::Ipv4Addr;

use plumbing::netns::{self, NetnsGuard};
use plumbing::{RouteSpec, Scope};

#[test]
fn topology_helpers_build_a_working_link() {
    if !common::can_run("topology_helpers_build_a_working_link") {
        return;
    }
    let (na, nb) = (common::unique("a"), common::unique("b"));
    let a = NetnsGuard::new(&na).unwrap();
    let b = NetnsGuard::new(&nb).unwrap();
    assert!(netns::list("zrp-").unwrap().contains(&na));
    assert!(matches!(
        netns::create(&na),
        Err(plumbing::PlumbError::NetnsExists(_))
    ));

    netns::veth_pair(Some(a.name()), "va", "vb", Some(b.name())).unwrap();
    netns::add_address(Some(a.name()), "va", Ipv4Addr::new(10, 99, 0, 1), 24).unwrap();
    netns::add_address(Some(b.name()), "vb", Ipv4Addr::new(10, 99, 0, 2), 24).unwrap();
    netns::set_link_up(Some(a.name()), "va").unwrap();
    netns::set_link_up(Some(b.name()), "vb").unwrap();
    let r = RouteSpec::new(254, Ipv4Addr::new(10, 98, 0, 0), 16)
        .via(Ipv4Addr::new(10, 99, 0, 2))
        .dev("va")
        .onlink();
    netns::add_route(Some(a.name()), &r).unwrap();
    let host = RouteSpec::new(254, Ipv4Addr::new(10, 97, 0, 9), 32)
        .dev("va")
        .scope(Scope::Link);
    netns::add_route(Some(a.name()), &host).unwrap();

    let routes = common::sh(a.name(), &["ip", "route"]);
    assert!(
        routes.contains("10.98.0.0/16 via 10.99.0.2 dev va onlink"),
        "{routes}"
    );
    assert!(routes.contains("10.97.0.9 dev va scope link"), "{routes}");
    // Sockets keep the namespace of the thread that made them: listen in b, connect from a.
    let listener = netns::run_in(Some(b.name()), || {
        std::net::TcpListener::bind("10.99.0.2:0")
    })
    .unwrap()
    .unwrap();
    let to = listener.local_addr().unwrap();
    let client = netns::run_in(Some(a.name()), || std::net::TcpStream::connect(to))
        .unwrap()
        .unwrap();
    let (_conn, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());

    netns::set_sysctl(Some(b.name()), "net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(
        netns::read_sysctl(Some(b.name()), "net.ipv4.ip_forward").unwrap(),
        "1"
    );
    assert_eq!(
        netns::read_sysctl(Some(a.name()), "net.ipv4.ip_forward").unwrap(),
        "0"
    );

    let inside = netns::run_in(Some(a.name()), || {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    })
    .unwrap();
    let outside = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    assert_ne!(inside, outside);
    netns::veth_pair(Some(a.name()), "tmp0", "tmp1", None).unwrap();
    netns::rename_link(Some(a.name()), "tmp1", "eth7").unwrap();
    assert!(common::sh(a.name(), &["ip", "link"]).contains("eth7@tmp0"));
    netns::delete_link(Some(a.name()), "eth7").unwrap();
    netns::delete_link(Some(a.name()), "eth7").unwrap();
    assert!(!common::sh(a.name(), &["ip", "link"]).contains("tmp0"));

    drop(a);
    assert!(!netns::exists(&na));
    assert!(matches!(
        netns::run_in(Some(&na), || ()),
        Err(plumbing::PlumbError::NetnsMissing(_))
    ));
}
