//! The command line of `zring-loadgen` (clap derive): subcommands and their flags.

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;
use zring_loadgen::run::RunOptions;
use zring_loadgen::topo;

/// Default name prefix of every namespace of the topology.
const DEFAULT_PREFIX: &str = "zrl-";

#[derive(Parser)]
#[command(
    name = "zring-loadgen",
    version,
    about = "Two-node ambient topology, open-loop load and latency/throughput reports"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Build, remove or inspect the topology.
    Topology {
        #[command(subcommand)]
        action: TopoCmd,
    },
    /// Run the scenarios against a running topology and write a report.
    Run {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        #[command(flatten)]
        load: LoadArgs,
        /// Directory the `<UTC date>-<commit>` report directory is created in.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Capture node A's eth0 (mesh pair only) into this pcap and check that only
        /// HBONE crossed the nodes.
        #[arg(long)]
        pcap: Option<PathBuf>,
    },
    /// topology up → a short sweep → report → topology down, in one command.
    Demo {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        #[command(flatten)]
        up: UpArgs,
        #[command(flatten)]
        load: LoadArgs,
        /// A few-second run (CI): two rates, one connection rate, one bulk setting.
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Capture node A's eth0 into this pcap and check that only HBONE crossed the nodes.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// Serve workloads and certificates from the project's control plane over xDS,
        /// then enrol and withdraw node B's plain server live (`enrolment.md` in the report).
        #[arg(long)]
        xds: bool,
        /// In-pod capture on both nodes: each zring runs with `--inpod` and the project's
        /// fake istio-cni installs istio-cni's in-pod rules in the enrolled pods and hands
        /// them over ZDS (no node plumbing).
        #[arg(long)]
        inpod: bool,
    },
    /// zring and a peer proxy (istio/ztunnel) side by side, each in its own namespace.
    Peer(PeerArgs),
    /// In-pod mode side by side: zring and ztunnel each on the project's fake istio-cni
    /// with a client pod and a server pod; memory and descriptors per pod, AddWorkload →
    /// first captured connection, bulk, closed-loop echo and churn.
    Inpod(InpodArgs),
    /// New pod pairs across nodes: M sources × K destinations, one connection (so one
    /// HBONE connection) each, zring vs ztunnel; pairs/s, p99, CPU per pair.
    Pairs(PairsArgs),
    /// What a cluster's size costs each proxy: N workloads over the control plane to
    /// ztunnel, then to zring; ready time, RSS, CPU and ACK time per push.
    Scale(ScaleArgs),
    /// How long new connections fail while node A's zring restarts (SIGTERM, a new zring
    /// in the same pod): topology up → restarts under load → report → topology down.
    Restart(RestartArgs),
    /// Many concurrent checksummed connections through the mesh for a bounded time:
    /// topology up → soak → checks → topology down; exits 1 when a check fails.
    Soak(SoakArgs),
    /// The soak's echo server (started inside the mesh server pod by `soak`).
    #[command(hide = true)]
    SoakEcho {
        #[arg(long)]
        bind: IpAddr,
        #[arg(long, default_value_t = zring_loadgen::soak::SOAK_PORT)]
        port: u16,
    },
    /// Cores and memory one node needs for some traffic, from a `peer` report.
    Capacity(CapacityArgs),
    /// Issue 23's goals judged over several `peer` runs: each run's zring/ztunnel ratio of
    /// every part of a goal, their median, and the status by that median.
    Goals(GoalsArgs),
    /// The HTTP responder and bulk sink (started inside the server pods by `topology up`).
    Serve {
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        bind: IpAddr,
        #[arg(long, default_value_t = topo::plan::HTTP_PORT)]
        http_port: u16,
        #[arg(long, default_value_t = topo::plan::SINK_PORT)]
        sink_port: u16,
        #[arg(long, default_value_t = 1)]
        cores: usize,
    },
}

#[derive(Subcommand)]
pub enum TopoCmd {
    /// Create the namespaces, links, plumbing; start servers and proxies.
    Up {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        #[command(flatten)]
        up: UpArgs,
    },
    /// Remove everything of the topology, from any state (also after a crash).
    Down {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Show the namespaces and processes of the topology.
    Status {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
}

#[derive(Args, Clone)]
pub struct UpArgs {
    /// Baseline only: no plumbing, no proxies.
    #[arg(long)]
    pub no_mesh: bool,
    /// The zring binary (default: `zring` next to this executable).
    #[arg(long)]
    pub zring: Option<PathBuf>,
    /// `--cores` of each zring proxy.
    #[arg(long, default_value_t = 1)]
    pub proxy_cores: usize,
    /// Cores of each server process.
    #[arg(long, default_value_t = 1)]
    pub server_cores: usize,
}

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Offered request rates of the keep-alive sweep (stops at saturation).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,20000")]
    pub rates: Vec<f64>,
    /// Connections (keep-alive) or connection slots (connect-per-request).
    #[arg(long, default_value_t = 16)]
    pub conns: usize,
    /// Request and response body size, bytes.
    #[arg(long, default_value_t = 1024)]
    pub payload: usize,
    /// Offered rates of the connect-per-request scenario.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub cpr_rates: Vec<f64>,
    /// Stream counts of the bulk scenario (empty: skip).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub bulk_streams: Vec<usize>,
    /// Warm-up seconds discarded at the start of each point.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Measured seconds per point.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds per bulk point.
    #[arg(long, default_value_t = 3.0)]
    pub bulk_duration: f64,
    /// Client cores (one monoio runtime each).
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// Seed of the payloads.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl LoadArgs {
    /// The run options these flags describe (`quick`: the few-second CI settings).
    pub fn options(&self, quick: bool) -> RunOptions {
        let secs = Duration::from_secs_f64;
        let mut o = RunOptions {
            rates: self.rates.clone(),
            conns: self.conns,
            payload: self.payload,
            cpr_rates: self.cpr_rates.clone(),
            bulk_streams: self.bulk_streams.clone(),
            warmup: secs(self.warmup),
            duration: secs(self.duration),
            bulk_duration: secs(self.bulk_duration),
            cores: self.cores,
            seed: self.seed,
        };
        if quick {
            o.rates = vec![500.0, 2000.0];
            o.cpr_rates = vec![200.0];
            o.bulk_streams = vec![2];
            o.warmup = secs(0.2);
            o.duration = secs(1.0);
            o.bulk_duration = secs(1.0);
        }
        o
    }
}

#[derive(Args, Clone)]
pub struct PeerArgs {
    /// The peer proxy binary (istio/ztunnel).
    #[arg(long, default_value = "../shared/peers/ztunnel")]
    pub peer: PathBuf,
    /// The zring binary (default: `zring` next to this executable).
    #[arg(long)]
    pub zring: Option<PathBuf>,
    /// The peer's test root certificate (default: `ztunnel-test-root-cert.pem` beside --peer).
    #[arg(long)]
    pub root_cert: Option<PathBuf>,
    /// The peer's test root key (default: `ztunnel-test-root-key.pem` beside --peer).
    #[arg(long)]
    pub root_key: Option<PathBuf>,
    /// About one minute (CI): small sizes, short phases.
    #[arg(long)]
    pub quick: bool,
    /// Directory the `<UTC date>-<commit>-peer` report directory is created in.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Cores of each proxy (`zring run --cores N`, `ZTUNNEL_WORKER_THREADS=N`).
    #[arg(long, default_value_t = 2)]
    pub cores: usize,
    /// Also measure the client straight to the server (the floor; default on).
    #[arg(long, overrides_with = "no_direct")]
    pub direct: bool,
    /// Skip the direct column.
    #[arg(long)]
    pub no_direct: bool,
    /// Seed of the payloads.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Name prefix of the namespaces (`<prefix>ztunnel`, `<prefix>zring`; across nodes
    /// `<prefix>x-<proxy>-a`, `…-b`).
    #[arg(long, default_value = "zrp-")]
    pub prefix: String,
    /// Measure only these figures (comma-separated report keys, e.g. `held,churn16`);
    /// goals whose figures are missing read "not measured".
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Where the two ends are: `cross` (client on node A, server on node B, a proxy on
    /// each), `same` (one proxy carries both ends) or `both` (cross node first).
    #[arg(long, default_value = "both", value_parser = ["cross", "same", "both"])]
    pub shape: String,
}

#[derive(Args, Clone)]
pub struct InpodArgs {
    /// The peer proxy binary (istio/ztunnel); its test root must lie beside it.
    #[arg(long, default_value = "../shared/peers/ztunnel")]
    pub peer: PathBuf,
    /// The zring binary (default: `zring` next to this executable).
    #[arg(long)]
    pub zring: Option<PathBuf>,
    /// The report directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Cores of each proxy (`zring run --cores N`, `ZTUNNEL_WORKER_THREADS=N`).
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// Pods handed over for the memory and descriptors per pod.
    #[arg(long, default_value_t = 100)]
    pub pods: usize,
    /// Repeats (proxies in alternating order); figures are their medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bytes of the one-stream bulk figure.
    #[arg(long, default_value_t = 1 << 30)]
    pub bulk_bytes: u64,
    /// Seconds of the closed-loop echo figure.
    #[arg(long, default_value_t = 5.0)]
    pub echo_secs: f64,
    /// Connections of each churn figure (concurrency 1 and 16).
    #[arg(long, default_value_t = 3000)]
    pub churn_ops: u64,
    /// Also measure zring with its same-node fast path off (pod to pod as HBONE).
    #[arg(long)]
    pub tunnel: bool,
    /// Name prefix of the namespaces.
    #[arg(long, default_value = "zri")]
    pub prefix: String,
}

#[derive(Args, Clone)]
pub struct PairsArgs {
    /// The peer proxy binary (istio/ztunnel); its test root must lie beside it.
    #[arg(long, default_value = "../shared/peers/ztunnel")]
    pub peer: PathBuf,
    /// The zring binary (default: `zring` next to this executable).
    #[arg(long)]
    pub zring: Option<PathBuf>,
    /// Further zring builds measured in the same run, as `name=path` (e.g. the build
    /// before a change: `zring-base=/tmp/zring-base`).
    #[arg(long = "also")]
    pub also: Vec<String>,
    /// Source workloads on node A (distinct IPs).
    #[arg(long, default_value_t = 32)]
    pub sources: usize,
    /// Destination workloads on node B (distinct IPs).
    #[arg(long, default_value_t = 32)]
    pub dests: usize,
    /// Pairs in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Seed of the pair order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "zrq-")]
    pub prefix: String,
    /// Directory the `<UTC date>-<commit>-pairs` report directory is created in.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

#[derive(Args, Clone)]
pub struct RestartArgs {
    #[arg(long, default_value = "zrr-")]
    pub prefix: String,
    /// The zring binary (default: `zring` next to this executable).
    #[arg(long)]
    pub zring: Option<PathBuf>,
    /// New connections per second from node A's enrolled client.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// An attempt fails without an HTTP answer within this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Seconds of load before each SIGTERM and after each new zring is ready.
    #[arg(long, default_value_t = 1.0)]
    pub margin_s: f64,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct ScaleArgs {
    /// The peer proxy binary (istio/ztunnel).
    #[arg(long, default_value = "../shared/peers/ztunnel")]
    pub peer: PathBuf,
    /// The zring binary (default: `zring` next to this executable).
    #[arg(long)]
    pub zring: Option<PathBuf>,
    /// Workloads in the cluster.
    #[arg(long, default_value_t = 100_000)]
    pub workloads: usize,
    /// Services in the cluster (one port each; workload i is in service i mod S).
    #[arg(long, default_value_t = 10_000)]
    pub services: usize,
    /// 1,000 then 5,000 workloads (a tenth as many services), and the check that CPU
    /// per push does not grow with them (exit 1 when it does for zring).
    #[arg(long)]
    pub quick: bool,
    /// The proxies measured, in order (comma-separated: ztunnel, zring).
    #[arg(long, value_delimiter = ',', default_value = "ztunnel,zring")]
    pub proxies: Vec<String>,
    /// Single-workload pushes.
    #[arg(long, default_value_t = 20)]
    pub pushes: usize,
    /// Workloads in the bulk push (then every added workload is removed at once).
    #[arg(long, default_value_t = 1000)]
    pub bulk: usize,
    /// Cores of each proxy (`zring run --cores N`, `ZTUNNEL_WORKER_THREADS=N`).
    #[arg(long, default_value_t = 2)]
    pub cores: usize,
    /// Seed of the services new workloads join.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Name prefix of the namespaces (`<prefix>ztunnel`, `<prefix>zring`).
    #[arg(long, default_value = "zrs-")]
    pub prefix: String,
    /// How long a proxy may take to become ready, in seconds.
    #[arg(long, default_value_t = 600)]
    pub ready_timeout: u64,
    /// Directory the `<UTC date>-<commit>-scale` report directory is created in.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

#[derive(Args, Clone)]
pub struct GoalsArgs {
    /// `peer` report directories (or their `report.json`), one per run; a directory
    /// without a report.json stands for each of its subdirectories that has one.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Also write the Markdown table to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct CapacityArgs {
    /// A `report.json` written by `zring-loadgen peer` (or its directory).
    #[arg(long)]
    pub report: PathBuf,
    /// Requests per second the node must serve.
    #[arg(long)]
    pub rps: f64,
    /// Bulk throughput the node must carry, Gb/s.
    #[arg(long)]
    pub gbps: f64,
    /// Open connections at once.
    #[arg(long)]
    pub conns: f64,
    /// New connections per second.
    #[arg(long, default_value_t = 0.0)]
    pub new_conns_per_sec: f64,
    /// The p99 latency requests must stay under (e.g. 1ms, 500us).
    #[arg(long, default_value = "1ms")]
    pub p99_slo: String,
    /// Where to write the Markdown (default: capacity.md beside the report).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct SoakArgs {
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    #[command(flatten)]
    pub up: UpArgs,
    /// Concurrent connections, all open at once.
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
    /// Seconds the connections carry rounds.
    #[arg(long, default_value_t = 300.0)]
    pub duration: f64,
    /// Bytes per round each way.
    #[arg(long, default_value_t = 1024)]
    pub payload: usize,
    /// Mean seconds between a connection's rounds.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Client cores.
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the report (with every sample) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl SoakArgs {
    pub fn options(&self) -> zring_loadgen::soak::SoakOptions {
        zring_loadgen::soak::SoakOptions {
            conns: self.conns,
            duration_s: self.duration,
            payload: self.payload,
            interval_s: self.interval,
            cores: self.cores,
            seed: self.seed,
        }
    }
}
