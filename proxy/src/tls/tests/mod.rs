//! Tests for the tls module: real certificates from the dev CA in throw-away directories,
//! real TLS handshakes over loopback TCP.

mod ca;
mod chain;
mod handshake;
mod record;
mod resume;
mod session;
mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::identity::Identity;

/// A unique directory under the system temp dir, removed on drop (also on panic).
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("zring-tls-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir must be writable");
        TempDir(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn id(s: &str) -> Identity {
    s.parse().expect("test identity must parse")
}

pub(super) const TD: &str = "cluster.local";

pub(super) fn sleep_id() -> Identity {
    id("spiffe://cluster.local/ns/default/sa/sleep")
}

pub(super) fn httpbin_id() -> Identity {
    id("spiffe://cluster.local/ns/default/sa/httpbin")
}

/// A dev CA for `cluster.local` with certificates for `ids`.
pub(super) fn ca_with(tag: &str, ids: &[Identity]) -> TempDir {
    let dir = TempDir::new(tag);
    super::init_ca(dir.path(), TD, false).unwrap();
    for id in ids {
        super::issue(dir.path(), id).unwrap();
    }
    dir
}
