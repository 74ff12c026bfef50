//! Shared by the xDS tests: a namespace with a dev CA and the control plane's token, zring
//! started on the control plane (no --config, no --cert-dir), and small HTTP, SOCKS5 and
//! echo helpers that run inside the namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use plumbing::netns::{self, NetnsGuard};
use zring::config::LocalConfig;
use zring_loadgen::control::proxies::Endpoint;
use zring_loadgen::control::{ControlPlane, Settings};
use zring_loadgen::socks;

pub const TOKEN: &str = "zring-test-token";
/// The pod zring serves (node-a); its SOCKS5 port is on this address.
pub const SLEEP: &str = "10.77.0.1";
pub const SLEEP_ID: &str = "spiffe://cluster.local/ns/zxd/sa/sleep";
/// zring's ports in the namespace (clear of ztunnel's standard ones).
pub const ZRING_SOCKS: &str = "10.77.0.1:15081";
pub const ZRING_ADMIN: &str = "127.0.0.1:15100";
pub const ZRING_STATS: &str = "127.0.0.1:15120";
pub const ZRING_READY: &str = "127.0.0.1:15121";

/// A namespace (loopback up, the given IPs on lo) and a scratch directory with a dev CA
/// and the token file; both removed on drop, also when the test panics.
pub struct Site {
    pub ns: String,
    pub dir: PathBuf,
    _scratch: Scratch,
    _ns: NetnsGuard,
}

impl Site {
    pub fn new(tag: &str, ips: &[&str]) -> Site {
        let ns = format!("{}n", super::prefix(tag));
        let guard = NetnsGuard::new(&ns).unwrap();
        sh(&ns, &["link", "set", "lo", "up"]);
        for ip in ips {
            sh(&ns, &["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
        }
        let dir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&dir).unwrap();
        let scratch = Scratch(dir.clone());
        zring::tls::init_ca(&dir.join("ca"), "cluster.local", false).unwrap();
        std::fs::write(dir.join("istio-token"), TOKEN).unwrap();
        Site {
            ns,
            dir,
            _scratch: scratch,
            _ns: guard,
        }
    }

    /// The control plane on 127.0.0.1 inside the namespace, serving `config`.
    pub fn control_plane(&self, config: LocalConfig) -> ControlPlane {
        let settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ca_dir: self.dir.join("ca"),
            token: TOKEN.into(),
            dns_names: vec!["istiod.istio-system.svc".into()],
        };
        netns::run_in(Some(&self.ns), || ControlPlane::start(settings, config))
            .unwrap()
            .unwrap()
    }
}

/// One workload of namespace `zxd` as LocalConfig YAML (a list item).
pub fn workload(name: &str, ip: &str, protocol: &str, node: &str) -> String {
    format!(
        "- uid: Kubernetes//Pod/zxd/{name}\n  name: {name}\n  workloadName: {name}\n  \
         namespace: zxd\n  serviceAccount: {name}\n  workloadIps: [\"{ip}\"]\n  \
         protocol: {protocol}\n  node: {node}\n"
    )
}

/// A LocalConfig of these [`workload`]s.
pub fn config(workloads: &[String]) -> LocalConfig {
    LocalConfig::from_yaml("xDS test", &format!("workloads:\n{}", workloads.concat())).unwrap()
}

/// The value of the first sample of `name` whose labels contain every `labels` pair.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (_, value) = line.rsplit_once(' ')?;
        let (n, l) = testsupport::prom::series(line)?;
        let all = labels
            .iter()
            .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v));
        (n == name && all).then(|| value.parse().ok())?
    })
}

pub struct Proc(pub Child, pub PathBuf);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn sh(ns: &str, args: &[&str]) {
    let st = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "ip -n {ns} {args:?} failed");
}

/// zring on node-a: workloads from the control plane (no --config) and the certificate
/// for `sleep` from its CA (no --cert-dir), SOCKS5 on the sleep pod's address.
pub fn spawn_zring(ns: &str, dir: &Path, cp: SocketAddr) -> Proc {
    spawn_zring_with(ns, dir, cp, &[], &[])
}

/// [`spawn_zring`] with some `zring run` flags replaced or added (`(flag, value)`) and
/// more environment.
pub fn spawn_zring_with(
    ns: &str,
    dir: &Path,
    cp: SocketAddr,
    flags: &[(&str, &str)],
    env: &[(&str, &str)],
) -> Proc {
    let mut all: Vec<(&str, &str)> = vec![
        ("--node-name", "node-a"),
        ("--cores", "1"),
        ("--transparent", "false"),
        ("--outbound-addr", "off"),
        ("--inbound-addr", "off"),
        ("--inbound-plaintext-addr", "off"),
        ("--socks5-addr", ZRING_SOCKS),
        ("--admin-addr", ZRING_ADMIN),
        ("--stats-addr", ZRING_STATS),
        ("--readiness-addr", ZRING_READY),
    ];
    for &(flag, value) in flags {
        match all.iter_mut().find(|(f, _)| *f == flag) {
            Some(slot) => slot.1 = value,
            None => all.push((flag, value)),
        }
    }
    let log = dir.join("zring.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(super::zring_bin())
        .arg("run")
        .args(all.iter().flat_map(|(f, v)| [*f, *v]))
        .env_remove("LOCAL_XDS_PATH")
        .envs(endpoint(dir, cp).env())
        .env("SECRET_TTL", "1h")
        .env("INSTANCE_IP", SLEEP)
        .env("POD_NAME", "zring-node-a")
        .env("RUST_LOG", "info,zring=debug")
        .env("POD_NAMESPACE", "istio-system")
        .env("ISTIO_META_ZRING_TEST", "meta-1")
        .env("XDS_HEADER_X_ZRING_TEST", "header-1")
        .envs(env.iter().copied())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("start zring");
    Proc(child, log)
}

/// How a proxy reaches the control plane `cp` of the site in `dir`.
pub fn endpoint(dir: &Path, cp: SocketAddr) -> Endpoint {
    Endpoint::new(cp, &dir.join("ca"), dir.join("istio-token"))
}

pub fn connect_in(ns: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    netns::run_in(Some(ns), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .expect("enter netns")
}

pub fn get_in(ns: &str, addr: &str, path: &str) -> Option<(u16, String)> {
    zring_loadgen::mesh::http_get_in(ns, addr.parse().unwrap(), path).ok()
}

/// Polls `check` for up to `limit`; panics with `context()` when it never holds.
pub fn wait_for(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} within {limit:?}\n{}", context());
}

/// An echo server on `addr` inside `ns` (one thread per connection).
pub fn echo_server(ns: &str, addr: SocketAddr) {
    let l = netns::run_in(Some(ns), || TcpListener::bind(addr))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
    });
}

pub fn socks_connect(ns: &str, proxy: &str, target: SocketAddr) -> TcpStream {
    let mut s = connect_in(ns, proxy.parse().unwrap()).expect("the proxy's SOCKS5 port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).unwrap();
    socks::check_method(&m).unwrap();
    s.write_all(&socks::connect_request(target)).unwrap();
    let mut reply = Vec::new();
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        reply.push(b[0]);
        let len = socks::connect_reply_len(&reply);
        if let Some(n) = len.unwrap_or_else(|e| panic!("SOCKS5 via {proxy} to {target}: {e}")) {
            if reply.len() == n {
                return s;
            }
        }
    }
}

/// 50 checksummed 1 KiB echoes through `s`.
pub fn echo_rounds(mut s: TcpStream, context: &dyn Fn() -> String) {
    for i in 0..50u8 {
        let msg = vec![i; 1024];
        let mut back = vec![0u8; 1024];
        if let Err(e) = s.write_all(&msg).and_then(|()| s.read_exact(&mut back)) {
            panic!("echo {i} failed: {e}\n{}", context());
        }
        assert_eq!(back, msg, "echo {i} came back different");
    }
}
