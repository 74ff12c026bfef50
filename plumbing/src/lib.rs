//! zring-plumbing: the kernel objects of ambient capture, as Istio's CNI and ztunnel's init
//! container created them (see ARCHITECTURE-plumbing.md and TRAFFIC-PATH.md).
//!
//! # Public API
//! - [`netns`]: named network namespaces (`/run/netns/NAME`, `ip netns` compatible) and
//!   topology helpers: [`netns::create`], [`netns::delete`], [`netns::list`],
//!   [`netns::NetnsGuard`] (deletes on drop), [`netns::run_in`] (closure on a setns'd thread),
//!   [`netns::veth_pair`], [`netns::add_address`], [`netns::set_link_up`],
//!   [`netns::add_route`] (takes a [`RouteSpec`]), [`netns::set_sysctl`], [`netns::read_sysctl`].
//! - [`model`]: the vocabulary ([`RouteSpec`], [`PolicyRule`], [`TunnelKind`], ...).
//! - [`PlumbError`]: the one error type.
//!
//! # Modules
//! - `sys`: setns/unshare/mount and the capability probe.
//! - `msg`: pure netlink message building/parsing (rule action, fwmark mask, goto).
//! - `nl`: rtnetlink on a current-thread tokio runtime per namespace worker.
#![forbid(unsafe_code)]

mod apply;
mod check;
pub mod cli;
mod error;
mod input;
mod ipset;
mod ipt;
pub mod model;
mod msg;
pub mod netns;
mod nl;
mod ops;
pub mod render;
mod state;
mod sys;
mod tunnel;

pub use apply::{DownReport, UpReport};
pub use check::{Drift, DriftKind};
pub use error::PlumbError;
pub use input::{from_yaml_file, NodeInput, ZtunnelInput};
pub use model::{PolicyRule, RouteSpec, RuleTarget, Scope, TunnelKind};
pub use ops::{
    node_check, node_down, node_show, node_up, pod_add, pod_del, ztunnel_check, ztunnel_down,
    ztunnel_show, ztunnel_up, CheckReport,
};
