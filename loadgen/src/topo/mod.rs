//! `zring-loadgen topology up|down|status`: the articles' two nodes, their ztunnel and
//! app pods as network namespaces (built with `plumbing::netns`), the servers in the
//! server pods, and (with `--mesh`) the node plumbing and a zring proxy per node.

pub mod plan;

use crate::control::ControlPlane;
use crate::error::{Error, Result};
use crate::mesh::{self, MeshOptions};
use crate::procs::{self, State};
use plan::{Node, Plan, Pod, Role, ETH0, HTTP_PORT, NODE_LINK_PREFIX, SINK_PORT};
use plumbing::model::Scope;
use plumbing::{netns, PlumbError, RouteSpec};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The main routing table.
const MAIN_TABLE: u32 = 254;
/// How long a freshly started server may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Temporary name of node B's end of the node link, renamed to eth0 once moved.
const NODE_LINK_TMP: &str = "eth0-peer";

impl From<PlumbError> for Error {
    fn from(e: PlumbError) -> Self {
        Error::Topology(e.to_string())
    }
}

/// How to bring the topology up.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Cores per server process.
    pub server_cores: usize,
    /// The `zring-loadgen` binary that runs the servers.
    pub self_exe: PathBuf,
    /// Start the mesh (plumbing + zring); None builds a baseline-only topology.
    pub mesh: Option<MeshOptions>,
}

/// A topology that is up: its recorded processes and, in xDS mode, the control plane
/// serving the proxies (stopped when dropped; the proxies keep their last state).
pub struct Up {
    pub state: State,
    pub control: Option<ControlPlane>,
    /// `demo --inpod`: the fake istio-cni's ZDS connections to the proxies.
    pub cni: Option<crate::inpod::demo::Cni>,
}

/// Builds the topology and starts its processes; on failure, removes what it built.
pub fn up(plan: &Plan, opts: &UpOptions) -> Result<Up> {
    let existing = netns::list(&plan.prefix)?;
    if !existing.is_empty() {
        return Err(Error::Topology(format!(
            "namespaces {existing:?} already exist: run `zring-loadgen topology down --prefix {}` first",
            plan.prefix
        )));
    }
    let res = build(plan, opts);
    if res.is_err() {
        let _ = down(&plan.prefix);
    }
    res
}

fn build(plan: &Plan, opts: &UpOptions) -> Result<Up> {
    let mut state = State {
        prefix: plan.prefix.clone(),
        mesh: opts.mesh.is_some(),
        procs: vec![],
    };
    state.save()?;
    for ns in plan.all_netns() {
        netns::create(&ns)?;
        for key in [
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.default.rp_filter",
        ] {
            netns::set_sysctl(Some(&ns), key, "0")?;
        }
    }
    for node in plan.nodes() {
        netns::set_sysctl(Some(&node.netns), "net.ipv4.ip_forward", "1")?;
        for pod in &node.pods {
            wire_pod(node, pod)?;
        }
    }
    link_nodes(&plan.a, &plan.b)?;
    for node in plan.nodes() {
        for pod in node.pods.iter().filter(|p| p.role == Role::Server) {
            state.procs.push(start_server(plan, pod, opts)?);
            state.save()?;
        }
    }
    let (control, cni) = match &opts.mesh {
        Some(m) => mesh::start(plan, m, &mut state)?,
        None => (None, None),
    };
    state.save()?;
    Ok(Up {
        state,
        control,
        cni,
    })
}

fn wire_pod(node: &Node, pod: &Pod) -> Result<()> {
    let (n, p) = (Some(node.netns.as_str()), Some(pod.netns.as_str()));
    netns::veth_pair(n, pod.host_veth, ETH0, p)?;
    netns::add_address(n, pod.host_veth, node.gateway, 32)?;
    netns::set_link_up(n, pod.host_veth)?;
    let to_pod = RouteSpec::new(MAIN_TABLE, pod.ip, 32)
        .dev(pod.host_veth)
        .scope(Scope::Link);
    netns::add_route(n, &to_pod.src(node.gateway))?;
    netns::add_address(p, ETH0, pod.ip, 32)?;
    netns::set_link_up(p, ETH0)?;
    let gw = RouteSpec::new(MAIN_TABLE, node.gateway, 32)
        .dev(ETH0)
        .scope(Scope::Link);
    netns::add_route(p, &gw)?;
    netns::add_route(
        p,
        &RouteSpec::new(MAIN_TABLE, Ipv4Addr::UNSPECIFIED, 0)
            .via(node.gateway)
            .dev(ETH0),
    )
    .map_err(Into::into)
}

fn link_nodes(a: &Node, b: &Node) -> Result<()> {
    netns::veth_pair(Some(&a.netns), ETH0, NODE_LINK_TMP, Some(&b.netns))?;
    // Both ends are called eth0, as on real nodes: a veth pair cannot have two equal
    // names in one namespace, so node B's end is renamed once it has moved.
    netns::rename_link(Some(&b.netns), NODE_LINK_TMP, ETH0)?;
    for (node, other) in [(a, b), (b, a)] {
        let ns = Some(node.netns.as_str());
        netns::add_address(ns, ETH0, node.eth0_ip, NODE_LINK_PREFIX)?;
        netns::set_link_up(ns, ETH0)?;
        let route = RouteSpec::new(MAIN_TABLE, other.pod_cidr, 24)
            .via(other.eth0_ip)
            .dev(ETH0);
        netns::add_route(ns, &route)?;
    }
    Ok(())
}

fn start_server(plan: &Plan, pod: &Pod, opts: &UpOptions) -> Result<procs::Proc> {
    let log = procs::state_dir(&plan.prefix).join(format!("{}.log", pod.name));
    let args: Vec<String> = [
        "serve",
        "--http-port",
        &HTTP_PORT.to_string(),
        "--sink-port",
        &SINK_PORT.to_string(),
        "--cores",
        &opts.server_cores.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let proc = procs::spawn_in(&pod.netns, "server", &opts.self_exe, &args, log)?;
    wait_listening(&pod.netns, SocketAddr::from((pod.ip, HTTP_PORT)), &proc)?;
    Ok(proc)
}

/// Waits until `addr` accepts connections from inside `ns`, or `proc` died.
pub fn wait_listening(ns: &str, addr: SocketAddr, proc: &procs::Proc) -> Result<()> {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    loop {
        let ok = netns::run_in(Some(ns), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })?;
        if ok {
            return Ok(());
        }
        if !procs::is_alive(proc.pid) || Instant::now() > deadline {
            return Err(Error::Child {
                what: format!("{} in {ns} (not listening on {addr})", proc.kind),
                status: if procs::is_alive(proc.pid) {
                    "a timeout".into()
                } else {
                    "an exit".into()
                },
                log: proc.log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `down` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DownReport {
    pub netns: Vec<String>,
    pub processes: usize,
}

/// Removes every process and namespace of topology `prefix`, whatever state it is in
/// (half built, processes dead or alive, state file missing).
pub fn down(prefix: &str) -> Result<DownReport> {
    let names = netns::list(prefix)?;
    let mut pids: Vec<i32> = State::load(prefix)
        .unwrap_or_default()
        .map(|s| {
            s.procs
                .iter()
                .map(|p| p.pid)
                .filter(|&p| procs::is_alive(p))
                .collect()
        })
        .unwrap_or_default();
    for n in &names {
        pids.extend(procs::pids_in_netns(n));
    }
    pids.sort_unstable();
    pids.dedup();
    let processes = procs::terminate(&pids);
    for n in names.iter().rev() {
        netns::delete(n)?;
    }
    let dir = procs::state_dir(prefix);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(Error::io(format!("removing {}", dir.display())))?;
    }
    Ok(DownReport {
        netns: names,
        processes,
    })
}

/// What `status` shows.
#[derive(Debug, Default, Clone)]
pub struct Status {
    pub netns: Vec<String>,
    pub state: Option<State>,
}

impl Status {
    /// True when every namespace of the plan exists and every tracked process runs.
    pub fn healthy(&self, plan: &Plan) -> bool {
        let all = plan.all_netns().iter().all(|n| self.netns.contains(n));
        let procs = self
            .state
            .as_ref()
            .is_some_and(|s| s.procs.iter().all(|p| procs::is_alive(p.pid)));
        all && procs
    }
}

/// Reads the namespaces and tracked processes of topology `prefix`.
pub fn status(prefix: &str) -> Result<Status> {
    Ok(Status {
        netns: netns::list(prefix)?,
        state: State::load(prefix)?,
    })
}
