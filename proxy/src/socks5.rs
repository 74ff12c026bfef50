//! SOCKS5 (RFC 1928) no-auth CONNECT: the outbound entry for tests and benchmarks that run
//! without root. The parsers are pure and incremental (`Ok(None)` = need more bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_V6: u8 = 4;
/// Greeting and request never exceed 2 + 255 and 4 + 1 + 255 + 2 bytes.
const MAX_HANDSHAKE: usize = 512;

/// Where the client asked to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    Domain(String, u16),
}

/// Reply codes we send (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0,
    GeneralFailure = 1,
    NotAllowed = 2,
    HostUnreachable = 4,
    ConnectionRefused = 5,
    CommandNotSupported = 7,
    AddressNotSupported = 8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocksError {
    #[error("client speaks SOCKS version {0}, only 5 is supported")]
    Version(u8),
    #[error(
        "client offers no 'no authentication' method; zring's SOCKS5 port takes no credentials"
    )]
    NoAcceptableAuth,
    #[error("command {0} is not supported: only CONNECT (1)")]
    Command(u8),
    #[error("address type {0} is not supported")]
    AddressType(u8),
    #[error("domain name is not UTF-8")]
    Domain,
    #[error("client closed the connection during the handshake")]
    Closed,
    #[error("handshake longer than {MAX_HANDSHAKE} bytes")]
    TooLong,
}

impl SocksError {
    fn reply(&self) -> Option<Reply> {
        match self {
            SocksError::Command(_) => Some(Reply::CommandNotSupported),
            SocksError::AddressType(_) | SocksError::Domain => Some(Reply::AddressNotSupported),
            _ => None,
        }
    }
}

/// Parses the method-selection greeting; returns bytes consumed.
pub fn parse_greeting(buf: &[u8]) -> Result<Option<usize>, SocksError> {
    let [ver, n, ..] = *buf else { return Ok(None) };
    if ver != VERSION {
        return Err(SocksError::Version(ver));
    }
    let len = 2 + n as usize;
    let Some(methods) = buf.get(2..len) else {
        return Ok(None);
    };
    if !methods.contains(&NO_AUTH) {
        return Err(SocksError::NoAcceptableAuth);
    }
    Ok(Some(len))
}

/// Parses a CONNECT request; returns bytes consumed and the target.
pub fn parse_request(buf: &[u8]) -> Result<Option<(usize, Target)>, SocksError> {
    let [ver, cmd, _rsv, atyp, ..] = *buf else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(SocksError::Version(ver));
    }
    if cmd != CMD_CONNECT {
        return Err(SocksError::Command(cmd));
    }
    let rest = &buf[4..];
    let (addr_len, host): (usize, Option<Result<Target, SocksError>>) = match atyp {
        ATYP_V4 => (4, rest.get(..4).map(|b| Ok(v4(b)))),
        ATYP_V6 => (16, rest.get(..16).map(|b| Ok(v6(b)))),
        ATYP_DOMAIN => match rest.first() {
            None => return Ok(None),
            Some(&n) => (1 + n as usize, rest.get(1..1 + n as usize).map(domain)),
        },
        other => return Err(SocksError::AddressType(other)),
    };
    let (Some(host), Some(port)) = (host, rest.get(addr_len..addr_len + 2)) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    let target = match host? {
        Target::Addr(a) => Target::Addr(SocketAddr::new(a.ip(), port)),
        Target::Domain(d, _) => Target::Domain(d, port),
    };
    Ok(Some((4 + addr_len + 2, target)))
}

fn v4(b: &[u8]) -> Target {
    let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    Target::Addr(SocketAddr::new(IpAddr::V4(ip), 0))
}

fn v6(b: &[u8]) -> Target {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(b);
    Target::Addr(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), 0))
}

fn domain(b: &[u8]) -> Result<Target, SocksError> {
    let name = std::str::from_utf8(b).map_err(|_| SocksError::Domain)?;
    Ok(Target::Domain(name.to_string(), 0))
}

/// The 10-byte reply with an unspecified bound address.
pub fn reply_bytes(reply: Reply) -> [u8; 10] {
    [VERSION, reply as u8, 0, ATYP_V4, 0, 0, 0, 0, 0, 0]
}

/// Runs the server side of the handshake up to (not including) the reply to CONNECT.
pub async fn accept(stream: &mut TcpStream) -> Result<Target, crate::error::ProxyError> {
    let mut buf = Vec::with_capacity(64);
    let used = match read_until(stream, &mut buf, parse_greeting).await {
        Ok(used) => used,
        Err(e) => {
            if matches!(
                e,
                crate::error::ProxyError::Socks(SocksError::NoAcceptableAuth)
            ) {
                let _ = send(stream, &[VERSION, NO_ACCEPTABLE]).await;
            }
            return Err(e);
        }
    };
    buf.drain(..used);
    send(stream, &[VERSION, NO_AUTH]).await?;
    match read_until(stream, &mut buf, parse_request).await {
        Ok((_, target)) => Ok(target),
        Err(crate::error::ProxyError::Socks(e)) => {
            if let Some(reply) = e.reply() {
                send_reply(stream, reply).await;
            }
            Err(e.into())
        }
        Err(e) => Err(e),
    }
}

/// Sends a reply, ignoring a client that already went away.
pub async fn send_reply(stream: &mut TcpStream, reply: Reply) {
    let _ = send(stream, &reply_bytes(reply)).await;
}

async fn send(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    crate::relay::write_ready(stream, bytes).await
}

async fn read_until<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<Option<T>, SocksError>,
) -> Result<T, crate::error::ProxyError> {
    loop {
        if let Some(v) = parse(buf)? {
            return Ok(v);
        }
        if buf.len() >= MAX_HANDSHAKE {
            return Err(SocksError::TooLong.into());
        }
        let (res, chunk) = stream.read(Vec::with_capacity(MAX_HANDSHAKE)).await;
        if res? == 0 {
            return Err(SocksError::Closed.into());
        }
        buf.extend_from_slice(&chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_needs_all_methods() {
        assert_eq!(parse_greeting(&[5]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 2, 0]), Ok(Some(4)));
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(SocksError::Version(4)));
        assert_eq!(
            parse_greeting(&[5, 1, 2]),
            Err(SocksError::NoAcceptableAuth)
        );
    }

    #[test]
    fn parses_ipv4_connect() {
        let req = [5, 1, 0, 1, 10, 96, 0, 105, 0x1f, 0x40];
        for cut in 0..req.len() {
            assert_eq!(parse_request(&req[..cut]), Ok(None), "cut at {cut}");
        }
        let (used, t) = parse_request(&req).unwrap().unwrap();
        assert_eq!(used, 10);
        assert_eq!(t, Target::Addr("10.96.0.105:8000".parse().unwrap()));
    }

    #[test]
    fn parses_domain_and_ipv6() {
        let mut req = vec![5, 1, 0, 3, 7];
        req.extend_from_slice(b"httpbin");
        req.extend_from_slice(&[0x1f, 0x40]);
        let (used, t) = parse_request(&req).unwrap().unwrap();
        assert_eq!(used, req.len());
        assert_eq!(t, Target::Domain("httpbin".into(), 8000));

        let mut req = vec![5, 1, 0, 4];
        req.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        req.extend_from_slice(&[0, 80]);
        let (_, t) = parse_request(&req).unwrap().unwrap();
        assert_eq!(t, Target::Addr("[::1]:80".parse().unwrap()));
    }

    #[test]
    fn rejects_bind_and_unknown_atyp() {
        assert_eq!(
            parse_request(&[5, 2, 0, 1, 1, 2, 3, 4, 0, 80]),
            Err(SocksError::Command(2))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 9, 1]),
            Err(SocksError::AddressType(9))
        );
        assert_eq!(
            SocksError::Command(2).reply(),
            Some(Reply::CommandNotSupported)
        );
    }

    #[test]
    fn reply_layout() {
        assert_eq!(
            reply_bytes(Reply::ConnectionRefused),
            [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }
}
