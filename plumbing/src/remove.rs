//! `down`: removes exactly the objects of a [`Desired`] that exist (plus per-pod routes),
//! leaving every foreign chain, rule, route, link and set alone.

use rtnetlink::Handle;

use crate::apply::{current_kind, del_route, is_pod_route, DownReport};
use crate::model::{IptRule, TunnelKind};
use crate::render::Desired;
use crate::{ipset, ipt, msg, nl, state, PlumbError};

/// Removes exactly the objects of `render(kind)` that exist (plus per-pod routes).
pub(crate) async fn down(
    h: &Handle,
    render: &dyn Fn(TunnelKind) -> Desired,
    requested: TunnelKind,
) -> Result<DownReport, PlumbError> {
    let d = render(current_kind(h, &render(requested), requested).await?);
    let live = state::snapshot(h, &d).await?;
    let mut removed = Vec::new();
    for table in live.saved.keys() {
        let chains = d.chains_of(*table);
        let builtin = d
            .iptables
            .iter()
            .filter(|r| r.in_builtin())
            .zip(&live.builtin_present);
        let present: Vec<&IptRule> = builtin
            .filter(|(r, p)| **p && r.table == *table)
            .map(|(r, _)| r)
            .collect();
        let existing: Vec<String> = chains
            .iter()
            .filter(|c| live.saved[table].chains.contains(c))
            .cloned()
            .collect();
        if !existing.is_empty() || !present.is_empty() {
            ipt::restore(*table, &ipt::remove_payload(*table, &existing, &present))?;
            removed.push(format!(
                "{} chains {existing:?} and {} builtin rules",
                table.name(),
                present.len()
            ));
        }
    }
    for r in d
        .rules
        .iter()
        .filter(|r| live.rules.iter().any(|(_, l, _)| l.as_ref() == Some(*r)))
    {
        nl::del_rule(h, msg::rule_message(r), &r.to_string()).await?;
        removed.push(format!("rule {r}"));
    }
    for r in live
        .routes
        .iter()
        .filter(|r| d.routes.contains(r) || is_pod_route(r))
    {
        del_route(h, r).await?;
        removed.push(format!("route table {} {r}", r.table));
    }
    for t in &d.tunnels {
        if let Some(Some(l)) = live.links.get(&t.name) {
            if l.tunnel.matches(t) {
                nl::del_link(h, l.tunnel.index, &t.name).await?;
                removed.push(format!("link {}", t.name));
            }
        }
    }
    if let (Some((name, _)), Some(_)) = (&d.ipset, &live.ipset) {
        ipset::destroy(name)?;
        removed.push(format!("ipset {name}"));
    }
    Ok(DownReport { removed })
}
