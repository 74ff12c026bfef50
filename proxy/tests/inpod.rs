//! In-pod mode on the fake istio-cni (`testsupport::cni`): pod namespaces on a node bridge,
//! istio-cni's in-pod rules inside each, their namespaces handed over ZDS. The real
//! istio/ztunnel (shared mode, `INPOD_UDS`) is run against the fake first: a fake only zring
//! accepts would prove nothing. Needs root, iptables and the peer binary.

mod common;
mod interop_env;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::Scratch;
use testsupport::cni::pods::{Node, Pod};
use testsupport::cni::{Info, ZdsServer};

const GATEWAY: &str = "10.82.0.1";
const PORT: u16 = 9000;

/// Both pods are in namespace `zin`; ztunnel finds a pod's workload by name, namespace and
/// service account (AddWorkload's info).
const WORKLOADS: &str = r#"workloads:
- uid: cluster1//v1/Pod/zin/pa
  name: pa
  namespace: zin
  serviceAccount: sa-a
  workloadIps: ["10.82.0.2"]
  trustDomain: cluster.local
  protocol: HBONE
  node: node
  services: {}
- uid: cluster1//v1/Pod/zin/pb
  name: pb
  namespace: zin
  serviceAccount: sa-b
  workloadIps: ["10.82.0.3"]
  trustDomain: cluster.local
  protocol: HBONE
  node: node
  services: {}
"#;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn can_run(test: &str) -> bool {
    let bin = interop_env::ztunnel_bin();
    let missing = testsupport::require::missing(&["ip", "iptables-restore"], &[bin.as_path()]);
    testsupport::require::can_run(test, &missing)
}

/// The real ztunnel in shared (in-pod) mode in the node namespace, dialling `uds`.
fn spawn_ztunnel(node: &str, dir: &Path, uds: &Path) -> Proc {
    let log = std::fs::File::create(dir.join("ztunnel.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", node])
        .arg(interop_env::ztunnel_bin())
        .arg("proxy")
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("FAKE_CA", "true")
        .env("XDS_ADDRESS", "")
        .env("LOCAL_XDS_PATH", dir.join("workloads.yaml"))
        .env("PROXY_MODE", "shared")
        .env("INPOD_UDS", uds)
        .env("NODE_NAME", "node")
        .env("ZTUNNEL_WORKER_THREADS", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start ztunnel");
    Proc(child)
}

/// An echo server on `0.0.0.0:PORT` inside the pod.
fn serve_echo(pod: &Pod) {
    let l = plumbing::netns::run_in(Some(pod.ns.name()), || TcpListener::bind(("0.0.0.0", PORT)))
        .unwrap()
        .unwrap();
    testsupport::echo::spawn(l);
}

/// Connects from inside `from` to `to:PORT`, sends a line and expects it back.
fn echo_from(from: &Pod, to: &Pod) -> std::io::Result<()> {
    let addr: SocketAddr = format!("{}:{PORT}", to.ip).parse().unwrap();
    let mut s = plumbing::netns::run_in(Some(from.ns.name()), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .unwrap()?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let msg = format!("from {} to {}\n", from.ip, to.ip);
    s.write_all(msg.as_bytes())?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    assert_eq!(back, msg.as_bytes());
    Ok(())
}

/// ztunnel's `istio_tcp_connections_opened_total` summed over mTLS series of a reporter.
fn ztunnel_opened(node: &str, reporter: &str) -> u64 {
    let Some((200, body)) = interop_env::get_in(node, "127.0.0.1:15020", "/metrics") else {
        return 0;
    };
    body.lines()
        .filter(|l| l.starts_with("istio_tcp_connections_opened_total{"))
        .filter(|l| l.contains(&format!("reporter=\"{reporter}\"")))
        .filter(|l| l.contains("connection_security_policy=\"mutual_tls\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn info<'a>(name: &'a str, sa: &'a str) -> Option<Info<'a>> {
    Some(Info {
        name,
        namespace: "zin",
        service_account: sa,
    })
}

#[test]
fn fake_cni_carries_real_ztunnel_in_pod() {
    if !can_run("fake_cni_carries_real_ztunnel_in_pod") {
        return;
    }
    let scratch = Scratch::new("inpod-zt");
    let dir = scratch.path();
    std::fs::write(dir.join("workloads.yaml"), WORKLOADS).unwrap();
    let mut node = Node::new(&format!("zip-{}", std::process::id()), GATEWAY).unwrap();
    let a = node.pod("a", "10.82.0.2", GATEWAY).unwrap();
    let b = node.pod("b", "10.82.0.3", GATEWAY).unwrap();
    serve_echo(&b);
    serve_echo(&a);
    echo_from(&a, &b).expect("direct, before enrolment");

    let uds = dir.join("ztunnel.sock");
    let cni = ZdsServer::bind(&uds).unwrap();
    let _zt = spawn_ztunnel(node.ns.name(), dir, &uds);
    let conn = cni
        .accept(Duration::from_secs(30))
        .expect("ztunnel dials the CNI");
    // istio-cni: the pod's namespace to the proxy first, then the rules (ztunnelserver.go
    // waits for the Ack before `CreateInpodRules`).
    for (pod, name, sa) in [(&a, "pa", "sa-a"), (&b, "pb", "sa-b")] {
        let uid = format!("uid-{name}");
        let fd = pod.ns.open().unwrap();
        assert_eq!(
            conn.add(&uid, info(name, sa), Some(fd.as_fd())).unwrap(),
            ""
        );
        pod.enrol().unwrap();
    }
    assert_eq!(conn.snapshot_sent().unwrap(), "");

    // Traffic both ways goes through ztunnel's in-pod listeners, as HBONE (mTLS).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Ok(());
    while Instant::now() < deadline {
        last = echo_from(&a, &b).and_then(|_| echo_from(&b, &a));
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last.unwrap_or_else(|e| panic!("through ztunnel: {e}; log: {}", log(dir)));
    let (src, dst) = (
        ztunnel_opened(node.ns.name(), "source"),
        ztunnel_opened(node.ns.name(), "destination"),
    );
    eprintln!("ztunnel counted {src} source and {dst} destination mTLS connections");
    assert!(
        src >= 2 && dst >= 2,
        "ztunnel counted source {src}, destination {dst} mTLS connections; log: {}",
        log(dir)
    );

    // Deleted from the proxy (istio-cni removes the rules first): plain again.
    assert_eq!(conn.del("uid-pb").unwrap(), "");
    drop(conn);
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("ztunnel.log")).unwrap_or_default()
}
