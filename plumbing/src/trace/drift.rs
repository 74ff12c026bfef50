//! Drift that changes a path: the live trace against the trace of the desired state, and
//! the drifted objects (from `plumb check`) the divergent packet depended on. Pure.

use serde::Serialize;

use super::flow::{PacketTrace, Trace, Verdict};
use crate::check::Drift;

/// One packet whose path differs between the live and the desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// Leg name.
    pub leg: String,
    /// `SYN`, `SYN-ACK (reply)`, `later packet`.
    pub packet: String,
    /// Host of the first step that differs.
    pub at: String,
    /// Where it ends now.
    pub live: Verdict,
    /// Where it should end (None: the desired trace has no such packet).
    pub desired: Option<Verdict>,
    /// The drifted objects on either path, as `plumb check` prints them.
    pub because: Vec<String>,
}

/// Every packet of `desired` whose live counterpart went elsewhere (or does not exist).
pub fn diverge(live: &Trace, desired: &Trace, drift: &[Drift]) -> Vec<Divergence> {
    let mut out = Vec::new();
    for (l, dleg) in desired.legs.iter().enumerate() {
        for (k, dp) in dleg.packets.iter().enumerate() {
            let lleg = live.legs.get(l);
            let lp = lleg.and_then(|leg| leg.packets.get(k));
            let name = match lleg {
                Some(x) if x.name != dleg.name => format!("{} (desired: {})", x.name, dleg.name),
                _ => dleg.name.clone(),
            };
            if let Some(d) = compare(&name, dp, lp, drift) {
                out.push(d);
            }
        }
    }
    out.extend(extra_in_live(live, desired, drift));
    out
}

/// Packets the live trace has beyond the desired one (a path that should not exist).
fn extra_in_live(live: &Trace, desired: &Trace, drift: &[Drift]) -> Vec<Divergence> {
    let mut out = Vec::new();
    for (l, leg) in live.legs.iter().enumerate() {
        let known = desired.legs.get(l).map_or(0, |d| d.packets.len());
        for p in leg.packets.iter().skip(known) {
            out.push(Divergence {
                leg: leg.name.clone(),
                packet: p.what.clone(),
                at: p.steps.first().map(|s| s.host.clone()).unwrap_or_default(),
                live: p.verdict.clone(),
                desired: None,
                because: blame(p, None, drift),
            });
        }
    }
    out
}

fn compare(
    leg: &str,
    d: &PacketTrace,
    l: Option<&PacketTrace>,
    drift: &[Drift],
) -> Option<Divergence> {
    let l = l?;
    let first = d.steps.iter().zip(&l.steps).position(|(a, b)| !same(a, b));
    if first.is_none() && d.verdict == l.verdict && d.steps.len() == l.steps.len() {
        return None;
    }
    let i = first.unwrap_or(d.steps.len().min(l.steps.len()).saturating_sub(1));
    Some(Divergence {
        leg: leg.to_string(),
        packet: d.what.clone(),
        at: l.steps.get(i).map(|s| s.host.clone()).unwrap_or_default(),
        live: l.verdict.clone(),
        desired: Some(d.verdict.clone()),
        because: blame(l, Some(d), drift),
    })
}

fn same(a: &super::Step, b: &super::Step) -> bool {
    a.host == b.host
        && a.matched == b.matched
        && a.policy == b.policy
        && a.route == b.route
        && a.outcome == b.outcome
}

/// The drift objects that either version of the packet depended on.
fn blame(live: &PacketTrace, desired: Option<&PacketTrace>, drift: &[Drift]) -> Vec<String> {
    let keys: Vec<&String> = live
        .steps
        .iter()
        .chain(desired.into_iter().flat_map(|d| d.steps.iter()))
        .flat_map(|s| s.used.iter())
        .collect();
    drift
        .iter()
        .filter(|d| keys.iter().any(|k| names(&d.object, k)))
        .map(ToString::to_string)
        .collect()
}

/// Whether drift object `obj` (`plumb check`'s notation) is the object `key` names.
fn names(obj: &str, key: &str) -> bool {
    obj == key || obj.ends_with(&format!(" {key}")) || obj.starts_with(&format!("{key}:"))
}
