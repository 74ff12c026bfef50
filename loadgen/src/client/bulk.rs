//! Bulk streams into the sink: write a seeded chunk until the deadline, half-close,
//! then check the sink's byte count and the checksum of the first MiB.

use super::{open, Via};
use crate::checksum::Fnv;
use crate::error::{Error, Result};
use crate::proto::{self, SINK_SUM_PREFIX};
use crate::server::read_more;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One core's share of a bulk phase.
#[derive(Debug, Clone)]
pub struct BulkSpec {
    pub target: SocketAddr,
    pub expect_ip: IpAddr,
    pub streams: usize,
    /// The chunk written repeatedly.
    pub chunk: Arc<Vec<u8>>,
    pub end: Instant,
    /// Bytes per stream: a stream stops at the end or once it sent this many.
    pub limit: u64,
    pub via: Option<Via>,
}

/// Bytes moved by a set of streams and the longest stream duration.
#[derive(Debug, Clone, Copy, Default)]
pub struct BulkStats {
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Runs this core's bulk streams; any stream failure fails the phase.
pub async fn run_bulk(spec: BulkSpec) -> Result<BulkStats> {
    let spec = Rc::new(spec);
    let tasks: Vec<_> = (0..spec.streams)
        .map(|_| monoio::spawn(bulk_stream(spec.clone())))
        .collect();
    let mut total = BulkStats::default();
    for t in tasks {
        let s = t.await?;
        total.bytes += s.bytes;
        total.elapsed = total.elapsed.max(s.elapsed);
    }
    Ok(total)
}

async fn bulk_stream(spec: Rc<BulkSpec>) -> Result<BulkStats> {
    let peer = spec.target;
    let mut s = open(peer, spec.via.as_ref()).await?;
    let (mut acc, mut buf) = (Vec::new(), vec![0u8; 4096]);
    let seen = read_line(peer, &mut s, &mut acc, &mut buf).await?;
    let seen = proto::parse_sink_preamble(&seen).map_err(|source| Error::Proto { peer, source })?;
    if seen != spec.expect_ip {
        return Err(Error::WrongSourceIp {
            server: peer,
            seen,
            expected: spec.expect_ip,
        });
    }
    let start = Instant::now();
    let mut sent = 0u64;
    let mut chunk = spec.chunk.to_vec();
    while Instant::now() < spec.end && sent < spec.limit {
        let (res, c) = s.write_all(chunk).await;
        chunk = c;
        sent += res.map_err(Error::io(format!("streaming to {peer}")))? as u64;
    }
    s.shutdown()
        .await
        .map_err(Error::io(format!("closing the stream to {peer}")))?;
    let trailer = read_line(peer, &mut s, &mut acc, &mut buf).await?;
    let elapsed = start.elapsed();
    let (got, got_fnv) =
        proto::parse_sink_trailer(&trailer).map_err(|source| Error::Proto { peer, source })?;
    if got != sent {
        return Err(Error::ByteCount {
            server: peer,
            sent,
            got,
        });
    }
    let want = prefix_fnv(&spec.chunk, sent);
    if got_fnv != want {
        return Err(Error::Checksum {
            server: peer,
            sent: want,
            got: got_fnv,
        });
    }
    Ok(BulkStats {
        bytes: sent,
        elapsed,
    })
}

/// FNV of the first [`SINK_SUM_PREFIX`] bytes of `chunk` repeated to `sent` bytes.
pub fn prefix_fnv(chunk: &[u8], sent: u64) -> u64 {
    let mut h = Fnv::default();
    let mut left = (sent as usize).min(SINK_SUM_PREFIX);
    while left > 0 && !chunk.is_empty() {
        let n = left.min(chunk.len());
        h.update(&chunk[..n]);
        left -= n;
    }
    h.finish()
}

async fn read_line(
    peer: SocketAddr,
    s: &mut TcpStream,
    acc: &mut Vec<u8>,
    buf: &mut Vec<u8>,
) -> Result<String> {
    loop {
        if let Some((line, used)) = proto::take_line(acc) {
            let line = line.to_string();
            acc.drain(..used);
            return Ok(line);
        }
        let (res, b) = read_more(s, acc, std::mem::take(buf)).await;
        *buf = b;
        if res.map_err(Error::io(format!("reading from {peer}")))? == 0 {
            return Err(Error::ClosedEarly { server: peer });
        }
    }
}
