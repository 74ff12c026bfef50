use super::*;

const LIMITS: Limits = Limits {
    stream_window: 4 << 20,
    connection_window: 16 << 20,
    max_frame: 1 << 20,
    max_streams: 200,
};

/// An event with its data owned, for comparing.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Request(u32, String, bool),
    Data(u32, Vec<u8>),
    End(u32),
    Reset(u32, Reason),
    Response(u32, u16, bool),
    GoAway(u32),
    Window,
}

/// Feeds `input` in pieces of `cut` bytes (the whole at once for 0); adjacent DATA
/// events of a stream are merged. Stops at the first connection error.
fn feed(conn: &mut Endpoint, input: &[u8], cut: usize) -> (Vec<Ev>, Option<H2Error>) {
    let mut events: Vec<Ev> = Vec::new();
    let pieces: Vec<&[u8]> = match cut {
        0 => vec![input],
        n => input.chunks(n).collect(),
    };
    for piece in pieces {
        let mut at = 0;
        loop {
            let (n, event) = match conn.next(&piece[at..]) {
                Ok(v) => v,
                Err(e) => return (events, Some(e)),
            };
            at += n;
            let Some(event) = event else {
                if n == 0 {
                    break;
                }
                continue;
            };
            match (event, events.last_mut()) {
                (Event::Data { stream, data }, Some(Ev::Data(s, bytes))) if *s == stream => {
                    bytes.extend_from_slice(data)
                }
                (event, _) => events.push(own(event)),
            }
        }
        assert_eq!(at, piece.len(), "all input is taken");
    }
    (events, None)
}

fn own(event: Event<'_>) -> Ev {
    match event {
        Event::Request {
            stream,
            req,
            end_stream,
        } => Ev::Request(
            stream,
            format!("{} {}", req.method(), req.uri()),
            end_stream,
        ),
        Event::Data { stream, data } => Ev::Data(stream, data.to_vec()),
        Event::End { stream } => Ev::End(stream),
        Event::Reset { stream, reason } => Ev::Reset(stream, reason),
        Event::Response {
            stream,
            status,
            end_stream,
        } => Ev::Response(stream, status, end_stream),
        Event::GoAway { last_stream } => Ev::GoAway(last_stream),
        Event::WindowOpened => Ev::Window,
    }
}

fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let head = Head {
        len: payload.len() as u32,
        kind,
        flags,
        stream,
    };
    [&head.encode()[..], payload].concat()
}

/// A CONNECT header block, literals without indexing (no Huffman).
fn connect_block(authority: &str) -> Vec<u8> {
    let mut enc = loona_hpack::Encoder::new();
    enc.encode([
        (&b":method"[..], &b"CONNECT"[..]),
        (b":authority", authority.as_bytes()),
        (b"forwarded", b"for=\"10.0.0.1:1234\""),
    ])
}

fn connect(stream: u32, authority: &str, end: bool) -> Vec<u8> {
    let mut flags = flag::END_HEADERS;
    if end {
        flags |= flag::END_STREAM;
    }
    raw(kind::HEADERS, flags, stream, &connect_block(authority))
}

fn opening() -> Vec<u8> {
    [&PREFACE[..], &raw(kind::SETTINGS, 0, 0, &[])].concat()
}

/// The frames in `out` (which is emptied).
fn frames(conn: &mut Endpoint) -> Vec<(Head, Vec<u8>)> {
    let out = std::mem::take(&mut conn.out);
    let mut at = 0;
    let mut frames = Vec::new();
    while at < out.len() {
        let head = Head::parse(out[at..at + 9].try_into().unwrap());
        let end = at + 9 + head.len as usize;
        frames.push((head, out[at + 9..end].to_vec()));
        at = end;
    }
    frames
}

fn kinds(conn: &mut Endpoint) -> Vec<(u8, u32, Vec<u8>)> {
    frames(conn)
        .into_iter()
        .map(|(h, p)| (h.kind, h.stream, p))
        .collect()
}

fn goaway_reason(conn: &mut Endpoint) -> Reason {
    let frames = frames(conn);
    let (_, payload) = frames
        .iter()
        .find(|(h, _)| h.kind == kind::GOAWAY)
        .expect("a GOAWAY");
    Reason(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
}

/// Client frames of one tunnel: CONNECT, two DATA frames (one padded), END_STREAM.
fn tunnel() -> Vec<u8> {
    let mut padded = vec![3u8];
    padded.extend_from_slice(b"world");
    padded.extend_from_slice(&[0, 0, 0]);
    [
        opening(),
        connect(1, "10.0.0.2:80", false),
        raw(kind::DATA, 0, 1, b"hello "),
        raw(kind::PRIORITY, 0, 1, &[0, 0, 0, 0, 7]),
        raw(0xfa, 0, 0, b"unknown frame type"),
        raw(kind::DATA, flag::PADDED, 1, &padded),
        raw(kind::DATA, flag::END_STREAM, 1, &[]),
    ]
    .concat()
}

fn tunnel_events() -> Vec<Ev> {
    vec![
        Ev::Request(1, "CONNECT 10.0.0.2:80".into(), false),
        Ev::Data(1, b"hello world".to_vec()),
        Ev::End(1),
    ]
}

#[test]
fn opens_with_our_settings_and_connection_window() {
    let mut conn = Endpoint::server(LIMITS);
    let sent = frames(&mut conn);
    assert_eq!(sent[0].0.kind, kind::SETTINGS);
    assert!(sent[0].1.chunks(6).any(|e| e == [0, 4, 0, 0x40, 0, 0]));
    assert_eq!(sent[1].0.kind, kind::WINDOW_UPDATE);
    let increment = u32::from_be_bytes(sent[1].1[..].try_into().unwrap());
    assert_eq!(increment, (16 << 20) - 65_535);
}

#[test]
fn a_tunnel_parses_the_same_at_every_cut() {
    let input = tunnel();
    for cut in 0..=input.len() {
        let mut conn = Endpoint::server(LIMITS);
        let (events, err) = feed(&mut conn, &input, cut);
        assert_eq!(err, None, "cut {cut}");
        assert_eq!(events, tunnel_events(), "cut {cut}");
    }
    // Split in two at every position too.
    for split in 0..input.len() {
        let mut conn = Endpoint::server(LIMITS);
        let (mut events, _) = feed(&mut conn, &input[..split], 0);
        let (rest, err) = feed(&mut conn, &input[split..], 0);
        assert_eq!(err, None);
        for ev in rest {
            match (ev, events.last_mut()) {
                (Ev::Data(s, b), Some(Ev::Data(t, bytes))) if s == *t => bytes.extend(b),
                (ev, _) => events.push(ev),
            }
        }
        assert_eq!(events, tunnel_events(), "split at {split}");
    }
}

#[test]
fn settings_are_acked_and_pings_answered() {
    let mut conn = Endpoint::server(LIMITS);
    frames(&mut conn);
    let input = [opening(), raw(kind::PING, 0, 0, b"12345678")].concat();
    assert_eq!(feed(&mut conn, &input, 0), (vec![], None));
    let sent = kinds(&mut conn);
    assert_eq!(sent[0], (kind::SETTINGS, 0, vec![]));
    assert_eq!(sent[1], (kind::PING, 0, b"12345678".to_vec()));
}

#[test]
fn headers_with_priority_padding_and_continuation() {
    let block = connect_block("10.0.0.2:80");
    let mut first = vec![2u8, 0, 0, 0, 0, 9];
    first.extend_from_slice(&block[..4]);
    first.extend_from_slice(&[0, 0]);
    let input = [
        opening(),
        raw(kind::HEADERS, flag::PADDED | flag::PRIORITY, 3, &first),
        raw(kind::CONTINUATION, 0, 3, &block[4..10]),
        raw(kind::CONTINUATION, flag::END_HEADERS, 3, &block[10..]),
    ]
    .concat();
    let mut conn = Endpoint::server(LIMITS);
    let (events, err) = feed(&mut conn, &input, 0);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![Ev::Request(3, "CONNECT 10.0.0.2:80".into(), false)]
    );
}

#[test]
fn huffman_and_the_dynamic_table_are_decoded() {
    // RFC 7541 C.4.1 and C.4.2: Huffman literals with incremental indexing, then a block
    // that refers to the dynamic table entry the first one added.
    let first: Vec<u8> = [
        &[0x82, 0x86, 0x84, 0x41, 0x8c][..],
        &[
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ],
    ]
    .concat();
    let second = [0x82, 0x86, 0x84, 0xbe];
    let input = [
        opening(),
        raw(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &first,
        ),
        raw(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            3,
            &second,
        ),
    ]
    .concat();
    let mut conn = Endpoint::server(LIMITS);
    let (events, err) = feed(&mut conn, &input, 0);
    assert_eq!(err, None);
    let get = |s| Ev::Request(s, "GET http://www.example.com/".into(), true);
    assert_eq!(events, vec![get(1), get(3)]);
}

#[test]
fn a_malformed_request_is_reset_and_the_connection_goes_on() {
    let mut enc = loona_hpack::Encoder::new();
    let bad = enc.encode([(&b":method"[..], &b"CONNECT"[..]), (b":bogus", b"x")]);
    let served = Ev::Request(3, "CONNECT 10.0.0.2:80".into(), true);
    reset_then_served(&bad, connect(3, "10.0.0.2:80", true), served);
}

/// Stream 1 with header block `first` is reset (PROTOCOL_ERROR) and `second` (stream 3's
/// frames) is served as `served`, on one connection.
fn reset_then_served(first: &[u8], second: Vec<u8>, served: Ev) {
    let input = [
        opening(),
        raw(kind::HEADERS, flag::END_HEADERS, 1, first),
        second,
    ]
    .concat();
    let mut conn = Endpoint::server(LIMITS);
    frames(&mut conn);
    let (events, err) = feed(&mut conn, &input, 0);
    assert_eq!(err, None);
    assert_eq!(events, vec![served]);
    let sent = kinds(&mut conn);
    assert!(sent.contains(&(kind::RST_STREAM, 1, vec![0, 0, 0, 1])));
}

#[test]
fn a_header_list_that_expands_past_64_kib_is_reset_and_the_table_kept_in_step() {
    // A 4000-byte value added to the dynamic table (literal with incremental indexing,
    // length 4000 as 0x7f 0xa1 0x1e), then 20 one-byte references to it (index 62): a
    // block of ~4 KB that decodes to ~80 KB.
    let mut big = connect_block("10.0.0.2:80");
    big.extend_from_slice(&[0x40, 0x05]);
    big.extend_from_slice(b"x-big");
    big.extend_from_slice(&[0x7f, 0xa1, 0x1e]);
    big.extend_from_slice(&[b'a'; 4000]);
    big.extend_from_slice(&[0xbe; 20]);
    // Within the limit: the pseudo-headers as literals not indexed (names from the static
    // table: 2 `:method`, 1 `:authority`), then the entry referred to 10 times (~40 KB).
    let fits = [
        &[0x02, 0x07][..],
        b"CONNECT",
        &[0x01, 0x0b],
        b"10.0.0.2:81",
        &[0xbe; 10],
    ]
    .concat();
    let second = raw(kind::HEADERS, flag::END_HEADERS, 3, &fits);
    let served = Ev::Request(3, "CONNECT 10.0.0.2:81".into(), false);
    reset_then_served(&big, second, served);
}

#[test]
fn an_undecodable_header_block_is_a_compression_error() {
    let input = [
        opening(),
        raw(
            kind::HEADERS,
            flag::END_HEADERS,
            1,
            &[0xff, 0xff, 0xff, 0xff],
        ),
    ]
    .concat();
    let mut conn = Endpoint::server(LIMITS);
    frames(&mut conn);
    let (_, err) = feed(&mut conn, &input, 0);
    assert!(matches!(
        err,
        Some(H2Error::Protocol {
            reason: Reason::COMPRESSION_ERROR,
            ..
        })
    ));
    assert_eq!(goaway_reason(&mut conn), Reason::COMPRESSION_ERROR);
}

#[test]
fn connection_errors_are_named_and_answered_with_goaway() {
    let cases: Vec<(Vec<u8>, Reason, &str)> = vec![
        (
            raw(kind::DATA, 0, 0, b"x"),
            Reason::PROTOCOL_ERROR,
            "DATA on stream 0",
        ),
        (
            raw(kind::DATA, 0, 5, b"x"),
            Reason::PROTOCOL_ERROR,
            "DATA on an idle stream",
        ),
        (
            raw(kind::PUSH_PROMISE, 0, 1, &[0; 4]),
            Reason::PROTOCOL_ERROR,
            "PUSH_PROMISE",
        ),
        (
            raw(kind::CONTINUATION, flag::END_HEADERS, 1, &[]),
            Reason::PROTOCOL_ERROR,
            "CONTINUATION without",
        ),
        (
            raw(kind::SETTINGS, 0, 0, &[0; 5]),
            Reason::FRAME_SIZE_ERROR,
            "multiple of 6",
        ),
        (
            raw(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1]),
            Reason::PROTOCOL_ERROR,
            "MAX_FRAME_SIZE",
        ),
        (
            raw(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            Reason::FLOW_CONTROL_ERROR,
            "INITIAL_WINDOW_SIZE",
        ),
        (
            raw(kind::PING, 0, 0, b"short"),
            Reason::FRAME_SIZE_ERROR,
            "PING",
        ),
        (
            raw(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]),
            Reason::PROTOCOL_ERROR,
            "WINDOW_UPDATE of 0",
        ),
        (
            raw(kind::WINDOW_UPDATE, 0, 0, &[0x7f, 0xff, 0xff, 0xff]),
            Reason::FLOW_CONTROL_ERROR,
            "connection window",
        ),
        (
            raw(kind::HEADERS, flag::END_HEADERS, 2, &[0x82]),
            Reason::PROTOCOL_ERROR,
            "even id",
        ),
        (
            raw(0xfa, 0, 0, &vec![0; (1 << 20) + 1]),
            Reason::FRAME_SIZE_ERROR,
            "MAX_FRAME_SIZE",
        ),
    ];
    for (frame, reason, what) in cases {
        let mut conn = Endpoint::server(LIMITS);
        frames(&mut conn);
        let (_, err) = feed(&mut conn, &[opening(), frame].concat(), 0);
        let Some(H2Error::Protocol {
            reason: got,
            what: said,
        }) = err
        else {
            panic!("{what}: no connection error");
        };
        assert_eq!(got, reason, "{what}");
        assert!(said.contains(what), "{said:?} names {what:?}");
        assert_eq!(goaway_reason(&mut conn), reason, "{what}");
    }
    let mut conn = Endpoint::server(LIMITS);
    let (_, err) = feed(&mut conn, b"GET / HTTP/1.1\r\n\r\n", 0);
    assert_eq!(err, Some(H2Error::Preface));
    assert!(err.unwrap().to_string().contains("preface"));
}

#[test]
fn data_beyond_the_stream_window_resets_the_stream_only() {
    let limits = Limits {
        stream_window: 10,
        ..LIMITS
    };
    let mut conn = Endpoint::server(limits);
    let input = [
        opening(),
        connect(1, "10.0.0.2:80", false),
        raw(kind::DATA, 0, 1, b"0123456789"),
        raw(kind::DATA, 0, 1, b"x"),
        connect(3, "10.0.0.2:80", false),
    ]
    .concat();
    frames(&mut conn);
    let (events, err) = feed(&mut conn, &input, 0);
    assert_eq!(err, None);
    assert_eq!(events[2], Ev::Reset(1, Reason::FLOW_CONTROL_ERROR));
    assert!(matches!(events[3], Ev::Request(3, ..)));
    assert!(kinds(&mut conn).contains(&(kind::RST_STREAM, 1, vec![0, 0, 0, 3])));
}

#[test]
fn data_beyond_the_connection_window_ends_the_connection() {
    let limits = Limits {
        connection_window: 65_535,
        max_frame: 1 << 20,
        ..LIMITS
    };
    let mut conn = Endpoint::server(limits);
    let input = [
        opening(),
        connect(1, "10.0.0.2:80", false),
        raw(kind::DATA, 0, 1, &vec![0; 65_536]),
    ]
    .concat();
    let (_, err) = feed(&mut conn, &input, 0);
    assert!(matches!(
        err,
        Some(H2Error::Protocol {
            reason: Reason::FLOW_CONTROL_ERROR,
            ..
        })
    ));
}

#[test]
fn released_bytes_come_back_in_window_updates_of_half_a_window() {
    let limits = Limits {
        stream_window: 100,
        connection_window: 1000,
        ..LIMITS
    };
    let mut conn = Endpoint::server(limits);
    let input = [
        opening(),
        connect(1, "10.0.0.2:80", false),
        raw(kind::DATA, 0, 1, &[7; 100]),
    ]
    .concat();
    feed(&mut conn, &input, 0);
    frames(&mut conn);
    conn.release(1, 49);
    assert!(frames(&mut conn)
        .iter()
        .all(|(h, _)| h.kind != kind::WINDOW_UPDATE));
    conn.release(1, 51);
    assert_eq!(
        kinds(&mut conn),
        vec![(kind::WINDOW_UPDATE, 1, vec![0, 0, 0, 100])]
    );
    // The stream's window is whole again: another 100 bytes are accepted.
    let (events, err) = feed(&mut conn, &raw(kind::DATA, 0, 1, &[8; 100]), 0);
    assert_eq!((events, err), (vec![Ev::Data(1, vec![8; 100])], None));
    conn.release(1, 100);
    conn.release(1, 0);
    // The connection's 1000: its update comes at 500.
    let updates: Vec<_> = kinds(&mut conn);
    assert_eq!(updates, vec![(kind::WINDOW_UPDATE, 1, vec![0, 0, 0, 100])]);
    for _ in 0..3 {
        let (_, err) = feed(&mut conn, &raw(kind::DATA, 0, 1, &[9; 100]), 0);
        assert_eq!(err, None);
        conn.release(1, 100);
    }
    assert!(kinds(&mut conn).contains(&(kind::WINDOW_UPDATE, 0, vec![0, 0, 0x01, 0xf4])));
}

#[test]
fn padding_is_given_back_at_once() {
    let limits = Limits {
        stream_window: 20,
        connection_window: 20,
        ..LIMITS
    };
    let mut conn = Endpoint::server(limits);
    let mut padded = vec![9u8];
    padded.push(b'x');
    padded.extend_from_slice(&[0; 9]);
    let input = [
        opening(),
        connect(1, "10.0.0.2:80", false),
        raw(kind::DATA, flag::PADDED, 1, &padded),
    ]
    .concat();
    frames(&mut conn);
    let (events, _) = feed(&mut conn, &input, 0);
    assert_eq!(events[1], Ev::Data(1, b"x".to_vec()));
    let sent = kinds(&mut conn);
    assert!(
        sent.contains(&(kind::WINDOW_UPDATE, 1, vec![0, 0, 0, 10])),
        "{sent:?}"
    );
    assert!(
        sent.contains(&(kind::WINDOW_UPDATE, 0, vec![0, 0, 0, 10])),
        "{sent:?}"
    );
}

#[test]
fn the_send_window_follows_window_updates_and_settings() {
    let mut conn = Endpoint::server(LIMITS);
    feed(
        &mut conn,
        &[opening(), connect(1, "10.0.0.2:80", false)].concat(),
        0,
    );
    assert_eq!(conn.send_window(1), 65_535);
    conn.sent_data(1, 65_535, false);
    assert_eq!(conn.send_window(1), 0);
    let (events, _) = feed(
        &mut conn,
        &raw(kind::WINDOW_UPDATE, 0, 1, &[0, 0, 0, 10]),
        0,
    );
    assert_eq!(events, vec![Ev::Window]);
    assert_eq!(
        conn.send_window(1),
        0,
        "the connection window is still empty"
    );
    feed(&mut conn, &raw(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]), 0);
    assert_eq!(conn.send_window(1), 10);
    // A larger initial window grows open streams' windows by the difference.
    let settings = raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0x0f]);
    let (events, _) = feed(&mut conn, &settings, 0);
    assert_eq!(events, vec![Ev::Window]);
    assert_eq!(conn.send_window(1), 26);
    conn.sent_data(1, 0, true);
    assert!(conn.is_open(1), "open until the peer's END_STREAM too");
    feed(&mut conn, &raw(kind::DATA, flag::END_STREAM, 1, &[]), 0);
    assert!(!conn.is_open(1));
    assert_eq!(conn.send_window(1), 0);
}

#[test]
fn the_max_frame_size_is_the_peers() {
    let mut conn = Endpoint::server(LIMITS);
    assert_eq!(conn.max_frame(), 16_384);
    let settings = raw(kind::SETTINGS, 0, 0, &[0, 5, 0, 0x10, 0, 0]);
    feed(&mut conn, &[opening(), settings].concat(), 0);
    assert_eq!(conn.max_frame(), 1 << 20);
}

#[test]
fn streams_above_the_limit_are_refused() {
    let limits = Limits {
        max_streams: 1,
        ..LIMITS
    };
    let mut conn = Endpoint::server(limits);
    frames(&mut conn);
    let input = [
        opening(),
        connect(1, "10.0.0.2:80", false),
        connect(3, "10.0.0.2:80", false),
    ]
    .concat();
    let (events, _) = feed(&mut conn, &input, 0);
    assert_eq!(events.len(), 1);
    assert!(kinds(&mut conn).contains(&(kind::RST_STREAM, 3, vec![0, 0, 0, 7])));
}

#[test]
fn a_peer_reset_is_reported_and_later_data_dropped() {
    let mut conn = Endpoint::server(LIMITS);
    let input = [
        opening(),
        connect(1, "10.0.0.2:80", false),
        raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]),
        raw(kind::DATA, 0, 1, b"late"),
    ]
    .concat();
    let (events, err) = feed(&mut conn, &input, 0);
    assert_eq!(err, None);
    assert_eq!(events[1], Ev::Reset(1, Reason::CANCEL));
    assert_eq!(events.len(), 2);
}

#[test]
fn drain_sends_goaway_then_the_last_stream_after_the_ping_ack() {
    let mut conn = Endpoint::server(LIMITS);
    feed(
        &mut conn,
        &[opening(), connect(1, "10.0.0.2:80", false)].concat(),
        0,
    );
    frames(&mut conn);
    conn.start_drain();
    let sent = kinds(&mut conn);
    assert_eq!(
        sent[0],
        (kind::GOAWAY, 0, vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
    );
    assert_eq!(sent[1].0, kind::PING);
    // A stream the client opened before it saw the GOAWAY is still served.
    let (events, _) = feed(&mut conn, &connect(3, "10.0.0.2:80", false), 0);
    assert!(matches!(events[0], Ev::Request(3, ..)));
    feed(&mut conn, &raw(kind::PING, flag::ACK, 0, &sent[1].2), 0);
    assert_eq!(
        kinds(&mut conn),
        vec![(kind::GOAWAY, 0, vec![0, 0, 0, 3, 0, 0, 0, 0])]
    );
    let (events, _) = feed(&mut conn, &connect(5, "10.0.0.2:80", false), 0);
    assert!(events.is_empty());
    assert!(kinds(&mut conn).contains(&(kind::RST_STREAM, 5, vec![0, 0, 0, 7])));
    assert!(!conn.is_done(), "streams 1 and 3 are open");
    for s in [1, 3] {
        conn.reset(s, Reason::CANCEL);
    }
    assert!(conn.is_done());
}

#[test]
fn a_refusal_ends_the_stream_and_stops_the_peer_sending() {
    let mut conn = Endpoint::server(LIMITS);
    feed(
        &mut conn,
        &[opening(), connect(1, "10.0.0.2:80", false)].concat(),
        0,
    );
    frames(&mut conn);
    conn.respond(1, 401, true);
    let sent = kinds(&mut conn);
    assert_eq!(sent[0].0, kind::HEADERS);
    assert_eq!(sent[1], (kind::RST_STREAM, 1, vec![0, 0, 0, 0]));
    assert!(!conn.is_open(1));
}

// The client role.

/// `:status 200` from the static table.
const OK: &[u8] = &[0x88];

/// A client whose opening frames are taken from `out`, with `n` streams open.
fn client_with(n: usize) -> Endpoint {
    let mut conn = Endpoint::client(LIMITS);
    for _ in 0..n {
        conn.open_stream(&frame::connect_block("10.0.0.2:80", &[]))
            .expect("a stream");
    }
    conn.out.clear();
    conn
}

fn response(stream: u32, block: &[u8], end: bool) -> Vec<u8> {
    let end = if end { flag::END_STREAM } else { 0 };
    raw(kind::HEADERS, flag::END_HEADERS | end, stream, block)
}

#[test]
fn a_client_opens_with_the_preface_its_settings_and_connection_window() {
    let mut conn = Endpoint::client(LIMITS);
    let out = std::mem::take(&mut conn.out);
    assert_eq!(&out[..24], PREFACE);
    conn.out = out[24..].to_vec();
    let sent = frames(&mut conn);
    assert_eq!(sent[0].0.kind, kind::SETTINGS);
    let settings: Vec<&[u8]> = sent[0].1.chunks(6).collect();
    assert_eq!(
        settings,
        [
            &[0, 2, 0, 0, 0, 0][..],
            &[0, 4, 0, 0x40, 0, 0],
            &[0, 5, 0, 0x10, 0, 0]
        ]
    );
    assert_eq!(sent[1].0.kind, kind::WINDOW_UPDATE);
    let increment = u32::from_be_bytes(sent[1].1[..].try_into().unwrap());
    assert_eq!(increment, (16 << 20) - 65_535);
}

#[test]
fn a_client_opens_odd_streams_with_its_connect_headers() {
    let mut conn = client_with(0);
    let block = frame::connect_block("10.0.0.2:80", &[("forwarded", "for=\"10.0.0.1:9\"")]);
    assert_eq!(conn.open_stream(&block), Some(1));
    assert_eq!(conn.open_stream(&block), Some(3));
    let sent = frames(&mut conn);
    assert_eq!(sent.len(), 2);
    for ((head, payload), stream) in sent.iter().zip([1, 3]) {
        assert_eq!(
            (head.kind, head.stream, head.flags),
            (kind::HEADERS, stream, flag::END_HEADERS)
        );
        let fields = loona_hpack::Decoder::new().decode(payload).unwrap();
        assert_eq!(fields[0], (b":method".to_vec(), b"CONNECT".to_vec()));
        assert_eq!(fields[1], (b":authority".to_vec(), b"10.0.0.2:80".to_vec()));
        assert_eq!(
            fields[2],
            (b"forwarded".to_vec(), b"for=\"10.0.0.1:9\"".to_vec())
        );
    }
    assert!(conn.is_open(1) && conn.is_open(3));
}

/// Server frames of one tunnel on stream 1: SETTINGS, the 200, DATA (one padded), END.
fn client_tunnel() -> Vec<u8> {
    let mut padded = vec![2u8];
    padded.extend_from_slice(b"there");
    padded.extend_from_slice(&[0, 0]);
    [
        raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 0x40, 0, 0]),
        raw(kind::SETTINGS, flag::ACK, 0, &[]),
        response(1, OK, false),
        raw(kind::DATA, 0, 1, b"hello "),
        raw(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]),
        raw(kind::DATA, flag::PADDED, 1, &padded),
        raw(kind::DATA, flag::END_STREAM, 1, &[]),
    ]
    .concat()
}

#[test]
fn a_client_tunnel_parses_the_same_at_every_cut() {
    let input = client_tunnel();
    let want = vec![
        Ev::Window,
        Ev::Response(1, 200, false),
        Ev::Data(1, b"hello there".to_vec()),
        Ev::Window,
        Ev::End(1),
    ];
    for cut in 0..=input.len() {
        let mut conn = client_with(1);
        let (events, err) = feed(&mut conn, &input, cut);
        assert_eq!(err, None, "cut {cut}");
        // DATA pieces around the WINDOW_UPDATE are not adjacent: merge them for comparing.
        let mut merged: Vec<Ev> = Vec::new();
        for ev in events {
            match (
                ev,
                merged.iter_mut().rev().find(|e| matches!(e, Ev::Data(..))),
            ) {
                (Ev::Data(_, b), Some(Ev::Data(_, bytes))) => bytes.extend(b),
                (ev, _) => merged.push(ev),
            }
        }
        assert_eq!(merged, want, "cut {cut}");
        // The stream window is 4 MiB now; the connection's 65535 + 256.
        assert_eq!(conn.send_window(1), 65_791, "cut {cut}");
    }
}

#[test]
fn a_client_decodes_huffman_and_dynamic_table_responses() {
    // RFC 7541 C.6.1 and C.6.2: :status 302 with Huffman literals added to the dynamic
    // table, then :status 307 referring to them.
    let first = hex("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3");
    let second = hex("4883640effc1c0bf");
    let mut conn = client_with(3);
    let input = [
        response(1, &first, false),
        response(3, &second, false),
        response(5, OK, true),
    ]
    .concat();
    let (events, err) = feed(&mut conn, &input, 0);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![
            Ev::Response(1, 302, false),
            Ev::Response(3, 307, false),
            Ev::Response(5, 200, true)
        ]
    );
    // Stream 5's server side is over; ours is not yet.
    assert!(conn.is_open(5));
    conn.sent_data(5, 0, true);
    assert!(!conn.is_open(5));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn informational_responses_are_skipped_and_a_missing_status_resets() {
    let mut conn = client_with(2);
    // :status 100 (a literal on the static :status name), then 200.
    let input = [
        response(1, b"\x08\x03100", false),
        response(1, OK, false),
        response(3, b"\x00\x03x-a\x01b", false),
    ]
    .concat();
    let (events, err) = feed(&mut conn, &input, 0);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![
            Ev::Response(1, 200, false),
            Ev::Reset(3, Reason::PROTOCOL_ERROR)
        ]
    );
    assert_eq!(
        kinds(&mut conn),
        vec![(kind::RST_STREAM, 3, vec![0, 0, 0, 1])]
    );
    // A second block on stream 1 is its trailers, which end it.
    let (events, _) = feed(&mut conn, &response(1, b"\x00\x03x-a\x01b", true), 0);
    assert_eq!(events, vec![Ev::End(1)]);
}

#[test]
fn client_connection_errors_are_named() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (response(2, OK, false), "HEADERS on a server stream"),
        (response(5, OK, false), "HEADERS on an idle stream"),
        (
            raw(
                kind::PUSH_PROMISE,
                flag::END_HEADERS,
                1,
                &[0, 0, 0, 2, 0x88],
            ),
            "a PUSH_PROMISE (push is off)",
        ),
        (raw(kind::DATA, 0, 7, b"x"), "DATA on an idle stream"),
    ];
    for (input, what) in cases {
        let mut conn = client_with(2);
        let (_, err) = feed(&mut conn, &input, 0);
        assert!(
            matches!(err, Some(H2Error::Protocol { what: w, .. }) if w == what),
            "{what}: {err:?}"
        );
        assert_eq!(goaway_reason(&mut conn), Reason::PROTOCOL_ERROR, "{what}");
    }
}

#[test]
fn a_client_counts_the_servers_stream_limit() {
    let mut conn = client_with(0);
    let (_, err) = feed(
        &mut conn,
        &raw(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 1]),
        0,
    );
    assert_eq!(err, None);
    let block = frame::connect_block("10.0.0.2:80", &[]);
    assert_eq!(conn.open_stream(&block), Some(1));
    assert!(!conn.can_open());
    assert_eq!(conn.open_stream(&block), None);
    let (events, _) = feed(&mut conn, &raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]), 0);
    assert_eq!(events, vec![Ev::Reset(1, Reason::CANCEL)]);
    assert_eq!(conn.open_stream(&block), Some(3));
}

#[test]
fn a_goaway_drops_the_unserved_streams_and_stops_new_ones() {
    let mut conn = client_with(2);
    let goaway = raw(kind::GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]);
    let (events, err) = feed(&mut conn, &goaway, 0);
    assert_eq!(err, None);
    assert_eq!(events, vec![Ev::GoAway(1)]);
    assert!(conn.is_open(1) && !conn.is_open(3));
    assert!(conn.peer_goaway() && !conn.can_open());
    assert!(!conn.is_done());
    // Stream 1 finishes both ways: the connection is done.
    let input = [
        response(1, OK, false),
        raw(kind::DATA, flag::END_STREAM, 1, b""),
    ]
    .concat();
    feed(&mut conn, &input, 0);
    conn.sent_data(1, 0, true);
    assert!(conn.is_done());
}

#[test]
fn a_client_acks_pings_and_counts_the_acks_of_its_own() {
    let mut conn = client_with(0);
    let (_, err) = feed(&mut conn, &raw(kind::PING, 0, 0, b"abcdefgh"), 0);
    assert_eq!(err, None);
    assert_eq!(
        kinds(&mut conn),
        vec![(kind::PING, 0, b"abcdefgh".to_vec())]
    );
    conn.send_ping();
    let sent = frames(&mut conn);
    assert_eq!((sent[0].0.kind, sent[0].0.flags), (kind::PING, 0));
    assert_eq!(conn.pongs(), 0);
    // Another payload's ACK is not ours.
    feed(&mut conn, &raw(kind::PING, flag::ACK, 0, b"otherack"), 0);
    assert_eq!(conn.pongs(), 0);
    feed(&mut conn, &raw(kind::PING, flag::ACK, 0, &sent[0].1), 0);
    assert_eq!(conn.pongs(), 1);
}

#[test]
fn a_client_keeps_both_windows() {
    let mut conn = client_with(1);
    // Send side: the peer's initial 65535 until its SETTINGS and WINDOW_UPDATEs.
    assert_eq!(conn.send_window(1), 65_535);
    conn.sent_data(1, 65_535, false);
    assert_eq!(conn.send_window(1), 0);
    let input = [
        raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 0x40, 0, 0]),
        raw(kind::WINDOW_UPDATE, 0, 0, &[0, 0x10, 0, 0]),
    ]
    .concat();
    feed(&mut conn, &input, 0);
    assert_eq!(conn.send_window(1), 1 << 20);
    // Receive side: our 4 MiB stream window; one byte more resets the stream.
    conn.out.clear();
    let (events, _) = feed(&mut conn, &response(1, OK, false), 0);
    assert_eq!(events, vec![Ev::Response(1, 200, false)]);
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..4 {
        feed(&mut conn, &raw(kind::DATA, 0, 1, &chunk), 0);
    }
    let (events, err) = feed(&mut conn, &raw(kind::DATA, 0, 1, b"x"), 0);
    assert_eq!(err, None);
    assert_eq!(events, vec![Ev::Reset(1, Reason::FLOW_CONTROL_ERROR)]);
}
