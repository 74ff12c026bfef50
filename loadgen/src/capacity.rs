//! `zring-loadgen capacity`: the cores and memory one node needs for a given traffic,
//! with zring and with the peer, from the per-core costs a `peer` report measured.
//! All arithmetic here is pure; the command only reads the report and writes Markdown.

use crate::error::{Error, Result};
use crate::peer::figures::sweep_points;
use crate::peer::model::{PeerReport, Stat};
use crate::peer::render::num;
use std::fmt::Write as _;

/// The traffic one node must carry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub rps: f64,
    pub gbps: f64,
    pub conns: f64,
    pub new_conns_per_sec: f64,
    pub p99_slo_us: f64,
}

/// What one proxy costs, as measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    /// Cores the proxy had in the measurement.
    pub cores: f64,
    pub cpu_s_per_1k_req: f64,
    pub cpu_s_per_gb: f64,
    pub cpu_s_per_1k_conn: f64,
    /// Highest measured rate with p99 under the SLO (None: no rate met it).
    pub rate_at_slo: Option<f64>,
    pub rss_per_conn_kb: f64,
    pub rss_base_mb: f64,
}

/// What the node needs with one proxy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Need {
    pub cpu_req: f64,
    pub cpu_bulk: f64,
    pub cpu_conn: f64,
    pub cpu_total: f64,
    /// Cores for the request rate to stay under the SLO (None: SLO never met).
    pub slo_cores: Option<f64>,
    pub cores: u64,
    pub memory_mb: f64,
}

/// Parses `1ms`, `500us`, `2.5ms`, `1s` into microseconds.
pub fn parse_slo(s: &str) -> Result<f64> {
    let bad = || {
        Error::Peer(format!(
            "--p99-slo {s:?}: expected a duration such as 1ms, 500us or 2s"
        ))
    };
    let (n, mult) = if let Some(n) = s.strip_suffix("us").or_else(|| s.strip_suffix("µs")) {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return Err(bad());
    };
    let v: f64 = n.trim().parse().map_err(|_| bad())?;
    (v > 0.0).then_some(v * mult).ok_or_else(bad)
}

/// The node's needs for `d` with costs `c`: CPU adds up linearly, the SLO may need more.
pub fn need(c: &Costs, d: &Demand) -> Need {
    let cpu_req = d.rps / 1000.0 * c.cpu_s_per_1k_req;
    let cpu_bulk = d.gbps / 8.0 * c.cpu_s_per_gb;
    let cpu_conn = d.new_conns_per_sec / 1000.0 * c.cpu_s_per_1k_conn;
    let cpu_total = cpu_req + cpu_bulk + cpu_conn;
    let slo_cores = c
        .rate_at_slo
        .filter(|r| *r > 0.0)
        .map(|r| d.rps / (r / c.cores.max(1.0)));
    let cores = cpu_total.max(slo_cores.unwrap_or(0.0)).ceil().max(1.0) as u64;
    Need {
        cpu_req,
        cpu_bulk,
        cpu_conn,
        cpu_total,
        slo_cores,
        cores,
        memory_mb: c.rss_base_mb + d.conns * c.rss_per_conn_kb / 1e3,
    }
}

fn median(r: &PeerReport, fig: &str, target: &str, metric: &str) -> Result<f64> {
    r.figure(fig)
        .and_then(|f| f.stat(target, metric))
        .map(|s| s.median)
        .ok_or_else(|| {
            Error::Peer(format!(
                "the report has no {fig}/{metric} for {target}: re-run `zring-loadgen peer`"
            ))
        })
}

/// The highest swept rate with p99 < `slo_us`, median over the repeats.
pub fn rate_at_slo(r: &PeerReport, target: &str, slo_us: f64) -> Option<f64> {
    let samples = r.figure("sweep")?.samples.get(target)?;
    let best: Vec<f64> = samples
        .iter()
        .map(|s| {
            sweep_points(s)
                .into_iter()
                .take_while(|(_, p99)| *p99 < slo_us)
                .map(|(rate, _)| rate)
                .fold(0.0, f64::max)
        })
        .collect();
    Stat::of(&best).map(|s| s.median).filter(|v| *v > 0.0)
}

/// The measured costs of `target` (`zring` or `ztunnel`).
pub fn costs(r: &PeerReport, target: &str, slo_us: f64) -> Result<Costs> {
    Ok(Costs {
        cores: r.settings.cores as f64,
        cpu_s_per_1k_req: median(r, "open_10k", target, "cpu_s_per_1k")?,
        cpu_s_per_gb: median(r, "bulk4", target, "cpu_s_per_gb")?,
        cpu_s_per_1k_conn: median(r, "churn16", target, "cpu_s_per_1k")?,
        rate_at_slo: rate_at_slo(r, target, slo_us),
        rss_per_conn_kb: median(r, "held", target, "rss_per_conn_kb")?,
        rss_base_mb: median(r, "held", target, "rss_start_mb")?,
    })
}

/// The capacity plan as Markdown.
pub fn markdown(r: &PeerReport, d: &Demand, source: &str) -> Result<String> {
    let zr = need(&costs(r, "zring", d.p99_slo_us)?, d);
    let zt = need(&costs(r, "ztunnel", d.p99_slo_us)?, d);
    let mut o = String::new();
    let _ = writeln!(o, "# Capacity plan for one node\n");
    let _ = writeln!(
        o,
        "traffic: {} req/s, {} Gb/s, {} open connections, {} new connections/s, p99 SLO {} µs; \
         costs from `{source}` (commit `{}`, {} cores per proxy, {})\n",
        d.rps,
        d.gbps,
        d.conns,
        d.new_conns_per_sec,
        d.p99_slo_us,
        r.commit,
        r.settings.cores,
        r.machine.cpu_model
    );
    let _ = writeln!(o, "| | zring | ztunnel |\n|---|---|---|");
    let row = |o: &mut String, label: &str, f: &dyn Fn(&Need) -> String| {
        let _ = writeln!(o, "| {label} | {} | {} |", f(&zr), f(&zt));
    };
    row(&mut o, "CPU for requests (cores)", &|n| num(n.cpu_req));
    row(&mut o, "CPU for bulk bytes (cores)", &|n| num(n.cpu_bulk));
    row(&mut o, "CPU for new connections (cores)", &|n| {
        num(n.cpu_conn)
    });
    row(&mut o, "CPU total (cores)", &|n| num(n.cpu_total));
    row(&mut o, "cores to keep p99 under the SLO", &|n| {
        n.slo_cores.map_or("SLO never met".into(), num)
    });
    row(&mut o, "**cores needed**", &|n| format!("**{}**", n.cores));
    row(&mut o, "**memory (MB)**", &|n| {
        format!("**{}**", num(n.memory_mb))
    });
    if zr.slo_cores.is_none() || zt.slo_cores.is_none() {
        let _ = writeln!(
            o,
            "\nnote: where the SLO was never met in the measured sweep, the core count covers \
             CPU only and does not promise the SLO; measure on a quieter machine or relax --p99-slo."
        );
    }
    let _ = writeln!(
        o,
        "\nformula: cores = ceil(max(rps/1000 × CPU s per 1000 req (10k/s open loop) + Gb/s / 8 × \
         CPU s per GB (4 streams) + new conns/s / 1000 × CPU s per 1000 conns (churn, concurrency 16), \
         rps / (highest swept rate with p99 < SLO / measured cores))); memory = RSS before load + \
         connections × RSS per held connection.\n\nassumption: cost scales linearly with cores, \
         as measured on this machine's cores ({} cores, {}); other CPUs and kernels differ.",
        r.machine.cores, r.machine.kernel
    );
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::fixture::fixture;

    fn costs_fixture() -> Costs {
        Costs {
            cores: 2.0,
            cpu_s_per_1k_req: 0.05,
            cpu_s_per_gb: 1.0,
            cpu_s_per_1k_conn: 0.4,
            rate_at_slo: Some(10_000.0),
            rss_per_conn_kb: 10.0,
            rss_base_mb: 20.0,
        }
    }

    #[test]
    fn cpu_adds_linearly_and_rounds_up() {
        let d = Demand {
            rps: 20_000.0,
            gbps: 8.0,
            conns: 10_000.0,
            new_conns_per_sec: 1000.0,
            p99_slo_us: 1000.0,
        };
        let n = need(&costs_fixture(), &d);
        assert!((n.cpu_req - 1.0).abs() < 1e-9);
        assert!((n.cpu_bulk - 1.0).abs() < 1e-9);
        assert!((n.cpu_conn - 0.4).abs() < 1e-9);
        // SLO: 10k/s on 2 cores = 5k/s per core → 4 cores for 20k/s, more than 2.4 CPU.
        assert_eq!(n.slo_cores, Some(4.0));
        assert_eq!(n.cores, 4);
        assert!((n.memory_mb - 120.0).abs() < 1e-9);
    }

    #[test]
    fn slo_never_met_falls_back_to_cpu() {
        let c = Costs {
            rate_at_slo: None,
            ..costs_fixture()
        };
        let d = Demand {
            rps: 1000.0,
            gbps: 0.0,
            conns: 0.0,
            new_conns_per_sec: 0.0,
            p99_slo_us: 1000.0,
        };
        let n = need(&c, &d);
        assert_eq!((n.slo_cores, n.cores), (None, 1));
    }

    #[test]
    fn slo_parses_units() {
        assert_eq!(parse_slo("1ms").unwrap(), 1000.0);
        assert_eq!(parse_slo("500us").unwrap(), 500.0);
        assert_eq!(parse_slo("2s").unwrap(), 2e6);
        assert!(parse_slo("fast").unwrap_err().to_string().contains("1ms"));
        assert!(parse_slo("0ms").is_err());
    }

    #[test]
    fn report_costs_and_markdown() {
        let r = fixture();
        assert_eq!(rate_at_slo(&r, "zring", 1000.0), Some(10_000.0));
        assert_eq!(rate_at_slo(&r, "ztunnel", 500.0), Some(2000.0));
        let c = costs(&r, "ztunnel", 1000.0).unwrap();
        assert_eq!(c.cpu_s_per_1k_req, 0.063);
        let d = Demand {
            rps: 10_000.0,
            gbps: 1.0,
            conns: 5000.0,
            new_conns_per_sec: 100.0,
            p99_slo_us: 1000.0,
        };
        let md = markdown(&r, &d, "x/report.json").unwrap();
        assert!(md.contains("| **cores needed** |"), "{md}");
        assert!(md.contains("linearly with cores"), "{md}");
        assert!(!md.contains("SLO was never met"), "{md}");
        let strict = Demand {
            p99_slo_us: 10.0,
            ..d
        };
        assert!(markdown(&r, &strict, "x")
            .unwrap()
            .contains("SLO was never met"));
        let mut empty = fixture();
        empty.figures.clear();
        assert!(markdown(&empty, &d, "x")
            .unwrap_err()
            .to_string()
            .contains("re-run"));
    }
}
