//! Random cells from a seed: 1-3 policies each, of random action, scope (listed
//! WorkloadSelector, not listed, listed but never defined, Namespace of the destination or
//! of another namespace, Global) and dry run, with 0-2 rules of 1-2 clauses of 0-2 matches,
//! each match 1-2 fields from pools that hold values which match the client and values
//! which do not.

use super::shapes::{cell, Cell, Pol};

/// A small deterministic generator (splitmix64): the suite's only randomness.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const STRINGS_NS: &[&str] = &[
    "!Exact \"front\"",
    "!Exact \"back\"",
    "!Prefix \"fr\"",
    "!Prefix \"ba\"",
    "!Suffix \"nt\"",
    "!Suffix \"ck\"",
    "!Presence []",
];
const STRINGS_PRINCIPAL: &[&str] = &[
    "!Exact \"cluster.local/ns/front/sa/web\"",
    "!Exact \"cluster.local/ns/front/sa/other\"",
    "!Exact \"spiffe://cluster.local/ns/front/sa/web\"",
    "!Prefix \"cluster.local/ns/front/\"",
    "!Prefix \"cluster.local/ns/back/\"",
    "!Suffix \"/sa/web\"",
    "!Suffix \"/sa/api\"",
    "!Presence []",
];
const ACCOUNTS: &[&str] = &[
    "{namespace: front, serviceAccount: web}",
    "{namespace: front, serviceAccount: other}",
    "{namespace: back, serviceAccount: web}",
];
const SOURCES: &[&str] = &[
    "\"10.82.1.2/32\"",
    "\"10.82.1.0/24\"",
    "\"10.82.0.0/16\"",
    "\"10.82.0.1/32\"",
    "\"10.99.0.0/16\"",
    "\"0.0.0.0/0\"",
];
const DESTINATIONS: &[&str] = &[
    "\"10.82.2.0/24\"",
    "\"10.82.2.250/32\"",
    "\"10.82.0.0/16\"",
    "\"10.99.0.0/16\"",
];
const PORT_VALUES: &[&str] = &["9000", "9001", "9002", "9999"];

/// One random field: `key: [v, …]` with 1-2 values from the field's pool.
fn field(rng: &mut Rng) -> String {
    let (key, pool): (&str, &[&str]) = match rng.below(6) {
        0 => ("destinationPorts", PORT_VALUES),
        1 => ("namespaces", STRINGS_NS),
        2 => ("principals", STRINGS_PRINCIPAL),
        3 => ("serviceAccounts", ACCOUNTS),
        4 => ("sourceIps", SOURCES),
        _ => ("destinationIps", DESTINATIONS),
    };
    let n = 1 + rng.below(2);
    let values: Vec<&str> = (0..n).map(|_| *rng.pick(pool)).collect();
    let key = if rng.chance(30) {
        format!("not{}{}", key[..1].to_uppercase(), &key[1..])
    } else {
        key.to_string()
    };
    format!("{key}: [{}]", values.join(", "))
}

/// A random match: usually 1-2 fields, rarely empty (an empty match never holds).
fn a_match(rng: &mut Rng) -> String {
    if rng.chance(3) {
        return "{}".into();
    }
    let fields: Vec<String> = (0..1 + rng.below(2)).map(|_| field(rng)).collect();
    // Two draws of one key would be a duplicate YAML key: keep the first.
    let mut seen = Vec::new();
    let fields: Vec<&String> = fields
        .iter()
        .filter(|f| {
            let k = f.split(':').next().unwrap_or_default().to_string();
            let fresh = !seen.contains(&k);
            seen.push(k);
            fresh
        })
        .collect();
    let fields: Vec<&str> = fields.iter().map(|s| s.as_str()).collect();
    format!("{{{}}}", fields.join(", "))
}

fn random_policy(rng: &mut Rng) -> Pol {
    let action = if rng.chance(50) { "Allow" } else { "Deny" };
    let rules = if rng.chance(5) {
        Vec::new()
    } else {
        (0..1 + rng.below(2))
            .map(|_| {
                (0..1 + rng.below(2))
                    .map(|_| {
                        let n = if rng.chance(4) { 0 } else { 1 + rng.below(2) };
                        (0..n).map(|_| a_match(rng)).collect()
                    })
                    .collect()
            })
            .collect()
    };
    let mut p = Pol::new(action, "WorkloadSelector", rules);
    match rng.below(10) {
        0 => {
            p.scope = "Namespace";
            p.listed = false;
        }
        1 => {
            p = Pol {
                namespace: "front",
                scope: "Namespace",
                listed: false,
                ..p
            };
        }
        2 => {
            p = Pol {
                namespace: "istio-system",
                scope: "Global",
                listed: false,
                ..p
            };
        }
        3 => p.listed = false,
        4 => p.missing = true,
        _ => {}
    }
    p.dry_run = rng.chance(12);
    p
}

/// `n` cells of 1-3 random policies each.
pub fn random(rng: &mut Rng, n: usize) -> Vec<Cell> {
    (0..n)
        .map(|i| {
            let policies = (0..1 + rng.below(3)).map(|_| random_policy(rng)).collect();
            cell(&format!("random #{i}"), policies)
        })
        .collect()
}
