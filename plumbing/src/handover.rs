//! `node_handover`: a node side built for another ztunnel pod (a rolling update gave the
//! proxy a new pod, IP and veth) moved over to this one in place, object by object, so
//! that at every moment an enrolled pod's packets have a route into the capture — the
//! set, the marks and the rules never go away, and tables 100/101 keep their routes:
//!
//! 1. host routes to the new ztunnel IP in tables 100, 101 and 102, beside the old ones;
//! 2. the tunnels' remote changed in place (the links, and the routes through them, stay),
//!    and their neighbour entries flushed (the next hop's MAC is the new pod's);
//! 3. table 102's default route replaced (one `NLM_F_REPLACE`) via the new IP and veth;
//! 4. the old host routes deleted.
//!
//! `node_up` then rewrites what names the veth or the IP (iptables, atomic per table;
//! the veth's rp_filter). Between the two, the old veth's iptables rules match nothing
//! new and the new veth's traffic is not yet told apart: at worst a packet of the new
//! ztunnel pod itself is treated as a pod's (captured), never a pod's as ztunnel's.

use std::net::Ipv4Addr;

use rtnetlink::packet_route::link::{InfoData, InfoGeneve, InfoKind, InfoVxlan, LinkInfo};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::Handle;

use crate::input::NodeInput;
use crate::model::{RouteSpec, Scope, TunnelKind};
use crate::render::{TABLE_INBOUND, TABLE_OUTBOUND, TABLE_ZT_VETH};
use crate::{msg, nl, state, tunnel, PlumbError};

/// The ztunnel pod the node side was built for, when it is not `input`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub ztunnel_ip: Ipv4Addr,
    pub ztunnel_veth: Option<String>,
}

/// Moves the node side in `netns` from the ztunnel pod it names to `input`'s. Returns
/// the previous pod, or None when there was nothing to move (no tunnels, or already
/// `input`'s).
pub fn node_handover(
    netns: Option<&str>,
    input: &NodeInput,
) -> Result<Option<Previous>, PlumbError> {
    nl::with_handle(netns, |h| async move {
        let Some(old_ip) = previous_remote(&h, input.ztunnel_ip).await? else {
            return Ok(None);
        };
        let main_tables = [TABLE_INBOUND, TABLE_OUTBOUND, TABLE_ZT_VETH];
        let live = state::routes_in(&h, &main_tables).await?;
        let old_veth = live
            .iter()
            .find(|r| r.table == TABLE_ZT_VETH && r.prefix == 0)
            .and_then(|r| r.dev.clone());
        let veth = nl::require_index(&h, &input.ztunnel_veth, "the new ztunnel pod's veth").await?;
        for t in main_tables {
            let r = host_route(t, input.ztunnel_ip, &input.ztunnel_veth);
            if !live.contains(&r) {
                nl::add_route(&h, msg::route_message(&r, Some(veth)), &r.to_string()).await?;
            }
        }
        for name in ["istioin", "istioout"] {
            set_remote(&h, name, input.ztunnel_ip).await?;
        }
        let default = RouteSpec::new(TABLE_ZT_VETH, Ipv4Addr::UNSPECIFIED, 0)
            .via(input.ztunnel_ip)
            .dev(&input.ztunnel_veth)
            .onlink();
        nl::replace_route(
            &h,
            msg::route_message(&default, Some(veth)),
            &default.to_string(),
        )
        .await?;
        for r in live
            .iter()
            .filter(|r| r.prefix == 32 && r.dst == old_ip && r.gateway.is_none())
        {
            nl::del_route(&h, msg::route_message(r, None), &r.to_string()).await?;
        }
        Ok(Some(Previous {
            ztunnel_ip: old_ip,
            ztunnel_veth: old_veth,
        }))
    })
}

fn host_route(table: u32, ip: Ipv4Addr, veth: &str) -> RouteSpec {
    RouteSpec::new(table, ip, 32).dev(veth).scope(Scope::Link)
}

/// The remote of istioin when it is a tunnel to another address than `ours`.
async fn previous_remote(h: &Handle, ours: Ipv4Addr) -> Result<Option<Ipv4Addr>, PlumbError> {
    Ok(tunnel::live(h, "istioin")
        .await?
        .filter(|t| t.kind.is_some())
        .and_then(|t| t.remote)
        .filter(|r| *r != ours))
}

/// Changes tunnel `name`'s remote in place (VXLAN and GENEVE take a new remote on an
/// existing link; their VNI and port cannot change and are not sent).
async fn set_remote(h: &Handle, name: &str, remote: Ipv4Addr) -> Result<(), PlumbError> {
    let Some(t) = tunnel::live(h, name).await? else {
        return Ok(());
    };
    let (kind, data) = match t.kind {
        Some(TunnelKind::Vxlan) => (
            InfoKind::Vxlan,
            InfoData::Vxlan(vec![InfoVxlan::Group(remote)]),
        ),
        Some(TunnelKind::Geneve) => (
            InfoKind::Geneve,
            InfoData::Geneve(vec![InfoGeneve::Remote(remote)]),
        ),
        None => return Ok(()),
    };
    let mut m = LinkMessage::default();
    m.header.index = t.index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(kind),
        LinkInfo::Data(data),
    ]));
    h.link()
        .change(m)
        .execute()
        .await
        .map_err(|e| PlumbError::netlink("change link", format!("{name} remote {remote}"), e))?;
    // The next hop behind the tunnel (192.168.126.2 / 192.168.127.2) is the new pod's
    // pistioin/pistioout now: the old pod's MAC must not be kept.
    nl::flush_neighbours(h, t.index, name).await
}
