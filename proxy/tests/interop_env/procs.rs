//! The two proxies as child processes in their namespaces, logging to the scratch dir.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{ztunnel_bin, Z_WORKLOAD};

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_file(dir: &Path, name: &str) -> (Stdio, Stdio) {
    let f = std::fs::File::create(dir.join(name)).unwrap();
    (f.try_clone().unwrap().into(), f.into())
}

pub fn spawn_zring(ns: &str, dir: &Path, certs: &Path) -> Proc {
    let (out, err) = log_file(dir, "zring.log");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_zring"), "run"])
        .arg("--config")
        .arg(dir.join("workloads.yaml"))
        .arg("--cert-dir")
        .arg(certs)
        .args(["--node-name", "node-z", "--cores", "1"])
        // Not transparent: the HBONE peer (ztunnel's node IP) is not a workload, so
        // zring's inbound leg reaches the server from its own address.
        .args(["--transparent", "false", "--outbound-addr", "off"])
        .args([
            "--inbound-addr",
            "0.0.0.0:15008",
            "--inbound-plaintext-addr",
            "off",
        ])
        .args(["--socks5-addr", &format!("{Z_WORKLOAD}:15080")])
        .args([
            "--admin-addr",
            "127.0.0.1:15000",
            "--stats-addr",
            "0.0.0.0:15020",
        ])
        .args(["--readiness-addr", "0.0.0.0:15021"])
        .env("RUST_LOG", "info")
        // One JSON object per line: tests read zring's access log by field.
        .env("LOG_FORMAT", "json")
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start zring");
    Proc(child)
}

pub fn spawn_ztunnel(ns: &str, dir: &Path) -> Proc {
    let (out, err) = log_file(dir, "ztunnel.log");
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(ztunnel_bin())
        .arg("proxy")
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("FAKE_CA", "true")
        .env("XDS_ADDRESS", "")
        .env("LOCAL_XDS_PATH", dir.join("workloads.yaml"))
        .env("PROXY_MODE", "dedicated")
        .env("PROXY_WORKLOAD_INFO", "zri/twl/tsa")
        .env("UNSTABLE_ENABLE_SOCKS5", "true")
        .env("ZTUNNEL_WORKER_THREADS", "1")
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start ztunnel");
    Proc(child)
}
