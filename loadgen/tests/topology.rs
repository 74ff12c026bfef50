//! Root test: the topology comes up with every namespace and server, carries baseline
//! traffic with the client's source IP, and `down` leaves no namespace or process —
//! also when the state file was lost (a crash).

mod common;

use common::{can_run, loadgen_bin, prefix, Teardown};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use zring_loadgen::phase::{self, Endpoint, RrPhase};
use zring_loadgen::procs;
use zring_loadgen::topo::{self, plan::Plan, UpOptions};

fn up_baseline(prefix: &str) -> (Plan, zring_loadgen::procs::State) {
    let plan = Plan::new(prefix);
    let opts = UpOptions {
        server_cores: 1,
        self_exe: loadgen_bin(),
        mesh: None,
    };
    let state = topo::up(&plan, &opts).expect("topology up").state;
    (plan, state)
}

fn assert_gone(prefix: &str, pids: &[i32]) {
    assert_eq!(plumbing::netns::list(prefix).unwrap(), Vec::<String>::new());
    for &p in pids {
        assert!(!procs::is_alive(p), "process {p} survived down");
    }
    assert!(!procs::state_dir(prefix).exists());
}

#[test]
fn up_carries_baseline_traffic_and_down_leaves_nothing() {
    if !can_run("topology up/down", &["ip"]) {
        return;
    }
    let pfx = prefix("t");
    let _guard = Teardown(pfx.clone());
    let (plan, state) = up_baseline(&pfx);
    let status = topo::status(&pfx).unwrap();
    assert!(status.healthy(&plan), "{status:?}");
    assert_eq!(state.procs.len(), 2, "one server per server pod");

    let (client, server) = plan.baseline_pair();
    let ep = Endpoint {
        netns: Some(client.netns.clone()),
        target: SocketAddr::from((server.ip, topo::plan::HTTP_PORT)),
        expect_ip: IpAddr::V4(client.ip),
        via: None,
    };
    let p = RrPhase {
        rate: 200.0,
        conns: 2,
        payload: 512,
        reconnect: false,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(500),
        seed: 3,
        cores: 1,
        closed: false,
        count: None,
    };
    let r = phase::run_rr(&ep, &p).unwrap();
    assert_eq!(r.correctness, None);
    assert!(r.ok > 50, "baseline requests across the two nodes: {r:?}");

    let pids: Vec<i32> = state.procs.iter().map(|p| p.pid).collect();
    let report = topo::down(&pfx).unwrap();
    assert_eq!(report.netns.len(), 8);
    assert_gone(&pfx, &pids);
}

#[test]
fn down_works_after_a_crash_lost_the_state_file() {
    if !can_run("topology down after a crash", &["ip"]) {
        return;
    }
    let pfx = prefix("c");
    let _guard = Teardown(pfx.clone());
    let (_plan, state) = up_baseline(&pfx);
    std::fs::remove_dir_all(procs::state_dir(&pfx)).unwrap();
    let pids: Vec<i32> = state.procs.iter().map(|p| p.pid).collect();
    assert!(pids.iter().all(|&p| procs::is_alive(p)));
    let report = topo::down(&pfx).unwrap();
    assert_eq!(
        report.processes, 2,
        "servers found through their namespaces"
    );
    assert_gone(&pfx, &pids);
    let again = topo::down(&pfx).unwrap();
    assert!(again.netns.is_empty(), "down is idempotent");
}
