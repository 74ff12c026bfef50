//! glibc tunables the `zring run` process re-executes itself with.
//!
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
}
