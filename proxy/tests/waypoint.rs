//! Waypoints without root, on loopback: a destination behind a waypoint is never reached
//! around it. The echo server is a plain-TCP workload, so a proxy that ignored the
//! waypoint would deliver to it directly and the echo would come back.

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
