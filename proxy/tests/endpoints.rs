//! Each HTTP listener serves only its own pages: `/config_dump` (workloads, identities,
//! settings) only on the admin listener, `/metrics` only on stats, readiness only on
//! readiness. Loopback, ports chosen by the kernel, no root.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;
use zring::config::Config;
use zring::Proxy;

struct Running {
    _scratch: Scratch,
    proxy: Option<Proxy>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            let _ = p.shutdown();
        }
    }
}

fn start() -> Running {
    let scratch = Scratch::new("endpoints");
    make_certs(scratch.path(), &[id("cluster.local", "default", "httpbin")]);
    let config_path = scratch.path().join("workloads.yaml");
    std::fs::write(
        &config_path,
        mesh_yaml("127.0.0.1", "cluster.local", "127.0.0.2", 80),
    )
    .unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let proxy = zring::start(Config {
        config_path,
        cert_dir: scratch.path().to_path_buf(),
        transparent: false,
        cores: 1,
        outbound_addr: None,
        inbound_addr: None,
        inbound_plaintext_addr: None,
        socks5_addr: None,
        admin_addr: Some(any),
        stats_addr: Some(any),
        readiness_addr: Some(any),
        ..Config::default()
    })
    .expect("start zring");
    Running {
        _scratch: scratch,
        proxy: Some(proxy),
    }
}

/// GET `path` on `addr`: (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

const REVEALING: [&str; 4] = ["/config_dump", "/config_dump?x=1", "/healthz", "/"];

#[test]
fn config_dump_is_served_on_the_admin_listener_only() {
    let r = start();
    let addrs = &r.proxy.as_ref().unwrap().addrs;
    let (code, body) = get(addrs.admin.unwrap(), "/config_dump");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("spiffe://cluster.local/ns/default/sa/httpbin"),
        "admin config dump lists the identities: {body}"
    );
    for addr in [addrs.stats.unwrap(), addrs.readiness.unwrap()] {
        let (code, body) = get(addr, "/config_dump");
        assert_eq!(code, 404, "{addr} served /config_dump: {body}");
        assert!(!body.contains("spiffe://"), "{addr} leaked identities");
    }
}

#[test]
fn stats_listener_serves_metrics_and_nothing_else() {
    let r = start();
    let stats = r.proxy.as_ref().unwrap().addrs.stats.unwrap();
    let (code, body) = get(stats, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("istio_tcp_connections_opened_total"),
        "{body}"
    );
    for path in REVEALING.iter().chain(&["/healthz/ready"]) {
        assert_eq!(get(stats, path).0, 404, "stats listener served {path}");
    }
}

#[test]
fn readiness_listener_serves_readiness_and_nothing_else() {
    let r = start();
    let addrs = &r.proxy.as_ref().unwrap().addrs;
    let ready = addrs.readiness.unwrap();
    assert_eq!(get(ready, "/healthz/ready"), (200, "ready\n".to_string()));
    for path in REVEALING.iter().chain(&["/metrics", "/stats/prometheus"]) {
        assert_eq!(get(ready, path).0, 404, "readiness listener served {path}");
    }
    // Metrics live on the stats listener, not on admin either.
    assert_eq!(get(addrs.admin.unwrap(), "/metrics").0, 404);
}
