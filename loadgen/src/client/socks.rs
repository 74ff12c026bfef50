//! Connecting through a SOCKS5 proxy: TCP connect to the proxy (optionally from a given
//! local address, so the proxy can tell which workload is asking), then the handshake.

use crate::error::{Error, Result};
use crate::socks;
use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::net::{IpAddr, SocketAddr};

/// How a client reaches its target: through this SOCKS5 proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via {
    /// The proxy's SOCKS5 listener.
    pub socks: SocketAddr,
    /// The local address the client connects from (the workload the proxy serves).
    pub bind: Option<IpAddr>,
}

fn socks_err(via: &Via, target: SocketAddr, e: socks::SocksError) -> Error {
    Error::Socks {
        proxy: via.socks,
        target,
        detail: e.to_string(),
    }
}

/// Connects to the proxy and asks it for `target`; returns the tunnelled stream.
pub async fn connect_via(via: &Via, target: SocketAddr) -> Result<TcpStream> {
    let what = || format!("connecting to the SOCKS5 proxy {}", via.socks);
    let s = monoio::time::timeout(
        super::CONNECT_TIMEOUT,
        zring::sockets::connect(via.socks, via.bind),
    )
    .await
    .map_err(|_| Error::Io {
        what: what(),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
    })?
    .map_err(Error::io(what()))?;
    handshake(s, via, target).await
}

async fn handshake(mut s: TcpStream, via: &Via, target: SocketAddr) -> Result<TcpStream> {
    let io = |w: &str| Error::io(format!("SOCKS5 {w} with {} for {target}", via.socks));
    let (res, _) = s.write_all(socks::GREETING.to_vec()).await;
    res.map_err(io("greeting"))?;
    let (res, method) = s.read_exact(vec![0u8; socks::METHOD_REPLY_LEN]).await;
    res.map_err(io("method reply"))?;
    let method = [method[0], method[1]];
    socks::check_method(&method).map_err(|e| socks_err(via, target, e))?;
    let (res, _) = s.write_all(socks::connect_request(target)).await;
    res.map_err(io("CONNECT"))?;
    // Exactly the reply, never beyond it: a server that speaks first (the sink) may
    // already have bytes behind it.
    let (res, head) = s.read_exact(vec![0u8; 5]).await;
    res.map_err(io("CONNECT reply"))?;
    let len = socks::connect_reply_len(&head)
        .map_err(|e| socks_err(via, target, e))?
        .unwrap_or(5);
    let (res, _) = s.read_exact(vec![0u8; len - 5]).await;
    res.map_err(io("CONNECT reply"))?;
    Ok(s)
}
