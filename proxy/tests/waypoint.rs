//! Waypoints without root, on loopback: a destination behind a waypoint is never reached
//! around it (the echo server of the first test is a plain-TCP workload: a proxy that
//! ignored the waypoint would deliver to it directly and the echo would come back), and
//! through the test waypoint (`testsupport::waypoint`) the destination's zring applies its
//! policy to the waypoint's identity.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use zring::config::Config;

const CLIENT_IP: &str = "127.0.0.1";
const SERVER_IP: &str = "127.0.0.2";

/// The client, a plain-TCP server behind service VIP 10.96.0.105:8000, and waypoints
/// given as `server_waypoint` (on the pod) and `service_waypoint` (on the service).
fn yaml(port: u16, server_waypoint: &str, service_waypoint: &str) -> String {
    format!(
        r#"workloads:
- uid: cluster1//v1/Pod/default/sleep
  name: sleep
  namespace: default
  serviceAccount: sleep
  workloadIps: ["{CLIENT_IP}"]
  protocol: HBONE
  node: node-a
  services: {{}}
- uid: cluster1//v1/Pod/default/httpbin
  name: httpbin
  namespace: default
  serviceAccount: httpbin
  workloadIps: ["{SERVER_IP}"]
  protocol: TCP
  node: node-b
  waypoint: {{destination: "{server_waypoint}", hboneMtlsPort: 15008}}
  services:
    "default/httpbin.default.svc.cluster.local": {{8000: {port}}}
services:
- name: httpbin
  namespace: default
  hostname: httpbin.default.svc.cluster.local
  vips: ["/10.96.0.105"]
  ports: {{8000: {port}}}
  waypoint: {{destination: "{service_waypoint}", hboneMtlsPort: 15008}}
"#
    )
}

fn metrics(stats: SocketAddr) -> String {
    let mut http = std::net::TcpStream::connect(stats).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    body
}

/// Waits until `/metrics` (copied from the cores on their tick) has `line`.
fn wait_for_line(stats: SocketAddr, line: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let body = metrics(stats);
        if body.lines().any(|l| l == line) || std::time::Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A waypoint that exists in no form (no workload, no service at its address) refuses
/// the connection with a metric naming it: never delivered around it.
#[test]
fn a_missing_waypoint_refuses_and_is_counted_by_name() {
    let scratch = Scratch::new("waypoint-missing");
    make_certs(scratch.path(), &[id("cluster.local", "default", "sleep")]);
    let echo = echo_server(&format!("{SERVER_IP}:0"));
    let config_path = scratch.path().join("workloads.yaml");
    let text = yaml(
        echo.port(),
        "/127.0.0.9",
        "default/gone.default.svc.cluster.local",
    );
    std::fs::write(&config_path, text).unwrap();
    let proxy = zring::start(Config {
        node_name: Some("node-a".into()),
        socks5_addr: Some("127.0.0.1:0".parse().unwrap()),
        stats_addr: Some("127.0.0.1:0".parse().unwrap()),
        cores: 1,
        ..base_config(scratch.path(), config_path)
    })
    .expect("start zring");
    let socks = proxy.addrs.socks5.unwrap();
    for target in ["10.96.0.105:8000".parse().unwrap(), echo] {
        let (mut s, code) = socks_connect(socks, target);
        assert_ne!(code, 0, "{target} must be refused, not delivered");
        let mut buf = [0u8; 16];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "{target}");
    }
    let stats = proxy.addrs.stats.unwrap();
    for waypoint in [
        "default/gone.default.svc.cluster.local:15008",
        "/127.0.0.9:15008",
    ] {
        let line = format!("zring_waypoint_refused_total{{waypoint=\"{waypoint}\"}} 1");
        let body = wait_for_line(stats, &line);
        assert!(body.lines().any(|l| l == line), "{line} not in\n{body}");
    }
    let _ = proxy.shutdown();
}

/// Starts the test waypoint on `listener` (a thread with its own runtime, for the rest of
/// the test process): it forwards `routes` (authority → HBONE address, authority).
fn test_waypoint(
    listener: std::net::TcpListener,
    root: &testsupport::certs::Root,
    routes: Vec<(String, SocketAddr, String)>,
) -> testsupport::waypoint::Records {
    use testsupport::waypoint::{self, Next};
    let leaf = root
        .valid_leaf("spiffe://cluster.local/ns/default/sa/waypoint")
        .unwrap();
    let tls = waypoint::server_config(&root.cert_pem, &leaf).unwrap();
    let client = testsupport::hbone::client_config(&root.cert_pem, Some(&leaf)).unwrap();
    let route: waypoint::Route = std::sync::Arc::new(move |authority: &str| {
        let hop = routes.iter().find(|(a, _, _)| a == authority)?;
        Some((hop.1, hop.2.clone()))
    });
    let records = waypoint::Records::default();
    let recs = records.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        testsupport::hbone::runtime().block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let next = Next::Forward { client, route };
            waypoint::serve(l, "waypoint".into(), tls, next, recs).await;
        })
    });
    records
}

/// The destination's L4 policy sees the waypoint's identity, as in ztunnel: a policy that
/// denies the client denies it when it connects directly, and not through the waypoint,
/// which the destination admits as itself. The outbound metrics name the waypoint.
#[test]
fn the_destination_applies_its_policy_to_the_waypoints_identity() {
    let scratch = Scratch::new("waypoint-policy");
    let ids = [
        id("cluster.local", "default", "sleep"),
        id("cluster.local", "default", "httpbin"),
    ];
    make_certs(scratch.path(), &ids);
    let root = testsupport::certs::Root::load(
        &scratch.path().join(zring::tls::ROOT_CERT_FILE),
        &scratch.path().join(zring::tls::ROOT_KEY_FILE),
    )
    .unwrap();
    let echo = echo_server(&format!("{SERVER_IP}:0"));
    let wp_listener = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let wp_port = wp_listener.local_addr().unwrap().port();
    // B first: its HBONE port is where the waypoint forwards.
    let config_path = scratch.path().join("workloads.yaml");
    let write = || {
        let text = format!(
            r#"workloads:
- {{uid: k//Pod/default/sleep, name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["{CLIENT_IP}"], protocol: HBONE, node: node-a, services: {{}}}}
- {{uid: k//Pod/default/waypoint, name: waypoint, namespace: default, serviceAccount: waypoint, workloadIps: ["127.0.0.3"], protocol: HBONE, node: node-w, services: {{}}}}
- uid: k//Pod/default/httpbin
  name: httpbin
  namespace: default
  serviceAccount: httpbin
  workloadIps: ["{SERVER_IP}"]
  protocol: HBONE
  node: node-b
  services:
    "default/httpbin.default.svc.cluster.local": {{8000: {port}}}
    "default/direct.default.svc.cluster.local": {{8000: {port}}}
services:
- name: httpbin
  namespace: default
  hostname: httpbin.default.svc.cluster.local
  vips: ["/10.96.0.105"]
  ports: {{8000: {port}}}
  waypoint: {{destination: "/127.0.0.3", hboneMtlsPort: {wp_port}}}
- {{name: direct, namespace: default, hostname: direct.default.svc.cluster.local, vips: ["/10.96.0.106"], ports: {{8000: {port}}}}}
policies:
- name: deny-sleep
  namespace: default
  scope: Namespace
  action: Deny
  rules:
  - - - serviceAccounts: [{{namespace: default, serviceAccount: sleep}}]
"#,
            port = echo.port()
        );
        std::fs::write(&config_path, text).unwrap();
    };
    write();
    let base = base_config(scratch.path(), config_path.clone());
    let b = zring::start(Config {
        node_name: Some("node-b".into()),
        inbound_addr: Some(format!("{SERVER_IP}:0").parse().unwrap()),
        cores: 1,
        ..base.clone()
    })
    .expect("start zring B");
    let b_hbone = b.addrs.inbound.unwrap();
    let a = zring::start(Config {
        node_name: Some("node-a".into()),
        socks5_addr: Some("127.0.0.1:0".parse().unwrap()),
        stats_addr: Some("127.0.0.1:0".parse().unwrap()),
        hbone_port: b_hbone.port(),
        cores: 1,
        ..base
    })
    .expect("start zring A");
    let pod = format!("{SERVER_IP}:{}", echo.port());
    let records = test_waypoint(
        wp_listener,
        &root,
        vec![("10.96.0.105:8000".into(), b_hbone, pod.clone())],
    );
    let socks = a.addrs.socks5.unwrap();

    // Directly (the service without a waypoint): B denies sleep.
    let (_s, code) = socks_connect(socks, "10.96.0.106:8000".parse().unwrap());
    assert_ne!(code, 0, "B's policy denies sleep when it connects directly");

    // Through the waypoint: B sees the waypoint and lets it in.
    let (mut s, code) = socks_connect(socks, "10.96.0.105:8000".parse().unwrap());
    assert_eq!(code, 0, "through the waypoint");
    s.write_all(b"via the waypoint").unwrap();
    let mut back = [0u8; 16];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"via the waypoint");
    let seen = records.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].authority, "10.96.0.105:8000");
    assert_eq!(
        seen[0].peer.as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/sleep")
    );
    drop(s);

    // A's metrics: the waypoint is the destination, the service the one asked for.
    let wanted = [
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/waypoint\"",
        "destination_service=\"httpbin.default.svc.cluster.local\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/sleep\"",
    ];
    let stats = a.addrs.stats.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let body = loop {
        let body = metrics(stats);
        let hit = body.lines().any(|l| {
            l.starts_with("istio_tcp_connections_opened_total{")
                && wanted.iter().all(|w| l.contains(w))
        });
        if hit || std::time::Instant::now() > deadline {
            break (hit, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.0, "no opened series with {wanted:?} in\n{}", body.1);
    let _ = a.shutdown();
    let _ = b.shutdown();
}

/// ztunnel's waypoint sandwich: zring is the node proxy of a waypoint pod, and a client
/// tunnels to the pod with its destination's address as the authority (as a node proxy
/// hands traffic to a waypoint). The pod gets it on the port asked for; an authority whose
/// destination has no waypoint, or another one, is still refused with 400.
#[test]
fn a_waypoint_pod_receives_what_is_sent_to_it_for_its_destinations() {
    let scratch = Scratch::new("waypoint-sandwich");
    let ids = [
        id("cluster.local", "default", "sleep"),
        id("cluster.local", "default", "waypoint"),
    ];
    make_certs(scratch.path(), &ids);
    let root = testsupport::certs::Root::load(
        &scratch.path().join(zring::tls::ROOT_CERT_FILE),
        &scratch.path().join(zring::tls::ROOT_KEY_FILE),
    )
    .unwrap();
    // The waypoint pod's own server (what the proxy delivers to) on the service port.
    let pod = echo_server("127.0.0.3:0");
    let port = pod.port();
    let config_path = scratch.path().join("workloads.yaml");
    let text = format!(
        r#"workloads:
- {{uid: k//Pod/default/sleep, name: sleep, namespace: default, serviceAccount: sleep, workloadIps: ["{CLIENT_IP}"], protocol: HBONE, node: node-a, services: {{}}}}
- {{uid: k//Pod/default/waypoint, name: waypoint, namespace: default, serviceAccount: waypoint, workloadIps: ["127.0.0.3"], protocol: HBONE, node: node-w, services: {{}}}}
- {{uid: k//Pod/default/httpbin, name: httpbin, namespace: default, serviceAccount: httpbin, workloadIps: ["{SERVER_IP}"], protocol: HBONE, node: node-b, services: {{"default/httpbin.default.svc.cluster.local": {{}}, "default/direct.default.svc.cluster.local": {{}}}}}}
services:
- name: httpbin
  namespace: default
  hostname: httpbin.default.svc.cluster.local
  vips: ["/10.96.0.105"]
  ports: {{{port}: {port}}}
  waypoint: {{destination: "/127.0.0.3", hboneMtlsPort: 15008}}
- {{name: direct, namespace: default, hostname: direct.default.svc.cluster.local, vips: ["/10.96.0.106"], ports: {{{port}: {port}}}}}
"#
    );
    std::fs::write(&config_path, text).unwrap();
    let w = zring::start(Config {
        node_name: Some("node-w".into()),
        inbound_addr: Some("127.0.0.3:0".parse().unwrap()),
        cores: 1,
        ..base_config(scratch.path(), config_path)
    })
    .expect("start the waypoint's zring");
    let hbone = w.addrs.inbound.unwrap();
    let leaf = root
        .valid_leaf("spiffe://cluster.local/ns/default/sa/sleep")
        .unwrap();
    let client = testsupport::hbone::client_config(&root.cert_pem, Some(&leaf)).unwrap();
    testsupport::hbone::runtime().block_on(async move {
        let tls = testsupport::hbone::handshake(hbone, client).await.unwrap();
        let mut conn = testsupport::hbone::h2(tls).await.unwrap();
        let answer = testsupport::hbone::connect(&mut conn, &format!("10.96.0.105:{port}")).await;
        let mut tunnel = answer.tunnel().expect("the waypoint pod's own service");
        assert_eq!(tunnel.echo(b"sandwich").await.unwrap(), b"sandwich");
        for other in [format!("10.96.0.106:{port}"), format!("{SERVER_IP}:{port}")] {
            match testsupport::hbone::connect(&mut conn, &other).await {
                testsupport::hbone::Answer::Status(400, _) => {}
                a => panic!("{other}: {a:?}"),
            }
        }
    });
    let _ = w.shutdown();
}
