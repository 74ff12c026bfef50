//! The report of a run: every figure as JSON, the same as Markdown tables, the SVG
//! plots, and the one-screen summary printed at the end. Rendering is pure (data in,
//! text out); [`write()`] is the only I/O.

mod markdown;
pub mod plot;

pub use markdown::{cost_lines, markdown};

use crate::capture::LinkSummary;
use crate::error::{Error, Result};
use crate::phase::{BulkResult, RrResult};
use serde::{Deserialize, Serialize};
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
