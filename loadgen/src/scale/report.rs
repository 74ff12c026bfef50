//! What `scale` measured (JSON) and the same as Markdown (pure), and the check that a
//! proxy's CPU per single-workload push does not grow with the cluster.

use serde::{Deserialize, Serialize};

use super::cluster::Size;
use super::datapath::DataPath;
use crate::report::Machine;

/// One push: its size, the time from the update to the proxy's ACK, and the proxy's CPU
/// from this push to the next (or to the end of the settle time after the last one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Push {
    /// Resources put plus resources removed.
    pub resources: usize,
    pub ack_ms: f64,
    /// utime + stime from /proc/<pid>/stat (10 ms ticks).
    pub cpu_ms: f64,
    /// The same from /proc/<pid>/task/*/schedstat (ns; live threads only).
    pub run_ms: Option<f64>,
    /// The window both were read over (this push to the next).
    #[serde(default)]
    pub window_ms: f64,
}

/// One proxy on one cluster size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyRun {
    pub proxy: String,
    pub size: Size,
    /// From the control plane's first Address response to the first 200 on 15021.
    pub ready_s: Option<f64>,
    /// From the first Address response to its ACK.
    pub first_ack_s: Option<f64>,
    /// CPU from start to ready (and both initial ACKs).
    pub cpu_ready_s: Option<f64>,
    /// VmRSS and VmHWM once ready.
    pub rss_ready_mb: Option<f64>,
    pub peak_ready_mb: Option<f64>,
    /// The idle proxy's CPU (schedstat) in ms per second, read for 2 s once ready: a
    /// push's window (ACK time + 100 ms settle) carries about a tenth of it.
    pub idle_run_ms_per_s: Option<f64>,
    /// Single-workload additions, in order.
    pub singles: Vec<Push>,
    pub bulk_add: Option<Push>,
    pub bulk_remove: Option<Push>,
    /// VmRSS and VmHWM after the last push.
    pub rss_end_mb: Option<f64>,
    pub peak_end_mb: Option<f64>,
    /// The data path with the cluster loaded, after the pushes ([`super::datapath`]).
    #[serde(default)]
    pub data_path: Option<DataPath>,
    /// Why the data path could not be measured (the rest of the run stands).
    #[serde(default)]
    pub data_path_error: Option<String>,
    /// Why the run stopped early.
    pub error: Option<String>,
}

impl ProxyRun {
    pub fn new(proxy: &str, size: Size) -> ProxyRun {
        ProxyRun {
            proxy: proxy.into(),
            size,
            ready_s: None,
            first_ack_s: None,
            cpu_ready_s: None,
            rss_ready_mb: None,
            peak_ready_mb: None,
            idle_run_ms_per_s: None,
            singles: Vec::new(),
            bulk_add: None,
            bulk_remove: None,
            rss_end_mb: None,
            peak_end_mb: None,
            data_path: None,
            data_path_error: None,
            error: None,
        }
    }

    /// Sum of the single pushes' CPU (ms): the figure the growth check compares.
    pub fn singles_cpu_ms(&self) -> f64 {
        self.singles.iter().map(|p| p.cpu_ms).sum()
    }

    fn median(&self, f: impl Fn(&Push) -> Option<f64>) -> Option<f64> {
        let mut v: Vec<f64> = self.singles.iter().filter_map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
}

/// The settings of a run (enough, with the command line, to reproduce it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScaleSettings {
    pub sizes: Vec<Size>,
    pub singles: usize,
    pub bulk: usize,
    pub cores: usize,
    pub quick: bool,
    pub zring: String,
    pub peer: String,
}

/// Everything `zring-loadgen scale` measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScaleReport {
    pub started_utc: String,
    pub commit: String,
    pub command_line: Vec<String>,
    pub seed: u64,
    pub machine: Machine,
    /// `/proc/loadavg` before and after the run: other work on the machine slows wall
    /// times (ready, ACK) more than the proxies' own CPU.
    pub load_before: String,
    pub load_after: String,
    pub settings: ScaleSettings,
    pub runs: Vec<ProxyRun>,
}

impl ScaleReport {
    pub fn run(&self, proxy: &str, workloads: usize) -> Option<&ProxyRun> {
        let mut it = self.runs.iter();
        it.find(|r| r.proxy == proxy && r.size.workloads == workloads)
    }

    /// Runs that stopped early, as `proxy at N: why`.
    pub fn failures(&self) -> Vec<String> {
        let failed = self.runs.iter().filter_map(|r| {
            let e = r.error.as_ref()?;
            Some(format!(
                "{} at {} workloads: {e}",
                r.proxy, r.size.workloads
            ))
        });
        failed.collect()
    }
}

/// How much a proxy's CPU per single-workload push may grow from the smallest to the
/// largest size: at most `RATIO` times, plus `ALLOWANCE_MS` for /proc's 10 ms ticks
/// (the sum over the pushes is read from contiguous windows, so it is off by at most a
/// tick or two, plus the idle proxy's own timers during the settle times).
pub const GROWTH_RATIO: f64 = 3.0;
pub const GROWTH_ALLOWANCE_MS: f64 = 60.0;

/// Whether `proxy`'s summed CPU over the single pushes at the largest size stays within
/// [`GROWTH_RATIO`]× that at the smallest + [`GROWTH_ALLOWANCE_MS`]; Err says by how much not.
pub fn growth_check(r: &ScaleReport, proxy: &str) -> Result<String, String> {
    let runs: Vec<&ProxyRun> = r.runs.iter().filter(|x| x.proxy == proxy).collect();
    let (Some(small), Some(large)) = (
        runs.iter().min_by_key(|x| x.size.workloads),
        runs.iter().max_by_key(|x| x.size.workloads),
    ) else {
        return Err(format!("no {proxy} run"));
    };
    if small.size == large.size {
        return Err(format!("{proxy} ran at one size only"));
    }
    for x in [small, large] {
        if let Some(e) = &x.error {
            return Err(format!("{proxy} at {}: {e}", x.size.workloads));
        }
    }
    let (a, b) = (small.singles_cpu_ms(), large.singles_cpu_ms());
    let limit = GROWTH_RATIO * a + GROWTH_ALLOWANCE_MS;
    let text = format!(
        "{proxy}: CPU over {} single-workload pushes {b:.0} ms at {} workloads vs {a:.0} ms \
         at {} (limit {GROWTH_RATIO}× + {GROWTH_ALLOWANCE_MS} ms = {limit:.0} ms)",
        large.singles.len(),
        large.size.workloads,
        small.size.workloads
    );
    if b <= limit {
        Ok(text)
    } else {
        Err(text)
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn push_cell(p: &Option<Push>) -> String {
    p.as_ref().map_or("–".into(), |p| {
        format!("{:.0} ms CPU, ACK {:.0} ms", p.cpu_ms, p.ack_ms)
    })
}

fn data_path_cell(r: &ProxyRun, f: impl Fn(&DataPath) -> String) -> String {
    match (&r.data_path, &r.data_path_error) {
        (Some(d), _) => f(d),
        (None, Some(e)) => format!("failed: {e}"),
        (None, None) => "–".into(),
    }
}

/// One row per figure, one column per proxy.
fn rows(runs: &[&ProxyRun]) -> Vec<(String, Vec<String>)> {
    type Cell = fn(&ProxyRun) -> String;
    let figures: [(&str, Cell); 13] = [
        ("ready after first response", |r| {
            format!("{} s", num(r.ready_s, 2))
        }),
        ("first response → ACK", |r| {
            format!("{} s", num(r.first_ack_s, 2))
        }),
        ("CPU from start to ready", |r| {
            format!("{} s", num(r.cpu_ready_s, 2))
        }),
        ("RSS once ready (peak)", |r| {
            format!(
                "{} MB ({} MB)",
                num(r.rss_ready_mb, 0),
                num(r.peak_ready_mb, 0)
            )
        }),
        ("CPU per single-workload push: median (sum)", |r| {
            let m = r.median(|p| Some(p.cpu_ms));
            format!("{} ms ({:.0} ms)", num(m, 0), r.singles_cpu_ms())
        }),
        ("  … from schedstat, median", |r| {
            format!("{} ms", num(r.median(|p| p.run_ms), 2))
        }),
        ("idle CPU (schedstat) per second", |r| {
            format!("{} ms", num(r.idle_run_ms_per_s, 2))
        }),
        (
            "  … per push less the idle share of its window, median",
            |r| {
                let idle = r.idle_run_ms_per_s;
                let net = |p: &Push| Some(p.run_ms? - idle? * p.window_ms / 1e3);
                format!("{} ms", num(r.median(net), 2))
            },
        ),
        ("push → ACK per single workload: median (max)", |r| {
            let max = r
                .singles
                .iter()
                .map(|p| p.ack_ms)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            format!(
                "{} ms ({} ms)",
                num(r.median(|p| Some(p.ack_ms)), 1),
                num(max, 1)
            )
        }),
        ("push of 1000 / removal of 1020", |r| {
            format!("{} / {}", push_cell(&r.bulk_add), push_cell(&r.bulk_remove))
        }),
        ("RSS after the pushes (peak)", |r| {
            format!("{} MB ({} MB)", num(r.rss_end_mb, 0), num(r.peak_end_mb, 0))
        }),
        (
            "data path: new connections/s via SOCKS5 (median µs each)",
            |r| {
                data_path_cell(r, |d| {
                    format!("{:.0} ({:.0} µs)", d.conns_per_s, d.conn_p50_us)
                })
            },
        ),
        (
            "data path: 1 KiB echo on a held connection, p50 / p99",
            |r| {
                data_path_cell(r, |d| {
                    format!("{:.0} / {:.0} µs", d.echo_p50_us, d.echo_p99_us)
                })
            },
        ),
    ];
    figures
        .iter()
        .map(|(name, cell)| (name.to_string(), runs.iter().map(|r| cell(r)).collect()))
        .collect()
}

/// The report as Markdown: one table per cluster size, then failures and the check.
pub fn markdown(r: &ScaleReport) -> String {
    let mut out = format!(
        "# zring-loadgen scale: {} ({})\n\nCommand: `{}`  \nMachine: {} cores, {}, kernel {}; \
         load average before {}, after {}  \n\
         Seed {}; {} single-workload pushes, then {} at once and their removal; {} cores per proxy.\n",
        r.commit,
        r.started_utc,
        r.command_line.join(" "),
        r.machine.cores,
        r.machine.cpu_model,
        r.machine.kernel,
        r.load_before,
        r.load_after,
        r.seed,
        r.settings.singles,
        r.settings.bulk,
        r.settings.cores,
    );
    for size in &r.settings.sizes {
        let runs: Vec<&ProxyRun> = r.runs.iter().filter(|x| x.size == *size).collect();
        if runs.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\n## {} workloads, {} services\n\n| figure |",
            size.workloads, size.services
        ));
        for x in &runs {
            out.push_str(&format!(" {} |", x.proxy));
        }
        out.push_str(&format!("\n|---|{}\n", "---|".repeat(runs.len())));
        for (name, cells) in rows(&runs) {
            out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
        }
    }
    let failures = r.failures();
    if !failures.is_empty() {
        out.push_str("\n## Runs that stopped early\n\n");
        for f in failures {
            out.push_str(&format!("- {f}\n"));
        }
    }
    if r.settings.sizes.len() > 1 {
        out.push_str("\n## CPU per push against cluster size\n\n");
        for proxy in ["ztunnel", "zring"] {
            if r.runs.iter().any(|x| x.proxy == proxy) {
                let line = match growth_check(r, proxy) {
                    Ok(t) => format!("- holds: {t}\n"),
                    Err(t) => format!("- **grows**: {t}\n"),
                };
                out.push_str(&line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
