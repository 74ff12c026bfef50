//! What the soak watches of the two zring proxies, from /proc: RSS, open descriptors and
//! node A's pooled HBONE connections (established TCP to port 15008 in its netns).

use crate::procs;
use serde::{Deserialize, Serialize};
use std::fs;

/// The HBONE port, as /proc/net/tcp prints it (hex).
const HBONE_HEX: &str = ":3AA0";
/// TCP_ESTABLISHED in /proc/net/tcp's `st` column.
const ESTABLISHED: &str = "01";

/// One look at both proxies (index 0 = node A, the client side; 1 = node B).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the soak started.
    pub t_s: u64,
    pub rss_bytes: [u64; 2],
    pub fds: [usize; 2],
    /// Node A's established connections to a 15008 (its HBONE pool).
    pub pooled_hbone: usize,
    /// Soak connections open at that moment.
    pub open_conns: usize,
}

/// Samples the proxies `pids` (node A first).
pub fn sample(pids: [i32; 2], t_s: u64, open_conns: usize) -> Sample {
    Sample {
        t_s,
        rss_bytes: pids.map(procs::rss_bytes),
        fds: pids.map(fd_count),
        pooled_hbone: fs::read_to_string(format!("/proc/{}/net/tcp", pids[0]))
            .map(|t| pooled(&t))
            .unwrap_or(0),
        open_conns,
    }
}

fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Established connections whose remote port is 15008 in a /proc/net/tcp text.
pub fn pooled(tcp: &str) -> usize {
    tcp.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2].ends_with(HBONE_HEX) && f[3] == ESTABLISHED
        })
        .count()
}

/// RSS is flat when the peak of the last third of the steady samples is within 10 %
/// (or 8 MiB, whichever is larger) of the first third's peak.
pub fn rss_flat(steady: &[u64]) -> Result<(), String> {
    if steady.len() < 3 {
        return Err(format!(
            "only {} steady samples: run longer to judge RSS",
            steady.len()
        ));
    }
    let third = steady.len() / 3;
    let first = *steady[..third].iter().max().unwrap_or(&0);
    let last = *steady[steady.len() - third..].iter().max().unwrap_or(&0);
    let allowed = first + (first / 10).max(8 << 20);
    if last > allowed {
        return Err(format!(
            "RSS grew from a peak of {} KiB to {} KiB while the load stayed the same",
            first >> 10,
            last >> 10
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_counts_established_connections_to_15008() {
        let t = "  sl  local_address rem_address   st\n\
                 0: 0202F40A:A1B2 0502F40A:3AA0 01 x\n\
                 1: 0202F40A:A1B3 0502F40A:3AA0 06 x\n\
                 2: 0100007F:3AA0 0100007F:D000 01 x\n\
                 3: 0202F40A:A1B4 0502F40A:1F90 01 x\n";
        assert_eq!(pooled(t), 1);
    }

    #[test]
    fn rss_flat_allows_noise_and_refuses_growth() {
        let mib = |v: u64| v << 20;
        assert!(rss_flat(&[mib(100), mib(104), mib(101), mib(103), mib(102), mib(108)]).is_ok());
        assert!(rss_flat(&[mib(100), mib(100), mib(130), mib(160), mib(200), mib(240)]).is_err());
        assert!(rss_flat(&[mib(1)]).is_err());
    }
}
