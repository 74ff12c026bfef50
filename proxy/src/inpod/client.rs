//! The connection to the CNI's ZDS socket, on its own blocking thread (a few packets per
//! pod event; nothing here touches a data core). Per connection: `ZdsHello` V1, then one
//! `Ack` per request in order. A refused request (malformed, no descriptor, not a network
//! namespace, a protocol error, a failed start) gets an Ack with the reason and a log line,
//! and the connection goes on. The connection ending (CNI restart) keeps every pod; the
//! next connection's snapshot reconciles them.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use tracing::{debug, info, warn};

use super::netns::Netns;
use super::registry::{PodSink, Registry};
use super::zds::{self, Request, ZdsError};
use crate::sys;

/// How often a blocked receive looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// A send to the CNI that does not complete in this long drops the connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Connect retry delays: ztunnel's (10 ms doubling to 15 s, `src/inpod/workloadmanager.rs`).
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(15);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The delay before the next attempt after a failure.
    pub fn failed(&mut self) -> Duration {
        self.next = (self.next * 2).min(Self::MAX);
        self.next
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// What the connection tells its owner and asks it.
pub struct Hooks<'a> {
    /// True when the client should end.
    pub stop: &'a dyn Fn() -> bool,
    /// Whether the current connection's snapshot is reconciled (readiness, as ztunnel:
    /// false until SnapshotSent and while disconnected).
    pub synced: &'a dyn Fn(bool),
}

/// Connects to `uds` until `hooks.stop()` says so, serving each connection in turn.
pub fn run<S: PodSink<Netns = Netns>>(
    uds: &Path,
    registry: &mut Registry<S>,
    sink: &mut S,
    hooks: &Hooks<'_>,
) {
    let stop = hooks.stop;
    let mut backoff = Backoff::new();
    while !stop() {
        let sock = match connect(uds) {
            Ok(s) => s,
            Err(e) => {
                let wait = backoff.failed();
                warn!(uds = %uds.display(), error = %e, ?wait,
                    "cannot connect to the Istio CNI node agent's ZDS socket (is istio-cni running with ambient enabled, and is INPOD_UDS its socket?); retrying");
                sleep_unless(stop, wait);
                continue;
            }
        };
        backoff.reset();
        registry.connected();
        info!(uds = %uds.display(), pods = registry.len(), "connected to the CNI (ZDS)");
        let served = serve(&sock, registry, sink, hooks);
        (hooks.synced)(false);
        match served {
            Ok(()) => info!("the CNI closed the ZDS connection; pods kept"),
            Err(e) => warn!(error = %e, "ZDS connection failed; pods kept, reconnecting"),
        }
    }
}

fn connect(uds: &Path) -> io::Result<Socket> {
    let sock = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
    sock.set_read_timeout(Some(POLL))?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    sock.connect(&SockAddr::unix(uds)?)?;
    Ok(sock)
}

fn serve<S: PodSink<Netns = Netns>>(
    sock: &Socket,
    registry: &mut Registry<S>,
    sink: &mut S,
    hooks: &Hooks<'_>,
) -> io::Result<()> {
    let stop = hooks.stop;
    send(sock, &zds::hello())?;
    let mut buf = vec![0u8; zds::MAX_PACKET];
    while !stop() {
        let p = match sys::recv_packet(sock.as_fd(), &mut buf) {
            Ok(p) => p,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        if p.len == 0 && p.fds.is_empty() && !p.truncated {
            return Ok(());
        }
        let result = zds::decode(&buf[..p.len], p.fds, p.truncated)
            .and_then(with_netns)
            .and_then(|req| {
                debug!(?req, "ZDS request");
                registry.handle(req, sink)
            });
        if let Err(e) = &result {
            warn!(error = %e, "ZDS request refused; nothing changed");
        }
        (hooks.synced)(registry.synced());
        send(sock, &zds::ack(&result))?;
    }
    Ok(())
}

/// Checks an AddWorkload's descriptor; other requests pass as they are.
fn with_netns(req: Request<std::os::fd::OwnedFd>) -> Result<Request<Netns>, ZdsError> {
    Ok(match req {
        Request::Add { uid, info, netns } => Request::Add {
            uid,
            info,
            netns: Netns::from_fd(netns)?,
        },
        Request::Keep { uid } => Request::Keep { uid },
        Request::Del { uid } => Request::Del { uid },
        Request::SnapshotSent => Request::SnapshotSent,
    })
}

fn send(sock: &Socket, packet: &[u8]) -> io::Result<()> {
    let flags = nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
    nix::sys::socket::send(sock.as_raw_fd(), packet, flags)?;
    Ok(())
}

fn sleep_unless(stop: &dyn Fn() -> bool, total: Duration) {
    let mut left = total;
    while !left.is_zero() && !stop() {
        let step = left.min(POLL);
        std::thread::sleep(step);
        left -= step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_fifteen_seconds_and_resets() {
        let mut b = Backoff::new();
        assert_eq!(b.failed(), Duration::from_millis(20));
        assert_eq!(b.failed(), Duration::from_millis(40));
        for _ in 0..20 {
            b.failed();
        }
        assert_eq!(b.failed(), Duration::from_secs(15));
        b.reset();
        assert_eq!(b.failed(), Duration::from_millis(20));
    }
}
