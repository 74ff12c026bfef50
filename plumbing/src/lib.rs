//! zring-plumbing: the kernel objects of ambient capture, exactly as Istio's CNI (node) and
//! ztunnel's init container (ztunnel pod) created them in the articles (see
//! ARCHITECTURE.md, section "Plumbing" and shared/design/TRAFFIC-PATH.md).
//!
//! # Public API
//! Inputs (pub fields, YAML-deserializable): [`NodeInput`] `{ gateway_ip, ztunnel_ip,
//! ztunnel_veth, pod_ips, tunnel }`, [`ZtunnelInput`] `{ ztunnel_ip, gateway_ip, eth0, tunnel }`,
//! [`TunnelKind`] `Geneve` (default; falls back to VXLAN on EOPNOTSUPP) | `Vxlan`.
//!
//! Operations (`netns: Option<&str>` = a name under /run/netns, None = the caller's netns):
//! - `node_up(netns, &NodeInput) -> Result<UpReport, PlumbError>`: idempotent; rolls back on failure.
//! - `node_down(netns, &NodeInput) -> Result<DownReport, PlumbError>`: removes exactly what up creates.
//! - `node_check(netns, &NodeInput) -> Result<CheckReport, PlumbError>`: drift per object.
//! - `node_handover(netns, &NodeInput) -> Result<Option<Previous>, PlumbError>`: a node side
//!   built for another ztunnel pod moved over in place, never leaving pods uncaptured.
//! - `pod_add(netns, &NodeInput, Ipv4Addr)` / `pod_del(...) -> Result<(), PlumbError>`:
//!   one ipset entry + one table-100 route.
//! - `ztunnel_up` / `ztunnel_down` / `ztunnel_check(netns, &ZtunnelInput)`: the pod side
//!   (what `zring run --plumb` calls at start and shutdown).
//! - `node_show(&NodeInput)` / `ztunnel_show(&ZtunnelInput) -> String`: the desired state in
//!   the articles' notation (iptables-save, `ip rule`, `ip route show table N`).
//! - [`render::node`] / [`render::ztunnel`]: the pure desired state ([`render::Desired`]);
//!   the marks, tables and priorities are named constants in [`render`].
//! - [`cli::PlumbCommand`] (clap subcommand tree `node|pod|ztunnel|trace`) and
//!   `cli::run(PlumbCommand) -> Result<ExitCode, PlumbError>` (exit 1 on drift).
//! - [`netns`]: named network namespaces (`ip netns` compatible) and topology helpers:
//!   `create`, `delete`, `exists`, `list(prefix)`, [`netns::NetnsGuard`] (deletes on drop),
//!   `run_in(netns, closure)` (on a setns'd thread), `veth_pair(netns, name, peer, peer_netns)`,
//!   `add_address(netns, dev, ip, prefix)`, `set_link_up(netns, dev)`,
//!   `rename_link(netns, from, to)`, `delete_link(netns, dev)`,
//!   `add_route(netns, &RouteSpec)`, `set_sysctl(netns, key, value)`, `read_sysctl(netns, key)`.
//! - [`trace`]: `zring plumb trace` — [`trace::read_world`] (live [`trace::Host`]s),
//!   [`trace::trace`] (pure evaluator: legs, packets, hops), [`trace::diverge`] (drift that
//!   changes the path), [`trace::render_text`].
//! - [`agent`]: for a proxy that plumbs its own node: `detect(host_netns, eth0)` (its
//!   host-side veth, gateway and IP), `pod_on_node(netns, ip)` (why an IP is not a pod of
//!   this node), `enrolled(netns)` (the set's members now).
//! - [`PlumbError`]: the one error type, each variant naming the object and the fix.
//!
//! # Modules (private)
//! - `sys`: setns/unshare/mount and the CAP_NET_ADMIN probe (nix's safe wrappers).
//! - `msg`: pure netlink message building/parsing (rule action, fwmark mask, goto traps).
//! - `nl`: rtnetlink on a current-thread tokio runtime per namespace worker thread.
//! - `tunnel`: GENEVE/VXLAN links; `ipset`: ipset's netlink protocol (`ipset::wire` pure); `ipt`: iptables-restore payloads.
//! - `state`: live snapshot; `check`: drift (pure); `apply`: up/down with undo log;
//!   `remove`: exact `down`; `ops`: the public operations; `input`: inputs and YAML.
#![forbid(unsafe_code)]

/// Unit tests free only what they allocated (issue 24): see `testsupport::Checked`.
#[cfg(test)]
#[global_allocator]
static CHECKED: testsupport::Checked = testsupport::Checked;

pub mod agent;
mod apply;
mod check;
pub mod cli;
mod error;
mod handover;
mod input;
mod ipset;
mod ipt;
pub mod model;
mod msg;
pub mod netns;
mod nl;
mod ops;
mod remove;
pub mod render;
mod rpfilter;
mod state;
mod sys;
pub mod trace;
mod tunnel;

pub use apply::{DownReport, UpReport};
pub use check::{Drift, DriftKind};
pub use error::PlumbError;
pub use handover::{node_handover, Previous};
pub use input::{from_yaml_file, NodeInput, ZtunnelInput};
pub use model::{PolicyRule, RouteSpec, RuleTarget, Scope, TunnelKind};
pub use ops::{
    node_check, node_down, node_show, node_up, pod_add, pod_del, ztunnel_check, ztunnel_down,
    ztunnel_show, ztunnel_up, CheckReport,
};
