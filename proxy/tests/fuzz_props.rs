//! Property-based fuzzing of the proxy's parsers of untrusted input, on the stable
//! toolchain (see `testsupport::fuzz` for why proptest and not cargo-fuzz). Each target
//! runs 3 s under `cargo test`; `ZRING_FUZZ_SECS=600 cargo test -p zring-proxy --release
//! --test fuzz_props -- --test-threads 1` is the long campaign (results/reliability.md).

/// Test binaries free only what they allocated (issue 24): see `testsupport::Checked`.
#[global_allocator]
static CHECKED: testsupport::Checked = testsupport::Checked;

use std::net::SocketAddr;

use proptest::prelude::*;
use testsupport::fuzz::{budget, run_for};
use zring::config::LocalConfig;
use zring::hbone::proto::{connect_request, forwarded_for, validate};
use zring::socks5::{parse_greeting, parse_request, Target};

const SMOKE_SECS: u64 = 3;

/// Byte soup biased towards SOCKS5's interesting values (version 5, CONNECT, atyps).
fn socks_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        Just(5u8),
        Just(1u8),
        Just(3u8),
        Just(4u8),
        Just(0u8)
    ];
    prop::collection::vec(byte, 0..300)
}

/// A well-formed CONNECT request for `target` (the encoder the parser must agree with).
fn encode_request(target: &Target) -> Vec<u8> {
    let mut out = vec![5, 1, 0];
    match target {
        Target::Addr(SocketAddr::V4(a)) => {
            out.push(1);
            out.extend(a.ip().octets());
            out.extend(a.port().to_be_bytes());
        }
        Target::Addr(SocketAddr::V6(a)) => {
            out.push(4);
            out.extend(a.ip().octets());
            out.extend(a.port().to_be_bytes());
        }
        Target::Domain(d, port) => {
            out.extend([3, d.len() as u8]);
            out.extend(d.as_bytes());
            out.extend(port.to_be_bytes());
        }
    }
    out
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        any::<SocketAddr>().prop_map(|a| Target::Addr(strip_v6_extras(a))),
        ("[a-z0-9.-]{0,255}", any::<u16>()).prop_map(|(d, p)| Target::Domain(d, p)),
    ]
}

/// SOCKS5 carries neither flow info nor scope id.
fn strip_v6_extras(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port())
}

#[test]
fn socks5_parsers_never_panic_and_never_overconsume() {
    run_for("socks5 bytes", budget(SMOKE_SECS), socks_bytes(), |buf| {
        if let Ok(Some(n)) = parse_greeting(&buf) {
            prop_assert!(n <= buf.len());
        }
        if let Ok(Some((n, _))) = parse_request(&buf) {
            prop_assert!(n <= buf.len());
            // Consumed bytes alone parse the same: the parser never looks past them.
            prop_assert_eq!(parse_request(&buf[..n]), parse_request(&buf));
        }
        Ok(())
    });
}

#[test]
fn socks5_request_round_trips_and_every_prefix_needs_more() {
    let s = (target(), prop::collection::vec(any::<u8>(), 0..16));
    run_for("socks5 round trip", budget(SMOKE_SECS), s, |(t, tail)| {
        let wire = encode_request(&t);
        for end in 0..wire.len() {
            prop_assert_eq!(parse_request(&wire[..end]), Ok(None));
        }
        let mut more = wire.clone();
        more.extend(&tail);
        prop_assert_eq!(parse_request(&more), Ok(Some((wire.len(), t))));
        Ok(())
    });
}

fn authority() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<SocketAddr>().prop_map(|a| a.to_string()),
        "[0-9a-f:.\\[\\]%]{0,40}",
        any::<String>(),
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![Just("CONNECT".to_string()), "[A-Z]{1,8}"]
}

#[test]
fn connect_validation_accepts_only_local_non_proxy_socket_addresses() {
    let s = (
        method(),
        authority(),
        any::<Option<SocketAddr>>(),
        any::<bool>(),
    );
    run_for(
        "connect validate",
        budget(SMOKE_SECS),
        s,
        |(m, auth, local, known)| {
            let Ok(req) = http::Request::builder()
                .method(m.as_str())
                .uri(auth.as_str())
                .body(())
            else {
                return Ok(()); // http itself refused the request line: never reaches validate
            };
            let Ok(target) = validate(&req, local, |_| known) else {
                return Ok(());
            };
            prop_assert_eq!(req.method(), http::Method::CONNECT);
            prop_assert!(known, "accepted a workload is_local denied");
            prop_assert!(![15001, 15006, 15008, 15080].contains(&target.port()));
            if let Some(l) = local.filter(|l| !l.ip().is_unspecified()) {
                prop_assert_eq!(l.ip(), target.ip());
                prop_assert_ne!(l.port(), target.port());
            }
            Ok(())
        },
    );
}

#[test]
fn forwarded_header_never_panics_and_round_trips_what_we_send() {
    let s = (any::<SocketAddr>(), any::<SocketAddr>(), any::<Vec<u8>>());
    run_for("forwarded", budget(SMOKE_SECS), s, |(to, from, junk)| {
        let (to, from) = (strip_v6_extras(to), strip_v6_extras(from));
        prop_assert_eq!(forwarded_for(&connect_request(to, from)), Some(from));
        let mut req = connect_request(to, from);
        if let Ok(v) = http::HeaderValue::from_bytes(&junk) {
            req.headers_mut().insert("forwarded", v);
            let _ = forwarded_for(&req);
        }
        Ok(())
    });
}

/// A valid LocalConfig to mutate (written for this test; exercises every section).
const SEED: &str = r#"workloads:
- name: sleep
  namespace: default
  serviceAccount: sleep
  workloadIps: ["10.244.1.4", "fd00::4"]
  protocol: HBONE
  node: node-a
  services:
    "default/web.default.svc.cluster.local": {80: 8080}
services:
- name: web
  namespace: default
  hostname: web.default.svc.cluster.local
  vips: ["/10.96.0.10"]
  ports: {80: 8080}
policies:
- name: p
  namespace: default
  scope: Namespace
  action: Deny
  rules:
  - - - destinationPorts: [9999]
        sourceIps: ["10.0.0.0/8"]
"#;

/// The seed with a few bytes overwritten, inserted or cut: near-valid YAML reaches the
/// semantic checks, which pure byte soup rarely does.
fn mutated_seed() -> impl Strategy<Value = Vec<u8>> {
    let edit = (0..SEED.len(), any::<u8>(), 0u8..3);
    prop::collection::vec(edit, 1..6).prop_map(|edits| {
        let mut b = SEED.as_bytes().to_vec();
        for (at, byte, kind) in edits {
            let at = at.min(b.len().saturating_sub(1));
            match kind {
                0 => b[at] = byte,
                1 => b.insert(at, byte),
                _ => b.truncate(at.max(1)),
            }
        }
        b
    })
}

fn seeded_or_soup() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        mutated_seed(),
        any::<Vec<u8>>(),
        any::<String>().prop_map(String::into_bytes)
    ]
}

#[test]
fn local_config_bytes_parse_or_error_and_accepted_configs_are_valid() {
    assert!(
        LocalConfig::from_yaml("seed", SEED).is_ok(),
        "seed must be valid"
    );
    run_for("local config", budget(SMOKE_SECS), seeded_or_soup(), |b| {
        let Ok(cfg) = zring::config::local::parse_local_config_bytes(&b) else {
            return Ok(());
        };
        prop_assert!(cfg.validate().is_ok());
        let dumped = serde_yaml::to_string(&cfg).expect("serialize an accepted config");
        let again = LocalConfig::from_yaml("dump", &dumped);
        prop_assert_eq!(again.as_ref().ok(), Some(&cfg), "re-read of {}", dumped);
        Ok(())
    });
}

/// istiod's resources of the seed config, each body with a few bytes edited, or soup.
fn xds_bodies() -> impl Strategy<Value = (bool, Vec<u8>)> {
    let seed = LocalConfig::from_yaml("seed", SEED).unwrap();
    let enc = zring::config::xds::encode(&seed).unwrap();
    let bodies: Vec<(bool, Vec<u8>)> = enc
        .addresses
        .iter()
        .map(|(_, a)| (true, a.value.clone()))
        .chain(
            enc.authorizations
                .iter()
                .map(|(_, a)| (false, a.value.clone())),
        )
        .collect();
    let edited = (
        prop::sample::select(bodies),
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..4),
    )
        .prop_map(|((is_addr, mut b), edits)| {
            for (at, byte, kind) in edits {
                if b.is_empty() {
                    break;
                }
                let at = at % b.len();
                match kind {
                    0 => b[at] = byte,
                    1 => b.insert(at, byte),
                    _ => b.truncate(at),
                }
            }
            (is_addr, b)
        });
    prop_oneof![edited, (any::<bool>(), any::<Vec<u8>>())]
}

#[test]
fn xds_resources_decode_or_are_refused_and_what_applies_is_valid() {
    use zring::config::xds::{decode_address, decode_authorization, XdsStore};
    use zring_xds::prost_types::Any;
    run_for(
        "xds resources",
        budget(SMOKE_SECS),
        xds_bodies(),
        |(is_addr, value)| {
            let type_url = if is_addr {
                zring_xds::ADDRESS_TYPE
            } else {
                zring_xds::AUTHORIZATION_TYPE
            };
            let any = Any {
                type_url: type_url.into(),
                value,
            };
            let decoded_ok = if is_addr {
                decode_address(&any).is_ok()
            } else {
                decode_authorization(&any).is_ok()
            };
            let update = zring_xds::delta::Update::new(
                type_url.into(),
                "n".into(),
                vec![zring_xds::discovery::Resource {
                    name: "r".into(),
                    version: "1".into(),
                    resource: Some(any),
                    ..Default::default()
                }],
                vec![],
            );
            let (rejected, next) = XdsStore::default().apply(&update);
            let config = next.map(|c| c.snapshot().to_local_config());
            prop_assert!(!decoded_ok || config.is_some() || !rejected.is_empty());
            if let Some(c) = config {
                prop_assert!(decoded_ok && rejected.is_empty());
                prop_assert!(c.validate().is_ok());
            } else {
                prop_assert!(rejected
                    .iter()
                    .all(|r| r.name == "r" && !r.reason.is_empty()));
            }
            Ok(())
        },
    );
}

#[test]
fn grpc_frames_in_any_chunks_decode_or_fail_cleanly() {
    let chunks = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8);
    run_for("grpc frames", budget(SMOKE_SECS), chunks, |chunks| {
        let mut d = zring_xds::grpc::Decoder::new(1 << 16);
        let pushed: usize = chunks.iter().map(Vec::len).sum();
        let mut taken = 0;
        for c in &chunks {
            d.push(c);
            while let Ok(Some(frame)) = d.next_frame() {
                taken += 5 + frame.len();
            }
        }
        prop_assert!(taken <= pushed);
        Ok(())
    });
}
