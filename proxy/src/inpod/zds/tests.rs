use prost::Message;
use zring_xds::zds::{self, workload_request::Payload};

use super::*;

fn packet(p: Payload) -> Vec<u8> {
    zds::WorkloadRequest { payload: Some(p) }.encode_to_vec()
}

fn add(uid: &str, info: bool) -> Vec<u8> {
    packet(Payload::Add(zds::AddWorkload {
        uid: uid.into(),
        workload_info: info.then(|| zds::WorkloadInfo {
            name: "sleep".into(),
            namespace: "default".into(),
            service_account: "sleep-sa".into(),
        }),
    }))
}

#[test]
fn add_takes_its_one_descriptor() {
    let r = decode(&add("u1", true), vec![7u32], false).unwrap();
    let Request::Add { uid, info, netns } = r else {
        panic!("{r:?}")
    };
    assert_eq!((uid.0.as_str(), netns), ("u1", 7));
    let info = info.unwrap();
    assert_eq!(
        (
            info.name.as_str(),
            info.namespace.as_str(),
            info.service_account.as_str()
        ),
        ("sleep", "default", "sleep-sa")
    );
}

#[test]
fn add_without_info_decodes_and_the_registry_decides() {
    let r = decode(&add("u1", false), vec![1u32], false).unwrap();
    assert!(matches!(r, Request::Add { info: None, .. }));
}

#[test]
fn descriptor_rules() {
    assert_eq!(
        decode(&add("u", true), Vec::<u32>::new(), false),
        Err(ZdsError::MissingFd)
    );
    assert_eq!(
        decode(&add("u", true), vec![1u32, 2], false),
        Err(ZdsError::TooManyFds(2))
    );
    let del = packet(Payload::Del(zds::DelWorkload { uid: "u".into() }));
    assert_eq!(decode(&del, vec![1u32], false), Err(ZdsError::UnexpectedFd));
    assert_eq!(
        decode(&del, Vec::<u32>::new(), false),
        Ok(Request::Del {
            uid: PodUid("u".into())
        })
    );
}

#[test]
fn keep_del_snapshot() {
    let keep = packet(Payload::Keep(zds::KeepWorkload { uid: "k".into() }));
    assert_eq!(
        decode(&keep, Vec::<u32>::new(), false),
        Ok(Request::Keep {
            uid: PodUid("k".into())
        })
    );
    let snap = packet(Payload::SnapshotSent(zds::SnapshotSent {}));
    assert_eq!(
        decode(&snap, Vec::<u32>::new(), false),
        Ok(Request::SnapshotSent)
    );
}

#[test]
fn malformed_packets_are_refused() {
    assert_eq!(
        decode(&add("u", true), vec![1u32], true),
        Err(ZdsError::Truncated)
    );
    assert!(matches!(
        decode(&[0xff, 0xff, 0xff], Vec::<u32>::new(), false),
        Err(ZdsError::Decode(_))
    ));
    let empty = zds::WorkloadRequest { payload: None }.encode_to_vec();
    assert_eq!(
        decode(&empty, Vec::<u32>::new(), false),
        Err(ZdsError::NoPayload)
    );
}

#[test]
fn hello_and_acks_round_trip() {
    let h = zds::ZdsHello::decode(hello().as_slice()).unwrap();
    assert_eq!(h.version, zds::Version::V1 as i32);
    let ok = zds::WorkloadResponse::decode(ack(&Ok(())).as_slice()).unwrap();
    let Some(zds::workload_response::Payload::Ack(a)) = ok.payload else {
        panic!()
    };
    assert!(a.error.is_empty());
    let bad = zds::WorkloadResponse::decode(ack(&Err(ZdsError::MissingFd)).as_slice()).unwrap();
    let Some(zds::workload_response::Payload::Ack(a)) = bad.payload else {
        panic!()
    };
    assert!(a.error.contains("no control message"), "{}", a.error);
}

proptest::proptest! {
    #[test]
    fn any_bytes_decode_or_refuse(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64), fds in 0usize..3) {
        let _ = decode(&data, (0..fds as u32).collect(), false);
    }
}
