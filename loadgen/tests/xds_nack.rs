//! Root-only: zring on the load generator's control plane receives one Address response
//! holding a valid new workload, a body that does not decode and a workload that claims
//! another one's IP. zring must NACK naming exactly the two bad resources, apply the good
//! one (it shows in `/config_dump` and labels traffic to it in `/metrics`), keep the
//! workload whose IP was claimed, count the NACK in `/metrics`, and keep carrying traffic.
//! Fails, never skips, under CI.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::xds::{
    config, echo_rounds, echo_server, get_in, sample, socks_connect, spawn_zring, wait_for,
    workload, Site, SLEEP, SLEEP_ID, ZRING_ADMIN, ZRING_READY, ZRING_SOCKS, ZRING_STATS,
};
use zring_loadgen::control::{Event, Raw};
use zring_xds::prost_types::Any;
use zring_xds::ADDRESS_TYPE;

/// A workload outside the mesh (plain TCP) zring passes traffic through to.
const ECHO: &str = "10.77.0.2";
/// The workload the push adds.
const FRESH: &str = "10.77.0.4";
const PORT: u16 = 8080;
const GARBAGE: &str = "zxd/garbage";
const IMPOSTOR: &str = "Kubernetes//Pod/zxd/impostor";

/// The bad resources: a body that is not an Address, and a valid Address of a workload on
/// ECHO's IP (the configuration with it would have two workloads on one IP).
fn bad_resources() -> Vec<Raw> {
    let impostor = config(&[workload("impostor", ECHO, "TCP", "node-b")]);
    let (name, body) = zring::config::xds::encode(&impostor)
        .unwrap()
        .addresses
        .remove(0);
    assert_eq!(name, IMPOSTOR);
    let garbage = Any {
        type_url: ADDRESS_TYPE.into(),
        value: vec![0xff, 0xff],
    };
    [(GARBAGE, garbage), (IMPOSTOR, body)]
        .into_iter()
        .map(|(name, body)| Raw {
            type_url: ADDRESS_TYPE.into(),
            name: name.into(),
            body,
        })
        .collect()
}

fn nacks(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Nack { type_url, message } if type_url == ADDRESS_TYPE => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn zring_nacks_the_bad_resources_by_name_and_applies_the_good_one() {
    if !common::can_run("the zring xDS NACK test", &["ip"]) {
        return;
    }
    let site = Site::new("nack", &[SLEEP, ECHO, FRESH]);
    let ns = site.ns.as_str();
    let sleep = workload("sleep", SLEEP, "HBONE", "node-a");
    let echo = workload("echo", ECHO, "TCP", "node-b");
    let cp = site.control_plane(config(&[sleep.clone(), echo.clone()]));
    let (echo_at, fresh_at): (SocketAddr, SocketAddr) = (
        format!("{ECHO}:{PORT}").parse().unwrap(),
        format!("{FRESH}:{PORT}").parse().unwrap(),
    );
    echo_server(ns, echo_at);
    echo_server(ns, fresh_at);
    let zr = spawn_zring(ns, &site.dir, cp.addr());
    let scrape = || get_in(ns, ZRING_STATS, "/metrics").map_or(String::new(), |(_, b)| b);
    let context = || {
        format!(
            "control plane events: {:#?}\nzring log:\n{}\nzring metrics:\n{}",
            cp.events(),
            zr.log(),
            scrape()
        )
    };
    wait_for(
        Duration::from_secs(20),
        "zring did not become ready on its xDS state",
        || matches!(get_in(ns, ZRING_READY, "/healthz/ready"), Some((200, _))),
        context,
    );
    assert!(
        cp.events().contains(&Event::Issued {
            identity: SLEEP_ID.into()
        }),
        "{}",
        context()
    );

    // One push: the good workload and both bad resources land in one Address response.
    let fresh = workload("fresh", FRESH, "TCP", "node-b");
    cp.push_with(config(&[sleep, echo, fresh]), bad_resources());
    wait_for(
        Duration::from_secs(10),
        "zring did not NACK the push",
        || !nacks(&cp.events()).is_empty(),
        context,
    );
    let nacks = nacks(&cp.events());
    assert_eq!(nacks.len(), 1, "{}", context());
    let message = &nacks[0];
    assert!(
        message.contains(&format!("{GARBAGE}: not an Address")),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "{IMPOSTOR}: this resource would make the configuration invalid"
        )) && message.contains(&format!("claim IP {ECHO}")),
        "{message}"
    );
    assert!(
        !message.contains("zxd/fresh"),
        "the good workload was refused: {message}"
    );

    // The good workload is in force; the claimed IP still belongs to echo.
    let (_, dump) = get_in(ns, ZRING_ADMIN, "/config_dump").expect("zring's /config_dump");
    assert!(
        dump.contains(FRESH),
        "the new workload is not in /config_dump\n{dump}"
    );
    assert!(
        !dump.contains("impostor"),
        "the impostor is in /config_dump\n{dump}"
    );
    let opened = |workload: &str| {
        let labels = [("reporter", "source"), ("destination_workload", workload)];
        sample(&scrape(), "istio_tcp_connections_opened_total", &labels).unwrap_or(0.0)
    };
    // The core adopts the new generation on its next tick (100 ms), and publishes its
    // counters on the one after: connect until the traffic is labelled.
    for (target, name) in [(fresh_at, "fresh"), (echo_at, "echo")] {
        wait_for(
            Duration::from_secs(5),
            &format!("traffic to {target} is not labelled destination_workload={name}"),
            || {
                let s = std::panic::catch_unwind(|| socks_connect(ns, ZRING_SOCKS, target))
                    .unwrap_or_else(|_| panic!("SOCKS5 CONNECT to {target} failed\n{}", context()));
                echo_rounds(s, &context);
                opened(name) >= 1.0
            },
            context,
        );
    }
    assert_eq!(opened("impostor"), 0.0);

    let metrics = scrape();
    let updates = |outcome: &str| {
        let labels = [("type_url", ADDRESS_TYPE), ("outcome", outcome)];
        sample(&metrics, "zring_xds_updates_total", &labels).unwrap_or(-1.0)
    };
    assert_eq!(updates("nack"), 1.0, "{metrics}");
    assert!(updates("ack") >= 1.0, "{metrics}");
    assert_eq!(sample(&metrics, "zring_xds_connected", &[]), Some(1.0));
    let issued = [("outcome", "success")];
    let ca = sample(&metrics, "zring_ca_certificate_requests_total", &issued);
    assert!(ca >= Some(1.0), "{metrics}");
}
