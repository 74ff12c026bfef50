use super::*;
use crate::config::LocalConfig;

const YAML: &str = r#"workloads:
- uid: c//v1/Pod/default/sleep
  name: sleep
  namespace: default
  serviceAccount: sleep
  workloadIps: ["10.244.1.4"]
  protocol: HBONE
- uid: c//v1/Pod/default/httpbin
  name: httpbin
  namespace: default
  serviceAccount: httpbin
  workloadIps: ["10.244.2.5"]
  protocol: HBONE
"#;

fn snap() -> Snapshot {
    Snapshot::new(LocalConfig::from_yaml("t", YAML).unwrap(), None).unwrap()
}

#[test]
fn outbound_hbone_labels_name_both_workloads_and_mtls() {
    let s = snap();
    let route = Route::Hbone {
        hbone_addr: "10.244.2.5:15008".parse().unwrap(),
        authority: "10.244.2.5:8080".parse().unwrap(),
        dst_identity: Identity::new("cluster.local", "default", "httpbin"),
        service: Some("httpbin.default.svc.cluster.local".into()),
    };
    let l = Labels::outbound(&s, "10.244.1.4".parse().unwrap(), &route);
    assert_eq!(l.reporter, "source");
    assert_eq!(l.source_workload, "sleep");
    assert_eq!(
        l.source_principal,
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    assert_eq!(l.destination_workload, "httpbin");
    assert_eq!(
        l.destination_principal,
        "spiffe://cluster.local/ns/default/sa/httpbin"
    );
    assert_eq!(l.destination_service, "httpbin.default.svc.cluster.local");
    assert_eq!(l.connection_security_policy, "mutual_tls");
}

#[test]
fn plaintext_to_unknown_destination_is_unknown() {
    let s = snap();
    let route = Route::Passthrough {
        addr: "192.0.2.1:80".parse().unwrap(),
    };
    let l = Labels::outbound(&s, "10.244.1.4".parse().unwrap(), &route);
    assert_eq!(l.destination_workload, "unknown");
    assert_eq!(l.connection_security_policy, "unknown");
    let l = Labels::inbound(
        &s,
        "10.9.9.9".parse().unwrap(),
        None,
        "10.244.2.5".parse().unwrap(),
    );
    assert_eq!(
        (l.reporter, l.source_workload.as_str()),
        ("destination", "unknown")
    );
}

#[test]
fn counters_sum_per_label_set_across_cores_and_render() {
    let s = snap();
    let labels = Labels::inbound(
        &s,
        "10.244.1.4".parse().unwrap(),
        Some(&Identity::new("cluster.local", "default", "sleep")),
        "10.244.2.5".parse().unwrap(),
    );
    let mut agg = Aggregate::default();
    for sent in [10, 5] {
        let core = Metrics::default();
        let c = core.handle(labels.clone());
        c.opened();
        c.closed(&Ok(Transferred { up: 1, down: sent }));
        core.failed_early();
        agg.add(&core.snapshot());
    }
    let t = agg.totals();
    assert_eq!((t.opened, t.closed, t.sent_bytes, t.failed), (2, 2, 15, 2));
    let text = render(&agg);
    let line = text
        .lines()
        .find(|l| l.starts_with("istio_tcp_sent_bytes_total{"))
        .unwrap();
    assert!(line.contains("reporter=\"destination\""), "{line}");
    assert!(line.contains("source_workload=\"sleep\""), "{line}");
    assert!(
        line.contains("connection_security_policy=\"mutual_tls\""),
        "{line}"
    );
    assert!(line.ends_with(" 15"), "{line}");
    assert!(text.contains("# TYPE istio_tcp_received_bytes_total counter"));
}
