//! `--pcap FILE`: tcpdump on node A's `eth0` (the link between the nodes) while a run
//! measures, then a summary of what crossed it for the mesh pair: HBONE (15008) packets
//! and plaintext packets to the app port, which must be zero.
//!
//! Only connection set-up and tear-down packets (SYN, FIN, RST) are captured: every TCP
//! connection that crosses the link shows its ports in its SYN, so this sees every flow
//! while keeping a multi-Gb/s bulk phase from writing hundreds of MB of capture.

use crate::error::{Error, Result};
use crate::procs::{self, Proc};
use crate::topo::plan::{Plan, ETH0, HBONE_PORT, HTTP_PORT, SINK_PORT};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bytes kept per packet: headers only.
const SNAPLEN: &str = "128";
/// How long tcpdump may take to open the interface.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Packets of the mesh pair seen on the node link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSummary {
    /// SYN/FIN/RST packets to or from port 15008 (HBONE).
    pub hbone_packets: u64,
    /// SYN/FIN/RST packets to or from the app ports (8080, 9000): the mesh flow in plaintext.
    pub plaintext_packets: u64,
}

/// A running capture.
#[derive(Debug)]
pub struct Capture {
    proc: Proc,
    pcap: PathBuf,
    client: Ipv4Addr,
    server: Ipv4Addr,
}

fn tcpdump() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("tcpdump"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Topology("`tcpdump` not found on PATH: install it (scripts/install-deps)".into())
        })
}

/// Starts tcpdump in node A's namespace on `eth0` for the mesh pair's packets.
pub fn start(plan: &Plan, pcap: &Path) -> Result<Capture> {
    let (client, server) = plan.mesh_pair();
    let filter = format!(
        "tcp and host {} and host {} and tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0",
        client.ip, server.ip
    );
    let args: Vec<String> = ["-i", ETH0, "-nn", "-U", "-s", SNAPLEN, "-w"]
        .iter()
        .map(|s| s.to_string())
        .chain([pcap.display().to_string(), filter])
        .collect();
    let log = pcap.with_extension("tcpdump.log");
    let _ = std::fs::remove_file(pcap);
    let proc = procs::spawn_in(&plan.a.netns, "tcpdump", &tcpdump()?, &args, log)?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !pcap.exists() && procs::is_alive(proc.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !pcap.exists() {
        procs::terminate(&[proc.pid]);
        return Err(Error::Child {
            what: "tcpdump".into(),
            status: "no capture file".into(),
            log: proc.log,
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    Ok(Capture {
        proc,
        pcap: pcap.to_path_buf(),
        client: client.ip,
        server: server.ip,
    })
}

impl Capture {
    /// Stops tcpdump and summarises the capture.
    pub fn finish(self) -> Result<LinkSummary> {
        procs::terminate(&[self.proc.pid]);
        let out = Command::new(tcpdump()?)
            .args(["-nn", "-r"])
            .arg(&self.pcap)
            .output()
            .map_err(Error::io(format!("reading {}", self.pcap.display())))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(summarize(text.lines(), self.client, self.server))
    }
}

/// Counts HBONE and plaintext packets between `client` and `server` in `tcpdump -nn`
/// output lines (`IP 10.244.1.4.40000 > 10.244.2.5.15008: …`).
pub fn summarize<'a>(
    lines: impl Iterator<Item = &'a str>,
    client: Ipv4Addr,
    server: Ipv4Addr,
) -> LinkSummary {
    let mut s = LinkSummary::default();
    let ports = |port: u16| {
        [
            format!("{client}.{port} "),
            format!("{server}.{port}:"),
            format!("{server}.{port} "),
            format!("{client}.{port}:"),
        ]
    };
    let hbone = ports(HBONE_PORT);
    let plain: Vec<String> = [HTTP_PORT, SINK_PORT].into_iter().flat_map(ports).collect();
    for l in
        lines.filter(|l| l.contains(&format!("{client}.")) && l.contains(&format!("{server}.")))
    {
        if hbone.iter().any(|p| l.contains(p.as_str())) {
            s.hbone_packets += 1;
        } else if plain.iter().any(|p| l.contains(p.as_str())) {
            s.plaintext_packets += 1;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hbone_and_plaintext_of_the_pair_only() {
        let c = Ipv4Addr::new(10, 244, 1, 4);
        let s = Ipv4Addr::new(10, 244, 2, 5);
        let lines = [
            "04:00:00.1 IP 10.244.1.4.40000 > 10.244.2.5.15008: Flags [S], length 0",
            "04:00:00.2 IP 10.244.2.5.15008 > 10.244.1.4.40000: Flags [S.], length 0",
            "04:00:00.3 IP 10.244.1.4.40001 > 10.244.2.5.8080: Flags [P.], length 100",
            "04:00:00.4 IP 10.244.2.5.9000 > 10.244.1.4.40002: Flags [.], length 0",
            "04:00:00.5 IP 10.244.1.5.40003 > 10.244.2.6.8080: Flags [S], length 0",
            "garbage",
        ];
        let sum = summarize(lines.into_iter(), c, s);
        assert_eq!(
            sum,
            LinkSummary {
                hbone_packets: 2,
                plaintext_packets: 2
            }
        );
    }

    #[test]
    fn ephemeral_ports_that_end_like_app_ports_are_not_plaintext() {
        let c = Ipv4Addr::new(10, 244, 1, 4);
        let s = Ipv4Addr::new(10, 244, 2, 5);
        let l = "IP 10.244.1.4.18080 > 10.244.2.5.15008: Flags [.], length 0";
        assert_eq!(
            summarize([l].into_iter(), c, s),
            LinkSummary {
                hbone_packets: 1,
                plaintext_packets: 0
            }
        );
    }
}
