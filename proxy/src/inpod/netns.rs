//! A pod's network namespace as received over ZDS: the descriptor, checked to be a network
//! namespace before anything uses it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::registry::Namespace;
use super::zds::ZdsError;
use super::NetnsId;
use crate::sys;

/// An open network namespace (the pod keeps it alive while we hold it).
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    id: NetnsId,
}

impl Netns {
    /// Accepts `fd` only if it is a network namespace (`NS_GET_NSTYPE`).
    pub fn from_fd(fd: OwnedFd) -> Result<Self, ZdsError> {
        match sys::namespace_type(fd.as_fd()) {
            Ok(t) if t == libc::CLONE_NEWNET => {}
            Ok(t) => return Err(ZdsError::NotNetns(format!("namespace type {t:#x}"))),
            Err(e) => return Err(ZdsError::NotNetns(e.to_string())),
        }
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| not_netns(e.into()))?;
        let id = NetnsId {
            dev: st.st_dev,
            ino: st.st_ino,
        };
        Ok(Netns { fd, id })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn not_netns(e: io::Error) -> ZdsError {
    ZdsError::NotNetns(e.to_string())
}

impl Namespace for Netns {
    fn id(&self) -> NetnsId {
        self.id
    }
}
