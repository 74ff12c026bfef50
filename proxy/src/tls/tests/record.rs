//! Our record layer (`tls::record`, `tls::traffic`, taken over by `Session` after the
//! handshake) against rustls's own record layer on the other end (its buffered API):
//! data both ways, key updates either side starts, the tickets a server sends after the
//! handshake, and a record that fails authentication.

use std::io::{IoSlice, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::{ClientConfig, ServerConfig, ServerConnection};
use tokio::io::ReadBuf;

use super::{ca_with, httpbin_id, sleep_id, TD};
use crate::tls::record::{content, Keys, RecordError, HEADER, OVERHEAD};
use crate::tls::session::{Handshake, Read, Session};
use crate::tls::{resume, server_name, CertStore};

fn configs(tag: &str) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let dir = ca_with(tag, &[sleep_id(), httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let client = store.client_config(&sleep_id(), &[httpbin_id()]).unwrap();
    (client, store.server_config(&httpbin_id()).unwrap())
}

fn client(config: &Arc<ClientConfig>) -> Session {
    let name = server_name(IpAddr::V4(Ipv4Addr::LOCALHOST));
    Session::new(UnbufferedClientConnection::new(config.clone(), name).unwrap())
}

/// Our records' bytes into rustls; returns the plaintext it read (as it goes: rustls
/// holds only so much).
fn to_rustls(c: &mut Session, s: &mut ServerConnection) -> Vec<u8> {
    let bytes = c.outgoing().to_vec();
    c.sent(bytes.len());
    let mut rest = &bytes[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        s.read_tls(&mut rest).unwrap();
        s.process_new_packets().unwrap();
        got.extend(rustls_read_all(s));
    }
    got
}

/// rustls's records into our session.
fn from_rustls(s: &mut ServerConnection, c: &mut Session) {
    let mut bytes = Vec::new();
    while s.wants_write() {
        s.write_tls(&mut bytes).unwrap();
    }
    if !bytes.is_empty() {
        let mut buf = c.read_buffer();
        buf.extend_from_slice(&bytes);
        c.received(buf, bytes.len());
    }
}

/// Our client and rustls's server (buffered API), handshaken.
fn with_rustls_server(
    config: (Arc<ClientConfig>, Arc<ServerConfig>),
) -> (Session, ServerConnection) {
    let mut c = client(&config.0);
    let mut s = ServerConnection::new(config.1).unwrap();
    s.set_buffer_limit(None);
    for _ in 0..100 {
        let done = c.handshake().unwrap() == Handshake::Complete;
        to_rustls(&mut c, &mut s);
        from_rustls(&mut s, &mut c);
        if done && !s.is_handshaking() {
            return (c, s);
        }
    }
    panic!("handshake made no progress");
}

fn read_all(c: &mut Session) -> (Vec<u8>, Read) {
    let mut got = Vec::new();
    loop {
        let mut mem = vec![MaybeUninit::uninit(); 3000];
        let mut out = ReadBuf::uninit(&mut mem);
        let status = c.read(&mut out).unwrap();
        got.extend_from_slice(out.filled());
        if status != Read::Data {
            return (got, status);
        }
    }
}

fn rustls_read_all(s: &mut ServerConnection) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 5000];
    loop {
        match s.reader().read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

/// Sends `up` and `down` both ways and checks both arrive.
fn exchange(c: &mut Session, s: &mut ServerConnection, up: &[u8], down: &[u8]) {
    assert_eq!(c.write(&[IoSlice::new(up)]).unwrap(), up.len());
    assert!(to_rustls(c, s) == up, "client → rustls bytes differ");
    s.writer().write_all(down).unwrap();
    from_rustls(s, c);
    let (got, status) = read_all(c);
    assert_eq!(status, Read::NeedInput);
    assert!(got == down, "rustls → client bytes differ");
}

#[test]
fn records_of_our_own_interoperate_with_rustls_both_ways() {
    let (mut c, mut s) = with_rustls_server(configs("rec-interop"));
    exchange(&mut c, &mut s, &pattern(100_000, 1), &pattern(70_000, 2));
    exchange(&mut c, &mut s, b"x", b"y");
}

#[test]
fn a_key_update_rustls_asks_for_is_answered() {
    let (mut c, mut s) = with_rustls_server(configs("rec-peer-update"));
    exchange(&mut c, &mut s, b"before", b"before");
    // rustls sends KeyUpdate(update_requested): we take its new key and answer with ours.
    s.refresh_traffic_keys().unwrap();
    s.writer().write_all(b"after its update").unwrap();
    from_rustls(&mut s, &mut c);
    assert_eq!(read_all(&mut c).0, b"after its update");
    assert!(!c.outgoing().is_empty(), "no KeyUpdate answered");
    exchange(&mut c, &mut s, &pattern(50_000, 3), &pattern(50_000, 4));
}

#[test]
fn we_update_our_key_before_the_limit_and_rustls_follows() {
    let (mut c, mut s) = with_rustls_server(configs("rec-own-update"));
    c.update_keys_after(3).unwrap();
    // 13 records of 16 KiB: a KeyUpdate after every 3.
    exchange(&mut c, &mut s, &pattern(200_000, 5), b"ok");
    exchange(&mut c, &mut s, &pattern(20_000, 6), &pattern(20_000, 7));
}

#[test]
fn tickets_sent_after_the_handshake_reach_the_client_cache() {
    let config = configs("rec-tickets");
    let (mut c, mut s) = with_rustls_server(config.clone());
    // The tickets come after the handshake, as records our layer opens.
    exchange(&mut c, &mut s, b"hello", b"hello");
    let (c2, _) = with_rustls_server(config);
    assert!(
        resume::resumed(c2.common().unwrap()),
        "no ticket reached the cache"
    );
}

#[test]
fn both_ends_ours_with_key_updates_on_both_sides() {
    let (client_cfg, server_cfg) = configs("rec-ours");
    let mut c = client(&client_cfg);
    let mut s = Session::new(UnbufferedServerConnection::new(server_cfg).unwrap());
    let pump = |from: &mut Session, to: &mut Session| {
        let bytes = from.outgoing().to_vec();
        from.sent(bytes.len());
        let mut buf = to.read_buffer();
        buf.extend_from_slice(&bytes);
        to.received(buf, bytes.len().max(1));
    };
    for _ in 0..100 {
        let cs = c.handshake().unwrap();
        pump(&mut c, &mut s);
        let ss = s.handshake().unwrap();
        pump(&mut s, &mut c);
        if cs == Handshake::Complete && ss == Handshake::Complete {
            break;
        }
    }
    pump(&mut s, &mut c);
    c.update_keys_after(1).unwrap();
    s.update_keys_after(2).unwrap();
    for round in 0..5u8 {
        let (up, down) = (pattern(40_000, round), pattern(33_000, round + 100));
        c.write(&[IoSlice::new(&up[..9]), IoSlice::new(&up[9..])])
            .unwrap();
        s.write(&[IoSlice::new(&down)]).unwrap();
        pump(&mut c, &mut s);
        pump(&mut s, &mut c);
        assert!(read_all(&mut s).0 == up, "round {round}: up differs");
        assert!(read_all(&mut c).0 == down, "round {round}: down differs");
    }
}

#[test]
fn a_record_is_sealed_and_opened_in_place() {
    use rustls::crypto::cipher::{AeadKey, Iv};
    let secrets = || rustls::ConnectionTrafficSecrets::Aes256Gcm {
        key: AeadKey::from([7u8; 32]),
        iv: Iv::from([9u8; 12]),
    };
    let (mut tx, mut rx) = (
        Keys::new(0, &secrets()).unwrap(),
        Keys::new(0, &secrets()).unwrap(),
    );
    let mut buf = vec![0u8; 100 + OVERHEAD];
    buf[HEADER..HEADER + 100].copy_from_slice(&pattern(100, 1));
    let n = tx.seal(&mut buf, 100, content::APPLICATION_DATA).unwrap();
    assert_eq!(n, 100 + OVERHEAD);
    assert_eq!(&buf[..3], &[23, 3, 3]);
    // Short buffers are "not yet", not errors.
    assert_eq!(rx.open(&mut buf[..3].to_vec()).unwrap(), None);
    assert_eq!(rx.open(&mut buf[..n - 1].to_vec()).unwrap(), None);
    let mut tampered = buf.clone();
    tampered[HEADER + 10] ^= 1;
    let mut other = Keys::new(0, &secrets()).unwrap();
    assert_eq!(other.open(&mut tampered), Err(RecordError::BadRecord));
    let opened = rx.open(&mut buf).unwrap().unwrap();
    assert_eq!(opened.len, n);
    assert_eq!(opened.typ, content::APPLICATION_DATA);
    assert_eq!(&buf[opened.plain], &pattern(100, 1)[..]);
    // The sequence number moved on: the same record again does not open.
    tx.seal(&mut buf, 100, content::APPLICATION_DATA).unwrap();
    let mut replay = buf.clone();
    assert!(rx.open(&mut buf).unwrap().is_some());
    assert_eq!(rx.open(&mut replay), Err(RecordError::BadRecord));
}
