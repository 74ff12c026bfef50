//! `zring-loadgen inpod`: zring and istio/ztunnel side by side in in-pod mode, each on the
//! project's fake istio-cni ([`lab`]) with a client pod and a server pod. Per repeat, the
//! proxies in alternating order, one at a time: memory and descriptors per enrolled pod,
//! AddWorkload → Ack, AddWorkload → the pod's first captured connection, then bulk (one
//! stream), closed-loop echo and churn from the client pod to the server pod through
//! in-pod capture, proxy CPU from /proc. Medians over repeats and zring/ztunnel ratios
//! ([`report`]). [`demo`] is `demo --inpod`'s fake CNI for the demo topology.

pub mod demo;
pub mod lab;
pub mod report;

use crate::error::{Error, Result};
use crate::phase::{self, BulkPhase, Endpoint, RrPhase};
use crate::procs;
use lab::{Pods, Running};
use report::{Row, Sample};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One proxy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// zring with the same-node fast path on (its default) or off (pod to pod as HBONE
    /// through its own 15008, as ztunnel carries it).
    Zring {
        fast_path: bool,
    },
    Ztunnel,
}

impl Proxy {
    /// The column and file name.
    pub fn tag(self) -> &'static str {
        match self {
            Proxy::Zring { fast_path: true } => "zring",
            Proxy::Zring { fast_path: false } => "zring-tunnel",
            Proxy::Ztunnel => "ztunnel",
        }
    }
}

/// What `inpod` was asked to do.
#[derive(Debug, Clone)]
pub struct InpodOptions {
    pub zring: PathBuf,
    pub peer: PathBuf,
    /// The peer's test root (zring's leaves are signed by it, as in `peer`).
    pub root: (PathBuf, PathBuf),
    pub prefix: String,
    pub cores: usize,
    /// Cost pods handed over for the per-pod memory and descriptors.
    pub pods: usize,
    pub repeats: usize,
    pub seed: u64,
    pub bulk_bytes: u64,
    pub echo_secs: f64,
    pub churn_ops: u64,
    /// Also measure zring with its same-node fast path off.
    pub tunnel: bool,
    /// Scratch directory (config, certificates, sockets, logs).
    pub dir: PathBuf,
}

/// Runs every repeat; the samples in the order measured.
pub fn run(o: &InpodOptions) -> Result<Vec<Sample>> {
    write_inputs(o)?;
    let pods = Pods::new(&o.prefix, o.pods)?;
    let mut proxies = vec![Proxy::Zring { fast_path: true }, Proxy::Ztunnel];
    if o.tunnel {
        proxies.insert(1, Proxy::Zring { fast_path: false });
    }
    let mut out = Vec::new();
    for r in 0..o.repeats {
        let mut order = proxies.clone();
        if r % 2 == 1 {
            order.reverse();
        }
        for proxy in order {
            eprintln!("repeat {}/{}: {}", r + 1, o.repeats, proxy.tag());
            let seed = o.seed.wrapping_add(r as u64);
            out.push(measure(proxy, o, &pods, r, seed)?);
        }
    }
    Ok(out)
}

fn write_inputs(o: &InpodOptions) -> Result<()> {
    let dir = &o.dir;
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let config = dir.join("workloads.yaml");
    std::fs::write(&config, lab::workloads_yaml())
        .map_err(Error::io(format!("writing {}", config.display())))?;
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).map_err(Error::io(format!("creating {}", certs.display())))?;
    for (from, name) in [(&o.root.0, "root-cert.pem"), (&o.root.1, "root-key.pem")] {
        std::fs::copy(from, certs.join(name)).map_err(Error::io(format!(
            "copying the test root {} (the peer's test root must be readable)",
            from.display()
        )))?;
    }
    let d = certs.display().to_string();
    for sa in ["sa-client", "sa-server"] {
        let id = format!("spiffe://cluster.local/ns/zin/sa/{sa}");
        crate::mesh::run_zring(&o.zring, &["ca", "issue", "--dir", &d, &id])?;
    }
    Ok(())
}

/// One proxy, one repeat: cost per pod, time to a pod's first connection, the figures.
fn measure(
    proxy: Proxy,
    o: &InpodOptions,
    pods: &Pods,
    repeat: usize,
    seed: u64,
) -> Result<Sample> {
    let p = Running::start(proxy, o, &o.dir)?;
    let mut s = Sample::new(proxy.tag(), repeat);
    let before = p.settled_cost();
    let mut acks = Duration::ZERO;
    for (i, ns) in pods.many.iter().enumerate() {
        acks += p.add(&format!("uid-p{i}"), "cost", ns)?;
    }
    let after = p.settled_cost();
    let n = pods.many.len().max(1) as f64;
    s.set("rss_kb_per_pod", (after.0 as f64 - before.0 as f64) / n);
    s.set("fds_per_pod", (after.1 as f64 - before.1 as f64) / n);
    s.set("ack_ms_per_pod", acks.as_secs_f64() * 1e3 / n);
    // The server pod first, so only the client pod's add is on the clock.
    p.add("uid-server", "server", &pods.server.ns)?;
    let t = std::time::Instant::now();
    let ack = p.add("uid-client", "client", &pods.client.ns)?;
    lab::first_echo(pods)?;
    s.set("add_to_ack_ms", ack.as_secs_f64() * 1e3);
    s.set("add_to_first_conn_ms", t.elapsed().as_secs_f64() * 1e3);
    figures(&p, o, pods, seed, &mut s);
    p.stop();
    Ok(s)
}

fn endpoint(pods: &Pods, port: u16) -> Endpoint {
    Endpoint {
        netns: Some(pods.client.ns.name().to_string()),
        target: SocketAddr::new(IpAddr::V4(lab::SERVER_IP), port),
        // Both proxies deliver in-pod with the client's own address.
        expect_ip: IpAddr::V4(lab::CLIENT_IP),
        via: None,
    }
}

/// Bulk, closed-loop echo and churn through in-pod capture; failures are recorded in the
/// sample (its figure is then left out) rather than ending the run.
fn figures(p: &Running, o: &InpodOptions, pods: &Pods, seed: u64, s: &mut Sample) {
    let pid = [p.proc.pid];
    let cpu = || procs::cpu_seconds(&pid);
    let bulk = BulkPhase {
        streams: 1,
        duration: Duration::from_secs(60),
        seed,
        cores: 1,
        bytes: Some(o.bulk_bytes),
    };
    let c0 = cpu();
    match phase::run_bulk(&endpoint(pods, lab::SINK_PORT), &bulk) {
        Ok(r) if r.error.is_none() && r.correctness.is_none() && r.bytes > 0 => {
            s.set("bulk_gbps", r.gbps);
            s.set("bulk_cpu_s_per_gb", (cpu() - c0) * 1e9 / r.bytes as f64);
        }
        Ok(r) => s.fail(format!("bulk: {:?} {:?}", r.error, r.correctness)),
        Err(e) => s.fail(format!("bulk: {e}")),
    }
    let echo = rr_phase(
        1,
        1024,
        false,
        Some(Duration::from_secs_f64(o.echo_secs)),
        None,
        seed,
    );
    rr(s, "echo", &endpoint(pods, lab::HTTP_PORT), &echo, &cpu);
    for c in [1, 16] {
        let churn = rr_phase(c, 1, true, None, Some(o.churn_ops), seed);
        rr(
            s,
            &format!("churn{c}"),
            &endpoint(pods, lab::HTTP_PORT),
            &churn,
            &cpu,
        );
    }
}

fn rr_phase(
    conns: usize,
    payload: usize,
    reconnect: bool,
    duration: Option<Duration>,
    count: Option<u64>,
    seed: u64,
) -> RrPhase {
    let duration = duration.unwrap_or(Duration::from_secs(60));
    RrPhase {
        rate: 0.0,
        conns,
        payload,
        reconnect,
        warmup: if count.is_some() {
            Duration::ZERO
        } else {
            duration.mul_f64(0.2).min(Duration::from_secs(1))
        },
        duration,
        seed,
        cores: 1,
        closed: true,
        count,
    }
}

/// A closed-loop phase into `<name>_*` values: rate, p50/p99, proxy CPU per operation.
fn rr(s: &mut Sample, name: &str, ep: &Endpoint, p: &RrPhase, cpu: &dyn Fn() -> f64) {
    let c0 = cpu();
    match phase::run_rr(ep, p) {
        Ok(r) if r.ok > 0 && r.errors == 0 && r.correctness.is_none() => {
            let used = cpu() - c0;
            s.set(&format!("{name}_rps"), r.achieved_rps);
            s.set(&format!("{name}_p50_us"), r.latency.p50_us as f64);
            s.set(&format!("{name}_p99_us"), r.latency.p99_us as f64);
            s.set(
                &format!("{name}_cpu_us_per_op"),
                used * 1e6 / r.completed.max(1) as f64,
            );
        }
        Ok(r) => s.fail(format!(
            "{name}: {} ok, {} errors, first {:?}, {:?}",
            r.ok, r.errors, r.first_error, r.correctness
        )),
        Err(e) => s.fail(format!("{name}: {e}")),
    }
}

/// Writes `report.json` and `README.md` under `out`.
pub fn write(out: &Path, samples: &[Sample], header: &str) -> Result<Vec<Row>> {
    std::fs::create_dir_all(out).map_err(Error::io(format!("creating {}", out.display())))?;
    let rows = report::rows(samples);
    let json = serde_json::to_string_pretty(samples).expect("samples serialise");
    let md = format!("{header}\n{}", report::markdown(&rows, samples));
    for (name, text) in [("report.json", json), ("README.md", md)] {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(Error::io(format!("writing {}", p.display())))?;
    }
    Ok(rows)
}
