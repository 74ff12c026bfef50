//! The wire formats between the load client and the servers, as pure functions over
//! bytes: a minimal HTTP/1.1 (POST echo with `x-client-ip`) and the bulk sink's
//! preamble and trailer lines.

use std::net::IpAddr;
use thiserror::Error;

/// Largest header block accepted; anything larger is not from our peer.
pub const MAX_HEAD: usize = 8 * 1024;
/// The header in which servers report the source IP they saw.
pub const CLIENT_IP_HEADER: &str = "x-client-ip";
/// The header in which the HTTP responder reports the FNV-1a of the body it received.
pub const BODY_FNV_HEADER: &str = "x-body-fnv";
/// How many leading bytes of a bulk stream the sink checksums (keeps the sink fast).
pub const SINK_SUM_PREFIX: usize = 1 << 20;

/// A malformed message from the peer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("HTTP header block larger than {MAX_HEAD} bytes: the peer is not a zring-loadgen server/client")]
    HeadTooLarge,
    #[error("malformed HTTP header line {0:?}: expected `name: value`")]
    BadHeader(String),
    #[error("malformed start line {0:?}: expected `POST /echo HTTP/1.1` or `HTTP/1.1 200 OK`")]
    BadStartLine(String),
    #[error("bad {name} header value {value:?}")]
    BadValue { name: &'static str, value: String },
    #[error("malformed sink line {0:?}: expected `ZRL-SINK <ip>` or `<bytes> <fnv-hex>`")]
    BadSinkLine(String),
}

/// The parsed header block of a request or response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// Bytes up to and including the blank line.
    pub header_len: usize,
    /// Status code (responses) or 0 (requests).
    pub status: u16,
    pub content_length: usize,
    pub close: bool,
    pub client_ip: Option<IpAddr>,
    pub body_fnv: Option<u64>,
}

/// Builds the request header for a POST echo with a body of `body_len` bytes.
pub fn request_head(host: &str, body_len: usize, close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!("POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: {body_len}\r\n{conn}\r\n")
        .into_bytes()
}

/// Builds the response header: echoes `body_len` bytes, reports the peer IP and the
/// request body's checksum.
pub fn response_head(body_len: usize, client_ip: IpAddr, body_fnv: u64, close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n{CLIENT_IP_HEADER}: {client_ip}\r\n\
         {BODY_FNV_HEADER}: {body_fnv:016x}\r\n{conn}\r\n"
    )
    .into_bytes()
}

/// Parses a header block at the start of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ProtoError> {
    let Some(end) = find_blank_line(buf) else {
        return if buf.len() > MAX_HEAD {
            Err(ProtoError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default();
    let mut head = Head {
        header_len: end + 4,
        status: parse_start(start)?,
        ..Head::default()
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ProtoError::BadHeader(line.to_string()))?;
        apply_header(&mut head, &name.trim().to_ascii_lowercase(), value.trim())?;
    }
    Ok(Some(head))
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse_start(line: &str) -> Result<u16, ProtoError> {
    let bad = || ProtoError::BadStartLine(line.to_string());
    if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
        return rest.get(..3).and_then(|s| s.parse().ok()).ok_or_else(bad);
    }
    if line.ends_with(" HTTP/1.1") {
        return Ok(0);
    }
    Err(bad())
}

fn apply_header(head: &mut Head, name: &str, value: &str) -> Result<(), ProtoError> {
    let bad = |name| ProtoError::BadValue {
        name,
        value: value.to_string(),
    };
    match name {
        "content-length" => {
            head.content_length = value.parse().map_err(|_| bad("content-length"))?
        }
        "connection" => head.close = value.eq_ignore_ascii_case("close"),
        CLIENT_IP_HEADER => {
            head.client_ip = Some(value.parse().map_err(|_| bad(CLIENT_IP_HEADER))?)
        }
        BODY_FNV_HEADER => {
            head.body_fnv = Some(u64::from_str_radix(value, 16).map_err(|_| bad(BODY_FNV_HEADER))?)
        }
        _ => {}
    }
    Ok(())
}

/// The line the sink sends first: the source IP it saw.
pub fn sink_preamble(client_ip: IpAddr) -> Vec<u8> {
    format!("ZRL-SINK {client_ip}\n").into_bytes()
}

/// The line the sink sends after EOF: bytes received and the FNV of the first
/// [`SINK_SUM_PREFIX`] bytes.
pub fn sink_trailer(bytes: u64, prefix_fnv: u64) -> Vec<u8> {
    format!("{bytes} {prefix_fnv:016x}\n").into_bytes()
}

/// Splits one `\n`-terminated line off `buf`, if complete.
pub fn take_line(buf: &[u8]) -> Option<(&str, usize)> {
    let end = buf.iter().position(|b| *b == b'\n')?;
    Some((std::str::from_utf8(&buf[..end]).unwrap_or(""), end + 1))
}

/// Parses the sink preamble line.
pub fn parse_sink_preamble(line: &str) -> Result<IpAddr, ProtoError> {
    line.strip_prefix("ZRL-SINK ")
        .and_then(|ip| ip.trim().parse().ok())
        .ok_or_else(|| ProtoError::BadSinkLine(line.to_string()))
}

/// Parses the sink trailer line into (bytes, prefix FNV).
pub fn parse_sink_trailer(line: &str) -> Result<(u64, u64), ProtoError> {
    let bad = || ProtoError::BadSinkLine(line.to_string());
    let (b, f) = line.trim().split_once(' ').ok_or_else(bad)?;
    Ok((
        b.parse().map_err(|_| bad())?,
        u64::from_str_radix(f, 16).map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests;
