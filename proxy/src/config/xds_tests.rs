use zring_xds::delta::{Rejected, Update};
use zring_xds::discovery::Resource;

use super::super::test_fixtures::{HBONE_MD_EXAMPLE, MESH};
use super::*;

fn update(type_url: &str, items: &[(String, Any)], removed: &[&str]) -> Update {
    Update::new(
        type_url.into(),
        "n".into(),
        items
            .iter()
            .map(|(name, any)| Resource {
                name: name.clone(),
                version: "1".into(),
                resource: Some(any.clone()),
                ..Default::default()
            })
            .collect(),
        removed.iter().map(|s| s.to_string()).collect(),
    )
}

fn sorted(mut c: LocalConfig) -> LocalConfig {
    c.workloads
        .sort_by_key(|w| (w.namespace.clone(), w.name.clone()));
    c.services.sort_by_key(|s| s.key());
    c.policies.sort_by_key(|p| p.key());
    c
}

/// Serves a whole LocalConfig the way the control plane does and returns the store.
fn served(yaml: &str) -> (XdsStore, LocalConfig) {
    let local = LocalConfig::from_yaml("t.yaml", yaml).unwrap();
    let r = encode(&local).unwrap();
    let mut store = XdsStore::default();
    for u in [
        update(ADDRESS_TYPE, &r.addresses, &[]),
        update(AUTHORIZATION_TYPE, &r.authorizations, &[]),
    ] {
        let rejected = store.apply_and_publish(&u, |_| Ok::<(), String>(()));
        assert!(rejected.is_empty(), "{rejected:?}");
    }
    (store, local)
}

#[test]
fn a_local_config_survives_encoding_and_the_store() {
    for yaml in [HBONE_MD_EXAMPLE, MESH] {
        let (store, local) = served(yaml);
        assert_eq!(sorted(store.to_local_config()), sorted(local));
    }
}

#[test]
fn a_bad_resource_is_refused_by_name_and_the_rest_applies() {
    let local = LocalConfig::from_yaml("t.yaml", MESH).unwrap();
    let mut items = encode(&local).unwrap().addresses;
    let mut w = workload_to(&local.workloads[0]);
    w.addresses = vec![vec![10, 0, 0]];
    let bad = pw::Address {
        r#type: Some(pw::address::Type::Workload(w)),
    };
    items.push(("bad".into(), zring_xds::to_any(ADDRESS_TYPE, &bad)));
    let store = XdsStore::default();
    let (rejected, next) = store.apply(&update(ADDRESS_TYPE, &items, &[]));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].name, "bad");
    assert!(
        rejected[0].reason.contains("3 bytes"),
        "{}",
        rejected[0].reason
    );
    let next = next.unwrap().snapshot().to_local_config();
    assert_eq!(next.workloads.len(), local.workloads.len());
}

#[test]
fn a_lone_resource_that_breaks_the_config_is_refused_and_the_store_is_unchanged() {
    let (store, local) = served(MESH);
    let before = store.clone();
    // A second workload on an IP another workload already has.
    let mut dup = local.workloads[0].clone();
    dup.name = "impostor".into();
    dup.uid = "impostor".into();
    let a = pw::Address {
        r#type: Some(pw::address::Type::Workload(workload_to(&dup))),
    };
    let items = [("impostor".to_string(), zring_xds::to_any(ADDRESS_TYPE, &a))];
    let (rejected, next) = store.apply(&update(ADDRESS_TYPE, &items, &[]));
    assert!(next.is_none());
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].reason.contains("invalid"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(store, before);
}

fn address(name: &str, a: pw::address::Type) -> (String, Any) {
    let body = pw::Address { r#type: Some(a) };
    (name.to_string(), zring_xds::to_any(ADDRESS_TYPE, &body))
}

/// A new workload `name` on `ip`, like MESH's first one.
fn workload_on(local: &LocalConfig, name: &str, ip: &str) -> Workload {
    let mut w = local.workloads[0].clone();
    w.name = name.into();
    w.workload_ips = vec![ip.parse().unwrap()].into();
    w
}

#[test]
fn a_contradictory_resource_is_refused_by_name_and_the_good_one_applies() {
    let (mut store, local) = served(MESH);
    let good = workload_on(&local, "fresh", "10.244.1.99");
    // Claims sleep's IP.
    let bad = workload_on(&local, "impostor", "10.244.1.4");
    let items = [
        address("fresh", pw::address::Type::Workload(workload_to(&good))),
        address("impostor", pw::address::Type::Workload(workload_to(&bad))),
    ];
    let (rejected, config) = commit(&mut store, &update(ADDRESS_TYPE, &items, &[]));
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].name, "impostor");
    assert!(
        rejected[0].reason.contains("both claim IP 10.244.1.4"),
        "{}",
        rejected[0].reason
    );
    let config = config.expect("the good workload applies");
    let names: Vec<&str> = config.workloads.iter().map(|w| w.name.as_str()).collect();
    assert!(
        names.contains(&"fresh") && !names.contains(&"impostor"),
        "{names:?}"
    );
    assert!(config.validate().is_ok());
    assert_eq!(sorted(store.to_local_config()), sorted(config));
}

#[test]
fn a_workload_may_name_a_service_sent_after_it_beside_a_refused_resource() {
    let (mut store, local) = served(MESH);
    let mut svc = local.services[1].clone();
    svc.name = "new".into();
    svc.hostname = "new.legacy.svc.cluster.local".into();
    svc.vips[0].ip = "10.96.0.77".parse().unwrap();
    let mut w = workload_on(&local, "new-1", "10.244.1.98");
    w.services.insert(svc.key(), Default::default());
    let bad = workload_on(&local, "impostor", "10.244.1.4");
    let items = [
        address("new-1", pw::address::Type::Workload(workload_to(&w))),
        address("impostor", pw::address::Type::Workload(workload_to(&bad))),
        address(&svc.key(), pw::address::Type::Service(service_to(&svc))),
    ];
    let (rejected, config) = commit(&mut store, &update(ADDRESS_TYPE, &items, &[]));
    let names: Vec<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["impostor"]);
    let config = config.unwrap();
    assert!(config.workloads.iter().any(|w| w.name == "new-1"));
    assert!(config.services.iter().any(|s| s.name == "new"));
    assert!(!config.workloads.iter().any(|w| w.name == "impostor"));
}

#[test]
fn a_refused_removal_is_named_and_the_other_removal_applies() {
    let (mut store, _) = served(MESH);
    // httpbin-1..3 still name the httpbin service; nothing names the empty one.
    let gone = [
        "default/httpbin.default.svc.cluster.local",
        "default/empty.default.svc.cluster.local",
    ];
    let (rejected, config) = commit(&mut store, &update(ADDRESS_TYPE, &[], &gone));
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].name, gone[0]);
    assert!(rejected[0].reason.contains("removing this resource"));
    let services: Vec<String> = config.unwrap().services.iter().map(|s| s.key()).collect();
    assert!(services.contains(&gone[0].to_string()) && !services.contains(&gone[1].to_string()));
}

/// Applies `u` with a publish that always succeeds: (refused, whether anything changed).
fn commit(store: &mut XdsStore, u: &Update) -> (Vec<Rejected>, Option<LocalConfig>) {
    let mut published = None;
    let rejected = store.apply_and_publish(u, |c| {
        published = Some(c.to_local_config());
        Ok::<(), String>(())
    });
    (rejected, published)
}

#[test]
fn removal_drops_the_resource_and_a_repeat_changes_nothing() {
    let (mut store, _) = served(HBONE_MD_EXAMPLE);
    let gone = ["default/httpbin.default.svc.cluster.local"];
    // The workload still names the service, so removing it alone is refused...
    let (rejected, config) = commit(&mut store, &update(ADDRESS_TYPE, &[], &gone));
    assert!(config.is_none());
    assert_eq!(rejected[0].name, gone[0]);
    assert_eq!(store.to_local_config().services.len(), 1);
    // ...and together with the workload it applies.
    let both = ["cluster1//v1/Pod/default/sleep", gone[0]];
    let (rejected, config) = commit(&mut store, &update(ADDRESS_TYPE, &[], &both));
    assert!(rejected.is_empty());
    let config = config.unwrap();
    assert!(config.workloads.is_empty() && config.services.is_empty());
    let (_, again) = commit(&mut store, &update(ADDRESS_TYPE, &[], &both));
    assert!(again.is_none());
}

#[test]
fn a_failed_publish_leaves_the_store_as_it_was_and_a_resend_applies() {
    let (mut store, local) = served(MESH);
    let before = store.clone();
    let mut fresh = local.workloads[0].clone();
    fresh.name = "fresh".into();
    fresh.workload_ips = vec!["10.244.1.99".parse().unwrap()].into();
    let a = pw::Address {
        r#type: Some(pw::address::Type::Workload(workload_to(&fresh))),
    };
    let items = [("fresh".to_string(), zring_xds::to_any(ADDRESS_TYPE, &a))];
    let u = update(ADDRESS_TYPE, &items, &["legacy/legacy"]);
    let rejected = store.apply_and_publish(&u, |_| Err("cert dir unreadable"));
    assert_eq!(store, before, "the store moved ahead of the cores");
    let names: Vec<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["fresh", "legacy/legacy"]);
    assert!(rejected[0].reason.contains("cert dir unreadable"));
    // istiod sends it again (the version was not recorded): now it is kept.
    let (rejected, config) = commit(&mut store, &u);
    assert!(rejected.is_empty(), "{rejected:?}");
    let names = |c: &LocalConfig| c.workloads.iter().any(|w| w.name == "fresh");
    assert!(names(&config.unwrap()) && names(&store.to_local_config()));
}

#[test]
fn service_accounts_and_dry_run_travel_in_their_own_fields() {
    let sa = ServiceAccountMatch {
        namespace: "default".into(),
        service_account: "sleep".into(),
    };
    let m = Match {
        service_accounts: vec![sa.clone()],
        not_service_accounts: vec![sa],
        principals: vec![StringMatch::Presence],
        ..Match::default()
    };
    let back = match_from(&match_to(&m).unwrap()).unwrap();
    assert_eq!(back, m);
    let p = Policy {
        name: "dry".into(),
        namespace: "default".into(),
        scope: Scope::WorkloadSelector,
        action: Action::Deny,
        rules: vec![vec![vec![m]]],
        dry_run: true,
        selector: None,
    };
    assert_eq!(policy_from(policy_to(&p).unwrap()).unwrap(), p);
}

#[test]
fn bodies_of_the_wrong_type_or_shape_are_refused_with_a_reason() {
    let any = Any {
        type_url: AUTHORIZATION_TYPE.into(),
        value: vec![],
    };
    assert!(decode_address(&any).unwrap_err().contains("expected"));
    let any = Any {
        type_url: ADDRESS_TYPE.into(),
        value: vec![0xff, 0xff],
    };
    assert!(decode_address(&any).unwrap_err().contains("not an Address"));
    let empty = zring_xds::to_any(ADDRESS_TYPE, &pw::Address::default());
    assert!(decode_address(&empty).unwrap_err().contains("neither"));
}

#[test]
/// Trying 2000 changes one at a time took 15 s in a debug build; halving takes ~22 tries.
fn a_large_update_with_one_bad_resource_applies_the_rest() {
    let (mut store, local) = served(MESH);
    let mut items: Vec<(String, Any)> = (0..2000u32)
        .map(|i| {
            let ip = format!("10.245.{}.{}", i / 250, i % 250 + 1);
            let w = workload_on(&local, &format!("bulk-{i}"), &ip);
            address(
                &format!("bulk-{i}"),
                pw::address::Type::Workload(workload_to(&w)),
            )
        })
        .collect();
    let bad = workload_on(&local, "impostor", "10.244.1.4");
    items.insert(
        1000,
        address("impostor", pw::address::Type::Workload(workload_to(&bad))),
    );
    let (rejected, config) = commit(&mut store, &update(ADDRESS_TYPE, &items, &[]));
    let names: Vec<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["impostor"]);
    assert_eq!(
        config.unwrap().workloads.len(),
        local.workloads.len() + 2000
    );
}

#[test]
fn par_map_keeps_order_across_threads() {
    let items: Vec<usize> = (0..5 * PAR_CHUNK + 7).collect();
    let threads = std::sync::Mutex::new(std::collections::HashSet::new());
    let out = par_map(&items, |i| {
        threads.lock().unwrap().insert(std::thread::current().id());
        i * 2
    })
    .concat();
    assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        assert!(threads.lock().unwrap().len() > 1, "one thread decoded all");
    }
    let few: Vec<usize> = (0..10).collect();
    assert_eq!(
        par_map(&few, |i| i + 1).concat(),
        (1..11).collect::<Vec<_>>()
    );
}

#[test]
/// Beyond `PAR_CHUNK` resources decoding is split over threads: a bad resource in the
/// second half is still refused by name, in order with the rest.
fn a_bad_resource_in_a_split_update_is_refused_by_name() {
    let (mut store, local) = served(MESH);
    let mut items: Vec<(String, Any)> = (0..3 * PAR_CHUNK as u32)
        .map(|i| {
            let ip = format!("10.{}.{}.{}", 100 + i / 62500, i / 250 % 250, i % 250 + 1);
            let w = workload_on(&local, &format!("bulk-{i}"), &ip);
            address(
                &format!("bulk-{i}"),
                pw::address::Type::Workload(workload_to(&w)),
            )
        })
        .collect();
    let at = items.len() - 10;
    items[at].1.value = vec![0xff, 0xff];
    let (rejected, config) = commit(&mut store, &update(ADDRESS_TYPE, &items, &[]));
    let names: Vec<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [items[at].0.as_str()]);
    assert!(
        rejected[0].reason.contains("not an Address"),
        "{rejected:?}"
    );
    let n = config.unwrap().workloads.len();
    assert_eq!(n, local.workloads.len() + items.len() - 1);
}
