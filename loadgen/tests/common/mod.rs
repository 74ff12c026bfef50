//! Shared by the root tests: the root/tool gate (fail under CI, skip otherwise) and a
//! guard that tears the topology down even when the test panics.

#![allow(dead_code)]

use std::path::PathBuf;

/// True when the test can run; panics under `CI=true` when it cannot.
pub fn can_run(what: &str, tools: &[&str]) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut missing = Vec::new();
    // Effective UID from /proc/self/status (no libc call needed).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        missing.push("root".to_string());
    }
    for t in tools {
        if which(t).is_none() {
            missing.push(format!("`{t}` on PATH"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{what} needs {} (scripts/install-deps installs the tools)",
        missing.join(", ")
    );
    assert!(!ci, "{msg}");
    eprintln!("SKIPPED: {msg}");
    false
}

/// Finds `tool` on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
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
