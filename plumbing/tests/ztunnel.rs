//! Root-only namespace tests of the ztunnel pod side: up → check → up again → down back
//! to pristine, with a foreign PREROUTING rule surviving and keeping its place.

mod common;

use std::net::Ipv4Addr;

use plumbing::netns::{self, NetnsGuard};
use plumbing::{DriftKind, TunnelKind, ZtunnelInput};

fn input() -> ZtunnelInput {
    ZtunnelInput {
        ztunnel_ip: Ipv4Addr::new(10, 244, 1, 2),
        gateway_ip: Ipv4Addr::new(10, 244, 1, 1),
        eth0: "eth0".into(),
        tunnel: TunnelKind::Geneve,
    }
}

fn pod_netns() -> (NetnsGuard, NetnsGuard) {
    let node = NetnsGuard::new(&common::unique("zn")).unwrap();
    let pod = NetnsGuard::new(&common::unique("zp")).unwrap();
    netns::veth_pair(Some(node.name()), "vzt", "eth0", Some(pod.name())).unwrap();
    netns::add_address(Some(pod.name()), "eth0", Ipv4Addr::new(10, 244, 1, 2), 24).unwrap();
    netns::set_link_up(Some(pod.name()), "eth0").unwrap();
    (node, pod)
}

#[test]
fn ztunnel_up_check_down_round_trip() {
    if !common::can_run("ztunnel_up_check_down_round_trip") {
        return;
    }
    let (_node, pod) = pod_netns();
    let ns = Some(pod.name());
    common::sh(
        pod.name(),
        &[
            "iptables",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-p",
            "udp",
            "-j",
            "MARK",
            "--set-xmark",
            "0x9/0x9",
        ],
    );
    let pristine = common::snapshot(pod.name());

    let up = plumbing::ztunnel_up(ns, &input()).unwrap();
    assert!(!up.created.is_empty());
    let check = plumbing::ztunnel_check(ns, &input()).unwrap();
    assert!(check.is_clean(), "{:#?}", check.drift);
    let rules = common::sh(pod.name(), &["ip", "rule"]);
    assert!(
        rules.contains("20000:\tfrom all fwmark 0x400/0xfff lookup 100"),
        "{rules}"
    );
    assert!(
        rules.contains("20003:\tfrom all fwmark 0x4d3/0xfff lookup 100"),
        "{rules}"
    );
    let t100 = common::sh(pod.name(), &["ip", "route", "show", "table", "100"]);
    assert_eq!(t100.trim(), "local default dev lo scope host");
    assert_eq!(
        netns::read_sysctl(ns, "net.ipv4.conf.pistioin.rp_filter").unwrap(),
        "2"
    );

    let after_up = common::snapshot(pod.name());
    assert!(plumbing::ztunnel_up(ns, &input())
        .unwrap()
        .created
        .is_empty());
    assert_eq!(common::snapshot(pod.name()), after_up);

    // Drift: one TPROXY rule deleted by hand is reported, and `up` restores the order.
    let spec =
        "-i pistioout -p tcp -j TPROXY --on-port 15001 --on-ip 127.0.0.1 --tproxy-mark 0x400/0xfff";
    let mut del = vec!["iptables", "-t", "mangle", "-D", "PREROUTING"];
    del.extend(spec.split(' '));
    common::sh(pod.name(), &del);
    let drift = plumbing::ztunnel_check(ns, &input()).unwrap().drift;
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0].kind, DriftKind::Missing);
    plumbing::ztunnel_up(ns, &input()).unwrap();
    assert!(plumbing::ztunnel_check(ns, &input()).unwrap().is_clean());
    assert_eq!(
        common::snapshot(pod.name()),
        after_up,
        "repair changed rule order"
    );

    assert!(!plumbing::ztunnel_down(ns, &input())
        .unwrap()
        .removed
        .is_empty());
    assert_eq!(common::snapshot(pod.name()), pristine);
}
