//! The outbound leg driven with a context built here, without a core or a listener:
//! where a connection goes.

use std::net::SocketAddr;

use super::*;
use crate::config::{LocalConfig, Snapshot};
use crate::runtime::handoff::Handoff;

/// A service with an endpoint on this node and one on node-b, and its client here.
const NODE: &str = r#"
workloads:
- {name: client, namespace: ns, serviceAccount: client, workloadIps: ["10.0.0.1"], protocol: HBONE, node: node-a, services: {}}
- {name: near, namespace: ns, serviceAccount: server, workloadIps: ["10.0.0.2"], protocol: HBONE, node: node-a, services: {"ns/echo.ns.svc.cluster.local": {}}}
- {name: far, namespace: ns, serviceAccount: server, workloadIps: ["10.0.1.2"], protocol: HBONE, node: node-b, services: {"ns/echo.ns.svc.cluster.local": {}}}
services:
- {name: echo, namespace: ns, hostname: echo.ns.svc.cluster.local, vips: ["/10.96.0.1"], ports: {80: 8080}}
"#;

fn context() -> Context {
    let local = LocalConfig::from_yaml("node.yaml", NODE).expect("parses");
    let snapshot = Snapshot::new(local, Some("node-a")).expect("valid");
    let (handoff, _inboxes) = Handoff::new(1);
    let config = Config::default();
    Context::new(crate::context::for_test(snapshot), &config, handoff)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The CONNECT authority and HBONE address `target` is routed to from the client.
fn routed(cx: &Context, target: Target) -> (SocketAddr, SocketAddr) {
    match route(cx, "10.0.0.1".parse().unwrap(), &target).expect("routes") {
        Route::Hbone {
            authority,
            hbone_addr,
            ..
        } => (authority, hbone_addr),
        other => panic!("expected HBONE, got {other:?}"),
    }
}

#[test]
fn a_service_vip_takes_turns_over_its_endpoints_in_the_contexts_round_robin() {
    let cx = context();
    let vip = Target::Addr(addr("10.96.0.1:80"));
    let first = routed(&cx, vip.clone());
    let second = routed(&cx, vip.clone());
    let mut both = [first.0, second.0];
    both.sort();
    assert_eq!(both, [addr("10.0.0.2:8080"), addr("10.0.1.2:8080")]);
    assert_eq!(routed(&cx, vip.clone()), first, "the turn comes back");
    let hbone_port = Config::default().hbone_port;
    assert_eq!(first.1, SocketAddr::new(first.0.ip(), hbone_port));
    // By name as by VIP (SOCKS5 clients may send the hostname).
    let by_name = Target::Domain("echo.ns.svc.cluster.local".into(), 80);
    assert_eq!(routed(&cx, by_name).1.port(), hbone_port);
}

#[test]
fn a_proxy_port_is_refused_as_a_loop() {
    let cx = context();
    for port in [15001, 15006, 15008] {
        let target = addr(&format!("10.0.0.2:{port}"));
        let routed = route(&cx, "10.0.0.1".parse().unwrap(), &Target::Addr(target));
        assert!(
            matches!(routed, Err(ProxyError::Loop(a)) if a == target),
            "{port}: {routed:?}"
        );
    }
}
