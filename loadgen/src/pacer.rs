//! Open-loop pacing: when each request *should* be sent, and from which instant its
//! latency is measured (coordinated-omission correction).
//!
//! Pure: every function takes `Instant`s as arguments, so the schedule can be tested
//! without sockets or timers.

use std::time::{Duration, Instant};

/// A fixed-rate schedule: request `n` is due at `start + n / rate`.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    interval_ns: f64,
    next: u64,
}

impl Pacer {
    /// A schedule of `rate` requests per second starting at `start`. `rate` must be > 0.
    pub fn new(start: Instant, rate: f64) -> Self {
        let rate = if rate > 0.0 { rate } else { 1.0 };
        Pacer {
            start,
            interval_ns: 1e9 / rate,
            next: 0,
        }
    }

    /// The interval between two intended sends.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns as u64)
    }

    /// When request `n` is due.
    pub fn intended(&self, n: u64) -> Instant {
        self.start + Duration::from_nanos((n as f64 * self.interval_ns) as u64)
    }

    /// The intended send time of the next request; advances the schedule.
    pub fn next_intended(&mut self) -> Instant {
        let t = self.intended(self.next);
        self.next += 1;
        t
    }

    /// How many intended times were handed out by [`Pacer::next_intended`].
    pub fn issued(&self) -> u64 {
        self.next
    }

    /// How many requests are due at `now` (sent or not).
    pub fn due_by(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.start) {
            Some(d) => (d.as_nanos() as f64 / self.interval_ns) as u64 + 1,
            None => 0,
        }
    }
}

/// What a connection should do next with its intended send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Too early: sleep until this instant, then call [`measure_base`] with the wake time.
    Wait(Instant),
    /// Send now; the latency is measured from `base`.
    Send { base: Instant },
}

/// Decides, when a connection is ready to send (its previous response has arrived) at
/// `now`, whether to wait for `intended` or send at once.
///
/// If the request is already late (`now >= intended`), the lateness was caused by the
/// system under test (the previous response came back late), so latency counts from
/// `intended`: this is the coordinated-omission correction. If it is early, the
/// connection waits; see [`measure_base`] for where the clock then starts.
pub fn step(intended: Instant, now: Instant) -> Step {
    if now >= intended {
        Step::Send { base: intended }
    } else {
        Step::Wait(intended)
    }
}

/// After waiting for `intended` and waking at `woke`, the latency base is `intended`
/// plus at most `slack` of timer lateness: lateness beyond the timer's granularity is not
/// charged to the system under test, lateness within it is excluded too (the wake time
/// is used), so a coarse timer does not inflate every sample.
pub fn measure_base(intended: Instant, woke: Instant, slack: Duration) -> Instant {
    if woke <= intended + slack {
        woke.max(intended)
    } else {
        intended + slack
    }
}

#[cfg(test)]
mod tests;
