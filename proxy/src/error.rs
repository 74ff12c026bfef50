//! The data plane's error type: every variant says what an operator can check.

use std::io;
use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::identity::Identity;
use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr} (--{flag}): {source} (is another proxy or ztunnel already running on this port? stop it or pass a different --{flag})")]
    Listen {
        flag: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot start core {core}: {source}")]
    Runtime { core: usize, source: io::Error },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("configuration: {0}")]
    Settings(String),
    /// The xDS client: what failed, with what to check.
    #[error("xDS: {0}")]
    Xds(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("plumbing: {0}")]
    Plumb(#[from] plumbing::PlumbError),
    #[error("connect to {addr} failed: {source} (is a NetworkPolicy or firewall blocking it, or is the destination down?)")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("connect to {addr} timed out (maybe a NetworkPolicy is blocking HBONE port 15008)")]
    ConnectTimeout { addr: SocketAddr },
    #[error("TLS handshake with {addr} failed: {source} (do both sides trust the same root certificate?)")]
    Handshake { addr: SocketAddr, source: io::Error },
    #[error("HTTP/2 error on the HBONE connection to {addr}: {source}")]
    H2 { addr: SocketAddr, source: h2::Error },
    #[error("HTTP/2 error on the HBONE connection from {addr}: {source}")]
    Http2 {
        addr: SocketAddr,
        source: crate::hbone::http2::H2Error,
    },
    #[error("HBONE peer {addr} did not take the CONNECT: {what}")]
    HboneRefused { addr: SocketAddr, what: String },
    #[error("HBONE peer {addr} answered CONNECT with {status}")]
    Status {
        addr: SocketAddr,
        status: http::StatusCode,
    },
    #[error(
        "source {0} is not a known workload: add it to the workload config or use an enrolled pod"
    )]
    UnknownSource(std::net::IpAddr),
    #[error("destination {0} is one of the proxy's own ports: refusing a loop")]
    Loop(SocketAddr),
    #[error("no route to {target}: {source}")]
    Route {
        target: String,
        source: crate::config::ResolveError,
    },
    #[error("{0} is not a workload on this node (check the workload's `node` in the config and --node-name)")]
    NotLocal(std::net::IpAddr),
    #[error("CONNECT received on {local} rejected: {rejection}")]
    Rejected {
        local: SocketAddr,
        rejection: crate::hbone::proto::Rejection,
    },
    #[error("connection to {dst} denied by authorization policy {policy}")]
    Denied { dst: SocketAddr, policy: String },
    #[error("no certificate for {0}: run `zring ca issue` for it or add it to the cert dir")]
    NoCert(Identity),
    #[error("SOCKS5 handshake: {0}")]
    Socks(#[from] crate::socks5::SocksError),
    #[error("{0}")]
    Pooled(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// ztunnel's `response_flags` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFlag {
    None,
    Deny,
    Connect,
}

impl ResponseFlag {
    pub const ALL: [ResponseFlag; 3] = [
        ResponseFlag::None,
        ResponseFlag::Deny,
        ResponseFlag::Connect,
    ];

    /// The rendered label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::Deny => "DENY",
            ResponseFlag::Connect => "CONNECT",
        }
    }
}

impl ProxyError {
    /// ztunnel's `response_flags` for a connection that ended with this error: `DENY`
    /// (authorization policy), `CONNECT` (the upstream could not be reached), else `-`.
    pub fn response_flag(&self) -> ResponseFlag {
        match self {
            ProxyError::Denied { .. }
            | ProxyError::Rejected {
                rejection: crate::hbone::proto::Rejection::Denied(_),
                ..
            } => ResponseFlag::Deny,
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. } => ResponseFlag::Connect,
            _ => ResponseFlag::None,
        }
    }

    pub fn h2(addr: SocketAddr) -> impl FnOnce(h2::Error) -> ProxyError {
        move |source| ProxyError::H2 { addr, source }
    }
}
