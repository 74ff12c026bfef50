//! `zring run --plumb`: the DaemonSet pod's "integrated plumbing" — the ztunnel-pod side of
//! the capture (pistioin/pistioout, TPROXY rules, policy routing) applied at start and
//! removed at shutdown ([`Integrated`]), and with `--host-netns` the node side too
//! ([`NodeSide`]: node objects, the node's HBONE pods enrolled as the config says,
//! reconciled), through the plumbing crate.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use plumbing::render::IPSET_NAME;
use plumbing::{DriftKind, NodeInput, ZtunnelInput};

use crate::config::{Config, Protocol, Snapshot};
use crate::error::ProxyError;
use crate::runtime::metrics::PlumbMetrics;
use crate::runtime::state::{Enrolment, NodeHooks, Shared};

/// What `--plumb` applied, so shutdown removes exactly that — unless zring plumbs the node
/// too (`--host-netns`): then the pod side stays with the node side for the next zring of
/// this pod, which adopts both. Recreated tunnels would get new MAC addresses, and the
/// node would keep sending captured frames to the old ones until its neighbour entries
/// expire (seconds of dropped connections after each restart, measured).
pub struct Integrated {
    input: Option<ZtunnelInput>,
    keep: bool,
}

impl Integrated {
    /// Applies the ztunnel-pod objects in the current network namespace when `--plumb`.
    /// `found`: the gateway the node side detected, used when `--plumb-gateway` is unset.
    pub fn up(config: &Config, found: Option<Ipv4Addr>) -> Result<Integrated, ProxyError> {
        if !config.plumb {
            return Ok(Integrated {
                input: None,
                keep: false,
            });
        }
        let gateway_ip = match (config.plumb_gateway, found) {
            (Some(IpAddr::V4(g)), _) => g,
            (None, Some(g)) => g,
            _ => {
                return Err(ProxyError::Settings(
                    "--plumb needs --plumb-gateway <node pod gateway IPv4> (e.g. 10.244.1.1), \
                     or --host-netns to find it"
                        .into(),
                ))
            }
        };
        let input = ZtunnelInput {
            ztunnel_ip: own_ip_towards(gateway_ip)?,
            gateway_ip,
            eth0: config.plumb_eth0.clone(),
            tunnel: Default::default(),
        };
        plumbing::ztunnel_up(None, &input)?;
        tracing::info!(ztunnel_ip = %input.ztunnel_ip, gateway = %gateway_ip, "ztunnel pod plumbing applied");
        Ok(Integrated {
            input: Some(input),
            keep: config.host_netns.is_some(),
        })
    }

    /// Removes what [`Integrated::up`] applied (left in place with `--host-netns`).
    pub fn down(self) -> Result<(), ProxyError> {
        if self.keep {
            tracing::info!(
                "ztunnel pod plumbing left in place with the node side, for the next zring"
            );
            return Ok(());
        }
        if let Some(input) = self.input {
            plumbing::ztunnel_down(None, &input)?;
            tracing::info!("ztunnel pod plumbing removed");
        }
        Ok(())
    }
}

/// The pod's own address: the source the kernel picks towards the gateway (a UDP
/// "connect" only consults the routing table; nothing is sent).
fn own_ip_towards(gateway: Ipv4Addr) -> Result<Ipv4Addr, ProxyError> {
    let probe = UdpSocket::bind("0.0.0.0:0")?;
    probe.connect(SocketAddr::new(IpAddr::V4(gateway), 9))?;
    match probe.local_addr()?.ip() {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => Err(ProxyError::Settings(
            "--plumb: the route to the gateway is not IPv4".into(),
        )),
    }
}

/// The node side, with `--plumb --host-netns`: brought up at start (adopting what a
/// previous zring left), the node's HBONE workloads enrolled as the workload config
/// says, reconciled on a timer, and left in place at exit so enrolled pods fail closed
/// (their connections are refused, never carried around the mesh) until the next zring
/// adopts it. `zring plumb node down` is the explicit uninstall.
pub struct NodeSide {
    host: String,
    base: NodeInput,
    state: Mutex<Enrolled>,
    metrics: Arc<PlumbMetrics>,
}

#[derive(Default)]
struct Enrolled {
    /// The pods this process knows to be in the set (and their table-100 routes).
    pods: BTreeSet<Ipv4Addr>,
    /// Workload → why it was not enrolled.
    refused: BTreeMap<String, String>,
}

/// The pods `snapshot` wants enrolled (local HBONE workloads' IPv4 addresses) and the
/// workloads it wants but that cannot be (an IPv6 address), each with its key.
fn wanted(snapshot: &Snapshot) -> (BTreeMap<Ipv4Addr, String>, BTreeMap<String, String>) {
    let mut pods = BTreeMap::new();
    let mut refused = BTreeMap::new();
    for w in snapshot.local_workloads() {
        if w.protocol != Protocol::Hbone {
            continue;
        }
        for ip in &w.workload_ips {
            match ip {
                IpAddr::V4(v4) => {
                    pods.insert(*v4, w.to_string());
                }
                IpAddr::V6(v6) => {
                    let why = format!("{v6}: wrong family (the node side captures IPv4 only)");
                    refused.insert(w.to_string(), why);
                }
            }
        }
    }
    (pods, refused)
}

impl NodeSide {
    /// Finds what the kernel can tell (flags override), brings the node side up in
    /// `config.host_netns` without touching enrolled pods, and adopts them.
    pub fn up(config: &Config) -> Result<Option<Arc<NodeSide>>, ProxyError> {
        let Some(host) = config.host_netns.clone().filter(|_| config.plumb) else {
            return Ok(None);
        };
        let found = plumbing::agent::detect(&host, &config.plumb_eth0);
        let (gateway_ip, ztunnel_ip, ztunnel_veth) =
            match (config.plumb_gateway, config.plumb_host_veth.clone(), found) {
                (Some(IpAddr::V4(g)), Some(v), found) => {
                    let ip = found.map(|f| f.ztunnel_ip).or_else(|_| own_ip_towards(g))?;
                    (g, ip, v)
                }
                (gateway, veth, Ok(f)) => (
                    match gateway {
                        Some(IpAddr::V4(g)) => g,
                        _ => f.gateway_ip,
                    },
                    f.ztunnel_ip,
                    veth.unwrap_or(f.ztunnel_veth),
                ),
                (_, _, Err(e)) => return Err(e.into()),
            };
        let base = NodeInput {
            gateway_ip,
            ztunnel_ip,
            ztunnel_veth,
            pod_ips: Vec::new(),
            tunnel: Default::default(),
        };
        let handed_over = plumbing::node_handover(Some(&host), &base)?;
        if let Some(prev) = &handed_over {
            tracing::info!(
                previous_ip = %prev.ztunnel_ip, previous_veth = ?prev.ztunnel_veth,
                "node side taken over from the previous ztunnel pod"
            );
        }
        let adopted = plumbing::agent::enrolled(Some(&host))?;
        let with_adopted = NodeInput {
            pod_ips: adopted.clone(),
            ..base.clone()
        };
        let metrics = Arc::new(PlumbMetrics::default());
        let before = plumbing::node_check(Some(&host), &with_adopted)?;
        // What names the previous pod's veth or IP is rewritten, not repaired.
        if handed_over.is_none() {
            count_repairs(&before.drift, &metrics, true);
        }
        let up = plumbing::node_up(Some(&host), &with_adopted)?;
        tracing::info!(
            host_netns = %host, gateway = %base.gateway_ip, ztunnel_ip = %base.ztunnel_ip,
            veth = %base.ztunnel_veth, created = up.created.len(), adopted = adopted.len(),
            "node side of the capture in place"
        );
        let side = NodeSide {
            host,
            base,
            state: Mutex::new(Enrolled {
                pods: adopted.into_iter().collect(),
                refused: BTreeMap::new(),
            }),
            metrics,
        };
        side.metrics.set_enrolled(side.lock().pods.len());
        Ok(Some(Arc::new(side)))
    }

    /// The node's pod gateway in use.
    pub fn gateway(&self) -> Ipv4Addr {
        self.base.gateway_ip
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Enrolled> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn input(&self, pods: &BTreeSet<Ipv4Addr>) -> NodeInput {
        NodeInput {
            pod_ips: pods.iter().copied().collect(),
            ..self.base.clone()
        }
    }

    /// Enrols what `next` wants and this node lacks. A pod that cannot be enrolled is
    /// refused by name (log and metric); the others proceed.
    fn enrol(&self, next: &Snapshot) {
        let (want, mut refused) = wanted(next);
        let mut st = self.lock();
        let new: Vec<_> = want
            .iter()
            .filter(|(ip, _)| !st.pods.contains(ip))
            .collect();
        for (ip, workload) in new {
            match self.enrol_one(*ip) {
                Ok(()) => {
                    st.pods.insert(*ip);
                    tracing::info!(%ip, %workload, "pod enrolled");
                }
                Err(why) => {
                    refused.insert(workload.clone(), format!("{ip}: {why}"));
                }
            }
        }
        for (workload, why) in refused.iter().filter(|(w, _)| !st.refused.contains_key(*w)) {
            tracing::warn!(%workload, reason = %why, "workload not enrolled on this node");
        }
        st.refused = refused;
        self.metrics.set_refused(&st.refused);
        self.metrics.set_enrolled(st.pods.len());
    }

    fn enrol_one(&self, ip: Ipv4Addr) -> Result<(), String> {
        match plumbing::agent::pod_on_node(Some(&self.host), ip) {
            Ok(None) => {
                plumbing::pod_add(Some(&self.host), &self.base, ip).map_err(|e| e.to_string())
            }
            Ok(Some(why)) => Err(why),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Withdraws the pods this process enrolled that `next` no longer wants.
    fn withdraw(&self, next: &Snapshot) {
        let (want, _) = wanted(next);
        let mut st = self.lock();
        let gone: Vec<Ipv4Addr> = st
            .pods
            .iter()
            .filter(|ip| !want.contains_key(ip))
            .copied()
            .collect();
        for ip in gone {
            match plumbing::pod_del(Some(&self.host), &self.base, ip) {
                Ok(()) => {
                    st.pods.remove(&ip);
                    tracing::info!(%ip, "pod withdrawn");
                }
                Err(e) => {
                    tracing::error!(%ip, error = %e, "withdrawing a pod failed; retried at the next reconcile")
                }
            }
        }
        self.metrics.set_enrolled(st.pods.len());
    }

    /// Makes the kernel match `current`: every node object and wanted pod in place, and
    /// (when `complete`, i.e. the config in force is the whole truth) no other pod
    /// enrolled. Each repair is logged and counted.
    pub fn reconcile(&self, current: &Snapshot, complete: bool) -> Result<(), ProxyError> {
        if complete {
            // Adopted members the config no longer names go too.
            let mut st = self.lock();
            st.pods.extend(plumbing::agent::enrolled(Some(&self.host))?);
            drop(st);
            self.withdraw_counted(current);
        }
        self.enrol(current);
        let pods = self.lock().pods.clone();
        let report = plumbing::node_check(Some(&self.host), &self.input(&pods))?;
        if report.is_clean() {
            return Ok(());
        }
        if count_repairs(&report.drift, &self.metrics, false) {
            plumbing::node_up(Some(&self.host), &self.input(&pods))?;
        }
        Ok(())
    }

    fn withdraw_counted(&self, current: &Snapshot) {
        let before = self.lock().pods.clone();
        self.withdraw(current);
        let after = self.lock().pods.clone();
        for ip in before.difference(&after) {
            tracing::warn!(%ip, "enrolled pod not in the workload config; withdrawn");
            self.metrics.repaired("ipset member");
        }
    }
}

/// Logs and counts the drift `up` will repair (missing or different objects); returns
/// whether there is any. At start (`adopting`), a node with no capture set is a fresh
/// node, not a drifted one: nothing is counted.
fn count_repairs(drift: &[plumbing::Drift], metrics: &PlumbMetrics, adopting: bool) -> bool {
    let fresh = drift
        .iter()
        .any(|d| d.kind == DriftKind::Missing && d.object == format!("ipset {IPSET_NAME}"));
    let mut repair = false;
    for d in drift {
        if d.kind == DriftKind::Extra {
            // `up` adds and corrects; it never removes what it did not make.
            tracing::warn!(object = %d.object, "unexpected object on the node side (left alone)");
            continue;
        }
        repair = true;
        if adopting && fresh {
            continue;
        }
        tracing::warn!(object = %d.object, kind = ?d.kind, "node side drifted; repairing");
        metrics.repaired(repair_kind(&d.object));
    }
    repair
}

/// The `object` label of a repair: the kind of a drift object, without its instance
/// (`ipset ztunnel-pods-ips member 10.0.0.1` → `ipset member`).
fn repair_kind(object: &str) -> &'static str {
    match object.split_whitespace().next().unwrap_or("") {
        "ipset" if object.contains(" member ") => "ipset member",
        "ipset" => "ipset",
        "rule" => "rule",
        "route" => "route",
        "link" | "address" => "link",
        "sysctl" => "sysctl",
        "mangle" | "nat" | "filter" | "raw" => "iptables",
        _ => "other",
    }
}

impl NodeSide {
    /// Hooks the node side into `shared`'s publishing and starts the reconcile thread:
    /// once at once (readiness waits for it), then every `every`. `file_mode`: the config
    /// in force is always complete; with xDS only once the first full state arrived.
    pub fn attach(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        every: Duration,
        file_mode: bool,
    ) -> JoinHandle<()> {
        shared.set_node_side(NodeHooks {
            enrolment: self.clone(),
            metrics: self.metrics.clone(),
        });
        let (side, shared) = (self.clone(), shared.clone());
        std::thread::Builder::new()
            .name("zring-plumb".into())
            .spawn(move || side.reconcile_loop(&shared, every, file_mode))
            .expect("spawning the plumbing thread only fails when the process is out of threads")
    }

    fn reconcile_loop(&self, shared: &Shared, every: Duration, file_mode: bool) {
        let mut next = Instant::now();
        while !shared.stopping() {
            if Instant::now() >= next {
                next = Instant::now() + every;
                let complete = file_mode || shared.synced();
                match shared.with_current(|s| self.reconcile(&s.snapshot, complete)) {
                    Ok(()) => shared.set_plumbed(),
                    Err(e) => {
                        tracing::error!(error = %e, "reconciling the node side failed; retrying")
                    }
                }
            }
            shared.wait_stop(next.saturating_duration_since(Instant::now()));
        }
    }
}

impl Enrolment for NodeSide {
    fn before(&self, next: &Snapshot) {
        self.enrol(next);
    }

    fn after(&self, next: &Snapshot) {
        self.withdraw(next);
    }
}
