//! Which routes the same-node fast path may carry (pure).

use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::config::{resolve_from, LocalConfig, RoundRobin};

/// node-a holds a client, a server, a pod behind its own waypoint, the waypoint pod, a
/// TCP-only pod and the endpoint of a service whose waypoint is the same pod; a server on
/// node-b is remote.
const NODE: &str = r#"
workloads:
- {name: client, namespace: ns, serviceAccount: client, workloadIps: ["10.0.0.1"], protocol: HBONE, node: node-a, services: {}}
- name: server
  namespace: ns
  serviceAccount: server
  workloadIps: ["10.0.0.2"]
  protocol: HBONE
  node: node-a
  services: {"ns/open.ns.svc.cluster.local": {}}
- name: guarded
  namespace: ns
  serviceAccount: guarded
  workloadIps: ["10.0.0.3"]
  protocol: HBONE
  node: node-a
  waypoint: {destination: "/10.0.0.9", hboneMtlsPort: 15008}
  services: {}
- {name: waypoint, namespace: ns, serviceAccount: waypoint, workloadIps: ["10.0.0.9"], protocol: HBONE, node: node-a, services: {}}
- {name: legacy, namespace: ns, serviceAccount: legacy, workloadIps: ["10.0.0.4"], protocol: TCP, node: node-a, services: {}}
- name: behind
  namespace: ns
  serviceAccount: behind
  workloadIps: ["10.0.0.5"]
  protocol: HBONE
  node: node-a
  services: {"ns/walled.ns.svc.cluster.local": {}}
- {name: far, namespace: ns, serviceAccount: far, workloadIps: ["10.0.1.2"], protocol: HBONE, node: node-b, services: {}}
services:
- {name: open, namespace: ns, hostname: open.ns.svc.cluster.local, vips: ["/10.96.0.1"], ports: {80: 8080}}
- name: walled
  namespace: ns
  hostname: walled.ns.svc.cluster.local
  vips: ["/10.96.0.2"]
  ports: {80: 8080}
  waypoint: {destination: "/10.0.0.9", hboneMtlsPort: 15008}
"#;

fn snap() -> Snapshot {
    let local = LocalConfig::from_yaml("node.yaml", NODE).expect("parses");
    Snapshot::new(local, Some("node-a")).expect("valid")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What the fast path makes of a connection from `src` to `dst`, routed as outbound does.
fn direct(snap: &Snapshot, src: &str, dst: &str) -> Option<Direct> {
    let dst: SocketAddr = dst.parse().unwrap();
    let route = resolve_from(snap, &mut RoundRobin::new(), Some(ip(src)), dst, 15008).unwrap();
    eligible(snap, ip(src), &route, 15008)
}

#[test]
fn a_local_pod_to_a_local_pod_goes_direct_as_the_source_identity() {
    let s = snap();
    let d = direct(&s, "10.0.0.1", "10.0.0.2:8080").expect("fast path");
    assert_eq!(d.authority, "10.0.0.2:8080".parse().unwrap());
    assert_eq!(d.hbone_addr, "10.0.0.2:15008".parse().unwrap());
    assert_eq!(
        d.src_identity.to_string(),
        "spiffe://cluster.local/ns/ns/sa/client"
    );
    let by_service = direct(&s, "10.0.0.1", "10.96.0.1:80").expect("service endpoint");
    assert_eq!(by_service.authority, "10.0.0.2:8080".parse().unwrap());
}

#[test]
fn a_waypoint_is_never_bypassed() {
    let s = snap();
    // A workload's own waypoint, and a service's, both local: the tunnel to it stays.
    assert_eq!(direct(&s, "10.0.0.1", "10.0.0.3:8080"), None);
    assert_eq!(direct(&s, "10.0.0.1", "10.96.0.2:80"), None);
    // Even a route read as direct to the guarded pod is refused by its waypoint.
    let route = Route::Hbone {
        hbone_addr: "10.0.0.3:15008".parse().unwrap(),
        authority: "10.0.0.3:8080".parse().unwrap(),
        dst_identity: s.identity(s.workload_by_ip(ip("10.0.0.3")).unwrap()),
        service: None,
    };
    assert_eq!(eligible(&s, ip("10.0.0.1"), &route, 15008), None);
    let route = Route::Hbone {
        hbone_addr: "10.0.0.5:15008".parse().unwrap(),
        authority: "10.0.0.5:8080".parse().unwrap(),
        dst_identity: s.identity(s.workload_by_ip(ip("10.0.0.5")).unwrap()),
        service: Some("walled.ns.svc.cluster.local".into()),
    };
    assert_eq!(eligible(&s, ip("10.0.0.1"), &route, 15008), None);
}

#[test]
fn remote_plaintext_and_unknown_ends_keep_their_paths() {
    let s = snap();
    assert_eq!(direct(&s, "10.0.0.1", "10.0.1.2:8080"), None, "remote");
    assert_eq!(direct(&s, "10.0.0.1", "10.0.0.4:8080"), None, "TCP pod");
    assert_eq!(direct(&s, "10.0.1.2", "10.0.0.2:8080"), None, "remote src");
    assert_eq!(direct(&s, "10.7.7.7", "10.0.0.2:8080"), None, "unknown src");
}
