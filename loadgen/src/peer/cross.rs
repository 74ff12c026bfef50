//! The cross-node shape: node A and node B are two network namespaces joined by a veth
//! (10.9.0.1 / 10.9.0.2) with one proxy in each. The client workload's IP is on A's
//! loopback, the server workload's IP and the loadgen's servers on B's; the client dials
//! proxy A's SOCKS5, proxy A opens HBONE across the veth to 10.250.0.2:15008 (proxy B),
//! and proxy B delivers to the server. All four proxies (a pair per compared proxy) read
//! one LocalConfig in which the client is on `node-a` and the server on `node-b`, so no
//! proxy takes the server for its own node's workload.

use super::launch::{self, Bins, Node};
use super::setup::{self, Lab, HTTP_PORT, SINK_PORT};
use super::{Proxy, CLIENT_IP, SERVER_IP};
use crate::error::{Error, Result};
use plumbing::{netns, RouteSpec};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use zring::config::LocalConfig;

/// Node A's and node B's addresses on the link between them.
pub const NODE_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2)];
/// The nodes' names, as the workloads' `node` and each proxy's own node name.
pub const NODES: [&str; 2] = ["node-a", "node-b"];
/// The link's prefix length.
const LINK_PREFIX: u8 = 24;
/// The veth's ends in A and in B.
const LINK: [&str; 2] = ["veth-a", "veth-b"];
/// zring A's SOCKS5 listener: on node A's link address, because with `--transparent
/// false` zring identifies a SOCKS5 client by a workload source IP that reaches it there.
pub const ZRING_SOCKS: SocketAddr = SocketAddr::new(IpAddr::V4(NODE_IPS[0]), 15080);
/// The table of ztunnel B's reply route (any free id; main is 254).
const REPLY_TABLE: u32 = 200;
const MAIN_TABLE: u32 = 254;

/// The cross-node LocalConfig: the same-node one with the client on node A and the server
/// on node B.
pub fn local_config() -> LocalConfig {
    let mut c = setup::local_config();
    for w in &mut c.workloads {
        let on_b = w.workload_ips.contains(&SERVER_IP);
        w.node = NODES[usize::from(on_b)].to_string().into();
    }
    c
}

/// Writes [`local_config`] as `workloads-cross.yaml` in `dir` (beside the same-node one).
pub fn write_config(dir: &Path) -> Result<PathBuf> {
    let p = dir.join("workloads-cross.yaml");
    let yaml = serde_yaml::to_string(&local_config()).expect("config serialises");
    std::fs::write(&p, yaml).map_err(Error::io(format!("writing {}", p.display())))?;
    Ok(p)
}

/// The namespaces of `proxy`'s pair: `<prefix>x-<proxy>-a`, `…-b`.
pub fn names(prefix: &str, proxy: Proxy) -> [String; 2] {
    ["a", "b"].map(|n| format!("{prefix}x-{}-{n}", proxy.name()))
}

/// Brings up `proxy`'s node pair: namespaces, link, servers in B, proxy B then proxy A
/// (`cores` each), readiness and a probe echo through the pair.
pub fn start_pair(proxy: Proxy, prefix: &str, bins: &Bins, cores: usize) -> Result<Lab> {
    let [a, b] = names(prefix, proxy);
    make_nodes(&a, &b)?;
    setup::start_servers(&b)?;
    if proxy == Proxy::Ztunnel {
        reply_rule(&b)?;
    }
    let config = bins.dir.join("workloads-cross.yaml");
    let node = |i: usize| Node {
        config: &config,
        cores,
        name: Some(NODES[i]),
        socks: (i == 0 && proxy == Proxy::Zring).then_some(ZRING_SOCKS),
        workload: ["client", "server"][i],
    };
    let log = |n: &str| bins.dir.join(format!("{}-{n}.log", proxy.name()));
    let remote = launch::spawn(proxy, &b, bins, &node(1), log("b"))?;
    setup::wait_ready(&b, &remote)?;
    let proc = launch::spawn(proxy, &a, bins, &node(0), log("a"))?;
    setup::wait_ready(&a, &proc)?;
    let socks = match proxy {
        Proxy::Zring => ZRING_SOCKS,
        Proxy::Ztunnel => SocketAddr::from(setup::SOCKS_ADDR),
    };
    let mut lab = Lab {
        proxy,
        netns: a.clone(),
        proc,
        remote: Some(remote),
        socks,
        seen_ip: SERVER_IP,
        direct_ip: SERVER_IP,
    };
    lab.seen_ip = setup::probe(&a, Some(lab.via()))?;
    // The direct column runs in zring's pair only (`super::order`): in ztunnel's, the
    // reply rule would hand the server's replies to a direct client to node B itself.
    if proxy == Proxy::Zring {
        lab.direct_ip = setup::probe(&a, None)?;
    }
    Ok(lab)
}

/// Node A with the client's IP and node B with the server's, joined by the veth, each
/// routing the other's workload IP over it.
fn make_nodes(a: &str, b: &str) -> Result<()> {
    setup::make_netns_with(a, &[CLIENT_IP])?;
    setup::make_netns_with(b, &[SERVER_IP])?;
    netns::veth_pair(Some(a), LINK[0], LINK[1], Some(b))?;
    for (ns, i, remote) in [(a, 0, SERVER_IP), (b, 1, CLIENT_IP)] {
        let ns = Some(ns);
        netns::add_address(ns, LINK[i], NODE_IPS[i], LINK_PREFIX)?;
        netns::set_link_up(ns, LINK[i])?;
        let route = RouteSpec::new(MAIN_TABLE, v4(remote), 32)
            .via(NODE_IPS[1 - i])
            .dev(LINK[i]);
        netns::add_route(ns, &route)?;
    }
    Ok(())
}

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(v) => v,
        IpAddr::V6(_) => unreachable!("the workload IPs are IPv4 constants"),
    }
}

/// ztunnel B's inbound leg reaches the server from the client's IP (IP_TRANSPARENT, even
/// with `ENABLE_ORIGINAL_SRC=false`); that IP routes to node A, so the server's replies
/// from its ports are looked up in a table that delivers everything locally, back to
/// ztunnel's socket (the rule of `../shared/peers/README.md`).
fn reply_rule(b: &str) -> Result<()> {
    let local = RouteSpec::new(REPLY_TABLE, Ipv4Addr::UNSPECIFIED, 0)
        .dev("lo")
        .local();
    netns::add_route(Some(b), &local)?;
    for port in [HTTP_PORT, SINK_PORT] {
        let (server, port) = (SERVER_IP.to_string(), port.to_string());
        let table = REPLY_TABLE.to_string();
        let args = [
            "-n", b, "rule", "add", "from", &server, "ipproto", "tcp", "sport", &port, "lookup",
            &table,
        ];
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(Error::io("running `ip rule add` (install iproute2)"))?;
        if !out.status.success() {
            return Err(Error::Peer(format!(
                "`ip {}` failed: {} (needs an iproute2 with ipproto/sport rule selectors)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_puts_client_on_a_and_server_on_b() {
        let c = local_config();
        let node = |ip| {
            let w = c.workloads.iter().find(|w| w.workload_ips.contains(&ip));
            w.map(|w| w.node.as_str())
        };
        assert_eq!(node(CLIENT_IP), Some("node-a"));
        assert_eq!(node(SERVER_IP), Some("node-b"));
        assert_eq!(c.workloads.len(), setup::local_config().workloads.len());
    }

    #[test]
    fn pair_names_carry_the_prefix_and_the_proxy() {
        assert_eq!(
            names("zrp-", Proxy::Zring),
            ["zrp-x-zring-a".to_string(), "zrp-x-zring-b".to_string()]
        );
        assert!(names("p", Proxy::Ztunnel)
            .iter()
            .all(|n| n.starts_with("p")));
    }
}
