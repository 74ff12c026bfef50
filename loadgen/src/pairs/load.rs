//! The pairs client: every (source i, destination j) once, in a seeded order, C at a
//! time, from node A. One pair is a SOCKS5 connect from source i's IP to destination j's
//! echo server, one 1-byte POST echoed back, then close; its latency is connect + first
//! echo.

use super::lab::{dest_ip, source_ip, ECHO_PORT};
use crate::client::{connect_via, Via};
use crate::error::{Error, Result};
use crate::hist::LatencyHist;
use crate::proto;
use monoio::io::AsyncWriteRentExt;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What one pass over the pairs gave.
#[derive(Debug, Default)]
pub struct Outcome {
    pub hist: LatencyHist,
    pub failures: u64,
    pub reasons: Vec<String>,
    pub wall: Duration,
}

/// Every pair of M sources × K destinations, shuffled by `seed` (splitmix64).
pub fn order(m: usize, k: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut pairs: Vec<(usize, usize)> = (0..m).flat_map(|i| (0..k).map(move |j| (i, j))).collect();
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..pairs.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        pairs.swap(i, j);
    }
    pairs
}

/// Runs `pairs` through the SOCKS5 proxy `socks` inside `netns`, `concurrency` at a time.
pub fn run(
    netns: &str,
    socks: SocketAddr,
    pairs: Vec<(usize, usize)>,
    concurrency: usize,
) -> Result<Outcome> {
    let pairs = std::sync::Arc::new(pairs);
    let mut v = crate::cores::run_per_core(1, Some(netns), move |_| {
        let pairs = pairs.clone();
        async move { Ok(drive(socks, &pairs, concurrency).await) }
    })?;
    Ok(v.remove(0))
}

async fn drive(socks: SocketAddr, pairs: &[(usize, usize)], concurrency: usize) -> Outcome {
    let next = Rc::new(Cell::new(0usize));
    let out = Rc::new(RefCell::new(Outcome::default()));
    let start = Instant::now();
    let pairs = Rc::new(pairs.to_vec());
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (next, out, pairs) = (next.clone(), out.clone(), pairs.clone());
            monoio::spawn(async move {
                loop {
                    let n = next.get();
                    let Some(&(i, j)) = pairs.get(n) else { break };
                    next.set(n + 1);
                    let t0 = Instant::now();
                    let r = one_pair(socks, i, j).await;
                    let mut o = out.borrow_mut();
                    match r {
                        Ok(()) => o.hist.record(t0.elapsed()),
                        Err(e) => {
                            o.failures += 1;
                            if o.reasons.len() < 5 {
                                o.reasons.push(e.to_string());
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await;
    }
    let wall = start.elapsed();
    let mut o = Rc::try_unwrap(out)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    o.wall = wall;
    o
}

async fn one_pair(socks: SocketAddr, i: usize, j: usize) -> Result<()> {
    let target = SocketAddr::new(dest_ip(j), ECHO_PORT);
    let via = Via {
        socks,
        bind: Some(source_ip(i)),
    };
    let mut s = connect_via(&via, target).await?;
    let mut req = proto::request_head(&target.to_string(), 1, true);
    req.push(b'p');
    let (res, _) = s.write_all(req).await;
    res.map_err(Error::io(format!(
        "sending to {target} from {}",
        source_ip(i)
    )))?;
    let (mut acc, mut buf) = (Vec::new(), vec![0u8; 1024]);
    loop {
        let head = proto::parse_head(&acc).map_err(|source| Error::Proto {
            peer: target,
            source,
        })?;
        if let Some(h) = head {
            if acc.len() >= h.header_len + h.content_length {
                return Ok(());
            }
        }
        let (res, b) = crate::server::read_more(&mut s, &mut acc, buf).await;
        buf = b;
        if res.map_err(Error::io(format!("echo from {target}")))? == 0 {
            return Err(Error::ClosedEarly { server: target });
        }
    }
}
