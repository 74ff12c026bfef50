//! The xDS demo's live enrolment (`zring-loadgen demo --xds`): node B's plain server is
//! enrolled into the mesh and withdrawn again while both proxies keep running — the
//! control plane pushes the workload as HBONE (TCP), and node B's proxy adds (removes)
//! the pod's ipset entry and route itself — and the enrolled client's requests to it
//! switch from direct delivery to HBONE and back.
//!
//! Each phase makes [`PHASE_REQUESTS`] requests, one connection each, and reads node
//! B's proxy's metrics before and after: how many of them it accepted over HBONE and
//! how many it captured as plaintext. Both transitions keep a working path at every
//! moment: enrolling plumbs first (until the push, node B's proxy captures the plaintext
//! and delivers it), withdrawing pushes first (until the plumbing is removed, the same).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zring::config::{LocalConfig, Protocol};
use zring_xds::ADDRESS_TYPE;

use crate::control::{ControlPlane, Event};
use crate::error::{Error, Result};
use crate::mesh::{self, ADMIN_PORT, METRICS_PORT};
use crate::phase::{self, Endpoint, RrPhase};
use crate::procs;
use crate::topo::plan::{Node, Plan, Pod, HTTP_PORT};

/// Requests per phase, each on its own connection.
pub const PHASE_REQUESTS: u64 = 50;
/// Requests per second, each on its own connection, while a transition happens.
const TRANSITION_RATE: f64 = 200.0;
/// How long those requests run; the transition starts [`TRANSITION_LEAD`] in.
const TRANSITION_WINDOW: Duration = Duration::from_millis(1500);
const TRANSITION_LEAD: Duration = Duration::from_millis(300);
/// How long a push may take to be ACKed and adopted by every core of both proxies.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(10);
/// zring publishes each core's counters on its 100 ms control tick: a read this long
/// after the last request includes it.
const METRICS_SETTLE: Duration = Duration::from_millis(350);
/// The metric whose series tell how node B's proxy received a connection.
const OPENED: &str = "istio_tcp_connections_opened_total{";

/// One phase: what was served and plumbed, and what the requests did. A transition
/// phase (`enrolling`, `withdrawing`) has protocol `-` and counts only answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnrolPhase {
    pub name: String,
    /// The pod's protocol in the served configuration.
    pub protocol: String,
    /// The pod's ipset entry and route are in place on its node.
    pub plumbed: bool,
    /// Push → ACKed by both proxies and adopted by every core (transitions only).
    pub propagation_ms: Option<f64>,
    pub requests: u64,
    pub ok: u64,
    /// The first error (in a transition: the first that was not a reset).
    pub first_error: Option<String>,
    /// Connections cut under a request: reset (ECONNRESET) or closed in the middle of a
    /// response.
    #[serde(default)]
    pub resets: u64,
    /// Resets a transition may cause: connections open while `plumb pod add|del` ran
    /// (their packets change path mid-connection; at most one per load connection plus
    /// the ones opened during the plumbing). 0 outside transitions.
    #[serde(default)]
    pub reset_allowance: u64,
    /// Of the requests, connections node B's proxy accepted over HBONE (mutual TLS).
    pub hbone: u64,
    /// Connections node B's proxy captured as plaintext.
    pub captured_plaintext: u64,
}

/// The whole live enrolment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnrolReport {
    pub client: String,
    pub pod: String,
    pub pod_ip: Option<Ipv4Addr>,
    pub phases: Vec<EnrolPhase>,
    /// The proxies' process ids before and after (equal: nothing was restarted).
    pub proxy_pids_before: Vec<i32>,
    pub proxy_pids_after: Vec<i32>,
    /// NACKs the control plane received during the run.
    pub nacks: Vec<String>,
    /// What did not go as expected; empty when the run passed.
    pub failures: Vec<String>,
}

impl EnrolReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs before → enrolled → withdrawn against the running xDS topology.
pub fn run(plan: &Plan, control: &ControlPlane, proxy_pids: Vec<i32>) -> Result<EnrolReport> {
    let (client, pod) = plan.passthrough_pair();
    let node = &plan.b;
    let mut config = mesh::local_config(plan);
    let pair = (client, pod);
    let mut phases = vec![measure(
        plan,
        "before",
        pair,
        phase_state(&config, node, pod)?,
    )?];

    // The proxy of node B plumbs the pod itself, inside the push: before its cores treat
    // the pod as HBONE (enrolling), after they stop (withdrawing). The push's window is
    // the plumbing's.
    let switch = |config: &mut LocalConfig, to: Protocol| -> Result<(f64, Duration)> {
        set_protocol(config, pod.ip, to)?;
        let took = push_and_wait(plan, control, config)?;
        Ok((took, Duration::from_secs_f64(took / 1000.0)))
    };
    let to_hbone = |config: &mut LocalConfig| switch(config, Protocol::Hbone);
    phases.push(during(plan, "enrolling", pair, || to_hbone(&mut config))?);
    phases.push(measure(
        plan,
        "enrolled",
        pair,
        phase_state(&config, node, pod)?,
    )?);

    let to_tcp = |config: &mut LocalConfig| switch(config, Protocol::Tcp);
    phases.push(during(plan, "withdrawing", pair, || to_tcp(&mut config))?);
    phases.push(measure(
        plan,
        "withdrawn",
        pair,
        phase_state(&config, node, pod)?,
    )?);

    let proxy_pids_after: Vec<i32> = proxy_pids
        .iter()
        .copied()
        .filter(|&p| procs::is_alive(p))
        .collect();
    let nacks = control
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Nack { type_url, message } => Some(format!("{type_url}: {message}")),
            _ => None,
        })
        .collect();
    let mut r = EnrolReport {
        client: client.name.into(),
        pod: pod.name.into(),
        pod_ip: Some(pod.ip),
        phases,
        proxy_pids_before: proxy_pids,
        proxy_pids_after,
        nacks,
        failures: vec![],
    };
    r.failures = failures(&r);
    Ok(r)
}

/// The expectations: every request answered (in a transition, all but resets of
/// connections open across the plumbing step); HBONE exactly while enrolled; nothing
/// restarted; no NACK.
pub fn failures(r: &EnrolReport) -> Vec<String> {
    let mut f = vec![];
    for p in &r.phases {
        let excused = p.resets.min(p.reset_allowance);
        if p.ok + excused != p.requests || p.first_error.is_some() {
            f.push(format!(
                "{}: {} of {} requests answered, {} reset (at most {} can straddle the \
                 plumbing step) (first error: {})",
                p.name,
                p.ok,
                p.requests,
                p.resets,
                p.reset_allowance,
                p.first_error.as_deref().unwrap_or("none")
            ));
        }
        if p.protocol == "-" {
            continue;
        }
        let enrolled = p.protocol == "HBONE";
        if p.plumbed != enrolled {
            f.push(format!(
                "{}: the pod's ipset entry and route are {}, expected them {}",
                p.name,
                if p.plumbed { "in place" } else { "missing" },
                if enrolled { "in place" } else { "gone" }
            ));
        }
        let want = if enrolled { p.requests } else { 0 };
        if p.hbone != want {
            f.push(format!(
                "{}: node B's proxy accepted {} connections over HBONE, expected {want}",
                p.name, p.hbone
            ));
        }
    }
    if r.proxy_pids_after != r.proxy_pids_before {
        f.push(format!(
            "proxies {:?} before, {:?} alive after: a proxy exited",
            r.proxy_pids_before, r.proxy_pids_after
        ));
    }
    if !r.nacks.is_empty() {
        f.push(format!("NACKed pushes: {}", r.nacks.join("; ")));
    }
    f
}

fn phase_state(config: &LocalConfig, node: &Node, pod: &Pod) -> Result<EnrolPhase> {
    let protocol = config
        .workloads
        .iter()
        .find(|w| w.workload_ips.contains(&IpAddr::V4(pod.ip)))
        .map(|w| format!("{:?}", w.protocol).to_uppercase())
        .unwrap_or_default();
    Ok(EnrolPhase {
        protocol,
        plumbed: plumbed(node, pod)?,
        ..EnrolPhase::default()
    })
}

/// Whether `plumb check` finds node `node` exactly as plumbed with `pod` enrolled too.
fn plumbed(node: &Node, pod: &Pod) -> Result<bool> {
    let mut pods = node.enrolled_ips();
    pods.push(pod.ip);
    let report = plumbing::node_check(Some(&node.netns), &mesh::node_input(node, pods))?;
    Ok(report.is_clean())
}

fn set_protocol(config: &mut LocalConfig, ip: Ipv4Addr, protocol: Protocol) -> Result<()> {
    let w = config
        .workloads
        .iter_mut()
        .find(|w| w.workload_ips.contains(&IpAddr::V4(ip)))
        .ok_or_else(|| Error::Setup(format!("no workload with IP {ip} in the demo config")))?;
    w.protocol = protocol;
    Ok(())
}

/// Pushes `config` and waits until both proxies ACKed it and every core of each runs
/// it; returns how long that took, in milliseconds.
fn push_and_wait(plan: &Plan, control: &ControlPlane, config: &LocalConfig) -> Result<f64> {
    let acks = |c: &ControlPlane| {
        c.events()
            .iter()
            .filter(|e| matches!(e, Event::Ack { type_url } if type_url == ADDRESS_TYPE))
            .count()
    };
    let before = acks(control);
    let start = Instant::now();
    control.push(config.clone());
    let mut pending: Vec<&Node> = plan.nodes().to_vec();
    while !pending.is_empty() || acks(control) < before + plan.nodes().len() {
        if start.elapsed() > PROPAGATION_TIMEOUT {
            return Err(Error::Setup(format!(
                "the push was not in force on both proxies within {PROPAGATION_TIMEOUT:?} \
                 ({} ACKs, waiting for {:?}): see the zring logs in {}",
                acks(control) - before,
                pending.iter().map(|n| n.name).collect::<Vec<_>>(),
                procs::state_dir(&plan.prefix).display()
            )));
        }
        let mut still = vec![];
        for n in pending {
            if !runs(n, config)? {
                still.push(n);
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Whether the proxy of `node` holds `config` and every one of its cores adopted it.
fn runs(node: &Node, config: &LocalConfig) -> Result<bool> {
    let admin = SocketAddr::from(([127, 0, 0, 1], ADMIN_PORT));
    let (code, dump) = mesh::http_get_in(&node.ztunnel().netns, admin, "/config_dump")?;
    if code != 200 {
        return Ok(false);
    }
    let Some(d) = ConfigDump::parse(&dump) else {
        return Err(Error::Setup(format!(
            "cannot read zring's /config_dump on {}: {dump:?}",
            node.name
        )));
    };
    Ok(d.adopted >= d.generation && same_workloads(&d.config, config))
}

fn same_workloads(a: &LocalConfig, b: &LocalConfig) -> bool {
    let key = |c: &LocalConfig| {
        let mut v: Vec<String> = c
            .workloads
            .iter()
            .map(|w| format!("{}/{:?}", w.uid, w.protocol))
            .collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

/// The parts of zring's `/config_dump` the demo reads.
struct ConfigDump {
    generation: u64,
    adopted: u64,
    config: LocalConfig,
}

impl ConfigDump {
    fn parse(text: &str) -> Option<ConfigDump> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        let (_, yaml) = text.split_once("\nconfig:\n")?;
        Some(ConfigDump {
            generation: field("generation:")?,
            adopted: field("adopted by every core:")?,
            config: LocalConfig::from_yaml("/config_dump", yaml).ok()?,
        })
    }
}

/// [`PHASE_REQUESTS`] requests from `client` to `pod`, and how node B's proxy saw them.
fn measure(
    plan: &Plan,
    name: &str,
    (client, pod): (&Pod, &Pod),
    state: EnrolPhase,
) -> Result<EnrolPhase> {
    let p = RrPhase {
        rate: 0.0,
        conns: 1,
        payload: 64,
        reconnect: true,
        warmup: Duration::ZERO,
        duration: PROPAGATION_TIMEOUT,
        seed: 1,
        cores: 1,
        closed: true,
        count: Some(PHASE_REQUESTS),
    };
    let before = opened_for(&plan.b, pod)?;
    let r = phase::run_rr(&endpoint(client, pod), &p)?;
    std::thread::sleep(METRICS_SETTLE);
    let after = opened_for(&plan.b, pod)?;
    Ok(EnrolPhase {
        name: name.into(),
        requests: PHASE_REQUESTS,
        ok: r.ok,
        first_error: r.first_error.or(r.correctness),
        resets: r.resets,
        hbone: after.0 - before.0,
        captured_plaintext: after.1 - before.1,
        ..state
    })
}

/// Runs `transition` while `client` sends [`TRANSITION_RATE`] requests a second to
/// `pod` (a new connection each): how long the push took to be in force, and what the
/// requests did.
fn during(
    plan: &Plan,
    name: &str,
    (client, pod): (&Pod, &Pod),
    transition: impl FnOnce() -> Result<(f64, Duration)>,
) -> Result<EnrolPhase> {
    let p = RrPhase {
        rate: TRANSITION_RATE,
        conns: 4,
        payload: 64,
        reconnect: true,
        warmup: Duration::ZERO,
        duration: TRANSITION_WINDOW,
        seed: 1,
        cores: 1,
        closed: false,
        count: None,
    };
    let ep = endpoint(client, pod);
    let before = opened_for(&plan.b, pod)?;
    let (took, r) = std::thread::scope(|s| {
        let load = s.spawn(|| phase::run_rr(&ep, &p));
        std::thread::sleep(TRANSITION_LEAD);
        let took = transition();
        (took, load.join().expect("the load thread does not panic"))
    });
    let ((took, plumbing), r) = (took?, r?);
    std::thread::sleep(METRICS_SETTLE);
    let after = opened_for(&plan.b, pod)?;
    let opened_meanwhile = (TRANSITION_RATE * plumbing.as_secs_f64()).ceil() as u64;
    Ok(EnrolPhase {
        name: name.into(),
        protocol: "-".into(),
        propagation_ms: Some(took),
        requests: r.ok + r.errors,
        ok: r.ok,
        first_error: r.first_other_error.or(r.correctness),
        resets: r.resets,
        reset_allowance: p.conns as u64 + opened_meanwhile,
        hbone: after.0 - before.0,
        captured_plaintext: after.1 - before.1,
        ..EnrolPhase::default()
    })
}

fn endpoint(client: &Pod, pod: &Pod) -> Endpoint {
    Endpoint {
        netns: Some(client.netns.clone()),
        target: SocketAddr::from((pod.ip, HTTP_PORT)),
        expect_ip: IpAddr::V4(client.ip),
        via: None,
    }
}

/// Node B's proxy's opened-connection counters for `pod` as destination:
/// (over mutual TLS, plaintext).
fn opened_for(node: &Node, pod: &Pod) -> Result<(u64, u64)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], METRICS_PORT));
    let (code, text) = mesh::http_get_in(&node.ztunnel().netns, addr, "/metrics")?;
    if code != 200 {
        return Err(Error::Setup(format!(
            "zring's metrics on {} answered {code}",
            node.name
        )));
    }
    Ok(count_opened(&text, &mesh::spiffe_id(pod.name)))
}

/// Sums the destination-reported opened connections to `principal` by security policy.
fn count_opened(metrics: &str, principal: &str) -> (u64, u64) {
    let dest = format!("destination_principal=\"{principal}\"");
    let mut sums = (0, 0);
    for l in metrics.lines().filter(|l| l.starts_with(OPENED)) {
        if !l.contains("reporter=\"destination\"") || !l.contains(&dest) {
            continue;
        }
        let n: u64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64);
        if l.contains("connection_security_policy=\"mutual_tls\"") {
            sums.0 += n;
        } else {
            sums.1 += n;
        }
    }
    sums
}

/// The report as a Markdown table.
pub fn markdown(r: &EnrolReport) -> String {
    let mut s = format!(
        "## Live enrolment over xDS: {} → {} ({})\n\n\
         | phase | served as | plumbed | push in force | answered | reset at the switch | via HBONE | captured plaintext |\n\
         |---|---|---|---|---|---|---|---|\n",
        r.client,
        r.pod,
        r.pod_ip.map_or("-".into(), |ip| ip.to_string())
    );
    for p in &r.phases {
        let took = p
            .propagation_ms
            .map_or("-".into(), |ms| format!("{ms:.0} ms"));
        let resets = match p.protocol.as_str() {
            "-" => format!("{} (≤ {})", p.resets, p.reset_allowance),
            _ => "-".into(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {took} | {}/{} | {resets} | {} | {} |\n",
            p.name,
            p.protocol,
            match (p.protocol.as_str(), p.plumbed) {
                ("-", _) => "-",
                (_, true) => "yes",
                _ => "no",
            },
            p.ok,
            p.requests,
            p.hbone,
            p.captured_plaintext
        ));
    }
    s.push_str(&format!(
        "\nproxies (pids {:?}) not restarted: {}\n",
        r.proxy_pids_before,
        r.proxy_pids_after == r.proxy_pids_before
    ));
    if r.failures.is_empty() {
        s.push_str("\nPASSED\n");
    } else {
        s.push_str("\nFAILED:\n");
        for f in &r.failures {
            s.push_str(&format!("- {f}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_destination_series_by_security_policy() {
        let p = "spiffe://cluster.local/ns/default/sa/server-plain";
        let text = format!(
            "# TYPE istio_tcp_connections_opened_total counter\n\
             istio_tcp_connections_opened_total{{reporter=\"destination\",destination_principal=\"{p}\",connection_security_policy=\"mutual_tls\"}} 7\n\
             istio_tcp_connections_opened_total{{reporter=\"destination\",destination_principal=\"{p}\",connection_security_policy=\"unknown\"}} 2\n\
             istio_tcp_connections_opened_total{{reporter=\"source\",destination_principal=\"{p}\",connection_security_policy=\"mutual_tls\"}} 5\n\
             istio_tcp_connections_opened_total{{reporter=\"destination\",destination_principal=\"spiffe://x/ns/a/sa/b\",connection_security_policy=\"mutual_tls\"}} 9\n\
             istio_tcp_connections_closed_total{{reporter=\"destination\",destination_principal=\"{p}\",connection_security_policy=\"mutual_tls\"}} 4\n"
        );
        assert_eq!(count_opened(&text, p), (7, 2));
    }

    #[test]
    fn config_dump_parse_reads_generations_and_config() {
        let yaml = serde_yaml::to_string(&mesh::local_config(&Plan::new("x-"))).unwrap();
        let text = format!(
            "generation: 5\nadopted by every core: 4\nsource: xDS https://a\nworkloads: 4\nconfig:\n{yaml}"
        );
        let d = ConfigDump::parse(&text).unwrap();
        assert_eq!((d.generation, d.adopted), (5, 4));
        assert!(same_workloads(
            &d.config,
            &mesh::local_config(&Plan::new("x-"))
        ));
        assert!(ConfigDump::parse("generation: 5\n").is_none());
    }

    fn phase(name: &str, protocol: &str, ok: u64, hbone: u64) -> EnrolPhase {
        EnrolPhase {
            name: name.into(),
            protocol: protocol.into(),
            plumbed: protocol == "HBONE",
            requests: 50,
            ok,
            hbone,
            ..EnrolPhase::default()
        }
    }

    #[test]
    fn failures_name_the_phase_that_missed() {
        let mut r = EnrolReport {
            phases: vec![
                phase("before", "TCP", 50, 0),
                phase("enrolled", "HBONE", 50, 50),
                phase("withdrawn", "TCP", 50, 0),
            ],
            proxy_pids_before: vec![1, 2],
            proxy_pids_after: vec![1, 2],
            ..EnrolReport::default()
        };
        assert!(failures(&r).is_empty());
        r.phases[1].hbone = 49;
        r.phases[2].ok = 48;
        r.proxy_pids_after = vec![1];
        let f = failures(&r);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].starts_with("enrolled: node B's proxy accepted 49"));
        assert!(f[1].starts_with("withdrawn: 48 of 50"));
        assert!(f[2].contains("a proxy exited"));
    }

    #[test]
    fn a_transition_excuses_only_resets_of_connections_across_the_plumbing_step() {
        let mut enrolling = EnrolPhase {
            name: "enrolling".into(),
            protocol: "-".into(),
            requests: 300,
            ok: 297,
            resets: 3,
            reset_allowance: 5,
            ..EnrolPhase::default()
        };
        let mut r = EnrolReport {
            phases: vec![enrolling.clone()],
            ..EnrolReport::default()
        };
        assert!(failures(&r).is_empty(), "{:?}", failures(&r));
        enrolling.ok = 293;
        enrolling.resets = 7;
        r.phases = vec![enrolling.clone()];
        let f = failures(&r);
        assert!(
            f[0].contains("293 of 300 requests answered, 7 reset (at most 5"),
            "{f:?}"
        );
        enrolling.ok = 296;
        enrolling.resets = 3;
        enrolling.first_error = Some("reading a response: timed out".into());
        r.phases = vec![enrolling.clone()];
        assert_eq!(failures(&r).len(), 1, "another error is never excused");
        let mut steady = phase("enrolled", "HBONE", 49, 50);
        steady.resets = 1;
        r.phases = vec![steady];
        assert!(failures(&r)[0].starts_with("enrolled: 49 of 50"));
    }
}
