//! The report of a run: every figure as JSON, the same as Markdown tables, the SVG
//! plots, and the one-screen summary printed at the end. Rendering is pure (data in,
//! text out); [`write`] is the only I/O.

pub mod plot;

use crate::capture::LinkSummary;
use crate::error::{Error, Result};
use crate::phase::{BulkResult, RrResult};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The machine a run was measured on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub cpu_model: String,
}

impl Machine {
    /// Reads cores, kernel release and CPU model from /proc.
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu_model,
        }
    }
}

/// The settings a run used (enough to reproduce it with the command line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    pub payload_bytes: usize,
    pub conns: usize,
    pub client_cores: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub bulk_duration_s: f64,
    pub mesh_client: String,
    pub mesh_server: String,
    pub baseline_client: String,
    pub baseline_server: String,
}

/// One offered rate (or connection rate): baseline and mesh side by side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RrPoint {
    pub offered_rps: f64,
    pub baseline: RrResult,
    pub mesh: Option<RrResult>,
    /// The achieved rate fell below 90% of the offered one (sweep stops here).
    pub saturated: bool,
}

impl RrPoint {
    /// Added p50 and p99 latency of the mesh over the baseline, µs.
    pub fn added_us(&self) -> Option<(i64, i64)> {
        let m = self.mesh.as_ref()?;
        let d = |a: u64, b: u64| a as i64 - b as i64;
        Some((
            d(m.latency.p50_us, self.baseline.latency.p50_us),
            d(m.latency.p99_us, self.baseline.latency.p99_us),
        ))
    }
}

/// One bulk setting: baseline and mesh.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BulkPoint {
    pub streams: usize,
    pub baseline: BulkResult,
    pub mesh: Option<BulkResult>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub started_utc: String,
    pub commit: String,
    pub command_line: Vec<String>,
    pub seed: u64,
    pub machine: Machine,
    pub settings: Settings,
    /// Request/response, HTTP/1.1 keep-alive, per offered rate.
    pub request_response: Vec<RrPoint>,
    /// New TCP connection per request, per offered connection rate.
    pub connect_per_request: Vec<RrPoint>,
    pub bulk: Vec<BulkPoint>,
    /// The passthrough check (enrolled client → not-enrolled server), mesh runs only.
    #[serde(default)]
    pub passthrough: Option<RrResult>,
    /// What tcpdump saw of the mesh pair on the node link (`--pcap`).
    #[serde(default)]
    pub node_link: Option<LinkSummary>,
    /// Correctness failures (wrong source IP, checksum, lost bytes); empty = passed.
    pub failures: Vec<String>,
}

impl Report {
    /// True when some point was measured through the mesh.
    pub fn has_mesh(&self) -> bool {
        let rr = self
            .request_response
            .iter()
            .chain(&self.connect_per_request);
        rr.clone().any(|p| p.mesh.is_some()) || self.bulk.iter().any(|b| b.mesh.is_some())
    }

    /// Records the node-link capture; on a mesh run, plaintext app traffic of the mesh
    /// pair or no HBONE at all between the nodes is a failure.
    pub fn check_node_link(&mut self, s: LinkSummary) {
        self.node_link = Some(s);
        if !self.has_mesh() {
            return;
        }
        if s.plaintext_packets > 0 {
            self.failures.push(format!(
                "node link: {} plaintext app-port packets of the mesh pair crossed between the nodes \
                 (expected only HBONE on 15008): capture is not redirecting to the proxy",
                s.plaintext_packets
            ));
        }
        if s.hbone_packets == 0 {
            self.failures
                .push("node link: no HBONE (15008) packet of the mesh pair was seen".into());
        }
    }

    /// True when no correctness check failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn us(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1}ms", v as f64 / 1000.0)
    } else {
        format!("{v}µs")
    }
}

fn opt<T>(o: Option<T>, f: impl Fn(T) -> String) -> String {
    o.map(f).unwrap_or_else(|| "-".into())
}

fn percentile_rows(out: &mut String, label: &str, points: &[RrPoint]) {
    for p in points {
        let paths = [("baseline", Some(&p.baseline)), ("mesh", p.mesh.as_ref())];
        for (path, r) in paths.into_iter().filter_map(|(n, r)| Some((n, r?))) {
            let l = &r.latency;
            let _ = writeln!(
                out,
                "| {label} {:.0}/s | {path} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.offered_rps,
                l.count,
                us(l.p50_us),
                us(l.p90_us),
                us(l.p99_us),
                us(l.p999_us),
                us(l.max_us),
                r.errors,
                r.missed,
            );
        }
    }
}

fn rr_rows(out: &mut String, label: &str, points: &[RrPoint]) {
    for p in points {
        let b = &p.baseline;
        let m = p.mesh.as_ref();
        let added = opt(p.added_us(), |(a50, a99)| format!("{a50:+}/{a99:+}µs"));
        let _ = writeln!(
            out,
            "| {label} {:.0}/s | {:.0}/s | {} / {} / {} | {} | {} | {} |",
            p.offered_rps,
            b.achieved_rps,
            us(b.latency.p50_us),
            us(b.latency.p99_us),
            us(b.latency.p999_us),
            opt(m, |m| format!(
                "{:.0}/s, {} / {} / {}",
                m.achieved_rps,
                us(m.latency.p50_us),
                us(m.latency.p99_us),
                us(m.latency.p999_us)
            )),
            added,
            opt(m.and_then(|m| m.proxy_cpu_s_per_1k), |c| format!("{c:.3}")),
        );
    }
}

/// The Markdown report (also the summary printed at the end of a run).
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# zring-loadgen report {}\n", r.started_utc);
    let _ = writeln!(
        o,
        "commit `{}`, seed {}, {} cores, kernel {}, {}\n\n`{}`\n",
        r.commit,
        r.seed,
        r.machine.cores,
        r.machine.kernel,
        r.machine.cpu_model,
        r.command_line.join(" ")
    );
    let s = &r.settings;
    let _ = writeln!(
        o,
        "mesh {} → {} vs baseline {} → {}; payload {} B each way, {} connections, {} client cores, \
         warm-up {} s discarded, {} s measured per point\n",
        s.mesh_client, s.mesh_server, s.baseline_client, s.baseline_server, s.payload_bytes, s.conns,
        s.client_cores, s.warmup_s, s.duration_s
    );
    let _ = writeln!(
        o,
        "## Latency (p50 / p99 / p99.9, from intended send time)\n"
    );
    let _ = writeln!(o, "| scenario, offered | baseline achieved (req/s, conn/s for conn/req) | baseline | mesh | added p50/p99 | proxy CPU s / 1k req |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    rr_rows(&mut o, "req/resp", &r.request_response);
    rr_rows(&mut o, "conn/req", &r.connect_per_request);
    let _ = writeln!(
        o,
        "\n## All percentiles\n\n| scenario | path | samples | p50 | p90 | p99 | p99.9 | max | errors | missed sends |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    percentile_rows(&mut o, "req/resp", &r.request_response);
    percentile_rows(&mut o, "conn/req", &r.connect_per_request);
    if !r.bulk.is_empty() {
        let _ = writeln!(o, "\n## Bulk throughput\n\n| streams | baseline Gb/s | mesh Gb/s | mesh/baseline | proxy CPU s / GB |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        for b in &r.bulk {
            let m = b.mesh.as_ref();
            let ratio = m
                .filter(|_| b.baseline.gbps > 0.0)
                .map(|m| m.gbps / b.baseline.gbps);
            let _ = writeln!(
                o,
                "| {} | {:.2} | {} | {} | {} |",
                b.streams,
                b.baseline.gbps,
                opt(m, |m| format!("{:.2}", m.gbps)),
                opt(ratio, |x| format!("{:.0}%", x * 100.0)),
                opt(m.and_then(|m| m.proxy_cpu_s_per_gb), |c| format!("{c:.3}")),
            );
        }
    }
    let verdict = if r.passed() {
        "PASSED".to_string()
    } else {
        format!("FAILED: {}", r.failures.join("; "))
    };
    let _ = writeln!(
        o,
        "\n## Correctness\n\nsource IP and payload checks: {verdict}"
    );
    if let Some(l) = &r.node_link {
        let _ = writeln!(
            o,
            "\nnode link (tcpdump on node A eth0, mesh pair): {} HBONE SYN/FIN/RST packets, {} plaintext app-port ones",
            l.hbone_packets, l.plaintext_packets
        );
    }
    if let Some(p) = &r.passthrough {
        let _ = writeln!(
            o,
            "\npassthrough (enrolled client → not-enrolled server, plain TCP through the proxy): \
             {} requests, {} errors",
            p.completed, p.errors
        );
    }
    o
}

/// Writes report.json, report.md and the plots into `dir`.
pub fn write(r: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let files = [
        (
            "report.json",
            serde_json::to_string_pretty(r).expect("report serialises"),
        ),
        ("report.md", markdown(r)),
        ("latency.svg", plot::latency_svg(r)),
        ("throughput.svg", plot::throughput_svg(r)),
    ];
    files
        .into_iter()
        .map(|(name, text)| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(Error::io(format!("writing {}", p.display())))?;
            Ok(p)
        })
        .collect()
}

/// `results/<UTC date>-<short commit>`, with `-2`, `-3`… if taken.
pub fn run_dir(root: &Path, date: &str, commit: &str) -> PathBuf {
    let base = format!("{date}-{commit}");
    let mut dir = root.join(&base);
    let mut n = 2;
    while dir.exists() {
        dir = root.join(format!("{base}-{n}"));
        n += 1;
    }
    dir
}

/// Civil UTC date and time of a Unix timestamp: (`YYYY-MM-DD`, `HH:MM:SS`).
pub fn utc(unix: u64) -> (String, String) {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    (format!("{y:04}-{m:02}-{d:02}"), time)
}

/// The short commit of the repository in the current directory, else of the source tree
/// this binary was built from (`unknown` outside git).
pub fn short_commit() -> String {
    let git = |dir: &str| {
        std::process::Command::new("git")
            .args(["-C", dir, "rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    git(".")
        .or_else(|| git(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests;
