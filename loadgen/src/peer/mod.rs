//! `zring-loadgen peer`: zring and a peer proxy (istio/ztunnel) side by side. Each
//! proxy runs in its own network namespace ([`setup`], [`launch`]) with the same
//! LocalConfig, cores, servers and client; every figure ([`figures`], [`held`]) is
//! measured in repeats with the order alternated, into a [`model::PeerReport`] that
//! [`render`] and [`plot`] turn into Markdown and SVG.

pub mod figures;
#[cfg(test)]
pub(crate) mod fixture;
pub mod goals;
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
use model::{Figure, PeerReport, PeerSettings, Sample};
use plan::Plan;
use setup::Lab;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The client workload's IP (the SOCKS5 client connects from it).
pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 250, 0, 1));
/// The server workload's IP (the HBONE destination; local to each lab).
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 250, 0, 2));

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
    let labs = setup::Labs::new(&o.prefix)?;
    let dir = crate::procs::state_dir(&format!("{}peer", o.prefix));
    let root = (o.root.0.as_path(), o.root.1.as_path());
    setup::write_inputs(&dir, &o.zring, root)?;
    let bins = launch::Bins {
        zring: o.zring.clone(),
        peer: o.peer.clone(),
        dir,
    };
    let zt = launch::start_lab(Proxy::Ztunnel, &o.prefix, &bins, o.cores)?;
    let zr = launch::start_lab(Proxy::Zring, &o.prefix, &bins, o.cores)?;
    let mut plan = Plan::new(o.quick, o.seed);
    plan.only = o.only.clone();
    let figures = measure_all(&plan, &zt, &zr, o.direct);
    drop(labs);
    let (date, time) = crate::report::utc(unix_now());
    let failures = check(&figures);
    Ok(PeerReport {
        started_utc: format!("{date}T{time}Z"),
        commit: crate::report::short_commit(),
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
        },
        figures,
        failures,
    })
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

fn measure_all(plan: &Plan, zt: &Lab, zr: &Lab, direct: bool) -> Vec<Figure> {
    let progress = Progress::start(plan.estimate(direct));
    let figs = plan
        .figures()
        .into_iter()
        .map(|kind| {
            let mut fig = Figure {
                key: kind.key().into(),
                title: kind.title(),
                ..Figure::default()
            };
            for r in 0..plan.repeats {
                for (proxy, d) in order(r, direct && kind.has_direct()) {
                    let lab = if proxy == Proxy::Zring { zr } else { zt };
                    let t = Target { lab, direct: d };
                    progress.set(format!("{} {} (repeat {})", fig.title, t.name(), r + 1));
                    let s = plan.measure(kind, t);
                    progress.note(&summary(&fig.title, t.name(), &s));
                    fig.samples.entry(t.name().into()).or_default().push(s);
                }
            }
            fig
        })
        .collect();
    drop(progress);
    figs
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
    format!("{title:<36} {target:<8} {main:<28} failures {}", s.failures)
}

/// Report-level failures: checksums that did not hold, figures without a number.
pub fn check(figures: &[Figure]) -> Vec<String> {
    let mut out = Vec::new();
    for f in figures {
        for (target, samples) in &f.samples {
            if samples.iter().any(|s| !s.checksum_ok) {
                out.push(format!(
                    "{} via {target}: checksum or byte count mismatch",
                    f.key
                ));
            }
            if samples.iter().all(|s| s.values.is_empty()) {
                let why = samples.iter().flat_map(|s| s.reasons.first()).next();
                out.push(format!(
                    "{} via {target}: no measurement ({})",
                    f.key,
                    why.map_or("no reason recorded", |w| w.as_str())
                ));
            }
        }
    }
    out
}

/// Writes report.json, report.md and the plots into `results/<date>-<commit>-peer/`.
pub fn write(r: &PeerReport, out: &std::path::Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let commit = format!("{}-peer", r.commit);
    let dir = crate::report::run_dir(out, &r.started_utc[..10], &commit);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let files = [
        (
            "report.json",
            serde_json::to_string_pretty(r).expect("report serialises"),
        ),
        ("report.md", render::markdown(r)),
        ("ratios.svg", plot::ratio_svg(r)),
        ("latency.svg", plot::latency_svg(r)),
    ];
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
        };
        let c = check(&[f]);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[1].contains("refused"));
        assert!(
            check_executable("x", std::path::Path::new("/nonexistent"), "hint")
                .unwrap_err()
                .to_string()
                .contains("hint")
        );
    }
}
