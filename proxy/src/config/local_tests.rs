use std::net::IpAddr;

use super::super::policy::{Action, Scope};
use super::super::test_fixtures::HBONE_MD_EXAMPLE;
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn parse(yaml: &str) -> Result<LocalConfig, ConfigError> {
    LocalConfig::from_yaml("test.yaml", yaml)
}

/// The problems of an invalid config, as display strings.
fn problems(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.0.iter().map(|e| e.to_string()).collect()
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn parses_the_hbone_md_example() {
    let cfg = parse(HBONE_MD_EXAMPLE).unwrap();
    let w = &cfg.workloads[0];
    assert_eq!(w.uid, "cluster1//v1/Pod/default/sleep");
    assert_eq!(
        (w.name.as_str(), w.namespace.as_str()),
        ("sleep", "default")
    );
    assert_eq!(w.service_account, "sleep");
    assert_eq!(w.trust_domain, "cluster.local");
    assert_eq!(w.workload_ips, vec![ip("10.244.1.4")].into());
    assert_eq!(w.protocol, Protocol::Hbone);
    assert_eq!(w.node, "node-a");
    let ports = &w.services["default/httpbin.default.svc.cluster.local"];
    assert_eq!(ports.get(&8000), Some(&8080));

    let s = &cfg.services[0];
    assert_eq!(s.hostname, "httpbin.default.svc.cluster.local");
    assert_eq!(s.key(), "default/httpbin.default.svc.cluster.local");
    assert_eq!(
        s.vips,
        vec![NetworkAddress {
            network: String::new(),
            ip: ip("10.96.0.105")
        }]
    );
    assert_eq!(s.ports.get(&8000), Some(&8080));

    let p = &cfg.policies[0];
    assert_eq!((p.scope, p.action), (Scope::Namespace, Action::Allow));
    assert_eq!(p.rules[0][0][0].not_destination_ports, vec![9999]);
}

#[test]
fn applies_ztunnel_defaults_and_ignores_its_extra_fields() {
    let cfg = parse(
        r#"
workloads:
- name: a
  namespace: ns
  trustDomain: ""
  workloadIps: ["10.0.0.1"]
  canonicalName: a-svc
  canonicalRevision: v1
  workloadName: a-deploy
  workloadType: deployment
  status: Healthy
  network: ""
  clusterId: Kubernetes
  locality: {region: r, zone: z, subzone: sz}
  capacity: 1
  authorizationPolicies: []
services:
- hostname: s.ns.svc.cluster.local
  namespace: ns
  subjectAltNames: []
  endpoints: {}
"#,
    )
    .unwrap();
    let w = &cfg.workloads[0];
    assert_eq!(w.trust_domain, DEFAULT_TRUST_DOMAIN);
    assert_eq!(w.service_account, DEFAULT_SERVICE_ACCOUNT);
    assert_eq!(w.protocol, Protocol::Tcp);
    assert!(cfg.policies.is_empty());
    let metric_fields = (
        w.workload_name.as_str(),
        w.canonical_name.as_str(),
        w.canonical_revision.as_str(),
        w.cluster_id.as_str(),
    );
    assert_eq!(metric_fields, ("a-deploy", "a-svc", "v1", "Kubernetes"));
    assert_eq!(
        (
            w.locality.region.as_str(),
            w.locality.zone.as_str(),
            w.locality.subzone.as_str()
        ),
        ("r", "z", "sz")
    );
}

#[test]
fn locality_needs_all_three_keys_like_ztunnel() {
    let yaml = "workloads:\n- {name: a, namespace: ns, locality: {region: r, zone: z}}\n";
    let msg = parse(yaml).unwrap_err().to_string();
    assert!(
        msg.contains("test.yaml") && msg.contains("subzone"),
        "{msg}"
    );
}

#[test]
fn yaml_error_names_file_line_and_field() {
    let yaml = "workloads:\n- name: a\n  namespace: ns\n  protocol: HBONEX\n";
    let err = parse(yaml).unwrap_err();
    let ConfigError::Yaml { line, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*line, 4);
    let msg = err.to_string();
    assert!(msg.starts_with("test.yaml:4:"), "{msg}");
    assert!(msg.contains("protocol"), "{msg}");
    assert!(msg.contains("HBONEX"), "{msg}");
}

#[test]
fn misspelled_field_is_reported_with_its_line() {
    let yaml = "workloads:\n- name: a\n  namespace: ns\n  serviceAcount: sleep\n";
    let msg = parse(yaml).unwrap_err().to_string();
    assert!(msg.starts_with("test.yaml:4:"), "{msg}");
    assert!(msg.contains("serviceAcount"), "{msg}");
}

#[test]
fn missing_required_field_is_named() {
    let msg = parse("workloads:\n- name: a\n  workloadIps: [10.0.0.1]\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("namespace"), "{msg}");
    assert!(msg.starts_with("test.yaml:2:"), "{msg}");
}

#[test]
fn reports_all_semantic_problems_at_once() {
    let found = problems(
        r#"
workloads:
- {name: a, namespace: ns, workloadIps: [10.0.0.1], services: {"ns/nope.svc": {}}}
- {name: b, namespace: ns, workloadIps: [10.0.0.1], serviceAccount: "x/y"}
- {name: c, namespace: ns, services: {"noslash": {}}, authorizationPolicies: ["ns/ghost"]}
services:
- {hostname: s1.svc, namespace: ns, vips: ["/10.96.0.1", "net/not-an-ip"], ports: {0: 80}}
- {hostname: s2.svc, namespace: ns, vips: ["10.96.0.1"]}
policies:
- {name: p, namespace: ns, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [0]}]]]}
"#,
    );
    let expect = [
        "service s1.svc: VIP \"net/not-an-ip\"",
        "workload ns/a: services entry \"ns/nope.svc\" names no service",
        "workload ns/b: serviceAccount \"x/y\" contains '/'",
        "workloads ns/a and ns/b both claim IP 10.0.0.1",
        "workload ns/c: services key \"noslash\"",
        "service s1.svc: ports entry 0: 80 has port 0",
        "services s1.svc and s2.svc both claim VIP 10.96.0.1",
        "policy ns/p: rules[0][0][0] destination ports has port 0",
    ];
    for e in expect {
        assert!(
            found.iter().any(|f| f.starts_with(e)),
            "missing {e:?} in {found:#?}"
        );
    }
    assert!(
        !found.iter().any(|f| f.contains("ns/ghost")),
        "a policy named but not defined is skipped, as in ztunnel, not refused: {found:#?}"
    );
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

#[test]
fn duplicates_are_reported() {
    let found = problems(
        r#"
workloads:
- {uid: u1, namespace: ns}
- {uid: u1, namespace: ns}
- {namespace: ns}
services:
- {hostname: h, namespace: ns}
- {hostname: h, namespace: other}
"#,
    );
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("workload u1 is defined twice")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("service hostname h is defined twice")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("name (or uid) must not be empty")),
        "{found:#?}"
    );
}

#[test]
fn invalid_display_lists_file_and_count() {
    let err = parse("workloads:\n- {name: a, namespace: \"\"}\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("test.yaml: 1 problem(s):\n  - workload /a: namespace"),
        "{msg}"
    );
}

#[test]
fn empty_and_garbage_input_are_errors_not_panics() {
    assert!(parse("").unwrap_err().to_string().contains("empty"));
    assert!(parse("{}").unwrap().workloads.is_empty());
    for bytes in [
        &b"\xff\xfe"[..],
        b"workloads: [",
        b"- a\n- b",
        b"workloads: 3",
        b"::",
    ] {
        assert!(parse_local_config_bytes(bytes).is_err(), "{bytes:?}");
    }
}

#[test]
fn load_names_the_path() {
    let dir = std::env::temp_dir().join(format!("zring-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(&path, "workloads:\n- name: [\n").unwrap();
    let msg = LocalConfig::load(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    std::fs::write(&path, HBONE_MD_EXAMPLE).unwrap();
    assert_eq!(LocalConfig::load(&path).unwrap().workloads.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
    let msg = LocalConfig::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("cannot read workload config") && msg.contains("bad.yaml"),
        "{msg}"
    );
}

#[test]
fn network_address_forms() {
    let a: NetworkAddress = "net1/10.0.0.1".parse().unwrap();
    assert_eq!((a.network.as_str(), a.ip), ("net1", ip("10.0.0.1")));
    assert_eq!(a.to_string(), "net1/10.0.0.1");
    let b: NetworkAddress = "fd00::1".parse().unwrap();
    assert_eq!(b.to_string(), "/fd00::1");
    assert!("/".parse::<NetworkAddress>().is_err());
}

#[test]
fn serialized_config_reads_back_identically() {
    let yaml = format!(
        "{}{}",
        super::super::test_fixtures::MESH,
        r#"
policies:
- name: everything
  namespace: default
  scope: WorkloadSelector
  action: Deny
  dryRun: true
  selector: {workloads: [sleep]}
  rules:
  - - - namespaces: [!Exact "a", !Prefix "b", !Suffix "c", !Presence []]
        notServiceAccounts: [{namespace: ns, serviceAccount: sa}, {namespace: n2, serviceAccount: s2}]
        principals: [!Exact "td/ns/x/sa/y"]
        sourceIps: ["10.0.0.0/8", "fd00::1"]
        notDestinationIps: ["192.0.2.0/24"]
        destinationPorts: [80, 443]
    - []
"#
    );
    let cfg = parse(&yaml).unwrap();
    let dumped = serde_yaml::to_string(&cfg).unwrap();
    let again = LocalConfig::from_yaml("dump.yaml", &dumped).unwrap();
    assert_eq!(again, cfg, "{dumped}");
}

#[test]
fn every_truncation_and_byte_flip_of_the_example_is_handled() {
    let bytes = HBONE_MD_EXAMPLE.as_bytes();
    for end in 0..bytes.len() {
        let _ = parse_local_config_bytes(&bytes[..end]);
    }
    for i in (0..bytes.len()).step_by(7) {
        let mut flipped = bytes.to_vec();
        flipped[i] ^= 0x20;
        let _ = parse_local_config_bytes(&flipped);
    }
    assert!(parse_local_config_bytes(bytes).is_ok());
}
