//! Where the inbound end of a same-node tunnel runs: on the client end's own core, or on
//! the next one (pure; the cores share one [`Learner`] through `runtime::handoff`).
//!
//! A quiet tunnel costs least with both ends on one core: a message then crosses no
//! thread, where two cores pay a sleep and a wake-up per message on each (a closed-loop
//! echo slept 4.4 times per request through zring against 2.2 through ztunnel, whose
//! scheduler runs an idle chain on one worker). A bulk stream is the opposite: one core
//! then encrypts and decrypts every byte while the other idles. A stream cannot move once
//! open, so the choice is made at open time from what earlier streams to the same
//! destination did: a destination whose streams moved bulk (at least [`HEAVY_BYTES`] at
//! [`HEAVY_RATE`] or more) gets its next streams spread for [`REMEMBER`]; any other
//! destination is kept on one core.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where a same-node pooled connection's inbound end is served, relative to the core of
/// its client end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// The client end's own core: every message stays on one thread.
    Near,
    /// The next core: each end has a core of its own.
    Far,
}

/// A stream is bulk when it moves at least this many bytes (both directions)...
pub const HEAVY_BYTES: u64 = 16 << 20;
/// ... at this average rate or more over its life (bytes per second). A long-lived
/// request/response connection moves many bytes, but slowly.
pub const HEAVY_RATE: u64 = 32 << 20;
/// How long a bulk stream keeps its destination spread.
pub const REMEMBER: Duration = Duration::from_secs(300);
/// Bulk destinations remembered at most; expired ones are dropped past this.
const MAX_REMEMBERED: usize = 1024;

/// True when a stream that moved `bytes` in `lived` is bulk.
pub fn is_heavy(bytes: u64, lived: Duration) -> bool {
    let rate = bytes as f64 / lived.as_secs_f64().max(1e-3);
    bytes >= HEAVY_BYTES && rate >= HEAVY_RATE as f64
}

/// The memory of bulk destinations.
#[derive(Debug, Default, Clone)]
pub struct Learner {
    /// Destination (original `ip:port`) → when a bulk stream to it last ended.
    heavy: HashMap<SocketAddr, Instant>,
}

impl Learner {
    /// The placement for a new stream to `dst`.
    pub fn choose(&self, dst: SocketAddr, now: Instant) -> Placement {
        match self.heavy.get(&dst) {
            Some(&at) if now.duration_since(at) < REMEMBER => Placement::Far,
            _ => Placement::Near,
        }
    }

    /// Records that a bulk stream to `dst` ended at `now`.
    pub fn record(&mut self, dst: SocketAddr, now: Instant) {
        if self.heavy.len() >= MAX_REMEMBERED {
            self.heavy
                .retain(|_, at| now.duration_since(*at) < REMEMBER);
        }
        if self.heavy.len() < MAX_REMEMBERED || self.heavy.contains_key(&dst) {
            self.heavy.insert(dst, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn dst(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 244, 2, 5], port))
    }

    #[test]
    fn bulk_needs_both_volume_and_rate() {
        let s = Duration::from_secs(1);
        assert!(is_heavy(700 * MIB, s), "a 6 Gb/s stream");
        assert!(
            !is_heavy(10 * MIB, Duration::from_millis(10)),
            "fast but small"
        );
        assert!(
            !is_heavy(100 * MIB, 10 * s),
            "a long request/response connection: 10 MB/s"
        );
        assert!(
            is_heavy(HEAVY_BYTES, Duration::ZERO),
            "a lifetime of 0 counts as 1 ms"
        );
    }

    #[test]
    fn a_bulk_destination_is_spread_until_it_is_forgotten() {
        let mut l = Learner::default();
        let t0 = Instant::now();
        assert_eq!(
            l.choose(dst(9000), t0),
            Placement::Near,
            "nothing known yet"
        );
        l.record(dst(9000), t0);
        assert_eq!(
            l.choose(dst(9000), t0 + Duration::from_secs(1)),
            Placement::Far
        );
        assert_eq!(
            l.choose(dst(9001), t0),
            Placement::Near,
            "per destination port"
        );
        assert_eq!(l.choose(dst(9000), t0 + REMEMBER), Placement::Near);
    }

    #[test]
    fn memory_is_bounded_and_keeps_the_fresh_entries() {
        let mut l = Learner::default();
        let t0 = Instant::now();
        let heavy = |l: &mut Learner, port, at| l.record(dst(port), at);
        for port in 0..MAX_REMEMBERED as u16 {
            heavy(&mut l, port, t0);
        }
        let later = t0 + REMEMBER;
        heavy(&mut l, 60_000, later);
        assert_eq!(l.heavy.len(), 1, "the expired entries were dropped");
        assert_eq!(l.choose(dst(60_000), later), Placement::Far);
        for port in 0..MAX_REMEMBERED as u16 {
            heavy(&mut l, port, later);
        }
        assert_eq!(
            l.heavy.len(),
            MAX_REMEMBERED,
            "full of fresh entries: no more room"
        );
        assert_eq!(
            l.choose(dst(MAX_REMEMBERED as u16 - 1), later),
            Placement::Near
        );
    }
}
