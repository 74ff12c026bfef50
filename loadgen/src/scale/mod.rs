//! `zring-loadgen scale`: what a cluster's size costs each proxy. The project's control
//! plane serves a generated cluster ([`cluster`]) over delta ADS to istio/ztunnel, then
//! to zring, each alone in a namespace of its own ([`measure`]): time from the first
//! response to ready, RSS and its peak, CPU, then single-workload pushes, a bulk push and
//! its removal, each timed to its ACK with the proxy's CPU. [`report`] renders it and
//! checks that CPU per push does not grow with the cluster.
//!
//! The control plane applies each push by name ([`crate::control::Update`]), so its own
//! work per push is O(1) and what is timed is the proxy.

pub mod cluster;
pub mod datapath;
pub mod measure;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::peer::{check_executable, Proxy};
use cluster::Size;
use report::{ScaleReport, ScaleSettings};

/// What `scale` was asked to do.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub peer: PathBuf,
    pub zring: PathBuf,
    /// Cluster sizes, measured in this order.
    pub sizes: Vec<Size>,
    /// The proxies, measured in this order at each size.
    pub proxies: Vec<Proxy>,
    /// Single-workload pushes (each adds one workload).
    pub singles: usize,
    /// Workloads of the bulk push (then all added ones are removed in one push).
    pub bulk: usize,
    pub cores: usize,
    pub prefix: String,
    pub seed: u64,
    pub quick: bool,
    /// How long a proxy may take to become ready (and to ACK its first state).
    pub ready_timeout: Duration,
    /// How long a proxy may take to ACK one push.
    pub ack_timeout: Duration,
}

/// The sizes of `--quick`: the growth check compares them.
pub const QUICK_SIZES: [usize; 2] = [1_000, 5_000];

impl ScaleOptions {
    /// Defaults for `workloads` (and a tenth as many services) per size.
    pub fn new(zring: PathBuf, peer: PathBuf, workloads: &[usize]) -> ScaleOptions {
        ScaleOptions {
            peer,
            zring,
            sizes: workloads
                .iter()
                .map(|&w| Size {
                    workloads: w,
                    services: (w / 10).max(1),
                })
                .collect(),
            proxies: vec![Proxy::Ztunnel, Proxy::Zring],
            singles: 20,
            bulk: 1000,
            cores: 2,
            prefix: "zrs-".into(),
            seed: 1,
            quick: false,
            ready_timeout: Duration::from_secs(600),
            ack_timeout: Duration::from_secs(300),
        }
    }
}

/// Measures every proxy at every size and returns the report (runs that failed carry
/// their error; see [`ScaleReport::failures`]).
pub fn run(o: &ScaleOptions, command_line: Vec<String>) -> Result<ScaleReport> {
    for p in &o.proxies {
        match p {
            Proxy::Ztunnel => check_executable("peer binary", &o.peer, "pass --peer PATH")?,
            Proxy::Zring => check_executable(
                "zring binary",
                &o.zring,
                "build it (cargo build --release -p zring-proxy) or pass --zring PATH",
            )?,
        }
    }
    crate::sys::raise_nofile(65_536).map_err(Error::io("raising RLIMIT_NOFILE"))?;
    let _labs = crate::peer::setup::Labs::new(&o.prefix)?;
    let dir = crate::procs::state_dir(&format!("{}scale", o.prefix));
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (date, time) = crate::report::utc(started);
    let mut r = ScaleReport {
        started_utc: format!("{date}T{time}Z"),
        commit: crate::report::short_commit(),
        command_line,
        seed: o.seed,
        machine: crate::report::Machine::detect(),
        load_before: load_average(),
        load_after: String::new(),
        settings: settings(o),
        runs: Vec::new(),
    };
    for &size in &o.sizes {
        for &proxy in &o.proxies {
            eprintln!("{} at {} workloads …", proxy.name(), size.workloads);
            let run = measure::proxy_on(o, proxy, size, &dir);
            eprintln!("{}", summary(&run));
            r.runs.push(run);
        }
    }
    r.load_after = load_average();
    Ok(r)
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn settings(o: &ScaleOptions) -> ScaleSettings {
    ScaleSettings {
        sizes: o.sizes.clone(),
        singles: o.singles,
        bulk: o.bulk,
        cores: o.cores,
        quick: o.quick,
        zring: o.zring.display().to_string(),
        peer: o.peer.display().to_string(),
    }
}

fn summary(r: &report::ProxyRun) -> String {
    match &r.error {
        Some(e) => format!("{} at {}: failed: {e}", r.proxy, r.size.workloads),
        None => format!(
            "{:<8} {:>8} workloads: ready {:.2} s, RSS {:.0} MB, CPU over {} single pushes {:.0} ms",
            r.proxy,
            r.size.workloads,
            r.ready_s.unwrap_or(f64::NAN),
            r.rss_ready_mb.unwrap_or(f64::NAN),
            r.singles.len(),
            r.singles_cpu_ms()
        ),
    }
}

/// Writes report.json and report.md into `results/<date>-<commit>-scale/`.
pub fn write(r: &ScaleReport, out: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let commit = format!("{}-scale", r.commit);
    let dir = crate::report::run_dir(out, &r.started_utc[..10], &commit);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let files = [
        (
            "report.json",
            serde_json::to_string_pretty(r).expect("report serialises"),
        ),
        ("report.md", report::markdown(r)),
    ];
    let written = files
        .into_iter()
        .map(|(name, text)| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(Error::io(format!("writing {}", p.display())))?;
            Ok(p)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((dir, written))
}
