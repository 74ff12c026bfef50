//! Namespace and mount system calls (setns, unshare, bind mount), and the capability probe.
//!
//! Everything here goes through `nix`'s safe wrappers, so the crate stays free of `unsafe`.
//! These calls act on the *calling thread* only (network namespaces are per thread), which
//! is why `netns::run_in` always runs its closure on a dedicated thread.

use std::fs::File;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::PlumbError;

fn io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Moves the calling thread into the network namespace bound at `path`.
pub(crate) fn enter_netns(path: &Path) -> Result<(), PlumbError> {
    let f = File::open(path).map_err(|e| PlumbError::sys("open netns", path, e))?;
    match setns(&f, CloneFlags::CLONE_NEWNET) {
        Ok(()) => Ok(()),
        Err(nix::Error::EPERM) => Err(PlumbError::NotPermitted),
        Err(e) => Err(PlumbError::sys("setns", path, io(e))),
    }
}

/// Gives the calling thread a fresh network namespace and bind-mounts it at `path`
/// (what `ip netns add` does), so it outlives the thread.
pub(crate) fn new_netns_at(path: &Path) -> Result<(), PlumbError> {
    unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| PlumbError::sys("unshare(CLONE_NEWNET)", path, io(e)))?;
    let src = Path::new("/proc/thread-self/ns/net");
    mount(
        Some(src),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| PlumbError::sys("bind mount", path, io(e)))
}

/// Detaches the bind mount at `path` (the namespace dies with its last user).
pub(crate) fn unmount(path: &Path) -> Result<(), PlumbError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(PlumbError::sys("umount", path, io(e))),
    }
}

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN_BIT: u32 = 12;

/// Whether `/proc/self/status`'s `CapEff` line grants CAP_NET_ADMIN (pure; unit-tested).
pub(crate) fn status_has_net_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN_BIT) != 0)
}

/// Whether the calling thread holds CAP_NET_ADMIN (capabilities are per thread).
pub(crate) fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/thread-self/status").is_ok_and(|s| status_has_net_admin(&s))
}

#[cfg(test)]
mod tests {
    use super::status_has_net_admin;

    #[test]
    fn cap_eff_parsing() {
        assert!(status_has_net_admin(
            "Name:\tx\nCapEff:\t000001ffffffffff\n"
        ));
        assert!(status_has_net_admin("CapEff:\t0000000000001000\n"));
        assert!(!status_has_net_admin("CapEff:\t0000000000000000\n"));
        assert!(!status_has_net_admin("CapEff:\t0000000000000fff\n"));
        assert!(!status_has_net_admin("Name: no caps line\n"));
    }
}
