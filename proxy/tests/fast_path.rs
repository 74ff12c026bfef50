//! The same-node fast path, in process without root: client → SOCKS5 → zring → the
//! destination pod directly (no HBONE to its own inbound), both pods on this node. Each
//! case runs once with the fast path on and once off (the HBONE tunnel through the same
//! zring's inbound) and the two must look the same to the client, in the istio_* metrics
//! and in the access log, but for the fast path's own counter and `fast_path` field. The
//! destination's policy sees the source identity; a destination with a waypoint keeps
//! going through it. Runs under io_uring and, via `MONOIO_FORCE_LEGACY_DRIVER=1` in
//! scripts/test-all, under the epoll fallback.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use zring::config::Config;
use zring::Proxy;

const CLIENT_IP: &str = "127.0.0.1";
const SERVER_IP: &str = "127.0.0.2";
const WAYPOINT_IP: &str = "127.0.0.3";
const FAST: &str = "zring_fast_path_connections_total";
const ACCEPTED: &str = "zring_hbone_connections_accepted_total";

/// Every access-log line of this test binary, as JSON (each test filters by its ports).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_access_log() {
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter("access=info")
        .with_writer(|| LogWriter)
        .try_init();
}

/// The access-log lines of connections to `authority` (the CONNECT authority field).
fn log_lines(authority: SocketAddr) -> Vec<Value> {
    let log = LOG.lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["dst.hbone_addr"] == Value::String(authority.to_string()))
        .collect()
}

/// One node: the client `sleep` and the server `httpbin` (and, with `waypoint`, httpbin
/// behind a waypoint pod on this node), one zring with SOCKS5 and stats.
struct Node {
    _scratch: Scratch,
    proxy: Option<Proxy>,
    echo: SocketAddr,
    denied: SocketAddr,
    other: SocketAddr,
}

impl Node {
    fn start(fast_path: bool, waypoint: Option<SocketAddr>) -> Node {
        capture_access_log();
        let scratch = Scratch::new("fast-path");
        let ids = [
            id("cluster.local", "default", "sleep"),
            id("cluster.local", "default", "httpbin"),
        ];
        make_certs(scratch.path(), &ids);
        let [echo, denied, other] = [0; 3].map(|_| echo_server(&format!("{SERVER_IP}:0")));
        let yaml = node_yaml(echo, [denied, other], waypoint);
        let config_path = scratch.path().join("workloads.yaml");
        std::fs::write(&config_path, yaml).unwrap();
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
            cores: 2,
            same_node_fast_path: fast_path,
            ..base_config(scratch.path(), config_path)
        })
        .expect("start zring");
        Node {
            _scratch: scratch,
            proxy: Some(proxy),
            echo,
            denied,
            other,
        }
    }

    fn socks(&self) -> SocketAddr {
        self.proxy.as_ref().unwrap().addrs.socks5.unwrap()
    }

    fn stats(&self) -> SocketAddr {
        self.proxy.as_ref().unwrap().addrs.stats.unwrap()
    }

    /// The SOCKS5 reply code of a connection to `target`, and whether it echoed.
    fn echo(&self, target: SocketAddr) -> (u8, bool) {
        let (mut s, code) = socks_connect(self.socks(), target);
        if code != 0 {
            return (code, false);
        }
        let mut back = [0u8; 5];
        let echoed =
            s.write_all(b"hello").is_ok() && s.read_exact(&mut back).is_ok() && &back == b"hello";
        (code, echoed)
    }

    /// The metrics page once `closed` connection sides have been counted closed.
    fn page_after(&self, closed: f64) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = scrape(self.stats());
            let sum: f64 = series(&page, "istio_tcp_connections_closed_total")
                .map(|(_, v)| v)
                .sum();
            if sum >= closed {
                return page;
            }
            assert!(Instant::now() < deadline, "closed stayed at {sum}: {page}");
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

/// `mesh_yaml` with both pods on node-a, a DENY of `sleep`'s service account on the port
/// of `denied`, a DENY of another account on the port of `other`, and optionally a
/// waypoint pod in front of httpbin.
fn node_yaml(echo: SocketAddr, [denied, other]: [SocketAddr; 2], wp: Option<SocketAddr>) -> String {
    let mut yaml = mesh_yaml(CLIENT_IP, "cluster.local", SERVER_IP, echo.port())
        .replace("node: node-b", "node: node-a");
    if let Some(wp) = wp {
        let httpbin = "  serviceAccount: httpbin\n";
        let with_waypoint = format!(
            "{httpbin}  waypoint: {{destination: \"/{}\", hboneMtlsPort: {}}}\n",
            wp.ip(),
            wp.port()
        );
        yaml = yaml.replacen(httpbin, &with_waypoint, 1);
        yaml = yaml.replacen(
            "services:\n- name: httpbin",
            &format!(
                "- {{name: waypoint, namespace: default, serviceAccount: waypoint, \
                 workloadIps: [\"{WAYPOINT_IP}\"], protocol: HBONE, node: node-a, services: {{}}}}\n\
                 services:\n- name: httpbin"
            ),
            1,
        );
    }
    yaml.push_str(&format!(
        r#"policies:
- name: deny-sleep
  namespace: default
  scope: Namespace
  action: Deny
  rules:
  - - - serviceAccounts: [{{namespace: default, serviceAccount: sleep}}]
        destinationPorts: [{}]
- name: deny-other
  namespace: default
  scope: Namespace
  action: Deny
  rules:
  - - - serviceAccounts: [{{namespace: default, serviceAccount: other}}]
        destinationPorts: [{}]
"#,
        denied.port(),
        other.port()
    ));
    yaml
}

fn scrape(stats: SocketAddr) -> String {
    let mut s = TcpStream::connect(stats).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    page
}

/// The series of family `name`: (labels, value).
fn series<'a>(page: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    page.lines().filter_map(move |l| {
        let rest = l.strip_prefix(name)?;
        let (labels, value) = rest.rsplit_once(' ')?;
        (labels.is_empty() || labels.starts_with('{')).then(|| (labels, value.parse().unwrap()))
    })
}

fn value(page: &str, name: &str) -> f64 {
    series(page, name).map(|(_, v)| v).sum()
}

/// Every istio_tcp_* series, labels and value, with the ports that differ between two
/// nodes (the echo servers' and HBONE's) left as they are: both nodes' labels name
/// workloads and identities, never ports.
fn istio_tcp(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| l.starts_with("istio_tcp_"))
        .map(str::to_string)
        .collect()
}

/// The three connections of every case: allowed, denied for `sleep`, and a port denied
/// only to another account. Returns the SOCKS5 replies and whether each echoed.
fn traffic(node: &Node) -> [(u8, bool); 3] {
    [node.echo, node.denied, node.other].map(|t| node.echo(t))
}

#[test]
fn the_fast_path_answers_and_is_counted_as_the_tunnel_is() {
    let fast = Node::start(true, None);
    let tunnel = Node::start(false, None);
    let (on, off) = (traffic(&fast), traffic(&tunnel));
    assert_eq!(on, [(0, true), (5, false), (0, true)], "fast path");
    assert_eq!(
        on, off,
        "the client sees the fast path as it sees the tunnel"
    );
    // Three connections, each counted closed on its outbound and its inbound side.
    let (on_page, off_page) = (fast.page_after(6.0), tunnel.page_after(6.0));
    assert_eq!(value(&on_page, FAST), 3.0);
    assert_eq!(value(&on_page, ACCEPTED), 0.0, "no HBONE to itself");
    assert_eq!(value(&off_page, FAST), 0.0, "the off switch");
    assert!(value(&off_page, ACCEPTED) >= 1.0);
    let (on_tcp, off_tcp) = (istio_tcp(&on_page), istio_tcp(&off_page));
    assert_eq!(
        on_tcp, off_tcp,
        "the same istio_tcp_* series and values as the tunnel"
    );
    assert!(on_tcp.iter().any(|l| l.contains("reporter=\"source\"")));
    assert!(on_tcp
        .iter()
        .any(|l| l.contains("reporter=\"destination\"")));
}

#[test]
fn the_access_log_has_both_sides_and_marks_the_fast_path() {
    let fast = Node::start(true, None);
    let tunnel = Node::start(false, None);
    for node in [&fast, &tunnel] {
        assert_eq!(node.echo(node.echo), (0, true));
        assert_eq!(node.echo(node.denied), (5, false));
        node.page_after(4.0);
    }
    for (node, marked) in [(&fast, Some(true)), (&tunnel, None)] {
        let lines = log_lines(node.echo);
        let directions: BTreeSet<String> =
            lines.iter().map(|l| l["direction"].to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            directions.len(),
            2,
            "an outbound and an inbound line: {lines:?}"
        );
        for l in &lines {
            assert_eq!(l["fast_path"].as_bool(), marked, "{l}");
            assert_eq!(
                l["src.identity"],
                "spiffe://cluster.local/ns/default/sa/sleep"
            );
            assert_eq!(l["bytes_sent"], 5, "{l}");
            assert!(l.get("error").is_none(), "{l}");
        }
        let denied = log_lines(node.denied);
        assert_eq!(denied.len(), 2, "{denied:?}");
        assert!(denied.iter().all(|l| l["fast_path"].as_bool() == marked));
        assert!(denied.iter().all(|l| l["error"].is_string()), "{denied:?}");
    }
}

#[test]
fn a_destination_behind_a_waypoint_goes_through_it() {
    // The waypoint pod's HBONE port: it records the connections that reach it.
    let waypoint = TcpListener::bind(format!("{WAYPOINT_IP}:0")).unwrap();
    let wp_addr = waypoint.local_addr().unwrap();
    waypoint.set_nonblocking(true).unwrap();
    let node = Node::start(true, Some(wp_addr));
    let socks = node.socks();
    let target = node.echo;
    let client = std::thread::spawn(move || socks_connect(socks, target).1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let reached = loop {
        match waypoint.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("nothing reached the waypoint: {e}"),
        }
    };
    drop(reached);
    assert_ne!(
        client.join().unwrap(),
        0,
        "not delivered around the waypoint"
    );
    let page = node.page_after(1.0);
    assert_eq!(
        value(&page, FAST),
        0.0,
        "the fast path never bypasses a waypoint"
    );
}
