//! `process_*` gauges read from `/proc/self` at scrape time (never on the data path).

use std::fmt::Write;

/// Values absent when `/proc` cannot be read are not rendered.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sample {
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub resident_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
}

/// The soft limit from `/proc/self/limits` text.
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `(cpu seconds, resident pages)` from `/proc/self/stat` text, `ticks` per second.
pub fn parse_stat(stat: &str, ticks: f64) -> Option<(f64, u64)> {
    // Fields after the parenthesised command name; utime/stime are fields 14/15, rss 24.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let rss: u64 = f.get(21)?.parse().ok()?;
    Some(((utime + stime) / ticks, rss))
}

/// Linux's USER_HZ and page size on the platforms zring runs on.
const TICKS: f64 = 100.0;
const PAGE: u64 = 4096;

impl Sample {
    pub fn read() -> Sample {
        let fds = std::fs::read_dir("/proc/self/fd").ok();
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let stat = stat.as_deref().and_then(|s| parse_stat(s, TICKS));
        Sample {
            open_fds: fds.map(|d| d.count() as u64),
            max_fds: limits.as_deref().and_then(parse_max_fds),
            resident_bytes: stat.map(|(_, rss)| rss * PAGE),
            cpu_seconds: stat.map(|(cpu, _)| cpu),
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, kind: &str, v: Option<String>) {
    if let Some(v) = v {
        let _ = writeln!(
            out,
            "# HELP {name} {help}.\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}

pub fn render(out: &mut String, s: &Sample) {
    let n = |v: Option<u64>| v.map(|v| v.to_string());
    gauge(
        out,
        "process_open_fds",
        "Open file descriptors",
        "gauge",
        n(s.open_fds),
    );
    gauge(
        out,
        "process_max_fds",
        "Maximum open file descriptors",
        "gauge",
        n(s.max_fds),
    );
    gauge(
        out,
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        "gauge",
        n(s.resident_bytes),
    );
    gauge(
        out,
        "process_cpu_seconds_total",
        "User and system CPU time spent in seconds",
        "counter",
        s.cpu_seconds.map(|v| format!("{v:.2}")),
    );
}
