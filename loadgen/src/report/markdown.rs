//! The Markdown report: summary table, all percentiles, bulk, correctness (pure).

use super::{Report, RrPoint};
use std::fmt::Write as _;

fn us(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1}ms", v as f64 / 1000.0)
    } else {
        format!("{v}µs")
    }
}

fn opt<T>(o: Option<T>, f: impl Fn(T) -> String) -> String {
    o.map(f).unwrap_or_else(|| "-".into())
}

fn percentile_rows(out: &mut String, label: &str, points: &[RrPoint]) {
    for p in points {
        let paths = [("baseline", Some(&p.baseline)), ("mesh", p.mesh.as_ref())];
        for (path, r) in paths.into_iter().filter_map(|(n, r)| Some((n, r?))) {
            let l = &r.latency;
            let _ = writeln!(
                out,
                "| {label} {:.0}/s | {path} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.offered_rps,
                l.count,
                us(l.p50_us),
                us(l.p90_us),
                us(l.p99_us),
                us(l.p999_us),
                us(l.max_us),
                r.errors,
                r.missed,
            );
        }
    }
}

fn rr_rows(out: &mut String, label: &str, points: &[RrPoint]) {
    for p in points {
        let b = &p.baseline;
        let m = p.mesh.as_ref();
        let added = opt(p.added_us(), |(a50, a99)| format!("{a50:+}/{a99:+}µs"));
        let _ = writeln!(
            out,
            "| {label} {:.0}/s | {:.0}/s | {} / {} / {} | {} | {} | {} |",
            p.offered_rps,
            b.achieved_rps,
            us(b.latency.p50_us),
            us(b.latency.p99_us),
            us(b.latency.p999_us),
            opt(m, |m| format!(
                "{:.0}/s, {} / {} / {}",
                m.achieved_rps,
                us(m.latency.p50_us),
                us(m.latency.p99_us),
                us(m.latency.p999_us)
            )),
            added,
            opt(m.and_then(|m| m.proxy_cpu_s_per_1k), |c| format!("{c:.3}")),
        );
    }
}

/// The median of the mesh points' `f` (unsaturated points only when there are some).
fn median_cost(points: &[RrPoint], f: impl Fn(&RrPoint) -> Option<f64>) -> Option<f64> {
    let pick = |sat: bool| -> Vec<f64> {
        points
            .iter()
            .filter(|p| sat || !p.saturated)
            .filter_map(&f)
            .collect()
    };
    let v = Some(pick(false))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| pick(true));
    crate::peer::model::Stat::of(&v).map(|s| s.median)
}

/// Per-core cost lines of the mesh path: CPU seconds (= core-seconds) of both proxies.
pub fn cost_lines(r: &Report) -> String {
    let rr = median_cost(&r.request_response, |p| p.mesh.as_ref()?.proxy_cpu_s_per_1k);
    let conn = median_cost(&r.connect_per_request, |p| {
        p.mesh.as_ref()?.proxy_cpu_s_per_1k
    });
    let gb = r
        .bulk
        .iter()
        .filter_map(|b| b.mesh.as_ref()?.proxy_cpu_s_per_gb)
        .collect::<Vec<_>>();
    let gb = crate::peer::model::Stat::of(&gb).map(|s| s.median);
    let line = |what: &str, v: Option<f64>, unit: &str| match v {
        Some(v) if v > 0.0 => format!(
            "- {what}: {v:.3} CPU s (one core: ≈{:.0} {unit}/s)\n",
            1000.0 / v
        ),
        _ => format!("- {what}: not measured\n"),
    };
    let gb_line = match gb {
        Some(v) if v > 0.0 => format!(
            "- per GB of bulk: {v:.3} CPU s (one core: ≈{:.2} Gb/s)\n",
            8.0 / v
        ),
        _ => "- per GB of bulk: not measured\n".to_string(),
    };
    format!(
        "{}{gb_line}{}",
        line("per 1000 requests (keep-alive)", rr, "requests"),
        line(
            "per 1000 new connections (connect per request)",
            conn,
            "connections"
        ),
    )
}

/// The Markdown report (also the summary printed at the end of a run).
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# zring-loadgen report {}\n", r.started_utc);
    let _ = writeln!(
        o,
        "commit `{}`, seed {}, {} cores, kernel {}, {}\n\n`{}`\n",
        r.commit,
        r.seed,
        r.machine.cores,
        r.machine.kernel,
        r.machine.cpu_model,
        r.command_line.join(" ")
    );
    let s = &r.settings;
    let _ = writeln!(
        o,
        "mesh {} → {} vs baseline {} → {}; payload {} B each way, {} connections, {} client cores, \
         warm-up {} s discarded, {} s measured per point\n",
        s.mesh_client, s.mesh_server, s.baseline_client, s.baseline_server, s.payload_bytes, s.conns,
        s.client_cores, s.warmup_s, s.duration_s
    );
    let _ = writeln!(
        o,
        "## Latency (p50 / p99 / p99.9, from intended send time)\n"
    );
    let _ = writeln!(o, "| scenario, offered | baseline achieved (req/s, conn/s for conn/req) | baseline | mesh | added p50/p99 | proxy CPU s / 1k req |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    rr_rows(&mut o, "req/resp", &r.request_response);
    rr_rows(&mut o, "conn/req", &r.connect_per_request);
    let _ = writeln!(
        o,
        "\n## All percentiles\n\n| scenario | path | samples | p50 | p90 | p99 | p99.9 | max | errors | missed sends |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    percentile_rows(&mut o, "req/resp", &r.request_response);
    percentile_rows(&mut o, "conn/req", &r.connect_per_request);
    if !r.bulk.is_empty() {
        let _ = writeln!(o, "\n## Bulk throughput\n\n| streams | baseline Gb/s | mesh Gb/s | mesh/baseline | proxy CPU s / GB |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        for b in &r.bulk {
            let m = b.mesh.as_ref();
            let ratio = m
                .filter(|_| b.baseline.gbps > 0.0)
                .map(|m| m.gbps / b.baseline.gbps);
            let _ = writeln!(
                o,
                "| {} | {:.2} | {} | {} | {} |",
                b.streams,
                b.baseline.gbps,
                opt(m, |m| format!("{:.2}", m.gbps)),
                opt(ratio, |x| format!("{:.0}%", x * 100.0)),
                opt(m.and_then(|m| m.proxy_cpu_s_per_gb), |c| format!("{c:.3}")),
            );
        }
    }
    if r.has_mesh() {
        let _ = writeln!(
            o,
            "\n## Per-core costs of the mesh path (both proxies together; median over points)\n\n{}",
            cost_lines(r)
        );
    }
    let verdict = if r.passed() {
        "PASSED".to_string()
    } else {
        format!("FAILED: {}", r.failures.join("; "))
    };
    let _ = writeln!(
        o,
        "\n## Correctness\n\nsource IP and payload checks: {verdict}"
    );
    if let Some(l) = &r.node_link {
        let _ = writeln!(
            o,
            "\nnode link (tcpdump on node A eth0, mesh pair): {} HBONE SYN/FIN/RST packets, {} plaintext app-port ones",
            l.hbone_packets, l.plaintext_packets
        );
    }
    if let Some(p) = &r.passthrough {
        let _ = writeln!(
            o,
            "\npassthrough (enrolled client → not-enrolled server, plain TCP through the proxy): \
             {} requests, {} errors",
            p.completed, p.errors
        );
    }
    o
}
