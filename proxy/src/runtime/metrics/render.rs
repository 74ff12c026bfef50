//! Prometheus text exposition of the aggregated counters.
//!
//! The label set is ztunnel's (27 keys, checked against a scrape of ztunnel `62d826530e5c`).
//! The per-side values come from [`Peer::of`] (ztunnel's derivation from the LocalConfig
//! workload).

use std::fmt::Write;

use super::{control, process};
use super::{Aggregate, CoreGauges, Labels, Peer, Totals, UNKNOWN};
use crate::error::ResponseFlag;

/// `(name, namespace)` of a service hostname `name.namespace.svc...`.
pub(crate) fn service_parts(host: &str) -> (&str, &str) {
    let mut it = host.split('.');
    match (it.next(), it.next()) {
        (Some(n), Some(ns)) if host != UNKNOWN => (n, ns),
        _ => (UNKNOWN, UNKNOWN),
    }
}

/// One side's labels: `<side>_workload`, canonical service/revision, app, version, cluster.
fn side(out: &mut String, side: &str, p: &Peer) {
    let _ = write!(
        out,
        "{side}_workload=\"{}\",{side}_canonical_service=\"{}\",\
         {side}_canonical_revision=\"{}\",{side}_workload_namespace=\"{}\",\
         {side}_principal=\"{}\",{side}_app=\"{}\",{side}_version=\"{}\",\
         {side}_cluster=\"{}\",{side}_region=\"{}\",{side}_zone=\"{}\",",
        p.workload,
        p.canonical_service,
        p.canonical_revision,
        p.namespace,
        p.principal,
        p.app,
        p.version,
        p.cluster,
        p.region,
        p.zone,
    );
}

/// The full ztunnel label set of `l`, without braces.
pub fn label_text(l: &Labels, flag: ResponseFlag) -> String {
    let mut out = format!("reporter=\"{}\",", l.reporter);
    side(&mut out, "source", &l.source);
    side(&mut out, "destination", &l.destination);
    let (svc, svc_ns) = service_parts(&l.destination_service);
    let _ = write!(
        out,
        "destination_service=\"{}\",destination_service_namespace=\"{svc_ns}\",\
         destination_service_name=\"{svc}\",request_protocol=\"tcp\",response_flags=\"{}\",\
         connection_security_policy=\"{}\"",
        l.destination_service,
        flag.as_str(),
        l.connection_security_policy
    );
    out
}

type Field = fn(&Totals) -> u64;

/// Families whose series split by `response_flags` (set when the connection ends).
const FLAGGED: [&str; 2] = [
    "istio_tcp_connections_closed",
    "istio_tcp_connections_failed",
];

const FAMILIES: [(&str, &str, Field); 5] = [
    (
        "istio_tcp_connections_opened",
        "TCP connections opened",
        |t| t.opened,
    ),
    (
        "istio_tcp_connections_closed",
        "TCP connections closed",
        |t| t.closed,
    ),
    (
        "istio_tcp_connections_failed",
        "TCP connections that failed",
        |t| t.failed,
    ),
    (
        "istio_tcp_received_bytes",
        "Bytes received from the connection's client",
        |t| t.received_bytes,
    ),
    (
        "istio_tcp_sent_bytes",
        "Bytes sent to the connection's client",
        |t| t.sent_bytes,
    ),
];

fn counters(out: &mut String, agg: &Aggregate) {
    for (name, help, field) in FAMILIES {
        let _ = writeln!(
            out,
            "# HELP {name}_total {help}.\n# TYPE {name}_total counter"
        );
        for (labels, t) in &agg.by_labels {
            if !FLAGGED.contains(&name) {
                let text = label_text(labels, ResponseFlag::None);
                let _ = writeln!(out, "{name}_total{{{text}}} {}", field(t));
                continue;
            }
            for flag in ResponseFlag::ALL {
                let n = t.flagged(flag, field(t));
                // ztunnel creates a flagged series only when such a close happened.
                if n > 0 || flag == ResponseFlag::None {
                    let text = label_text(labels, flag);
                    let _ = writeln!(out, "{name}_total{{{text}}} {n}");
                }
            }
        }
    }
}

/// Open TCP sockets per reporter (opened − closed), ztunnel's `istio_tcp_sockets_open`.
fn sockets_open(out: &mut String, agg: &Aggregate) {
    let name = "istio_tcp_sockets_open";
    let _ = writeln!(out, "# HELP {name} Open TCP sockets.\n# TYPE {name} gauge");
    for reporter in ["source", "destination"] {
        let open: u64 = agg
            .by_labels
            .iter()
            .filter(|(l, _)| l.reporter == reporter)
            .map(|(_, t)| t.opened.saturating_sub(t.closed))
            .sum();
        let _ = writeln!(out, "{name}{{reporter=\"{reporter}\"}} {open}");
    }
}

fn own(out: &mut String, agg: &Aggregate) {
    let name = "zring_connections_failed_setup_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connections that failed before they could be labelled (handshake, routing).\n\
         # TYPE {name} counter\n{name} {}",
        agg.unlabeled_failed
    );
    let name = "zring_hbone_connections_accepted_total";
    let _ = writeln!(
        out,
        "# HELP {name} Inbound HBONE TCP connections accepted.\n# TYPE {name} counter\n{name} {}",
        agg.hbone_accepted
    );
    let name = "zring_policies_skipped_total";
    let _ = writeln!(
        out,
        "# HELP {name} Policies a destination lists that are not (yet) known, skipped while \
         authorizing a connection (as ztunnel skips them).\n# TYPE {name} counter\n{name} {}",
        agg.policies_skipped
    );
    let name = "zring_fast_path_connections_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connections between two workloads on this node joined directly \
         (no HBONE to itself), after the destination's policy allowed the source identity.\n\
         # TYPE {name} counter\n{name} {}",
        agg.fast_path
    );
    let name = "zring_waypoint_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Outbound connections refused because of the destination's waypoint \
         (not found, or not reachable), never delivered around it.\n# TYPE {name} counter"
    );
    for (waypoint, n) in &agg.waypoint_refused {
        let _ = writeln!(out, "{name}{{waypoint=\"{}\"}} {n}", escape(waypoint));
    }
    let name = "istio_build";
    let _ = writeln!(
        out,
        "# HELP {name} Istio component build info.\n# TYPE {name} gauge\n\
         {name}{{component=\"ztunnel\",tag=\"zring-{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

type Gauge = fn(&CoreGauges) -> String;

/// zring's per-core data-plane families (name, type, help, value).
const PER_CORE: [(&str, &str, &str, Gauge); 4] = [
    (
        "zring_core_connections",
        "gauge",
        "Connections open on the core",
        |g| g.connections.to_string(),
    ),
    (
        "zring_core_hbone_streams",
        "gauge",
        "Open connections carried in an HBONE stream (mutual_tls), either direction",
        |g| g.streams.to_string(),
    ),
    (
        "zring_core_pooled_hbone_connections",
        "gauge",
        "Pooled outbound HBONE connections held by the core",
        |g| g.pooled.to_string(),
    ),
    (
        "zring_core_busy_seconds_total",
        "counter",
        "CPU time used by the core's thread",
        |g| format!("{:.6}", g.busy_ns as f64 / 1e9),
    ),
];

/// One series per core, `core` label = the core's index; as of each core's last tick.
fn per_core(out: &mut String, agg: &Aggregate) {
    for (name, kind, help, value) in PER_CORE {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for (core, g) in agg.cores.iter().enumerate() {
            let _ = writeln!(out, "{name}{{core=\"{core}\"}} {}", value(g));
        }
    }
}

/// Prometheus text exposition.
pub fn render(agg: &Aggregate) -> String {
    let mut out = String::new();
    counters(&mut out, agg);
    sockets_open(&mut out, agg);
    own(&mut out, agg);
    per_core(&mut out, agg);
    control::render(&mut out, &agg.control);
    if let Some(p) = &agg.plumb {
        p.render(&mut out);
    }
    process::render(&mut out, &process::Sample::read());
    out
}

/// A label value in the exposition format (`\`, `"` and newlines escaped).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
