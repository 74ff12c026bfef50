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
    spawn_ztunnel_on(node, dir, uds, "node")
}

/// The real ztunnel in shared (in-pod) mode in namespace `ns`, as node `node_name`.
fn spawn_ztunnel_on(ns: &str, dir: &Path, uds: &Path, node_name: &str) -> Proc {
    let log = std::fs::File::create(dir.join("ztunnel.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(interop_env::ztunnel_bin())
        .arg("proxy")
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("FAKE_CA", "true")
        .env("XDS_ADDRESS", "")
        .env("LOCAL_XDS_PATH", dir.join("workloads.yaml"))
        .env("PROXY_MODE", "shared")
        .env("INPOD_UDS", uds)
        .env("NODE_NAME", node_name)
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

    assert_eq!(conn.del("uid-pb").unwrap(), "");
    drop(conn);
}

/// Pods a and b are zring's (node-z), c is ztunnel's (node-t); the proxies run in their own
/// namespaces and reach the pods only through the namespaces ZDS handed them.
const MIXED: &str = r#"workloads:
- uid: uid-pa
  name: pa
  namespace: zin
  serviceAccount: sa-a
  workloadIps: ["10.82.0.2"]
  trustDomain: cluster.local
  protocol: HBONE
  node: node-z
  services: {}
- uid: uid-pb
  name: pb
  namespace: zin
  serviceAccount: sa-b
  workloadIps: ["10.82.0.3"]
  trustDomain: cluster.local
  protocol: HBONE
  node: node-z
  services: {}
- uid: uid-pc
  name: pc
  namespace: zin
  serviceAccount: sa-c
  workloadIps: ["10.82.0.4"]
  trustDomain: cluster.local
  protocol: HBONE
  node: node-t
  services: {}
"#;

fn spawn_zring(ns: &str, dir: &Path, certs: &Path, uds: &Path) -> Proc {
    spawn_zring_with(ns, dir, certs, uds, false)
}

/// zring in in-pod mode; `fast_path`: same-node pod to pod spliced directly (its default).
fn spawn_zring_with(ns: &str, dir: &Path, certs: &Path, uds: &Path, fast_path: bool) -> Proc {
    spawn_zring_args(ns, dir, certs, uds, fast_path, &[])
}

/// [`spawn_zring_with`] with more arguments.
fn spawn_zring_args(
    ns: &str,
    dir: &Path,
    certs: &Path,
    uds: &Path,
    fast_path: bool,
    extra: &[&str],
) -> Proc {
    let log = std::fs::File::create(dir.join("zring.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_zring"), "run"])
        .arg("--config")
        .arg(dir.join("workloads.yaml"))
        .arg("--cert-dir")
        .arg(certs)
        .args(["--node-name", "node-z", "--cores", "2", "--inpod", "true"])
        .arg("--inpod-uds")
        .arg(uds)
        .args(extra)
        .env("RUST_LOG", "info")
        // Off: pod to pod on this node is HBONE, as ztunnel carries it.
        .env("ZRING_SAME_NODE_FAST_PATH", fast_path.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start zring");
    Proc(child)
}

/// Retries `echo_from` for a few seconds (a new pod's listeners start on the next tick).
fn flows(from: &Pod, to: &Pod) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = echo_from(from, to);
        if r.is_ok() || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn logs(dir: &Path) -> String {
    let z = std::fs::read_to_string(dir.join("zring.log")).unwrap_or_default();
    format!("zring:\n{z}\nztunnel:\n{}", log(dir))
}

#[test]
fn zring_in_pod_beside_ztunnel_in_pod() {
    if !can_run("zring_in_pod_beside_ztunnel_in_pod") {
        return;
    }
    let scratch = Scratch::new("inpod-mixed");
    let dir = scratch.path();
    std::fs::write(dir.join("workloads.yaml"), MIXED).unwrap();
    let certs = interop_env::topo::zring_certs_for(dir, &[("zin", "sa-a"), ("zin", "sa-b")]);
    let prefix = format!("zim-{}", std::process::id());
    let mut node = Node::new(&prefix, GATEWAY).unwrap();
    let pods: Vec<Pod> = [("a", "10.82.0.2"), ("b", "10.82.0.3"), ("c", "10.82.0.4")]
        .iter()
        .map(|(n, ip)| node.pod(n, ip, GATEWAY).unwrap())
        .collect();
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    pods.iter().for_each(serve_echo);
    let zr = testsupport::cni::pods::Ns::new(&format!("{prefix}-zr")).unwrap();
    let zt = testsupport::cni::pods::Ns::new(&format!("{prefix}-zt")).unwrap();

    let (zr_uds, zt_uds) = (dir.join("zring.sock"), dir.join("ztunnel.sock"));
    let (zr_cni, zt_cni) = (
        ZdsServer::bind(&zr_uds).unwrap(),
        ZdsServer::bind(&zt_uds).unwrap(),
    );
    let _zring = spawn_zring(zr.name(), dir, &certs, &zr_uds);
    let _ztunnel = {
        let yaml = MIXED;
        std::fs::write(dir.join("workloads.yaml"), yaml).unwrap();
        spawn_ztunnel_on(zt.name(), dir, &zt_uds, "node-t")
    };
    let zc = zr_cni
        .accept(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}; {}", logs(dir)));
    let tc = zt_cni
        .accept(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}; {}", logs(dir)));
    let add = |conn: &testsupport::cni::ZdsConn, pod: &Pod, name: &str, sa: &str| {
        let fd = pod.ns.open().unwrap();
        conn.add(&format!("uid-{name}"), info(name, sa), Some(fd.as_fd()))
            .unwrap()
    };
    assert_eq!(add(&zc, a, "pa", "sa-a"), "");
    assert_eq!(add(&zc, b, "pb", "sa-b"), "");
    assert_eq!(zc.snapshot_sent().unwrap(), "");
    assert_eq!(add(&tc, c, "pc", "sa-c"), "");
    assert_eq!(tc.snapshot_sent().unwrap(), "");
    pods.iter().for_each(|p| p.enrol().unwrap());

    // Every direction: zring → zring, zring → ztunnel, ztunnel → zring.
    for (from, to) in [(a, b), (b, a), (a, c), (c, a), (c, b)] {
        flows(from, to).unwrap_or_else(|e| panic!("{} → {}: {e}; {}", from.ip, to.ip, logs(dir)));
    }
    // Counters reach the scrape on the cores' next tick.
    let counts = || {
        [
            zring_opened(zr.name(), "source"),
            zring_opened(zr.name(), "destination"),
            ztunnel_opened(zt.name(), "source"),
            ztunnel_opened(zt.name(), "destination"),
        ]
    };
    // From zring: a→b, b→a, a→c; into it: a→b, b→a, c→a, c→b; from ztunnel: c→a, c→b;
    // into it: a→c.
    let want = [3, 4, 2, 1];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = counts();
    while got.iter().zip(want).any(|(g, w)| *g < w) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = counts();
    }
    eprintln!(
        "mTLS connections opened [zring source, destination, ztunnel source, destination]: {got:?}"
    );
    assert!(
        got.iter().zip(want).all(|(g, w)| *g >= w),
        "{got:?} < {want:?}"
    );
    // Bad input: refused with a reason, the pods keep flowing.
    assert!(!zc.request(&[0xff, 0xff], &[]).unwrap().is_empty());
    assert!(
        !add(
            &zc,
            &Pod {
                ns: testsupport::cni::pods::Ns::new(&format!("{prefix}-x")).unwrap(),
                ip: "10.82.0.9".into()
            },
            "px",
            "sa-x"
        )
        .is_empty(),
        "a pod without an address"
    );
    flows(a, c).unwrap();

    // Delete: b's listeners close (its rules still redirect, so b's traffic is refused).
    assert_eq!(zc.del("uid-pb").unwrap(), "");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        echo_from(b, a).is_err(),
        "b still captured after DelWorkload"
    );
    flows(a, c).unwrap();

    // b back, then the CNI restarts and its snapshot holds only a: b is released again.
    assert_eq!(add(&zc, b, "pb", "sa-b"), "");
    flows(b, a).unwrap();
    drop(zc);
    let zc = zr_cni.accept(Duration::from_secs(10)).unwrap();
    flows(b, a).expect("a dropped ZDS socket keeps the pods");
    assert_eq!(add(&zc, a, "pa", "sa-a"), "");
    assert_eq!(zc.snapshot_sent().unwrap(), "");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        echo_from(b, a).is_err(),
        "b kept after a snapshot without it"
    );
    flows(a, c).unwrap();
    flows(c, a).unwrap();
}

/// With the same-node fast path (zring's default) a pod-to-pod connection on this node is
/// made inside the destination pod, marked, with the client's address: it echoes.
#[test]
fn zring_in_pod_same_node_fast_path() {
    if !can_run("zring_in_pod_same_node_fast_path") {
        return;
    }
    let scratch = Scratch::new("inpod-fast");
    let dir = scratch.path();
    std::fs::write(dir.join("workloads.yaml"), MIXED).unwrap();
    let certs = interop_env::topo::zring_certs_for(dir, &[("zin", "sa-a"), ("zin", "sa-b")]);
    let prefix = format!("zif-{}", std::process::id());
    let mut node = Node::new(&prefix, GATEWAY).unwrap();
    let a = node.pod("a", "10.82.0.2", GATEWAY).unwrap();
    let b = node.pod("b", "10.82.0.3", GATEWAY).unwrap();
    serve_echo(&a);
    serve_echo(&b);
    let zr = testsupport::cni::pods::Ns::new(&format!("{prefix}-zr")).unwrap();
    let uds = dir.join("zring.sock");
    let cni = ZdsServer::bind(&uds).unwrap();
    let _zring = spawn_zring_with(zr.name(), dir, &certs, &uds, true);
    let conn = cni.accept(Duration::from_secs(30)).unwrap();
    // Ready only once the CNI's snapshot is reconciled, as ztunnel.
    let ready = || interop_env::get_in(zr.name(), "127.0.0.1:15021", "/healthz/ready").map(|r| r.0);
    assert_eq!(ready(), Some(503), "ready before the ZDS snapshot");
    for (pod, name, sa) in [(&a, "pa", "sa-a"), (&b, "pb", "sa-b")] {
        let fd = pod.ns.open().unwrap();
        assert_eq!(
            conn.add(&format!("uid-{name}"), info(name, sa), Some(fd.as_fd()))
                .unwrap(),
            ""
        );
        pod.enrol().unwrap();
    }
    assert_eq!(conn.snapshot_sent().unwrap(), "");
    assert_eq!(ready(), Some(200), "not ready after the ZDS snapshot");
    for (from, to) in [(&a, &b), (&b, &a)] {
        flows(from, to).unwrap_or_else(|e| panic!("{} → {}: {e}; {}", from.ip, to.ip, logs(dir)));
    }
    // Counters reach the scrape on the cores' next tick.
    let fast = || {
        let (_, body) = interop_env::get_in(zr.name(), "127.0.0.1:15020", "/metrics")?;
        let line = body
            .lines()
            .find(|l| l.starts_with("zring_fast_path_connections_total "))?;
        line.rsplit(' ').next()?.parse::<u64>().ok()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while fast().unwrap_or(0) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        fast().unwrap_or(0) >= 2,
        "fast path not taken: {:?}",
        fast()
    );
}

/// DelWorkload drains the pod (root; both drivers in scripts/test-all): its listeners close
/// at once (a new connection from it is refused), a connection it had open keeps working
/// until the drain timeout and is closed after it, and then nothing of the pod is left:
/// the descriptors are back to their count before its AddWorkload and every connection
/// counted opened is counted closed. Pod to pod is HBONE here (fast path off): the pod's
/// pooled HBONE connection must go too.
#[test]
fn zring_in_pod_del_workload_drains() {
    if !can_run("zring_in_pod_del_workload_drains") {
        return;
    }
    const DRAIN: Duration = Duration::from_secs(3);
    let scratch = Scratch::new("inpod-drain");
    let dir = scratch.path();
    std::fs::write(dir.join("workloads.yaml"), MIXED).unwrap();
    let certs = interop_env::topo::zring_certs_for(dir, &[("zin", "sa-a"), ("zin", "sa-b")]);
    let prefix = format!("zid-{}", std::process::id());
    let mut node = Node::new(&prefix, GATEWAY).unwrap();
    let a = node.pod("a", "10.82.0.2", GATEWAY).unwrap();
    let b = node.pod("b", "10.82.0.3", GATEWAY).unwrap();
    serve_echo(&b);
    let zr = testsupport::cni::pods::Ns::new(&format!("{prefix}-zr")).unwrap();
    let uds = dir.join("zring.sock");
    let cni = ZdsServer::bind(&uds).unwrap();
    let zring = spawn_zring_args(
        zr.name(),
        dir,
        &certs,
        &uds,
        false,
        &["--drain-timeout", "3s"],
    );
    let conn = cni
        .accept(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}; {}", logs(dir)));
    let add = |pod: &Pod, name: &str, sa: &str| {
        let fd = pod.ns.open().unwrap();
        conn.add(&format!("uid-{name}"), info(name, sa), Some(fd.as_fd()))
            .unwrap()
    };
    assert_eq!(add(&b, "pb", "sa-b"), "");
    assert_eq!(conn.snapshot_sent().unwrap(), "");
    a.enrol().unwrap();
    b.enrol().unwrap();

    // Once through add, flow and delete: threads open what they keep for good (their
    // own namespace's descriptor) the first time they work in a pod.
    assert_eq!(add(&a, "pa", "sa-a"), "");
    flows(&a, &b).unwrap_or_else(|e| panic!("{e}; {}", logs(dir)));
    assert_eq!(conn.del("uid-pa").unwrap(), "");
    std::thread::sleep(DRAIN + Duration::from_secs(1));
    let before = settled_fds(pid(&zring));
    let before_list = fd_list(pid(&zring));

    assert_eq!(add(&a, "pa", "sa-a"), "");
    flows(&a, &b).unwrap_or_else(|e| panic!("{e}; {}", logs(dir)));
    let mut held = held_echo(&a, &b).unwrap_or_else(|e| panic!("{e}; {}", logs(dir)));
    assert_eq!(conn.del("uid-pa").unwrap(), "");
    let deleted = Instant::now();
    // A new connection from the pod is refused as soon as its listeners are gone.
    let refused = (0..20).any(|_| {
        let r = connect_from(&a, &b);
        let gone = matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
        if !gone {
            std::thread::sleep(Duration::from_millis(50));
        }
        gone
    });
    assert!(
        refused,
        "a new connection from the pod was not refused after DelWorkload"
    );
    // The open connection still carries bytes while the drain lasts.
    echo_line(&mut held, "during the drain").unwrap_or_else(|e| panic!("{e}; {}", logs(dir)));
    assert!(
        deleted.elapsed() < DRAIN,
        "the checks took longer than the drain timeout: they prove nothing"
    );
    std::thread::sleep(DRAIN.saturating_sub(deleted.elapsed()) + Duration::from_millis(1500));
    assert!(
        echo_line(&mut held, "after the drain").is_err(),
        "the pod's connection outlived its drain timeout"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = settled_fds(pid(&zring));
    while after != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = settled_fds(pid(&zring));
    }
    assert_eq!(
        after,
        before,
        "descriptors after the drain: {:?}, before AddWorkload: {before_list:?}; {}",
        fd_list(pid(&zring)),
        logs(dir)
    );
    // Every connection counted opened is counted closed, the drained one too (scrapes
    // follow the cores' ticks).
    let series = |name: &str| zring_sum(zr.name(), name);
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut opened, mut closed) = (0, 0);
    while Instant::now() < deadline {
        opened = series("istio_tcp_connections_opened_total");
        closed = series("istio_tcp_connections_closed_total");
        if opened > 0 && opened == closed {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        opened > 0 && opened == closed,
        "opened {opened}, closed {closed}"
    );
}

/// A pod the workload config does not know (yet) speaks with the identity AddWorkload gave
/// it, as in ztunnel: pod d (10.82.0.5, not in the config) handed over as service account
/// `sa-d` reaches b through HBONE, and b's side counts it with d's principal.
#[test]
fn zring_in_pod_identity_from_add_workload() {
    if !can_run("zring_in_pod_identity_from_add_workload") {
        return;
    }
    let scratch = Scratch::new("inpod-info");
    let dir = scratch.path();
    std::fs::write(dir.join("workloads.yaml"), MIXED).unwrap();
    let certs = interop_env::topo::zring_certs_for(
        dir,
        &[("zin", "sa-a"), ("zin", "sa-b"), ("zin", "sa-d")],
    );
    let prefix = format!("zii-{}", std::process::id());
    let mut node = Node::new(&prefix, GATEWAY).unwrap();
    let b = node.pod("b", "10.82.0.3", GATEWAY).unwrap();
    let d = node.pod("d", "10.82.0.5", GATEWAY).unwrap();
    serve_echo(&b);
    let zr = testsupport::cni::pods::Ns::new(&format!("{prefix}-zr")).unwrap();
    let uds = dir.join("zring.sock");
    let cni = ZdsServer::bind(&uds).unwrap();
    let _zring = spawn_zring(zr.name(), dir, &certs, &uds);
    let conn = cni
        .accept(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}; {}", logs(dir)));
    for (pod, name, sa) in [(&b, "pb", "sa-b"), (&d, "pd", "sa-d")] {
        let fd = pod.ns.open().unwrap();
        let e = conn
            .add(&format!("uid-{name}"), info(name, sa), Some(fd.as_fd()))
            .unwrap();
        assert_eq!(e, "", "{name}");
        pod.enrol().unwrap();
    }
    assert_eq!(conn.snapshot_sent().unwrap(), "");
    flows(&d, &b).unwrap_or_else(|e| panic!("d → b: {e}; {}", logs(dir)));
    let from_d = || {
        let Some((200, body)) = interop_env::get_in(zr.name(), "127.0.0.1:15020", "/metrics")
        else {
            return 0;
        };
        body.lines()
            .filter(|l| l.starts_with("istio_tcp_connections_opened_total{"))
            .filter(|l| l.contains("reporter=\"destination\""))
            .filter(|l| l.contains("source_principal=\"spiffe://cluster.local/ns/zin/sa/sa-d\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while from_d() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        from_d() > 0,
        "no connection counted from sa-d; {}",
        logs(dir)
    );
}

/// Connects from inside `from` to `to:PORT`.
fn connect_from(from: &Pod, to: &Pod) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = format!("{}:{PORT}", to.ip).parse().unwrap();
    plumbing::netns::run_in(Some(from.ns.name()), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .unwrap()
}

/// A connection from `from` to `to`'s echo server, proven to echo once, kept open.
fn held_echo(from: &Pod, to: &Pod) -> std::io::Result<TcpStream> {
    let mut s = connect_from(from, to)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    echo_line(&mut s, "held")?;
    Ok(s)
}

fn echo_line(s: &mut TcpStream, line: &str) -> std::io::Result<()> {
    let msg = format!("{line}\n");
    s.write_all(msg.as_bytes())?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    assert_eq!(back, msg.as_bytes());
    Ok(())
}

/// A process's descriptor count once it holds still for 300 ms.
fn settled_fds(pid: u32) -> usize {
    let mut last = rss_fds(pid).1;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(300));
        let now = rss_fds(pid).1;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// What a process's descriptors point to, sorted (for failure messages).
fn fd_list(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

/// A counter of zring's summed over all its series.
fn zring_sum(ns: &str, name: &str) -> u64 {
    let Some((200, body)) = interop_env::get_in(ns, "127.0.0.1:15020", "/metrics") else {
        return 0;
    };
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// zring's `istio_tcp_connections_opened_total` over mTLS series of a reporter.
fn zring_opened(ns: &str, reporter: &str) -> u64 {
    ztunnel_opened(ns, reporter)
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("ztunnel.log")).unwrap_or_default()
}

/// RSS (KB) and open descriptors of a process.
fn rss_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// The proxy's own pid: the child of `ip netns exec` is the proxy itself (exec).
fn pid(p: &Proc) -> u32 {
    p.0.id()
}

/// Cost per pod, side by side (a measurement, not a check: `--ignored`): `ZRING_INPOD_PODS`
/// pods (default 100) with one address each are handed to zring (2 cores) and to ztunnel
/// (2 worker threads) on the same fake CNI; RSS and descriptors before and after, and the
/// time from AddWorkload to a first echo through the proxy for one real pod.
#[test]
#[ignore]
fn inpod_cost_per_pod() {
    if !can_run("inpod_cost_per_pod") {
        return;
    }
    let n: usize = std::env::var("ZRING_INPOD_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let scratch = Scratch::new("inpod-cost");
    let dir = scratch.path();
    std::fs::write(dir.join("workloads.yaml"), MIXED).unwrap();
    let certs = interop_env::topo::zring_certs_for(dir, &[("zin", "sa-a"), ("zin", "sa-b")]);
    let prefix = format!("zic-{}", std::process::id());
    let mut node = Node::new(&prefix, GATEWAY).unwrap();
    let a = node.pod("a", "10.82.0.2", GATEWAY).unwrap();
    let b = node.pod("b", "10.82.0.3", GATEWAY).unwrap();
    serve_echo(&b);
    b.enrol().unwrap();
    a.enrol().unwrap();
    let many: Vec<testsupport::cni::pods::Ns> = (0..n)
        .map(|i| {
            let ns = testsupport::cni::pods::Ns::new(&format!("{prefix}-p{i}")).unwrap();
            let ip = format!("10.83.{}.{}/32", i / 250, i % 250 + 1);
            testsupport::cni::pods::sh(
                ns.name(),
                &[
                    "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1",
                ],
            )
            .unwrap();
            testsupport::cni::pods::sh(ns.name(), &["ip", "addr", "add", &ip, "dev", "d0"])
                .unwrap();
            testsupport::cni::pods::sh(ns.name(), &["ip", "link", "set", "d0", "up"]).unwrap();
            testsupport::cni::pods::sh(ns.name(), &["ip", "link", "set", "d1", "up"]).unwrap();
            ns
        })
        .collect();
    let mut report = Vec::new();
    for proxy in ["zring", "ztunnel"] {
        let home = testsupport::cni::pods::Ns::new(&format!("{prefix}-{proxy}")).unwrap();
        let uds = dir.join(format!("{proxy}.sock"));
        let cni = ZdsServer::bind(&uds).unwrap();
        let p = if proxy == "zring" {
            spawn_zring(home.name(), dir, &certs, &uds)
        } else {
            spawn_ztunnel_on(home.name(), dir, &uds, "node-z")
        };
        let conn = cni.accept(Duration::from_secs(30)).unwrap();
        assert_eq!(conn.snapshot_sent().unwrap(), "");
        std::thread::sleep(Duration::from_secs(2));
        let before = rss_fds(pid(&p));
        let t = Instant::now();
        for (i, ns) in many.iter().enumerate() {
            let fd = ns.open().unwrap();
            let e = conn
                .add(&format!("uid-p{i}"), info("px", "sa-x"), Some(fd.as_fd()))
                .unwrap();
            assert_eq!(e, "", "{proxy} pod {i}");
        }
        let add_each = t.elapsed() / n as u32;
        std::thread::sleep(Duration::from_secs(2));
        let after = rss_fds(pid(&p));
        // One real pod: AddWorkload → Ack → first echo through the proxy (client and server
        // pods both handed over; the server's first so only the client's add is timed).
        let fd = b.ns.open().unwrap();
        assert_eq!(
            conn.add("uid-pb", info("pb", "sa-b"), Some(fd.as_fd()))
                .unwrap(),
            ""
        );
        let fd = a.ns.open().unwrap();
        let t = Instant::now();
        assert_eq!(
            conn.add("uid-pa", info("pa", "sa-a"), Some(fd.as_fd()))
                .unwrap(),
            ""
        );
        let acked = t.elapsed();
        flows(&a, &b).unwrap_or_else(|e| panic!("{proxy}: {e}; {}", logs(dir)));
        let first = t.elapsed();
        let per_pod_kb = (after.0 as f64 - before.0 as f64) / n as f64;
        let per_pod_fds = (after.1 as f64 - before.1 as f64) / n as f64;
        report.push(format!(
            "{proxy}: {n} pods: RSS {} → {} KB ({per_pod_kb:.1} KB/pod), fds {} → {} ({per_pod_fds:.1}/pod), AddWorkload→Ack {add_each:?}/pod; one pod: Ack {acked:?}, first echo through the proxy {first:?}",
            before.0, after.0, before.1, after.1
        ));
        drop(conn);
        drop(p);
    }
    for line in &report {
        eprintln!("{line}");
    }
}
