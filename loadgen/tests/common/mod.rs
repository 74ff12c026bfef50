//! Shared by the root tests: the root/tool gate (fail under CI, skip otherwise) and a
//! guard that tears the topology down even when the test panics.

#![allow(dead_code)]

use std::path::PathBuf;

pub mod xds;

/// True when the test can run (root and `tools`); panics under `CI=true` when it cannot
/// (testsupport's gate).
pub fn can_run(what: &str, tools: &[&str]) -> bool {
    use testsupport::require;
    require::can_run(what, &require::missing(tools, &[]))
}

/// A unique topology prefix for this test process.
pub fn prefix(tag: &str) -> String {
    format!("zrlt{}{tag}-", std::process::id())
}

/// Runs `topology down` for `prefix` when dropped (also on panic).
pub struct Teardown(pub String);

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Err(e) = zring_loadgen::topo::down(&self.0) {
            eprintln!("teardown of {} failed: {e}", self.0);
        }
    }
}

/// The zring-loadgen binary under test.
pub fn loadgen_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zring-loadgen"))
}

/// The zring binary: built by `cargo build --workspace` into the same directory.
pub fn zring_bin() -> PathBuf {
    loadgen_bin().with_file_name("zring")
}
