//! `zring-loadgen run`: the scenarios against a running topology, each point measured
//! through the baseline and the mesh in the same invocation, alternating which goes
//! first, plus the proxies' CPU time from /proc. Produces a [`Report`].

use crate::error::{Error, Result};
use crate::phase::{self, BulkPhase, BulkResult, Endpoint, RrPhase, RrResult};
use crate::procs::{self, State};
use crate::progress::Progress;
use crate::report::{BulkPoint, Machine, Report, RrPoint, Settings};
use crate::topo::plan::{Plan, Pod, HTTP_PORT, SINK_PORT};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A point is saturated when less than this share of the offered rate was achieved.
const SATURATION: f64 = 0.9;
/// Rate and length of the passthrough check.
const PASSTHROUGH_RATE: f64 = 100.0;
const PASSTHROUGH_TIME: Duration = Duration::from_millis(500);
/// Estimated fixed cost per phase (thread start, connection set-up, drain).
const PHASE_OVERHEAD: Duration = Duration::from_millis(300);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub rates: Vec<f64>,
    pub conns: usize,
    pub payload: usize,
    pub cpr_rates: Vec<f64>,
    pub bulk_streams: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    pub bulk_duration: Duration,
    pub cores: usize,
    pub seed: u64,
}

/// Which path a phase takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Baseline,
    Mesh,
}

struct Ctx<'a> {
    opts: &'a RunOptions,
    baseline: (Endpoint, Endpoint),
    mesh: Option<(Endpoint, Endpoint)>,
    /// Enrolled client → not-enrolled server (the proxy passes plain TCP through).
    passthrough: Option<Endpoint>,
    proxies: Vec<i32>,
    progress: Progress,
    failures: Vec<String>,
}

fn endpoints(client: &Pod, server: &Pod) -> (Endpoint, Endpoint) {
    let ep = |port| Endpoint {
        netns: Some(client.netns.clone()),
        target: SocketAddr::from((server.ip, port)),
        expect_ip: IpAddr::V4(client.ip),
        via: None,
    };
    (ep(HTTP_PORT), ep(SINK_PORT))
}

/// Planned duration of the whole run (for the progress bar).
pub fn planned(o: &RunOptions, paths: u32) -> Duration {
    let rr = (o.warmup + o.duration + PHASE_OVERHEAD) * (o.rates.len() + o.cpr_rates.len()) as u32;
    let bulk = (o.bulk_duration + PHASE_OVERHEAD) * o.bulk_streams.len() as u32;
    (rr + bulk) * paths
}

/// Runs every scenario against the topology `plan` (which must be up).
pub fn run(plan: &Plan, opts: &RunOptions, command_line: Vec<String>) -> Result<Report> {
    let state = State::load(&plan.prefix)?.ok_or_else(|| {
        Error::Topology(format!(
            "no topology {}: run `zring-loadgen topology up` first",
            plan.prefix
        ))
    })?;
    let (mc, ms) = plan.mesh_pair();
    let (bc, bs) = plan.baseline_pair();
    let paths = if state.mesh { 2 } else { 1 };
    let mut ctx = Ctx {
        opts,
        baseline: endpoints(bc, bs),
        mesh: state.mesh.then(|| endpoints(mc, ms)),
        passthrough: state.mesh.then(|| {
            let (pc, ps) = plan.passthrough_pair();
            endpoints(pc, ps).0
        }),
        proxies: state.alive("zring"),
        progress: Progress::start(planned(opts, paths)),
        failures: Vec::new(),
    };
    if state.mesh && ctx.proxies.len() != 2 {
        return Err(Error::Topology(
            "the zring proxies are not running: see `topology status` and their logs".into(),
        ));
    }
    let (date, time) = crate::report::utc(unix_now());
    let request_response = sweep(&mut ctx, &opts.rates, false);
    let connect_per_request = sweep(&mut ctx, &opts.cpr_rates, true);
    let bulk = opts
        .bulk_streams
        .iter()
        .enumerate()
        .map(|(i, &n)| bulk_point(&mut ctx, i, n))
        .collect();
    let passthrough = passthrough_check(&mut ctx);
    drop(ctx.progress);
    Ok(Report {
        started_utc: format!("{date}T{time}Z"),
        commit: crate::report::short_commit(),
        command_line,
        seed: opts.seed,
        machine: Machine::detect(),
        settings: settings(plan, opts),
        request_response,
        connect_per_request,
        bulk,
        passthrough,
        node_link: None,
        failures: ctx.failures,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn settings(plan: &Plan, o: &RunOptions) -> Settings {
    let (mc, ms) = plan.mesh_pair();
    let (bc, bs) = plan.baseline_pair();
    Settings {
        payload_bytes: o.payload,
        conns: o.conns,
        client_cores: o.cores,
        warmup_s: o.warmup.as_secs_f64(),
        duration_s: o.duration.as_secs_f64(),
        bulk_duration_s: o.bulk_duration.as_secs_f64(),
        mesh_client: format!("{} {}", mc.name, mc.ip),
        mesh_server: format!("{} {}:{HTTP_PORT}", ms.name, ms.ip),
        baseline_client: format!("{} {}", bc.name, bc.ip),
        baseline_server: format!("{} {}:{HTTP_PORT}", bs.name, bs.ip),
    }
}

/// The order of the two paths at step `i`: alternating, so neither always runs first.
fn order(i: usize, mesh: bool) -> Vec<Path> {
    match (mesh, i % 2) {
        (false, _) => vec![Path::Baseline],
        (true, 0) => vec![Path::Baseline, Path::Mesh],
        (true, _) => vec![Path::Mesh, Path::Baseline],
    }
}

fn sweep(ctx: &mut Ctx, rates: &[f64], reconnect: bool) -> Vec<RrPoint> {
    let mut points = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        let mut point = RrPoint {
            offered_rps: rate,
            ..RrPoint::default()
        };
        for path in order(i, ctx.mesh.is_some()) {
            let r = rr_phase(ctx, path, rate, reconnect);
            point.saturated |= r.achieved_rps < rate * SATURATION;
            match path {
                Path::Baseline => point.baseline = r,
                Path::Mesh => point.mesh = Some(r),
            }
        }
        let saturated = point.saturated;
        points.push(point);
        if saturated {
            break;
        }
    }
    points
}

fn rr_phase(ctx: &mut Ctx, path: Path, rate: f64, reconnect: bool) -> RrResult {
    let kind = if reconnect { "conn/req" } else { "req/resp" };
    let label = format!("{kind} {rate:.0}/s {path:?}");
    ctx.progress.set(label.clone());
    let o = ctx.opts;
    let p = RrPhase {
        rate,
        conns: o.conns,
        payload: o.payload,
        reconnect,
        warmup: o.warmup,
        duration: o.duration,
        seed: o.seed,
        cores: o.cores,
        closed: false,
        count: None,
    };
    let ep = match (path, &ctx.mesh) {
        (Path::Mesh, Some(m)) => m.0.clone(),
        _ => ctx.baseline.0.clone(),
    };
    let cpu0 = procs::cpu_seconds(&ctx.proxies);
    let mut r = phase::run_rr(&ep, &p).unwrap_or_else(|e| RrResult {
        offered_rps: rate,
        first_error: Some(e.to_string()),
        ..RrResult::default()
    });
    if path == Path::Mesh && r.completed > 0 {
        r.proxy_cpu_s_per_1k =
            Some((procs::cpu_seconds(&ctx.proxies) - cpu0) * 1000.0 / r.completed as f64);
    }
    check_rr(ctx, &label, &r);
    ctx.progress.note(&format!(
        "{label:<28} {:>8.0}/s p50 {:>6}µs p99 {:>7}µs errors {}",
        r.achieved_rps, r.latency.p50_us, r.latency.p99_us, r.errors
    ));
    r
}

/// A short check of the passthrough path: an enrolled client to a server that is not
/// enrolled (protocol TCP) must work and keep the client's source IP.
fn passthrough_check(ctx: &mut Ctx) -> Option<RrResult> {
    let ep = ctx.passthrough.clone()?;
    let label = "passthrough 100/s";
    ctx.progress.set(label);
    let p = RrPhase {
        rate: PASSTHROUGH_RATE,
        conns: 2,
        payload: ctx.opts.payload,
        reconnect: false,
        warmup: Duration::ZERO,
        duration: PASSTHROUGH_TIME,
        seed: ctx.opts.seed,
        cores: 1,
        closed: false,
        count: None,
    };
    let r = phase::run_rr(&ep, &p).unwrap_or_else(|e| RrResult {
        first_error: Some(e.to_string()),
        ..RrResult::default()
    });
    check_rr(ctx, label, &r);
    ctx.progress.note(&format!(
        "{label:<28} {} requests, errors {}",
        r.completed, r.errors
    ));
    Some(r)
}

fn check_rr(ctx: &mut Ctx, label: &str, r: &RrResult) {
    if let Some(c) = &r.correctness {
        ctx.failures.push(format!("{label}: {c}"));
    }
    if r.completed == 0 {
        let why = r
            .first_error
            .clone()
            .unwrap_or_else(|| "no request completed".into());
        ctx.failures
            .push(format!("{label}: no request succeeded: {why}"));
    }
}

fn bulk_point(ctx: &mut Ctx, i: usize, streams: usize) -> BulkPoint {
    let mut point = BulkPoint {
        streams,
        ..BulkPoint::default()
    };
    for path in order(i, ctx.mesh.is_some()) {
        let label = format!("bulk {streams} stream(s) {path:?}");
        ctx.progress.set(label.clone());
        let ep = match (path, &ctx.mesh) {
            (Path::Mesh, Some(m)) => m.1.clone(),
            _ => ctx.baseline.1.clone(),
        };
        let p = BulkPhase {
            streams,
            duration: ctx.opts.bulk_duration,
            seed: ctx.opts.seed,
            cores: ctx.opts.cores,
            bytes: None,
        };
        let cpu0 = procs::cpu_seconds(&ctx.proxies);
        let mut r = phase::run_bulk(&ep, &p).unwrap_or_else(|e| BulkResult {
            streams,
            error: Some(e.to_string()),
            ..BulkResult::default()
        });
        if path == Path::Mesh && r.bytes > 0 {
            r.proxy_cpu_s_per_gb =
                Some((procs::cpu_seconds(&ctx.proxies) - cpu0) * 1e9 / r.bytes as f64);
        }
        if let Some(c) = r
            .correctness
            .clone()
            .or_else(|| r.error.clone().filter(|_| r.bytes == 0))
        {
            ctx.failures.push(format!("{label}: {c}"));
        }
        ctx.progress
            .note(&format!("{label:<28} {:>8.2} Gb/s", r.gbps));
        match path {
            Path::Baseline => point.baseline = r,
            Path::Mesh => point.mesh = Some(r),
        }
    }
    point
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_alternate_when_the_mesh_runs() {
        assert_eq!(order(0, true), vec![Path::Baseline, Path::Mesh]);
        assert_eq!(order(1, true), vec![Path::Mesh, Path::Baseline]);
        assert_eq!(order(1, false), vec![Path::Baseline]);
    }

    #[test]
    fn planned_time_counts_every_phase_on_every_path() {
        let o = RunOptions {
            rates: vec![1.0, 2.0],
            conns: 1,
            payload: 1,
            cpr_rates: vec![1.0],
            bulk_streams: vec![1],
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            bulk_duration: Duration::from_secs(3),
            cores: 1,
            seed: 1,
        };
        let one =
            3 * (Duration::from_secs(3) + PHASE_OVERHEAD) + Duration::from_secs(3) + PHASE_OVERHEAD;
        assert_eq!(planned(&o, 2), one * 2);
    }
}
