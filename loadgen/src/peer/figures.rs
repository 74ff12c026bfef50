//! The figures, each measured on one target (direct or through one proxy) into a
//! [`Sample`]: bulk, request/response closed and open loop, the rate sweep and
//! connection churn. Proxy CPU and host busy % cover the measured phase only.

use super::model::Sample;
use super::setup::{Lab, HTTP_PORT, SINK_PORT};
use super::SERVER_IP;
use crate::phase::{self, BulkPhase, Endpoint, RrPhase, RrResult};
use crate::procs;
use std::net::SocketAddr;
use std::time::Duration;

/// Achieved below this share of the offered rate: saturated.
const SATURATION: f64 = 0.9;
/// A sweep stops once p99 exceeds this (µs): far past any SLO of interest.
const SWEEP_STOP_P99_US: u64 = 20_000;
/// The SLO of the "highest rate" figure (µs).
pub const SLO_US: u64 = 1000;
/// Upper bound on a bulk or churn phase, whatever its byte or operation count.
const PHASE_CAP: Duration = Duration::from_secs(60);

/// Where a figure runs: straight to the server in a lab, or through its proxy.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub lab: &'a Lab,
    pub direct: bool,
}

impl Target<'_> {
    /// `direct`, `ztunnel` or `zring`.
    pub fn name(&self) -> &'static str {
        if self.direct {
            "direct"
        } else {
            self.lab.proxy.name()
        }
    }

    fn endpoint(&self, port: u16) -> Endpoint {
        Endpoint {
            netns: Some(self.lab.netns.clone()),
            target: SocketAddr::new(SERVER_IP, port),
            expect_ip: if self.direct {
                self.lab.direct_ip
            } else {
                self.lab.seen_ip
            },
            via: (!self.direct).then(|| self.lab.via()),
        }
    }

    /// The proxy processes whose CPU counts (none for direct).
    fn pids(&self) -> Vec<i32> {
        match self.direct {
            true => Vec::new(),
            false => self.lab.pids(),
        }
    }
}

/// Runs `f`, filling the sample's proxy CPU seconds and host busy % over it.
pub(crate) fn measured<T>(t: Target, f: impl FnOnce() -> T) -> (T, Sample) {
    let pids = t.pids();
    let remote: Vec<i32> = pids.iter().skip(1).copied().collect();
    let cpu = || (procs::cpu_seconds(&pids), procs::cpu_seconds(&remote));
    let (cpu0, host0) = (cpu(), procs::host_busy());
    let out = f();
    let (cpu1, host1) = (cpu(), procs::host_busy());
    let mut s = Sample::new();
    s.proxy_cpu_s = cpu1.0 - cpu0.0;
    s.remote_cpu_s = cpu1.1 - cpu0.1;
    s.host_busy_pct = busy_pct(host0, host1);
    (out, s)
}

/// Busy share (%) between two (busy, total) jiffy readings.
pub fn busy_pct(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    b.0.saturating_sub(a.0) as f64 * 100.0 / total as f64
}

/// Bulk: `streams` streams carrying `bytes` in total into the sink.
pub fn bulk(t: Target, streams: usize, bytes: u64, seed: u64) -> Sample {
    let p = BulkPhase {
        streams,
        duration: PHASE_CAP,
        seed,
        cores: 1,
        bytes: Some(bytes),
    };
    let (r, mut s) = measured(t, || phase::run_bulk(&t.endpoint(SINK_PORT), &p));
    match r {
        Ok(r) => {
            s.values.insert("gbps".into(), r.gbps);
            if !t.direct && r.bytes > 0 {
                s.values
                    .insert("cpu_s_per_gb".into(), s.proxy_cpu_s * 1e9 / r.bytes as f64);
            }
            s.checksum_ok = r.correctness.is_none();
            for why in r.correctness.iter().chain(&r.error) {
                s.failures += 1;
                s.reason(why.clone());
            }
        }
        Err(e) => fail(&mut s, e.to_string()),
    }
    s
}

fn fail(s: &mut Sample, why: String) {
    s.failures += 1;
    s.reason(why);
}

/// A request/response phase on `t` into a sample: percentiles, rate, CPU per 1000.
pub fn rr(t: Target, p: &RrPhase) -> (Sample, Option<RrResult>) {
    let (r, mut s) = measured(t, || phase::run_rr(&t.endpoint(HTTP_PORT), p));
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            fail(&mut s, e.to_string());
            return (s, None);
        }
    };
    let l = &r.latency;
    for (k, v) in [
        ("p50_us", l.p50_us),
        ("p90_us", l.p90_us),
        ("p99_us", l.p99_us),
        ("p999_us", l.p999_us),
        ("max_us", l.max_us),
    ] {
        s.values.insert(k.into(), v as f64);
    }
    s.values.insert("rps".into(), r.achieved_rps);
    if !t.direct && r.completed > 0 {
        let per_1k = s.proxy_cpu_s * 1000.0 / r.completed as f64;
        s.values.insert("cpu_s_per_1k".into(), per_1k);
    }
    s.failures = r.errors;
    s.checksum_ok = r.correctness.is_none();
    for why in r.first_error.iter().chain(&r.correctness) {
        s.reason(why.clone());
    }
    if r.ok == 0 {
        fail(&mut s, "no request completed".into());
    }
    (s, Some(r))
}

/// The open-loop phase at `rate` over `conns` connections of 1 KiB echoes.
pub fn open_loop(rate: f64, conns: usize, secs: Duration, seed: u64) -> RrPhase {
    RrPhase {
        rate,
        conns,
        payload: 1024,
        reconnect: false,
        warmup: secs.mul_f64(0.2).min(Duration::from_secs(1)),
        duration: secs,
        seed,
        cores: 1,
        closed: false,
        count: None,
    }
}

/// Closed loop 1 KiB echo on one connection.
pub fn closed_loop(secs: Duration, seed: u64) -> RrPhase {
    RrPhase {
        closed: true,
        conns: 1,
        ..open_loop(0.0, 1, secs, seed)
    }
}

/// Connection churn: connect + 1-byte echo + close, `ops` in total at `concurrency`.
pub fn churn(concurrency: usize, ops: u64, seed: u64) -> RrPhase {
    RrPhase {
        payload: 1,
        reconnect: true,
        closed: true,
        count: Some(ops),
        warmup: Duration::ZERO,
        duration: PHASE_CAP,
        conns: concurrency,
        ..open_loop(0.0, concurrency, PHASE_CAP, seed)
    }
}

/// The rate sweep: rising open-loop rates until saturation; the highest rate whose
/// p99 stays under [`SLO_US`], and every point's p99 (`p99_us_at_<rate>`).
pub fn sweep(t: Target, rates: &[f64], secs: Duration, seed: u64) -> Sample {
    let mut out = Sample::new();
    let mut best: f64 = 0.0;
    for &rate in rates {
        let (s, r) = rr(t, &open_loop(rate, 8, secs, seed));
        out.failures += s.failures;
        out.checksum_ok &= s.checksum_ok;
        s.reasons.iter().for_each(|w| out.reason(w.clone()));
        out.host_busy_pct = out.host_busy_pct.max(s.host_busy_pct);
        let Some(r) = r else { break };
        let p99 = r.latency.p99_us;
        out.values
            .insert(format!("p99_us_at_{rate:.0}"), p99 as f64);
        let kept_up = r.achieved_rps >= rate * SATURATION;
        let top = out.values.entry("max_achieved_rps".into()).or_insert(0.0);
        *top = top.max(r.achieved_rps);
        if kept_up && p99 < SLO_US {
            best = best.max(rate);
        }
        if !kept_up || p99 > SWEEP_STOP_P99_US {
            break;
        }
    }
    out.values.insert("max_rate_p99_1ms".into(), best);
    out
}

/// Sweep points `(rate, p99 µs)` recorded in a sample, by rate.
pub fn sweep_points(s: &Sample) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = s
        .values
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("p99_us_at_")?.parse().ok()?, *v)))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_share_of_jiffies() {
        assert_eq!(busy_pct((10, 100), (60, 200)), 50.0);
        assert_eq!(busy_pct((10, 100), (10, 100)), 0.0);
    }

    #[test]
    fn sweep_points_are_sorted_by_rate() {
        let mut s = Sample::new();
        s.values.insert("p99_us_at_10000".into(), 300.0);
        s.values.insert("p99_us_at_2000".into(), 100.0);
        s.values.insert("max_rate_p99_1ms".into(), 10000.0);
        assert_eq!(sweep_points(&s), vec![(2000.0, 100.0), (10000.0, 300.0)]);
    }

    #[test]
    fn churn_is_a_closed_count_limited_reconnecting_phase() {
        let p = churn(16, 5000, 1);
        assert!(p.closed && p.reconnect);
        assert_eq!((p.conns, p.count, p.payload), (16, Some(5000), 1));
        assert!(closed_loop(Duration::from_secs(1), 1).closed);
    }
}
