//! The in-pod lab on the project's fake istio-cni (`testsupport::cni`): a node bridge with a
//! client pod and a server pod (istio-cni's in-pod rules installed in both), `pods` more
//! pod namespaces with one address each (the per-pod cost), and one proxy at a time in its
//! own namespace, handed the pods over ZDS exactly as istio-cni's node agent would.

use super::{InpodOptions, Proxy};
use crate::error::{Error, Result};
use crate::procs::{self, Proc};
use crate::server::{self, ServeConfig};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testsupport::cni::pods::{self, Node, Ns, Pod};
use testsupport::cni::{Info, ZdsConn, ZdsServer};

pub const GATEWAY: &str = "10.84.0.1";
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 84, 0, 2);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 84, 0, 3);
pub const HTTP_PORT: u16 = 8080;
pub const SINK_PORT: u16 = 9090;
/// A line echo in the server pod: the first captured connection's proof.
pub const ECHO_PORT: u16 = 9000;
const NAMESPACE: &str = "zin";
/// How long a proxy may take to dial the CNI's socket.
const ZDS_ACCEPT: Duration = Duration::from_secs(30);
/// How long the first echo through a new pod may take before the run fails.
const FIRST_ECHO: Duration = Duration::from_secs(10);
/// Quiet time before each RSS reading (allocations of the last request settle).
const SETTLE: Duration = Duration::from_secs(2);

/// Both workloads, on node `node`, as ztunnel's LocalConfig (zring reads the same file).
pub fn workloads_yaml() -> String {
    let w = |name: &str, ip: Ipv4Addr| {
        format!(
            "- uid: cluster1//v1/Pod/{NAMESPACE}/{name}\n  name: {name}\n  namespace: {NAMESPACE}\n  serviceAccount: sa-{name}\n  workloadIps: [\"{ip}\"]\n  trustDomain: cluster.local\n  protocol: HBONE\n  node: node\n  services: {{}}\n"
        )
    };
    format!(
        "workloads:\n{}{}",
        w("client", CLIENT_IP),
        w("server", SERVER_IP)
    )
}

fn setup(what: &str) -> impl FnOnce(anyhow::Error) -> Error + '_ {
    move |e| Error::Setup(format!("{what}: {e:#}"))
}

/// The pods, kept for the whole run (deleted on drop).
pub struct Pods {
    _node: Node,
    pub client: Pod,
    pub server: Pod,
    /// The cost pods: namespaces with one address each, never carrying traffic.
    pub many: Vec<Ns>,
}

impl Pods {
    pub fn new(prefix: &str, n: usize) -> Result<Pods> {
        let mut node = Node::new(prefix, GATEWAY).map_err(setup("the fake CNI's node"))?;
        let client = node
            .pod("c", &CLIENT_IP.to_string(), GATEWAY)
            .map_err(setup("the client pod"))?;
        let server = node
            .pod("s", &SERVER_IP.to_string(), GATEWAY)
            .map_err(setup("the server pod"))?;
        for pod in [&client, &server] {
            pod.enrol().map_err(setup("istio-cni's in-pod rules"))?;
        }
        let cfg = ServeConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_port: HTTP_PORT,
            sink_port: SINK_PORT,
            cores: 1,
            stall: None,
        };
        server::start(&cfg, Some(server.ns.name()))?;
        let echo = plumbing::netns::run_in(Some(server.ns.name()), || {
            std::net::TcpListener::bind(("0.0.0.0", ECHO_PORT))
        })
        .map_err(|e| Error::Setup(format!("entering the server pod: {e}")))?
        .map_err(Error::io("the server pod's line echo"))?;
        testsupport::echo::spawn(echo);
        let many = (0..n)
            .map(|i| cost_pod(prefix, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Pods {
            _node: node,
            client,
            server,
            many,
        })
    }
}

/// A pod namespace with one address (a veth pair, both ends up), as the cost test makes.
fn cost_pod(prefix: &str, i: usize) -> Result<Ns> {
    let ns = Ns::new(&format!("{prefix}-p{i}")).map_err(setup("a cost pod"))?;
    let ip = format!("10.85.{}.{}/32", i / 250, i % 250 + 1);
    let n = ns.name();
    let veth = [
        "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1",
    ];
    for cmd in [
        &veth[..],
        &["ip", "addr", "add", &ip, "dev", "d0"],
        &["ip", "link", "set", "d0", "up"],
        &["ip", "link", "set", "d1", "up"],
    ] {
        pods::sh(n, cmd).map_err(setup("a cost pod's address"))?;
    }
    Ok(ns)
}

/// One proxy on the fake CNI, and the ZDS connection it dialled.
pub struct Running {
    pub proc: Proc,
    pub zds: ZdsConn,
    _cni: ZdsServer,
    _home: Ns,
}

impl Running {
    /// Starts `proxy` in `<prefix>-<name>` dialling a fresh ZDS socket; the snapshot is
    /// empty (SnapshotSent at once).
    pub fn start(proxy: Proxy, o: &InpodOptions, dir: &Path) -> Result<Running> {
        let home = Ns::new(&format!("{}-{}", o.prefix, proxy.tag()))
            .map_err(setup("the proxy's namespace"))?;
        let uds = dir.join(format!("{}.sock", proxy.tag()));
        let cni = ZdsServer::bind(&uds).map_err(setup("the fake CNI's ZDS socket"))?;
        let log = dir.join(format!("{}.log", proxy.tag()));
        let proc = spawn(proxy, o, home.name(), dir, &uds, log)?;
        let zds = cni
            .accept(ZDS_ACCEPT)
            .map_err(setup("the proxy's ZDS hello"))?;
        let acked = zds.snapshot_sent().map_err(setup("SnapshotSent"))?;
        if !acked.is_empty() {
            return Err(Error::Peer(format!("SnapshotSent refused: {acked}")));
        }
        Ok(Running {
            proc,
            zds,
            _cni: cni,
            _home: home,
        })
    }

    /// AddWorkload for `ns`; the time to its Ack.
    pub fn add(&self, uid: &str, name: &str, ns: &Ns) -> Result<Duration> {
        let fd = ns.open().map_err(setup("opening a pod namespace"))?;
        let sa = format!("sa-{name}");
        let info = Info {
            name,
            namespace: NAMESPACE,
            service_account: &sa,
        };
        let t = Instant::now();
        let e = self
            .zds
            .add(uid, Some(info), Some(fd.as_fd()))
            .map_err(setup("AddWorkload"))?;
        let took = t.elapsed();
        if !e.is_empty() {
            return Err(Error::Peer(format!("AddWorkload {uid} refused: {e}")));
        }
        Ok(took)
    }

    /// RSS (KB) and open descriptors after [`SETTLE`].
    pub fn settled_cost(&self) -> (u64, usize) {
        std::thread::sleep(SETTLE);
        let pid = self.proc.pid;
        let rss = procs::rss_bytes(pid) / 1024;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        (rss, fds)
    }

    /// Stops the proxy (SIGTERM, then SIGKILL).
    pub fn stop(self) {}
}

impl Drop for Running {
    fn drop(&mut self) {
        procs::terminate(&[self.proc.pid]);
    }
}

fn spawn(
    proxy: Proxy,
    o: &InpodOptions,
    ns: &str,
    dir: &Path,
    uds: &Path,
    log: PathBuf,
) -> Result<Proc> {
    let s = |v: &str| v.to_string();
    let path = |p: &Path| p.display().to_string();
    let config = path(&dir.join("workloads.yaml"));
    match proxy {
        Proxy::Zring { fast_path } => {
            let args = [
                s("run"),
                s("--config"),
                config,
                s("--cert-dir"),
                path(&dir.join("certs")),
                s("--node-name"),
                s("node"),
                s("--cores"),
                o.cores.to_string(),
                s("--inpod"),
                s("true"),
                s("--inpod-uds"),
                path(uds),
            ];
            let env = [
                ("RUST_LOG", s("warn")),
                ("ZRING_SAME_NODE_FAST_PATH", fast_path.to_string()),
            ];
            procs::spawn_in_env(ns, "zring", (&o.zring, &args), &env, log)
        }
        Proxy::Ztunnel => {
            let env = [
                ("RUST_LOG", s("warn")),
                ("FAKE_CA", s("true")),
                ("XDS_ADDRESS", s("")),
                ("LOCAL_XDS_PATH", config),
                ("PROXY_MODE", s("shared")),
                ("INPOD_UDS", path(uds)),
                ("NODE_NAME", s("node")),
                ("ZTUNNEL_WORKER_THREADS", o.cores.to_string()),
            ];
            procs::spawn_in_env(ns, "ztunnel", (&o.peer, &[s("proxy")]), &env, log)
        }
    }
}

/// Echoes one line from the client pod to the server pod's line echo; retried until it
/// works (the client pod's listeners may not be accepting yet) for up to [`FIRST_ECHO`].
pub fn first_echo(pods: &Pods) -> Result<()> {
    let deadline = Instant::now() + FIRST_ECHO;
    loop {
        let r = echo_once(pods.client.ns.name());
        match r {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(Error::Peer(format!(
                    "no echo through the proxy from the client pod in {FIRST_ECHO:?}: {e}"
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn echo_once(ns: &str) -> std::io::Result<()> {
    let addr = SocketAddr::new(IpAddr::V4(SERVER_IP), ECHO_PORT);
    let mut s = plumbing::netns::run_in(Some(ns), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })
    .map_err(std::io::Error::other)??;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"first\n")?;
    let mut back = [0u8; 6];
    s.read_exact(&mut back)?;
    if &back != b"first\n" {
        return Err(std::io::Error::other("echo returned other bytes"));
    }
    Ok(())
}
