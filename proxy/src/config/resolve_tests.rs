use std::net::SocketAddr;

use super::super::test_fixtures::mesh;
use super::*;

const HTTPBIN: &str = "httpbin.default.svc.cluster.local";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn hbone(hbone_addr: &str, authority: &str, sa_name: &str, service: Option<&str>) -> Route {
    Route::Hbone {
        hbone_addr: sa(hbone_addr),
        authority: sa(authority),
        dst_identity: Identity::new("cluster.local", "default", sa_name),
        service: service.map(str::to_string),
    }
}

#[test]
fn vip_round_robins_over_three_endpoints_and_translates_ports() {
    let snap = mesh();
    let mut rr = RoundRobin::new();
    let got: Vec<Route> = (0..4)
        .map(|_| resolve(&snap, &mut rr, sa("10.96.0.105:8000"), 15008).unwrap())
        .collect();
    let want = [
        hbone(
            "10.244.1.10:15008",
            "10.244.1.10:8080",
            "httpbin",
            Some(HTTPBIN),
        ),
        // httpbin-2 overrides 8000 -> 9090 in its own services entry.
        hbone(
            "10.244.1.11:15008",
            "10.244.1.11:9090",
            "httpbin",
            Some(HTTPBIN),
        ),
        hbone(
            "10.244.2.12:15008",
            "10.244.2.12:8080",
            "httpbin",
            Some(HTTPBIN),
        ),
        hbone(
            "10.244.1.10:15008",
            "10.244.1.10:8080",
            "httpbin",
            Some(HTTPBIN),
        ),
    ];
    assert_eq!(got, want);
}

#[test]
fn service_map_applies_when_the_endpoint_has_no_override_for_the_port() {
    let snap = mesh();
    let mut rr = RoundRobin::new();
    let _first = resolve(&snap, &mut rr, sa("10.96.0.105:9000"), 15008).unwrap();
    let second = resolve(&snap, &mut rr, sa("10.96.0.105:9000"), 15008).unwrap();
    assert_eq!(
        second,
        hbone(
            "10.244.1.11:15008",
            "10.244.1.11:9001",
            "httpbin",
            Some(HTTPBIN)
        )
    );
}

#[test]
fn unknown_service_port_is_an_error() {
    let snap = mesh();
    let err = resolve(&snap, &mut RoundRobin::new(), sa("10.96.0.105:1234"), 15008).unwrap_err();
    assert_eq!(
        err,
        ResolveError::UnknownServicePort {
            service: HTTPBIN.into(),
            port: 1234
        }
    );
    assert!(err.to_string().contains("port 1234"));
}

#[test]
fn service_without_endpoints_is_an_error() {
    let snap = mesh();
    let err = resolve(&snap, &mut RoundRobin::new(), sa("10.96.0.30:80"), 15008).unwrap_err();
    assert!(matches!(err, ResolveError::NoEndpoints { .. }), "{err:?}");
}

#[test]
fn hbone_tcp_and_unknown_destinations() {
    let snap = mesh();
    let mut rr = RoundRobin::new();
    let direct = resolve(&snap, &mut rr, sa("10.244.1.10:7777"), 15999).unwrap();
    assert_eq!(
        direct,
        hbone("10.244.1.10:15999", "10.244.1.10:7777", "httpbin", None)
    );

    let tcp_vip = resolve(&snap, &mut rr, sa("10.96.0.20:80"), 15008).unwrap();
    assert_eq!(
        tcp_vip,
        Route::Passthrough {
            addr: sa("10.244.1.20:8080")
        }
    );
    let tcp_pod = resolve(&snap, &mut rr, sa("10.244.1.20:22"), 15008).unwrap();
    assert_eq!(
        tcp_pod,
        Route::Passthrough {
            addr: sa("10.244.1.20:22")
        }
    );

    for outside in ["192.0.2.7:443", "[2001:db8::1]:80"] {
        let r = resolve(&snap, &mut rr, sa(outside), 15008).unwrap();
        assert_eq!(r, Route::Passthrough { addr: sa(outside) });
    }
}

#[test]
fn round_robin_cursors_are_per_service() {
    let snap = mesh();
    let mut rr = RoundRobin::new();
    let first = resolve(&snap, &mut rr, sa("10.96.0.105:8000"), 15008).unwrap();
    resolve(&snap, &mut rr, sa("10.96.0.20:80"), 15008).unwrap();
    let second = resolve(&snap, &mut rr, sa("10.96.0.105:8000"), 15008).unwrap();
    assert_ne!(
        first, second,
        "another service's pick must not advance httpbin's cursor"
    );
    let Route::Hbone { authority, .. } = second else {
        panic!("{second:?}")
    };
    assert_eq!(authority, sa("10.244.1.11:9090"));
}

#[test]
fn hostnames_resolve_like_vips() {
    let snap = mesh();
    let mut rr = RoundRobin::new();
    let by_name = resolve_hostname(&snap, &mut rr, None, (HTTPBIN, 8000), 15008).unwrap();
    assert_eq!(
        by_name,
        hbone(
            "10.244.1.10:15008",
            "10.244.1.10:8080",
            "httpbin",
            Some(HTTPBIN)
        )
    );
    let dotted = format!("{HTTPBIN}.");
    let next = resolve_hostname(&snap, &mut rr, None, (&dotted, 8000), 15008).unwrap();
    assert_eq!(
        next,
        hbone(
            "10.244.1.11:15008",
            "10.244.1.11:9090",
            "httpbin",
            Some(HTTPBIN)
        )
    );
    let literal = resolve_hostname(&snap, &mut rr, None, ("10.244.1.20", 22), 15008).unwrap();
    assert_eq!(
        literal,
        Route::Passthrough {
            addr: sa("10.244.1.20:22")
        }
    );
    let err = resolve_hostname(&snap, &mut rr, None, ("example.com", 80), 15008).unwrap_err();
    assert_eq!(
        err,
        ResolveError::UnknownHostname {
            host: "example.com".into()
        }
    );
}

#[test]
fn proxy_ports_are_recognised() {
    for p in [15001, 15006, 15008, 15080] {
        assert!(is_proxy_port(p), "{p}");
    }
    for p in [80, 15000, 15020, 15021, 8080] {
        assert!(!is_proxy_port(p), "{p}");
    }
}
