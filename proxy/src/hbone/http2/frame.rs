//! HTTP/2 frames (RFC 9113 section 4 and 6): the 9-byte header, and the frames the HBONE
//! server and client send, serialised into a caller's buffer. Pure functions.

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 9;
/// The client connection preface (RFC 9113 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest window or window increment (2^31 - 1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The window both ends start with, and the smallest and largest frame size a peer may ask.
pub const DEFAULT_WINDOW: u32 = 65_535;
pub const MIN_MAX_FRAME: u32 = 16_384;
pub const MAX_MAX_FRAME: u32 = (1 << 24) - 1;

/// Frame types.
pub mod kind {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 1;
    pub const ENABLE_PUSH: u16 = 2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 3;
    pub const INITIAL_WINDOW_SIZE: u16 = 4;
    pub const MAX_FRAME_SIZE: u16 = 5;
}

/// Error codes (RFC 9113 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0);
    pub const PROTOCOL_ERROR: Reason = Reason(1);
    pub const INTERNAL_ERROR: Reason = Reason(2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(3);
    pub const STREAM_CLOSED: Reason = Reason(5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(6);
    pub const REFUSED_STREAM: Reason = Reason(7);
    pub const CANCEL: Reason = Reason(8);
    pub const COMPRESSION_ERROR: Reason = Reason(9);

    /// The code's name, for log lines and errors.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES
            .get(self.0 as usize)
            .copied()
            .unwrap_or("unknown error code")
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Payload length.
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt.
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = self.len.to_be_bytes();
        let s = self.stream.to_be_bytes();
        [
            l[1], l[2], l[3], self.kind, self.flags, s[0], s[1], s[2], s[3],
        ]
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The header of a DATA frame of `len` bytes.
pub fn data_head(stream: u32, len: usize, end_stream: bool) -> [u8; HEADER_LEN] {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    Head {
        len: len as u32,
        kind: kind::DATA,
        flags,
        stream,
    }
    .encode()
}

fn put(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let head = Head {
        len: payload.len() as u32,
        kind,
        flags,
        stream,
    };
    out.extend_from_slice(&head.encode());
    out.extend_from_slice(payload);
}

/// A SETTINGS frame with `values`.
pub fn settings(out: &mut Vec<u8>, values: &[(u16, u32)]) {
    let mut payload = Vec::with_capacity(values.len() * 6);
    for (id, value) in values {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    put(out, kind::SETTINGS, 0, 0, &payload);
}

pub fn settings_ack(out: &mut Vec<u8>) {
    put(out, kind::SETTINGS, flag::ACK, 0, &[]);
}

pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put(
        out,
        kind::WINDOW_UPDATE,
        0,
        stream,
        &increment.to_be_bytes(),
    );
}

pub fn ping(out: &mut Vec<u8>, ack: bool, payload: [u8; 8]) {
    let flags = if ack { flag::ACK } else { 0 };
    put(out, kind::PING, flags, 0, &payload);
}

pub fn rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    put(out, kind::RST_STREAM, 0, stream, &reason.0.to_be_bytes());
}

pub fn goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason) {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&last_stream.to_be_bytes());
    payload[4..].copy_from_slice(&reason.0.to_be_bytes());
    put(out, kind::GOAWAY, 0, 0, &payload);
}

/// A HEADERS frame carrying a whole (small) header block.
pub fn headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool) {
    let mut flags = flag::END_HEADERS;
    if end_stream {
        flags |= flag::END_STREAM;
    }
    put(out, kind::HEADERS, flags, stream, block);
}

/// The HPACK block of a response with only `:status`: the static table's entry when it
/// has one, else a literal without indexing on the `:status` name (RFC 7541 6.2.2).
pub fn status_block(status: u16) -> Vec<u8> {
    // Static table entries 8..=14 are :status 200, 204, 206, 304, 400, 404, 500.
    const INDEXED: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    if let Some(i) = INDEXED.iter().position(|s| *s == status) {
        return vec![0x80 | (8 + i as u8)];
    }
    let digits = format!("{:03}", status % 1000);
    let mut block = vec![0x08, digits.len() as u8];
    block.extend_from_slice(digits.as_bytes());
    block
}

/// Static table indexes of the request pseudo-header names (RFC 7541 appendix A).
const AUTHORITY_NAME: usize = 1;
const METHOD_NAME: usize = 2;

/// The HPACK block of an HBONE CONNECT request: `:method CONNECT`, `:authority` and the
/// regular `headers`, each a literal without indexing (RFC 7541 6.2.2; names of the
/// pseudo-headers from the static table, no Huffman, no dynamic table). `headers` names
/// must be lowercase.
pub fn connect_block(authority: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::with_capacity(64);
    literal(&mut block, Some(METHOD_NAME), b"", b"CONNECT");
    literal(&mut block, Some(AUTHORITY_NAME), b"", authority.as_bytes());
    for (name, value) in headers {
        literal(&mut block, None, name.as_bytes(), value.as_bytes());
    }
    block
}

/// One literal header field without indexing: the name from the static table (`index`)
/// or given, then the value.
fn literal(out: &mut Vec<u8>, index: Option<usize>, name: &[u8], value: &[u8]) {
    match index {
        Some(i) => integer(out, 0x00, 4, i),
        None => {
            out.push(0x00);
            string(out, name);
        }
    }
    string(out, value);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    integer(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix after the `first` bits (RFC 7541 5.1).
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trips_and_ignores_the_reserved_bit() {
        let head = Head {
            len: 0x01_02_03,
            kind: kind::HEADERS,
            flags: flag::END_HEADERS | flag::END_STREAM,
            stream: MAX_WINDOW,
        };
        assert_eq!(Head::parse(&head.encode()), head);
        let mut raw = head.encode();
        raw[5] |= 0x80;
        assert_eq!(Head::parse(&raw).stream, MAX_WINDOW);
    }

    #[test]
    fn control_frames_have_their_lengths_and_payloads() {
        let mut out = Vec::new();
        goaway(&mut out, 7, Reason::PROTOCOL_ERROR);
        let head = Head::parse(out[..9].try_into().unwrap());
        assert_eq!((head.len, head.kind, head.stream), (8, kind::GOAWAY, 0));
        assert_eq!(&out[9..], &[0, 0, 0, 7, 0, 0, 0, 1]);
        out.clear();
        settings(&mut out, &[(setting::INITIAL_WINDOW_SIZE, 4 << 20)]);
        assert_eq!(out.len(), 15);
        assert_eq!(&out[9..], &[0, 4, 0, 0x40, 0, 0]);
    }

    #[test]
    fn status_blocks_decode_to_their_status() {
        for status in [200u16, 400, 401, 503] {
            let block = status_block(status);
            let fields = loona_hpack::Decoder::new().decode(&block).unwrap();
            assert_eq!(
                fields,
                vec![(b":status".to_vec(), status.to_string().into_bytes())]
            );
        }
        assert_eq!(status_block(200), vec![0x88]);
    }

    #[test]
    fn connect_blocks_decode_to_the_request() {
        let long = "x".repeat(300);
        let block = connect_block(
            "10.0.0.2:8080",
            &[("forwarded", "for=\"10.0.0.1:4000\""), ("x-long", &long)],
        );
        let fields = loona_hpack::Decoder::new().decode(&block).unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = [
            (":method", "CONNECT"),
            (":authority", "10.0.0.2:8080"),
            ("forwarded", "for=\"10.0.0.1:4000\""),
            ("x-long", long.as_str()),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(fields, want);
        assert_eq!(&block[..2], &[0x02, 7]);
    }

    #[test]
    fn reasons_are_named() {
        assert_eq!(
            Reason::FLOW_CONTROL_ERROR.to_string(),
            "FLOW_CONTROL_ERROR (3)"
        );
        assert_eq!(Reason(99).name(), "unknown error code");
    }
}
