//! Root-only: a TPROXY-captured connection in scratch network namespaces reaches the
//! `zring` binary's outbound listener with its original destination intact, and the
//! upstream leg reaches a server in another namespace from the client's IP
//! (IP_TRANSPARENT spoofing). With `CI=true` these tests fail, never skip, when they
//! cannot run.
//!
//! Topology (prefix `zrpx<pid>`): client ns `c` (10.78.0.2) — proxy ns `p` (10.78.0.1 |
//! 10.77.0.1, ip_forward OFF so only the proxy can carry the connection) — server ns `s`
//! (10.77.0.2:8080).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plumbing::netns::{self, NetnsGuard};

/// Returns false (after saying why) when the test cannot run here; panics under CI.
fn can_run() -> bool {
    use testsupport::require;
    let missing = require::missing(&["ip", "iptables-restore"], &[]);
    require::can_run("the namespace test", &missing)
}

fn sh(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn restore(ns: &str, payload: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "iptables-restore", "--noflush"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "iptables-restore in {ns}");
}

struct Topology {
    // Dropped last-to-first: namespaces go away even when the test panics.
    c: NetnsGuard,
    p: NetnsGuard,
    s: NetnsGuard,
}

fn link(a: &NetnsGuard, a_dev: &str, a_ip: &str, b: &NetnsGuard, b_dev: &str, b_ip: &str) {
    netns::veth_pair(Some(a.name()), a_dev, b_dev, Some(b.name())).unwrap();
    sh(a.name(), &["ip", "addr", "add", a_ip, "dev", a_dev]);
    sh(b.name(), &["ip", "addr", "add", b_ip, "dev", b_dev]);
    sh(a.name(), &["ip", "link", "set", a_dev, "up"]);
    sh(b.name(), &["ip", "link", "set", b_dev, "up"]);
}

impl Topology {
    fn up() -> Topology {
        let prefix = format!("zrpx{}", std::process::id());
        let t = Topology {
            c: NetnsGuard::new(&format!("{prefix}-c")).unwrap(),
            p: NetnsGuard::new(&format!("{prefix}-p")).unwrap(),
            s: NetnsGuard::new(&format!("{prefix}-s")).unwrap(),
        };
        for ns in [&t.c, &t.p, &t.s] {
            sh(ns.name(), &["ip", "link", "set", "lo", "up"]);
        }
        link(&t.p, "vc", "10.78.0.1/24", &t.c, "eth0", "10.78.0.2/24");
        link(&t.p, "vs", "10.77.0.1/24", &t.s, "eth0", "10.77.0.2/24");
        sh(
            t.c.name(),
            &["ip", "route", "add", "default", "via", "10.78.0.1"],
        );
        sh(
            t.s.name(),
            &["ip", "route", "add", "default", "via", "10.77.0.1"],
        );
        let p = t.p.name();
        for key in ["all", "default", "vc", "vs"] {
            netns::set_sysctl(Some(p), &format!("net.ipv4.conf.{key}.rp_filter"), "0").unwrap();
        }
        netns::set_sysctl(Some(p), "net.ipv4.ip_forward", "0").unwrap();
        // The ztunnel pod's capture, as in the articles' appendix 4/5.
        restore(
            p,
            "*mangle\n\
             -A PREROUTING -i vc -p tcp -j TPROXY --on-port 15001 --on-ip 127.0.0.1 --tproxy-mark 0x400/0xfff\n\
             -A PREROUTING ! -d 10.77.0.1/32 -i vs -p tcp -j MARK --set-xmark 0x4d3/0xfff\n\
             COMMIT\n",
        );
        sh(
            p,
            &[
                "ip",
                "rule",
                "add",
                "priority",
                "20000",
                "fwmark",
                "0x400/0xfff",
                "lookup",
                "100",
            ],
        );
        sh(
            p,
            &[
                "ip",
                "rule",
                "add",
                "priority",
                "20003",
                "fwmark",
                "0x4d3/0xfff",
                "lookup",
                "100",
            ],
        );
        sh(
            p,
            &[
                "ip", "route", "add", "local", "default", "dev", "lo", "table", "100",
            ],
        );
        t
    }
}

/// The zring binary running in the proxy namespace; killed on drop.
struct Zring(Child);

impl Drop for Zring {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_zring(ns: &str, dir: &std::path::Path) -> Zring {
    start_zring_with(ns, dir, &[])
}

fn start_zring_with(ns: &str, dir: &std::path::Path, extra: &[&str]) -> Zring {
    let yaml = r#"workloads:
- uid: c//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["10.78.0.2"]
  protocol: TCP
  node: node-a
- uid: c//v1/Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  workloadIps: ["10.77.0.2"]
  protocol: TCP
  node: node-b
"#;
    std::fs::write(dir.join("workloads.yaml"), yaml).unwrap();
    common::make_certs(dir, &[common::id("cluster.local", "default", "client")]);
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_zring"), "run"])
        .arg("--config")
        .arg(dir.join("workloads.yaml"))
        .arg("--cert-dir")
        .arg(dir)
        .args([
            "--node-name",
            "node-a",
            "--cores",
            "1",
            "--transparent",
            "true",
        ])
        .args([
            "--outbound-addr",
            "127.0.0.1:15001",
            "--inbound-addr",
            "off",
        ])
        .args(["--inbound-plaintext-addr", "off", "--socks5-addr", "off"])
        .args(extra)
        .args([
            "--admin-addr",
            "off",
            "--readiness-addr",
            "off",
            "--stats-addr",
            "127.0.0.1:15020",
        ])
        .spawn()
        .expect("start zring");
    Zring(child)
}

fn wait_ready(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if netns::run_in(Some(ns), || TcpStream::connect("127.0.0.1:15020"))
            .unwrap()
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("zring did not start in {ns}");
}

fn metric(ns: &str, name: &str) -> u64 {
    let mut s = netns::run_in(Some(ns), || TcpStream::connect("127.0.0.1:15020"))
        .unwrap()
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    // Sum over every label set of the series (none exist before the first connection).
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
        .map(|v| v.unwrap_or_else(|| panic!("unparsable {name} in {body}")))
        .sum()
}

#[test]
fn tproxy_capture_keeps_destination_and_spoofs_client_ip() {
    if !can_run() {
        return;
    }
    let topo = Topology::up();
    let scratch = common::Scratch::new("netns");
    let _zring = start_zring(topo.p.name(), scratch.path());
    wait_ready(topo.p.name());

    // Server in ns s: tells each client which address it came from and was sent to.
    let listener = netns::run_in(Some(topo.s.name()), || TcpListener::bind("10.77.0.2:8080"))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let (Ok(peer), Ok(local)) = (conn.peer_addr(), conn.local_addr()) else {
                eprintln!("server: connection gone before accept");
                continue;
            };
            let line = format!("{peer} {local}\n");
            let _ = conn.write_all(line.as_bytes());
        }
    });

    let client = netns::run_in(Some(topo.c.name()), || {
        TcpStream::connect_timeout(&"10.77.0.2:8080".parse().unwrap(), Duration::from_secs(10))
    })
    .unwrap()
    .expect("captured connection must reach the server through zring");
    let local = client.local_addr().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(&client).read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let (seen_peer, seen_local) = (parts.next().unwrap(), parts.next().unwrap());
    assert!(
        seen_peer.starts_with("10.78.0.2:"),
        "server saw {seen_peer}, not the client pod IP"
    );
    assert_ne!(
        seen_peer,
        local.to_string(),
        "leg 2 is a new connection, not the client's"
    );
    assert_eq!(seen_local, "10.77.0.2:8080", "original destination lost");
    // Counters reach /metrics on each core's next control tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    let opened = || metric(topo.p.name(), "istio_tcp_connections_opened_total");
    while opened() < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(opened() >= 1, "zring did not count the captured connection");
    drop(topo);
}

fn ip_out(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_with_plumb_applies_the_ztunnel_pod_side_and_removes_it_on_sigterm() {
    if !can_run() {
        return;
    }
    let prefix = format!("zrpy{}", std::process::id());
    let node = NetnsGuard::new(&format!("{prefix}-n")).unwrap();
    let pod = NetnsGuard::new(&format!("{prefix}-z")).unwrap();
    link(&node, "vzt", "10.244.1.1/24", &pod, "eth0", "10.244.1.2/24");
    sh(
        pod.name(),
        &["ip", "route", "add", "default", "via", "10.244.1.1"],
    );
    let scratch = common::Scratch::new("plumb");
    let mut zring = start_zring_with(
        pod.name(),
        scratch.path(),
        &[
            "--plumb",
            "--plumb-gateway",
            "10.244.1.1",
            "--plumb-eth0",
            "eth0",
        ],
    );
    wait_ready(pod.name());
    let rules = ip_out(pod.name(), &["ip", "rule"]);
    assert!(
        rules.contains("20000:") && rules.contains("20003:"),
        "{rules}"
    );
    let mangle = ip_out(pod.name(), &["iptables-save", "-t", "mangle"]);
    assert!(mangle.contains("--on-port 15001"), "{mangle}");
    assert!(ip_out(pod.name(), &["ip", "link"]).contains("pistioout"));

    let pid = zring.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = zring.0.wait().unwrap();
    assert!(status.success(), "zring exited with {status}");
    let rules = ip_out(pod.name(), &["ip", "rule"]);
    assert!(
        !rules.contains("20000:") && !rules.contains("20003:"),
        "{rules}"
    );
    assert!(!ip_out(pod.name(), &["iptables-save", "-t", "mangle"]).contains("TPROXY"));
    assert!(!ip_out(pod.name(), &["ip", "link"]).contains("pistio"));
}
