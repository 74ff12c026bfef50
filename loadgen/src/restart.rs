//! `zring-loadgen restart`: how long new connections fail while a node's zring restarts.
//!
//! The articles' topology comes up with each zring plumbing its own node
//! (`--plumb --host-netns`); node A's enrolled client opens a new connection to node B's
//! enrolled server every `1/rate` s (each in its own thread, so a stalled one does not
//! hold the next back) and asks for one HTTP answer within `timeout`. Meanwhile node A's
//! zring gets SIGTERM, exits, and a new zring starts in the same pod with the same
//! command line (a container restart). The *window* is the time from the start of the
//! first attempt that failed to the start of the last one, plus one interval; every
//! attempt outside it succeeded. Repeated `repeats` times; medians are reported.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mesh::{self, MeshOptions};
use crate::procs::{self, Proc};
use crate::report::{self, Machine};
use crate::topo::{self, plan::Plan, UpOptions};

/// What to run.
#[derive(Debug, Clone)]
pub struct RestartOptions {
    pub prefix: String,
    pub zring: PathBuf,
    pub self_exe: PathBuf,
    /// New connections per second.
    pub rate: f64,
    /// An attempt fails when it has no answer within this.
    pub timeout: Duration,
    /// Load before the SIGTERM and after the new zring is ready.
    pub margin: Duration,
    pub repeats: usize,
    pub out: PathBuf,
    pub command_line: String,
}

/// One attempt: when it started (ms since the load began), and whether it was answered.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Attempt {
    pub start_ms: f64,
    pub ok: bool,
}

/// One restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestartRun {
    /// ms since the load began.
    pub sigterm_ms: f64,
    pub exited_ms: f64,
    pub ready_ms: f64,
    pub attempts: usize,
    pub failed: usize,
    /// First failed attempt's start → last failed attempt's start + one interval (0: none).
    pub window_ms: f64,
}

/// The report written as `report.json` (and `report.md`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestartReport {
    pub commit: String,
    pub machine: Machine,
    pub command_line: String,
    pub rate: f64,
    pub timeout_ms: f64,
    pub runs: Vec<RestartRun>,
    pub median_window_ms: f64,
    pub median_exit_ms: f64,
    pub median_ready_ms: f64,
}

/// The window of `attempts` made every `interval_ms` (pure).
pub fn window_ms(attempts: &[Attempt], interval_ms: f64) -> f64 {
    let failed = attempts.iter().filter(|a| !a.ok).map(|a| a.start_ms);
    let (first, last) = failed.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    if first.is_finite() {
        last - first + interval_ms
    } else {
        0.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Topology up → `repeats` restarts under load → topology down; writes the report.
pub fn run(opts: &RestartOptions) -> Result<(RestartReport, PathBuf)> {
    let plan = Plan::new(&opts.prefix);
    let up = UpOptions {
        server_cores: 1,
        self_exe: opts.self_exe.clone(),
        mesh: Some(MeshOptions {
            zring: opts.zring.clone(),
            cores: 1,
            pool_idle: None,
            xds: false,
            inpod: false,
        }),
    };
    let state = topo::up(&plan, &up)?.state;
    let runs = restarts(&plan, &state, opts);
    let down = topo::down(&opts.prefix);
    let runs = runs?;
    down?;
    let report = RestartReport {
        commit: report::short_commit(),
        machine: Machine::detect(),
        command_line: opts.command_line.clone(),
        rate: opts.rate,
        timeout_ms: opts.timeout.as_secs_f64() * 1e3,
        median_window_ms: median(runs.iter().map(|r| r.window_ms).collect()),
        median_exit_ms: median(runs.iter().map(|r| r.exited_ms - r.sigterm_ms).collect()),
        median_ready_ms: median(runs.iter().map(|r| r.ready_ms - r.sigterm_ms).collect()),
        runs,
    };
    let dir = write(&report, &opts.out)?;
    Ok((report, dir))
}

fn restarts(plan: &Plan, state: &procs::State, opts: &RestartOptions) -> Result<Vec<RestartRun>> {
    let ns = plan.a.ztunnel().netns.clone();
    let mut proc = state
        .procs
        .iter()
        .find(|p| p.kind == "zring" && p.netns == ns)
        .cloned()
        .ok_or_else(|| Error::Setup("node A's zring is not running".into()))?;
    let args = procs::command_line(proc.pid)?;
    let mut runs = Vec::new();
    for i in 0..opts.repeats {
        let (run, next) = one(plan, opts, &proc, &args, i)?;
        eprintln!(
            "restart {}: window {:.0} ms ({} of {} attempts failed), exit after {:.0} ms, ready after {:.0} ms",
            i + 1,
            run.window_ms,
            run.failed,
            run.attempts,
            run.exited_ms - run.sigterm_ms,
            run.ready_ms - run.sigterm_ms
        );
        runs.push(run);
        proc = next;
    }
    Ok(runs)
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// One restart of `proc` under load; returns the run and the new process.
fn one(
    plan: &Plan,
    opts: &RestartOptions,
    proc: &Proc,
    args: &[String],
    i: usize,
) -> Result<(RestartRun, Proc)> {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t0 = Instant::now();
    let load = {
        let (client, server) = plan.mesh_pair();
        let target = SocketAddr::from((server.ip, topo::plan::HTTP_PORT));
        let (ns, attempts, stop) = (client.netns.clone(), attempts.clone(), stop.clone());
        let (interval, timeout) = (Duration::from_secs_f64(1.0 / opts.rate), opts.timeout);
        std::thread::spawn(move || {
            plumbing::netns::run_in(Some(&ns), || {
                drive(target, interval, timeout, t0, &stop, &attempts)
            })
        })
    };
    std::thread::sleep(opts.margin);
    let mut run = RestartRun {
        sigterm_ms: ms(t0),
        ..RestartRun::default()
    };
    crate::sys::signal(proc.pid, libc::SIGTERM)
        .map_err(Error::io(format!("signalling zring {}", proc.pid)))?;
    while procs::is_alive(proc.pid) {
        std::thread::sleep(Duration::from_millis(2));
    }
    run.exited_ms = ms(t0);
    let log = proc.log.with_extension(format!("restart{i}.log"));
    let next = procs::spawn_in_env(&proc.netns, "zring", (&opts.zring, args), &[], log)?;
    mesh::wait_ready(&proc.netns, &next)?;
    run.ready_ms = ms(t0);
    std::thread::sleep(opts.margin);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join()
        .map_err(|_| Error::Setup("the load thread panicked".into()))??;
    let all = attempts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    run.attempts = all.len();
    run.failed = all.iter().filter(|a| !a.ok).count();
    run.window_ms = window_ms(&all, 1e3 / opts.rate);
    Ok((run, next))
}

/// Starts an attempt every `interval` until `stop`; waits for the last ones.
fn drive(
    target: SocketAddr,
    interval: Duration,
    timeout: Duration,
    t0: Instant,
    stop: &std::sync::atomic::AtomicBool,
    out: &Arc<Mutex<Vec<Attempt>>>,
) {
    let mut threads = Vec::new();
    let mut next = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let out = out.clone();
        let start_ms = ms(t0);
        threads.push(std::thread::spawn(move || {
            let ok = attempt(target, timeout);
            out.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Attempt { start_ms, ok });
        }));
        next += interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        threads.retain(|t| !t.is_finished());
    }
    for t in threads {
        let _ = t.join();
    }
}

/// One new connection and one HTTP answer within `timeout`.
fn attempt(target: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let Ok(mut s) = TcpStream::connect_timeout(&target, timeout) else {
        return false;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
        return false;
    }
    if s.write_all(b"GET / HTTP/1.1\r\nHost: restart\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/1.1 200"))
}

fn write(r: &RestartReport, root: &Path) -> Result<PathBuf> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (date, _) = report::utc(now);
    let dir = report::run_dir(root, &date, &format!("{}-restart", r.commit));
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let json = serde_json::to_string_pretty(r).map_err(|e| Error::Setup(e.to_string()))?;
    for (name, text) in [("report.json", json), ("report.md", markdown(r))] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(Error::io(format!("writing {}", p.display())))?;
    }
    Ok(dir)
}

/// The report as Markdown (pure).
pub fn markdown(r: &RestartReport) -> String {
    let mut s = format!(
        "# zring restart window\n\ncommit `{}`; {} cores, kernel {}, {}\n\n`{}`\n\n\
         A new connection every {:.1} ms from node A's enrolled client to node B's enrolled \
         server, each needing an HTTP answer within {:.0} ms, while node A's zring gets \
         SIGTERM and a new one starts in the same pod (`--plumb --host-netns`).\n\n\
         | run | SIGTERM → exited ms | SIGTERM → new zring ready ms | attempts | failed | window ms |\n\
         |---|---|---|---|---|---|\n",
        r.commit,
        r.machine.cores,
        r.machine.kernel,
        r.machine.cpu_model,
        r.command_line,
        1e3 / r.rate,
        r.timeout_ms
    );
    for (i, run) in r.runs.iter().enumerate() {
        s.push_str(&format!(
            "| {} | {:.0} | {:.0} | {} | {} | {:.0} |\n",
            i + 1,
            run.exited_ms - run.sigterm_ms,
            run.ready_ms - run.sigterm_ms,
            run.attempts,
            run.failed,
            run.window_ms
        ));
    }
    s.push_str(&format!(
        "\nmedian: window {:.0} ms, exit {:.0} ms, ready {:.0} ms after SIGTERM\n",
        r.median_window_ms, r.median_exit_ms, r.median_ready_ms
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_spans_the_failed_attempts() {
        let a = |start_ms, ok| Attempt { start_ms, ok };
        let attempts = [
            a(0.0, true),
            a(5.0, false),
            a(10.0, true),
            a(15.0, false),
            a(20.0, true),
        ];
        assert_eq!(window_ms(&attempts, 5.0), 15.0);
        assert_eq!(window_ms(&[a(0.0, true)], 5.0), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
