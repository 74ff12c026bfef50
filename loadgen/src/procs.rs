//! The processes a topology runs (servers, proxies): the state directory that records
//! them, spawning a detached child inside a pod's namespace, finding every process in
//! a namespace (so `down` works even without the state file), and their CPU time.

use crate::error::{Error, Result};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Root of the per-topology state directories.
pub const STATE_ROOT: &str = "/run/zring-loadgen";
/// How long `down` waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// One tracked child process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// `server`, `zring` …
    pub kind: String,
    pub netns: String,
    pub pid: i32,
    pub log: PathBuf,
}

/// What `state.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub prefix: String,
    /// Whether the proxies run (false: baseline-only topology).
    pub mesh: bool,
    pub procs: Vec<Proc>,
}

/// The state directory of topology `prefix`.
pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(prefix.trim_end_matches('-'))
}

impl State {
    fn file(prefix: &str) -> PathBuf {
        state_dir(prefix).join("state.json")
    }

    /// Reads the state of topology `prefix`; `Ok(None)` when none was written.
    pub fn load(prefix: &str) -> Result<Option<State>> {
        let path = Self::file(prefix);
        match fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| Error::State {
                    path,
                    detail: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::State {
                path,
                detail: e.to_string(),
            }),
        }
    }

    /// Writes the state (atomically: temp file + rename).
    pub fn save(&self) -> Result<()> {
        let dir = state_dir(&self.prefix);
        fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let path = Self::file(&self.prefix);
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(self).expect("state serialises");
        fs::write(&tmp, text).map_err(Error::io(format!("writing {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(Error::io(format!("writing {}", path.display())))
    }

    /// Pids of the tracked processes of `kind` that are still alive.
    pub fn alive(&self, kind: &str) -> Vec<i32> {
        self.procs
            .iter()
            .filter(|p| p.kind == kind && is_alive(p.pid))
            .map(|p| p.pid)
            .collect()
    }
}

/// Starts `program args` detached inside namespace `netns`, output to `log`.
pub fn spawn_in(
    netns: &str,
    kind: &str,
    program: &Path,
    args: &[String],
    log: PathBuf,
) -> Result<Proc> {
    spawn_in_env(netns, kind, (program, args), &[], log)
}

/// [`spawn_in`] with extra environment variables.
pub fn spawn_in_env(
    netns: &str,
    kind: &str,
    (program, args): (&Path, &[String]),
    env: &[(&str, String)],
    log: PathBuf,
) -> Result<Proc> {
    let out = fs::File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(Error::io("duplicating the log descriptor"))?;
    let ns = sys::open_netns(netns).map_err(Error::io(format!("opening netns {netns}")))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let child = sys::in_netns_detached(&mut cmd, ns)
        .spawn()
        .map_err(Error::io(format!(
            "starting {} in {netns}",
            program.display()
        )))?;
    Ok(Proc {
        kind: kind.into(),
        netns: netns.into(),
        pid: child.id() as i32,
        log,
    })
}

/// `/proc/<pid>/cmdline` without the program: the arguments to start it again with.
pub fn command_line(pid: i32) -> Result<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(Error::io(format!("reading the command line of {pid}")))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// True if `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => stat_state(&s).is_some_and(|st| st != 'Z' && st != 'X'),
        Err(_) => false,
    }
}

fn after_comm(stat: &str) -> Option<&str> {
    stat.rfind(')').map(|i| stat[i + 1..].trim_start())
}

fn stat_state(stat: &str) -> Option<char> {
    after_comm(stat)?.chars().next()
}

/// utime + stime, in clock ticks, from a `/proc/<pid>/stat` line.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let f: Vec<&str> = after_comm(stat)?.split_whitespace().collect();
    // Fields after the comm start at field 3 (state): utime is field 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Total CPU seconds (user + system, all threads) used so far by `pids`.
pub fn cpu_seconds(pids: &[i32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| stat_cpu_ticks(&s))
        .sum();
    ticks as f64 / sys::clock_ticks() as f64
}

/// Resident set size of `pid` in bytes (VmRSS of /proc/<pid>/status), 0 if gone.
pub fn rss_bytes(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| status_rss_kb(&s))
        .map_or(0, |kb| kb * 1024)
}

/// The VmRSS value (kB) of a `/proc/<pid>/status` text.
pub fn status_rss_kb(status: &str) -> Option<u64> {
    status_kb(status, "VmRSS:")
}

/// The value (kB) of field `key` (`VmRSS:`, `VmHWM:` …) of a `/proc/<pid>/status` text.
pub fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (VmRSS, VmHWM) of `pid` in bytes: resident now and its peak; zeros if gone.
pub fn rss_and_peak(pid: i32) -> (u64, u64) {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key| status_kb(&s, key).unwrap_or(0) * 1024;
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Nanoseconds `pid`'s live threads have run (first field of each
/// `/proc/<pid>/task/*/schedstat`): finer than the 10 ms ticks of [`cpu_seconds`], but
/// blind to threads that already exited. None when the kernel has no schedstat.
pub fn run_ns(pid: i32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let per_task = tasks.filter_map(|t| {
        let s = fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
        s.split_whitespace().next()?.parse::<u64>().ok()
    });
    Some(per_task.sum())
}

/// (busy, total) jiffies of all CPUs from a `/proc/stat` text: busy excludes idle and
/// iowait.
pub fn stat_busy(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Host-wide (busy, total) jiffies now.
pub fn host_busy() -> (u64, u64) {
    fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| stat_busy(&s))
        .unwrap_or((0, 0))
}

/// Every process whose network namespace is the named one (found through /proc, so
/// this works after a crash lost the state file).
pub fn pids_in_netns(netns: &str) -> Vec<i32> {
    let Ok(meta) = fs::metadata(sys::netns_path(netns)) else {
        return Vec::new();
    };
    let want = format!("net:[{}]", meta.ino());
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l.to_str() == Some(&want))
        })
        .collect()
}

/// SIGTERM, then SIGKILL after a grace period, every pid; returns how many were signalled.
pub fn terminate(pids: &[i32]) -> usize {
    let sent = pids
        .iter()
        .filter(|&&p| sys::signal(p, libc::SIGTERM).unwrap_or(false))
        .count();
    let deadline = Instant::now() + TERM_GRACE;
    while pids.iter().any(|&p| is_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &p in pids.iter().filter(|&&p| is_alive(p)) {
        let _ = sys::signal(p, libc::SIGKILL);
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_ticks_with_spaces_in_comm() {
        let line = "1234 (zring (a) b) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(stat_cpu_ticks(line), Some(325));
        assert_eq!(stat_state(line), Some('S'));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_has_cpu() {
        let me = std::process::id() as i32;
        assert!(is_alive(me));
        assert!(cpu_seconds(&[me]) >= 0.0);
        assert!(!is_alive(i32::MAX));
    }

    #[test]
    fn parses_rss_and_host_busy() {
        let st = "Name:\tz\nVmPeak:\t 9 kB\nVmRSS:\t  1234 kB\n";
        assert_eq!(status_rss_kb(st), Some(1234));
        assert_eq!(status_rss_kb("Name: z"), None);
        let stat = "cpu  10 1 4 80 5 0 0 0 0 0\ncpu0 1 1 1 1 1 0 0 0\n";
        assert_eq!(stat_busy(stat), Some((15, 100)));
        assert!(rss_bytes(std::process::id() as i32) > 0);
        assert_eq!(status_kb("VmHWM:\t 77 kB\n", "VmHWM:"), Some(77));
        let (rss, peak) = rss_and_peak(std::process::id() as i32);
        assert!(rss > 0 && peak >= rss);
    }

    #[test]
    fn state_dir_drops_trailing_dash() {
        assert_eq!(state_dir("zrl-"), PathBuf::from("/run/zring-loadgen/zrl"));
    }
}
