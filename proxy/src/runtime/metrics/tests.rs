use super::*;
use crate::config::LocalConfig;
use crate::error::ResponseFlag;
use testsupport::prom::families;

const YAML: &str = r#"workloads:
- uid: c//v1/Pod/default/sleep
  name: sleep-7d9c
  workloadName: sleep
  canonicalName: sleep-svc
  canonicalRevision: v2
  clusterId: Kubernetes
  locality: {region: eu-west1, zone: eu-west1-b, subzone: rack3}
  namespace: default
  serviceAccount: sleep
  workloadIps: ["10.244.1.4"]
  protocol: HBONE
- uid: c//v1/Pod/default/httpbin
  name: httpbin-55f8
  workloadName: httpbin
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
    assert_eq!(l.source.workload, "sleep");
    assert_eq!(
        l.source.principal,
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    assert_eq!(l.destination.workload, "httpbin");
    assert_eq!(
        l.destination.principal,
        "spiffe://cluster.local/ns/default/sa/httpbin"
    );
    assert_eq!(l.destination_service, "httpbin.default.svc.cluster.local");
    assert_eq!(l.connection_security_policy, "mutual_tls");
}

#[test]
fn workload_labels_derive_from_local_config_fields_as_ztunnel_does() {
    let s = snap();
    let route = Route::Passthrough {
        addr: "10.244.2.5:8080".parse().unwrap(),
    };
    let l = Labels::outbound(&s, "10.244.1.4".parse().unwrap(), &route);
    let src = &l.source;
    // workloadName, not the pod name; canonicalName feeds both canonical_service and app.
    assert_eq!(src.workload, "sleep");
    assert_eq!(
        (src.canonical_service.as_str(), src.app.as_str()),
        ("sleep-svc", "sleep-svc")
    );
    assert_eq!(
        (src.canonical_revision.as_str(), src.version.as_str()),
        ("v2", "v2")
    );
    assert_eq!(src.cluster, "Kubernetes");
    assert_eq!(
        (src.region.as_str(), src.zone.as_str()),
        ("eu-west1", "eu-west1-b")
    );
    // Absent fields render `unknown`, as ztunnel's DefaultedUnknown does.
    let dst = &l.destination;
    assert_eq!(dst.workload, "httpbin");
    for v in [
        &dst.canonical_service,
        &dst.canonical_revision,
        &dst.app,
        &dst.version,
    ] {
        assert_eq!(v, "unknown");
    }
    for v in [&dst.cluster, &dst.region, &dst.zone] {
        assert_eq!(v, "unknown");
    }
    let text = render::label_text(&l, ResponseFlag::None);
    for want in [
        "source_canonical_service=\"sleep-svc\"",
        "source_version=\"v2\"",
        "source_cluster=\"Kubernetes\"",
        "source_zone=\"eu-west1-b\"",
        "destination_region=\"unknown\"",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
}

#[test]
fn plaintext_to_unknown_destination_is_unknown() {
    let s = snap();
    let route = Route::Passthrough {
        addr: "192.0.2.1:80".parse().unwrap(),
    };
    let l = Labels::outbound(&s, "10.244.1.4".parse().unwrap(), &route);
    assert_eq!(l.destination.workload, "unknown");
    assert_eq!(l.connection_security_policy, "unknown");
    let l = Labels::inbound(
        &s,
        "10.9.9.9".parse().unwrap(),
        None,
        "10.244.2.5".parse().unwrap(),
    );
    assert_eq!(
        (l.reporter, l.source.workload.as_str()),
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

#[test]
fn every_ztunnel_label_key_is_rendered_and_failed_has_total() {
    let s = snap();
    let route = Route::Passthrough {
        addr: "10.244.2.5:8080".parse().unwrap(),
    };
    let l = Labels::outbound(&s, "10.244.1.4".parse().unwrap(), &route);
    let text = render::label_text(&l, ResponseFlag::None);
    let keys: Vec<&str> = text
        .split(',')
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    assert_eq!(keys.len(), 27, "{text}");
    for k in [
        "source_canonical_service",
        "destination_zone",
        "response_flags",
    ] {
        assert!(keys.contains(&k), "{k} missing from {text}");
    }
    assert!(text.contains("source_workload=\"sleep\""), "{text}");
    assert!(
        text.contains("destination_canonical_revision=\"unknown\""),
        "{text}"
    );
    let mut agg = Aggregate::default();
    let core = Metrics::default();
    core.handle(l).opened();
    agg.add(&core.snapshot());
    let page = render(&agg);
    assert!(
        page.contains("\nistio_tcp_connections_failed_total{"),
        "{page}"
    );
    assert!(
        page.contains("\nistio_tcp_sockets_open{reporter=\"source\"} 1\n"),
        "{page}"
    );
    assert!(page.contains("# TYPE istio_build gauge"), "{page}");
}

#[test]
fn service_hostname_splits_into_name_and_namespace() {
    assert_eq!(
        render::service_parts("httpbin.default.svc.cluster.local"),
        ("httpbin", "default")
    );
    assert_eq!(render::service_parts("unknown"), ("unknown", "unknown"));
}

#[test]
fn proc_limits_and_stat_parse() {
    let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                  Max open files            1024                 524288               files\n";
    assert_eq!(process::parse_max_fds(limits), Some(1024));
    let stat = "42 (my (odd) proc) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 \
                123 1000000 300 18446744073709551615";
    assert_eq!(process::parse_stat(stat, 100.0), Some((4.0, 300)));
    assert!(process::Sample::read().open_fds.unwrap() > 0);
}

/// Strict text-format 0.0.4 check: every sample belongs to the family of the last
/// `# TYPE`, names and label keys are valid identifiers, label values are quoted.
fn check_exposition(text: &str) -> Result<usize, String> {
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    let (mut family, mut samples) = (String::new(), 0);
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').ok_or(line)?;
            if !["counter", "gauge"].contains(&kind) || !ident(name) {
                return Err(line.into());
            }
            family = name.to_string();
        } else if !line.starts_with("# HELP ") {
            let (series, value) = line.rsplit_once(' ').ok_or(line)?;
            value.parse::<f64>().map_err(|_| line.to_string())?;
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            if name != family {
                return Err(format!("{line}: not in family {family}"));
            }
            for kv in labels
                .strip_suffix('}')
                .ok_or(line)?
                .split(',')
                .filter(|s| !s.is_empty())
            {
                let (k, v) = kv.split_once('=').ok_or(line)?;
                if !(ident(k) && v.len() >= 2 && v.starts_with('"') && v.ends_with('"')) {
                    return Err(format!("{line}: bad label {kv}"));
                }
            }
            samples += 1;
        }
    }
    Ok(samples)
}

#[test]
fn exposition_is_strict_text_format() {
    let s = snap();
    let mut agg = Aggregate::default();
    let core = Metrics::default();
    let l = Labels::inbound(
        &s,
        "10.244.1.4".parse().unwrap(),
        None,
        "10.244.2.5".parse().unwrap(),
    );
    core.handle(l).opened();
    agg.add(&core.sample(2, std::time::Duration::from_millis(1500)));
    agg.add(&core.snapshot());
    let text = render(&agg);
    assert!(check_exposition(&text).unwrap() >= 10, "{text}");
    // Per-core gauges: one series per core, the open connection counted on core 0.
    for want in [
        "zring_core_connections{core=\"0\"} 1\n",
        "zring_core_connections{core=\"1\"} 0\n",
        "zring_core_hbone_streams{core=\"0\"} 0\n",
        "zring_core_pooled_hbone_connections{core=\"0\"} 2\n",
        "zring_core_busy_seconds_total{core=\"0\"} 1.500000\n",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    assert!(check_exposition("# TYPE a counter\nb 1\n").is_err());
    assert!(check_exposition("# TYPE a counter\na{k=v} 1\n").is_err());
}

/// `ztunnel_scrape.txt`: the istio_* families of ztunnel `62d826530e5c`'s /metrics after
/// SOCKS5 traffic (one sample each), captured from the real binary.
#[test]
fn zring_exposes_every_istio_family_and_label_key_of_ztunnel() {
    let s = snap();
    let mut agg = Aggregate::default();
    let core = Metrics::default();
    let route = Route::Passthrough {
        addr: "10.244.2.5:8080".parse().unwrap(),
    };
    core.handle(Labels::outbound(&s, "10.244.1.4".parse().unwrap(), &route))
        .opened();
    agg.add(&core.snapshot());
    let ours = families(&render(&agg));
    let theirs = families(include_str!("ztunnel_scrape.txt"));
    assert_eq!(theirs.len(), 7, "{theirs:?}");
    for (name, (kind, keys)) in &theirs {
        let (our_kind, our_keys) = ours.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(our_kind, kind, "{name}");
        let missing: Vec<_> = keys.difference(our_keys).collect();
        assert!(missing.is_empty(), "{name} lacks {missing:?}");
    }
    assert_eq!(theirs["istio_tcp_connections_opened_total"].1.len(), 27);
}

#[test]
fn denied_and_refused_closes_carry_ztunnels_response_flags() {
    let s = snap();
    let labels = Labels::inbound(
        &s,
        "10.9.9.9".parse().unwrap(),
        None,
        "10.244.2.5".parse().unwrap(),
    );
    let core = Metrics::default();
    let c = core.handle(labels);
    let dst: std::net::SocketAddr = "10.244.2.5:80".parse().unwrap();
    for result in [
        Ok(Transferred { up: 1, down: 1 }),
        Err(ProxyError::Denied {
            dst,
            policy: "ns/p".into(),
        }),
        Err(ProxyError::ConnectTimeout { addr: dst }),
        Err(ProxyError::NotLocal(dst.ip())),
    ] {
        c.opened();
        c.closed(&result);
    }
    let mut agg = Aggregate::default();
    agg.add(&core.snapshot());
    let text = render(&agg);
    let value = |family: &str, flag: &str| -> Option<String> {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{family}{{"))
                    && l.contains(&format!("response_flags=\"{flag}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    let closed = "istio_tcp_connections_closed_total";
    let failed = "istio_tcp_connections_failed_total";
    assert_eq!(value(closed, "-").as_deref(), Some("2"), "{text}");
    assert_eq!(value(closed, "DENY").as_deref(), Some("1"), "{text}");
    assert_eq!(value(closed, "CONNECT").as_deref(), Some("1"), "{text}");
    assert_eq!(value(failed, "-").as_deref(), Some("1"), "{text}");
    assert_eq!(value(failed, "DENY").as_deref(), Some("1"), "{text}");
    // Opens are counted before the outcome is known: `-` only.
    let opened = "istio_tcp_connections_opened_total";
    assert_eq!(value(opened, "-").as_deref(), Some("4"), "{text}");
    assert_eq!(value(opened, "DENY"), None, "{text}");
}

#[test]
fn ca_and_xds_health_render_every_series_and_count_by_outcome() {
    let m = ControlMetrics::default();
    let zero = render(&Aggregate::default());
    check_exposition(&zero).unwrap();
    for want in [
        "zring_ca_certificate_requests_total{outcome=\"failure\"} 0\n",
        "zring_xds_connected 0\n",
        "zring_xds_updates_total{type_url=\"type.googleapis.com/istio.security.Authorization\",outcome=\"nack\"} 0\n",
    ] {
        assert!(zero.contains(want), "{want} in {zero}");
    }
    m.ca_request(true);
    m.ca_request(true);
    m.ca_request(false);
    m.set_xds_connected(true);
    m.xds_update(zring_xds::ADDRESS_TYPE, false);
    m.xds_update(zring_xds::ADDRESS_TYPE, true);
    m.xds_update(zring_xds::AUTHORIZATION_TYPE, false);
    m.xds_update("type.googleapis.com/unsubscribed", false);
    let agg = Aggregate {
        control: m.sample(),
        ..Aggregate::default()
    };
    let text = render(&agg);
    check_exposition(&text).unwrap();
    for want in [
        "zring_ca_certificate_requests_total{outcome=\"success\"} 2\n",
        "zring_ca_certificate_requests_total{outcome=\"failure\"} 1\n",
        "zring_xds_connected 1\n",
        "zring_xds_updates_total{type_url=\"type.googleapis.com/istio.workload.Address\",outcome=\"ack\"} 1\n",
        "zring_xds_updates_total{type_url=\"type.googleapis.com/istio.workload.Address\",outcome=\"nack\"} 1\n",
        "zring_xds_updates_total{type_url=\"type.googleapis.com/istio.security.Authorization\",outcome=\"ack\"} 1\n",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    m.set_xds_connected(false);
    assert!(!m.sample().xds_connected);
}
