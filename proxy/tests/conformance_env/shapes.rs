//! The policies of the conformance suite, laid out as "cells": the 23 named shapes of
//! issue 26 (and a few neighbours) here, random combinations of match fields × scopes ×
//! actions from a seed in [`super::random`].
//!
//! Both proxies in dedicated mode judge every connection against one destination
//! workload (ztunnel's inbound uses its `PROXY_WORKLOAD_INFO` workload), so the shapes
//! share it: `back/api`, one workload with one IP per cell. Each shape's rules gain a
//! clause `destinationIps: [<its cell>/32]`, so a shape's policies match only its cell's
//! connections. An enforced ALLOW that applies to `back/api` would still make every other
//! cell default-deny, so cells with one ([`split`]) run apart from cells without: in the
//! first run every cell has its own ALLOW (the others' never match its IP), in the second
//! no cell has one. Either way each cell is decided as if its shape were alone. Every
//! string match is written in ztunnel's tagged form (`!Exact "…"`), the only form both
//! proxies read.

use std::fmt::Write;

/// The client workload (node A) and the identity both node-A proxies present.
pub const CLIENT_IP: &str = "10.82.1.2";
/// Cell `i` (0-based) is `10.82.2.<i + 1>`; node B takes the whole /24 as local.
pub const CELL_NET: &str = "10.82.2";
pub const PORTS: [u16; 3] = [9000, 9001, 9002];
pub const MAX_CELLS: usize = 200;

/// One policy as written in the LocalConfig.
#[derive(Debug, Clone)]
pub struct Pol {
    pub name: String,
    pub namespace: &'static str,
    pub scope: &'static str,
    pub action: &'static str,
    pub dry_run: bool,
    /// Rules → clauses → matches, each match a YAML flow map (`{destinationPorts: [9000]}`).
    pub rules: Vec<Vec<Vec<String>>>,
    /// Listed in the destination's `authorizationPolicies`.
    pub listed: bool,
    /// Listed but never defined: a dangling reference both proxies must skip.
    pub missing: bool,
}

/// One cell: a shape's policies, deciding the connections to one destination IP.
#[derive(Debug, Clone)]
pub struct Cell {
    pub shape: String,
    pub policies: Vec<Pol>,
}

impl Pol {
    pub(super) fn new(
        action: &'static str,
        scope: &'static str,
        rules: Vec<Vec<Vec<String>>>,
    ) -> Pol {
        let namespace = if scope == "Global" {
            "istio-system"
        } else {
            "back"
        };
        Pol {
            name: String::new(),
            namespace,
            scope,
            action,
            dry_run: false,
            rules,
            listed: scope == "WorkloadSelector",
            missing: false,
        }
    }

    fn ns(mut self, ns: &'static str) -> Pol {
        self.namespace = ns;
        self
    }
}

fn allow(m: &[&str]) -> Pol {
    Pol::new("Allow", "WorkloadSelector", vec![vec![strs(m)]])
}

fn deny(m: &[&str]) -> Pol {
    Pol::new("Deny", "WorkloadSelector", vec![vec![strs(m)]])
}

fn strs(m: &[&str]) -> Vec<String> {
    m.iter().map(|s| s.to_string()).collect()
}

pub(super) fn cell(shape: &str, policies: Vec<Pol>) -> Cell {
    Cell {
        shape: shape.into(),
        policies,
    }
}

const WEB: &str = "cluster.local/ns/front/sa/web";

/// The 23 shapes of issue 26 (and a few neighbours), each in its own cell.
pub fn named() -> Vec<Cell> {
    let p = |s: &str| format!("{{principals: [{s}], destinationPorts: [9000, 9001]}}");
    let (exact, prefix) = (
        p(&format!("!Exact \"{WEB}\"")),
        p("!Prefix \"cluster.local/ns/front/\""),
    );
    let (suffix, presence) = (p("!Suffix \"/sa/web\""), p("!Presence []"));
    let mut ns_scope = deny(&["{destinationPorts: [9001]}"]);
    ns_scope.scope = "Namespace";
    ns_scope.listed = false;
    let mut global = Pol::new(
        "Deny",
        "Global",
        vec![vec![strs(&["{destinationPorts: [9002]}"])]],
    );
    global.listed = false;
    let mut unlisted = deny(&["{destinationPorts: [9000, 9001, 9002]}"]);
    unlisted.listed = false;
    let mut dry_deny = deny(&["{destinationPorts: [9000]}"]);
    dry_deny.dry_run = true;
    let mut dry_allow = allow(&["{destinationPorts: [9001]}"]);
    dry_allow.dry_run = true;
    let mut dangling = deny(&["{destinationPorts: [9000]}"]);
    dangling.missing = true;
    let mut other_ns = deny(&["{destinationPorts: [9000]}"]).ns("front");
    other_ns.scope = "Namespace";
    other_ns.listed = false;
    let sa = |f: &str| format!("{{{f}: [{{namespace: front, serviceAccount: web}}]}}");
    vec![
        cell("allow by port", vec![allow(&["{destinationPorts: [9001]}"])]),
        cell("deny by port", vec![deny(&["{destinationPorts: [9001]}"])]),
        cell("allow by not-port", vec![allow(&["{notDestinationPorts: [9002]}"])]),
        cell("allow by namespace", vec![allow(&["{namespaces: [!Exact \"front\"], destinationPorts: [9000]}"])]),
        cell("deny by namespace prefix/suffix", vec![deny(&["{namespaces: [!Prefix \"fr\", !Suffix \"zz\"], notNamespaces: [!Exact \"back\"], destinationPorts: [9002]}"])]),
        cell("allow by principal exact", vec![allow(&[&exact])]),
        cell("allow by principal prefix", vec![allow(&[&prefix])]),
        cell("allow by principal suffix", vec![allow(&[&suffix])]),
        cell("deny by principal presence", vec![deny(&[&presence])]),
        cell("allow by not-principal", vec![allow(&["{notPrincipals: [!Exact \"cluster.local/ns/front/sa/other\"], destinationPorts: [9002]}"])]),
        cell("principal pattern keeping spiffe://", vec![allow(&[&format!("{{principals: [!Exact \"spiffe://{WEB}\"]}}")])]),
        cell("allow by service account", vec![allow(&[&sa("serviceAccounts")])]),
        cell("deny by not-service-account", vec![deny(&[&sa("notServiceAccounts")]), deny(&["{notServiceAccounts: [{namespace: front, serviceAccount: other}], destinationPorts: [9001]}"])]),
        cell("allow by source CIDR", vec![allow(&["{sourceIps: [\"10.82.1.0/24\"], destinationPorts: [9000, 9002]}"])]),
        cell("deny by source CIDR", vec![deny(&["{sourceIps: [\"10.82.1.2/32\"], notSourceIps: [\"10.82.0.0/24\"], destinationPorts: [9001]}"])]),
        cell("deny by destination CIDR", vec![deny(&["{destinationIps: [\"10.82.2.0/24\"], notDestinationIps: [\"10.82.3.0/24\"], destinationPorts: [9000]}"])]),
        cell("deny before allow", vec![allow(&["{destinationPorts: [9000, 9001]}"]), deny(&["{destinationPorts: [9001]}"])]),
        cell("AND of clauses", vec![Pol::new("Allow", "WorkloadSelector", vec![
            vec![strs(&["{destinationPorts: [9000]}"]), strs(&["{namespaces: [!Exact \"front\"]}"])],
            vec![strs(&["{destinationPorts: [9001]}"]), strs(&["{namespaces: [!Exact \"other\"]}"])],
        ])]),
        cell("OR of matches", vec![allow(&["{destinationPorts: [9000]}", "{destinationPorts: [9002]}"])]),
        cell("Namespace scope", vec![ns_scope]),
        cell("Global scope", vec![global]),
        cell("WorkloadSelector scope, listed and not", vec![deny(&["{destinationPorts: [9002]}"]), unlisted]),
        cell("dry run", vec![dry_deny, dry_allow]),
        cell("ALLOW with no rules", vec![Pol::new("Allow", "WorkloadSelector", vec![])]),
        cell("dangling reference", vec![dangling, deny(&["{destinationPorts: [9002]}"])]),
        cell("Namespace scope of another namespace", vec![other_ns]),
        cell("empty clause and empty match", vec![Pol::new("Allow", "WorkloadSelector", vec![
            vec![vec![], strs(&["{destinationPorts: [9000]}"])],
            vec![strs(&["{}"])],
        ])]),
    ]
}

impl Pol {
    /// An enforced ALLOW that applies to `back/api` (listed, or by namespace or globally).
    fn allows(&self) -> bool {
        let applies = match self.scope {
            "WorkloadSelector" => self.listed,
            "Namespace" => self.namespace == "back",
            _ => true,
        };
        self.action == "Allow" && !self.dry_run && !self.missing && applies
    }
}

/// The cells with an enforced, applicable ALLOW, and the others.
pub fn split(cells: &[Cell]) -> (Vec<Cell>, Vec<Cell>) {
    cells
        .iter()
        .cloned()
        .partition(|c| c.policies.iter().any(Pol::allows))
}

pub fn cell_ip(i: usize) -> String {
    format!("{CELL_NET}.{}", i + 1)
}

/// The LocalConfig of one run: the client `front/web` on node A, `back/api` with one IP per
/// cell on node B, and each cell's policies (named `c<i>-p<j>`) bound to its IP. The
/// cells should be one side of [`split`].
pub fn config(cells: &[Cell]) -> String {
    assert!(cells.len() <= MAX_CELLS);
    let mut listed = Vec::new();
    let mut policies = String::new();
    for (i, c) in cells.iter().enumerate() {
        let ip = cell_ip(i);
        for (j, p) in c.policies.iter().enumerate() {
            let name = format!("c{i}-p{j}");
            if p.listed || p.missing {
                listed.push(format!("\"{}/{name}\"", p.namespace));
            }
            if !p.missing {
                policies.push_str(&policy_yaml(&name, p, &ip));
            }
        }
    }
    let ips: Vec<String> = (0..cells.len())
        .map(|i| format!("\"{}\"", cell_ip(i)))
        .collect();
    format!(
        "workloads:\n{}{}policies:\n{policies}",
        workload("front", "web", "node-a", &[format!("\"{CLIENT_IP}\"")], &[]),
        workload("back", "api", "node-b", &ips, &listed),
    )
}

/// One workload item; `ips` and `listed` are already quoted.
fn workload(ns: &str, name: &str, node: &str, ips: &[String], listed: &[String]) -> String {
    format!(
        "- uid: cluster1//v1/Pod/{ns}/{name}\n  name: {name}\n  namespace: {ns}\n  \
         serviceAccount: {name}\n  trustDomain: cluster.local\n  protocol: HBONE\n  \
         node: {node}\n  services: {{}}\n  workloadIps: [{}]\n  authorizationPolicies: [{}]\n",
        ips.join(", "),
        listed.join(", ")
    )
}

/// One policy; each rule gains the clause binding it to its cell's IP.
fn policy_yaml(name: &str, p: &Pol, ip: &str) -> String {
    let rules: Vec<String> = p
        .rules
        .iter()
        .map(|rule| {
            let mut clauses: Vec<String> = rule
                .iter()
                .map(|clause| format!("[{}]", clause.join(", ")))
                .collect();
            clauses.push(format!("[{{destinationIps: [\"{ip}/32\"]}}]"));
            format!("[{}]", clauses.join(", "))
        })
        .collect();
    format!(
        "- name: {name}\n  namespace: {}\n  scope: {}\n  action: {}\n  dryRun: {}\n  rules: [{}]\n",
        p.namespace,
        p.scope,
        p.action,
        p.dry_run,
        rules.join(", ")
    )
}

/// A cell's policies as YAML, for a report of a difference.
pub fn describe(c: &Cell, i: usize) -> String {
    let mut out = format!("cell {i} ({}, {}): ", c.shape, cell_ip(i));
    for (j, p) in c.policies.iter().enumerate() {
        let listed = match (p.listed, p.missing) {
            (_, true) => " (listed, never defined)",
            (true, false) => " (listed)",
            _ => "",
        };
        let _ = write!(
            out,
            "\n  {}{listed}",
            policy_yaml(&format!("c{i}-p{j}"), p, &cell_ip(i)).replace('\n', "\n  ")
        );
    }
    out
}
