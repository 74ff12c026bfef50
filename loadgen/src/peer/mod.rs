//! `zring-loadgen peer`: zring and a peer proxy (istio/ztunnel) side by side, in two
//! shapes. Cross node ([`cross`]): each proxy on two nodes (network namespaces joined by
//! a veth), client on A, server on B. Same node ([`setup`], [`launch`]): each proxy in one
//! namespace carrying both ends. Both proxies get the same LocalConfig, cores, servers and
//! client; every figure ([`figures`], [`held`]) is measured in repeats with the order
//! alternated, into a [`model::PeerReport`] that [`render`] and [`plot`] turn into
//! Markdown and SVG.

pub mod cross;
pub mod figures;
#[cfg(test)]
pub(crate) mod fixture;
pub mod goals;
pub mod goals23;
pub mod held;
pub mod launch;
pub mod model;
pub mod plan;
pub mod plot;
pub mod render;
pub mod setup;

use crate::error::{Error, Result};
use crate::progress::Progress;
use figures::Target;
use model::{Figure, PeerReport, PeerSettings, Sample, Shape};
use plan::Plan;
use setup::Lab;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The client workload's IP (the SOCKS5 client connects from it).
pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 250, 0, 1));
/// The server workload's IP (the HBONE destination; local to each lab).
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 250, 0, 2));
/// Cores of each proxy in the cross-node shape: one worker on each node.
pub const CROSS_CORES: usize = 1;

/// The proxies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    Ztunnel,
    Zring,
}

impl Proxy {
    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Proxy::Ztunnel => "ztunnel",
            Proxy::Zring => "zring",
        }
    }
}

/// What `peer` was asked to do.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub peer: PathBuf,
    pub zring: PathBuf,
    /// The peer's test root certificate and key (zring's leaves are signed by them).
    pub root: (PathBuf, PathBuf),
    pub prefix: String,
    pub cores: usize,
    pub quick: bool,
    pub direct: bool,
    pub seed: u64,
    /// The figures to measure (empty: all).
    pub only: Vec<plan::FigureKind>,
    /// The shapes to measure, in report order.
    pub shapes: Vec<Shape>,
}

/// Fails with an operator-actionable message when `p` is not an executable file.
pub fn check_executable(what: &str, p: &std::path::Path, hint: &str) -> Result<()> {
    let meta = std::fs::metadata(p)
        .map_err(|e| Error::Peer(format!("{what} {}: {e}; {hint}", p.display())))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::Peer(format!(
            "{what} {} is not an executable file; {hint}",
            p.display()
        )));
    }
    Ok(())
}

/// Runs every figure on every target and returns the report.
pub fn run(o: &PeerOptions, command_line: Vec<String>) -> Result<PeerReport> {
    check_executable("peer binary", &o.peer, "pass --peer PATH")?;
    check_executable(
        "zring binary",
        &o.zring,
        "build it (cargo build --release -p zring-proxy) or pass --zring PATH",
    )?;
    crate::sys::raise_nofile(65_536).map_err(Error::io("raising RLIMIT_NOFILE"))?;
    // The commit at the start: a shared checkout may move on during a long run.
    let (commit, start) = (crate::report::short_commit(), unix_now());
    let labs = setup::Labs::new(&o.prefix)?;
    let dir = crate::procs::state_dir(&format!("{}peer", o.prefix));
    let root = (o.root.0.as_path(), o.root.1.as_path());
    setup::write_inputs(&dir, &o.zring, root)?;
    cross::write_config(&dir)?;
    let bins = launch::Bins {
        zring: o.zring.clone(),
        peer: o.peer.clone(),
        dir,
    };
    let mut plan = Plan::new(o.quick, o.seed);
    plan.only = o.only.clone();
    let shapes: Vec<Shape> = Shape::ALL
        .into_iter()
        .filter(|s| o.shapes.contains(s) && !plan.figures(*s).is_empty())
        .collect();
    let progress = Progress::start(plan.estimate(o.direct, &shapes));
    let mut figures = Vec::new();
    for &shape in &shapes {
        let (zt, zr) = start_shape(shape, o, &bins)?;
        figures.extend(measure_all(&plan, shape, (&zt, &zr), o.direct, &progress));
        // The next shape's proxies run alone.
        crate::procs::terminate(&[zt.pids(), zr.pids()].concat());
    }
    drop(progress);
    drop(labs);
    let (date, time) = crate::report::utc(start);
    let failures = check(&figures);
    Ok(PeerReport {
        started_utc: format!("{date}T{time}Z"),
        commit,
        command_line,
        seed: o.seed,
        machine: crate::report::Machine::detect(),
        settings: PeerSettings {
            cores: o.cores,
            repeats: plan.repeats,
            quick: o.quick,
            zring: o.zring.display().to_string(),
            peer: o.peer.display().to_string(),
            held_conns: plan.held.conns,
            churn_ops: plan.churn_ops,
            bulk_bytes: plan.bulk_bytes,
            shapes,
            cross_cores: CROSS_CORES,
        },
        figures,
        failures,
    })
}

/// Both proxies' labs of `shape`: ztunnel's, then zring's.
fn start_shape(shape: Shape, o: &PeerOptions, bins: &launch::Bins) -> Result<(Lab, Lab)> {
    let start = |p| match shape {
        Shape::Cross => cross::start_pair(p, &o.prefix, bins, CROSS_CORES),
        Shape::Same => launch::start_lab(p, &o.prefix, bins, o.cores),
    };
    Ok((start(Proxy::Ztunnel)?, start(Proxy::Zring)?))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The targets of repeat `r`: alternating order, so no proxy always goes first.
pub fn order(r: usize, direct: bool) -> Vec<(Proxy, bool)> {
    let mut v = vec![(Proxy::Ztunnel, false), (Proxy::Zring, false)];
    if direct {
        v.insert(0, (Proxy::Zring, true));
    }
    if r % 2 == 1 {
        v.reverse();
    }
    v
}

fn measure_all(
    plan: &Plan,
    shape: Shape,
    (zt, zr): (&Lab, &Lab),
    direct: bool,
    progress: &Progress,
) -> Vec<Figure> {
    plan.figures(shape)
        .into_iter()
        .map(|kind| {
            let mut fig = Figure {
                shape,
                key: kind.key().into(),
                title: kind.title(),
                ..Figure::default()
            };
            let title = format!("{} {}", shape.key(), fig.title);
            for r in 0..plan.repeats {
                for (proxy, d) in order(r, direct && kind.has_direct()) {
                    let lab = if proxy == Proxy::Zring { zr } else { zt };
                    let t = Target { lab, direct: d };
                    progress.set(format!("{title} {} (repeat {})", t.name(), r + 1));
                    let mut s = plan.measure(kind, t);
                    if !d {
                        lab.exited().into_iter().for_each(|why| fail(&mut s, why));
                    }
                    progress.note(&summary(&title, t.name(), &s));
                    fig.samples.entry(t.name().into()).or_default().push(s);
                }
            }
            fig
        })
        .collect()
}

/// A proxy gone after a figure is a failure of that figure (and of every later one).
fn fail(s: &mut Sample, why: String) {
    s.failures += 1;
    s.reason(why);
}

fn summary(title: &str, target: &str, s: &Sample) -> String {
    let main = [
        "gbps",
        "p50_us",
        "ops_s",
        "max_rate_p99_1ms",
        "rss_per_conn_kb",
    ]
    .iter()
    .find_map(|k| s.values.get(*k).map(|v| format!("{k} {v:.2}")))
    .unwrap_or_default();
    format!("{title:<42} {target:<8} {main:<28} failures {}", s.failures)
}

/// Report-level failures: checksums that did not hold, figures without a number.
pub fn check(figures: &[Figure]) -> Vec<String> {
    let mut out = Vec::new();
    for f in figures {
        for (target, samples) in &f.samples {
            if samples.iter().any(|s| !s.checksum_ok) {
                out.push(format!(
                    "{} {} via {target}: checksum or byte count mismatch",
                    f.shape.key(),
                    f.key
                ));
            }
            if samples.iter().all(|s| s.values.is_empty()) {
                let why = samples.iter().flat_map(|s| s.reasons.first()).next();
                out.push(format!(
                    "{} {} via {target}: no measurement ({})",
                    f.shape.key(),
                    f.key,
                    why.map_or("no reason recorded", |w| w.as_str())
                ));
            }
        }
    }
    out
}

/// Writes report.json, report.md and the plots (ratios.svg, latency-<shape>.svg) into
/// `results/<date>-<commit>-peer/`.
pub fn write(r: &PeerReport, out: &std::path::Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let commit = format!("{}-peer", r.commit);
    let dir = crate::report::run_dir(out, &r.started_utc[..10], &commit);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut files = vec![
        (
            "report.json".to_string(),
            serde_json::to_string_pretty(r).expect("report serialises"),
        ),
        ("report.md".into(), render::markdown(r)),
        ("ratios.svg".into(), plot::ratio_svg(r)),
    ];
    for s in r.shapes() {
        let name = format!("latency-{}.svg", s.key());
        files.push((name, plot::latency_svg(r, s)));
    }
    let written = files
        .into_iter()
        .map(|(name, text)| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(Error::io(format!("writing {}", p.display())))?;
            Ok(p)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((dir, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_alternates_per_repeat() {
        let first = order(0, true);
        assert_eq!(first[0], (Proxy::Zring, true));
        assert_eq!(first[1].0, Proxy::Ztunnel);
        let second = order(1, true);
        assert_eq!(second[0], (Proxy::Zring, false));
        assert_eq!(second[2], (Proxy::Zring, true));
        assert_eq!(order(0, false).len(), 2);
    }

    #[test]
    fn check_flags_bad_checksums_and_empty_figures() {
        let mut bad = Sample::new();
        bad.checksum_ok = false;
        bad.values.insert("gbps".into(), 1.0);
        let mut empty = Sample::new();
        empty.reason("refused");
        let f = Figure {
            key: "bulk1".into(),
            title: "t".into(),
            samples: [("zring".into(), vec![bad]), ("ztunnel".into(), vec![empty])].into(),
            ..Figure::default()
        };
        let c = check(&[f]);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[1].contains("refused"));
        assert!(c[0].starts_with("same bulk1 via zring"), "{c:?}");
        assert!(
            check_executable("x", std::path::Path::new("/nonexistent"), "hint")
                .unwrap_err()
                .to_string()
                .contains("hint")
        );
    }
}
