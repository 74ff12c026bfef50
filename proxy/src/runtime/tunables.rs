//! Allocator and libc settings the `zring run` process re-executes itself with (both are
//! read from the environment at process start only, so they cannot be set later).
//!
//! mimalloc: `MIMALLOC_ARENA_EAGER_COMMIT=0` and `MIMALLOC_PURGE_DELAY=0`. With eager
//! commit the arenas are backed by transparent huge pages and a burst of buffers stays
//! resident: two zring processes went from 40 MB at start to 61 MB after four bulk
//! streams, and a peer run's held-connection phase found zring at 167 MB against
//! ztunnel's 26 MB. With both settings: 21 MB → 27 MB, and bulk CPU per GB, echo and
//! churn CPU were unchanged or lower in an alternating A/B. Operator values are kept.
//!
//! glibc:
//! rustls copies every plaintext record (up to 16 KiB) into a fresh buffer before
//! sealing it, and glibc's memcpy/memmove switch to `rep movsb` above a threshold of a
//! few KiB. On this project's machines (AMD EPYC under KVM) `rep movsb` made that copy
//! about a fifth of the proxy's cycles on a bulk stream; the vector loop glibc uses below
//! the threshold is much faster there. Raising the threshold cut proxy CPU per GB by
//! 14–24% and raised 1-stream throughput by 15–25% in an alternating A/B
//! (ARCHITECTURE.md). A `GLIBC_TUNABLES` that already sets the threshold is left alone.

/// The environment variable glibc reads its tunables from (at process start only).
pub const GLIBC_TUNABLES: &str = "GLIBC_TUNABLES";
/// Our setting: `rep movsb` never (the vector loop for every size).
pub const REP_MOVSB_THRESHOLD: &str = "glibc.cpu.x86_rep_movsb_threshold=4294967295";

/// mimalloc options and our values, each set only when the environment has none.
pub const MIMALLOC: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "0"),
];

/// Every variable to re-execute with (empty: nothing to change, no re-exec); `get` reads
/// the current environment.
pub fn reexec_env(get: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(tuned) = with_memcpy_tuning(get(GLIBC_TUNABLES).as_deref()) {
        env.push((GLIBC_TUNABLES, tuned));
    }
    for (name, value) in MIMALLOC {
        if get(name).is_none() {
            env.push((name, value.to_string()));
        }
    }
    env
}

/// The `GLIBC_TUNABLES` value to re-execute with, or `None` when `current` already
/// decides the threshold (ours, or the operator's own choice).
pub fn with_memcpy_tuning(current: Option<&str>) -> Option<String> {
    match current.filter(|c| !c.is_empty()) {
        Some(c) if c.contains("x86_rep_movsb_threshold") => None,
        Some(c) => Some(format!("{c}:{REP_MOVSB_THRESHOLD}")),
        None => Some(REP_MOVSB_THRESHOLD.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_threshold_once_and_keeps_other_tunables() {
        assert_eq!(
            with_memcpy_tuning(None).as_deref(),
            Some(REP_MOVSB_THRESHOLD)
        );
        assert_eq!(
            with_memcpy_tuning(Some("")).as_deref(),
            Some(REP_MOVSB_THRESHOLD)
        );
        let other = "glibc.malloc.arena_max=2";
        assert_eq!(
            with_memcpy_tuning(Some(other)),
            Some(format!("{other}:{REP_MOVSB_THRESHOLD}"))
        );
        assert_eq!(with_memcpy_tuning(Some(REP_MOVSB_THRESHOLD)), None);
        let operator = "glibc.cpu.x86_rep_movsb_threshold=8192";
        assert_eq!(with_memcpy_tuning(Some(operator)), None);
    }

    #[test]
    fn reexec_env_keeps_operator_values_and_ends_the_loop() {
        let fresh = reexec_env(|_| None);
        assert_eq!(fresh.len(), 3);
        let set: std::collections::HashMap<_, _> = fresh.into_iter().collect();
        // After the re-exec everything is set: no second exec.
        assert!(reexec_env(|k| set.get(k).cloned()).is_empty());
        let operator = reexec_env(|k| (k == "MIMALLOC_PURGE_DELAY").then(|| "50".into()));
        assert!(operator.iter().all(|(k, _)| *k != "MIMALLOC_PURGE_DELAY"));
        assert_eq!(operator.len(), 2);
    }
}
