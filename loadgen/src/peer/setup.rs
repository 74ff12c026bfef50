//! One lab per proxy: a network namespace with the two workload IPs on its loopback,
//! the same LocalConfig, the proxy (ztunnel or zring) on the same cores, the loadgen's
//! own servers, and a probe through the SOCKS5 port that learns which source IP the
//! server sees. [`Labs`] removes every namespace and process it made when dropped.

use super::{Proxy, CLIENT_IP, SERVER_IP};
use crate::client::{connect_via, Via};
use crate::error::{Error, Result};
use crate::mesh::{NAMESPACE, TRUST_DOMAIN};
use crate::procs::{self, Proc};
use crate::proto;
use crate::server::{self, ServeConfig};
use monoio::io::AsyncWriteRentExt;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zring::config::{LocalConfig, Protocol, Workload};

/// The service account both workloads share: a dedicated-mode ztunnel presents its own
/// (`PROXY_WORKLOAD_INFO`) identity on inbound, so the destination must expect it.
pub const SERVICE_ACCOUNT: &str = "zrp-app";
pub const HTTP_PORT: u16 = 8080;
pub const SINK_PORT: u16 = 8081;
/// Both proxies' default SOCKS5 listener.
pub const SOCKS_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 15080);
const READY_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 15021);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running proxy in its namespace (same node), or a pair of them on two nodes.
#[derive(Debug, Clone)]
pub struct Lab {
    pub proxy: Proxy,
    /// Where the client runs (the only namespace of a same-node lab; node A of a pair).
    pub netns: String,
    /// The client's proxy.
    pub proc: Proc,
    /// Node B's proxy, in front of the server (cross node only).
    pub remote: Option<Proc>,
    /// The proxy's SOCKS5 listener, as the client dials it.
    pub socks: SocketAddr,
    /// The source IP the server reports through this proxy (learnt by the probe).
    pub seen_ip: IpAddr,
    /// The source IP the server reports for a direct connection in this namespace.
    pub direct_ip: IpAddr,
}

impl Lab {
    /// The SOCKS5 route into this lab's proxy, from the client workload's IP.
    pub fn via(&self) -> Via {
        Via {
            socks: self.socks,
            bind: Some(CLIENT_IP),
        }
    }

    /// Every proxy process of the lab, the client's first (then node B's): CPU and RSS
    /// figures count all of them.
    pub fn pids(&self) -> Vec<i32> {
        let b = self.remote.as_ref().map(|p| p.pid);
        std::iter::once(self.proc.pid).chain(b).collect()
    }

    /// One line per proxy of the lab that is no longer running (a figure measured after
    /// it exited would read its RSS as 0 and its CPU as nothing).
    pub fn exited(&self) -> Vec<String> {
        let procs = std::iter::once(&self.proc).chain(self.remote.as_ref());
        procs
            .filter(|p| !procs::is_alive(p.pid))
            .map(|p| {
                let (kind, pid, ns, log) = (&p.kind, p.pid, &p.netns, p.log.display());
                format!("{kind} (pid {pid}) in {ns} exited; its log is {log}")
            })
            .collect()
    }
}

/// The LocalConfig both proxies read (built from zring's own config types).
pub fn local_config() -> LocalConfig {
    let wl = |name: &str, ip| Workload {
        uid: format!("cluster1//v1/Pod/{NAMESPACE}/{name}").into(),
        name: name.to_string().into(),
        namespace: NAMESPACE.to_string().into(),
        service_account: SERVICE_ACCOUNT.to_string().into(),
        trust_domain: TRUST_DOMAIN.to_string().into(),
        workload_ips: vec![ip].into(),
        protocol: Protocol::Hbone,
        node: "node".to_string().into(),
        ..Workload::default()
    };
    LocalConfig {
        workloads: vec![wl("client", CLIENT_IP), wl("server", SERVER_IP)],
        ..LocalConfig::default()
    }
}

/// Writes the config and zring's certificate directory (leaf signed by `root`'s pair).
pub fn write_inputs(dir: &Path, zring: &Path, root: (&Path, &Path)) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let config = dir.join("workloads.yaml");
    let yaml = serde_yaml::to_string(&local_config()).expect("config serialises");
    std::fs::write(&config, yaml).map_err(Error::io(format!("writing {}", config.display())))?;
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).map_err(Error::io(format!("creating {}", certs.display())))?;
    for (from, name) in [(root.0, "root-cert.pem"), (root.1, "root-key.pem")] {
        std::fs::copy(from, certs.join(name)).map_err(Error::io(format!(
            "copying the test root {} (the peer's test root must be readable)",
            from.display()
        )))?;
    }
    let id = format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{SERVICE_ACCOUNT}");
    let d = certs.display().to_string();
    crate::mesh::run_zring(zring, &["ca", "issue", "--dir", &d, &id])?;
    Ok(config)
}

/// Removes the labs' namespaces and the processes inside them on drop.
pub struct Labs {
    pub prefix: String,
}

impl Labs {
    /// Clears leftovers of an earlier run with the same prefix.
    pub fn new(prefix: &str) -> Result<Self> {
        let labs = Labs {
            prefix: prefix.to_string(),
        };
        labs.clear()?;
        Ok(labs)
    }

    fn clear(&self) -> Result<()> {
        for n in plumbing::netns::list(&self.prefix)? {
            procs::terminate(&procs::pids_in_netns(&n));
            plumbing::netns::delete(&n)?;
        }
        Ok(())
    }
}

impl Drop for Labs {
    fn drop(&mut self) {
        if let Err(e) = self.clear() {
            eprintln!("removing the {}* namespaces failed: {e}", self.prefix);
        }
    }
}

/// Creates the namespace with both workload IPs on `lo`.
pub fn make_netns(name: &str) -> Result<()> {
    make_netns_with(name, &[CLIENT_IP, SERVER_IP])
}

/// Creates the namespace with `ips` on `lo`.
pub fn make_netns_with(name: &str, ips: &[IpAddr]) -> Result<()> {
    plumbing::netns::create(name)?;
    let ns = Some(name);
    plumbing::netns::set_link_up(ns, "lo")?;
    for &ip in ips {
        let IpAddr::V4(v4) = ip else { unreachable!() };
        plumbing::netns::add_address(ns, "lo", v4, 32)?;
    }
    Ok(())
}

/// Starts the loadgen's echo server and sink inside `netns` (threads of this process).
pub fn start_servers(netns: &str) -> Result<()> {
    let cfg = ServeConfig {
        bind_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        http_port: HTTP_PORT,
        sink_port: SINK_PORT,
        cores: 1,
        stall: None,
    };
    server::start(&cfg, Some(netns)).map(|_| ())
}

/// Waits for `GET /healthz/ready` on 15021 to answer 200 inside the lab.
pub fn wait_ready(netns: &str, proc: &Proc) -> Result<()> {
    let poll = Duration::from_millis(100);
    wait_ready_within(netns, proc, READY_TIMEOUT, poll).map(|_| ())
}

/// [`wait_ready`] for up to `timeout`, asking every `poll`: when the first 200 came.
pub fn wait_ready_within(
    netns: &str,
    proc: &Proc,
    timeout: Duration,
    poll: Duration,
) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !procs::is_alive(proc.pid) {
            break;
        }
        if plumbing::netns::run_in(Some(netns), ready_once)? {
            return Ok(Instant::now());
        }
        std::thread::sleep(poll);
    }
    Err(Error::Child {
        what: format!("{} in {netns} (not ready on 15021)", proc.kind),
        status: if procs::is_alive(proc.pid) {
            "a readiness timeout".into()
        } else {
            "an exit".into()
        },
        log: proc.log.clone(),
    })
}

fn ready_once() -> bool {
    use std::io::{Read, Write};
    let addr = SocketAddr::from(READY_ADDR);
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req = b"GET /healthz/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut out = String::new();
    s.write_all(req).is_ok()
        && s.read_to_string(&mut out).is_ok()
        && out.starts_with("HTTP/1.1 200")
}

/// One echo through `via` (or direct) from inside `netns`: the source IP the server saw.
pub fn probe(netns: &str, via: Option<Via>) -> Result<IpAddr> {
    let target = SocketAddr::new(SERVER_IP, HTTP_PORT);
    let mut last = None;
    for _ in 0..50 {
        let r = crate::cores::run_per_core(1, Some(netns), move |_| probe_once(target, via));
        match r.map(|mut v| v.remove(0)) {
            Ok(ip) => return Ok(ip),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Peer(format!(
        "no echo through {netns} ({}): {}",
        via.map_or("direct".into(), |v| format!("SOCKS5 {}", v.socks)),
        last.map_or_else(String::new, |e| e.to_string())
    )))
}

async fn probe_once(target: SocketAddr, via: Option<Via>) -> Result<IpAddr> {
    let mut s = match via {
        Some(v) => connect_via(&v, target).await?,
        None => crate::client::connect(target).await?,
    };
    let mut req = proto::request_head(&target.to_string(), 1, true);
    req.push(b'x');
    let (res, _) = s.write_all(req).await;
    res.map_err(Error::io(format!("probing {target}")))?;
    let (mut acc, mut buf) = (Vec::new(), vec![0u8; 4096]);
    loop {
        if let Some(h) = proto::parse_head(&acc).map_err(|source| Error::Proto {
            peer: target,
            source,
        })? {
            return h.client_ip.ok_or(Error::ClosedEarly { server: target });
        }
        let (res, b) = crate::server::read_more(&mut s, &mut acc, buf).await;
        buf = b;
        if res.map_err(Error::io(format!("probing {target}")))? == 0 {
            return Err(Error::ClosedEarly { server: target });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exited_names_the_proxies_that_are_gone() {
        let proc = |pid: i32, kind: &str| Proc {
            kind: kind.into(),
            netns: "ns".into(),
            pid,
            log: PathBuf::from("/tmp/x.log"),
        };
        let mut lab = Lab {
            proxy: Proxy::Zring,
            netns: "ns".into(),
            proc: proc(std::process::id() as i32, "zring"),
            remote: None,
            socks: SocketAddr::from(SOCKS_ADDR),
            seen_ip: SERVER_IP,
            direct_ip: SERVER_IP,
        };
        assert!(lab.exited().is_empty());
        // Beyond the kernel's pid_max: never a live process.
        lab.remote = Some(proc(i32::MAX, "zring-b"));
        let gone = lab.exited();
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert!(gone[0].starts_with("zring-b (pid 2147483647) in ns exited"));
        assert_eq!(lab.pids(), vec![std::process::id() as i32, i32::MAX]);
    }
}
