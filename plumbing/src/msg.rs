//! Netlink message building and parsing for routes and rules (pure, unit-tested).
//!
//! Two rtnetlink traps (STACK.md) are handled here rather than at call sites:
//! a rule without `action = ToTable` shows as `lookup 101 none` and routes nothing, and
//! fwmark masks and `goto` have no builder, so the attributes are pushed by hand
//! (`header.table = 0` for goto).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

use crate::model::{PolicyRule, RouteSpec, RuleTarget, Scope};

/// Builds the RTM_NEWRULE/DELRULE body for `rule`.
pub(crate) fn rule_message(rule: &PolicyRule) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = AddressFamily::Inet;
    m.attributes.push(RuleAttribute::Priority(rule.priority));
    if let Some((mark, mask)) = rule.fwmark {
        m.attributes.push(RuleAttribute::FwMark(mark));
        m.attributes.push(RuleAttribute::FwMask(mask));
    }
    match rule.target {
        RuleTarget::Lookup(table) => {
            m.header.action = RuleAction::ToTable;
            m.header.table = u8::try_from(table).unwrap_or(0);
            m.attributes.push(RuleAttribute::Table(table));
        }
        RuleTarget::Goto(prio) => {
            m.header.action = RuleAction::Goto;
            m.header.table = 0;
            m.attributes.push(RuleAttribute::Goto(prio));
        }
    }
    m
}

/// Reads an IPv4 rule from a dump; `None` for rules we cannot express (other selectors).
pub(crate) fn parse_rule(m: &RuleMessage) -> Option<PolicyRule> {
    if m.header.family != AddressFamily::Inet || m.header.src_len != 0 || m.header.dst_len != 0 {
        return None;
    }
    let (mut prio, mut mark, mut mask, mut table, mut goto) =
        (0, None, None, u32::from(m.header.table), None);
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => prio = *p,
            RuleAttribute::FwMark(v) => mark = Some(*v),
            RuleAttribute::FwMask(v) => mask = Some(*v),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Goto(g) => goto = Some(*g),
            // The kernel reports these unset selectors as all-ones ("none").
            RuleAttribute::SuppressPrefixLen(u32::MAX)
            | RuleAttribute::SuppressIfGroup(u32::MAX) => {}
            RuleAttribute::Protocol(_) => {}
            _ => return None,
        }
    }
    let target = match m.header.action {
        RuleAction::ToTable => RuleTarget::Lookup(table),
        RuleAction::Goto => RuleTarget::Goto(goto?),
        _ => return None,
    };
    let fwmark = mark.map(|v| (v, mask.unwrap_or(u32::MAX)));
    Some(PolicyRule {
        priority: prio,
        fwmark,
        target,
    })
}

/// A one-line description of any dumped rule (for conflict messages).
pub(crate) fn describe_rule(m: &RuleMessage) -> String {
    match parse_rule(m) {
        Some(r) => r.to_string(),
        None => format!("{:?} {:?}", m.header, m.attributes),
    }
}

/// The priority of a dumped rule (0 when absent, as the kernel reports rule 0).
pub(crate) fn rule_priority(m: &RuleMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| {
            if let RuleAttribute::Priority(p) = a {
                Some(*p)
            } else {
                None
            }
        })
        .unwrap_or(0)
}

fn scope_of(s: Scope) -> RouteScope {
    match s {
        Scope::Universe => RouteScope::Universe,
        Scope::Link => RouteScope::Link,
        Scope::Host => RouteScope::Host,
    }
}

/// Builds the RTM_NEWROUTE/DELROUTE body for `r`; `oif` is the index of `r.dev`.
pub(crate) fn route_message(r: &RouteSpec, oif: Option<u32>) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .table_id(r.table)
        .destination_prefix(r.dst, r.prefix)
        .protocol(RouteProtocol::Boot)
        .scope(scope_of(r.scope));
    if r.local {
        b = b.kind(RouteType::Local);
    }
    if let Some(g) = r.gateway {
        b = b.gateway(g);
    }
    if let Some(i) = oif {
        b = b.output_interface(i);
    }
    if let Some(s) = r.src {
        b = b.pref_source(s);
    }
    if r.onlink {
        b = b.onlink();
    }
    b.build()
}

fn v4(a: &RouteAddress) -> Option<Ipv4Addr> {
    if let RouteAddress::Inet(ip) = a {
        Some(*ip)
    } else {
        None
    }
}

/// Reads an IPv4 unicast/local route from a dump, naming its device through `names`.
pub(crate) fn parse_route(m: &RouteMessage, names: &HashMap<u32, String>) -> Option<RouteSpec> {
    let h = &m.header;
    if h.address_family != AddressFamily::Inet
        || !matches!(h.kind, RouteType::Unicast | RouteType::Local)
    {
        return None;
    }
    let mut r = RouteSpec::new(
        u32::from(h.table),
        Ipv4Addr::UNSPECIFIED,
        h.destination_prefix_length,
    );
    r.local = h.kind == RouteType::Local;
    r.onlink = h.flags.contains(RouteFlags::Onlink);
    r.scope = match h.scope {
        RouteScope::Link => Scope::Link,
        RouteScope::Host => Scope::Host,
        _ => Scope::Universe,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => r.table = *t,
            RouteAttribute::Destination(d) => r.dst = v4(d)?,
            RouteAttribute::Gateway(g) => r.gateway = v4(g),
            RouteAttribute::PrefSource(s) => r.src = v4(s),
            RouteAttribute::Oif(i) => {
                r.dev = Some(names.get(i).cloned().unwrap_or_else(|| format!("if{i}")))
            }
            _ => {}
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests;
