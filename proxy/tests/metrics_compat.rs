//! Root-only: zring and the real istio/ztunnel run side by side (topology in `interop_env`,
//! same LocalConfig), carry the same traffic (echoes both ways, a SOCKS5 CONNECT to a port
//! nobody listens on and one to a port the `zri/deny-denied-port` policy denies, from each
//! side) and are scraped: every istio_* family ztunnel
//! exposes must exist in zring's /metrics with the same type and at least its label keys,
//! and both must name the same identities for the same connection. zring's JSON access
//! log must carry a line per connection with ztunnel's field names and the right values,
//! and zring's per-core gauges must follow a held connection. With `CI=true` this
//! fails, never skips, when the peer binary is missing or the process is not root.

mod common;
mod interop_env;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use interop_env::*;
use plumbing::netns;
use serde_json::{Map, Value};
use testsupport::prom::{families, series};

const OPENED: &str = "istio_tcp_connections_opened_total";
/// Nobody listens here: the upstream refuses.
const CLOSED_PORT: u16 = 9001;

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// One echo through `socks` from `ns` to `target`; `false` when the proxy refused.
fn echo_via(ns: &str, socks: SocketAddr, target: SocketAddr) -> bool {
    netns::run_in(Some(ns), move || {
        let (mut s, code) = common::socks_connect(socks, target);
        if code != 0 {
            return false;
        }
        let mut back = [0u8; 5];
        s.write_all(b"hello").is_ok() && s.read_exact(&mut back).is_ok() && &back == b"hello"
    })
    .unwrap()
}

/// The identity/workload labels of the `reporter` series of `metric` naming `src` → `dst`.
fn identity_labels(text: &str, reporter: &str, src: &str, dst: &str) -> BTreeMap<String, String> {
    // Not the other source_* workload labels: on the inbound leg ztunnel does not resolve
    // the HBONE client (they stay `unknown`), zring fills them in; zring's is the richer
    // answer. Both sides derive the destination's from the same LocalConfig entry.
    let keys = [
        "source_principal",
        "destination_principal",
        "destination_workload",
        "destination_workload_namespace",
        "destination_canonical_service",
        "destination_canonical_revision",
        "destination_app",
        "destination_version",
        "destination_cluster",
        "destination_region",
        "destination_zone",
        "connection_security_policy",
    ];
    let (_, labels) = text
        .lines()
        .filter_map(series)
        .find(|(n, l)| {
            n == OPENED
                && l.get("reporter").map(String::as_str) == Some(reporter)
                && l.get("source_principal").map(String::as_str) == Some(src)
                && l.get("destination_principal").map(String::as_str) == Some(dst)
        })
        .unwrap_or_else(|| panic!("no {reporter} {OPENED} series {src} → {dst} in:\n{text}"));
    labels
        .into_iter()
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .collect()
}

/// zring's `access` lines (JSON objects, `LOG_FORMAT=json`) matching every `(key, value)`.
fn access_lines(env: &Env, want: &[(&str, &str)]) -> Vec<Map<String, Value>> {
    let matching = || {
        let log = env.read_log("zring.log");
        let hits: Vec<Map<String, Value>> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Map<String, Value>>(l).ok())
            .filter(|o| o.get("target").and_then(Value::as_str) == Some("access"))
            .filter(|o| {
                want.iter().all(|(k, v)| {
                    o.get(*k)
                        .map(|x| x.as_str().map_or(x.to_string(), str::to_string))
                        == Some(v.to_string())
                })
            })
            .collect();
        hits
    };
    if within(Duration::from_secs(10), || !matching().is_empty()) {
        // Lines are written at close: one more read, so a late duplicate is seen too.
        std::thread::sleep(Duration::from_millis(200));
    }
    matching()
}

/// Polls `done` every 100 ms for up to `limit`; whether it became true.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The one access line matching `want`; also requires ztunnel's other fields be present.
fn access_line(env: &Env, want: &[(&str, &str)], also: &[&str]) -> Map<String, Value> {
    let hits = access_lines(env, want);
    let log = env.read_log("zring.log");
    assert_eq!(hits.len(), 1, "one access line per connection: {hits:?}");
    let line = hits
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no access line with {want:?} in zring's log:\n{log}"));
    for key in [
        "src.addr",
        "dst.addr",
        "direction",
        "bytes_sent",
        "bytes_recv",
        "duration",
    ]
    .iter()
    .chain(also)
    {
        assert!(line.contains_key(*key), "access line lacks {key}: {line:?}");
    }
    let duration = line["duration"].as_str().unwrap_or_default();
    assert!(duration.ends_with("ms"), "duration {duration:?}");
    line
}

/// One line per connection: the outbound and inbound echoes and the denied CONNECT.
fn check_access_log(env: &Env) {
    let hbone = |ip: &str| addr(ip, 15008).to_string();
    let target = |ip: &str, port| addr(ip, port).to_string();
    let ids = [
        "src.identity",
        "dst.identity",
        "dst.cluster",
        "dst.namespace",
    ];
    let out = access_line(
        env,
        &[
            ("direction", "outbound"),
            ("dst.addr", &hbone(T_WORKLOAD)),
            ("dst.hbone_addr", &target(T_WORKLOAD, SERVER_PORT)),
            ("src.workload", "zwl"),
            ("src.namespace", "zri"),
            ("src.cluster", "cluster1"),
            ("dst.workload", "twl"),
            ("src.identity", Z_ID),
            ("dst.identity", T_ID),
            ("bytes_sent", "5"),
            ("bytes_recv", "5"),
        ],
        &ids,
    );
    assert!(!out.contains_key("error"), "{out:?}");
    access_line(
        env,
        &[
            ("direction", "inbound"),
            ("dst.hbone_addr", &target(Z_WORKLOAD, SERVER_PORT)),
            ("dst.workload", "zwl"),
            ("src.identity", T_ID),
            ("dst.identity", Z_ID),
            ("bytes_sent", "5"),
            ("bytes_recv", "5"),
        ],
        &ids,
    );
    let denied = access_line(
        env,
        &[
            ("direction", "inbound"),
            ("dst.hbone_addr", &target(Z_WORKLOAD, DENIED_PORT)),
            ("level", "ERROR"),
        ],
        &["error"],
    );
    let error = denied["error"].as_str().unwrap_or_default();
    assert!(error.contains("zri/deny-denied-port"), "{error}");
    let refused = access_line(
        env,
        &[
            ("direction", "outbound"),
            ("dst.hbone_addr", &target(T_WORKLOAD, CLOSED_PORT)),
        ],
        &["error"],
    );
    assert_eq!(refused["bytes_sent"], 0, "{refused:?}");
}

/// The value of zring's `name{core="0"}` (the test runs one core).
fn core0(env: &Env, ns: &str, name: &str) -> f64 {
    let text = env.metrics(ns);
    let prefix = format!("{name}{{core=\"0\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} for core 0 in:\n{text}"))
}

/// The per-core gauges while an HBONE connection is held open through zring, and after.
fn check_core_gauges(env: &Env, ns: &str, socks: SocketAddr) {
    let held = netns::run_in(Some(ns), move || {
        let (mut s, code) = common::socks_connect(socks, addr(T_WORKLOAD, SERVER_PORT));
        assert_eq!(code, 0, "SOCKS5 CONNECT for the held connection");
        let mut back = [0u8; 2];
        s.write_all(b"hi").unwrap();
        s.read_exact(&mut back).unwrap();
        s
    })
    .unwrap();
    let core = ["core=\"0\"".to_string()];
    for name in ["zring_core_connections", "zring_core_hbone_streams"] {
        env.wait_series(ns, name, &core);
    }
    assert!(core0(env, ns, "zring_core_pooled_hbone_connections") >= 1.0);
    assert!(core0(env, ns, "zring_core_busy_seconds_total") > 0.0);
    drop(held);
    assert!(
        within(Duration::from_secs(10), || core0(
            env,
            ns,
            "zring_core_connections"
        ) == 0.0),
        "held connection still counted"
    );
    assert_eq!(core0(env, ns, "zring_core_hbone_streams"), 0.0);
}

/// The metric names in the README's `### Metrics` table.
fn readme_metrics() -> std::collections::BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("read README.md");
    let section = readme
        .split("\n### Metrics")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .expect("README has a ### Metrics section");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn zring_metrics_are_a_superset_of_ztunnels() {
    if !can_run("metrics compat zring ⊇ ztunnel") {
        return;
    }
    let env = Env::start();
    let (z, t) = (env.z.name().to_string(), env.t.name().to_string());
    let (z_socks, t_socks) = (addr(Z_WORKLOAD, 15080), addr("127.0.0.1", 15080));
    assert!(
        echo_via(&z, z_socks, addr(T_WORKLOAD, SERVER_PORT)),
        "zring → ztunnel echo"
    );
    assert!(
        echo_via(&t, t_socks, addr(Z_WORKLOAD, SERVER_PORT)),
        "ztunnel → zring echo"
    );
    assert!(
        !echo_via(&z, z_socks, addr(T_WORKLOAD, CLOSED_PORT)),
        "refused upstream echoed"
    );
    assert!(
        !echo_via(&t, t_socks, addr(Z_WORKLOAD, CLOSED_PORT)),
        "refused upstream echoed"
    );
    assert!(
        !echo_via(&z, z_socks, addr(T_WORKLOAD, DENIED_PORT)),
        "policy-denied connection echoed"
    );
    assert!(
        !echo_via(&t, t_socks, addr(Z_WORKLOAD, DENIED_PORT)),
        "policy-denied connection echoed"
    );
    // Each proxy enforces the policy on its inbound leg and flags the close `DENY`.
    let deny = [
        "reporter=\"destination\"".to_string(),
        "response_flags=\"DENY\"".to_string(),
    ];
    env.wait_series(&z, "istio_tcp_connections_closed_total", &deny);
    env.wait_series(&t, "istio_tcp_connections_closed_total", &deny);
    env.wait_series(&z, "istio_tcp_connections_failed_total", &[]);
    env.wait_series(&t, "istio_tcp_connections_failed_total", &[]);
    let (ours, theirs) = (env.metrics(&z), env.metrics(&t));
    let (our_fams, their_fams) = (families(&ours), families(&theirs));
    for (name, (kind, keys)) in their_fams.iter().filter(|(n, _)| n.starts_with("istio_")) {
        let (our_kind, our_keys) = our_fams
            .get(name)
            .unwrap_or_else(|| panic!("zring lacks {name} ({kind})\n{ours}"));
        assert_eq!(our_kind, kind, "type of {name}");
        let missing: Vec<_> = keys.difference(our_keys).collect();
        assert!(
            missing.is_empty(),
            "zring's {name} lacks labels {missing:?}"
        );
    }
    for name in ["process_open_fds", "process_max_fds"] {
        assert!(our_fams.contains_key(name), "zring lacks {name}");
    }
    let documented = readme_metrics();
    let mut scraped: std::collections::BTreeSet<String> = our_fams.keys().cloned().collect();
    // A labelled zring family with nothing to count yet (`zring_waypoint_refused_total`)
    // is declared by its `# TYPE` line alone.
    let declared = ours.lines().filter_map(|l| l.strip_prefix("# TYPE "));
    let declared = declared.filter_map(|t| t.split(' ').next());
    scraped.extend(
        declared
            .filter(|n| n.starts_with("zring_"))
            .map(str::to_string),
    );
    assert_eq!(
        documented, scraped,
        "README's metric table vs zring's /metrics"
    );
    check_access_log(&env);
    check_core_gauges(&env, &z, z_socks);
    // The same connection, seen by its client side and its server side.
    assert_eq!(
        identity_labels(&ours, "source", Z_ID, T_ID),
        identity_labels(&theirs, "destination", Z_ID, T_ID),
    );
    assert_eq!(
        identity_labels(&ours, "destination", T_ID, Z_ID),
        identity_labels(&theirs, "source", T_ID, Z_ID),
    );
}
