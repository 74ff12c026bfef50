//! When a burst of connections on a core is over, the core gives back what the burst grew
//! (issue 22 item 6). I/O-free: [`Trim::tick`] is fed the core's open connections on each
//! control tick and says what to do.
//!
//! Why: 5000 held connections through the HBONE pool, then closed, left each node's proxy
//! ~3 MB above its start. Its allocator's live data was ~0.5 MB; the rest was 512 KiB
//! medium pages that the burst's per-connection buffers had filled and that a few
//! survivors kept: above all the one pooled connection a key keeps, whose HTTP/2 stream
//! tables grew to 100 streams, and mimalloc's last empty page of each size class, which it
//! keeps until the thread allocates enough again (an idle core never does).

/// A burst: at least this many connections open at once on the core.
pub const BURST: u64 = 256;

/// The burst is over once the open connections fall to this fraction of its peak.
pub const OVER_DIVISOR: u64 = 8;

/// What the core does on this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Close the pool's idle connections (the key's kept one too): their grown state goes.
    ClosePooled,
    /// One tick later, once those connections' tasks have ended: return the emptied pages.
    Collect,
}

/// The peak of open connections since the last trim (which restarts it at the connections
/// still open then: if they were a burst themselves, their end trims again).
#[derive(Debug, Default)]
pub struct Trim {
    peak: u64,
    collect_next: bool,
}

impl Trim {
    /// Notes a count of open connections seen between control ticks (a core samples it
    /// each time its bell rings too).
    pub fn seen(&mut self, open: u64) {
        self.peak = self.peak.max(open);
    }

    /// The control tick: `open` now.
    pub fn tick(&mut self, open: u64) -> Step {
        if std::mem::take(&mut self.collect_next) {
            return Step::Collect;
        }
        self.seen(open);
        if self.peak >= BURST && open <= self.peak / OVER_DIVISOR {
            self.peak = open;
            self.collect_next = true;
            return Step::ClosePooled;
        }
        Step::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(trim: &mut Trim, opens: &[u64]) -> Vec<Step> {
        opens.iter().map(|&o| trim.tick(o)).collect()
    }

    #[test]
    fn a_burst_that_ends_closes_pooled_then_collects_once() {
        let mut t = Trim::default();
        let steps = run(&mut t, &[0, 300, 5000, 4000, 200, 150, 10, 0, 0]);
        use Step::*;
        assert_eq!(
            steps,
            [
                Nothing,
                Nothing,
                Nothing,
                Nothing,
                ClosePooled,
                Collect,
                Nothing,
                Nothing,
                Nothing
            ]
        );
    }

    #[test]
    fn small_or_lasting_load_never_trims() {
        let mut t = Trim::default();
        // Below a burst, whatever it does.
        assert!(run(&mut t, &[255, 0, 255, 0])
            .iter()
            .all(|s| *s == Step::Nothing));
        // A burst that only eases (not to an eighth of its peak) keeps what it uses.
        assert!(run(&mut t, &[1000, 500, 200, 126])
            .iter()
            .all(|s| *s == Step::Nothing));
        assert_eq!(t.tick(125), Step::ClosePooled);
    }

    #[test]
    fn a_peak_seen_between_ticks_counts() {
        let mut t = Trim::default();
        assert_eq!(t.tick(10), Step::Nothing);
        t.seen(400);
        assert_eq!(t.tick(0), Step::ClosePooled);
    }

    #[test]
    fn the_next_burst_is_measured_from_where_the_last_ended() {
        let mut t = Trim::default();
        run(&mut t, &[400, 40, 40]);
        // The peak restarted at 40: 300 is a burst again, and its end trims again.
        assert_eq!(run(&mut t, &[300, 37]), [Step::Nothing, Step::ClosePooled]);
        assert_eq!(t.tick(0), Step::Collect);
    }
}
