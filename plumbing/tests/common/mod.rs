//! Shared helpers for the root-only namespace tests: privilege gate and unique names.
#![allow(dead_code)]

/// Test binaries free only what they allocated (issue 24): see `testsupport::Checked`.
#[global_allocator]
static CHECKED: testsupport::Checked = testsupport::Checked;

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique netns name: `zrp-<tag>-<pid>-<n>`.
pub fn unique(tag: &str) -> String {
    format!(
        "zrp-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the namespace tests can run here (root and the tools): fails under CI=true,
/// else skips (testsupport's gate).
pub fn can_run(test: &str) -> bool {
    use testsupport::require;
    let tools = ["iptables", "iptables-save", "iptables-restore", "ip"];
    require::can_run(test, &require::missing(&tools, &[]))
}

/// Runs a command in `netns` via `ip netns exec` and returns stdout (panics on failure).
pub fn sh(netns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .output()
        .expect("spawn ip netns exec");
    assert!(
        out.status.success(),
        "{args:?} in {netns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The state an operator would compare: `iptables-save`, `ip rule`, `ip route show table all`,
/// `ipset list` (comments, ipset's memory-size line, IPv6 link-local routes and routes'
/// `linkdown` flag dropped).
pub fn snapshot(netns: &str) -> String {
    let mut s = String::new();
    for args in [
        &["iptables-save"][..],
        &["ip", "rule"],
        &["ip", "route", "show", "table", "all"],
        &["ipset", "list"],
    ] {
        s.push_str(&format!("## {}\n", args.join(" ")));
        for l in sh(netns, args).lines() {
            // IPv6 link-local addresses appear when a link's DAD ends, not when we act.
            if !l.starts_with('#') && !l.starts_with("Size in memory") && !l.contains("fe80::") {
                // Carrier state settles asynchronously (linkwatch) and is not ours.
                s.push_str(&l.replace(" linkdown", ""));
                s.push('\n');
            }
        }
    }
    s
}

/// Lines of `b` not in `a` and lines of `a` not in `b`.
pub fn line_diff(a: &str, b: &str) -> (Vec<String>, Vec<String>) {
    let (al, bl): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let added = bl
        .iter()
        .filter(|l| !al.contains(l))
        .map(|l| l.to_string())
        .collect();
    let removed = al
        .iter()
        .filter(|l| !bl.contains(l))
        .map(|l| l.to_string())
        .collect();
    (added, removed)
}
