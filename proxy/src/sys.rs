//! The only module with `unsafe`: socket options on file descriptors owned by monoio.
//!
//! Everything else builds sockets with socket2's safe API; monoio streams expose only
//! `AsRawFd`, so the few calls that need a socket option on a live monoio stream borrow
//! the descriptor here.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use socket2::SockRef;

/// Runs `f` with a socket2 view of a descriptor the caller keeps alive.
fn with_sockref<T>(fd: &impl AsRawFd, f: impl FnOnce(SockRef<'_>) -> T) -> T {
    // SAFETY: `fd` is borrowed from a live socket owned by the caller for the whole call;
    // the BorrowedFd and SockRef do not outlive this function and never close the fd.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) };
    f(SockRef::from(&borrowed))
}

/// The destination the kernel recorded before a REDIRECT/DNAT (`SO_ORIGINAL_DST`).
pub fn original_dst(fd: &impl AsRawFd, v6: bool) -> io::Result<SocketAddr> {
    with_sockref(fd, |s| {
        let addr = if v6 {
            s.original_dst_v6()?
        } else {
            s.original_dst_v4()?
        };
        addr.as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an inet address"))
    })
}

/// Makes the next close send RST instead of FIN (used to propagate a reset).
pub fn set_linger_zero(fd: &impl AsRawFd) -> io::Result<()> {
    with_sockref(fd, |s| s.set_linger(Some(Duration::ZERO)))
}

/// Reads and clears the pending socket error (completion of a non-blocking connect).
pub fn take_error(fd: &impl AsRawFd) -> io::Result<Option<io::Error>> {
    with_sockref(fd, |s| s.take_error())
}
