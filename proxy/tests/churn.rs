//! Connection churn through both legs: thousands of short connections (SOCKS5 connect,
//! 1-byte echo, close) through zring A → HBONE → zring B → echo server, with zero
//! failures. B is transparent, so every upstream socket binds the client's IP before it
//! connects — the case that ran out of ports under churn before IP_BIND_ADDRESS_NO_PORT.
//!
//! The test thread moves into a fresh anonymous network namespace (it vanishes with the
//! test, nothing to clean up) whose ephemeral port range is narrowed to a few hundred
//! ports, so the TIME_WAIT sockets of a few thousand connections exhaust it for any
//! socket that reserves its port at bind time. Needs root;
//! fails under `CI=true` when it cannot run.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use testsupport::require;
use zring::config::Config;

const CLIENT_IP: &str = "127.0.0.1";
const SERVER_IP: &str = "127.0.0.2";
/// Ephemeral ports in the test's namespace: far fewer than the connections made.
const PORT_RANGE: &str = "40000 40499";
const CONNECTIONS: usize = 3000;
const CONCURRENCY: usize = 16;

/// Moves this thread (and the threads and processes it starts) into a new netns.
fn enter_fresh_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(up.success(), "ip link set lo up failed");
    std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", PORT_RANGE)
        .expect("narrow ip_local_port_range");
    // connect(2) may reuse a loopback TIME_WAIT 4-tuple after 1 ms instead of 1 s, as a
    // busy node's would after the default delay: the clients' own sockets then never run
    // out, and only a port reserved at bind(2) time (which never reuses TIME_WAIT) can.
    std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse_delay", "1").expect("set tcp_tw_reuse_delay");
}

fn start_mesh(scratch: &Scratch, echo: SocketAddr) -> (zring::Proxy, zring::Proxy) {
    let ids = [
        id("cluster.local", "default", "sleep"),
        id("cluster.local", "default", "httpbin"),
    ];
    make_certs(scratch.path(), &ids);
    let config_path = scratch.path().join("workloads.yaml");
    let yaml = mesh_yaml(CLIENT_IP, "cluster.local", SERVER_IP, echo.port());
    std::fs::write(&config_path, yaml).unwrap();
    let base = Config {
        cores: 2,
        ..base_config(scratch.path(), config_path)
    };
    let b = zring::start(Config {
        node_name: Some("node-b".into()),
        inbound_addr: Some(format!("{SERVER_IP}:15008").parse().unwrap()),
        transparent: true,
        ..base.clone()
    })
    .expect("start zring B");
    let a = zring::start(Config {
        node_name: Some("node-a".into()),
        socks5_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..base
    })
    .expect("start zring A");
    (a, b)
}

/// One churn operation; `Err` says what failed.
fn one(socks: SocketAddr, target: SocketAddr) -> Result<(), String> {
    let (mut s, code) = socks_connect(socks, target);
    if code != 0 {
        return Err(format!("SOCKS5 reply {code}"));
    }
    s.write_all(b"x").map_err(|e| format!("write: {e}"))?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).map_err(|e| format!("read: {e}"))?;
    Ok(())
}

fn churn(socks: SocketAddr, target: SocketAddr) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < CONNECTIONS {
                    if let Err(e) = one(socks, target) {
                        failures.push(e);
                    }
                }
                failures
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().expect("churn worker panicked"))
        .collect()
}

#[test]
fn thousands_of_short_connections_through_both_legs_never_fail() {
    let missing = require::missing(&["ip"], &[]);
    if !require::can_run("churn test", &missing) {
        return;
    }
    // Own thread: the namespace change must not leak into other tests' threads.
    std::thread::spawn(|| {
        enter_fresh_netns();
        let scratch = Scratch::new("churn");
        let echo = echo_server(&format!("{SERVER_IP}:0"));
        let (a, _b) = start_mesh(&scratch, echo);
        let socks = a.addrs.socks5.unwrap();
        // Twice in a row: the second round meets the first one's TIME_WAIT sockets.
        for round in 1..=2 {
            let failures = churn(socks, echo);
            assert!(
                failures.is_empty(),
                "round {round}: {} of {CONNECTIONS} connections failed, first: {:?}",
                failures.len(),
                failures.first()
            );
        }
    })
    .join()
    .expect("churn test failed");
}
