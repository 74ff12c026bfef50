//! The only module with `unsafe`: socket options on file descriptors owned by monoio, the
//! thread CPU clock, and mimalloc's `mi_collect` (a core returning its emptied pages).
//!
//! Everything else builds sockets with socket2's safe API; monoio streams expose only
//! `AsRawFd`, so the few calls that need a socket option on a live monoio stream borrow
//! the descriptor here.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
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

/// A pipe for splice(2), both ends non-blocking and close-on-exec.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

/// Creates a [`Pipe`].
pub fn pipe() -> io::Result<Pipe> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid, writable array of two descriptors as pipe2 requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok(Pipe { read, write })
}

/// One non-blocking splice(2) of up to `len` bytes from `from` to `to` (one end a pipe).
/// `Ok(0)` is end of file; `WouldBlock` means wait for readiness and retry.
pub fn splice(from: &impl AsRawFd, to: &impl AsRawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    // SAFETY: both descriptors are borrowed from live owners for the duration of the call;
    // null offsets are allowed for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Puts a monoio-owned socket in non-blocking mode (splice must not block a thread).
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    with_sockref(fd, |s| s.set_nonblocking(true))
}

/// Sends FIN (`shutdown(SHUT_WR)`) on a monoio-owned socket.
pub fn shutdown_write(fd: &impl AsRawFd) -> io::Result<()> {
    with_sockref(fd, |s| s.shutdown(std::net::Shutdown::Write))
}

/// Defers the choice of the local port from bind(2) to connect(2)
/// (`IP_BIND_ADDRESS_NO_PORT`): a socket bound to a (spoofed) source IP with port 0 would
/// otherwise reserve a port for that IP alone at bind time, and under connection churn the
/// ports still held by TIME_WAIT sockets run out ("address in use"). At connect time the
/// kernel only needs the whole 4-tuple to be unique.
pub fn set_bind_address_no_port(fd: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is a live socket borrowed for the call; the option value points at a
    // c_int that outlives the call and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of a socket's descriptor (to move it to another thread).
pub fn into_owned_fd(socket: impl std::os::fd::IntoRawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let fd = socket.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up ownership of the open descriptor `fd`; nothing else
    // closes it, so the OwnedFd is its only owner.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// Receives into `buf`'s spare capacity without waiting (`MSG_DONTWAIT`); returns the
/// bytes added (0 at EOF) or `WouldBlock` when nothing is queued.
pub fn recv_dontwait(fd: &impl AsRawFd, buf: &mut bytes::BytesMut) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: `fd` is a live socket borrowed for the call; the pointer and length describe
    // `buf`'s spare capacity, which the kernel only writes to and which outlives the call.
    let n = unsafe { recv_raw(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len())? };
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// A `Write` over a socket that never blocks: `send`/`sendmsg` with `MSG_DONTWAIT`, so a
/// socket with room takes the bytes at once and a full one answers `WouldBlock`; its
/// `Read` is `recv` with `MSG_DONTWAIT` (`WouldBlock` when nothing is queued, 0 at EOF).
///
/// Under io_uring a write op costs a completion round trip (submit, reap, re-poll the
/// task) even when the socket has room; trying the syscall first completes the common
/// case inline and leaves the op for when the socket is full.
pub struct DontWait(pub RawFd);

const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
/// Linux's `UIO_MAXIOV`: iovecs one sendmsg takes.
const MAX_IOV: usize = 1024;

impl io::Read for DontWait {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `self.0` is a socket the caller keeps open for the call; the pointer and
        // length describe `buf`, which is writable and outlives the call.
        unsafe { recv_raw(self.0, buf.as_mut_ptr(), buf.len()) }
    }
}

/// `recv(2)` with `MSG_DONTWAIT` of up to `len` bytes into `ptr`: the bytes received (0 at
/// EOF) or `WouldBlock` when nothing is queued.
///
/// # Safety
/// `fd` is a socket kept open for the call, and `ptr` points to `len` bytes of writable
/// memory (initialised or not: the kernel only writes to it) that outlive the call.
unsafe fn recv_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    // SAFETY: the caller's contract above.
    let n = unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

impl io::Write for DontWait {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `self.0` is a socket the caller keeps open for the call; the pointer and
        // length describe `buf`, which outlives the call.
        let n = unsafe { libc::send(self.0, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on Unix (documented by std).
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len().min(MAX_IOV) as _;
        // SAFETY: `msg` points at `bufs`' iovecs, which outlive the call; the socket is
        // kept open by the caller.
        let n = unsafe { libc::sendmsg(self.0, &msg, SEND_FLAGS) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// CPUs online on the machine (`sysconf(_SC_NPROCESSORS_ONLN)`), whatever this process's
/// affinity mask allows.
pub fn online_cpus() -> Option<usize> {
    // SAFETY: sysconf only reads a system value; it takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`): a core thread's busy
/// time, as it sleeps in the io_uring wait when idle. Zero if the clock is unavailable.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec for the duration of the call;
    // clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One received SOCK_SEQPACKET packet (in-pod mode's ZDS socket).
pub struct Packet {
    /// Bytes written into the caller's buffer; 0 with no descriptors is end of stream.
    pub len: usize,
    /// The SCM_RIGHTS descriptors that came with it, owned (closed when dropped).
    pub fds: Vec<OwnedFd>,
    /// The kernel cut the data or the control part (MSG_TRUNC / MSG_CTRUNC).
    pub truncated: bool,
}

/// Descriptors one packet may carry before the control part counts as truncated (ZDS
/// sends one; a few more are received so they can be closed and refused by number).
const MAX_PACKET_FDS: usize = 8;

/// Receives one packet and takes ownership of every descriptor that came with it
/// (`MSG_CMSG_CLOEXEC`), so none leaks whatever the caller decides.
pub fn recv_packet(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Packet> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_PACKET_FDS]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let truncated = msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    let mut fds = Vec::new();
    // With MSG_CTRUNC nix refuses to walk the control part (it may be cut mid-header).
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: SCM_RIGHTS descriptors are new ones the kernel installed in this
                // process for this message; nothing else owns or closes them.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
    }
    Ok(Packet {
        len: msg.bytes,
        fds,
        truncated,
    })
}

/// `NS_GET_NSTYPE` (`_IO(0xb7, 0x3)`, linux/nsfs.h): the namespace type of an nsfs fd.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// The `CLONE_NEW*` type of a namespace descriptor (`NS_GET_NSTYPE`, Linux ≥ 4.11);
/// `ENOTTY`/`EINVAL` for a descriptor that is not a namespace.
pub fn namespace_type(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor, which `fd`
    // keeps open for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

// Links mimalloc (its C library) into every binary of this crate, tests included, where it
// is not the global allocator: `mi_collect` then finds a heap that holds nothing.
#[cfg(feature = "mimalloc")]
extern crate mimalloc as _;

#[cfg(feature = "mimalloc")]
extern "C" {
    /// mimalloc's `mi_collect` (linked in by the `mimalloc` crate, our global allocator):
    /// collects the calling thread's heap; `force` also frees the pages it keeps empty for
    /// reuse and purges them.
    fn mi_collect(force: bool);
}

/// Gives the calling thread's emptied allocator pages back to the OS (mimalloc keeps the
/// last empty page of each size class until that thread allocates enough again, which an
/// idle core never does). A no-op without the `mimalloc` feature.
pub fn allocator_collect() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect takes a plain bool and touches only the calling thread's heap and
    // the allocator's own bookkeeping; it frees no block that is still allocated.
    unsafe {
        mi_collect(true)
    };
}
