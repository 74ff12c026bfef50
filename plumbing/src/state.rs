//! Reading the live state of everything a [`Desired`] names, through the same interfaces
//! that apply it: netlink dumps, `iptables-save` / `iptables -C`, ipset over netlink, /proc/sys.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use rtnetlink::packet_route::rule::RuleMessage;
use rtnetlink::Handle;

use crate::ipt::{self, Saved};
use crate::model::{PolicyRule, RouteSpec, Table};
use crate::render::Desired;
use crate::tunnel::{self, LiveTunnel};
use crate::{ipset, msg, nl, PlumbError};

/// A tunnel link and its IPv4 addresses.
#[derive(Debug, Clone)]
pub(crate) struct LiveLink {
    /// Kind, VNI, remote, port, up.
    pub tunnel: LiveTunnel,
    /// Addresses with prefix.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// The live counterpart of a [`Desired`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Live {
    /// Our tunnel names → link (None when absent).
    pub links: HashMap<String, Option<LiveLink>>,
    /// Every IPv4 rule at one of our priorities: (priority, parsed or None, description).
    pub rules: Vec<(u32, Option<PolicyRule>, String)>,
    /// Every route in one of our tables.
    pub routes: Vec<RouteSpec>,
    /// The ipset's type and members, when the desired state has one and it exists.
    pub ipset: Option<(String, Vec<Ipv4Addr>)>,
    /// `iptables-save` per table we write to.
    pub saved: HashMap<Table, Saved>,
    /// For each builtin-chain rule of the desired state (in order): `iptables -C` result.
    pub builtin_present: Vec<bool>,
    /// Sysctl key → current value (None when unreadable, e.g. device missing).
    pub sysctls: HashMap<String, Option<String>>,
}

fn rule_entry(m: &RuleMessage) -> (u32, Option<PolicyRule>, String) {
    (
        msg::rule_priority(m),
        msg::parse_rule(m),
        msg::describe_rule(m),
    )
}

async fn links(h: &Handle, d: &Desired) -> Result<HashMap<String, Option<LiveLink>>, PlumbError> {
    let mut out = HashMap::new();
    for t in &d.tunnels {
        let live = match tunnel::live(h, &t.name).await? {
            Some(tunnel) => Some(LiveLink {
                addrs: nl::addrs(h, tunnel.index).await?,
                tunnel,
            }),
            None => None,
        };
        out.insert(t.name.clone(), live);
    }
    Ok(out)
}

/// The live routes of `tables`.
pub(crate) async fn routes_in(h: &Handle, tables: &[u32]) -> Result<Vec<RouteSpec>, PlumbError> {
    let names = nl::link_names(h).await?;
    let all = nl::routes(h).await?;
    Ok(all
        .iter()
        .filter_map(|m| msg::parse_route(m, &names))
        .filter(|r| tables.contains(&r.table))
        .collect())
}

/// The live rules at the priorities of `d`.
pub(crate) async fn rules_at(
    h: &Handle,
    d: &Desired,
) -> Result<Vec<(u32, Option<PolicyRule>, String)>, PlumbError> {
    let prios: Vec<u32> = d.rules.iter().map(|r| r.priority).collect();
    let all = nl::rules(h).await?;
    Ok(all
        .iter()
        .map(rule_entry)
        .filter(|(p, _, _)| prios.contains(p))
        .collect())
}

/// Reads the iptables side: `iptables-save` per table and `-C` per builtin rule.
pub(crate) fn iptables(d: &Desired) -> Result<(HashMap<Table, Saved>, Vec<bool>), PlumbError> {
    let mut saved = HashMap::new();
    for t in [Table::Mangle, Table::Nat] {
        if d.iptables.iter().any(|r| r.table == t) {
            saved.insert(t, ipt::save(t)?);
        }
    }
    let present = d
        .iptables
        .iter()
        .filter(|r| r.in_builtin())
        .map(ipt::exists)
        .collect::<Result<_, _>>()?;
    Ok((saved, present))
}

fn sysctls(d: &Desired) -> HashMap<String, Option<String>> {
    let read = |k: &str| std::fs::read_to_string(format!("/proc/sys/{}", k.replace('.', "/"))).ok();
    d.sysctls
        .iter()
        .map(|s| (s.key.clone(), read(&s.key).map(|v| v.trim().to_string())))
        .collect()
}

/// Snapshots everything `d` names (call on the namespace's worker thread).
pub(crate) async fn snapshot(h: &Handle, d: &Desired) -> Result<Live, PlumbError> {
    let ipset = match &d.ipset {
        Some((name, _)) => ipset::list(name)?,
        None => None,
    };
    let (saved, builtin_present) = iptables(d)?;
    Ok(Live {
        links: links(h, d).await?,
        rules: rules_at(h, d).await?,
        routes: routes_in(h, &d.tables).await?,
        ipset,
        saved,
        builtin_present,
        sysctls: sysctls(d),
    })
}
