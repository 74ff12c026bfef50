//! The public operations: `up`, `down`, `check`, `show` for the node and the ztunnel pod,
//! and the incremental `pod add` / `pod del`. Each runs on a worker thread inside the
//! given network namespace (None = the caller's).

use std::net::Ipv4Addr;

use crate::apply::{self, DownReport, UpReport};
use crate::check::{self, Drift};
use crate::input::{NodeInput, ZtunnelInput};
use crate::model::TunnelKind;
use crate::render::{self, Desired, IPSET_NAME};
use crate::{ipset, msg, nl, remove, state, PlumbError};

/// The result of a `check`: clean when `drift` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The tunnel encapsulation found (or requested, when no tunnel exists).
    pub kind: TunnelKind,
    /// Every drifted object.
    pub drift: Vec<Drift>,
}

impl CheckReport {
    /// No drift.
    pub fn is_clean(&self) -> bool {
        self.drift.is_empty()
    }
}

const ZT_VETH_HINT: &str = "pass the host-side veth of the ztunnel pod (--ztunnel-veth)";
const ETH0_HINT: &str =
    "pass the ztunnel pod's primary interface (--eth0) and run inside its netns (--netns)";

/// Creates the node objects (idempotent; a failed `up` rolls back what it created).
pub fn node_up(netns: Option<&str>, input: &NodeInput) -> Result<UpReport, PlumbError> {
    let render = |k| render::node(input, k);
    nl::with_handle(netns, |h| async move {
        apply::preflight(&h, &[(&input.ztunnel_veth, ZT_VETH_HINT)]).await?;
        apply::up(&h, &render, input.tunnel).await
    })
}

/// Removes exactly the node objects `node_up` creates (and per-pod routes).
pub fn node_down(netns: Option<&str>, input: &NodeInput) -> Result<DownReport, PlumbError> {
    let render = |k| render::node(input, k);
    nl::with_handle(netns, |h| async move {
        apply::preflight(&h, &[]).await?;
        remove::down(&h, &render, input.tunnel).await
    })
}

/// Reports drift of the node objects against `input`.
pub fn node_check(netns: Option<&str>, input: &NodeInput) -> Result<CheckReport, PlumbError> {
    let render = |k| render::node(input, k);
    nl::with_handle(netns, |h| async move {
        check_with(&h, &render, input.tunnel).await
    })
}

/// The node's desired state in the articles' notation.
pub fn node_show(input: &NodeInput) -> String {
    render::node(input, input.tunnel).show()
}

/// Creates the ztunnel pod objects (idempotent; a failed `up` rolls back what it created).
pub fn ztunnel_up(netns: Option<&str>, input: &ZtunnelInput) -> Result<UpReport, PlumbError> {
    let render = |k| render::ztunnel(input, k);
    nl::with_handle(netns, |h| async move {
        apply::preflight(
            &h,
            &[(&input.eth0, ETH0_HINT), ("lo", "the loopback must exist")],
        )
        .await?;
        apply::up(&h, &render, input.tunnel).await
    })
}

/// Removes exactly the ztunnel pod objects `ztunnel_up` creates.
pub fn ztunnel_down(netns: Option<&str>, input: &ZtunnelInput) -> Result<DownReport, PlumbError> {
    let render = |k| render::ztunnel(input, k);
    nl::with_handle(netns, |h| async move {
        apply::preflight(&h, &[]).await?;
        remove::down(&h, &render, input.tunnel).await
    })
}

/// Reports drift of the ztunnel pod objects against `input`.
pub fn ztunnel_check(netns: Option<&str>, input: &ZtunnelInput) -> Result<CheckReport, PlumbError> {
    let render = |k| render::ztunnel(input, k);
    nl::with_handle(netns, |h| async move {
        check_with(&h, &render, input.tunnel).await
    })
}

/// The ztunnel pod's desired state in the articles' notation.
pub fn ztunnel_show(input: &ZtunnelInput) -> String {
    render::ztunnel(input, input.tunnel).show()
}

async fn check_with(
    h: &rtnetlink::Handle,
    render: &dyn Fn(TunnelKind) -> Desired,
    requested: TunnelKind,
) -> Result<CheckReport, PlumbError> {
    let kind = apply::current_kind(h, &render(requested), requested).await?;
    let d = render(kind);
    let live = state::snapshot(h, &d).await?;
    Ok(CheckReport {
        kind,
        drift: check::diff(&d, &live),
    })
}

/// Enrols `pod`: one ipset entry and one table-100 route, nothing else.
pub fn pod_add(netns: Option<&str>, input: &NodeInput, pod: Ipv4Addr) -> Result<(), PlumbError> {
    let route = render::pod_route(input.gateway_ip, pod);
    nl::with_handle(netns, |h| async move {
        apply::preflight(&h, &[]).await?;
        if !ipset::exists(IPSET_NAME)? {
            return Err(PlumbError::NotUp {
                object: format!("ipset {IPSET_NAME}"),
                side: "node",
            });
        }
        let oif = match nl::link_by_name(&h, "istioin").await? {
            Some(m) => m.header.index,
            None => {
                return Err(PlumbError::NotUp {
                    object: "link istioin".into(),
                    side: "node",
                })
            }
        };
        if !state::routes_in(&h, &[route.table]).await?.contains(&route) {
            nl::add_route(
                &h,
                msg::route_message(&route, Some(oif)),
                &route.to_string(),
            )
            .await?;
        }
        ipset::add(IPSET_NAME, pod)
    })
}

/// Withdraws `pod`: removes its ipset entry and table-100 route, nothing else.
pub fn pod_del(netns: Option<&str>, input: &NodeInput, pod: Ipv4Addr) -> Result<(), PlumbError> {
    let route = render::pod_route(input.gateway_ip, pod);
    nl::with_handle(netns, |h| async move {
        apply::preflight(&h, &[]).await?;
        if ipset::exists(IPSET_NAME)? {
            ipset::del(IPSET_NAME, pod)?;
        }
        if let Some(m) = nl::link_by_name(&h, "istioin").await? {
            nl::del_route(
                &h,
                msg::route_message(&route, Some(m.header.index)),
                &route.to_string(),
            )
            .await?;
        }
        Ok(())
    })
}
