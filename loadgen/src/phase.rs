//! One measured phase: a scenario at one setting against one target, spread over the
//! client cores (each inside the client pod's network namespace), merged into one
//! result.

use crate::checksum::{fnv, payload};
use crate::client::{self, BulkSpec, RrSpec, RrStats, Via};
use crate::cores;
use crate::error::Result;
use crate::hist::Percentiles;
use crate::proto;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time given to the core threads to start before the first intended send.
const START_DELAY: Duration = Duration::from_millis(50);
/// Bytes per write in bulk streams.
const BULK_CHUNK: usize = 256 * 1024;

/// Where a phase runs and whom it talks to.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Client pod namespace (None: the current one, for loopback tests).
    pub netns: Option<String>,
    pub target: SocketAddr,
    /// The source IP the server must report.
    pub expect_ip: IpAddr,
    /// Through this SOCKS5 proxy (None: straight to the target).
    pub via: Option<Via>,
}

/// A request/response phase.
#[derive(Debug, Clone)]
pub struct RrPhase {
    pub rate: f64,
    pub conns: usize,
    pub payload: usize,
    pub reconnect: bool,
    pub warmup: Duration,
    pub duration: Duration,
    pub seed: u64,
    pub cores: usize,
    /// Closed loop (back-to-back, no schedule); `rate` is then ignored.
    pub closed: bool,
    /// Closed loop only: requests in total (spread over the connections).
    pub count: Option<u64>,
}

/// The measured outcome of a request/response phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RrResult {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub ok: u64,
    /// Requests completed including warm-up (the denominator of the CPU figures).
    pub completed: u64,
    pub errors: u64,
    /// Of the errors, connections cut under a request (reset, or closed in the middle of a
    /// response).
    pub resets: u64,
    pub missed: u64,
    pub latency: Percentiles,
    pub first_error: Option<String>,
    /// The first error that was not a cut connection.
    pub first_other_error: Option<String>,
    pub correctness: Option<String>,
    /// Proxy CPU seconds per 1000 requests (mesh phases only).
    pub proxy_cpu_s_per_1k: Option<f64>,
}

/// Runs a request/response phase and merges the per-core histograms.
pub fn run_rr(ep: &Endpoint, p: &RrPhase) -> Result<RrResult> {
    let body = payload(p.seed, p.payload);
    let mut request = proto::request_head(&ep.target.to_string(), body.len(), p.reconnect);
    request.extend_from_slice(&body);
    let cores = p.cores.max(1).min(p.conns.max(1));
    let start = Instant::now() + START_DELAY;
    let warm_end = start + p.warmup;
    let base = RrSpec {
        target: ep.target,
        expect_ip: ep.expect_ip,
        request: Arc::new(request),
        payload_fnv: fnv(&body),
        reconnect: p.reconnect,
        via: ep.via,
        closed: p.closed,
        count: p.count.map(|c| c.div_ceil(p.conns.max(1) as u64)),
        conn_ids: Vec::new(),
        total_conns: p.conns.max(1),
        rate_per_conn: p.rate / p.conns.max(1) as f64,
        start,
        warm_end,
        end: warm_end + p.duration,
    };
    let per_core = cores::run_per_core(cores, ep.netns.as_deref(), move |core| {
        let ids = (0..base.total_conns)
            .filter(|i| i % cores == core)
            .collect();
        client::run_rr(RrSpec {
            conn_ids: ids,
            ..base.clone()
        })
    })?;
    let measured = if p.closed {
        Instant::now().saturating_duration_since(warm_end)
    } else {
        p.duration
    };
    let mut all = RrStats::default();
    per_core.iter().for_each(|s| all.merge(s));
    Ok(RrResult {
        offered_rps: p.rate,
        achieved_rps: all.ok as f64 / measured.as_secs_f64().max(1e-6),
        ok: all.ok,
        completed: all.completed,
        errors: all.errors,
        resets: all.resets,
        missed: all.missed,
        latency: all.hist.summary(),
        first_error: all.first_error,
        first_other_error: all.first_other_error,
        correctness: all.correctness,
        proxy_cpu_s_per_1k: None,
    })
}

/// A bulk phase.
#[derive(Debug, Clone)]
pub struct BulkPhase {
    pub streams: usize,
    pub duration: Duration,
    pub seed: u64,
    pub cores: usize,
    /// Total bytes over all streams: the phase ends at `duration` or once sent.
    pub bytes: Option<u64>,
}

/// The measured outcome of a bulk phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BulkResult {
    pub streams: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub gbps: f64,
    pub error: Option<String>,
    pub correctness: Option<String>,
    pub proxy_cpu_s_per_gb: Option<f64>,
}

/// Runs a bulk phase; a failed stream is reported in the result, not as `Err`.
pub fn run_bulk(ep: &Endpoint, p: &BulkPhase) -> Result<BulkResult> {
    let chunk = Arc::new(payload(p.seed, BULK_CHUNK));
    let cores = p.cores.max(1).min(p.streams.max(1));
    let end = Instant::now() + p.duration;
    let (target, expect_ip, streams, via) = (ep.target, ep.expect_ip, p.streams.max(1), ep.via);
    let limit = p.bytes.map_or(u64::MAX, |b| b.div_ceil(streams as u64));
    let per_core = cores::run_per_core(cores, ep.netns.as_deref(), move |core| {
        let n = (0..streams).filter(|i| i % cores == core).count();
        let spec = BulkSpec {
            target,
            expect_ip,
            streams: n,
            chunk: chunk.clone(),
            end,
            limit,
            via,
        };
        async move { Ok(client::run_bulk(spec).await) }
    })?;
    let mut r = BulkResult {
        streams,
        ..BulkResult::default()
    };
    let mut secs = 0f64;
    for s in per_core {
        match s {
            Ok(s) => {
                r.bytes += s.bytes;
                secs = secs.max(s.elapsed.as_secs_f64());
            }
            Err(e) if e.is_correctness() => r.correctness = Some(e.to_string()),
            Err(e) => r.error = Some(e.to_string()),
        }
    }
    r.seconds = secs;
    r.gbps = if secs > 0.0 {
        r.bytes as f64 * 8.0 / secs / 1e9
    } else {
        0.0
    };
    Ok(r)
}
