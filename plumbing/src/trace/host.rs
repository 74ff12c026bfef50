//! Lookups over one [`Host`] and the [`World`]: ipset membership, chain rules, tunnels,
//! which host owns an address, and the desired variant of a live host. Pure.

use std::net::Ipv4Addr;

use super::{Host, HostTunnel, World};
use crate::model::{IptRule, Table, MAIN_TABLE};
use crate::render::Desired;

/// The kernel's local table.
pub(crate) const LOCAL_TABLE: u32 = 255;

impl Host {
    /// Whether `ip` is a member of ipset `name`.
    pub(crate) fn in_set(&self, name: &str, ip: Ipv4Addr) -> bool {
        self.ipsets
            .iter()
            .any(|(n, m)| n == name && m.contains(&ip))
    }

    /// The rules of `chain` in `table`, in order.
    pub(crate) fn chain(&self, table: Table, chain: &str) -> Vec<&IptRule> {
        self.iptables
            .iter()
            .filter(|r| r.table == table && r.chain == chain)
            .collect()
    }

    /// The tunnel named `dev`.
    pub(crate) fn tunnel(&self, dev: &str) -> Option<&HostTunnel> {
        self.tunnels.iter().find(|t| t.spec.name == dev)
    }

    /// Whether `ip` is one of this host's own addresses (a `local` route of table 255).
    pub(crate) fn owns(&self, ip: Ipv4Addr) -> bool {
        !ip.is_loopback()
            && self
                .routes
                .iter()
                .any(|r| r.table == LOCAL_TABLE && r.local && r.prefix == 32 && r.dst == ip)
    }

    /// This host's address on `dev` (the source of packets it sends there).
    pub(crate) fn addr_on(&self, dev: &str) -> Option<Ipv4Addr> {
        self.routes
            .iter()
            .find(|r| r.table == LOCAL_TABLE && r.local && r.dev.as_deref() == Some(dev))
            .map(|r| r.dst)
    }

    /// The device of this host's main-table route to `ip` (where packets from `ip` enter).
    pub(crate) fn dev_toward(&self, ip: Ipv4Addr) -> Option<String> {
        self.routes
            .iter()
            .filter(|r| r.table == MAIN_TABLE && super::rule::contains(r.dst, r.prefix, ip))
            .max_by_key(|r| r.prefix)
            .and_then(|r| r.dev.clone())
    }

    /// The same host with every object a [`Desired`] owns replaced by the desired one: its
    /// rules, the routes of its tables, its chains' rules, its ipset and its tunnels.
    pub fn desired(&self, d: &Desired) -> Host {
        let mut h = self.clone();
        let prios: Vec<u32> = d.rules.iter().map(|r| r.priority).collect();
        h.rules.retain(|r| !prios.contains(&r.priority));
        h.rules.extend(d.rules.iter().copied());
        h.rules.sort();
        h.routes.retain(|r| !d.tables.contains(&r.table));
        h.routes.extend(d.routes.iter().cloned());
        let ours = |r: &IptRule| d.chains.iter().any(|(t, c)| *t == r.table && *c == r.chain);
        h.iptables.retain(|r| !ours(r) && !d.iptables.contains(r));
        h.iptables.extend(d.iptables.iter().cloned());
        if let Some((name, members)) = &d.ipset {
            h.ipsets.retain(|(n, _)| n != name);
            h.ipsets.push((name.clone(), members.clone()));
        }
        h.tunnels = d
            .tunnels
            .iter()
            .map(|spec| HostTunnel {
                spec: spec.clone(),
                kind: d.kind,
            })
            .collect();
        h
    }
}

impl World {
    /// The host (other than `not`) that owns `ip`.
    pub(crate) fn owner(&self, ip: Ipv4Addr, not: usize) -> Option<usize> {
        (0..self.hosts.len()).find(|i| *i != not && self.hosts[*i].owns(ip))
    }

    /// Whether the trace can start at `src`: an address of node A, or routed by its main table.
    pub fn source_known(&self, src: Ipv4Addr) -> bool {
        self.hosts
            .first()
            .is_some_and(|h| h.owns(src) || h.dev_toward(src).is_some())
    }

    /// Whether some traced node enrolls `ip` (its ipset holds it).
    pub(crate) fn enrolled(&self, ip: Ipv4Addr) -> bool {
        self.hosts
            .iter()
            .any(|h| h.in_set(crate::render::IPSET_NAME, ip))
    }

    /// The traced node whose pod `ip` is (a main route straight to it, not via a gateway).
    pub(crate) fn node_of_pod(&self, ip: Ipv4Addr) -> Option<(usize, String)> {
        self.hosts.iter().enumerate().find_map(|(i, h)| {
            h.routes
                .iter()
                .find(|r| {
                    r.table == MAIN_TABLE && r.prefix == 32 && r.dst == ip && r.gateway.is_none()
                })
                .and_then(|r| r.dev.clone().map(|d| (i, d)))
        })
    }
}
