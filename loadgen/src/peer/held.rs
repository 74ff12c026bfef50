//! Held connections: open many idle connections through a proxy, hold them, echo once
//! on each, close them all, and read the proxy's RSS at each step: RSS per held
//! connection and how much memory the proxy keeps once they are gone. Across nodes the
//! RSS is that of both proxies: each held connection costs memory on both nodes.

use super::figures::Target;
use super::model::Sample;
use super::setup::HTTP_PORT;
use super::SERVER_IP;
use crate::checksum::fnv;
use crate::client::connect_via;
use crate::error::{Error, Result};
use crate::procs;
use crate::proto;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::time::Duration;

/// Connections opened at once while building the set.
const OPEN_BATCH: usize = 64;

/// How many connections, how long to hold them and to wait after closing.
#[derive(Debug, Clone, Copy)]
pub struct HeldPlan {
    pub conns: usize,
    pub hold: Duration,
    pub after_close: Duration,
}

/// RSS readings (bytes) of one held-connections run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rss {
    pub start: u64,
    pub held: u64,
    pub after_close: u64,
}

/// The sample values of a run over `conns` connections (pure).
pub fn values(r: Rss, conns: usize) -> Vec<(&'static str, f64)> {
    let mb = |b: u64| b as f64 / 1e6;
    let per = r.held.saturating_sub(r.start) as f64 / conns.max(1) as f64 / 1e3;
    vec![
        ("rss_start_mb", mb(r.start)),
        ("rss_held_mb", mb(r.held)),
        ("rss_per_conn_kb", per),
        ("rss_after_close_mb", mb(r.after_close)),
    ]
}

/// Runs the held-connections figure through `t`'s proxy.
pub fn held(t: Target, plan: HeldPlan) -> Sample {
    let (lab, pids) = (t.lab, t.lab.pids());
    let via = lab.via();
    let (run, mut s) = super::figures::measured(t, || {
        crate::cores::run_per_core(1, Some(&lab.netns), move |_| {
            let pids = pids.clone();
            async move { Ok(hold_all(via, &pids, plan).await) }
        })
    });
    match run.map(|mut v| v.remove(0)) {
        Ok((rss, failures, reasons)) => {
            for (k, v) in values(rss, plan.conns) {
                s.values.insert(k.into(), v);
            }
            s.failures = failures;
            reasons.into_iter().for_each(|r| s.reason(r));
        }
        Err(e) => {
            s.failures += 1;
            s.reason(e.to_string());
        }
    }
    s
}

#[derive(Default)]
struct Tally {
    failures: u64,
    reasons: Vec<String>,
}

impl Tally {
    fn note(&mut self, e: Error) {
        self.failures += 1;
        if self.reasons.len() < 5 {
            self.reasons.push(e.to_string());
        }
    }
}

/// The RSS of every proxy of the lab (cross node: both nodes' proxies), summed.
fn rss_of(pids: &[i32]) -> u64 {
    pids.iter().map(|p| procs::rss_bytes(*p)).sum()
}

async fn hold_all(
    via: crate::client::Via,
    pids: &[i32],
    plan: HeldPlan,
) -> (Rss, u64, Vec<String>) {
    let target = SocketAddr::new(SERVER_IP, HTTP_PORT);
    let mut rss = Rss {
        start: rss_of(pids),
        ..Rss::default()
    };
    let (mut conns, mut t) = (Vec::new(), Tally::default());
    for chunk in (0..plan.conns).collect::<Vec<_>>().chunks(OPEN_BATCH) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|_| monoio::spawn(async move { connect_via(&via, target).await }))
            .collect();
        for h in batch {
            match h.await {
                Ok(s) => conns.push(s),
                Err(e) => t.note(e),
            }
        }
    }
    monoio::time::sleep(plan.hold).await;
    rss.held = rss_of(pids);
    for s in conns.iter_mut() {
        if let Err(e) = echo_once(s, target).await {
            t.note(e);
        }
    }
    drop(conns);
    monoio::time::sleep(plan.after_close).await;
    rss.after_close = rss_of(pids);
    (rss, t.failures, t.reasons)
}

async fn echo_once(s: &mut TcpStream, target: SocketAddr) -> Result<()> {
    let mut req = proto::request_head(&target.to_string(), 1, false);
    req.push(b'h');
    let (res, _) = s.write_all(req).await;
    res.map_err(Error::io(format!("echo on a held connection to {target}")))?;
    let (mut acc, mut buf) = (Vec::new(), vec![0u8; 1024]);
    loop {
        let head = proto::parse_head(&acc).map_err(|source| Error::Proto {
            peer: target,
            source,
        })?;
        if let Some(h) = head.filter(|h| acc.len() >= h.header_len + h.content_length) {
            let body = &acc[h.header_len..h.header_len + h.content_length];
            return match fnv(body) == fnv(b"h") {
                true => Ok(()),
                false => Err(Error::Checksum {
                    server: target,
                    sent: fnv(b"h"),
                    got: fnv(body),
                }),
            };
        }
        let (res, b) = crate::server::read_more(s, &mut acc, buf).await;
        buf = b;
        if res.map_err(Error::io(format!(
            "echo reply on a held connection from {target}"
        )))? == 0
        {
            return Err(Error::ClosedEarly { server: target });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_rss_is_the_delta_over_the_count() {
        let r = Rss {
            start: 10_000_000,
            held: 70_000_000,
            after_close: 12_000_000,
        };
        let v: std::collections::BTreeMap<_, _> = values(r, 5000).into_iter().collect();
        assert_eq!(v["rss_per_conn_kb"], 12.0);
        assert_eq!(v["rss_start_mb"], 10.0);
        assert_eq!(v["rss_after_close_mb"], 12.0);
        assert_eq!(values(Rss::default(), 0)[2].1, 0.0);
    }
}
