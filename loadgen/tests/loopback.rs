//! The servers and the load client against each other on loopback (no root needed):
//! request/response, connect-per-request, bulk, the source-IP check, and the
//! coordinated-omission check against a deliberately stalled server.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use zring_loadgen::phase::{self, BulkPhase, Endpoint, RrPhase};
use zring_loadgen::server::{self, Bound, ServeConfig, Stall};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn serve(stall: Option<Stall>) -> Bound {
    let cfg = ServeConfig {
        bind_ip: LOOPBACK,
        http_port: 0,
        sink_port: 0,
        cores: 1,
        stall,
    };
    server::start(&cfg, None).expect("servers start on loopback")
}

fn rr(rate: f64, conns: usize, reconnect: bool, secs: f64) -> RrPhase {
    RrPhase {
        rate,
        conns,
        payload: 1024,
        reconnect,
        warmup: Duration::from_millis(100),
        duration: Duration::from_secs_f64(secs),
        seed: 42,
        cores: 1,
        closed: false,
        count: None,
    }
}

#[test]
fn request_response_keepalive_reports_source_ip_and_latency() {
    let b = serve(None);
    let ep = Endpoint {
        netns: None,
        target: b.http,
        expect_ip: LOOPBACK,
        via: None,
    };
    let r = phase::run_rr(&ep, &rr(500.0, 4, false, 1.0)).unwrap();
    assert_eq!(r.correctness, None);
    assert_eq!(r.errors, 0, "{:?}", r.first_error);
    assert!(r.ok >= 400, "ok {}", r.ok);
    assert!(
        r.latency.p50_us > 0 && r.latency.p50_us < 50_000,
        "{:?}",
        r.latency
    );
}

#[test]
fn connect_per_request_succeeds() {
    let b = serve(None);
    let ep = Endpoint {
        netns: None,
        target: b.http,
        expect_ip: LOOPBACK,
        via: None,
    };
    let r = phase::run_rr(&ep, &rr(200.0, 2, true, 1.0)).unwrap();
    assert_eq!((r.correctness, r.errors), (None, 0), "{:?}", r.first_error);
    assert!(r.ok >= 150, "ok {}", r.ok);
}

#[test]
fn wrong_source_ip_fails_the_phase() {
    let b = serve(None);
    let other: IpAddr = "10.244.1.4".parse().unwrap();
    let ep = Endpoint {
        netns: None,
        target: b.http,
        expect_ip: other,
        via: None,
    };
    let r = phase::run_rr(&ep, &rr(100.0, 1, false, 0.3)).unwrap();
    let msg = r
        .correctness
        .expect("a wrong source IP is a correctness failure");
    assert!(
        msg.contains("127.0.0.1") && msg.contains("10.244.1.4"),
        "{msg}"
    );
    assert_eq!(r.ok, 0);
}

#[test]
fn bulk_streams_count_and_checksum() {
    let b = serve(None);
    let ep = Endpoint {
        netns: None,
        target: b.sink,
        expect_ip: LOOPBACK,
        via: None,
    };
    let p = BulkPhase {
        streams: 2,
        duration: Duration::from_millis(300),
        seed: 1,
        cores: 1,
        bytes: None,
    };
    let r = phase::run_bulk(&ep, &p).unwrap();
    assert_eq!((r.error, r.correctness), (None, None));
    assert!(r.bytes > 1 << 20 && r.gbps > 0.0, "{} bytes", r.bytes);
}

/// One 400 ms stall at 200 rps on a single connection: ~80 requests queue behind it,
/// over 10% of the 2 s window, so p99 must show it although the server is otherwise fast.
#[test]
fn stalled_server_shows_in_p99() {
    let stall = Stall {
        at_request: 150,
        duration: Duration::from_millis(400),
    };
    let b = serve(Some(stall));
    let ep = Endpoint {
        netns: None,
        target: b.http,
        expect_ip: LOOPBACK,
        via: None,
    };
    let r = phase::run_rr(&ep, &rr(200.0, 1, false, 2.0)).unwrap();
    assert_eq!(r.errors, 0, "{:?}", r.first_error);
    assert!(
        r.latency.p99_us >= 200_000,
        "p99 {} µs hides the stall",
        r.latency.p99_us
    );
    assert!(r.latency.p50_us < 100_000, "p50 {} µs", r.latency.p50_us);
}
