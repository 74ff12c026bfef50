//! Applying and removing a [`Desired`]: preflight, conflict detection, idempotent creation
//! with an undo log (a failed `up` rolls back what it created), and exact removal.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use rtnetlink::Handle;

use crate::model::{IptRule, PolicyRule, RouteSpec, Table, TunnelKind};
use crate::render::{Desired, POD_IN_ADDR, TABLE_INBOUND};
use crate::state::{self, Live};
use crate::{ipset, ipt, msg, nl, sys, tunnel, PlumbError};

/// What an `up` changed (empty `created` = it was already in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpReport {
    /// The tunnel encapsulation in use (VXLAN after a GENEVE fallback).
    pub kind: TunnelKind,
    /// Objects created or rewritten, in `ip`/`iptables`/`ipset` notation.
    pub created: Vec<String>,
}

/// What a `down` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// Objects removed, in `ip`/`iptables`/`ipset` notation.
    pub removed: Vec<String>,
}

/// One created object, undone in reverse order on failure.
#[derive(Debug, Clone)]
enum Undo {
    Ipset(String),
    Member(String, Ipv4Addr),
    Link(String),
    Route(RouteSpec),
    Rule(PolicyRule),
    Iptables(Table, Vec<String>, Vec<IptRule>),
}

impl Undo {
    fn describe(&self) -> String {
        match self {
            Undo::Ipset(s) => format!("ipset {s}"),
            Undo::Member(s, ip) => format!("ipset {s} member {ip}"),
            Undo::Link(l) => format!("link {l}"),
            Undo::Route(r) => format!("route table {} {r}", r.table),
            Undo::Rule(r) => format!("rule {r}"),
            Undo::Iptables(t, c, r) => {
                format!("{} chains {:?} and {} builtin rules", t.name(), c, r.len())
            }
        }
    }
}

/// Routes of ours that are not in every desired state: per-pod routes added by `pod add`.
pub(crate) fn is_pod_route(r: &RouteSpec) -> bool {
    r.table == TABLE_INBOUND
        && r.gateway == Some(POD_IN_ADDR)
        && r.dev.as_deref() == Some("istioin")
        && r.prefix == 32
}

/// Root/CAP_NET_ADMIN, iptables binaries, and the interfaces the side depends on.
pub(crate) async fn preflight(
    h: &Handle,
    needed: &[(&str, &'static str)],
) -> Result<(), PlumbError> {
    if !sys::has_net_admin() {
        return Err(PlumbError::NotPermitted);
    }
    ipt::require_tools()?;
    for (dev, hint) in needed {
        nl::require_index(h, dev, hint).await?;
    }
    Ok(())
}

/// The tunnel kind already in place (first tunnel link), else `requested`.
pub(crate) async fn current_kind(
    h: &Handle,
    d: &Desired,
    requested: TunnelKind,
) -> Result<TunnelKind, PlumbError> {
    let first = d
        .tunnels
        .first()
        .map(|t| t.name.as_str())
        .unwrap_or_default();
    Ok(tunnel::live(h, first)
        .await?
        .and_then(|t| t.kind)
        .unwrap_or(requested))
}

/// Objects in our places that are not ours: refuse to touch them.
fn conflicts(d: &Desired, live: &Live) -> Result<(), PlumbError> {
    if let Some((p, _, found)) = live
        .rules
        .iter()
        .find(|(_, r, _)| !r.is_some_and(|r| d.rules.contains(&r)))
    {
        return Err(PlumbError::Conflict {
            object: format!("rule at priority {p}"),
            found: found.clone(),
        });
    }
    if let Some(r) = live
        .routes
        .iter()
        .find(|r| !d.routes.contains(r) && !is_pod_route(r))
    {
        return Err(PlumbError::Conflict {
            object: format!("route in table {}", r.table),
            found: r.to_string(),
        });
    }
    for t in &d.tunnels {
        if let Some(Some(l)) = live.links.get(&t.name) {
            if !l.tunnel.matches(t) {
                return Err(PlumbError::Conflict {
                    object: format!("link {}", t.name),
                    found: l.tunnel.describe(),
                });
            }
        }
    }
    match &live.ipset {
        Some((typ, _)) if typ != "hash:ip" => Err(PlumbError::Conflict {
            object: "ipset ztunnel-pods-ips".into(),
            found: format!("type {typ}"),
        }),
        _ => Ok(()),
    }
}

/// Applies `render(kind)` idempotently; on failure undoes what this call created.
pub(crate) async fn up(
    h: &Handle,
    render: &dyn Fn(TunnelKind) -> Desired,
    requested: TunnelKind,
) -> Result<UpReport, PlumbError> {
    let kind = current_kind(h, &render(requested), requested).await?;
    let d = render(kind);
    let live = state::snapshot(h, &d).await?;
    conflicts(&d, &live)?;
    let mut log = Vec::new();
    match apply_all(h, render, kind, &live, &mut log).await {
        Ok(kind) => Ok(UpReport {
            kind,
            created: log.iter().map(Undo::describe).collect(),
        }),
        Err(first) => match rollback(h, &log).await {
            Ok(()) => Err(first),
            Err(rb) => Err(PlumbError::RollbackFailed {
                first: Box::new(first),
                rollback: Box::new(rb),
            }),
        },
    }
}

async fn apply_all(
    h: &Handle,
    render: &dyn Fn(TunnelKind) -> Desired,
    kind: TunnelKind,
    live: &Live,
    log: &mut Vec<Undo>,
) -> Result<TunnelKind, PlumbError> {
    apply_ipset(&render(kind), live, log)?;
    let kind = apply_tunnels(h, &render(kind), kind, live, log).await?;
    let d = render(kind);
    crate::rpfilter::keep_effective(&d)?;
    for s in &d.sysctls {
        crate::netns::write_sysctl_here(&s.key, &s.value)?;
    }
    apply_routes(h, &d, live, log).await?;
    for r in d
        .rules
        .iter()
        .filter(|r| !live.rules.iter().any(|(_, l, _)| l.as_ref() == Some(*r)))
    {
        nl::add_rule(h, msg::rule_message(r), &r.to_string()).await?;
        log.push(Undo::Rule(*r));
    }
    apply_iptables(&d, live, log)?;
    Ok(kind)
}

fn apply_ipset(d: &Desired, live: &Live, log: &mut Vec<Undo>) -> Result<(), PlumbError> {
    let Some((name, members)) = &d.ipset else {
        return Ok(());
    };
    let existing = match &live.ipset {
        Some((_, m)) => m.clone(),
        None => {
            ipset::create(name)?;
            log.push(Undo::Ipset(name.clone()));
            Vec::new()
        }
    };
    for m in members.iter().filter(|m| !existing.contains(m)) {
        ipset::add(name, *m)?;
        log.push(Undo::Member(name.clone(), *m));
    }
    Ok(())
}

async fn apply_tunnels(
    h: &Handle,
    d: &Desired,
    mut kind: TunnelKind,
    live: &Live,
    log: &mut Vec<Undo>,
) -> Result<TunnelKind, PlumbError> {
    for t in &d.tunnels {
        if !matches!(live.links.get(&t.name), Some(Some(_))) {
            kind = tunnel::create(h, t, kind).await?;
            log.push(Undo::Link(t.name.clone()));
        }
        let idx = nl::require_index(h, &t.name, "it was just created").await?;
        nl::add_addr(h, idx, &t.name, t.addr, t.prefix).await?;
        nl::set_up(h, idx, &t.name).await?;
    }
    Ok(kind)
}

async fn apply_routes(
    h: &Handle,
    d: &Desired,
    live: &Live,
    log: &mut Vec<Undo>,
) -> Result<(), PlumbError> {
    let index: HashMap<String, u32> = nl::link_names(h)
        .await?
        .into_iter()
        .map(|(i, n)| (n, i))
        .collect();
    for r in d.routes.iter().filter(|r| !live.routes.contains(r)) {
        let oif = r.dev.as_ref().and_then(|n| index.get(n).copied());
        nl::add_route(h, msg::route_message(r, oif), &r.to_string()).await?;
        log.push(Undo::Route(r.clone()));
    }
    Ok(())
}

fn apply_iptables(d: &Desired, live: &Live, log: &mut Vec<Undo>) -> Result<(), PlumbError> {
    let builtin: Vec<(&IptRule, bool)> = d
        .iptables
        .iter()
        .filter(|r| r.in_builtin())
        .zip(live.builtin_present.iter().copied())
        .collect();
    for (table, saved) in &live.saved {
        let chains = d.chains_of(*table);
        let rules: Vec<&IptRule> = d.iptables.iter().filter(|r| r.table == *table).collect();
        let mine: Vec<(&IptRule, bool)> = builtin
            .iter()
            .filter(|(r, _)| r.table == *table)
            .copied()
            .collect();
        let present: Vec<bool> = mine.iter().map(|(_, p)| *p).collect();
        let specs = |c: &String| {
            rules
                .iter()
                .filter(|r| &r.chain == c)
                .map(|r| r.spec.as_str())
                .collect::<Vec<_>>()
        };
        let chains_ok = chains.iter().all(|c| saved.chain(c) == specs(c));
        let existed = chains.iter().all(|c| saved.chains.contains(c));
        if chains_ok && existed && present.iter().all(|p| *p) {
            continue;
        }
        ipt::restore(
            *table,
            &ipt::apply_payload(*table, &chains, &rules, &present),
        )?;
        let added: Vec<IptRule> = mine
            .iter()
            .filter(|(_, p)| !p)
            .map(|(r, _)| (*r).clone())
            .collect();
        log.push(Undo::Iptables(
            *table,
            if existed { Vec::new() } else { chains },
            added,
        ));
    }
    Ok(())
}

async fn rollback(h: &Handle, log: &[Undo]) -> Result<(), PlumbError> {
    for u in log.iter().rev() {
        tracing::warn!(object = %u.describe(), "rolling back");
        undo(h, u).await?;
    }
    Ok(())
}

async fn undo(h: &Handle, u: &Undo) -> Result<(), PlumbError> {
    match u {
        Undo::Ipset(s) => ipset::destroy(s),
        Undo::Member(s, ip) => ipset::del(s, *ip),
        Undo::Link(l) => match nl::link_by_name(h, l).await? {
            Some(m) => nl::del_link(h, m.header.index, l).await,
            None => Ok(()),
        },
        Undo::Route(r) => del_route(h, r).await,
        Undo::Rule(r) => nl::del_rule(h, msg::rule_message(r), &r.to_string()).await,
        Undo::Iptables(t, chains, rules) => {
            let present: Vec<&IptRule> = rules.iter().collect();
            ipt::restore(*t, &ipt::remove_payload(*t, chains, &present))
        }
    }
}

pub(crate) async fn del_route(h: &Handle, r: &RouteSpec) -> Result<(), PlumbError> {
    let oif = match &r.dev {
        Some(d) => nl::link_by_name(h, d).await?.map(|m| m.header.index),
        None => None,
    };
    nl::del_route(h, msg::route_message(r, oif), &r.to_string()).await
}
