use std::sync::Arc;

use prost::Message;
use zring_xds::workload as pw;
use zring_xds::ADDRESS_TYPE;

use super::super::super::test_fixtures::{HBONE_MD_EXAMPLE, MESH};
use super::super::super::LocalConfig;
use super::super::{encode, prost_address, workload_to, Address};
use super::*;

fn address(w: pw::Workload) -> Vec<u8> {
    pw::Address {
        r#type: Some(pw::address::Type::Workload(w)),
    }
    .encode_to_vec()
}

/// What prost's path makes of `bytes` (an Address), as this path reports it.
fn by_prost(bytes: &[u8]) -> Result<Workload, String> {
    match prost_address(bytes)? {
        Address::Workload(w) => Ok(*w),
        Address::Service(_) => Err("a service".into()),
    }
}

/// `bytes` read in place gives what prost's path gives; returns whether it was read in
/// place (not left to prost).
fn same(bytes: &[u8]) -> bool {
    match workload(bytes, None) {
        Some(fast) => {
            assert_eq!(fast, by_prost(bytes), "{bytes:?}");
            true
        }
        None => false,
    }
}

fn full() -> pw::Workload {
    pw::Workload {
        uid: "Kubernetes//Pod/ns/w-1".into(),
        name: "w-1".into(),
        namespace: "ns".into(),
        addresses: vec![vec![10, 0, 0, 1], vec![0xfd; 16]],
        hostname: "h".into(),
        network: "net".into(),
        tunnel_protocol: 1,
        trust_domain: "td.local".into(),
        service_account: "sa".into(),
        waypoint: Some(pw::GatewayAddress {
            destination: Some(pw::gateway_address::Destination::Address(
                pw::NetworkAddress {
                    network: String::new(),
                    address: vec![10, 0, 9, 9],
                },
            )),
            hbone_mtls_port: 15008,
        }),
        node: "node-1".into(),
        canonical_name: "app".into(),
        canonical_revision: "v1".into(),
        workload_type: 2,
        workload_name: "deploy".into(),
        services: [
            (
                "ns/a.ns.svc.cluster.local".to_string(),
                pw::PortList {
                    ports: vec![pw::Port {
                        service_port: 80,
                        target_port: 8080,
                    }],
                },
            ),
            (
                "ns/b.ns.svc.cluster.local".to_string(),
                pw::PortList::default(),
            ),
        ]
        .into(),
        authorization_policies: vec!["ns/p1".into(), "ns/p2".into()],
        status: 1,
        cluster_id: "c1".into(),
        locality: Some(pw::Locality {
            region: "r".into(),
            zone: "z".into(),
            subzone: "s".into(),
        }),
    }
}

#[test]
fn every_fixture_workload_reads_in_place_as_prost_reads_it() {
    for yaml in [HBONE_MD_EXAMPLE, MESH] {
        let local = LocalConfig::from_yaml("t.yaml", yaml).unwrap();
        assert!(!local.workloads.is_empty());
        for w in &local.workloads {
            assert!(same(&address(workload_to(w))), "{w:?}");
        }
    }
    assert!(same(&address(full())));
    assert!(same(&address(pw::Workload {
        addresses: vec![vec![10, 0, 0, 1]],
        ..Default::default()
    })));
}

#[test]
fn problems_read_in_place_are_prosts_problems() {
    let cases: [fn(&mut pw::Workload); 5] = [
        |w| w.addresses.clear(),
        |w| w.addresses.push(vec![10, 0, 0]),
        |w| {
            let list = w.services.get_mut("ns/a.ns.svc.cluster.local").unwrap();
            list.ports[0].target_port = 70_000;
        },
        |w| w.waypoint.as_mut().unwrap().hbone_mtls_port = 70_000,
        |w| w.tunnel_protocol = -1,
    ];
    for (i, change) in cases.into_iter().enumerate() {
        let mut w = full();
        change(&mut w);
        let b = address(w);
        assert!(same(&b), "case {i}");
        if i < 4 {
            assert!(workload(&b, None).unwrap().is_err(), "case {i}");
        }
    }
}

#[test]
fn shapes_left_to_prost_are_not_read_in_place() {
    let service = pw::Address {
        r#type: Some(pw::address::Type::Service(pw::Service {
            name: "a".into(),
            ..Default::default()
        })),
    };
    assert!(!same(&service.encode_to_vec()));
    // The workload field twice (prost merges the two).
    let mut twice = address(full());
    twice.extend_from_slice(&address(full()));
    assert!(!same(&twice));
    // One service named twice: prost's map keeps the last.
    let entry = |port: u32| {
        let mut w = pw::Workload::default();
        let list = pw::PortList {
            ports: vec![pw::Port {
                service_port: port,
                target_port: port,
            }],
        };
        w.services.insert("ns/a".into(), list);
        w.encode_to_vec()
    };
    let mut body = full().encode_to_vec();
    body.extend_from_slice(&entry(81));
    body.extend_from_slice(&entry(82));
    let dup = pw::Address {
        r#type: Some(pw::address::Type::Workload(
            pw::Workload::decode(&body[..]).unwrap(),
        )),
    };
    assert!(
        same(&dup.encode_to_vec()),
        "prost's own encoding names it once"
    );
    let mut raw = vec![0x0a];
    prost::encoding::encode_varint(body.len() as u64, &mut raw);
    raw.extend_from_slice(&body);
    assert!(!same(&raw));
    assert_eq!(
        by_prost(&raw).unwrap().services.get("ns/a").unwrap()[&82],
        82
    );
    // Not UTF-8 in a field zring does not use: prost refuses it, and so does the path.
    let mut bad = full();
    bad.hostname = "HOST".into();
    let mut b = address(bad);
    let at = b.windows(4).position(|c| c == b"HOST").unwrap();
    b[at] = 0xff;
    assert!(!same(&b));
    assert!(super::super::decode_address(&zring_xds::prost_types::Any {
        type_url: ADDRESS_TYPE.into(),
        value: b,
    })
    .unwrap_err()
    .contains("not an Address"));
}

#[test]
fn unknown_fields_are_skipped_as_prost_skips_them() {
    let mut body = full().encode_to_vec();
    // field 99 varint, field 98 bytes, field 97 fixed32
    body.extend_from_slice(&[
        0x98, 0x06, 0x07, 0x92, 0x06, 0x01, b'x', 0x8d, 0x06, 1, 2, 3, 4,
    ]);
    let mut a = vec![0x0a];
    prost::encoding::encode_varint(body.len() as u64, &mut a);
    a.extend_from_slice(&body);
    assert!(same(&a));
}

/// The workload's bytes cut anywhere, in a whole Address.
#[test]
fn a_message_cut_anywhere_decodes_or_is_refused_as_by_prost() {
    let body = full().encode_to_vec();
    let mut in_place = 0;
    for cut in 0..=body.len() {
        let mut a = vec![0x0a];
        prost::encoding::encode_varint(cut as u64, &mut a);
        a.extend_from_slice(&body[..cut]);
        in_place += usize::from(same(&a));
        let any = |v: &[u8]| zring_xds::prost_types::Any {
            type_url: ADDRESS_TYPE.into(),
            value: v.to_vec(),
        };
        let ours = super::super::decode_address(&any(&a));
        assert_eq!(ours, prost_address(&a), "cut at {cut}");
    }
    // At least the whole one and the cuts between fields.
    assert!(in_place > 10, "{in_place}");
}

#[test]
fn a_uid_equal_to_the_resource_name_shares_its_allocation() {
    let name: Name = Arc::from("Kubernetes//Pod/ns/w-1");
    let w = workload(&address(full()), Some(&name)).unwrap().unwrap();
    let uid: Arc<str> = (&w.uid).into();
    assert!(Arc::ptr_eq(&uid, &name));
    let other: Name = Arc::from("ns/w-1");
    let w = workload(&address(full()), Some(&other)).unwrap().unwrap();
    assert_eq!(w.uid, "Kubernetes//Pod/ns/w-1");
}

#[test]
fn a_cluster_sent_as_xds_reads_in_place() {
    let local = LocalConfig::from_yaml("t.yaml", MESH).unwrap();
    let r = encode(&local).unwrap();
    let workloads = r.addresses.iter().filter(|(_, a)| {
        matches!(
            pw::Address::decode(&a.value[..]).unwrap().r#type,
            Some(pw::address::Type::Workload(_))
        )
    });
    let mut n = 0;
    for (_, a) in workloads {
        assert!(same(&a.value));
        n += 1;
    }
    assert_eq!(n, local.workloads.len());
}
