use super::*;
use crate::hist::LatencyHist;

/// Drives one connection through the schedule with given service times, as the real
/// client loop does, and returns (corrected, naive) histograms.
fn simulate(rate: f64, service: &[Duration]) -> (LatencyHist, LatencyHist) {
    let t0 = Instant::now();
    let mut pacer = Pacer::new(t0, rate);
    let mut now = t0;
    let (mut corrected, mut naive) = (LatencyHist::new(), LatencyHist::new());
    for s in service {
        let intended = pacer.next_intended();
        let base = match step(intended, now) {
            Step::Send { base } => base,
            Step::Wait(until) => {
                now = until;
                measure_base(intended, now, Duration::from_millis(1))
            }
        };
        let sent = now;
        now += *s;
        corrected.record(now - base);
        naive.record(now - sent);
    }
    (corrected, naive)
}

#[test]
fn intended_times_follow_the_rate() {
    let t0 = Instant::now();
    let mut p = Pacer::new(t0, 1000.0);
    assert_eq!(p.next_intended(), t0);
    assert_eq!(p.next_intended(), t0 + Duration::from_millis(1));
    assert_eq!(p.intended(1000), t0 + Duration::from_secs(1));
    assert_eq!(p.due_by(t0 + Duration::from_micros(2500)), 3);
    assert_eq!(p.interval(), Duration::from_millis(1));
}

#[test]
fn early_connection_waits_late_one_sends_from_intended() {
    let t0 = Instant::now();
    let due = t0 + Duration::from_millis(5);
    assert_eq!(step(due, t0), Step::Wait(due));
    let late = t0 + Duration::from_millis(7);
    assert_eq!(step(due, late), Step::Send { base: due });
}

#[test]
fn timer_lateness_within_slack_is_not_charged() {
    let t0 = Instant::now();
    let slack = Duration::from_millis(1);
    let woke = t0 + Duration::from_micros(800);
    assert_eq!(measure_base(t0, woke, slack), woke);
    let very_late = t0 + Duration::from_millis(30);
    assert_eq!(measure_base(t0, very_late, slack), t0 + slack);
}

/// The coordinated-omission check: one 1 s stall among 10 000 fast responses. A naive
/// client (latency from its actual send) reports a fast p99; measuring from the
/// intended send time shows every request queued behind the stall.
#[test]
fn stalled_server_shows_in_p99() {
    let mut service = vec![Duration::from_micros(200); 10_000];
    service[5_000] = Duration::from_secs(1);
    let (corrected, naive) = simulate(1000.0, &service);
    let (c, n) = (corrected.summary(), naive.summary());
    assert!(n.p99_us < 1_000, "naive p99 {} µs", n.p99_us);
    assert!(c.p99_us > 500_000, "corrected p99 {} µs", c.p99_us);
    assert!(c.max_us >= 999_000, "corrected max {} µs", c.max_us);
    assert!(c.p50_us < 1_000, "corrected p50 {} µs", c.p50_us);
}
