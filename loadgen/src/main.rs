//! `zring-loadgen`: build the two-node topology, drive load through the mesh and the
//! baseline, write a report. `zring-loadgen demo` does all of it in one command.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zring_loadgen::capture;
use zring_loadgen::mesh::MeshOptions;
use zring_loadgen::report;
use zring_loadgen::run::{self, RunOptions};
use zring_loadgen::server::{self, ServeConfig};
use zring_loadgen::topo::{self, plan::Plan, UpOptions};

/// Default name prefix of every namespace of the topology.
const DEFAULT_PREFIX: &str = "zrl-";

#[derive(Parser)]
#[command(
    name = "zring-loadgen",
    version,
    about = "Two-node ambient topology, open-loop load and latency/throughput reports"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
    },
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
enum TopoCmd {
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
struct UpArgs {
    /// Baseline only: no plumbing, no proxies.
    #[arg(long)]
    no_mesh: bool,
    /// The zring binary (default: `zring` next to this executable).
    #[arg(long)]
    zring: Option<PathBuf>,
    /// `--cores` of each zring proxy.
    #[arg(long, default_value_t = 1)]
    proxy_cores: usize,
    /// Cores of each server process.
    #[arg(long, default_value_t = 1)]
    server_cores: usize,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Offered request rates of the keep-alive sweep (stops at saturation).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,20000")]
    rates: Vec<f64>,
    /// Connections (keep-alive) or connection slots (connect-per-request).
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// Request and response body size, bytes.
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// Offered rates of the connect-per-request scenario.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    cpr_rates: Vec<f64>,
    /// Stream counts of the bulk scenario (empty: skip).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    bulk_streams: Vec<usize>,
    /// Warm-up seconds discarded at the start of each point.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measured seconds per point.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds per bulk point.
    #[arg(long, default_value_t = 3.0)]
    bulk_duration: f64,
    /// Client cores (one monoio runtime each).
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Seed of the payloads.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl LoadArgs {
    fn options(&self, quick: bool) -> RunOptions {
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

fn up_options(a: &UpArgs) -> Result<UpOptions> {
    let self_exe = std::env::current_exe().context("locating the zring-loadgen executable")?;
    let mesh = if a.no_mesh {
        None
    } else {
        let zring = a
            .zring
            .clone()
            .unwrap_or_else(|| self_exe.with_file_name("zring"));
        if !zring.exists() {
            bail!(
                "{} not found: build it (`cargo build --release --workspace`), pass --zring PATH, or use --no-mesh",
                zring.display()
            );
        }
        Some(MeshOptions {
            zring,
            cores: a.proxy_cores,
        })
    };
    Ok(UpOptions {
        server_cores: a.server_cores,
        self_exe,
        mesh,
    })
}

fn topology_up(prefix: &str, a: &UpArgs) -> Result<()> {
    let state = topo::up(&Plan::new(prefix), &up_options(a)?)?;
    eprintln!(
        "topology {prefix} up: {} processes (mesh: {})",
        state.procs.len(),
        state.mesh
    );
    Ok(())
}

fn topology_down(prefix: &str) -> Result<()> {
    let r = topo::down(prefix)?;
    eprintln!(
        "topology {prefix} down: {} namespaces removed, {} processes stopped",
        r.netns.len(),
        r.processes
    );
    Ok(())
}

fn topology_status(prefix: &str) -> Result<bool> {
    let plan = Plan::new(prefix);
    let s = topo::status(prefix)?;
    println!(
        "namespaces: {}",
        if s.netns.is_empty() {
            "none".into()
        } else {
            s.netns.join(" ")
        }
    );
    for p in s.state.iter().flat_map(|st| st.procs.iter()) {
        let alive = if zring_loadgen::procs::is_alive(p.pid) {
            "running"
        } else {
            "DEAD"
        };
        println!(
            "{:<7} pid {:<8} {alive:<8} in {} (log {})",
            p.kind,
            p.pid,
            p.netns,
            p.log.display()
        );
    }
    let healthy = s.healthy(&plan);
    println!(
        "status: {}",
        if healthy {
            "up"
        } else if s.netns.is_empty() {
            "down"
        } else {
            "degraded"
        }
    );
    Ok(healthy)
}

fn run_and_report(
    prefix: &str,
    opts: &RunOptions,
    out: &Path,
    pcap: Option<&Path>,
) -> Result<bool> {
    let argv: Vec<String> = std::env::args().collect();
    let plan = Plan::new(prefix);
    let capture = pcap.map(|p| capture::start(&plan, p)).transpose()?;
    let r = run::run(&plan, opts, argv);
    let link = capture.map(|c| c.finish()).transpose()?;
    let mut r = r?;
    if let Some(l) = link {
        r.check_node_link(l);
    }
    let dir = report::run_dir(out, &r.started_utc[..10], &r.commit);
    let files = report::write(&r, &dir)?;
    println!("{}", report::markdown(&r));
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(r.passed())
}

fn demo(
    prefix: &str,
    up: &UpArgs,
    opts: &RunOptions,
    out: &Path,
    pcap: Option<&Path>,
) -> Result<bool> {
    let _ = topo::down(prefix);
    let res = topology_up(prefix, up).and_then(|()| run_and_report(prefix, opts, out, pcap));
    let down = topology_down(prefix);
    let passed = res?;
    down?;
    Ok(passed)
}

fn serve(bind: IpAddr, http_port: u16, sink_port: u16, cores: usize) -> Result<()> {
    let cfg = ServeConfig {
        bind_ip: bind,
        http_port,
        sink_port,
        cores,
        stall: None,
    };
    let b = server::start(&cfg, None)?;
    eprintln!("serving HTTP on {} and the sink on {}", b.http, b.sink);
    loop {
        std::thread::park();
    }
}

fn main() -> Result<()> {
    let ok = match Cli::parse().cmd {
        Cmd::Topology {
            action: TopoCmd::Up { prefix, up },
        } => topology_up(&prefix, &up).map(|()| true)?,
        Cmd::Topology {
            action: TopoCmd::Down { prefix },
        } => topology_down(&prefix).map(|()| true)?,
        Cmd::Topology {
            action: TopoCmd::Status { prefix },
        } => topology_status(&prefix)?,
        Cmd::Run {
            prefix,
            load,
            out,
            pcap,
        } => run_and_report(&prefix, &load.options(false), &out, pcap.as_deref())?,
        Cmd::Demo {
            prefix,
            up,
            load,
            quick,
            out,
            pcap,
        } => demo(&prefix, &up, &load.options(quick), &out, pcap.as_deref())?,
        Cmd::Serve {
            bind,
            http_port,
            sink_port,
            cores,
        } => serve(bind, http_port, sink_port, cores).map(|()| true)?,
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
