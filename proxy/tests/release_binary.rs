//! Root-only: the shipped `zring` (release profile, its own global allocator, mimalloc) run
//! as a user runs it, against a node whose `ztunnel-pods-ips` already holds pods. Every
//! command of issue 24 crashed here while libipset's strings were freed by mimalloc:
//! `plumb node up` twice, `pod add` of a second and third pod, `pod del`, `node check`,
//! `trace`, and `run --plumb`. Each must exit 0 and leave the expected kernel state.
//!
//! The binary is `target/release/zring` (beside this test's own profile directory), or
//! `ZRING_RELEASE_BIN`; `scripts/test-all` builds it first. Missing binary or no root:
//! skip locally, fail under `CI=true`.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use plumbing::netns::{self, NetnsGuard};
use testsupport::kernel::ns_output as text;

const GW: &str = "10.244.1.1";
const ZT: &str = "10.244.1.2";
const PODS: [&str; 3] = ["10.244.1.4", "10.244.1.6", "10.244.1.7"];

/// `target/release/zring`, found from this test's own `target/<profile>/deps/` path.
fn release_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ZRING_RELEASE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap_or(Path::new("target"));
    target.join("release").join("zring")
}

fn can_run(bin: &Path) -> bool {
    use testsupport::require;
    let mut missing = require::missing(&["ip", "iptables-restore", "ipset"], &[bin]);
    if !bin.exists() {
        missing.push("build it: cargo build --release -p zring-proxy --bin zring".into());
    }
    require::can_run("release_binary", &missing)
}

/// Runs `ip netns exec ns args…` and returns its output, whatever the exit status.
fn exec(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap()
}

/// Runs the release `zring` with `args` in `ns` and requires exit status 0.
fn zring(bin: &Path, ns: &str, args: &[&str]) -> String {
    let out = exec(ns, &[&[bin.to_str().unwrap()][..], args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "zring {} exited with {} (a signal here is issue 24's crash)\nstdout:\n{stdout}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The members of `ztunnel-pods-ips` as `ipset list` (the ipset tool, not zring) prints them.
fn members(ns: &str) -> Vec<String> {
    testsupport::kernel::ipset_members(ns, "ztunnel-pods-ips")
}

fn table_100(ns: &str) -> String {
    text(ns, &["ip", "route", "show", "table", "100"])
}

/// `--netns … --gateway-ip … --ztunnel-ip … --ztunnel-veth vzt` and one `--pod-ip` per pod.
fn node_args<'a>(ns: &'a str, pods: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--netns",
        ns,
        "--gateway-ip",
        GW,
        "--ztunnel-ip",
        ZT,
        "--ztunnel-veth",
        "vzt",
    ];
    for p in pods {
        a.extend(["--pod-ip", p]);
    }
    a
}

/// A node netns and a ztunnel pod netns behind veth `vzt` ↔ `eth0`.
fn topology(prefix: &str) -> (NetnsGuard, NetnsGuard) {
    let node = NetnsGuard::new(&format!("{prefix}-n")).unwrap();
    let pod = NetnsGuard::new(&format!("{prefix}-z")).unwrap();
    netns::veth_pair(Some(node.name()), "vzt", "eth0", Some(pod.name())).unwrap();
    for (ns, cmd) in [
        (node.name(), format!("ip addr add {GW}/32 dev vzt")),
        (node.name(), "ip link set vzt up".to_string()),
        (
            node.name(),
            format!("ip route add {ZT}/32 dev vzt scope host"),
        ),
        (pod.name(), format!("ip addr add {ZT}/24 dev eth0")),
        (pod.name(), "ip link set eth0 up".to_string()),
        (pod.name(), format!("ip route add default via {GW}")),
        // The enrolled pods' own veths, as far as the node's main table is concerned.
        (
            node.name(),
            "ip link add vpods type veth peer name vpodsp".to_string(),
        ),
        (node.name(), "ip link set vpods up".to_string()),
    ]
    .into_iter()
    .chain(PODS.map(|p| {
        (
            node.name(),
            format!("ip route add {p}/32 dev vpods scope link"),
        )
    })) {
        text(ns, &cmd.split(' ').collect::<Vec<_>>());
    }
    (node, pod)
}

#[test]
fn release_zring_plumbs_a_node_with_enrolled_pods() {
    let bin = release_binary();
    if !can_run(&bin) {
        return;
    }
    let (node, pod) = topology(&format!("zrrb{}", std::process::id()));
    let ns = node.name();
    let [p1, p2, p3] = PODS;

    for _ in 0..2 {
        zring(
            &bin,
            ns,
            &[&["plumb", "node", "up"][..], &node_args(ns, &[p1])].concat(),
        );
        assert_eq!(members(ns), [p1], "node up with one pod");
    }
    for p in [p2, p3] {
        zring(
            &bin,
            ns,
            &[&["plumb", "pod", "add"][..], &node_args(ns, &[p1]), &[p]].concat(),
        );
        assert!(
            table_100(ns).contains(&format!("{p} via")),
            "{p}: {}",
            table_100(ns)
        );
    }
    assert_eq!(members(ns), [p1, p2, p3]);
    zring(
        &bin,
        ns,
        &[&["plumb", "pod", "del"][..], &node_args(ns, &[p1]), &[p2]].concat(),
    );
    assert_eq!(members(ns), [p1, p3]);
    assert!(!table_100(ns).contains(&format!("{p2} via")));

    let check = zring(
        &bin,
        ns,
        &[&["plumb", "node", "check"][..], &node_args(ns, &[p1, p3])].concat(),
    );
    assert!(
        !check.contains("missing") && !check.contains("extra"),
        "{check}"
    );
    let drift = exec(
        ns,
        &[
            &[bin.to_str().unwrap(), "plumb", "node", "check"][..],
            &node_args(ns, &[p1]),
        ]
        .concat(),
    );
    assert_eq!(
        drift.status.code(),
        Some(1),
        "an extra member is drift (exit 1)"
    );
    assert!(String::from_utf8_lossy(&drift.stdout).contains(p3));

    // With the node's inputs the trace also compares the live set with the desired one:
    // exit 0 means no packet's path differs.
    let trace_args = [
        &["plumb", "trace", "--ztunnel-netns", pod.name()][..],
        &node_args(ns, &[p1, p3]),
        &[p1, "10.244.2.5:8080"],
    ]
    .concat();
    let trace = zring(&bin, ns, &trace_args);
    for want in [
        "--match-set ztunnel-pods-ips src -j MARK --set-xmark 0x100/0x100  => mark 0x0 -> 0x100",
        "into istioout",
        "drift: none",
    ] {
        assert!(trace.contains(want), "`{want}` missing from:\n{trace}");
    }

    run_with_plumb(&bin, pod.name());
    assert_eq!(members(ns), [p1, p3], "run --plumb changed the node's set");
    zring(
        &bin,
        ns,
        &[&["plumb", "node", "down"][..], &node_args(ns, &[p1, p3])].concat(),
    );
    let sets = text(ns, &["ipset", "list", "-n"]);
    assert!(!sets.contains("ztunnel-pods-ips"), "{sets}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `zring run --plumb` in the ztunnel pod netns: ready, then SIGTERM, exit 0, and the pod
/// side is gone again.
fn run_with_plumb(bin: &Path, ns: &str) {
    let scratch = common::Scratch::new("release-run");
    let dir = scratch.path();
    std::fs::write(dir.join("workloads.yaml"), WORKLOADS).unwrap();
    common::make_certs(dir, &[common::id("cluster.local", "default", "client")]);
    let mut child = Killed(
        Command::new("ip")
            .args(["netns", "exec", ns, bin.to_str().unwrap(), "run"])
            .arg("--config")
            .arg(dir.join("workloads.yaml"))
            .arg("--cert-dir")
            .arg(dir)
            .args(["--node-name", "node-a", "--cores", "1"])
            .args(["--plumb", "--plumb-gateway", GW, "--plumb-eth0", "eth0"])
            .args(["--socks5-addr", "off", "--admin-addr", "off"])
            .spawn()
            .unwrap(),
    );
    wait_listening(ns, "127.0.0.1:15020");
    assert!(
        text(ns, &["ip", "rule"]).contains("20003:"),
        "pod side not applied"
    );
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "zring run --plumb exited with {status}");
    assert!(
        !text(ns, &["ip", "rule"]).contains("20003:"),
        "pod side left behind"
    );
}

fn wait_listening(ns: &str, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if netns::run_in(Some(ns), || TcpStream::connect(addr))
            .unwrap()
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("zring did not listen on {addr} in {ns}");
}

const WORKLOADS: &str = r#"workloads:
- uid: c//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["10.244.1.4"]
  protocol: HBONE
  node: node-a
"#;
