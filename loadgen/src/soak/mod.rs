//! `zring-loadgen soak`: many concurrent connections through the two-node mesh for a
//! bounded time, each carrying checksummed echo rounds, while the proxies' RSS, open
//! descriptors and node A's pooled HBONE connections are sampled; then the checks: no
//! byte lost or corrupted, every connection open at once, RSS flat, descriptors and
//! pool back to their baseline.

mod sample;
mod traffic;

pub use sample::{pooled, rss_flat, Sample};
pub use traffic::{serve_echo, Live};

use crate::error::{Error, Result};
use crate::procs::{self, State};
use crate::report::Machine;
use crate::topo::plan::Plan;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use traffic::ConnPlan;

/// The echo server's port in the server pod.
pub const SOAK_PORT: u16 = 9300;
/// The proxies' pool idle timeout during a soak (ztunnel's default is 300 s): short, so
/// the pool's return to its baseline is observed within the run.
pub const POOL_IDLE: Duration = Duration::from_secs(5);
/// How long after the last connection closed descriptors and pool may take to settle.
const SETTLE: Duration = Duration::from_secs(20);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Longest ramp over which the connections open.
const MAX_RAMP: Duration = Duration::from_secs(20);
/// Ephemeral ports for the client pod and node B's ztunnel pod (its upstream sockets).
const PORT_RANGE: &str = "1024 65000";

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakOptions {
    pub conns: usize,
    pub duration_s: f64,
    /// Bytes per round each way.
    pub payload: usize,
    /// Mean pause between a connection's rounds.
    pub interval_s: f64,
    pub cores: usize,
    pub seed: u64,
}

impl SoakOptions {
    /// Open files this process needs (client and server end of every connection).
    pub fn nofile(&self) -> u64 {
        (self.conns as u64) * 3 + 4096
    }

    fn ramp(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s / 5.0).min(MAX_RAMP)
    }
}

/// Totals over every connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub rounds: u64,
    pub bytes_sent: u64,
    pub bytes_verified: u64,
    pub bytes_lost: u64,
    pub corrupted_rounds: u64,
    pub failed_conns: u64,
    pub peak_open_conns: usize,
    pub first_error: Option<String>,
}

/// The soak's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakReport {
    pub started_utc: String,
    pub commit: String,
    pub command_line: Vec<String>,
    pub machine: Machine,
    pub options: SoakOptions,
    pub ramp_s: f64,
    pub totals: Totals,
    pub baseline: Sample,
    pub during: Vec<Sample>,
    pub after: Sample,
    /// Empty when every check passed.
    pub failures: Vec<String>,
}

/// The two proxies' pids, node A's first.
fn proxies(plan: &Plan, state: &State) -> Result<[i32; 2]> {
    let pid = |i: usize| {
        let ns = &plan.nodes()[i].ztunnel().netns;
        state
            .procs
            .iter()
            .find(|p| p.kind == "zring" && &p.netns == ns && procs::is_alive(p.pid))
            .map(|p| p.pid)
            .ok_or_else(|| {
                Error::Topology(format!(
                    "no running zring in {ns}: see `zring-loadgen topology status`"
                ))
            })
    };
    Ok([pid(0)?, pid(1)?])
}

/// Raises RLIMIT_NOFILE for `o` (call before the proxies start: they inherit it) and
/// refuses when the hard limit leaves too little.
pub fn raise_nofile(o: &SoakOptions) -> Result<()> {
    crate::sys::raise_nofile(o.nofile()).map_err(Error::io("raising RLIMIT_NOFILE"))?;
    let have = crate::sys::nofile().map_err(Error::io("reading RLIMIT_NOFILE"))?;
    let need = o.conns as u64 + 1024;
    if have < need {
        return Err(Error::Topology(format!(
            "RLIMIT_NOFILE is {have} (the hard limit) but {} connections need {need}: \
             raise the hard limit (ulimit -Hn) or pass fewer --conns",
            o.conns
        )));
    }
    Ok(())
}

/// Starts `soak-echo` in the mesh server pod and records it in the topology's state.
fn start_echo(plan: &Plan, state: &mut State, self_exe: &Path, at: SocketAddr) -> Result<()> {
    let (_, server) = plan.mesh_pair();
    let log = procs::state_dir(&plan.prefix).join("soak-echo.log");
    let args = [
        "soak-echo",
        "--bind",
        &at.ip().to_string(),
        "--port",
        &at.port().to_string(),
    ]
    .map(String::from);
    let p = procs::spawn_in(&server.netns, "soak-echo", self_exe, &args, log)?;
    state.procs.push(p.clone());
    state.save()?;
    crate::topo::wait_listening(&server.netns, at, &p)
}

/// Runs the soak against the mesh topology `plan` (up, with the mesh); `self_exe` is the
/// `zring-loadgen` binary (it runs the echo server).
pub fn run(
    plan: &Plan,
    o: &SoakOptions,
    self_exe: &Path,
    command_line: Vec<String>,
) -> Result<SoakReport> {
    let mut state = State::load(&plan.prefix)?
        .filter(|s| s.mesh)
        .ok_or_else(|| Error::Topology(format!("no mesh topology {}", plan.prefix)))?;
    let pids = proxies(plan, &state)?;
    raise_nofile(o)?;
    let (client, server) = plan.mesh_pair();
    for ns in [&client.netns, &plan.nodes()[1].ztunnel().netns] {
        plumbing::netns::set_sysctl(Some(ns), "net.ipv4.ip_local_port_range", PORT_RANGE)?;
    }
    let live = Arc::new(Live::default());
    let target = SocketAddr::from((server.ip, SOAK_PORT));
    start_echo(plan, &mut state, self_exe, target)?;
    let (date, time) = crate::report::utc(unix_now());
    let t0 = Instant::now();
    let baseline = sample::sample(pids, 0, 0);
    let end = t0 + Duration::from_secs_f64(o.duration_s);
    let handles = spawn_clients(o, &client.netns, target, (t0, end), &live)?;
    let during = watch(pids, t0, &live, &handles);
    for h in handles {
        h.join()
            .unwrap_or_else(|_| Err(Error::Topology("a soak client core panicked".into())))?;
    }
    let after = settle(pids, t0, &baseline);
    let totals = totals(&live);
    let mut r = SoakReport {
        started_utc: format!("{date}T{time}Z"),
        commit: crate::report::short_commit(),
        command_line,
        machine: Machine::detect(),
        options: o.clone(),
        ramp_s: o.ramp().as_secs_f64(),
        totals,
        baseline,
        during,
        after,
        failures: Vec::new(),
    };
    r.failures = checks(&r, pids);
    Ok(r)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type Handles = Vec<std::thread::JoinHandle<Result<()>>>;

fn spawn_clients(
    o: &SoakOptions,
    netns: &str,
    target: SocketAddr,
    (start, end): (Instant, Instant),
    live: &Arc<Live>,
) -> Result<Handles> {
    let cores = o.cores.max(1);
    (0..cores)
        .map(|core| {
            let (first, count) = share(o.conns, cores, core);
            let plan = ConnPlan {
                target,
                first,
                count,
                total: o.conns,
                start,
                ramp: o.ramp(),
                end,
                payload: o.payload,
                interval: Duration::from_secs_f64(o.interval_s),
                seed: o.seed,
            };
            let live = live.clone();
            crate::cores::spawn_core(format!("zrl-soak{core}"), Some(netns.into()), move || {
                traffic::run_conns(plan, live)
            })
        })
        .collect()
}

/// Connection ids `(first, count)` of `core` out of `n` spread over `cores`.
fn share(n: usize, cores: usize, core: usize) -> (usize, usize) {
    let first = n * core / cores;
    (first, n * (core + 1) / cores - first)
}

/// Samples every second until the clients are done.
fn watch(pids: [i32; 2], t0: Instant, live: &Live, handles: &Handles) -> Vec<Sample> {
    let mut v = Vec::new();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(SAMPLE_EVERY);
        let s = sample::sample(pids, t0.elapsed().as_secs(), live.open.load(Relaxed));
        eprintln!(
            "soak {:>4}s open {:>6} rounds {:>9} rss {} / {} KiB fds {} / {} pooled {}",
            s.t_s,
            s.open_conns,
            live.rounds.load(Relaxed),
            s.rss_bytes[0] >> 10,
            s.rss_bytes[1] >> 10,
            s.fds[0],
            s.fds[1],
            s.pooled_hbone
        );
        v.push(s);
    }
    v
}

/// Waits (up to the pool idle timeout plus slack) for descriptors and pool to return to
/// `baseline`, and returns the last sample.
fn settle(pids: [i32; 2], t0: Instant, baseline: &Sample) -> Sample {
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = sample::sample(pids, t0.elapsed().as_secs(), 0);
        let back = s.fds == baseline.fds && s.pooled_hbone == baseline.pooled_hbone;
        if back || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn totals(live: &Live) -> Totals {
    Totals {
        rounds: live.rounds.load(Relaxed),
        bytes_sent: live.sent.load(Relaxed),
        bytes_verified: live.verified.load(Relaxed),
        bytes_lost: live.lost_bytes.load(Relaxed),
        corrupted_rounds: live.corrupted_rounds.load(Relaxed),
        failed_conns: live.failed_conns.load(Relaxed),
        peak_open_conns: live.peak_open.load(Relaxed),
        first_error: live
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    }
}

/// Every check of the soak; the messages say what failed.
fn checks(r: &SoakReport, pids: [i32; 2]) -> Vec<String> {
    let t = &r.totals;
    let mut f = Vec::new();
    let mut need = |ok: bool, msg: String| {
        if !ok {
            f.push(msg);
        }
    };
    need(
        t.failed_conns == 0,
        format!(
            "{} connections failed; first: {:?}",
            t.failed_conns, t.first_error
        ),
    );
    need(
        t.bytes_lost == 0 && t.bytes_verified == t.bytes_sent,
        format!(
            "bytes lost: sent {}, verified {}, lost {}",
            t.bytes_sent, t.bytes_verified, t.bytes_lost
        ),
    );
    need(
        t.corrupted_rounds == 0,
        format!("{} corrupted rounds", t.corrupted_rounds),
    );
    need(
        t.peak_open_conns == r.options.conns,
        format!(
            "only {} of {} connections were open at once",
            t.peak_open_conns, r.options.conns
        ),
    );
    need(
        t.rounds >= r.options.conns as u64 * 2,
        format!(
            "only {} rounds for {} connections",
            t.rounds, r.options.conns
        ),
    );
    for (i, node) in ["A", "B"].iter().enumerate() {
        need(
            procs::is_alive(pids[i]),
            format!("zring on node {node} died"),
        );
        let steady = steady_rss(r, i);
        if let Err(e) = rss_flat(&steady) {
            need(false, format!("zring on node {node}: {e}"));
        }
        need(
            r.after.fds[i] == r.baseline.fds[i],
            format!(
                "zring on node {node}: {} descriptors after, {} at baseline",
                r.after.fds[i], r.baseline.fds[i]
            ),
        );
    }
    need(
        r.after.pooled_hbone == r.baseline.pooled_hbone,
        format!(
            "{} pooled HBONE connections after, {} at baseline",
            r.after.pooled_hbone, r.baseline.pooled_hbone
        ),
    );
    need(
        r.during
            .iter()
            .any(|s| s.pooled_hbone > r.baseline.pooled_hbone),
        "no pooled HBONE connection was ever seen: did the traffic cross the mesh?".into(),
    );
    f
}

/// Node `i`'s RSS samples once every connection is open and before the end.
fn steady_rss(r: &SoakReport, i: usize) -> Vec<u64> {
    let from = (r.ramp_s + 2.0 * r.options.interval_s).ceil() as u64;
    let to = r.options.duration_s as u64;
    r.during
        .iter()
        .filter(|s| s.t_s > from && s.t_s < to)
        .map(|s| s.rss_bytes[i])
        .collect()
}

/// The report as text (what the CLI prints).
pub fn summary(r: &SoakReport) -> String {
    let t = &r.totals;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let peak = |i: usize| r.during.iter().map(|s| s.rss_bytes[i]).max().unwrap_or(0);
    let peak_fds = |i: usize| r.during.iter().map(|s| s.fds[i]).max().unwrap_or(0);
    let peak_pool = r.during.iter().map(|s| s.pooled_hbone).max().unwrap_or(0);
    let mut s = format!(
        "soak {} connections × {:.0} s, {} B rounds every ~{:.1} s, commit {}\n\
         rounds {}; bytes sent {} ({:.1} MiB), echoed back and verified {}, lost {}, \
         corrupted rounds {}, failed connections {}, peak open {}\n",
        r.options.conns,
        r.options.duration_s,
        r.options.payload,
        r.options.interval_s,
        r.commit,
        t.rounds,
        t.bytes_sent,
        mib(t.bytes_sent),
        t.bytes_verified,
        t.bytes_lost,
        t.corrupted_rounds,
        t.failed_conns,
        t.peak_open_conns
    );
    for (i, node) in ["A", "B"].iter().enumerate() {
        s += &format!(
            "zring node {node}: RSS baseline {:.1} MiB, peak {:.1} MiB, after {:.1} MiB; \
             fds baseline {}, peak {}, after {}\n",
            mib(r.baseline.rss_bytes[i]),
            mib(peak(i)),
            mib(r.after.rss_bytes[i]),
            r.baseline.fds[i],
            peak_fds(i),
            r.after.fds[i]
        );
    }
    s += &format!(
        "pooled HBONE connections (node A): baseline {}, peak {}, after {}\n",
        r.baseline.pooled_hbone, peak_pool, r.after.pooled_hbone
    );
    if r.failures.is_empty() {
        s += "all checks passed\n";
    }
    for f in &r.failures {
        s += &format!("FAILED: {f}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_connection_once() {
        let parts: Vec<_> = (0..3).map(|c| share(10, 3, c)).collect();
        assert_eq!(parts, [(0, 3), (3, 3), (6, 4)]);
    }
}
