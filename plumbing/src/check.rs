//! Drift between a [`Desired`] and a [`Live`] snapshot, object by object (pure).

use std::fmt;

use crate::model::{IptRule, Table};
use crate::render::Desired;
use crate::state::Live;

/// How one object differs from the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftKind {
    /// Desired but absent.
    Missing,
    /// Present but not desired (in a place we own).
    Extra,
    /// Present with other content.
    Different {
        /// What the desired state says.
        want: String,
        /// What the kernel has.
        got: String,
    },
}

/// One drifted object, named in the articles' notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The object, e.g. `rule 101` or `mangle ztunnel-PREROUTING: -i istioin -j RETURN`.
    pub object: String,
    /// How it drifted.
    pub kind: DriftKind,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DriftKind::Missing => write!(f, "missing    {}", self.object),
            DriftKind::Extra => write!(f, "extra      {}", self.object),
            DriftKind::Different { want, got } => {
                write!(f, "different  {}: want `{want}`, got `{got}`", self.object)
            }
        }
    }
}

fn drift(object: impl Into<String>, kind: DriftKind) -> Drift {
    Drift {
        object: object.into(),
        kind,
    }
}

fn different(object: impl Into<String>, want: impl Into<String>, got: impl Into<String>) -> Drift {
    drift(
        object,
        DriftKind::Different {
            want: want.into(),
            got: got.into(),
        },
    )
}

/// Everything in `live` that differs from `d`.
pub(crate) fn diff(d: &Desired, live: &Live) -> Vec<Drift> {
    let mut out = Vec::new();
    ipset(d, live, &mut out);
    links(d, live, &mut out);
    rules(d, live, &mut out);
    routes(d, live, &mut out);
    iptables(d, live, &mut out);
    sysctls(d, live, &mut out);
    out
}

fn ipset(d: &Desired, live: &Live, out: &mut Vec<Drift>) {
    let Some((name, want)) = &d.ipset else { return };
    let Some((typ, got)) = &live.ipset else {
        out.push(drift(format!("ipset {name}"), DriftKind::Missing));
        return;
    };
    if typ != "hash:ip" {
        out.push(different(
            format!("ipset {name} type"),
            "hash:ip",
            typ.as_str(),
        ));
    }
    want.iter().filter(|m| !got.contains(m)).for_each(|m| {
        out.push(drift(
            format!("ipset {name} member {m}"),
            DriftKind::Missing,
        ))
    });
    got.iter()
        .filter(|m| !want.contains(m))
        .for_each(|m| out.push(drift(format!("ipset {name} member {m}"), DriftKind::Extra)));
}

fn links(d: &Desired, live: &Live, out: &mut Vec<Drift>) {
    for t in &d.tunnels {
        let obj = format!("link {}", t.name);
        let Some(Some(l)) = live.links.get(&t.name) else {
            out.push(drift(obj, DriftKind::Missing));
            continue;
        };
        let want = format!("{} id {} remote {}", d.kind.name(), t.vni, t.remote);
        if !l.tunnel.matches(t) || l.tunnel.kind != Some(d.kind) {
            out.push(different(&obj, want, l.tunnel.describe()));
        }
        if !l.tunnel.up {
            out.push(different(&obj, "state UP", "state DOWN"));
        }
        if !l.addrs.contains(&(t.addr, t.prefix)) {
            out.push(drift(
                format!("address {}/{} dev {}", t.addr, t.prefix, t.name),
                DriftKind::Missing,
            ));
        }
    }
}

fn rules(d: &Desired, live: &Live, out: &mut Vec<Drift>) {
    for want in &d.rules {
        let at: Vec<_> = live
            .rules
            .iter()
            .filter(|(p, _, _)| *p == want.priority)
            .collect();
        let obj = format!("rule {}", want.priority);
        match at.iter().position(|(_, r, _)| r.as_ref() == Some(want)) {
            Some(i) => at
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .for_each(|(_, (_, _, s))| {
                    out.push(drift(format!("{obj}: {s}"), DriftKind::Extra))
                }),
            None if at.is_empty() => out.push(drift(format!("{obj}: {want}"), DriftKind::Missing)),
            None => at
                .iter()
                .for_each(|(_, _, s)| out.push(different(&obj, want.to_string(), s.as_str()))),
        }
    }
}

fn routes(d: &Desired, live: &Live, out: &mut Vec<Drift>) {
    for r in d.routes.iter().filter(|r| !live.routes.contains(r)) {
        out.push(drift(
            format!("route table {} {r}", r.table),
            DriftKind::Missing,
        ));
    }
    for r in live.routes.iter().filter(|r| !d.routes.contains(r)) {
        out.push(drift(
            format!("route table {} {r}", r.table),
            DriftKind::Extra,
        ));
    }
}

fn iptables(d: &Desired, live: &Live, out: &mut Vec<Drift>) {
    for (table, saved) in &live.saved {
        for (_, c) in d.chains.iter().filter(|(t, _)| t == table) {
            let want: Vec<&str> = d
                .iptables
                .iter()
                .filter(|r| r.table == *table && &r.chain == c)
                .map(|r| r.spec.as_str())
                .collect();
            chain(table.name(), c, &want, saved, out);
        }
    }
    let builtin: Vec<&IptRule> = d.iptables.iter().filter(|r| r.in_builtin()).collect();
    for (r, present) in builtin.iter().zip(&live.builtin_present) {
        let obj = format!("{} {}", r.table.name(), r.line());
        let count = live.saved.get(&r.table).map_or(0, |s| {
            s.chain(&r.chain).iter().filter(|s| **s == r.spec).count()
        });
        match (present, count) {
            (false, _) => out.push(drift(obj, DriftKind::Missing)),
            (true, n) if n > 1 => {
                out.push(drift(format!("{obj} (x{n}, duplicated)"), DriftKind::Extra))
            }
            _ => {}
        }
    }
    builtin_order(d, live, out);
}

fn chain(table: &str, c: &str, want: &[&str], saved: &crate::ipt::Saved, out: &mut Vec<Drift>) {
    if !saved.chains.iter().any(|x| x == c) {
        out.push(drift(format!("{table} chain {c}"), DriftKind::Missing));
        return;
    }
    let got = saved.chain(c);
    if got == want {
        return;
    }
    want.iter()
        .filter(|w| !got.contains(w))
        .for_each(|w| out.push(drift(format!("{table} -A {c} {w}"), DriftKind::Missing)));
    got.iter()
        .filter(|g| !want.contains(g))
        .for_each(|g| out.push(drift(format!("{table} -A {c} {g}"), DriftKind::Extra)));
    if want.iter().all(|w| got.contains(w)) && got.iter().all(|g| want.contains(g)) {
        out.push(different(
            format!("{table} chain {c} order"),
            want.join(" | "),
            got.join(" | "),
        ));
    }
}

/// Several of our rules in one builtin chain (the ztunnel pod's TPROXY rules) must keep
/// the articles' order.
fn builtin_order(d: &Desired, live: &Live, out: &mut Vec<Drift>) {
    for table in [Table::Mangle, Table::Nat] {
        let ours: Vec<&IptRule> = d
            .iptables
            .iter()
            .filter(|r| r.table == table && r.in_builtin() && !r.is_jump())
            .collect();
        let Some(saved) = live.saved.get(&table) else {
            continue;
        };
        for c in ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"] {
            let want: Vec<&str> = ours
                .iter()
                .filter(|r| r.chain == c)
                .map(|r| r.spec.as_str())
                .collect();
            let got: Vec<&str> = saved
                .chain(c)
                .into_iter()
                .filter(|s| want.contains(s))
                .collect();
            if want.len() > 1 && got.len() == want.len() && got != want {
                out.push(different(
                    format!("{} {c} order", table.name()),
                    want.join(" | "),
                    got.join(" | "),
                ));
            }
        }
    }
}

fn sysctls(d: &Desired, live: &Live, out: &mut Vec<Drift>) {
    for s in &d.sysctls {
        let got = live.sysctls.get(&s.key).cloned().flatten();
        // Loose (2) is wanted for rp_filter; off (0) works as well.
        let ok = got.as_deref() == Some(s.value.as_str())
            || s.key.ends_with("rp_filter") && got.as_deref() == Some("0");
        if !ok {
            out.push(different(
                format!("sysctl {}", s.key),
                s.value.as_str(),
                got.unwrap_or_else(|| "<unreadable>".into()),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
