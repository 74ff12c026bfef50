//! `zring-loadgen`: build the two-node topology, drive load through the mesh and the
//! baseline, write a report. `zring-loadgen demo` does all of it in one command.

use anyhow::{bail, Context, Result};
use clap::Parser;
use cli::{
    CapacityArgs, Cli, Cmd, GoalsArgs, PairsArgs, PeerArgs, RestartArgs, ScaleArgs, SoakArgs,
    TopoCmd, UpArgs,
};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zring_loadgen::capture;
use zring_loadgen::control::ControlPlane;
use zring_loadgen::enrol;
use zring_loadgen::mesh::MeshOptions;
use zring_loadgen::report;
use zring_loadgen::run::{self, RunOptions};
use zring_loadgen::{capacity, pairs, peer, scale};

mod cli;
use zring_loadgen::server::{self, ServeConfig};
use zring_loadgen::topo::{self, plan::Plan, UpOptions};

fn up_options(a: &UpArgs) -> Result<UpOptions> {
    up_options_with(a, None, false)
}

fn up_options_with(
    a: &UpArgs,
    pool_idle: Option<std::time::Duration>,
    xds: bool,
) -> Result<UpOptions> {
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
            pool_idle,
            xds,
            inpod: false,
        })
    };
    Ok(UpOptions {
        server_cores: a.server_cores,
        self_exe,
        mesh,
    })
}

/// `demo --inpod`: the proxies capture in-pod beside the fake istio-cni.
fn with_inpod(mut o: UpOptions, inpod: bool) -> UpOptions {
    if let Some(m) = &mut o.mesh {
        m.inpod = inpod;
    }
    o
}

fn topology_up(prefix: &str, a: &UpArgs) -> Result<()> {
    let state = topo::up(&Plan::new(prefix), &up_options(a)?)?.state;
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

/// Runs the scenarios and writes the report; returns whether it passed and its directory.
fn run_and_report(
    prefix: &str,
    opts: &RunOptions,
    out: &Path,
    pcap: Option<&Path>,
) -> Result<(bool, PathBuf)> {
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
    Ok((r.passed(), dir))
}

/// topology up → the sweep and report → (xDS mode) live enrolment → topology down.
fn demo(
    prefix: &str,
    up: &UpOptions,
    opts: &RunOptions,
    (out, pcap): (&Path, Option<&Path>),
) -> Result<bool> {
    let _ = topo::down(prefix);
    let plan = Plan::new(prefix);
    let res = topo::up(&plan, up)
        .map_err(anyhow::Error::from)
        .and_then(|running| {
            let (passed, dir) = run_and_report(prefix, opts, out, pcap)?;
            match &running.control {
                Some(control) => Ok(passed && live_enrolment(&plan, control, &running, &dir)?),
                None => Ok(passed),
            }
        });
    let down = topology_down(prefix);
    let passed = res?;
    down?;
    Ok(passed)
}

/// The xDS demo's enrol → withdraw, written next to the sweep's report.
fn live_enrolment(
    plan: &Plan,
    control: &ControlPlane,
    running: &topo::Up,
    dir: &Path,
) -> Result<bool> {
    let pids = running
        .state
        .procs
        .iter()
        .filter(|p| p.kind == "zring")
        .map(|p| p.pid)
        .collect();
    let r = enrol::run(plan, control, pids)?;
    let md = enrol::markdown(&r);
    println!("{md}");
    for (name, text) in [
        ("enrolment.md", md),
        (
            "enrolment.json",
            serde_json::to_string_pretty(&r).context("serialising the enrolment report")?,
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(r.passed())
}

/// topology up (short pool idle timeout) → soak → topology down; true when every check
/// passed.
fn soak(a: &SoakArgs) -> Result<bool> {
    use zring_loadgen::soak;
    let o = a.options();
    // Before the proxies start: they inherit the limit.
    soak::raise_nofile(&o)?;
    let self_exe = std::env::current_exe().context("locating the zring-loadgen executable")?;
    let plan = Plan::new(&a.prefix);
    let _ = topo::down(&a.prefix);
    let res = topo::up(
        &plan,
        &up_options_with(&a.up, Some(soak::POOL_IDLE), false)?,
    )
    .map_err(anyhow::Error::from)
    .and_then(|_| Ok(soak::run(&plan, &o, &self_exe, std::env::args().collect())?));
    let down = topology_down(&a.prefix);
    let r = res?;
    down?;
    print!("{}", soak::summary(&r));
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&r).context("serialising the soak report")?;
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(r.failures.is_empty())
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

/// The figures named by `--only`, or an error listing the valid keys.
fn figure_keys(keys: &[String]) -> Result<Vec<peer::plan::FigureKind>> {
    use peer::plan::FigureKind;
    let valid = || FigureKind::ALL.map(FigureKind::key).join(", ");
    keys.iter()
        .map(|k| {
            FigureKind::from_key(k).with_context(|| {
                format!("--only: unknown figure {k:?}; the figures are {}", valid())
            })
        })
        .collect()
}

fn peer(a: &PeerArgs) -> Result<bool> {
    let self_exe = std::env::current_exe().context("locating the zring-loadgen executable")?;
    let beside = |name: &str| a.peer.with_file_name(name);
    let opts = peer::PeerOptions {
        peer: a.peer.clone(),
        zring: a
            .zring
            .clone()
            .unwrap_or_else(|| self_exe.with_file_name("zring")),
        root: (
            a.root_cert
                .clone()
                .unwrap_or_else(|| beside("ztunnel-test-root-cert.pem")),
            a.root_key
                .clone()
                .unwrap_or_else(|| beside("ztunnel-test-root-key.pem")),
        ),
        prefix: a.prefix.clone(),
        cores: a.cores,
        quick: a.quick,
        direct: a.direct || !a.no_direct,
        seed: a.seed,
        only: figure_keys(&a.only)?,
        shapes: match a.shape.as_str() {
            "cross" => vec![peer::model::Shape::Cross],
            "same" => vec![peer::model::Shape::Same],
            _ => peer::model::Shape::ALL.to_vec(),
        },
    };
    let r = peer::run(&opts, std::env::args().collect())?;
    let (dir, files) = peer::write(&r, &a.out)?;
    println!("{}", peer::render::markdown(&r));
    for f in files {
        println!("wrote {}", f.display());
    }
    println!("report directory: {}", dir.display());
    Ok(r.failures.is_empty())
}

fn inpod(a: &cli::InpodArgs) -> Result<bool> {
    use zring_loadgen::inpod;
    let self_exe = std::env::current_exe().context("locating the zring-loadgen executable")?;
    let beside = |name: &str| a.peer.with_file_name(name);
    let o = inpod::InpodOptions {
        zring: a
            .zring
            .clone()
            .unwrap_or_else(|| self_exe.with_file_name("zring")),
        peer: a.peer.clone(),
        root: (
            beside("ztunnel-test-root-cert.pem"),
            beside("ztunnel-test-root-key.pem"),
        ),
        prefix: a.prefix.clone(),
        cores: a.cores,
        pods: a.pods,
        repeats: a.repeats,
        seed: a.seed,
        bulk_bytes: a.bulk_bytes,
        echo_secs: a.echo_secs,
        churn_ops: a.churn_ops,
        tunnel: a.tunnel,
        dir: std::env::temp_dir().join(format!("{}-inpod", a.prefix)),
    };
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let samples = inpod::run(&o)?;
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let m = report::Machine::detect();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let header = format!(
        "# In-pod mode side by side: zring vs ztunnel on the fake istio-cni\n\n- commit {commit}; machine: {} cores, kernel {}, {}\n- command: `{}`\n- seed {}; {} repeats, proxies alternating; proxy cores {}; {} cost pods\n- /proc/loadavg before: {}- /proc/loadavg after: {}",
        m.cores,
        m.kernel,
        m.cpu_model,
        std::env::args().collect::<Vec<_>>().join(" "),
        a.seed,
        a.repeats,
        a.cores,
        a.pods,
        load_before,
        load_after,
    );
    inpod::write(&a.out, &samples, &header)?;
    let failed = samples.iter().map(|s| s.failures.len()).sum::<usize>();
    println!(
        "{}",
        std::fs::read_to_string(a.out.join("README.md")).unwrap_or_default()
    );
    Ok(failed == 0)
}

fn pairs(a: &PairsArgs) -> Result<bool> {
    let self_exe = std::env::current_exe().context("locating the zring-loadgen executable")?;
    let zring = a
        .zring
        .clone()
        .unwrap_or_else(|| self_exe.with_file_name("zring"));
    let mut zrings = vec![("zring".to_string(), zring)];
    for also in &a.also {
        let (name, path) = also
            .split_once('=')
            .with_context(|| format!("--also {also:?}: expected name=path"))?;
        zrings.push((name.to_string(), path.into()));
    }
    let opts = pairs::PairsOptions {
        peer: a.peer.clone(),
        zrings,
        root: (
            a.peer.with_file_name("ztunnel-test-root-cert.pem"),
            a.peer.with_file_name("ztunnel-test-root-key.pem"),
        ),
        prefix: a.prefix.clone(),
        sources: a.sources,
        dests: a.dests,
        concurrency: a.concurrency,
        repeats: a.repeats,
        seed: a.seed,
    };
    let r = pairs::run(&opts, std::env::args().collect())?;
    let dir = pairs::write(&r, &a.out)?;
    println!("{}", pairs::render::markdown(&r));
    println!("report directory: {}", dir.display());
    let mut all = r.samples.values().flat_map(|p| p.values().flatten());
    Ok(all.all(|s| s.failures == 0))
}

fn scale(a: &ScaleArgs) -> Result<bool> {
    let self_exe = std::env::current_exe().context("locating the zring-loadgen executable")?;
    let zring = a
        .zring
        .clone()
        .unwrap_or_else(|| self_exe.with_file_name("zring"));
    let sizes = if a.quick {
        scale::QUICK_SIZES.to_vec()
    } else {
        vec![a.workloads]
    };
    let mut o = scale::ScaleOptions::new(zring, a.peer.clone(), &sizes);
    if !a.quick {
        o.sizes[0].services = a.services;
    }
    o.proxies = a
        .proxies
        .iter()
        .map(|p| match p.as_str() {
            "ztunnel" => Ok(peer::Proxy::Ztunnel),
            "zring" => Ok(peer::Proxy::Zring),
            other => anyhow::bail!("--proxies: unknown proxy {other:?} (ztunnel, zring)"),
        })
        .collect::<Result<_>>()?;
    (o.singles, o.bulk, o.cores) = (a.pushes, a.bulk, a.cores);
    (o.seed, o.quick, o.prefix) = (a.seed, a.quick, a.prefix.clone());
    o.ready_timeout = std::time::Duration::from_secs(a.ready_timeout);
    let r = scale::run(&o, std::env::args().collect())?;
    let (dir, files) = scale::write(&r, &a.out)?;
    println!("{}", scale::report::markdown(&r));
    for f in files {
        println!("wrote {}", f.display());
    }
    println!("report directory: {}", dir.display());
    let grows = a.quick && scale::report::growth_check(&r, "zring").is_err();
    Ok(r.failures().is_empty() && !grows)
}

/// A `peer` report.json (`path`, or `report.json` inside the directory `path`).
fn read_peer_report(path: &Path) -> Result<peer::model::PeerReport> {
    let file = if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "reading {} (written by `zring-loadgen peer`)",
            file.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a `zring-loadgen peer` report.json",
            file.display()
        )
    })
}

/// The runs `path` holds: a report.json, a report directory, or a directory of report
/// directories (a `peer --out` directory: each subdirectory with a report.json, by name).
fn peer_runs(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() || path.join("report.json").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
    let mut runs: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("report.json").is_file())
        .collect();
    runs.sort();
    if runs.is_empty() {
        bail!(
            "{}: no report.json in it or in its subdirectories (give the directories `zring-loadgen peer` wrote)",
            path.display()
        );
    }
    Ok(runs)
}

fn goals(a: &GoalsArgs) -> Result<()> {
    let mut runs = Vec::new();
    for p in &a.reports {
        runs.extend(peer_runs(p)?);
    }
    let reports = runs
        .iter()
        .map(|p| read_peer_report(p))
        .collect::<Result<Vec<_>>>()?;
    eprintln!(
        "{} runs: {}",
        runs.len(),
        runs.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let md = peer::goals23::over_runs(&reports);
    if let Some(out) = &a.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    println!("{md}");
    Ok(())
}

fn capacity(a: &CapacityArgs) -> Result<()> {
    let r = read_peer_report(&a.report)?;
    let demand = capacity::Demand {
        rps: a.rps,
        gbps: a.gbps,
        conns: a.conns,
        new_conns_per_sec: a.new_conns_per_sec,
        p99_slo_us: capacity::parse_slo(&a.p99_slo)?,
    };
    let md = capacity::markdown(&r, &demand, &a.report.display().to_string())?;
    let out = a.out.clone().unwrap_or_else(|| match a.report.is_dir() {
        true => a.report.join("capacity.md"),
        false => a.report.with_file_name("capacity.md"),
    });
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    println!("{md}\nwrote {}", out.display());
    Ok(())
}

fn restart(a: &RestartArgs) -> Result<bool> {
    let self_exe = std::env::current_exe().context("locating the zring-loadgen executable")?;
    let opts = zring_loadgen::restart::RestartOptions {
        prefix: a.prefix.clone(),
        zring: a
            .zring
            .clone()
            .unwrap_or_else(|| self_exe.with_file_name("zring")),
        self_exe,
        rate: a.rate,
        timeout: Duration::from_millis(a.timeout_ms),
        margin: Duration::from_secs_f64(a.margin_s),
        repeats: a.repeats.max(1),
        out: a.out.clone(),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let (report, dir) = zring_loadgen::restart::run(&opts)?;
    println!(
        "{}
wrote {}",
        zring_loadgen::restart::markdown(&report),
        dir.display()
    );
    Ok(true)
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
        } => run_and_report(&prefix, &load.options(false), &out, pcap.as_deref())?.0,
        Cmd::Demo {
            prefix,
            up,
            load,
            quick,
            out,
            pcap,
            xds,
            inpod,
        } => demo(
            &prefix,
            &with_inpod(up_options_with(&up, None, xds)?, inpod),
            &load.options(quick),
            (&out, pcap.as_deref()),
        )?,
        Cmd::Peer(a) => peer(&a)?,
        Cmd::Inpod(a) => inpod(&a)?,
        Cmd::Pairs(a) => pairs(&a)?,
        Cmd::Scale(a) => scale(&a)?,
        Cmd::Restart(a) => restart(&a)?,
        Cmd::Soak(a) => soak(&a)?,
        Cmd::SoakEcho { bind, port } => {
            zring_loadgen::soak::serve_echo(SocketAddr::new(bind, port)).map(|()| true)?
        }
        Cmd::Capacity(a) => capacity(&a).map(|()| true)?,
        Cmd::Goals(a) => goals(&a).map(|()| true)?,
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
