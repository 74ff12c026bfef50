//! The only unsafe code of zring-loadgen: entering a network namespace (`setns`),
//! spawning a child inside one, signalling a process and reading the clock tick rate.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

/// Where `ip netns add` (and plumbing) bind-mount named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The bind-mount path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_RUN_DIR).join(name)
}

/// Opens a named network namespace.
pub fn open_netns(name: &str) -> io::Result<OwnedFd> {
    Ok(File::open(netns_path(name))?.into())
}

/// Moves the *calling thread* into the named network namespace. Sockets it creates
/// afterwards belong to that namespace.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let fd = open_netns(name)?;
    // SAFETY: `fd` is an open namespace file descriptor owned for the whole call;
    // setns only affects the calling thread's namespace membership.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd` start inside network namespace `ns` in a new session (so it outlives
/// the parent's terminal and can be signalled as a group).
pub fn in_netns_detached(cmd: &mut Command, ns: OwnedFd) -> &mut Command {
    let raw = ns.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe syscalls setns(2) and setsid(2) on a descriptor that the child
    // inherited (`ns` is moved into the closure, so it stays open until exec).
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &ns;
            if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        })
    }
}

/// Sends `signal` to process `pid`. `Ok(false)` when the process no longer exists.
pub fn signal(pid: i32, signal: i32) -> io::Result<bool> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(err),
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` CPU times.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf(3) has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Raises the soft open-files limit to `want` (bounded by the hard limit, which root may
/// raise too): held-connection runs keep thousands of sockets open, and the proxies
/// started afterwards inherit the limit.
pub fn raise_nofile(want: u64) -> io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes into the rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(());
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: setrlimit(2) only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(());
    }
    let capped = libc::rlimit {
        rlim_cur: lim.rlim_max.min(want),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The soft open-files limit.
pub fn nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes into the rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}
