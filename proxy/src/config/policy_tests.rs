use std::net::{IpAddr, SocketAddr};

use super::super::local::LocalConfig;
use super::super::test_fixtures::HBONE_MD_EXAMPLE;
use super::*;

const WORKLOADS: &str = r#"
workloads:
- {name: web, namespace: shop, workloadIps: [10.0.1.1], protocol: HBONE, authorizationPolicies: ["shop/listed"]}
- {name: db, namespace: shop, workloadIps: [10.0.1.2], protocol: HBONE}
- {name: other, namespace: else, workloadIps: [10.0.2.1], protocol: HBONE}
"#;

/// The policy `web` lists; never matches. Added unless a test defines its own.
const LISTED: &str = "- {name: listed, namespace: shop, scope: WorkloadSelector, action: Deny}\n";

/// A snapshot of [`WORKLOADS`] plus the given `policies:` YAML list.
fn snap(policies: &str) -> Snapshot {
    let listed = if policies.contains("name: listed") {
        ""
    } else {
        LISTED
    };
    let yaml = format!("{WORKLOADS}policies:\n{listed}{policies}");
    let local = LocalConfig::from_yaml("policy.yaml", &yaml).unwrap();
    Snapshot::new(local, None).unwrap()
}

/// A connection from `src` (identity `spiffe://cluster.local/ns/<ns>/sa/<sa>` if given).
fn decide(s: &Snapshot, src: &str, id: Option<(&str, &str)>, dst: &str) -> Decision {
    let dst: SocketAddr = dst.parse().unwrap();
    let conn = ConnInfo {
        src_ip: src.parse::<IpAddr>().unwrap(),
        src_identity: id.map(|(ns, sa)| Identity::new("cluster.local", ns, sa)),
        dst,
        dst_workload: s.workload_by_ip(dst.ip()).unwrap(),
    };
    s.authorize(&conn)
}

fn allowed(s: &Snapshot, src: &str, id: Option<(&str, &str)>, dst: &str) -> bool {
    decide(s, src, id, dst) == Decision::Allow
}

const CLIENT: Option<(&str, &str)> = Some(("front", "client"));

#[test]
fn no_policies_allow_everything() {
    assert!(allowed(&snap(""), "10.9.9.9", None, "10.0.1.1:80"));
}

#[test]
fn hbone_md_example_allows_all_but_9999() {
    let local = LocalConfig::from_yaml("example.yaml", HBONE_MD_EXAMPLE).unwrap();
    let s = Snapshot::new(local, None).unwrap();
    assert!(allowed(&s, "10.1.1.1", CLIENT, "10.244.1.4:8080"));
    let denied = decide(&s, "10.1.1.1", CLIENT, "10.244.1.4:9999");
    assert_eq!(
        denied,
        Decision::Deny {
            policy: "default/deny-9999".into()
        }
    );
}

#[test]
fn deny_wins_over_allow() {
    let s = snap(
        r#"
- {name: allow-all, namespace: shop, scope: Namespace, action: Allow, rules: [[[{destinationPorts: [80]}]]]}
- {name: no-client, namespace: shop, scope: Namespace, action: Deny, rules: [[[{principals: [!Exact "cluster.local/ns/front/sa/client"]}]]]}
"#,
    );
    let d = decide(&s, "10.1.1.1", CLIENT, "10.0.1.1:80");
    assert_eq!(
        d,
        Decision::Deny {
            policy: "shop/no-client".into()
        }
    );
    assert!(allowed(
        &s,
        "10.1.1.1",
        Some(("front", "other")),
        "10.0.1.1:80"
    ));
    let d = decide(&s, "10.1.1.1", Some(("front", "other")), "10.0.1.1:81");
    assert_eq!(
        d,
        Decision::Deny {
            policy: "shop/allow-all".into()
        }
    );
}

#[test]
fn scopes_select_the_right_workloads() {
    let s = snap(
        r#"
- {name: ns-deny, namespace: shop, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [1]}]]]}
- {name: global-deny, namespace: istio-system, scope: Global, action: Deny, rules: [[[{destinationPorts: [2]}]]]}
- {name: listed, namespace: shop, scope: WorkloadSelector, action: Deny, rules: [[[{destinationPorts: [3]}]]]}
- {name: named, namespace: shop, scope: WorkloadSelector, action: Deny, selector: {workloads: [db]}, rules: [[[{destinationPorts: [4]}]]]}
"#,
    );
    let denied = |dst: &str| !allowed(&s, "10.1.1.1", CLIENT, dst);
    assert!(denied("10.0.1.1:1") && denied("10.0.1.2:1") && !denied("10.0.2.1:1"));
    assert!(denied("10.0.1.1:2") && denied("10.0.2.1:2"));
    assert!(
        denied("10.0.1.1:3") && !denied("10.0.1.2:3"),
        "only web lists shop/listed"
    );
    assert!(
        denied("10.0.1.2:4") && !denied("10.0.1.1:4"),
        "only db is named"
    );
}

#[test]
fn allow_policies_of_other_namespaces_do_not_default_deny() {
    let s = snap("- {name: a, namespace: shop, scope: Namespace, action: Allow, rules: [[[{destinationPorts: [80]}]]]}\n");
    assert!(allowed(&s, "10.1.1.1", CLIENT, "10.0.2.1:81"));
    assert!(!allowed(&s, "10.1.1.1", CLIENT, "10.0.1.1:81"));
}

#[test]
fn identity_fields_and_their_not_forms() {
    let s = snap(
        r#"
- name: ids
  namespace: shop
  scope: Namespace
  action: Allow
  rules:
  - [[{namespaces: [!Exact "front"], notServiceAccounts: [{namespace: front, serviceAccount: banned}]}]]
  - [[{serviceAccounts: [{namespace: ops, serviceAccount: admin}]}]]
  - [[{principals: [!Exact "cluster.local/ns/batch/sa/job"]}]]
  # ztunnel compares the identity without `spiffe://`: a pattern keeping it never matches
  - [[{principals: [!Exact "spiffe://cluster.local/ns/dev/sa/job"]}]]
  - [[{principals: [!Prefix "cluster.local/ns/ci/"], notPrincipals: [!Suffix "/sa/untrusted"]}]]
"#,
    );
    let ok = |id| allowed(&s, "10.1.1.1", Some(id), "10.0.1.1:80");
    assert!(ok(("front", "client")));
    assert!(!ok(("front", "banned")));
    assert!(ok(("ops", "admin")) && !ok(("ops", "intern")));
    assert!(ok(("batch", "job")) && !ok(("dev", "job")));
    assert!(ok(("ci", "runner")) && !ok(("ci", "untrusted")));
    assert!(
        !allowed(&s, "10.1.1.1", None, "10.0.1.1:80"),
        "plaintext has no identity"
    );
}

#[test]
fn ip_and_port_fields_and_their_not_forms() {
    let s = snap(
        r#"
- name: net
  namespace: shop
  scope: Namespace
  action: Allow
  rules:
  - [[{sourceIps: ["10.1.0.0/16"], notSourceIps: ["10.1.9.0/24"], destinationIps: ["10.0.1.1"], notDestinationPorts: [22]}]]
"#,
    );
    let ok = |src, dst| allowed(&s, src, None, dst);
    assert!(ok("10.1.2.3", "10.0.1.1:80"));
    assert!(!ok("10.1.9.3", "10.0.1.1:80"), "notSourceIps");
    assert!(!ok("10.2.0.1", "10.0.1.1:80"), "outside sourceIps");
    assert!(!ok("10.1.2.3", "10.0.1.2:80"), "destinationIps");
    assert!(!ok("10.1.2.3", "10.0.1.1:22"), "notDestinationPorts");
}

#[test]
fn clauses_and_rules_combine_like_ztunnel() {
    let s = snap(
        r#"
- name: combo
  namespace: shop
  scope: Namespace
  action: Allow
  rules:
  # rule 1: (ns front OR ns ops) AND port 80; the empty clause always holds
  - - [{namespaces: [!Exact front]}, {namespaces: [!Exact ops]}]
    - [{destinationPorts: [80]}]
    - []
  # rule 2: an empty match never holds
  - - [{}]
"#,
    );
    let ok = |ns, dst| allowed(&s, "10.1.1.1", Some((ns, "x")), dst);
    assert!(ok("front", "10.0.1.1:80") && ok("ops", "10.0.1.1:80"));
    assert!(!ok("front", "10.0.1.1:81"));
    assert!(!ok("dev", "10.0.1.1:80"));
}

#[test]
fn empty_rules_never_match_and_dry_run_is_not_enforced() {
    let s = snap(
        r#"
- {name: empty-deny, namespace: shop, scope: Namespace, action: Deny}
- {name: dry, namespace: shop, scope: Namespace, action: Deny, dryRun: true, rules: [[[{destinationPorts: [80]}]]]}
"#,
    );
    assert!(allowed(&s, "10.1.1.1", CLIENT, "10.0.1.1:80"));
    let s = snap("- {name: empty-allow, namespace: shop, scope: Namespace, action: Allow}\n");
    let d = decide(&s, "10.1.1.1", CLIENT, "10.0.1.1:80");
    assert_eq!(
        d,
        Decision::Deny {
            policy: "shop/empty-allow".into()
        }
    );
}

#[test]
fn string_matches_are_read_as_ztunnel_reads_them() {
    let parse = |y: &str| serde_yaml::from_str::<StringMatch>(y);
    assert_eq!(
        parse("!Exact foo*").unwrap(),
        StringMatch::Exact("foo*".into())
    );
    assert_eq!(
        parse("!Prefix \"a\"").unwrap(),
        StringMatch::Prefix("a".into())
    );
    assert_eq!(parse("!Suffix x").unwrap(), StringMatch::Suffix("x".into()));
    assert_eq!(parse("!Presence []").unwrap(), StringMatch::Presence);
    // ztunnel refuses these, so zring does too: a file must not look valid to one only.
    let refused = [
        "foo",
        "\"*\"",
        "{Exact: a}",
        "{Presence: {}}",
        "!Presence {}",
        "!Exact [a]",
        "!Other a",
    ];
    for refused in refused {
        assert!(parse(refused).is_err(), "{refused} must be refused");
    }
    for m in [StringMatch::Exact("e".into()), StringMatch::Presence] {
        let yaml = serde_yaml::to_string(&m).unwrap();
        assert!(yaml.starts_with('!'), "written with a tag: {yaml}");
        assert_eq!(parse(&yaml).unwrap(), m);
    }
    assert!(StringMatch::Presence.matches("x") && !StringMatch::Presence.matches(""));
    let bad = serde_yaml::from_str::<ServiceAccountMatch>("ns/sa");
    assert!(bad.is_err());
}

#[test]
fn a_listed_policy_applies_whatever_its_scope_and_an_unknown_one_is_skipped() {
    let yaml = r#"
workloads:
- {name: web, namespace: shop, workloadIps: [10.0.1.1], protocol: HBONE, authorizationPolicies: ["else/ns-deny", "shop/ghost"]}
- {name: db, namespace: shop, workloadIps: [10.0.1.2], protocol: HBONE}
policies:
- {name: ns-deny, namespace: else, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [7]}]]]}
"#;
    let s = Snapshot::new(LocalConfig::from_yaml("p.yaml", yaml).unwrap(), None).unwrap();
    assert!(
        !allowed(&s, "10.1.1.1", CLIENT, "10.0.1.1:7"),
        "listed by web"
    );
    assert!(
        allowed(&s, "10.1.1.1", CLIENT, "10.0.1.2:7"),
        "db lists nothing"
    );
    assert!(allowed(&s, "10.1.1.1", CLIENT, "10.0.1.1:8"));
    let web = s.workload_by_ip("10.0.1.1".parse().unwrap()).unwrap();
    assert_eq!(s.unknown_policies(web).collect::<Vec<_>>(), ["shop/ghost"]);
}
