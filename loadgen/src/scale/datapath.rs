//! The data path with the cluster loaded (issue 22: "conn/s and echo latency with 100k
//! loaded within noise of 10 loaded"): through the proxy's SOCKS5 port to an echo server
//! on the loopback of the proxy's namespace, sequential new connections (each: connect,
//! SOCKS5 CONNECT, one 64-byte echo, close) and 1 KiB echo round trips on one held
//! connection. The destination is no workload of the cluster, so the proxy looks it up
//! in the loaded store and relays it as plain TCP: what is compared is the same path at
//! two cluster sizes (`scale --workloads 10` against the default), not HBONE.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::socks;

/// The proxies' SOCKS5 listener (zring's default; ztunnel's with UNSTABLE_ENABLE_SOCKS5).
const SOCKS: ([u8; 4], u16) = ([127, 0, 0, 1], 15080);
/// Connections opened one after the other (after `WARMUP` of them).
pub const CONNECTIONS: usize = 1000;
/// 1 KiB round trips on one held connection (after `WARMUP` of them).
pub const ECHOES: usize = 5000;
const WARMUP: usize = 100;
const CONN_MESSAGE: usize = 64;
const ECHO_MESSAGE: usize = 1024;
/// How long any one read may take before the figure is given up.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the data path measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataPath {
    /// New connections per second, one at a time (connect, CONNECT, one echo, close).
    pub conns_per_s: f64,
    /// One such connection's time, median (µs).
    pub conn_p50_us: f64,
    /// 1 KiB round trip on a held connection, median and 99th percentile (µs).
    pub echo_p50_us: f64,
    pub echo_p99_us: f64,
}

/// Measures the data path of the proxy in `netns` (its SOCKS5 port on the loopback).
pub fn measure(netns: &str) -> Result<DataPath> {
    plumbing::netns::run_in(Some(netns), measure_here)
        .map_err(|e| Error::Setup(format!("entering {netns}: {e}")))?
}

fn measure_here() -> Result<DataPath> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(Error::io("binding the echo server"))?;
    let target = listener
        .local_addr()
        .map_err(Error::io("the echo server's address"))?;
    // One connection at a time: the client opens the next only after closing the last.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = match conn.try_clone() {
                Ok(r) => r,
                Err(_) => return,
            };
            let _ = std::io::copy(&mut reader, &mut conn);
        }
    });
    let socks = SocketAddr::from(SOCKS);
    let mut conn_us = Vec::with_capacity(CONNECTIONS);
    for i in 0..WARMUP + CONNECTIONS {
        let t = Instant::now();
        let mut s = open(socks, target)?;
        round_trip(&mut s, &mut [7u8; CONN_MESSAGE])?;
        drop(s);
        if i >= WARMUP {
            conn_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let total_s: f64 = conn_us.iter().sum::<f64>() / 1e6;
    let mut s = open(socks, target)?;
    let mut buf = [9u8; ECHO_MESSAGE];
    let mut echo_us = Vec::with_capacity(ECHOES);
    for i in 0..WARMUP + ECHOES {
        let t = Instant::now();
        round_trip(&mut s, &mut buf)?;
        if i >= WARMUP {
            echo_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(DataPath {
        conns_per_s: CONNECTIONS as f64 / total_s,
        conn_p50_us: quantile(&mut conn_us, 0.5),
        echo_p50_us: quantile(&mut echo_us, 0.5),
        echo_p99_us: quantile(&mut echo_us, 0.99),
    })
}

/// A connection through the proxy's SOCKS5 port to `target`, its CONNECT answered.
fn open(socks: SocketAddr, target: SocketAddr) -> Result<TcpStream> {
    let io = |what: &'static str| Error::io(format!("SOCKS5 to {target} via {socks}: {what}"));
    let mut s = TcpStream::connect(socks).map_err(io("connect"))?;
    s.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(io("read timeout"))?;
    s.write_all(&socks::GREETING).map_err(io("greeting"))?;
    let mut method = [0u8; socks::METHOD_REPLY_LEN];
    s.read_exact(&mut method).map_err(io("method reply"))?;
    socks::check_method(&method).map_err(|e| Error::Setup(format!("SOCKS5 method: {e}")))?;
    s.write_all(&socks::connect_request(target))
        .map_err(io("CONNECT"))?;
    let mut reply = vec![0u8; 5];
    s.read_exact(&mut reply).map_err(io("CONNECT reply"))?;
    let refused = |e| Error::Setup(format!("SOCKS5 CONNECT to {target}: {e}"));
    let len = socks::connect_reply_len(&reply).map_err(refused)?;
    reply.resize(len.unwrap_or(5).max(5), 0);
    s.read_exact(&mut reply[5..]).map_err(io("CONNECT reply"))?;
    Ok(s)
}

/// Sends `buf` and reads the same number of bytes back into it.
fn round_trip(s: &mut TcpStream, buf: &mut [u8]) -> Result<()> {
    s.write_all(buf).map_err(Error::io("echo: write"))?;
    s.read_exact(buf).map_err(Error::io("echo: read"))
}

/// The `q` quantile of `v` (sorted in place; 0 when empty).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
    v.get(i).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_sort_first_and_an_empty_sample_is_zero() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 0.99), 5.0);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
    }
}
