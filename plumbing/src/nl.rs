//! rtnetlink plumbing: a current-thread tokio runtime on a (setns'd) worker thread, and the
//! async link/address/route/rule operations the rest of the crate composes.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::rule::RuleMessage;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion, LinkUnspec, RouteMessageBuilder};

use crate::{netns, PlumbError};

/// Runs `f` with an rtnetlink handle bound to `netns` (None = the caller's namespace).
pub(crate) fn with_handle<F, Fut, T>(netns: Option<&str>, f: F) -> Result<T, PlumbError>
where
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, PlumbError>>,
    T: Send,
{
    netns::run_in(netns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| PlumbError::Thread(format!("tokio runtime: {e}")))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()
                .map_err(|e| PlumbError::sys("netlink socket", "NETLINK_ROUTE", e))?;
            tokio::spawn(conn);
            f(handle).await
        })
    })?
}

/// The errno of a netlink NACK, if that is what `e` is.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get().abs()),
        _ => None,
    }
}

/// All links, by index.
pub(crate) async fn links(h: &Handle) -> Result<Vec<LinkMessage>, PlumbError> {
    h.link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| PlumbError::netlink("dump", "links", e))
}

/// The name of a dumped link.
pub(crate) fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| {
        if let LinkAttribute::IfName(n) = a {
            Some(n.as_str())
        } else {
            None
        }
    })
}

/// Index → name map of all links.
pub(crate) async fn link_names(h: &Handle) -> Result<HashMap<u32, String>, PlumbError> {
    let all = links(h).await?;
    Ok(all
        .iter()
        .filter_map(|m| Some((m.header.index, link_name(m)?.to_string())))
        .collect())
}

/// The link called `name`, if any.
pub(crate) async fn link_by_name(
    h: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, PlumbError> {
    Ok(links(h)
        .await?
        .into_iter()
        .find(|m| link_name(m) == Some(name)))
}

/// The index of `name`, or an error naming it.
pub(crate) async fn require_index(
    h: &Handle,
    name: &str,
    hint: &'static str,
) -> Result<u32, PlumbError> {
    match link_by_name(h, name).await? {
        Some(m) => Ok(m.header.index),
        None => Err(PlumbError::LinkMissing {
            dev: name.to_string(),
            netns: netns::current_label(),
            hint,
        }),
    }
}

/// Whether a dumped link is administratively up.
pub(crate) fn is_up(m: &LinkMessage) -> bool {
    m.header.flags.contains(LinkFlags::Up)
}

/// `ip link set INDEX up`.
pub(crate) async fn set_up(h: &Handle, index: u32, name: &str) -> Result<(), PlumbError> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| PlumbError::netlink("set link up", name, e))
}

/// `ip link del NAME`.
pub(crate) async fn del_link(h: &Handle, index: u32, name: &str) -> Result<(), PlumbError> {
    h.link()
        .del(index)
        .execute()
        .await
        .map_err(|e| PlumbError::netlink("delete link", name, e))
}

/// `ip addr add ADDR/PREFIX dev INDEX` (an existing identical address is fine).
pub(crate) async fn add_addr(
    h: &Handle,
    index: u32,
    name: &str,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), PlumbError> {
    match h
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(PlumbError::netlink(
            "add address",
            format!("{ip}/{prefix} dev {name}"),
            e,
        )),
    }
}

/// The IPv4 addresses (with prefix) on link `index`.
pub(crate) async fn addrs(h: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, PlumbError> {
    use rtnetlink::packet_route::address::AddressAttribute;
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| PlumbError::netlink("dump", "addresses", e))?;
    let mut out = Vec::new();
    for m in msgs {
        for a in &m.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = a {
                out.push((*ip, m.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// All IPv4 routes of all tables.
pub(crate) async fn routes(h: &Handle) -> Result<Vec<RouteMessage>, PlumbError> {
    let filter = RouteMessageBuilder::<Ipv4Addr>::new().table_id(0).build();
    h.route()
        .get(filter)
        .execute()
        .try_collect()
        .await
        .map_err(|e| PlumbError::netlink("dump", "routes", e))
}

/// All IPv4 policy rules.
pub(crate) async fn rules(h: &Handle) -> Result<Vec<RuleMessage>, PlumbError> {
    h.rule()
        .get(IpVersion::V4)
        .execute()
        .try_collect()
        .await
        .map_err(|e| PlumbError::netlink("dump", "rules", e))
}

/// Adds a route message; `what` names it in `ip route` notation for errors.
pub(crate) async fn add_route(h: &Handle, msg: RouteMessage, what: &str) -> Result<(), PlumbError> {
    h.route()
        .add(msg)
        .execute()
        .await
        .map_err(|e| PlumbError::netlink("add route", what, e))
}

/// Deletes every neighbour entry of link `index` (ARP learns them again).
pub(crate) async fn flush_neighbours(h: &Handle, index: u32, what: &str) -> Result<(), PlumbError> {
    let all: Vec<_> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute()
        .try_collect()
        .await
        .map_err(|e| PlumbError::netlink("dump neighbours", what, e))?;
    for n in all.into_iter().filter(|n| n.header.ifindex == index) {
        match h.neighbours().del(n).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(PlumbError::netlink("delete neighbour", what, e)),
        }
    }
    Ok(())
}

/// Adds a route message, replacing the route with the same key (one atomic change).
pub(crate) async fn replace_route(
    h: &Handle,
    msg: RouteMessage,
    what: &str,
) -> Result<(), PlumbError> {
    h.route()
        .add(msg)
        .replace()
        .execute()
        .await
        .map_err(|e| PlumbError::netlink("replace route", what, e))
}

/// Deletes a route message (already gone is fine).
pub(crate) async fn del_route(h: &Handle, msg: RouteMessage, what: &str) -> Result<(), PlumbError> {
    match h.route().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(()),
        Err(e) => Err(PlumbError::netlink("delete route", what, e)),
    }
}

/// Adds a rule message.
pub(crate) async fn add_rule(h: &Handle, msg: RuleMessage, what: &str) -> Result<(), PlumbError> {
    let mut req = h.rule().add();
    *req.message_mut() = msg;
    req.execute()
        .await
        .map_err(|e| PlumbError::netlink("add rule", what, e))
}

/// Deletes a rule message (already gone is fine).
pub(crate) async fn del_rule(h: &Handle, msg: RuleMessage, what: &str) -> Result<(), PlumbError> {
    match h.rule().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(PlumbError::netlink("delete rule", what, e)),
    }
}
