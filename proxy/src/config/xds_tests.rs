use zring_xds::delta::Update;
use zring_xds::discovery::Resource;

use super::super::test_fixtures::{HBONE_MD_EXAMPLE, MESH};
use super::*;

fn update(type_url: &str, items: &[(String, Any)], removed: &[&str]) -> Update {
    Update {
        type_url: type_url.into(),
        nonce: "n".into(),
        upserts: items
            .iter()
            .map(|(name, any)| Resource {
                name: name.clone(),
                version: "1".into(),
                resource: Some(any.clone()),
                ..Default::default()
            })
            .collect(),
        removed: removed.iter().map(|s| s.to_string()).collect(),
    }
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
    let (rejected, _) = store.apply(&update(ADDRESS_TYPE, &r.addresses, &[]));
    assert!(rejected.is_empty(), "{rejected:?}");
    let (rejected, _) = store.apply(&update(AUTHORIZATION_TYPE, &r.authorizations, &[]));
    assert!(rejected.is_empty(), "{rejected:?}");
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
    let mut store = XdsStore::default();
    let (rejected, config) = store.apply(&update(ADDRESS_TYPE, &items, &[]));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].name, "bad");
    assert!(
        rejected[0].reason.contains("3 bytes"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(config.unwrap().workloads.len(), local.workloads.len());
}

#[test]
fn an_update_that_breaks_the_config_is_refused_whole_and_the_store_is_unchanged() {
    let (mut store, local) = served(MESH);
    let before = store.clone();
    // A second workload on an IP another workload already has.
    let mut dup = local.workloads[0].clone();
    dup.name = "impostor".into();
    dup.uid = "impostor".into();
    let a = pw::Address {
        r#type: Some(pw::address::Type::Workload(workload_to(&dup))),
    };
    let items = [("impostor".to_string(), zring_xds::to_any(ADDRESS_TYPE, &a))];
    let (rejected, config) = store.apply(&update(ADDRESS_TYPE, &items, &[]));
    assert!(config.is_none());
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].reason.contains("invalid"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(store, before);
}

#[test]
fn removal_drops_the_resource_and_a_repeat_changes_nothing() {
    let (mut store, _) = served(HBONE_MD_EXAMPLE);
    let gone = ["default/httpbin.default.svc.cluster.local"];
    // The workload still names the service, so removing it alone is refused...
    let (rejected, config) = store.apply(&update(ADDRESS_TYPE, &[], &gone));
    assert!(config.is_none());
    assert_eq!(rejected[0].name, gone[0]);
    assert_eq!(store.to_local_config().services.len(), 1);
    // ...and together with the workload it applies.
    let both = ["cluster1//v1/Pod/default/sleep", gone[0]];
    let (rejected, config) = store.apply(&update(ADDRESS_TYPE, &[], &both));
    assert!(rejected.is_empty());
    let config = config.unwrap();
    assert!(config.workloads.is_empty() && config.services.is_empty());
    let (_, again) = store.apply(&update(ADDRESS_TYPE, &[], &both));
    assert!(again.is_none());
}

#[test]
fn service_accounts_travel_as_principal_suffixes() {
    let sa = ServiceAccountMatch {
        namespace: "default".into(),
        service_account: "sleep".into(),
    };
    let m = Match {
        service_accounts: vec![sa.clone()],
        ..Match::default()
    };
    let sent = match_to(&m).unwrap();
    let back = match_from(&sent).unwrap();
    assert_eq!(
        back.principals,
        [StringMatch::Suffix("/ns/default/sa/sleep".into())]
    );
    let both = Match {
        principals: vec![StringMatch::Presence],
        ..m
    };
    assert!(match_to(&both)
        .unwrap_err()
        .contains("both principals and service accounts"));
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
