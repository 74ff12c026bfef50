//! Root test of the main job with the mesh: `zring-loadgen demo --quick --pcap FILE`
//! (up → run while tcpdump watches node A's eth0 → report → down). Asserts the report
//! files exist, mesh requests succeeded with the client pod's source IP, the passthrough
//! path worked, and between the nodes the mesh flow used only port 15008 (no plaintext
//! 8080), reading the capture independently of the report.
//! The same again with `--inpod` (in-pod capture beside the fake istio-cni, no node
//! plumbing). The xDS test runs `demo --quick --xds` (workloads and certificates from the
//! control plane, then live enrol and withdraw).
//! Needs `cargo build --workspace` first (the zring binary next to zring-loadgen).

mod common;

use common::{can_run, loadgen_bin, prefix, zring_bin, Teardown};
use std::path::Path;
use std::process::Command;
use zring_loadgen::procs;
use zring_loadgen::report::Report;
use zring_loadgen::topo::plan::Plan;

fn loadgen(args: &[&str]) {
    let out = Command::new(loadgen_bin())
        .args(args)
        .output()
        .expect("zring-loadgen runs");
    assert!(
        out.status.success(),
        "zring-loadgen {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lines of a capture as `tcpdump -nn -r` prints them.
fn read_capture(pcap: &Path) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(pcap)
        .output()
        .expect("tcpdump -r");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn assert_report(dir: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(run_dir(dir).join("report.json")).unwrap())
        .unwrap()
}

/// The one report directory under `dir`, with the report's files in it.
fn run_dir(dir: &Path) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(runs.len(), 1, "one report directory");
    let run = runs[0].path();
    for f in ["report.json", "report.md", "latency.svg", "throughput.svg"] {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }
    run
}

/// Whether the demo can run here (root, tools, the zring binary); panics in CI if not.
fn demo_can_run(tools: &[&str]) -> bool {
    if !can_run("the mesh demo", tools) {
        return false;
    }
    if !zring_bin().is_file() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} missing: run cargo build --workspace",
            zring_bin().display()
        );
        eprintln!(
            "SKIPPED: {} missing: run cargo build --workspace first",
            zring_bin().display()
        );
        return false;
    }
    true
}

#[test]
fn demo_through_the_mesh_keeps_source_ip_and_only_hbone_between_nodes() {
    if !demo_can_run(&["ip", "tcpdump", "iptables-restore", "ipset"]) {
        return;
    }
    demo_keeps_source_ip_and_only_hbone_between_nodes("d", &[]);
}

/// `demo --inpod`: no node plumbing; each node's zring runs with `--inpod` and the fake
/// istio-cni hands it the enrolled pods over ZDS. The same checks as the node-level demo:
/// with nothing captured at the node, HBONE on the node link proves in-pod capture.
#[test]
fn demo_inpod_keeps_source_ip_and_only_hbone_between_nodes() {
    if !demo_can_run(&["ip", "tcpdump", "iptables-restore"]) {
        return;
    }
    demo_keeps_source_ip_and_only_hbone_between_nodes("i", &["--inpod"]);
}

fn demo_keeps_source_ip_and_only_hbone_between_nodes(tag: &str, extra: &[&str]) {
    let pfx = prefix(tag);
    let _guard = Teardown(pfx.clone());
    let plan = Plan::new(&pfx);
    let out = std::env::temp_dir().join(format!("{pfx}results"));
    let _ = std::fs::remove_dir_all(&out);
    let pcap = std::env::temp_dir().join(format!("{pfx}eth0.pcap"));
    let (out_s, pcap_s) = (out.display().to_string(), pcap.display().to_string());
    let mut args = vec![
        "demo", "--quick", "--prefix", &pfx, "--out", &out_s, "--pcap", &pcap_s, "--conns", "4",
    ];
    args.extend(extra);
    loadgen(&args);
    assert!(
        plumbing::netns::list(&pfx).unwrap().is_empty(),
        "demo leaves no namespace"
    );
    assert!(!procs::state_dir(&pfx).exists(), "demo removes its state");

    let report = assert_report(&out);
    assert!(
        report.failures.is_empty(),
        "correctness failures: {:?}",
        report.failures
    );
    for p in &report.request_response {
        let m = p.mesh.as_ref().expect("mesh measured");
        assert!(m.ok > 0 && m.correctness.is_none(), "mesh point {m:?}");
    }
    let pt = report
        .passthrough
        .as_ref()
        .expect("passthrough checked on mesh runs");
    assert!(
        pt.completed > 0 && pt.correctness.is_none(),
        "passthrough {pt:?}"
    );
    assert!(report.bulk[0].mesh.as_ref().is_some_and(|b| b.bytes > 0));

    let link = report.node_link.expect("--pcap recorded the node link");
    assert!(
        link.hbone_packets > 0 && link.plaintext_packets == 0,
        "{link:?}"
    );
    let lines = read_capture(&pcap);
    let (client, server) = plan.mesh_pair();
    let plain = format!("{}.8080", server.ip);
    let leaked: Vec<_> = lines
        .iter()
        .filter(|l| l.contains(&client.ip.to_string()) && l.contains(&plain))
        .collect();
    assert!(
        leaked.is_empty(),
        "plaintext 8080 of the mesh flow on the node link: {:?}",
        &leaked[..leaked.len().min(5)]
    );
    let hbone = format!("{}.15008", server.ip);
    assert!(
        lines.iter().any(|l| l.contains(&hbone)),
        "no HBONE (15008) packets on the node link"
    );
    let _ = std::fs::remove_file(&pcap);
    let _ = std::fs::remove_dir_all(&out);
}

/// `demo --xds`: both proxies run on the control plane's workloads and certificates
/// (the sweep passes through HBONE), then node B's plain server is enrolled and
/// withdrawn live. Each steady phase's 50 requests must all be answered, over HBONE
/// exactly while enrolled (node B's proxy's own counters), with the pod's ipset entry
/// and route present exactly then; no request may fail while switching; no proxy may
/// restart; nothing may be NACKed.
#[test]
fn demo_xds_enrols_and_withdraws_a_pod_live() {
    if !demo_can_run(&["ip", "iptables-restore", "ipset"]) {
        return;
    }
    let pfx = prefix("x");
    let _guard = Teardown(pfx.clone());
    let out = std::env::temp_dir().join(format!("{pfx}results"));
    let _ = std::fs::remove_dir_all(&out);
    let out_s = out.display().to_string();
    loadgen(&[
        "demo", "--quick", "--xds", "--prefix", &pfx, "--out", &out_s, "--conns", "4",
    ]);
    assert!(plumbing::netns::list(&pfx).unwrap().is_empty());

    let report = assert_report(&out);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    for p in &report.request_response {
        let m = p.mesh.as_ref().expect("mesh measured");
        assert!(m.ok > 0 && m.correctness.is_none(), "mesh point {m:?}");
    }
    let dir = run_dir(&out);
    assert!(dir.join("enrolment.md").is_file());
    let e: zring_loadgen::enrol::EnrolReport =
        serde_json::from_str(&std::fs::read_to_string(dir.join("enrolment.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = e.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "before",
            "enrolling",
            "enrolled",
            "withdrawing",
            "withdrawn"
        ]
    );
    let n = zring_loadgen::enrol::PHASE_REQUESTS;
    for (i, protocol, plumbed, hbone) in [
        (0, "TCP", false, 0),
        (2, "HBONE", true, n),
        (4, "TCP", false, 0),
    ] {
        let p = &e.phases[i];
        assert_eq!(
            (p.protocol.as_str(), p.plumbed, p.ok, p.hbone),
            (protocol, plumbed, n, hbone),
            "{p:?}"
        );
    }
    // A transition answers every request but those reset because they were open across
    // the plumbing step (bounded: see `enrol::failures`).
    for p in [&e.phases[1], &e.phases[3]] {
        let answered = p.ok + p.resets;
        assert!(p.requests > 0 && answered == p.requests, "{p:?}");
        assert!(p.resets <= p.reset_allowance, "{p:?}");
        assert!(p.propagation_ms.is_some_and(|ms| ms > 0.0), "{p:?}");
    }
    assert!(
        e.phases[1].hbone > 0,
        "HBONE began while enrolling: {:?}",
        e.phases[1]
    );
    assert_eq!(e.proxy_pids_before.len(), 2);
    assert_eq!(e.proxy_pids_before, e.proxy_pids_after);
    assert!(e.nacks.is_empty() && e.failures.is_empty(), "{e:?}");
    let _ = std::fs::remove_dir_all(&out);
}
