//! `zring plumb ...`: the clap tree the proxy binary mounts, and its runner.
//!
//! ```text
//! zring plumb node    up|down|check|show  [--file node.yaml] [--netns NAME] [--gateway-ip IP]
//!                                         [--ztunnel-ip IP] [--ztunnel-veth DEV] [--pod-ip IP]... [--tunnel geneve|vxlan]
//! zring plumb pod     add|del IP          (same flags as node)
//! zring plumb ztunnel up|down|check|show  [--file zt.yaml] [--netns NAME] [--ztunnel-ip IP]
//!                                         [--gateway-ip IP] [--eth0 DEV] [--tunnel geneve|vxlan]
//! zring plumb trace SRC DST:PORT [--tcp|--udp] [--json] [--netns NODE] [--ztunnel-netns ZT]
//!                  [--peer-netns NODE_B] [--peer-ztunnel-netns ZT_B] [--endpoint IP] [node flags]
//! ```
//! Flags override the YAML file (same field names with `_`). `check` exits 1 on drift.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Deserialize;

use crate::input::{from_yaml_file, NodeInput, ZtunnelInput};
use crate::model::TunnelKind;
use crate::{ops, DownReport, PlumbError, UpReport};

mod trace;
pub use trace::TraceArgs;

/// `zring plumb` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PlumbCommand {
    /// The node's (host netns) ipset, chains, rules, tables and tunnels.
    #[command(subcommand)]
    Node(SideCmd<NodeArgs>),
    /// Enrol or withdraw one pod: one ipset entry and one table-100 route.
    #[command(subcommand)]
    Pod(PodCmd),
    /// The ztunnel pod's tunnels, TPROXY rules, rules and table 100.
    #[command(subcommand)]
    Ztunnel(SideCmd<ZtunnelArgs>),
    /// Explain a flow's path through marks, chains, policy rules, tables and tunnels.
    #[command(long_about = trace::ABOUT)]
    Trace(Box<TraceArgs>),
}

/// up / down / check / show for one side.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SideCmd<A: clap::Args> {
    /// Create every object (idempotent; rolls back on failure).
    Up(A),
    /// Remove exactly what `up` creates.
    Down(A),
    /// Compare the kernel's state with the desired state; exit 1 on drift.
    Check(A),
    /// Print the desired state in the articles' notation.
    Show(A),
}

/// pod add / del.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PodCmd {
    /// Enrol a pod.
    Add {
        /// The pod's IP.
        ip: Ipv4Addr,
        #[command(flatten)]
        args: NodeArgs,
    },
    /// Withdraw a pod.
    Del {
        /// The pod's IP.
        ip: Ipv4Addr,
        #[command(flatten)]
        args: NodeArgs,
    },
}

/// Node inputs, as flags and/or a YAML file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NodeArgs {
    /// YAML file with gateway_ip, ztunnel_ip, ztunnel_veth, pod_ips, tunnel.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Act inside this named network namespace (/run/netns/NAME).
    #[arg(long)]
    pub netns: Option<String>,
    /// The node's pod gateway IP.
    #[arg(long)]
    pub gateway_ip: Option<Ipv4Addr>,
    /// The ztunnel pod's IP.
    #[arg(long)]
    pub ztunnel_ip: Option<Ipv4Addr>,
    /// The host-side veth of the ztunnel pod.
    #[arg(long)]
    pub ztunnel_veth: Option<String>,
    /// An enrolled pod IP (repeatable).
    #[arg(long = "pod-ip")]
    pub pod_ips: Vec<Ipv4Addr>,
    /// Tunnel encapsulation (GENEVE falls back to VXLAN when unsupported).
    #[arg(long, value_enum)]
    pub tunnel: Option<TunnelKind>,
}

/// Ztunnel pod inputs, as flags and/or a YAML file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ZtunnelArgs {
    /// YAML file with ztunnel_ip, gateway_ip, eth0, tunnel.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Act inside this named network namespace (the ztunnel pod's).
    #[arg(long)]
    pub netns: Option<String>,
    /// The ztunnel pod's IP.
    #[arg(long)]
    pub ztunnel_ip: Option<Ipv4Addr>,
    /// The node's pod gateway IP.
    #[arg(long)]
    pub gateway_ip: Option<Ipv4Addr>,
    /// The pod's primary interface.
    #[arg(long)]
    pub eth0: Option<String>,
    /// Tunnel encapsulation (GENEVE falls back to VXLAN when unsupported).
    #[arg(long, value_enum)]
    pub tunnel: Option<TunnelKind>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    gateway_ip: Option<Ipv4Addr>,
    ztunnel_ip: Option<Ipv4Addr>,
    ztunnel_veth: Option<String>,
    #[serde(default)]
    pod_ips: Vec<Ipv4Addr>,
    tunnel: Option<TunnelKind>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZtunnelFile {
    ztunnel_ip: Option<Ipv4Addr>,
    gateway_ip: Option<Ipv4Addr>,
    eth0: Option<String>,
    tunnel: Option<TunnelKind>,
}

fn need<T>(v: Option<T>, flag: &'static str, field: &'static str) -> Result<T, PlumbError> {
    v.ok_or(PlumbError::MissingInput(flag, field))
}

impl NodeArgs {
    /// Merges the file (if any) with the flags; flags win, pod IPs are the union.
    pub fn resolve(&self) -> Result<NodeInput, PlumbError> {
        let f: NodeFile = self
            .file
            .as_deref()
            .map(from_yaml_file)
            .transpose()?
            .unwrap_or_default();
        let mut pod_ips = f.pod_ips;
        pod_ips.extend(
            self.pod_ips
                .iter()
                .filter(|p| !pod_ips.contains(p))
                .collect::<Vec<_>>(),
        );
        Ok(NodeInput {
            gateway_ip: need(self.gateway_ip.or(f.gateway_ip), "gateway-ip", "gateway_ip")?,
            ztunnel_ip: need(self.ztunnel_ip.or(f.ztunnel_ip), "ztunnel-ip", "ztunnel_ip")?,
            ztunnel_veth: need(
                self.ztunnel_veth.clone().or(f.ztunnel_veth),
                "ztunnel-veth",
                "ztunnel_veth",
            )?,
            pod_ips,
            tunnel: self.tunnel.or(f.tunnel).unwrap_or_default(),
        })
    }
}

impl ZtunnelArgs {
    /// Merges the file (if any) with the flags; flags win.
    pub fn resolve(&self) -> Result<ZtunnelInput, PlumbError> {
        let f: ZtunnelFile = self
            .file
            .as_deref()
            .map(from_yaml_file)
            .transpose()?
            .unwrap_or_default();
        Ok(ZtunnelInput {
            ztunnel_ip: need(self.ztunnel_ip.or(f.ztunnel_ip), "ztunnel-ip", "ztunnel_ip")?,
            gateway_ip: need(self.gateway_ip.or(f.gateway_ip), "gateway-ip", "gateway_ip")?,
            eth0: self
                .eth0
                .clone()
                .or(f.eth0)
                .unwrap_or_else(|| "eth0".into()),
            tunnel: self.tunnel.or(f.tunnel).unwrap_or_default(),
        })
    }
}

/// Runs one `zring plumb` command, printing its outcome; exit 1 when `check` finds drift.
pub fn run(cmd: PlumbCommand) -> Result<ExitCode, PlumbError> {
    match cmd {
        PlumbCommand::Node(c) => run_node(c),
        PlumbCommand::Pod(PodCmd::Add { ip, args }) => {
            ops::pod_add(args.netns.as_deref(), &args.resolve()?, ip)?;
            println!("enrolled {ip}: ipset member + table 100 route");
            Ok(ExitCode::SUCCESS)
        }
        PlumbCommand::Pod(PodCmd::Del { ip, args }) => {
            ops::pod_del(args.netns.as_deref(), &args.resolve()?, ip)?;
            println!("withdrew {ip}");
            Ok(ExitCode::SUCCESS)
        }
        PlumbCommand::Ztunnel(c) => run_ztunnel(c),
        PlumbCommand::Trace(a) => trace::run(*a),
    }
}

fn run_node(c: SideCmd<NodeArgs>) -> Result<ExitCode, PlumbError> {
    let (SideCmd::Up(a) | SideCmd::Down(a) | SideCmd::Check(a) | SideCmd::Show(a)) = &c;
    let (ns, input) = (a.netns.as_deref(), a.resolve()?);
    match c {
        SideCmd::Up(_) => Ok(print_up(&ops::node_up(ns, &input)?)),
        SideCmd::Down(_) => Ok(print_down(&ops::node_down(ns, &input)?)),
        SideCmd::Check(_) => Ok(print_check(&ops::node_check(ns, &input)?)),
        SideCmd::Show(_) => {
            print!("{}", ops::node_show(&input));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_ztunnel(c: SideCmd<ZtunnelArgs>) -> Result<ExitCode, PlumbError> {
    let (SideCmd::Up(a) | SideCmd::Down(a) | SideCmd::Check(a) | SideCmd::Show(a)) = &c;
    let (ns, input) = (a.netns.as_deref(), a.resolve()?);
    match c {
        SideCmd::Up(_) => Ok(print_up(&ops::ztunnel_up(ns, &input)?)),
        SideCmd::Down(_) => Ok(print_down(&ops::ztunnel_down(ns, &input)?)),
        SideCmd::Check(_) => Ok(print_check(&ops::ztunnel_check(ns, &input)?)),
        SideCmd::Show(_) => {
            print!("{}", ops::ztunnel_show(&input));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_up(r: &UpReport) -> ExitCode {
    println!("tunnel: {} (UDP {})", r.kind.name(), r.kind.udp_port());
    if r.created.is_empty() {
        println!("already up: nothing changed");
    }
    r.created.iter().for_each(|c| println!("created {c}"));
    ExitCode::SUCCESS
}

fn print_down(r: &DownReport) -> ExitCode {
    if r.removed.is_empty() {
        println!("nothing to remove");
    }
    r.removed.iter().for_each(|c| println!("removed {c}"));
    ExitCode::SUCCESS
}

fn print_check(r: &ops::CheckReport) -> ExitCode {
    if r.is_clean() {
        println!("clean ({} tunnels)", r.kind.name());
        return ExitCode::SUCCESS;
    }
    r.drift.iter().for_each(|d| println!("{d}"));
    println!("{} objects drifted", r.drift.len());
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests;
