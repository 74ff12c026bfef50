//! Capability checks. A test that needs root or a peer binary returns early when it
//! cannot run on a developer's machine, and panics when `CI=true`: in CI a test that did
//! not run must never look like one that passed.

use std::path::Path;
use std::process::{Command, Stdio};

/// The environment variable CI sets; `true` turns every skip into a failure.
pub const CI_ENV: &str = "CI";

/// True when running under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var(CI_ENV).as_deref() == Ok("true")
}

/// Whether the process runs as uid 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether `tool -V` runs (it is installed and on PATH).
pub fn has_tool(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Every unmet need, as "what is missing" lines; empty when the test can run.
pub fn missing(tools: &[&str], files: &[&Path]) -> Vec<String> {
    let mut out = Vec::new();
    if !is_root() {
        out.push("not root (network namespaces need CAP_SYS_ADMIN)".to_string());
    }
    for t in tools.iter().filter(|t| !has_tool(t)) {
        out.push(format!("`{t}` is not installed or not on PATH"));
    }
    for f in files.iter().filter(|f| !f.exists()) {
        out.push(format!("{} does not exist", f.display()));
    }
    out
}

/// True when nothing is missing. Otherwise panics under CI, or says why and returns false.
pub fn can_run(test: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    if in_ci() {
        panic!("{CI_ENV}=true but {test} cannot run: {why}");
    }
    eprintln!("skipping {test}: {why} (with {CI_ENV}=true this is a failure)");
    false
}
