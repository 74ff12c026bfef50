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

/// How one proxy runs in its node: the node's name (zring) or the workload it acts as
/// (ztunnel's `PROXY_WORKLOAD_INFO`), zring's SOCKS5 address, the config and log files
/// in the scratch directory, and `RUST_LOG`.
pub struct Run<'a> {
    pub node: &'a str,
    pub socks: &'a str,
    pub config: &'a str,
    pub log: &'a str,
    pub rust_log: &'a str,
}

/// node-z's zring of [`spawn_zring`], SOCKS5 on `socks`.
fn node_z(socks: &str) -> Run<'_> {
    Run {
        node: "node-z",
        socks,
        config: "workloads.yaml",
        log: "zring.log",
        rust_log: "info",
    }
}

pub fn spawn_zring(ns: &str, dir: &Path, certs: &Path) -> Proc {
    let socks = format!("{Z_WORKLOAD}:15080");
    spawn_zring_as(ns, dir, certs, &node_z(&socks))
}

/// [`spawn_zring`] with HBONE's HTTP/2 of zring's own at both ends
/// (`ZRING_HBONE_OWN_HTTP2=true`), whatever the test process's environment says.
pub fn spawn_zring_own_http2(ns: &str, dir: &Path, certs: &Path) -> Proc {
    let socks = format!("{Z_WORKLOAD}:15080");
    let mut command = zring_command(ns, dir, certs, &node_z(&socks));
    let child = command.env("ZRING_HBONE_OWN_HTTP2", "true").spawn();
    Proc(child.expect("start zring"))
}

pub fn spawn_zring_as(ns: &str, dir: &Path, certs: &Path, run: &Run) -> Proc {
    Proc(
        zring_command(ns, dir, certs, run)
            .spawn()
            .expect("start zring"),
    )
}

fn zring_command(ns: &str, dir: &Path, certs: &Path, run: &Run) -> Command {
    let (out, err) = log_file(dir, run.log);
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_zring"), "run"])
        .arg("--config")
        .arg(dir.join(run.config))
        .arg("--cert-dir")
        .arg(certs)
        .args(["--node-name", run.node, "--cores", "1"])
        // Not transparent: the HBONE peer (ztunnel's node IP) is not a workload, so
        // zring's inbound leg reaches the server from its own address.
        .args(["--transparent", "false", "--outbound-addr", "off"])
        .args([
            "--inbound-addr",
            "0.0.0.0:15008",
            "--inbound-plaintext-addr",
            "off",
        ])
        .args(["--socks5-addr", run.socks])
        .args([
            "--admin-addr",
            "127.0.0.1:15000",
            "--stats-addr",
            "0.0.0.0:15020",
        ])
        .args(["--readiness-addr", "0.0.0.0:15021"])
        .env("RUST_LOG", run.rust_log)
        // One JSON object per line: tests read zring's access log by field.
        .env("LOG_FORMAT", "json")
        // These tests are about HBONE itself: a same-node pair keeps its tunnel.
        .env("ZRING_SAME_NODE_FAST_PATH", "false")
        .stdout(out)
        .stderr(err);
    command
}

pub fn spawn_ztunnel(ns: &str, dir: &Path) -> Proc {
    let run = Run {
        node: "zri/twl/tsa",
        socks: "127.0.0.1:15080",
        config: "workloads.yaml",
        log: "ztunnel.log",
        rust_log: "info",
    };
    spawn_ztunnel_as(ns, dir, &run)
}

/// ztunnel in dedicated mode acting as the workload `run.node` (`<ns>/<name>/<sa>`);
/// its SOCKS5 port is always 127.0.0.1:15080.
pub fn spawn_ztunnel_as(ns: &str, dir: &Path, run: &Run) -> Proc {
    let (out, err) = log_file(dir, run.log);
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(ztunnel_bin())
        .arg("proxy")
        .current_dir(dir)
        .env("RUST_LOG", run.rust_log)
        .env("FAKE_CA", "true")
        .env("XDS_ADDRESS", "")
        .env("LOCAL_XDS_PATH", dir.join(run.config))
        .env("PROXY_MODE", "dedicated")
        .env("PROXY_WORKLOAD_INFO", run.node)
        .env("UNSTABLE_ENABLE_SOCKS5", "true")
        .env("ZTUNNEL_WORKER_THREADS", "1")
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start ztunnel");
    Proc(child)
}
