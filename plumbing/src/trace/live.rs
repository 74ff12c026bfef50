//! Reading a [`Host`] from a live namespace, through the readers `plumb check` uses:
//! netlink dumps of rules, routes (every table) and tunnel links, `iptables-save` of
//! mangle and nat, and ipset over netlink.

use rtnetlink::Handle;

use super::{Host, HostTunnel, World};
use crate::model::{IptRule, Table, TunnelSpec};
use crate::render::{Side, IPSET_NAME};
use crate::{ipset, ipt, msg, nl, tunnel, PlumbError};

/// One namespace to read: its label (`node A`), netns (None = the caller's) and side.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// `node A`, `ztunnel A`, `node B`, `ztunnel B`.
    pub label: String,
    /// Named netns under /run/netns, None = the caller's.
    pub netns: Option<String>,
    /// Node or ztunnel pod.
    pub side: Side,
}

const TUNNELS: [&str; 4] = ["istioin", "istioout", "pistioin", "pistioout"];

/// Reads every namespace of `specs` (the first is the source's node).
pub fn read_world(specs: &[HostSpec]) -> Result<World, PlumbError> {
    let hosts = specs.iter().map(read_host).collect::<Result<_, _>>()?;
    Ok(World { hosts })
}

/// Reads one namespace.
pub fn read_host(spec: &HostSpec) -> Result<Host, PlumbError> {
    ipt::require_tools()?;
    nl::with_handle(spec.netns.as_deref(), |h| async move {
        let (rules, foreign_rules) = rules(&h).await?;
        Ok(Host {
            label: spec.label.clone(),
            netns: spec.netns.clone(),
            side: spec.side,
            rules,
            foreign_rules,
            routes: routes(&h).await?,
            iptables: iptables()?,
            ipsets: ipset::list(IPSET_NAME)?
                .map(|(_, m)| vec![(IPSET_NAME.to_string(), m)])
                .unwrap_or_default(),
            tunnels: tunnels(&h).await?,
        })
    })
}

async fn rules(h: &Handle) -> Result<(Vec<crate::model::PolicyRule>, Vec<String>), PlumbError> {
    let (mut ok, mut foreign) = (Vec::new(), Vec::new());
    for m in nl::rules(h).await? {
        match msg::parse_rule(&m) {
            Some(r) => ok.push(r),
            None => foreign.push(msg::describe_rule(&m)),
        }
    }
    ok.sort();
    Ok((ok, foreign))
}

async fn routes(h: &Handle) -> Result<Vec<crate::model::RouteSpec>, PlumbError> {
    let names = nl::link_names(h).await?;
    Ok(nl::routes(h)
        .await?
        .iter()
        .filter_map(|m| msg::parse_route(m, &names))
        .collect())
}

fn iptables() -> Result<Vec<IptRule>, PlumbError> {
    let mut out = Vec::new();
    for table in [Table::Mangle, Table::Nat] {
        let saved = ipt::save(table)?;
        out.extend(
            saved
                .rules
                .into_iter()
                .map(|(chain, spec)| IptRule { table, chain, spec }),
        );
    }
    Ok(out)
}

async fn tunnels(h: &Handle) -> Result<Vec<HostTunnel>, PlumbError> {
    let mut out = Vec::new();
    for name in TUNNELS {
        let Some(t) = tunnel::live(h, name).await? else {
            continue;
        };
        let (Some(kind), Some(vni), Some(remote)) = (t.kind, t.vni, t.remote) else {
            continue;
        };
        let (addr, prefix) = nl::addrs(h, t.index)
            .await?
            .first()
            .copied()
            .unwrap_or((std::net::Ipv4Addr::UNSPECIFIED, 0));
        let spec = TunnelSpec {
            name: name.to_string(),
            vni,
            remote,
            addr,
            prefix,
        };
        out.push(HostTunnel { spec, kind });
    }
    Ok(out)
}
