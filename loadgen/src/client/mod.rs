//! The load client: open-loop HTTP/1.1 request/response over kept-alive or
//! per-request connections (this file), and bulk streams into the sink (`bulk.rs`). Each
//! request/response connection follows its own [`Pacer`]; latency is measured from the
//! intended send time.

mod bulk;
mod socks;

pub use bulk::{prefix_fnv, run_bulk, BulkSpec, BulkStats};
pub use socks::{connect_via, Via};

use crate::checksum::fnv;
use crate::error::{Error, Result};
use crate::hist::LatencyHist;
use crate::pacer::{measure_base, step, Pacer, Step};
use crate::proto;
use crate::server::read_more;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timer lateness not charged to the system under test (monoio's timer wheel ticks in ms).
const TIMER_SLACK: Duration = Duration::from_millis(1);
/// How long after the end of a phase a lagging connection may keep draining its backlog.
/// A response later than this counts as a failure. 5 s: in CI (debug client, 2 shared
/// cores) a saturated ztunnel's 10k/s backlog once took longer than the former 2 s, so a
/// slow-but-delivered response was reported as a proxy failure.
pub const GRACE: Duration = Duration::from_secs(5);
/// A TCP connect that takes longer has failed (SYNs black-holed by a broken path).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Read buffer per connection.
const READ_BUF: usize = 64 * 1024;

/// One core's share of a request/response phase.
#[derive(Debug, Clone)]
pub struct RrSpec {
    pub target: SocketAddr,
    pub expect_ip: IpAddr,
    /// Request head + body, sent as is.
    pub request: Arc<Vec<u8>>,
    pub payload_fnv: u64,
    /// Open a new TCP connection for every request (connect-per-request scenario).
    pub reconnect: bool,
    /// Through this SOCKS5 proxy (None: straight to the target).
    pub via: Option<Via>,
    /// Closed loop: send the next request as soon as the previous response arrived,
    /// latency from the actual send (no schedule).
    pub closed: bool,
    /// Closed loop only: stop each connection after this many requests.
    pub count: Option<u64>,
    /// Indices (among all connections of the phase) of this core's connections.
    pub conn_ids: Vec<usize>,
    pub total_conns: usize,
    pub rate_per_conn: f64,
    pub start: Instant,
    pub warm_end: Instant,
    pub end: Instant,
}

/// Counters and latencies of a set of connections.
#[derive(Debug, Clone, Default)]
pub struct RrStats {
    pub hist: LatencyHist,
    /// Requests completed inside the measurement window (after warm-up).
    pub ok: u64,
    /// Requests completed in total.
    pub completed: u64,
    pub errors: u64,
    /// Of the errors, connections cut under a request ([`Error::is_cut`]: reset, or closed
    /// in the middle of a response).
    pub resets: u64,
    /// The first error that was not a reset.
    pub first_other_error: Option<String>,
    /// Requests due before the end that were never sent (the client fell behind).
    pub missed: u64,
    pub first_error: Option<String>,
    /// The first wrong-source-IP / checksum failure: the run fails on it.
    pub correctness: Option<String>,
}

impl RrStats {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &RrStats) {
        self.hist.merge(&o.hist);
        self.ok += o.ok;
        self.completed += o.completed;
        self.errors += o.errors;
        self.resets += o.resets;
        self.first_other_error = self
            .first_other_error
            .take()
            .or_else(|| o.first_other_error.clone());
        self.missed += o.missed;
        self.first_error = self.first_error.take().or_else(|| o.first_error.clone());
        self.correctness = self.correctness.take().or_else(|| o.correctness.clone());
    }

    fn failed(&mut self, e: Error) {
        if e.is_correctness() {
            self.correctness.get_or_insert_with(|| e.to_string());
        } else {
            self.errors += 1;
            self.first_error.get_or_insert_with(|| e.to_string());
            if e.is_cut() {
                self.resets += 1;
            } else {
                self.first_other_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Runs this core's connections of a request/response phase.
pub async fn run_rr(spec: RrSpec) -> Result<RrStats> {
    let spec = Rc::new(spec);
    let tasks: Vec<_> = spec
        .conn_ids
        .iter()
        .map(|&i| monoio::spawn(rr_conn(spec.clone(), i)))
        .collect();
    let mut total = RrStats::default();
    for t in tasks {
        total.merge(&t.await);
    }
    Ok(total)
}

async fn rr_conn(spec: Rc<RrSpec>, idx: usize) -> RrStats {
    if spec.closed {
        return closed_conn(&spec).await;
    }
    let mut st = RrStats::default();
    let interval = Duration::from_secs_f64(1.0 / spec.rate_per_conn.max(1e-3));
    let offset = interval.mul_f64(idx as f64 / spec.total_conns.max(1) as f64);
    let mut pacer = Pacer::new(spec.start + offset, spec.rate_per_conn);
    let mut conn = None;
    let mut bufs = (Vec::with_capacity(READ_BUF), vec![0u8; READ_BUF]);
    loop {
        let intended = pacer.next_intended();
        let now = Instant::now();
        if intended >= spec.end {
            break;
        }
        if now > spec.end + GRACE {
            st.missed += pacer.due_by(spec.end).saturating_sub(pacer.issued() - 1);
            break;
        }
        let base = match step(intended, now) {
            Step::Send { base } => base,
            Step::Wait(until) => {
                monoio::time::sleep(until - now).await;
                measure_base(intended, Instant::now(), TIMER_SLACK)
            }
        };
        let deadline = (spec.end + GRACE).saturating_duration_since(Instant::now()) + TIMER_SLACK;
        let res = monoio::time::timeout(deadline, request(&spec, &mut conn, &mut bufs)).await;
        match res.unwrap_or_else(|_| Err(timed_out(spec.target))) {
            Ok(()) => {
                st.completed += 1;
                if base >= spec.warm_end {
                    st.hist.record(Instant::now() - base);
                    st.ok += 1;
                }
            }
            Err(e) => {
                conn = None;
                st.failed(e);
            }
        }
    }
    st
}

/// One closed-loop connection: back-to-back requests until the end or `count`.
async fn closed_conn(spec: &RrSpec) -> RrStats {
    let mut st = RrStats::default();
    let mut conn = None;
    let mut bufs = (Vec::with_capacity(READ_BUF), vec![0u8; READ_BUF]);
    let now = Instant::now();
    if now < spec.start {
        monoio::time::sleep(spec.start - now).await;
    }
    let budget = spec.count.unwrap_or(u64::MAX);
    while st.completed + st.errors < budget && Instant::now() < spec.end {
        let base = Instant::now();
        let left = (spec.end + GRACE).saturating_duration_since(base);
        let res = monoio::time::timeout(left, request(spec, &mut conn, &mut bufs)).await;
        match res.unwrap_or_else(|_| Err(timed_out(spec.target))) {
            Ok(()) => {
                st.completed += 1;
                if base >= spec.warm_end {
                    st.hist.record(base.elapsed());
                    st.ok += 1;
                }
            }
            Err(e) => {
                conn = None;
                st.failed(e);
            }
        }
    }
    st
}

fn timed_out(target: SocketAddr) -> Error {
    Error::Io {
        what: format!("request to {target}"),
        source: std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no response before the phase ended",
        ),
    }
}

/// Connects to `target`, through the SOCKS5 proxy `via` when given.
pub async fn open(target: SocketAddr, via: Option<&Via>) -> Result<TcpStream> {
    match via {
        Some(v) => connect_via(v, target).await,
        None => connect(target).await,
    }
}

/// Connects with a timeout and TCP_NODELAY.
pub async fn connect(target: SocketAddr) -> Result<TcpStream> {
    let what = || format!("connecting to {target}");
    let s = monoio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect_addr(target))
        .await
        .map_err(|_| Error::Io {
            what: what(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        })?
        .map_err(Error::io(what()))?;
    s.set_nodelay(true)
        .map_err(Error::io("setting TCP_NODELAY"))?;
    Ok(s)
}

async fn request(
    spec: &RrSpec,
    conn: &mut Option<TcpStream>,
    (acc, buf): &mut (Vec<u8>, Vec<u8>),
) -> Result<()> {
    let mut s = match conn.take() {
        Some(s) if !spec.reconnect => s,
        _ => open(spec.target, spec.via.as_ref()).await?,
    };
    let (res, _) = s.write_all(spec.request.to_vec()).await;
    res.map_err(Error::io(format!("sending a request to {}", spec.target)))?;
    acc.clear();
    let head = read_response(spec.target, &mut s, acc, buf).await?;
    check_response(
        spec,
        &head,
        &acc[head.header_len..head.header_len + head.content_length],
    )?;
    if !spec.reconnect && !head.close {
        *conn = Some(s);
    }
    Ok(())
}

async fn read_response(
    peer: SocketAddr,
    s: &mut TcpStream,
    acc: &mut Vec<u8>,
    buf: &mut Vec<u8>,
) -> Result<proto::Head> {
    let mut head = None;
    loop {
        if head.is_none() {
            head = proto::parse_head(acc).map_err(|source| Error::Proto { peer, source })?;
        }
        if let Some(h) = &head {
            if acc.len() >= h.header_len + h.content_length {
                return Ok(h.clone());
            }
        }
        let (res, b) = read_more(s, acc, std::mem::take(buf)).await;
        *buf = b;
        if res.map_err(Error::io(format!("reading a response from {peer}")))? == 0 {
            return Err(Error::ClosedEarly { server: peer });
        }
    }
}

fn check_response(spec: &RrSpec, head: &proto::Head, body: &[u8]) -> Result<()> {
    let server = spec.target;
    let seen = head.client_ip.ok_or(Error::Proto {
        peer: server,
        source: proto::ProtoError::BadValue {
            name: proto::CLIENT_IP_HEADER,
            value: String::new(),
        },
    })?;
    if seen != spec.expect_ip {
        return Err(Error::WrongSourceIp {
            server,
            seen,
            expected: spec.expect_ip,
        });
    }
    let got = head.body_fnv.unwrap_or(0);
    if got != spec.payload_fnv {
        return Err(Error::Checksum {
            server,
            sent: spec.payload_fnv,
            got,
        });
    }
    let echoed = fnv(body);
    if echoed != spec.payload_fnv {
        return Err(Error::Checksum {
            server,
            sent: spec.payload_fnv,
            got: echoed,
        });
    }
    Ok(())
}
