//! The client side of SOCKS5 (RFC 1928, no-auth CONNECT) as pure functions over bytes:
//! the greeting, the CONNECT request and the parsing of the proxy's two replies. The
//! peer comparison drives both proxies through their SOCKS5 port with this.

use std::net::SocketAddr;
use thiserror::Error;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const CMD_CONNECT: u8 = 1;

/// The method-selection greeting: version 5, one method, no authentication.
pub const GREETING: [u8; 3] = [VERSION, 1, NO_AUTH];
/// Length of the method-selection reply.
pub const METHOD_REPLY_LEN: usize = 2;

/// A SOCKS5 reply that is not "succeeded", or bytes that are not SOCKS5.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SocksError {
    #[error("not a SOCKS5 reply (version byte {0}): is the proxy's SOCKS5 port enabled?")]
    Version(u8),
    #[error("the proxy refused no-auth SOCKS5 (method {0:#x})")]
    Method(u8),
    #[error("SOCKS5 CONNECT refused: {text} (code {0})", text = reply_text(*.0))]
    Refused(u8),
    #[error("SOCKS5 reply has unknown address type {0}")]
    AddressType(u8),
}

/// RFC 1928 §6 meaning of a reply code.
pub fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned code",
    }
}

/// The CONNECT request for `target`.
pub fn connect_request(target: SocketAddr) -> Vec<u8> {
    let mut out = vec![VERSION, CMD_CONNECT, 0];
    match target {
        SocketAddr::V4(a) => {
            out.push(1);
            out.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
        }
    }
    out.extend_from_slice(&target.port().to_be_bytes());
    out
}

/// Checks the method-selection reply (2 bytes).
pub fn check_method(reply: &[u8; METHOD_REPLY_LEN]) -> Result<(), SocksError> {
    match *reply {
        [VERSION, NO_AUTH] => Ok(()),
        [VERSION, m] => Err(SocksError::Method(m)),
        [v, _] => Err(SocksError::Version(v)),
    }
}

/// Given the first bytes of a CONNECT reply, its full length (`Ok(None)`: need more
/// bytes), or the refusal it carries.
pub fn connect_reply_len(buf: &[u8]) -> Result<Option<usize>, SocksError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(SocksError::Version(buf[0]));
    }
    if buf[1] != 0 {
        return Err(SocksError::Refused(buf[1]));
    }
    let len = match buf[3] {
        1 => 10,
        4 => 22,
        3 => 7 + buf[4] as usize,
        t => return Err(SocksError::AddressType(t)),
    };
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_request_encodes_v4_and_port() {
        let r = connect_request("10.1.2.3:8080".parse().unwrap());
        assert_eq!(r, vec![5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90]);
        assert_eq!(connect_request("[::1]:1".parse().unwrap()).len(), 22);
    }

    #[test]
    fn method_reply_must_pick_no_auth() {
        assert_eq!(check_method(&[5, 0]), Ok(()));
        assert_eq!(check_method(&[5, 0xff]), Err(SocksError::Method(0xff)));
        assert_eq!(check_method(&[4, 0]), Err(SocksError::Version(4)));
    }

    #[test]
    fn connect_reply_length_and_refusals() {
        assert_eq!(connect_reply_len(&[5, 0, 0]), Ok(None));
        assert_eq!(connect_reply_len(&[5, 0, 0, 1, 0]), Ok(Some(10)));
        assert_eq!(connect_reply_len(&[5, 0, 0, 4, 0]), Ok(Some(22)));
        assert_eq!(connect_reply_len(&[5, 0, 0, 3, 9]), Ok(Some(16)));
        assert_eq!(
            connect_reply_len(&[5, 5, 0, 1, 0]),
            Err(SocksError::Refused(5))
        );
        assert!(SocksError::Refused(5)
            .to_string()
            .contains("connection refused"));
        assert_eq!(
            connect_reply_len(&[5, 0, 0, 9, 0]),
            Err(SocksError::AddressType(9))
        );
    }
}
