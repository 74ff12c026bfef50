//! Root test: bare nodes (namespaces, veths, addresses and the pods' own routes only), and
//! a zring per node run with `--plumb --host-netns` and a LocalConfig: it finds its veth,
//! gateway and IP, builds the node side, enrols the node's HBONE pods, and carries the
//! articles' flow (client pod on node A → server pod on node B, the server seeing the
//! client's IP). Then node A's zring is killed with SIGKILL: new connections of its
//! enrolled client fail (the capture stays: nothing bypasses the mesh); a rule is
//! deleted by hand; a new zring adopts the node side, repairs the rule (counted in
//! `zring_plumb_repairs_total`), and the flow works again with every pod still enrolled.
//! Last, a rolling update: SIGTERM, the pod replaced by one with another IP and veth,
//! whose zring takes the node side over in place.

mod common;

use common::{can_run, loadgen_bin, prefix, zring_bin, Teardown};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;
use zring_loadgen::mesh::{self, MeshOptions, METRICS_PORT};
use zring_loadgen::phase::{self, Endpoint, RrPhase};
use zring_loadgen::procs;
use zring_loadgen::topo::{self, plan::Plan, UpOptions};

fn sh(ns: &str, args: &[&str]) -> String {
    testsupport::kernel::ns_output(ns, args)
}

fn members(ns: &str) -> Vec<String> {
    testsupport::kernel::ipset_members(ns, "ztunnel-pods-ips")
}

/// `name` samples of node's proxy's /metrics, as `series value` lines.
fn metric_lines(ztunnel_ns: &str, name: &str) -> Vec<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], METRICS_PORT));
    let (_, body) = mesh::http_get_in(ztunnel_ns, addr, "/metrics").unwrap();
    body.lines()
        .filter(|l| l.starts_with(name))
        .map(str::to_string)
        .collect()
}

/// Echo requests from the enrolled client on A to the enrolled server on B; all must be
/// answered, from the client's own IP.
fn flow_works(plan: &Plan) {
    let (client, server) = plan.mesh_pair();
    let ep = Endpoint {
        netns: Some(client.netns.clone()),
        target: SocketAddr::from((server.ip, topo::plan::HTTP_PORT)),
        expect_ip: IpAddr::V4(client.ip),
        via: None,
    };
    let p = RrPhase {
        rate: 100.0,
        conns: 2,
        payload: 256,
        reconnect: false,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(500),
        seed: 5,
        cores: 1,
        closed: false,
        count: None,
    };
    let r = phase::run_rr(&ep, &p).unwrap();
    assert_eq!(r.correctness, None, "{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
    assert!(r.ok > 20, "{r:?}");
}

#[test]
fn zring_plumbs_bare_nodes_and_survives_kill_9() {
    if !can_run(
        "self-plumbing bare nodes",
        &["ip", "ipset", "iptables-save"],
    ) {
        return;
    }
    let pfx = prefix("sp");
    let _guard = Teardown(pfx.clone());
    let plan = Plan::new(&pfx);
    let opts = UpOptions {
        server_cores: 1,
        self_exe: loadgen_bin(),
        mesh: Some(MeshOptions {
            zring: zring_bin(),
            cores: 1,
            pool_idle: None,
            xds: false,
            inpod: false,
        }),
    };
    let state = topo::up(&plan, &opts).expect("topology up").state;
    let a = &plan.a;
    let want: Vec<String> = a.enrolled_ips().iter().map(|ip| ip.to_string()).collect();
    assert_eq!(
        members(&a.netns),
        want,
        "node A's HBONE pods enrolled by zring"
    );
    let gauge = metric_lines(&a.ztunnel().netns, "zring_plumb_enrolled_pods");
    assert_eq!(gauge, [format!("zring_plumb_enrolled_pods {}", want.len())]);
    flow_works(&plan);

    let zring_a = state
        .procs
        .iter()
        .find(|p| p.kind == "zring" && p.netns == a.ztunnel().netns)
        .expect("node A's zring")
        .clone();
    let args = procs::command_line(zring_a.pid).unwrap();
    assert!(Command::new("kill")
        .args(["-KILL", &zring_a.pid.to_string()])
        .status()
        .unwrap()
        .success());
    while procs::is_alive(zring_a.pid) {
        std::thread::sleep(Duration::from_millis(20));
    }

    // Fail closed: the client's traffic is still captured, and no server answers it. (The
    // handshake itself may complete for a moment: a killed io_uring process's listeners
    // close asynchronously, after the process is gone.)
    let (client, server) = plan.mesh_pair();
    let target = SocketAddr::from((server.ip, topo::plan::HTTP_PORT));
    let answer = plumbing::netns::run_in(Some(&client.netns), || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_millis(700))?;
        s.set_read_timeout(Some(Duration::from_millis(700)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: s\r\n\r\n")?;
        let mut buf = [0u8; 64];
        s.read(&mut buf)
    })
    .unwrap();
    assert!(
        !matches!(answer, Ok(n) if n > 0),
        "a request got an answer with no proxy on node A: {answer:?}"
    );
    assert_eq!(members(&a.netns), want, "SIGKILL changed the enrolled set");

    sh(&a.netns, &["ip", "rule", "del", "priority", "101"]);
    let log = zring_a.log.with_extension("restart.log");
    let restarted =
        procs::spawn_in_env(&zring_a.netns, "zring", (&zring_bin(), &args), &[], log).unwrap();
    mesh::wait_ready(&zring_a.netns, &restarted).expect("restarted zring ready");
    assert!(
        sh(&a.netns, &["ip", "rule"]).contains("101:"),
        "rule 101 not repaired"
    );
    let repairs = metric_lines(&a.ztunnel().netns, "zring_plumb_repairs_total");
    assert!(
        repairs
            .iter()
            .any(|l| l.starts_with("zring_plumb_repairs_total{object=\"rule\"}")),
        "{repairs:?}"
    );
    assert_eq!(
        members(&a.netns),
        want,
        "the restart changed the enrolled set"
    );
    flow_works(&plan);

    rolling_update(&plan, restarted, &args);
}

/// A DaemonSet rolling update on node A: SIGTERM (exit 0, node side left in place), the
/// old pod deleted, a new pod with another IP and veth: its zring takes the node side
/// over in place, the set is untouched, and the flow works through the new pod.
fn rolling_update(plan: &Plan, old: procs::Proc, args: &[String]) {
    let a = &plan.a;
    let status = Command::new("kill")
        .args(["-TERM", &old.pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    while procs::is_alive(old.pid) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let want: Vec<String> = a.enrolled_ips().iter().map(|ip| ip.to_string()).collect();
    assert_eq!(members(&a.netns), want, "SIGTERM changed the enrolled set");
    plumbing::netns::delete(&old.netns).unwrap();
    // The new pod: like the topology's pods, but wired after the node link took `eth0`.
    let new_ns = format!("{}ztunnel-a2", plan.prefix);
    plumbing::netns::create(&new_ns).unwrap();
    let (gw, ip) = (a.gateway.to_string(), "10.244.1.9");
    for cmd in [
        format!("ip link add vztunnel2 type veth peer name eth0 netns {new_ns}"),
        format!("ip addr add {gw}/32 dev vztunnel2"),
        "ip link set vztunnel2 up".into(),
        format!("ip route add {ip}/32 dev vztunnel2 scope link src {gw}"),
    ] {
        sh(&a.netns, &cmd.split(' ').collect::<Vec<_>>());
    }
    for cmd in [
        format!("ip addr add {ip}/32 dev eth0"),
        "ip link set eth0 up".into(),
        format!("ip route add {gw}/32 dev eth0 scope link"),
        format!("ip route add default via {gw} dev eth0"),
    ] {
        sh(&new_ns, &cmd.split(' ').collect::<Vec<_>>());
    }
    let log = old.log.with_extension("update.log");
    let updated = procs::spawn_in_env(&new_ns, "zring", (&zring_bin(), args), &[], log).unwrap();
    mesh::wait_ready(&new_ns, &updated).expect("the new pod's zring ready");
    let link = sh(&a.netns, &["ip", "-d", "link", "show", "istioin"]);
    assert!(link.contains("remote 10.244.1.9"), "{link}");
    let t102 = sh(&a.netns, &["ip", "route", "show", "table", "102"]);
    assert!(
        t102.contains("default via 10.244.1.9 dev vztunnel2"),
        "{t102}"
    );
    assert!(!t102.contains(&a.ztunnel().ip.to_string()), "{t102}");
    assert_eq!(
        members(&a.netns),
        want,
        "the update changed the enrolled set"
    );
    flow_works(plan);
}
