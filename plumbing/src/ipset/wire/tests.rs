use super::*;
use proptest::prelude::*;

/// One netlink message: header with `kind`, `flags`, `seq`, then `body`.
fn msg(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(
        &u32::try_from(NLMSG_HDRLEN + body.len())
            .unwrap()
            .to_ne_bytes(),
    );
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// The body of a LIST dump message for `set` with `members`, as the kernel lays it out.
fn list_body(set: &str, members: &[Ipv4Addr]) -> Vec<u8> {
    let mut b = vec![NFPROTO_IPV4, 0, 0, 0];
    put(&mut b, ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
    put_str(&mut b, ATTR_SETNAME, set);
    put_str(&mut b, ATTR_TYPENAME, HASH_IP);
    put(&mut b, ATTR_REVISION, &[6]);
    put(&mut b, ATTR_FAMILY, &[NFPROTO_IPV4]);
    let data = nest(&mut b, ATTR_DATA);
    put_be32(&mut b, ATTR_HASHSIZE, 1024);
    end_nest(&mut b, data);
    let adt = nest(&mut b, ATTR_ADT);
    for ip in members {
        let entry = nest(&mut b, ATTR_DATA);
        let addr = nest(&mut b, ATTR_IP);
        put_be32(&mut b, ATTR_IPADDR_IPV4, u32::from(*ip));
        end_nest(&mut b, addr);
        end_nest(&mut b, entry);
    }
    end_nest(&mut b, adt);
    b
}

fn error_msg(seq: u32, code: i32) -> Vec<u8> {
    msg(NLMSG_ERROR, 0, seq, &code.to_ne_bytes())
}

#[test]
#[cfg(target_endian = "little")]
fn add_is_laid_out_as_the_kernel_reads_it() {
    let got = Request::Add {
        set: "s",
        ip: Ipv4Addr::new(10, 244, 1, 6),
    }
    .encode(9);
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        52, 0, 0, 0, 0x09, 0x06, 0x05, 0x00, 9, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: ADD, REQUEST|ACK
        2, 0, 0, 0,                                                  // nfgenmsg: inet, v0
        5, 0, 1, 0, 7, 0, 0, 0,                                      // PROTOCOL 7
        6, 0, 2, 0, b's', 0, 0, 0,                                   // SETNAME "s"
        16, 0, 7, 0x80,                                              // DATA (nested)
        12, 0, 1, 0x80,                                              //   IP (nested)
        8, 0, 1, 0x40, 10, 244, 1, 6,                                //     IPADDR_IPV4 (net order)
    ];
    assert_eq!(got, want);
}

#[test]
#[cfg(target_endian = "little")]
fn create_carries_type_revision_family_and_sizes() {
    let got = Request::Create {
        set: "ztunnel-pods-ips",
        revision: 6,
        hashsize: 1024,
        maxelem: 65536,
    }
    .encode(1);
    assert_eq!(&got[4..8], &[0x02, 0x06, 0x05, 0x00]);
    let attrs: Vec<(u16, Vec<u8>)> = Attrs(&got[NLMSG_HDRLEN + NFGENMSG_LEN..])
        .map(|(k, p)| (k.unwrap(), p.to_vec()))
        .collect();
    let kinds: Vec<u16> = attrs.iter().map(|a| a.0).collect();
    assert_eq!(
        kinds,
        [
            ATTR_PROTOCOL,
            ATTR_SETNAME,
            ATTR_TYPENAME,
            ATTR_REVISION,
            ATTR_FAMILY,
            ATTR_DATA
        ]
    );
    assert_eq!(attrs[1].1, b"ztunnel-pods-ips\0");
    assert_eq!(attrs[2].1, b"hash:ip\0");
    assert_eq!(attrs[3].1, [6]);
    let data: Vec<(u16, Vec<u8>)> = Attrs(&attrs[5].1)
        .map(|(k, p)| (k.unwrap(), p.to_vec()))
        .collect();
    assert_eq!(
        data,
        [
            (ATTR_HASHSIZE, 1024u32.to_be_bytes().to_vec()),
            (ATTR_MAXELEM, 65536u32.to_be_bytes().to_vec())
        ]
    );
    assert_eq!(u32_at(&got, 0) as usize, got.len());
}

#[test]
fn dump_flags_and_ack_flags() {
    let list = Request::List { set: "a" }.encode(3);
    assert_eq!(u16_at(&list, 6), NLM_F_REQUEST | NLM_F_DUMP);
    let destroy = Request::Destroy { set: "a" }.encode(3);
    assert_eq!(u16_at(&destroy, 6), NLM_F_REQUEST | NLM_F_ACK);
    assert_eq!(u16_at(&destroy, 4), 0x0603);
}

#[test]
fn a_dump_over_two_datagrams_collects_type_and_members() {
    let a = [Ipv4Addr::new(10, 244, 1, 6), Ipv4Addr::new(10, 244, 1, 4)];
    let b = [Ipv4Addr::new(10, 244, 1, 9)];
    let list = (NFNL_SUBSYS_IPSET << 8) | Cmd::List as u16;
    let first = msg(list, 2, 7, &list_body("ztunnel-pods-ips", &a));
    let mut second = msg(list, 2, 7, &list_body("ztunnel-pods-ips", &b));
    second.extend(msg(NLMSG_DONE, 2, 7, &0i32.to_ne_bytes()));
    let mut r = Reply::default();
    parse(&first, 7, &mut r).unwrap();
    assert!(!r.done);
    parse(&second, 7, &mut r).unwrap();
    assert_eq!(
        r,
        Reply {
            typename: Some("hash:ip".into()),
            members: vec![a[0], a[1], b[0]],
            done: true,
            error: None,
        }
    );
}

#[test]
fn errors_acks_and_foreign_sequence_numbers() {
    let mut r = Reply::default();
    parse(&error_msg(4, -libc::ENOENT), 5, &mut r).unwrap();
    assert_eq!(r, Reply::default(), "another request's answer is ignored");
    parse(&error_msg(5, -4100), 5, &mut r).unwrap();
    assert_eq!((r.done, r.error), (true, Some(4100)));
    let mut ack = Reply::default();
    parse(&error_msg(5, 0), 5, &mut ack).unwrap();
    assert_eq!((ack.done, ack.error), (true, None));
    let mut failed_dump = Reply::default();
    parse(
        &msg(NLMSG_DONE, 2, 5, &(-4108i32).to_ne_bytes()),
        5,
        &mut failed_dump,
    )
    .unwrap();
    assert_eq!(failed_dump.error, Some(4108));
}

#[test]
fn overrunning_lengths_are_malformed() {
    let mut m = error_msg(1, 0);
    m[0] = 200;
    assert!(parse(&m, 1, &mut Reply::default()).is_err());
    let list = (NFNL_SUBSYS_IPSET << 8) | Cmd::List as u16;
    let mut body = list_body("s", &[Ipv4Addr::LOCALHOST]);
    let last = body.len() - 8; // the IPADDR_IPV4 attribute's length field
    body[last] = 60;
    assert!(parse(&msg(list, 2, 1, &body), 1, &mut Reply::default()).is_err());
}

#[test]
fn kernel_codes_read_as_words() {
    assert!(describe(4100).contains("in use by iptables"));
    assert!(describe(libc::ENOENT).contains("does not exist"));
    assert!(describe(libc::EINVAL).contains("nvalid"));
}

proptest! {
    #[test]
    fn any_datagram_parses_or_is_refused_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        seq in 0u32..4,
    ) {
        let _ = parse(&bytes, seq, &mut Reply::default());
    }

    #[test]
    fn members_round_trip(ips in proptest::collection::vec(any::<u32>(), 0..64)) {
        let ips: Vec<Ipv4Addr> = ips.into_iter().map(Ipv4Addr::from).collect();
        let list = (NFNL_SUBSYS_IPSET << 8) | Cmd::List as u16;
        let mut r = Reply::default();
        parse(&msg(list, 2, 1, &list_body("s", &ips)), 1, &mut r).unwrap();
        prop_assert_eq!(r.members, ips);
    }
}
