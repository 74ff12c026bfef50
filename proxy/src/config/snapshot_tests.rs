use std::net::IpAddr;

use super::super::test_fixtures::{mesh, MESH};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn looks_up_workloads_and_services() {
    let snap = mesh();
    assert_eq!(
        snap.workload_by_ip(ip("10.244.1.11")).unwrap().name,
        "httpbin-2"
    );
    assert!(snap.workload_by_ip(ip("10.96.0.105")).is_none());
    let svc = snap.service_by_vip(ip("10.96.0.105")).unwrap();
    assert_eq!(svc.name, "httpbin");
    let by_name = snap.service_by_hostname("legacy.legacy.svc.cluster.local");
    assert_eq!(by_name.unwrap().vips[0].ip, ip("10.96.0.20"));
    assert!(snap.service_by_hostname("nope.svc").is_none());
    assert!(snap.service_by_vip(ip("10.244.1.10")).is_none());
}

#[test]
fn local_means_on_our_node() {
    let snap = mesh();
    assert_eq!(snap.node(), Some("node-a"));
    assert!(snap.is_local(ip("10.244.1.10")));
    assert!(
        !snap.is_local(ip("10.244.2.12")),
        "httpbin-3 runs on node-b"
    );
    assert!(
        !snap.is_local(ip("192.0.2.1")),
        "unknown IPs are never local"
    );

    let local = LocalConfig::from_yaml("mesh.yaml", MESH).unwrap();
    let anywhere = Snapshot::new(local, None).unwrap();
    assert!(anywhere.is_local(ip("10.244.2.12")));
    assert!(!anywhere.is_local(ip("192.0.2.1")));
}

#[test]
fn identity_of_a_workload() {
    let snap = mesh();
    let w = snap.workload_by_ip(ip("10.244.1.4")).unwrap();
    assert_eq!(
        snap.identity(w).to_string(),
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
}

#[test]
fn endpoints_carry_their_port_overrides() {
    let snap = mesh();
    let svc = snap
        .service_by_hostname("httpbin.default.svc.cluster.local")
        .unwrap();
    let eps = snap.endpoints(svc);
    let ips: Vec<IpAddr> = eps.iter().map(|e| e.ip).collect();
    assert_eq!(
        ips,
        [ip("10.244.1.10"), ip("10.244.1.11"), ip("10.244.2.12")]
    );
    assert_eq!(eps[1].workload().name, "httpbin-2");
    assert_eq!(eps[1].target_port(8000), Some(9090));
    assert_eq!(eps[0].target_port(8000), None);
    let empty = snap
        .service_by_hostname("empty.default.svc.cluster.local")
        .unwrap();
    assert!(snap.endpoints(empty).is_empty());
    let stranger = Service {
        hostname: "not-in-snapshot".into(),
        ..Service::default()
    };
    assert!(snap.endpoints(&stranger).is_empty());
}

#[test]
fn new_rejects_an_invalid_config_built_in_code() {
    let w = |name: &str| Workload {
        name: name.into(),
        namespace: "ns".into(),
        workload_ips: vec![ip("10.0.0.1")].into(),
        ..Workload::default()
    };
    let local = LocalConfig {
        workloads: vec![w("a"), w("b")],
        ..LocalConfig::default()
    };
    let msg = Snapshot::new(local, None).unwrap_err().to_string();
    assert!(msg.contains("both claim IP 10.0.0.1"), "{msg}");
    assert!(Snapshot::empty(None).workloads().is_empty());
}
