//! Root-only namespace tests of the node side: up → check → up again → pod add/del →
//! drift → down back to pristine, with foreign objects surviving, and clean failures.

mod common;

use std::net::Ipv4Addr;

use plumbing::netns::{self, NetnsGuard};
use plumbing::{DriftKind, NodeInput, PlumbError, RouteSpec, Scope, TunnelKind};

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const ZT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);

/// A node netns with a ztunnel pod netns behind veth `vzt` (node) ↔ `eth0` (pod).
fn topology(tag: &str, zt_veth_up: bool) -> (NetnsGuard, NetnsGuard) {
    let node = NetnsGuard::new(&common::unique(tag)).unwrap();
    let pod = NetnsGuard::new(&common::unique(&format!("{tag}z"))).unwrap();
    netns::veth_pair(Some(node.name()), "vzt", "eth0", Some(pod.name())).unwrap();
    netns::add_address(Some(node.name()), "vzt", GW, 32).unwrap();
    netns::add_address(Some(pod.name()), "eth0", ZT, 24).unwrap();
    netns::set_link_up(Some(pod.name()), "eth0").unwrap();
    if zt_veth_up {
        netns::set_link_up(Some(node.name()), "vzt").unwrap();
        let host = RouteSpec::new(254, ZT, 32).dev("vzt").scope(Scope::Host);
        netns::add_route(Some(node.name()), &host).unwrap();
    }
    (node, pod)
}

fn input(pods: &[Ipv4Addr]) -> NodeInput {
    NodeInput {
        gateway_ip: GW,
        ztunnel_ip: ZT,
        ztunnel_veth: "vzt".into(),
        pod_ips: pods.to_vec(),
        tunnel: TunnelKind::Geneve,
    }
}

/// Objects that are not ours and must survive up/down untouched.
fn add_foreign_objects(ns: &str) {
    for cmd in [
        "iptables -t mangle -N FOREIGN",
        "iptables -t mangle -A FOREIGN -p tcp -j MARK --set-xmark 0x1/0x1",
        "iptables -t mangle -A PREROUTING -j FOREIGN",
        "iptables -t nat -A POSTROUTING -s 10.9.0.0/16 -j MASQUERADE",
        "ip rule add priority 200 fwmark 0x7 lookup 50",
        "ip route add 10.50.0.0/16 dev lo table 50",
        "ipset create other-set hash:ip",
        "ipset add other-set 10.9.9.9",
    ] {
        common::sh(ns, &cmd.split(' ').collect::<Vec<_>>());
    }
}

#[test]
fn node_up_check_pod_down_round_trip() {
    if !common::can_run("node_up_check_pod_down_round_trip") {
        return;
    }
    let (node, _pod) = topology("n", true);
    let ns = Some(node.name());
    add_foreign_objects(node.name());
    let pristine = common::snapshot(node.name());
    let pod1 = Ipv4Addr::new(10, 244, 1, 4);

    let up = plumbing::node_up(ns, &input(&[pod1])).unwrap();
    assert!(!up.created.is_empty());
    let link = common::sh(node.name(), &["ip", "-d", "link", "show", "istioin"]);
    assert!(
        link.contains(up.kind.name()),
        "report says {:?}, kernel shows {link}",
        up.kind
    );
    let mangle = common::sh(node.name(), &["iptables-save", "-t", "mangle"]);
    assert!(
        mangle.contains(&format!("--dport {} -j RETURN", up.kind.udp_port())),
        "{mangle}"
    );
    let check = plumbing::node_check(ns, &input(&[pod1])).unwrap();
    assert!(check.is_clean(), "{:#?}", check.drift);

    let after_up = common::snapshot(node.name());
    let again = plumbing::node_up(ns, &input(&[pod1])).unwrap();
    assert_eq!(again.created, Vec::<String>::new());
    assert_eq!(
        common::snapshot(node.name()),
        after_up,
        "second up changed something"
    );

    let pod2 = Ipv4Addr::new(10, 244, 1, 7);
    plumbing::pod_add(ns, &input(&[pod1]), pod2).unwrap();
    let (added, removed) = common::line_diff(&after_up, &common::snapshot(node.name()));
    let counted = |v: &[String]| {
        v.iter()
            .filter(|l| !l.starts_with("Number of entries"))
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counted(&removed),
        Vec::<String>::new(),
        "pod add removed something"
    );
    assert_eq!(
        counted(&added),
        [
            "10.244.1.7 via 192.168.126.2 dev istioin table 100 src 10.244.1.1",
            "10.244.1.7"
        ],
        "pod add = one route + one member"
    );
    assert!(plumbing::node_check(ns, &input(&[pod1, pod2]))
        .unwrap()
        .is_clean());
    plumbing::pod_del(ns, &input(&[pod1]), pod2).unwrap();
    assert_eq!(
        common::snapshot(node.name()),
        after_up,
        "pod add+del left something"
    );

    common::sh(node.name(), &["ip", "rule", "del", "priority", "102"]);
    let drift = plumbing::node_check(ns, &input(&[pod1])).unwrap();
    assert_eq!(drift.drift.len(), 1, "{:#?}", drift.drift);
    assert_eq!(drift.drift[0].kind, DriftKind::Missing);
    assert!(drift.drift[0].object.starts_with("rule 102"));
    plumbing::node_up(ns, &input(&[pod1])).unwrap();
    assert!(plumbing::node_check(ns, &input(&[pod1]))
        .unwrap()
        .is_clean());

    let down = plumbing::node_down(ns, &input(&[pod1])).unwrap();
    assert!(!down.removed.is_empty());
    assert_eq!(
        common::snapshot(node.name()),
        pristine,
        "down left or removed something"
    );
    assert!(!plumbing::node_check(ns, &input(&[pod1]))
        .unwrap()
        .is_clean());
    assert!(
        plumbing::node_down(ns, &input(&[pod1]))
            .unwrap()
            .removed
            .is_empty(),
        "second down removed something"
    );
}

#[test]
fn conflicting_route_or_rule_fails_cleanly() {
    if !common::can_run("conflicting_route_or_rule_fails_cleanly") {
        return;
    }
    let (node, _pod) = topology("c", true);
    let ns = Some(node.name());
    for (setup, undo, object) in [
        (
            "ip route add 10.1.0.0/16 dev lo table 101",
            "ip route del 10.1.0.0/16 dev lo table 101",
            "route in table 101",
        ),
        (
            "ip rule add priority 101 lookup 7",
            "ip rule del priority 101",
            "rule at priority 101",
        ),
    ] {
        common::sh(node.name(), &setup.split(' ').collect::<Vec<_>>());
        let pristine = common::snapshot(node.name());
        match plumbing::node_up(ns, &input(&[])) {
            Err(PlumbError::Conflict { object: o, .. }) => assert_eq!(o, object),
            other => panic!("expected a conflict on {object}, got {other:?}"),
        }
        assert_eq!(
            common::snapshot(node.name()),
            pristine,
            "failed up left objects behind"
        );
        common::sh(node.name(), &undo.split(' ').collect::<Vec<_>>());
    }
}

#[test]
fn failure_midway_rolls_back_everything() {
    if !common::can_run("failure_midway_rolls_back_everything") {
        return;
    }
    // The ztunnel veth exists but is down: tunnels, ipset and the first route get created,
    // then the route over the down veth fails (ENETDOWN) and everything is undone.
    let (node, _pod) = topology("r", false);
    let pristine = common::snapshot(node.name());
    let err =
        plumbing::node_up(Some(node.name()), &input(&[Ipv4Addr::new(10, 244, 1, 4)])).unwrap_err();
    assert!(
        matches!(
            err,
            PlumbError::Netlink {
                op: "add route",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(common::snapshot(node.name()), pristine);
    let links = common::sh(node.name(), &["ip", "link"]);
    assert!(
        !links.contains("istioin") && !links.contains("istioout"),
        "{links}"
    );
}

#[test]
fn missing_ztunnel_veth_is_named() {
    if !common::can_run("missing_ztunnel_veth_is_named") {
        return;
    }
    let node = NetnsGuard::new(&common::unique("m")).unwrap();
    let err = plumbing::node_up(Some(node.name()), &input(&[])).unwrap_err();
    assert!(
        matches!(&err, PlumbError::LinkMissing { dev, .. } if dev == "vzt"),
        "{err}"
    );
    assert!(err.to_string().contains("--ztunnel-veth"), "{err}");
}
