//! The unbuffered session layer in memory: two `Session`s with real certificates, the
//! bytes between them moved by hand in chunks of chosen sizes (partial records, several
//! records per read).

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use tokio::io::ReadBuf;

use super::{ca_with, httpbin_id, id, sleep_id, TD};
use crate::tls::session::{
    Handshake, Read, Session, READ_CAPACITY, READ_IDLE_CAPACITY, SEND_BUFFER_LIMIT,
    SMALL_READS_TO_IDLE,
};
use crate::tls::{peer_identity, server_name, CertStore, ALPN_H2};

/// Moves up to `chunk` bytes of `from`'s outgoing records into `to`'s receive buffer.
fn pump(from: &mut Session, to: &mut Session, chunk: usize) -> usize {
    let n = from.outgoing().len().min(chunk).min(READ_CAPACITY);
    let mut buf = to.read_buffer();
    buf.extend_from_slice(&from.outgoing()[..n]);
    from.sent(n);
    to.received(buf, n.max(1));
    n
}

/// A client (sleep) and a server (httpbin) session after a handshake through `chunk`-byte
/// transfers; `expected` is what the client accepts as the server's identity.
fn pair(tag: &str, expected: &str, chunk: usize) -> (Session, Session, Result<(), String>) {
    let dir = ca_with(tag, &[sleep_id(), httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let server = store.server_config(&httpbin_id()).unwrap();
    let client = store.client_config(&sleep_id(), &[id(expected)]).unwrap();
    let name = server_name(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut c = Session::new(UnbufferedClientConnection::new(client, name).unwrap());
    let mut s = Session::new(UnbufferedServerConnection::new(server).unwrap());
    let result = handshake(&mut c, &mut s, chunk);
    (c, s, result)
}

/// The server's identity, as the client expects it.
const HTTPBIN: &str = "spiffe://cluster.local/ns/default/sa/httpbin";

/// A pair whose handshake (in whole flights) completed.
fn connected(tag: &str) -> (Session, Session) {
    let (c, s, result) = pair(tag, HTTPBIN, 1 << 20);
    result.unwrap();
    (c, s)
}

fn handshake(c: &mut Session, s: &mut Session, chunk: usize) -> Result<(), String> {
    for _ in 0..10_000 {
        let cs = c.handshake().map_err(|e| format!("client: {e}"))?;
        while pump(c, s, chunk) > 0 {}
        let ss = s.handshake().map_err(|e| format!("server: {e}"))?;
        while pump(s, c, chunk) > 0 {}
        if cs == Handshake::Complete && ss == Handshake::Complete {
            return Ok(());
        }
    }
    Err("handshake made no progress".into())
}

/// Reads everything `to` can decrypt now, through reader buffers of `window` bytes.
fn drain(to: &mut Session, window: usize) -> (Vec<u8>, Read) {
    let mut got = Vec::new();
    loop {
        let mut mem = vec![MaybeUninit::uninit(); window];
        let mut out = ReadBuf::uninit(&mut mem);
        let status = to.read(&mut out).unwrap();
        got.extend_from_slice(out.filled());
        if status != Read::Data {
            return (got, status);
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn handshake_in_small_chunks_negotiates_h2_and_identities() {
    let (c, s, result) = pair("sess-hs", HTTPBIN, 7);
    result.unwrap();
    let (c, s) = (c.common().unwrap(), s.common().unwrap());
    assert_eq!(peer_identity(c), Some(httpbin_id()));
    assert_eq!(peer_identity(s), Some(sleep_id()));
    assert_eq!(c.alpn_protocol(), Some(ALPN_H2));
    assert_eq!(s.alpn_protocol(), Some(ALPN_H2));
}

#[test]
fn frame_header_shares_a_record_with_its_payload() {
    let (mut c, mut s) = connected("sess-coalesce");
    // Drain the server's tickets from the client's side first.
    let _ = drain(&mut c, 1024);
    let header = [0u8; 9];
    let payload = pattern(1024, 1);
    let n = c
        .write(&[IoSlice::new(&header), IoSlice::new(&payload)])
        .unwrap();
    assert_eq!(n, 9 + 1024);
    // One TLS 1.3 record: 5-byte header + data + content type + 16-byte tag.
    assert_eq!(c.outgoing().len(), 5 + 9 + 1024 + 1 + 16);
    while pump(&mut c, &mut s, 1 << 20) > 0 {}
    let (got, status) = drain(&mut s, 4096);
    assert_eq!(status, Read::NeedInput);
    assert_eq!(&got[..9], &header);
    assert_eq!(&got[9..], &payload[..]);
}

#[test]
fn bulk_both_ways_survives_odd_chunks_small_readers_and_backpressure() {
    let (mut c, mut s, result) = pair("sess-bulk", HTTPBIN, 1000);
    result.unwrap();
    let up = pattern(3 << 20, 3);
    let down = pattern(1 << 20, 9);
    let (mut sent_up, mut sent_down) = (0, 0);
    let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
    let mut refused = 0;
    let mut round = 0usize;
    while got_up.len() < up.len() || got_down.len() < down.len() {
        round += 1;
        assert!(round < 100_000, "no progress");
        // A 9-byte slice ahead of each chunk, as h2 writes DATA frames.
        let end = (sent_up + 300_000).min(up.len());
        if sent_up < up.len() {
            let n = c
                .write(&[
                    IoSlice::new(&up[sent_up..sent_up + 9]),
                    IoSlice::new(&up[sent_up + 9..end]),
                ])
                .unwrap();
            refused += usize::from(n == 0);
            sent_up += n;
            assert!(c.outgoing().len() <= SEND_BUFFER_LIMIT + 400_000);
        }
        if sent_down < down.len() {
            let end = (sent_down + 5000).min(down.len());
            sent_down += s.write(&[IoSlice::new(&down[sent_down..end])]).unwrap();
        }
        // Odd transfer sizes split records across reads.
        pump(&mut c, &mut s, 40_001);
        pump(&mut s, &mut c, 3_333);
        got_up.extend(drain(&mut s, 1500).0);
        got_down.extend(drain(&mut c, 70_000).0);
    }
    assert!(got_up == up, "client → server bytes differ");
    assert!(got_down == down, "server → client bytes differ");
    assert!(refused > 0, "the send buffer limit never pushed back");
}

#[test]
fn close_notify_and_plain_eof_both_end_the_stream() {
    let (mut c, mut s) = connected("sess-close");
    c.write(&[IoSlice::new(b"last words")]).unwrap();
    c.close().unwrap();
    while pump(&mut c, &mut s, 1 << 20) > 0 {}
    let (got, status) = drain(&mut s, 64);
    assert_eq!(got, b"last words");
    assert_eq!(status, Read::Eof);

    // Server → client: TCP end of file without close_notify.
    s.write(&[IoSlice::new(b"bye")]).unwrap();
    while pump(&mut s, &mut c, 1 << 20) > 0 {}
    let buf = c.read_buffer();
    c.received(buf, 0);
    let (got, status) = drain(&mut c, 64);
    assert!(got.ends_with(b"bye"), "{got:?}");
    assert_eq!(status, Read::Eof);
}

#[test]
fn corrupted_record_is_an_error_with_an_alert_for_the_peer() {
    let (mut c, mut s) = connected("sess-corrupt");
    let _ = drain(&mut c, 1024);
    c.write(&[IoSlice::new(&pattern(2000, 5))]).unwrap();
    let mut buf = s.read_buffer();
    let mut record = c.outgoing().to_vec();
    let last = record.len() - 1;
    record[last] ^= 0x55; // the AEAD tag
    buf.extend_from_slice(&record);
    c.sent(record.len());
    s.received(buf, record.len());
    let mut mem = vec![MaybeUninit::uninit(); 4096];
    let err = s.read(&mut ReadBuf::uninit(&mut mem)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    s.encode_alert();
    assert!(!s.outgoing().is_empty(), "no alert queued for the peer");
    while pump(&mut s, &mut c, 1 << 20) > 0 {}
    let mut mem = vec![MaybeUninit::uninit(); 64];
    assert!(
        c.read(&mut ReadBuf::uninit(&mut mem)).is_err(),
        "the peer ignored the alert"
    );
}

#[test]
fn wrong_server_identity_fails_both_handshakes() {
    let (_, _, result) = pair(
        "sess-wrong",
        "spiffe://cluster.local/ns/default/sa/reviews",
        1 << 20,
    );
    let err = result.unwrap_err();
    assert!(
        err.starts_with("client:") && err.contains("expected one of"),
        "{err}"
    );
}

#[test]
fn a_burst_send_buffer_is_released_after_a_second_without_pending_records() {
    let (mut c, mut s) = connected("sess-trim");
    let burst = pattern(200_000, 7);
    assert_eq!(c.write(&[IoSlice::new(&burst)]).unwrap(), burst.len());
    assert!(c.send_buffers_len() > 200_000);
    let t0 = Instant::now();
    c.trim(|| t0);
    c.trim(|| t0 + Duration::from_secs(2));
    assert!(
        c.send_buffers_len() > 200_000,
        "trimmed with records still waiting"
    );
    while pump(&mut c, &mut s, 1 << 16) > 0 {}
    c.trim(|| t0 + Duration::from_millis(2500));
    assert_eq!(c.send_buffers_len(), 0, "the burst's buffer stayed");
    assert_eq!(drain(&mut s, 1 << 16).0, burst);
    // A later write grows a buffer again.
    assert_eq!(c.write(&[IoSlice::new(b"again")]).unwrap(), 5);
    while pump(&mut c, &mut s, 1 << 16) > 0 {}
    assert_eq!(drain(&mut s, 64).0, b"again");
}

#[test]
fn a_read_op_waiting_with_nothing_carried_over_holds_the_only_receive_buffer() {
    let (mut c, mut s) = connected("sess-rxbuf");
    // A partial record makes the next op's buffer the spare, with the tail copied in.
    c.write(&[IoSlice::new(&pattern(40_000, 2))]).unwrap();
    pump(&mut c, &mut s, 20_000);
    let (first, _) = drain(&mut s, 1 << 16);
    let lent = s.read_buffer();
    assert!(
        s.kept_receive_capacity() > 0,
        "the tail's buffer must stay until the op returns"
    );
    s.received(lent, 1); // the op came back without new bytes, as if interrupted
    while pump(&mut c, &mut s, 1 << 20) > 0 {}
    let (rest, _) = drain(&mut s, 1 << 16);
    assert_eq!([first, rest].concat(), pattern(40_000, 2));
    // Everything processed: the op borrows the receive buffer itself, no spare is kept.
    let lent = s.read_buffer();
    assert_eq!(s.kept_receive_capacity(), 0);
    assert!(lent.capacity() >= READ_CAPACITY);
    s.received(lent, 1);
}

#[test]
fn reads_that_stay_small_shrink_the_waiting_buffer_and_a_large_one_grows_it_back() {
    let (mut c, mut s) = connected("sess-rxidle");
    // A bulk-sized read first: the next op's buffer is bulk-sized.
    c.write(&[IoSlice::new(&pattern(40_000, 3))]).unwrap();
    while pump(&mut c, &mut s, 1 << 16) > 0 {}
    assert_eq!(drain(&mut s, 1 << 16).0, pattern(40_000, 3));
    let lent = s.read_buffer();
    assert!(lent.capacity() >= READ_CAPACITY);
    s.received(lent, 1);
    // Small records, one per read: after enough of them the op waits with a small buffer.
    for i in 0..SMALL_READS_TO_IDLE {
        c.write(&[IoSlice::new(&[i; 100])]).unwrap();
        pump(&mut c, &mut s, 1 << 16);
        assert_eq!(drain(&mut s, 1 << 16).0, [i; 100]);
    }
    let lent = s.read_buffer();
    assert!(
        lent.capacity() >= READ_IDLE_CAPACITY && lent.capacity() < READ_CAPACITY / 2,
        "an idle connection's read op holds {} bytes",
        lent.capacity()
    );
    s.received(lent, 1);
    // A read that fills the small buffer means a stream is flowing again.
    c.write(&[IoSlice::new(&pattern(30_000, 4))]).unwrap();
    pump(&mut c, &mut s, READ_IDLE_CAPACITY);
    while pump(&mut c, &mut s, 1 << 16) > 0 {}
    assert_eq!(drain(&mut s, 1 << 16).0, pattern(30_000, 4));
    let lent = s.read_buffer();
    assert!(lent.capacity() >= READ_CAPACITY);
    s.received(lent, 1);
}

/// Everything `to` can open now, through [`Session::read_in_place`]: the plaintext, and
/// how many records each call handed over at once.
fn drain_in_place(to: &mut Session) -> (Vec<u8>, Vec<usize>, Read) {
    let mut got = Vec::new();
    let mut batches = Vec::new();
    loop {
        let status = to
            .read_in_place(&mut |buf, ranges| {
                batches.push(ranges.len());
                for r in ranges {
                    got.extend_from_slice(&buf[r.clone()]);
                }
                Ok(())
            })
            .unwrap();
        if status != Read::Data {
            return (got, batches, status);
        }
    }
}

#[test]
fn records_opened_in_place_come_in_order_several_per_call_at_every_cut() {
    let (mut c, mut s) = connected("sess-inplace");
    // Four records of 16 KiB and a small one, cut at odd sizes on the way.
    let sent = pattern(4 * 16384 + 100, 3);
    assert_eq!(c.write(&[IoSlice::new(&sent)]).unwrap(), sent.len());
    let mut got = Vec::new();
    while !c.outgoing().is_empty() {
        pump(&mut c, &mut s, 7000);
        let (bytes, _, status) = drain_in_place(&mut s);
        assert_eq!(status, Read::NeedInput);
        got.extend(bytes);
    }
    assert!(got == sent, "bytes lost or reordered");
    // Four records in one read: handed over in one call.
    let sent = pattern(3 * 16384 + 100, 4);
    assert_eq!(c.write(&[IoSlice::new(&sent)]).unwrap(), sent.len());
    pump(&mut c, &mut s, 1 << 20);
    let (bytes, batches, _) = drain_in_place(&mut s);
    assert!(bytes == sent);
    assert_eq!(batches, vec![4]);
    // close_notify ends it.
    c.close().unwrap();
    pump(&mut c, &mut s, 1 << 20);
    assert_eq!(drain_in_place(&mut s).2, Read::Eof);
}
