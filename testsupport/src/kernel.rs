//! Reading kernel state the way an operator would, with the system's own tools inside a
//! network namespace (so a test checks zring against `ip`/`ipset`, not against itself).

use std::process::Command;

/// `ip netns exec ns args…`'s stdout; panics (naming the command) when it fails.
pub fn ns_output(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawning ip netns exec {ns} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The members of ipset `set` in `ns` as `ipset list` prints them, sorted.
pub fn ipset_members(ns: &str, set: &str) -> Vec<String> {
    let list = ns_output(ns, &["ipset", "list", set]);
    let mut m: Vec<String> = list
        .split("Members:")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    m.sort();
    m
}
