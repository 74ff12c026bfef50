//! Root-only: the real istio/ztunnel (`../shared/peers/ztunnel`, no FAKE_CA, no local
//! config) runs against the load generator's control plane in a namespace this test
//! creates: it must receive its workloads over delta ADS and ACK them, obtain its
//! certificate through `CreateCertificate`, become ready, carry a SOCKS5 connection over
//! HBONE (mTLS with that certificate) to a workload, and take a live push. This is the
//! proof that the control plane speaks Istio's protocol. Then zring, with no --config,
//! takes the same workloads from the same control plane, becomes ready, carries a SOCKS5
//! connection over HBONE to ztunnel (ztunnel logs zring's client identity) and takes the
//! same push. Fails, never skips, under CI.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::xds::{
    echo_rounds, echo_server, endpoint, get_in, sample, socks_connect, spawn_zring, wait_for, Proc,
    Site, SLEEP, SLEEP_ID, ZRING_ADMIN, ZRING_READY, ZRING_SOCKS, ZRING_STATS,
};
use zring::config::LocalConfig;
use zring_loadgen::control::Event;
use zring_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE};

const ECHO: &str = "10.77.0.2";
const ECHO_PORT: u16 = 8080;
const IDENTITY: &str = "spiffe://cluster.local/ns/zxd/sa/echo";

fn mesh(extra: &str) -> LocalConfig {
    let yaml = format!(
        r#"
workloads:
- uid: Kubernetes//Pod/zxd/echo
  name: echo
  namespace: zxd
  serviceAccount: echo
  workloadIps: ["{ECHO}"]
  protocol: HBONE
  node: node-b
- uid: Kubernetes//Pod/zxd/sleep
  name: sleep
  namespace: zxd
  serviceAccount: sleep
  workloadIps: ["{SLEEP}"]
  protocol: HBONE
  node: node-a
{extra}"#
    );
    LocalConfig::from_yaml("test mesh", &yaml).unwrap()
}

const OTHER: &str = r#"- uid: Kubernetes//Pod/zxd/other
  name: other
  namespace: zxd
  serviceAccount: other
  workloadIps: ["10.77.0.3"]
  protocol: HBONE
  node: node-c
"#;

fn ztunnel_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/ztunnel")
}

fn spawn_ztunnel(ns: &str, dir: &Path, cp: SocketAddr) -> Proc {
    let log = dir.join("ztunnel.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(ztunnel_bin())
        .arg("proxy")
        .current_dir(dir)
        .env_remove("FAKE_CA")
        .env("RUST_LOG", "info")
        .envs(endpoint(dir, cp).ztunnel_env("node-b", "zxd/echo/echo", 1))
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("start ztunnel");
    Proc(child, log)
}

#[test]
fn ztunnel_and_zring_run_on_the_control_planes_workloads() {
    if !common::can_run("the ztunnel xDS/CA test", &["ip"]) {
        return;
    }
    let bin = ztunnel_bin();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !bin.exists() {
        assert!(!ci, "{} is missing", bin.display());
        eprintln!("SKIPPED: {} is missing", bin.display());
        return;
    }
    let site = Site::new("xds", &[ECHO, SLEEP]);
    let (ns, dir) = (site.ns.clone(), site.dir.clone());
    let cp = site.control_plane(mesh(""));
    let target: SocketAddr = format!("{ECHO}:{ECHO_PORT}").parse().unwrap();
    echo_server(&ns, target);
    let zt = spawn_ztunnel(&ns, &dir, cp.addr());
    let context = || {
        format!(
            "control plane events: {:#?}\nztunnel log:\n{}",
            cp.events(),
            zt.log()
        )
    };

    wait_for(
        Duration::from_secs(30),
        "ztunnel did not become ready",
        || {
            matches!(
                get_in(&ns, "127.0.0.1:15021", "/healthz/ready"),
                Some((200, _))
            )
        },
        context,
    );
    for t in [ADDRESS_TYPE, AUTHORIZATION_TYPE] {
        let ack = Event::Ack { type_url: t.into() };
        wait_for(
            Duration::from_secs(10),
            &format!("ztunnel did not ACK {t}"),
            || cp.events().contains(&ack),
            context,
        );
    }
    let events = cp.events();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Nack { .. })),
        "ztunnel refused a resource\n{}",
        context()
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Stream { node, .. } if node.starts_with("ztunnel~"))),
        "no stream from a ztunnel node id\n{}",
        context()
    );

    // Traffic over HBONE: mTLS needs the certificate the control plane issued.
    echo_rounds(socks_connect(&ns, "127.0.0.1:15080", target), &context);
    let issued = Event::Issued {
        identity: IDENTITY.into(),
    };
    assert!(
        cp.events().contains(&issued),
        "no certificate issued for {IDENTITY}\n{}",
        context()
    );
    wait_for(
        Duration::from_secs(10),
        "ztunnel's access log shows no HBONE connection with the issued identity",
        || zt.log().contains(IDENTITY) && zt.log().contains("connection complete"),
        context,
    );

    // zring on node-a, configured by the same control plane, reaches ztunnel's workload.
    let zr = spawn_zring(&ns, &dir, cp.addr());
    let context = || {
        format!(
            "control plane events: {:#?}\nztunnel log:\n{}\nzring log:\n{}\nzring metrics:\n{}",
            cp.events(),
            zt.log(),
            zr.log(),
            get_in(&ns, ZRING_STATS, "/metrics")
                .map(|(_, b)| b)
                .unwrap_or_default()
        )
    };
    wait_for(
        Duration::from_secs(20),
        "zring did not become ready on its xDS state",
        || matches!(get_in(&ns, ZRING_READY, "/healthz/ready"), Some((200, _))),
        context,
    );
    let issued = Event::Issued {
        identity: SLEEP_ID.into(),
    };
    wait_for(
        Duration::from_secs(10),
        "zring did not get a certificate for sleep from the CA",
        || cp.events().contains(&issued),
        context,
    );
    wait_for(
        Duration::from_secs(5),
        "zring does not show the CA's certificate in /config_dump",
        || get_in(&ns, ZRING_ADMIN, "/config_dump").is_some_and(|(_, b)| b.contains(SLEEP_ID)),
        context,
    );
    let s = std::panic::catch_unwind(|| socks_connect(&ns, ZRING_SOCKS, target))
        .unwrap_or_else(|_| panic!("zring's SOCKS5 CONNECT failed\n{}", context()));
    echo_rounds(s, &context);
    wait_for(
        Duration::from_secs(10),
        "ztunnel did not log zring's connection with the sleep identity",
        || zt.log().contains(SLEEP_ID),
        context,
    );
    let zring_stream = cp.events().into_iter().find_map(|e| match e {
        Event::Stream {
            node,
            metadata,
            headers,
        } if node.starts_with("ztunnel~10.77.0.1~zring-node-a.istio-system~") => {
            Some((metadata, headers))
        }
        _ => None,
    });
    let (metadata, headers) =
        zring_stream.unwrap_or_else(|| panic!("no ADS stream with zring's node id\n{}", context()));
    // ISTIO_META_* and XDS_HEADER_* (spawn_zring sets one of each) as ztunnel sends them.
    let has = |list: &[(String, String)], k: &str, v: &str| {
        list.iter().any(|p| p == &(k.into(), v.into()))
    };
    assert!(has(&metadata, "ZRING_TEST", "meta-1"), "{metadata:?}");
    assert!(has(&metadata, "NODE_NAME", "node-a"), "{metadata:?}");
    assert!(has(&metadata, "CLUSTER_ID", "Kubernetes"), "{metadata:?}");
    assert!(has(&headers, "x-zring-test", "header-1"), "{headers:?}");
    assert!(
        !headers.iter().any(|(k, _)| k == "authorization"),
        "{headers:?}"
    );

    // A live push: a new workload appears in both proxies without a restart.
    let acks_before = cp
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Ack { .. }))
        .count();
    cp.push(mesh(OTHER));
    for (who, admin) in [("ztunnel", "127.0.0.1:15000"), ("zring", ZRING_ADMIN)] {
        wait_for(
            Duration::from_secs(10),
            &format!("the pushed workload did not reach {who}'s /config_dump"),
            || get_in(&ns, admin, "/config_dump").is_some_and(|(_, b)| b.contains("10.77.0.3")),
            context,
        );
    }
    let acks = || {
        cp.events()
            .iter()
            .filter(|e| matches!(e, Event::Ack { .. }))
            .count()
    };
    wait_for(
        Duration::from_secs(10),
        "the push was not ACKed by both",
        || acks() >= acks_before + 2,
        context,
    );
    assert!(
        !cp.events().iter().any(|e| matches!(e, Event::Nack { .. })),
        "a proxy refused a resource\n{}",
        context()
    );

    // One certificate per identity: nothing is renewed long before its half-life.
    let sleep_certs = cp
        .events()
        .iter()
        .filter(|e| {
            **e == Event::Issued {
                identity: SLEEP_ID.into(),
            }
        })
        .count();
    assert_eq!(
        sleep_certs,
        1,
        "zring asked for sleep's certificate {sleep_certs} times\n{}",
        context()
    );

    // The same story in zring's metrics: certificates issued, both types ACKed (the
    // first state and the push), the stream up, nothing refused.
    let scrape = || get_in(&ns, ZRING_STATS, "/metrics").map_or(String::new(), |(_, b)| b);
    let metrics = scrape();
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&metrics, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in zring's /metrics\n{metrics}"))
    };
    let ca = "zring_ca_certificate_requests_total";
    assert_eq!(value(ca, &[("outcome", "success")]), 1.0, "{metrics}");
    assert_eq!(value(ca, &[("outcome", "failure")]), 0.0, "{metrics}");
    assert_eq!(value("zring_xds_connected", &[]), 1.0, "{metrics}");
    let updates = "zring_xds_updates_total";
    let acked = value(updates, &[("type_url", ADDRESS_TYPE), ("outcome", "ack")]);
    assert!(acked >= 2.0, "Address ACKs: {acked}\n{metrics}");
    assert!(
        value(
            updates,
            &[("type_url", AUTHORIZATION_TYPE), ("outcome", "ack")]
        ) >= 1.0
    );
    for t in [ADDRESS_TYPE, AUTHORIZATION_TYPE] {
        assert_eq!(value(updates, &[("type_url", t), ("outcome", "nack")]), 0.0);
    }

    // istiod goes away: zring keeps its last state, stays ready and keeps carrying HBONE.
    let log_before = zr.log().len();
    drop(cp);
    wait_for(
        Duration::from_secs(10),
        "zring did not notice the lost xDS stream",
        || {
            zr.log()[log_before..].contains("reconnecting")
                || zr.log()[log_before..].contains("stays in force")
        },
        || zr.log(),
    );
    wait_for(
        Duration::from_secs(5),
        "zring_xds_connected did not drop to 0 without istiod",
        || sample(&scrape(), "zring_xds_connected", &[]) == Some(0.0),
        scrape,
    );
    assert!(
        matches!(get_in(&ns, ZRING_READY, "/healthz/ready"), Some((200, _))),
        "zring stopped being ready without istiod\n{}",
        zr.log()
    );
    echo_rounds(socks_connect(&ns, ZRING_SOCKS, target), &|| zr.log());
}
