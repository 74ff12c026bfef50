//! The error type of zring-loadgen: what failed and what to check.

use crate::proto::ProtoError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use thiserror::Error;

/// Everything zring-loadgen can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// A fixture (control plane, CA, topology) could not be set up; the message says what.
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("protocol error from {peer}: {source}")]
    Proto {
        peer: SocketAddr,
        #[source]
        source: ProtoError,
    },
    #[error(
        "server {server} saw the connection come from {seen}, expected the client pod IP \
         {expected}: the proxy did not preserve the source address (check IP_TRANSPARENT \
         on the proxy's upstream sockets and the 0x210/0x40 return-path rules)"
    )]
    WrongSourceIp {
        server: SocketAddr,
        seen: IpAddr,
        expected: IpAddr,
    },
    #[error(
        "payload checksum mismatch with {server}: sent {sent:016x}, got {got:016x}: bytes were \
         corrupted or reordered on the path"
    )]
    Checksum {
        server: SocketAddr,
        sent: u64,
        got: u64,
    },
    #[error("{server} closed the connection in the middle of a response")]
    ClosedEarly { server: SocketAddr },
    #[error("sink {server} counted {got} bytes, the client sent {sent}: bytes were lost")]
    ByteCount {
        server: SocketAddr,
        sent: u64,
        got: u64,
    },
    #[error("SOCKS5 proxy {proxy} for {target}: {detail}")]
    Socks {
        proxy: SocketAddr,
        target: SocketAddr,
        detail: String,
    },
    #[error("peer comparison: {0}")]
    Peer(String),
    #[error("state file {path}: {detail}; run `zring-loadgen topology down` to reset")]
    State { path: PathBuf, detail: String },
    #[error("topology: {0}")]
    Topology(String),
    #[error("{what} exited with {status}; its log is {log}")]
    Child {
        what: String,
        status: String,
        log: PathBuf,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// True when the connection was cut under a request: reset (ECONNRESET), or closed by
    /// the other end in the middle of a response. Which of the two a client sees when its
    /// connection's packets change path (a pod enrolled or withdrawn under it) depends on
    /// which end notices first.
    pub fn is_cut(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == io::ErrorKind::ConnectionReset,
            Error::ClosedEarly { .. } => true,
            _ => false,
        }
    }

    /// True for errors that mean the path is *wrong* (not merely overloaded): a run
    /// fails on these.
    pub fn is_correctness(&self) -> bool {
        matches!(
            self,
            Error::WrongSourceIp { .. } | Error::Checksum { .. } | Error::ByteCount { .. }
        )
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_is_a_reset_or_an_early_close_and_nothing_else() {
        let server: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let io = |kind| Error::Io {
            what: "reading a response".into(),
            source: io::Error::from(kind),
        };
        assert!(io(io::ErrorKind::ConnectionReset).is_cut());
        assert!(Error::ClosedEarly { server }.is_cut());
        assert!(!io(io::ErrorKind::TimedOut).is_cut());
        let checksum = Error::Checksum {
            server,
            sent: 1,
            got: 2,
        };
        assert!(!checksum.is_cut() && checksum.is_correctness());
    }
}
