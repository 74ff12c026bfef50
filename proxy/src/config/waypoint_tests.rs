use std::net::SocketAddr;

use super::*;
use crate::config::resolve::{resolve_from, resolve_hostname, Route};
use crate::config::LocalConfig;

/// A namespace with a waypoint (workload `waypoint`, service VIP 10.10.0.2), a service
/// and a pod using it (the service by hostname, the pod by VIP), one without, and a
/// service whose waypoint does not exist.
pub(crate) const WAYPOINTS: &str = r#"
workloads:
- uid: k//Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["10.0.0.1"]
  protocol: HBONE
  services: {}
- uid: k//Pod/default/waypoint
  name: waypoint
  workloadName: waypoint
  namespace: default
  serviceAccount: waypoint
  workloadIps: ["10.0.0.3"]
  protocol: HBONE
  services:
    "default/waypoint.default.svc.cluster.local": {}
- uid: k//Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  workloadIps: ["10.0.0.2"]
  protocol: HBONE
  waypoint:
    destination: "/10.10.0.2"
    hboneMtlsPort: 15008
  services:
    "default/server.default.svc.cluster.local": {}
    "default/ghost.default.svc.cluster.local": {}
    "default/bare.default.svc.cluster.local": {}
- uid: k//Pod/default/plain
  name: plain
  namespace: default
  serviceAccount: plain
  workloadIps: ["10.0.0.4"]
  protocol: HBONE
  services:
    "default/plain.default.svc.cluster.local": {}
services:
- name: waypoint
  namespace: default
  hostname: waypoint.default.svc.cluster.local
  vips: ["/10.10.0.2"]
  ports: {15008: 15008}
- name: server
  namespace: default
  hostname: server.default.svc.cluster.local
  vips: ["/10.10.0.1"]
  ports: {80: 8080}
  waypoint:
    destination: "default/waypoint.default.svc.cluster.local"
    hboneMtlsPort: 15008
- name: plain
  namespace: default
  hostname: plain.default.svc.cluster.local
  vips: ["/10.10.0.4"]
  ports: {80: 8080}
- name: bare
  namespace: default
  hostname: bare.default.svc.cluster.local
  vips: ["/10.10.0.5"]
  ports: {80: 8080}
- name: ghost
  namespace: default
  hostname: ghost.default.svc.cluster.local
  vips: ["/10.10.0.9"]
  ports: {80: 8080}
  waypoint:
    destination: "/10.99.0.9"
    hboneMtlsPort: 15008
"#;

fn snap() -> Snapshot {
    let local = LocalConfig::from_yaml("waypoints.yaml", WAYPOINTS).expect("parses");
    Snapshot::new(local, None).expect("valid")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn gw(dest: &str) -> GatewayAddress {
    GatewayAddress {
        destination: dest.parse().unwrap(),
        hbone_mtls_port: 15008,
    }
}

#[test]
fn destinations_parse_as_ztunnel_reads_them() {
    let by_ip: GatewayDestination = "net1/10.1.2.3".parse().unwrap();
    assert_eq!(
        by_ip,
        GatewayDestination::Address(NetworkAddress {
            network: "net1".into(),
            ip: ip("10.1.2.3")
        })
    );
    let by_name: GatewayDestination = "ns/wp.ns.svc.cluster.local".parse().unwrap();
    assert_eq!(
        by_name,
        GatewayDestination::Hostname {
            namespace: "ns".into(),
            hostname: "wp.ns.svc.cluster.local".into()
        }
    );
    assert!("10.1.2.3".parse::<GatewayDestination>().is_err());
    for s in [
        "/10.1.2.3",
        "net1/10.1.2.3",
        "ns/wp.ns.svc.cluster.local",
        "/::1",
    ] {
        assert_eq!(s.parse::<GatewayDestination>().unwrap().to_string(), s);
    }
}

#[test]
fn waypoints_are_read_and_shown_in_the_config_dump_form() {
    let local = snap().to_local_config();
    let server = local.workloads.iter().find(|w| w.name == "server").unwrap();
    assert_eq!(server.waypoint, Some(Box::new(gw("/10.10.0.2"))));
    let svc = local.services.iter().find(|s| s.name == "server").unwrap();
    assert_eq!(
        svc.waypoint,
        Some(Box::new(gw("default/waypoint.default.svc.cluster.local")))
    );
    let yaml = serde_yaml::to_string(&local).unwrap();
    assert!(
        yaml.contains("waypoint:\n    destination: /10.10.0.2\n    hboneMtlsPort: 15008"),
        "{yaml}"
    );
    // The dump reads back as the same configuration (ztunnel's shape both ways).
    let again = LocalConfig::from_yaml("dump", &yaml).unwrap();
    assert_eq!(again, local);
}

#[test]
fn a_waypoint_with_an_unknown_field_or_no_port_is_refused() {
    let bad = WAYPOINTS.replace("hboneMtlsPort: 15008\n  services:", "services:");
    assert!(LocalConfig::from_yaml("x", &bad).is_err());
    let bad = WAYPOINTS.replacen(
        "hboneMtlsPort: 15008",
        "hboneMtlsPort: 15008\n    port: 1",
        1,
    );
    assert!(LocalConfig::from_yaml("x", &bad).is_err());
}

#[test]
fn xds_carries_the_waypoint_both_ways() {
    let local = snap().to_local_config();
    let res = crate::config::xds::encode(&local).unwrap();
    use crate::config::xds::{decode_address, Address};
    for (_, any) in &res.addresses {
        let (kind, name, wp) = match decode_address(any).unwrap() {
            Address::Workload(w) => ("workload", w.name.to_string(), w.waypoint.clone()),
            Address::Service(s) => ("service", s.name.clone(), s.waypoint.clone()),
        };
        let want = match (kind, name.as_str()) {
            ("service", "server") => Some(gw("default/waypoint.default.svc.cluster.local")),
            ("workload", "server") => Some(gw("/10.10.0.2")),
            ("service", "ghost") => Some(gw("/10.99.0.9")),
            _ => None,
        };
        assert_eq!(wp.as_deref(), want.as_ref(), "{kind} {name}");
    }
}

#[test]
fn an_xds_waypoint_without_destination_refuses_its_resource() {
    let empty = zring_xds::workload::GatewayAddress {
        destination: None,
        hbone_mtls_port: 15008,
    };
    assert!(from_xds(Some(empty)).is_err());
    let mut big = to_xds(&gw("/10.0.0.3"));
    big.hbone_mtls_port = 70000;
    assert!(from_xds(Some(big)).is_err());
    assert_eq!(from_xds(None).unwrap(), None);
}

#[test]
fn a_waypoint_is_found_by_vip_workload_ip_or_hostname() {
    let snap = snap();
    let mut rr = RoundRobin::new();
    for dest in [
        "/10.10.0.2",
        "/10.0.0.3",
        "default/waypoint.default.svc.cluster.local",
    ] {
        let hop = find(&snap, &mut rr, &gw(dest)).unwrap();
        assert_eq!(hop.addr, sa("10.0.0.3:15008"), "{dest}");
        assert_eq!(hop.workload.name, "waypoint");
    }
    for missing in ["/10.99.0.9", "other/waypoint.default.svc.cluster.local"] {
        let err = find(&snap, &mut rr, &gw(missing)).unwrap_err();
        assert!(matches!(err, ResolveError::UnknownWaypoint { .. }), "{err}");
    }
    // A waypoint service that does not expose the HBONE port leads nowhere.
    let wrong_port = GatewayAddress {
        hbone_mtls_port: 15009,
        ..gw("/10.10.0.2")
    };
    assert!(find(&snap, &mut rr, &wrong_port).is_err());
}

#[test]
fn only_the_waypoints_own_workloads_come_from_it() {
    let snap = snap();
    let w = |ip_: &str| snap.workload_by_ip(ip(ip_)).unwrap();
    for dest in [
        "/10.10.0.2",
        "/10.0.0.3",
        "default/waypoint.default.svc.cluster.local",
    ] {
        assert!(is_from(&snap, &gw(dest), w("10.0.0.3"), ip("10.0.0.3")));
        assert!(!is_from(&snap, &gw(dest), w("10.0.0.1"), ip("10.0.0.1")));
    }
    assert!(!is_from(
        &snap,
        &gw("/10.99.0.9"),
        w("10.0.0.3"),
        ip("10.0.0.3")
    ));
}

/// Where each connection of the matrix goes: `Ok(route)` or the refusal's waypoint.
fn route(snap: &Snapshot, src: &str, dst: &str) -> Result<Route, ResolveError> {
    resolve_from(snap, &mut RoundRobin::new(), Some(ip(src)), sa(dst), 15008)
}

fn hbone(hbone_addr: &str, authority: &str, sa_name: &str, service: Option<&str>) -> Route {
    Route::Hbone {
        hbone_addr: sa(hbone_addr),
        authority: sa(authority),
        dst_identity: crate::identity::Identity::new("cluster.local", "default", sa_name),
        service: service.map(str::to_string),
    }
}

const SERVER: &str = "server.default.svc.cluster.local";

#[test]
fn traffic_for_a_waypoint_is_handed_to_it_with_the_address_the_client_asked_for() {
    let snap = snap();
    // Service-addressed: the VIP and service port, untranslated; the service named.
    assert_eq!(
        route(&snap, "10.0.0.1", "10.10.0.1:80").unwrap(),
        hbone("10.0.0.3:15008", "10.10.0.1:80", "waypoint", Some(SERVER))
    );
    // By hostname (SOCKS5): the service's VIP.
    let by_name = resolve_hostname(
        &snap,
        &mut RoundRobin::new(),
        Some(ip("10.0.0.1")),
        (SERVER, 80),
        15008,
    );
    assert_eq!(
        by_name.unwrap(),
        hbone("10.0.0.3:15008", "10.10.0.1:80", "waypoint", Some(SERVER))
    );
    // Workload-addressed: the pod's own address.
    assert_eq!(
        route(&snap, "10.0.0.1", "10.0.0.2:8080").unwrap(),
        hbone("10.0.0.3:15008", "10.0.0.2:8080", "waypoint", None)
    );
    // The waypoint calling the service goes through the service's waypoint again (only
    // workload-addressed traffic from the waypoint skips it).
    assert_eq!(
        route(&snap, "10.0.0.3", "10.10.0.1:80").unwrap(),
        hbone("10.0.0.3:15008", "10.10.0.1:80", "waypoint", Some(SERVER))
    );
}

#[test]
fn a_waypoint_that_cannot_be_found_refuses_and_names_it() {
    let snap = snap();
    let err = route(&snap, "10.0.0.1", "10.10.0.9:80").unwrap_err();
    assert_eq!(err.waypoint(), Some("/10.99.0.9:15008"), "{err}");
}

#[test]
fn traffic_without_a_waypoint_or_from_it_goes_direct() {
    let snap = snap();
    let direct = |src, dst, hbone_addr: &str, authority: &str, sa_name: &str| {
        let Route::Hbone {
            hbone_addr: h,
            authority: a,
            dst_identity,
            ..
        } = route(&snap, src, dst).unwrap()
        else {
            panic!("{src} -> {dst}: not HBONE");
        };
        assert_eq!((h, a), (sa(hbone_addr), sa(authority)), "{src} -> {dst}");
        assert_eq!(
            dst_identity.to_string(),
            format!("spiffe://cluster.local/ns/default/sa/{sa_name}")
        );
    };
    direct(
        "10.0.0.1",
        "10.10.0.4:80",
        "10.0.0.4:15008",
        "10.0.0.4:8080",
        "plain",
    );
    direct(
        "10.0.0.1",
        "10.0.0.4:8080",
        "10.0.0.4:15008",
        "10.0.0.4:8080",
        "plain",
    );
    // The waypoint's onward connection to the pod it serves.
    direct(
        "10.0.0.3",
        "10.0.0.2:8080",
        "10.0.0.2:15008",
        "10.0.0.2:8080",
        "server",
    );
    // A service without a waypoint reaches its pod directly even when the pod has one
    // (ztunnel applies a workload's waypoint only to traffic addressed to the pod).
    direct(
        "10.0.0.1",
        "10.10.0.5:80",
        "10.0.0.2:15008",
        "10.0.0.2:8080",
        "server",
    );
}

#[test]
fn metrics_name_the_waypoint_as_destination_and_the_service_asked_for() {
    use crate::runtime::metrics::Labels;
    let snap = snap();
    let route = route(&snap, "10.0.0.1", "10.10.0.1:80").unwrap();
    let l = Labels::outbound(&snap, ip("10.0.0.1"), &route);
    assert_eq!(l.destination.workload, "waypoint");
    assert_eq!(
        l.destination.principal,
        "spiffe://cluster.local/ns/default/sa/waypoint"
    );
    assert_eq!(l.destination_service, SERVER);
    assert_eq!(l.connection_security_policy, "mutual_tls");
}

#[test]
fn a_waypoint_pod_serves_the_destinations_that_name_it() {
    let snap = snap();
    let at_waypoint = |authority: &str| serves(&snap, ip(authority), ip("10.0.0.3"));
    // The server pod (its waypoint: the waypoint service's VIP) and the server service
    // (by hostname).
    assert!(at_waypoint("10.0.0.2"));
    assert!(at_waypoint("10.10.0.1"));
    // No waypoint, a waypoint elsewhere, nothing at all.
    for other in [
        "10.0.0.4",
        "10.10.0.4",
        "10.10.0.9",
        "10.10.0.5",
        "192.0.2.1",
    ] {
        assert!(!at_waypoint(other), "{other}");
    }
    // Another pod is not the server's waypoint.
    assert!(!serves(&snap, ip("10.0.0.2"), ip("10.0.0.1")));
}
