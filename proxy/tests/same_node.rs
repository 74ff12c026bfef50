//! Same-node HBONE on two cores, in process without root: client → SOCKS5 → zring →
//! HBONE on loopback → the same zring's inbound → echo server. A quiet tunnel's two ends
//! run on one core; after a bulk stream to the same destination, or once its core has 4
//! tunnels open, the next tunnels have an end on each core (`runtime::placement`). Where each end runs is read from the
//! per-core gauge `zring_core_connections` (the outbound connection and the inbound
//! stream each count one on the core serving it).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use zring::config::Config;
use zring::runtime::placement::is_heavy;
use zring::Proxy;

const CLIENT_IP: &str = "127.0.0.1";
const SERVER_IP: &str = "127.0.0.2";

struct Node {
    _scratch: Scratch,
    proxy: Option<Proxy>,
    echo: SocketAddr,
}

impl Node {
    fn start() -> Node {
        Node::on_cores(2)
    }

    fn on_cores(cores: usize) -> Node {
        let scratch = Scratch::new("same-node");
        let ids = [
            id("cluster.local", "default", "sleep"),
            id("cluster.local", "default", "httpbin"),
        ];
        make_certs(scratch.path(), &ids);
        let echo = echo_server(&format!("{SERVER_IP}:0"));
        let yaml = mesh_yaml(CLIENT_IP, "cluster.local", SERVER_IP, echo.port())
            .replace("node: node-b", "node: node-a");
        let config_path = scratch.path().join("workloads.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        // The proxy dials its own 15008 equivalent: reserve a port for it.
        let hbone_port = TcpListener::bind(format!("{SERVER_IP}:0"))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proxy = zring::start(Config {
            node_name: Some("node-a".into()),
            inbound_addr: Some(format!("{SERVER_IP}:{hbone_port}").parse().unwrap()),
            socks5_addr: Some("127.0.0.1:0".parse().unwrap()),
            stats_addr: Some("127.0.0.1:0".parse().unwrap()),
            hbone_port,
            cores,
            ..base_config(scratch.path(), config_path)
        })
        .expect("start zring");
        Node {
            _scratch: scratch,
            proxy: Some(proxy),
            echo,
        }
    }

    fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().unwrap()
    }

    /// A SOCKS5 tunnel to the echo server that has echoed one byte.
    fn quiet_tunnel(&self) -> TcpStream {
        let (mut s, code) = socks_connect(self.proxy().addrs.socks5.unwrap(), self.echo);
        assert_eq!(code, 0, "SOCKS5 CONNECT through the same node must succeed");
        s.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"x");
        s
    }

    /// `zring_core_connections` of cores 0 and 1, once both add up to `total`.
    fn connections_per_core(&self, total: f64) -> [f64; 2] {
        self.per_core("zring_core_connections", |sum| sum == total)
    }

    /// Gauge `name` of cores 0 and 1 once their sum satisfies `done` (a core samples its
    /// gauges when a scrape rings its bell, and at the latest each `CONTROL_TICK`, 1 s).
    fn per_core(&self, name: &str, done: impl Fn(f64) -> bool) -> [f64; 2] {
        let stats = self.proxy().addrs.stats.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = scrape(stats);
            let per_core = [0, 1].map(|core| gauge(&page, name, core));
            if done(per_core[0] + per_core[1]) {
                return per_core;
            }
            assert!(Instant::now() < deadline, "{name} stayed at {per_core:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            let _ = p.shutdown();
        }
    }
}

fn scrape(stats: SocketAddr) -> String {
    let mut s = TcpStream::connect(stats).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    page
}

fn gauge(page: &str, name: &str, core: usize) -> f64 {
    let series = format!("{name}{{core=\"{core}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[test]
fn a_quiet_tunnel_stays_on_one_core_and_a_bulk_destination_is_spread() {
    let node = Node::start();
    let quiet = node.quiet_tunnel();
    let per_core = node.connections_per_core(2.0);
    assert!(
        per_core.contains(&2.0),
        "both ends of a quiet same-node tunnel on one core: {per_core:?}"
    );
    drop(quiet);
    node.connections_per_core(0.0);

    // 256 MiB each way: bulk by volume, and by rate unless this machine is very slow. The
    // proxy's measure of the stream's life is shorter than ours (it starts at CONNECT and
    // ends before our last read), so a rate that is bulk here is bulk there.
    const BYTES: u64 = 256 << 20;
    const BLOCK: usize = 256 * 1024;
    let started = Instant::now();
    echo_blocks(node.quiet_tunnel(), BYTES / BLOCK as u64, BLOCK);
    let elapsed = started.elapsed();
    assert!(
        is_heavy(2 * BYTES, elapsed),
        "512 MiB took {elapsed:?}: too slow to count as bulk, so the spread placement is not exercised"
    );
    node.connections_per_core(0.0);

    let next = node.quiet_tunnel();
    assert_eq!(
        node.connections_per_core(2.0),
        [1.0, 1.0],
        "after a bulk stream the destination's next tunnel has an end on each core"
    );
    drop(next);
}

#[test]
fn a_core_with_many_open_tunnels_spreads_the_next_ones() {
    let node = Node::start();
    // 12 quiet tunnels over two cores: one core accepted at least 6, so at least 2 of its
    // tunnels were opened with 4 or more open there and are spread. A spread tunnel to
    // the same key is a pooled connection of its own beside the near one.
    let held: Vec<TcpStream> = (0..12).map(|_| node.quiet_tunnel()).collect();
    node.connections_per_core(24.0);
    let pooled = node.per_core("zring_core_pooled_hbone_connections", |sum| sum >= 3.0);
    assert!(
        pooled.contains(&2.0),
        "a core holds a near and a far connection: {pooled:?}"
    );
    drop(held);
}

#[test]
fn once_a_burst_of_tunnels_is_over_the_pool_lets_its_connections_go() {
    // One core: 140 tunnels count 280 open connections there (each end one), a burst
    // (`runtime::trim::BURST`). Without the trim the key's last idle pooled connection
    // would stay for the 300 s idle timeout.
    let node = Node::on_cores(1);
    let held: Vec<TcpStream> = (0..140).map(|_| node.quiet_tunnel()).collect();
    node.per_core("zring_core_connections", |sum| sum == 280.0);
    node.per_core("zring_core_pooled_hbone_connections", |sum| sum >= 1.0);
    drop(held);
    node.per_core("zring_core_connections", |sum| sum == 0.0);
    node.per_core("zring_core_pooled_hbone_connections", |sum| sum == 0.0);
    // The key connects again for the next tunnel.
    let next = node.quiet_tunnel();
    node.per_core("zring_core_pooled_hbone_connections", |sum| sum == 1.0);
    drop(next);
}
