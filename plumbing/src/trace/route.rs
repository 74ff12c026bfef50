//! The routing side of one hop: policy rules in priority order (a goto jumps, a lookup
//! that finds no route falls through), longest prefix in the table, `ip` notation. Pure.

use std::net::Ipv4Addr;

use super::host::LOCAL_TABLE;
use super::{rule, Answer, Host};
use crate::model::{PolicyRule, RouteSpec, RuleTarget};

/// The policy rules that led to a route (gotos taken, then the lookup that found one) and
/// the route the kernel picks for `dst` with `mark`.
pub(crate) fn decide(h: &Host, dst: Ipv4Addr, mark: u32) -> (Vec<PolicyRule>, Option<RouteSpec>) {
    let mut rules = h.rules.clone();
    rules.sort();
    let (mut i, mut taken) = (0, Vec::new());
    while let Some(r) = rules.get(i) {
        let hit = r.fwmark.is_none_or(|(v, m)| mark & m == v);
        match (hit, r.target) {
            (true, RuleTarget::Lookup(t)) => {
                if let Some(route) = best(h, t, dst) {
                    taken.push(*r);
                    return (taken, Some(route.clone()));
                }
            }
            (true, RuleTarget::Goto(p)) => {
                taken.push(*r);
                i = rules
                    .iter()
                    .position(|x| x.priority >= p)
                    .unwrap_or(rules.len());
                continue;
            }
            (false, _) => {}
        }
        i += 1;
    }
    (taken, None)
}

fn best(h: &Host, table: u32, dst: Ipv4Addr) -> Option<&RouteSpec> {
    h.routes
        .iter()
        .filter(|r| r.table == table && rule::contains(r.dst, r.prefix, dst))
        .max_by_key(|r| r.prefix)
}

pub(crate) fn answer(route: Option<&RouteSpec>, dst: Ipv4Addr) -> Answer {
    match route {
        None => Answer::Unreachable,
        Some(r) if r.local => Answer::Local { table: r.table },
        Some(r) => Answer::Unicast {
            table: r.table,
            dev: r.dev.clone().unwrap_or_default(),
            gateway: r.gateway.filter(|g| *g != dst || r.onlink),
        },
    }
}

/// `ip rule` notation, with the kernel's table names.
pub(crate) fn rule_text(p: &PolicyRule) -> String {
    let s = p.to_string().replace('\t', " ");
    match p.target {
        RuleTarget::Lookup(t) => {
            s.replace(&format!("lookup {t}"), &format!("lookup {}", table_name(t)))
        }
        RuleTarget::Goto(_) => s,
    }
}

/// `local`, `main` or the number.
pub(crate) fn table_name(t: u32) -> String {
    match t {
        LOCAL_TABLE => "local".into(),
        crate::model::MAIN_TABLE => "main".into(),
        253 => "default".into(),
        n => n.to_string(),
    }
}
