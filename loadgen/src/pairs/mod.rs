//! `zring-loadgen pairs`: new pod pairs across nodes. M source workloads on node A ×
//! K destination workloads on node B, one connection each, so every pair needs its own
//! HBONE connection ([`lab`] says why on each proxy). Per target, each repeat starts both
//! proxies fresh and runs every pair twice ([`load`]): `cold` (nothing known yet), then,
//! once both pools have let every connection go, `warm` (the same pairs again: a new
//! connection each, whose TLS session zring can resume). The SYNs reaching node B's
//! 15008 are counted per pass to show one connection per pair. Targets alternate per
//! repeat; the report takes medians ([`render`]).

pub mod lab;
pub mod load;
pub mod render;

use crate::error::{Error, Result};
use crate::procs;
use crate::report::Machine;
use lab::{Kind, Lab};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `pairs` was asked to do.
#[derive(Debug, Clone)]
pub struct PairsOptions {
    pub peer: PathBuf,
    /// zring builds to measure, by column name (`zring`, and e.g. `zring-base`).
    pub zrings: Vec<(String, PathBuf)>,
    /// The peer's test root certificate and key.
    pub root: (PathBuf, PathBuf),
    pub prefix: String,
    pub sources: usize,
    pub dests: usize,
    pub concurrency: usize,
    pub repeats: usize,
    pub seed: u64,
}

/// One repeat of one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PairSample {
    pub pairs: u64,
    pub failures: u64,
    pub reasons: Vec<String>,
    pub wall_s: f64,
    pub pairs_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// CPU seconds of both proxies (node A + node B) over the pairs.
    pub proxy_cpu_s: f64,
    pub cpu_ms_per_pair: f64,
    /// New connections (SYNs) node B's 15008 received during the pass.
    pub hbone_conns: u64,
    pub host_busy_pct: f64,
}

/// A whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PairsReport {
    pub started_utc: String,
    pub commit: String,
    pub command_line: Vec<String>,
    pub machine: Machine,
    pub seed: u64,
    pub sources: usize,
    pub dests: usize,
    pub concurrency: usize,
    pub repeats: usize,
    pub uptime_before: String,
    pub uptime_after: String,
    /// Pass (`cold`, `warm`) → target name → one sample per repeat.
    pub samples: BTreeMap<String, BTreeMap<String, Vec<PairSample>>>,
    pub columns: Vec<String>,
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Runs every target `repeats` times, alternating their order, and returns the report.
pub fn run(o: &PairsOptions, command_line: Vec<String>) -> Result<PairsReport> {
    if o.sources == 0 || o.dests == 0 || o.sources.max(o.dests) > lab::MAX_WORKLOADS {
        return Err(Error::Peer(format!(
            "--sources and --dests must be 1..={}",
            lab::MAX_WORKLOADS
        )));
    }
    let guard = crate::peer::setup::Labs::new(&o.prefix)?;
    let dir = procs::state_dir(&o.prefix);
    let first = o
        .zrings
        .first()
        .map(|z| z.1.as_path())
        .unwrap_or(Path::new("zring"));
    let root = (o.root.0.as_path(), o.root.1.as_path());
    lab::write_inputs(&dir, first, root, o.sources, o.dests)?;
    let mut labs = vec![lab::build(
        &o.prefix,
        "zt",
        Kind::Ztunnel(o.peer.clone()),
        o.sources,
        o.dests,
    )?];
    for (i, (_, bin)) in o.zrings.iter().enumerate() {
        labs.push(lab::build(
            &o.prefix,
            &format!("z{i}"),
            Kind::Zring(bin.clone()),
            o.sources,
            o.dests,
        )?);
    }
    let names: Vec<String> = std::iter::once("ztunnel".to_string())
        .chain(o.zrings.iter().map(|z| z.0.clone()))
        .collect();
    let (date, time) = crate::report::utc(unix_now());
    let mut r = PairsReport {
        started_utc: format!("{date}T{time}Z"),
        commit: crate::report::short_commit(),
        command_line,
        machine: Machine::detect(),
        seed: o.seed,
        sources: o.sources,
        dests: o.dests,
        concurrency: o.concurrency,
        repeats: o.repeats,
        uptime_before: uptime(),
        columns: names.clone(),
        ..PairsReport::default()
    };
    for rep in 0..o.repeats {
        let mut idx: Vec<usize> = (0..labs.len()).collect();
        if rep % 2 == 1 {
            idx.reverse();
        }
        for i in idx {
            let pairs = load::order(o.sources, o.dests, o.seed.wrapping_add(rep as u64));
            let passes = measure(&labs[i], &dir, &pairs, o.concurrency)?;
            for (pass, s) in PASSES.iter().zip(passes) {
                eprintln!(
                    "pairs: repeat {rep} {} {pass}: {:.0} pairs/s, p99 {} µs, {:.3} ms CPU/pair, {} new HBONE conns, {} failures",
                    names[i], s.pairs_per_s, s.p99_us, s.cpu_ms_per_pair, s.hbone_conns, s.failures
                );
                let by_target = r.samples.entry(pass.to_string()).or_default();
                by_target.entry(names[i].clone()).or_default().push(s);
            }
        }
    }
    r.uptime_after = uptime();
    drop(guard);
    Ok(r)
}

/// The two passes over the pairs, in order.
pub const PASSES: [&str; 2] = ["cold", "warm"];
/// How long the pools may take to let every connection go between the passes.
const RELEASE_WAIT: Duration = Duration::from_secs(20);

/// One repeat on one lab: fresh proxies, both passes.
fn measure(
    lab: &Lab,
    dir: &Path,
    pairs: &[(usize, usize)],
    conc: usize,
) -> Result<Vec<PairSample>> {
    let procs_ = lab::start_proxies(lab, dir)?;
    let pids: Vec<i32> = procs_.iter().map(|p| p.pid).collect();
    let r = passes(lab, &pids, pairs, conc);
    procs::terminate(&pids);
    r
}

fn passes(
    lab: &Lab,
    pids: &[i32],
    pairs: &[(usize, usize)],
    conc: usize,
) -> Result<Vec<PairSample>> {
    lab::take_syns(&lab.b)?;
    let cold = pass(lab, pids, pairs, conc)?;
    let deadline = Instant::now() + RELEASE_WAIT;
    while lab::established(&lab.b, 15008)? > 0 {
        if Instant::now() > deadline {
            return Err(Error::Peer(format!(
                "{}: HBONE connections still open {RELEASE_WAIT:?} after the cold pass \
                 (pool idle timeout {})",
                lab.name,
                lab::POOL_IDLE
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    lab::take_syns(&lab.b)?;
    let warm = pass(lab, pids, pairs, conc)?;
    Ok(vec![cold, warm])
}

/// Every pair once: CPU of both proxies, new connections on B.
fn pass(lab: &Lab, pids: &[i32], pairs: &[(usize, usize)], conc: usize) -> Result<PairSample> {
    let n = pairs.len() as u64;
    let (cpu0, host0) = (procs::cpu_seconds(pids), procs::host_busy());
    let out = load::run(&lab.a, lab.socks(), pairs.to_vec(), conc)?;
    let (cpu1, host1) = (procs::cpu_seconds(pids), procs::host_busy());
    let conns = lab::take_syns(&lab.b)?;
    let p = out.hist.summary();
    let cpu = cpu1 - cpu0;
    let ok = n - out.failures;
    Ok(PairSample {
        pairs: n,
        failures: out.failures,
        reasons: out.reasons,
        wall_s: out.wall.as_secs_f64(),
        pairs_per_s: ok as f64 / out.wall.as_secs_f64(),
        p50_us: p.p50_us,
        p99_us: p.p99_us,
        proxy_cpu_s: cpu,
        cpu_ms_per_pair: cpu * 1000.0 / ok.max(1) as f64,
        hbone_conns: conns,
        host_busy_pct: crate::peer::figures::busy_pct(host0, host1),
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `report.json` and `report.md` into `<out>/<date>-<commit>-pairs/`.
pub fn write(r: &PairsReport, out: &Path) -> Result<PathBuf> {
    let dir = crate::report::run_dir(out, &r.started_utc[..10], &format!("{}-pairs", r.commit));
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let json = serde_json::to_string_pretty(r).expect("report serialises");
    for (name, text) in [("report.json", json), ("report.md", render::markdown(r))] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(Error::io(format!("writing {}", p.display())))?;
    }
    Ok(dir)
}
