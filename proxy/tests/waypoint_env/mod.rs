//! What the two waypoint suites against ztunnel share (`waypoint_peer.rs`, the matrix;
//! `waypoint_cost.rs`, the measurement): the peer binary, commands inside a netns, proxy
//! processes killed on drop, a dedicated-mode ztunnel, and the readiness poll.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plumbing::netns;

pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers")
}

/// Runs `ip netns exec ns args…`; panics with its stderr when it fails.
pub fn sh(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("run `ip netns exec`");
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A proxy process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// user + system CPU seconds so far.
    pub fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
}

/// Starts `cmd` with stdout and stderr in `dir/name`.
pub fn logged(dir: &Path, name: &str, cmd: &mut Command) -> Proc {
    let f = std::fs::File::create(dir.join(name)).unwrap();
    let child = cmd
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .expect("start proxy");
    Proc(child)
}

/// The real ztunnel in `ns`, dedicated to workload `namespace/name` (its service account
/// is its name), on `dir/workloads.yaml` with the test root; log `ztunnel-<name>.log`.
pub fn ztunnel(ns: &str, dir: &Path, namespace: &str, name: &str, rust_log: &str) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(peers_dir().join("ztunnel"))
        .arg("proxy")
        .current_dir(dir)
        .env("RUST_LOG", rust_log)
        .env("FAKE_CA", "true")
        .env("XDS_ADDRESS", "")
        .env("LOCAL_XDS_PATH", dir.join("workloads.yaml"))
        .env("PROXY_MODE", "dedicated")
        .env("PROXY_WORKLOAD_INFO", format!("{namespace}/{name}/{name}"))
        .env("UNSTABLE_ENABLE_SOCKS5", "true")
        .env("ZTUNNEL_WORKER_THREADS", "1");
    logged(dir, &format!("ztunnel-{name}.log"), &mut cmd)
}

/// Whether a proxy in `ns` answers 200 on 127.0.0.1:15021 `/healthz/ready` within `limit`.
pub fn ready_within(ns: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let ok = netns::run_in(Some(ns), || {
            let mut s = TcpStream::connect("127.0.0.1:15021").ok()?;
            s.write_all(b"GET /healthz/ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            Some(text.starts_with("HTTP/1.1 200"))
        });
        if ok.ok().flatten() == Some(true) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
