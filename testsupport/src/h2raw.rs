//! Hand-built HTTP/2 frames (RFC 9113), for what a well-behaved client library refuses
//! to send: frames on the wrong stream, more streams than the server allows.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;

pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;

/// Error codes (RFC 9113 §7).
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const REFUSED_STREAM: u32 = 0x7;

/// One frame as received.
#[derive(Debug, Clone)]
pub struct Frame {
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.ty {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Encodes one frame.
pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK "literal header field without indexing, new name", no Huffman (RFC 7541 §6.2.2).
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127 && value.len() < 127, "short strings only");
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

/// A HEADERS frame opening `stream` with `CONNECT authority` (END_HEADERS, not END_STREAM).
pub fn connect_headers(stream: u32, authority: &str) -> Vec<u8> {
    let mut block = Vec::new();
    literal(&mut block, ":method", "CONNECT");
    literal(&mut block, ":authority", authority);
    frame(HEADERS, FLAG_END_HEADERS, stream, &block)
}

/// Reads one frame; None at a clean EOF.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 9];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Ok(Some(Frame {
        ty: head[3],
        flags: head[4],
        stream,
        payload,
    }))
}

/// Frames from `bytes` (a complete capture); a trailing partial frame is ignored.
pub fn parse(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        if bytes.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        let payload = bytes[9..9 + len].to_vec();
        out.push(Frame {
            ty: bytes[3],
            flags: bytes[4],
            stream,
            payload,
        });
        bytes = &bytes[9 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_is_length_type_flags_stream() {
        let f = frame(HEADERS, FLAG_END_HEADERS, 3, b"abc");
        assert_eq!(&f[..9], &[0, 0, 3, 1, 4, 0, 0, 0, 3]);
        assert_eq!(&f[9..], b"abc");
    }

    #[test]
    fn parse_splits_frames_and_drops_a_partial_tail() {
        let mut bytes = frame(SETTINGS, 0, 0, &[]);
        bytes.extend(frame(DATA, 1, 5, b"xy"));
        bytes.extend(&frame(DATA, 0, 7, b"cut")[..10]);
        let got = parse(&bytes);
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].ty, got[1].flags, got[1].stream), (DATA, 1, 5));
        assert_eq!(got[1].payload, b"xy");
    }

    #[test]
    fn error_codes_are_read_from_rst_and_goaway() {
        let rst = Frame {
            ty: RST_STREAM,
            flags: 0,
            stream: 1,
            payload: vec![0, 0, 0, 7],
        };
        assert_eq!(rst.error_code(), Some(REFUSED_STREAM));
        let ga = Frame {
            ty: GOAWAY,
            flags: 0,
            stream: 0,
            payload: vec![0, 0, 0, 9, 0, 0, 0, 1],
        };
        assert_eq!(ga.error_code(), Some(PROTOCOL_ERROR));
    }
}
