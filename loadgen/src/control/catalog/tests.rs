use super::*;
use zring::config::Workload;

fn wl(uid: &str, ip: [u8; 4], sa: &str) -> Workload {
    Workload {
        uid: uid.into(),
        name: uid.into(),
        namespace: "ns".into(),
        service_account: sa.into(),
        workload_ips: vec![ip.into()].into(),
        ..Workload::default()
    }
}

fn config(ws: Vec<Workload>) -> LocalConfig {
    LocalConfig {
        workloads: ws,
        ..LocalConfig::default()
    }
}

fn id(sa: &str) -> Identity {
    Identity::new("cluster.local", "ns", sa)
}

#[test]
fn an_update_changes_only_what_it_names() {
    let mut c = Catalog::build(&config(vec![wl("a", [10, 0, 0, 1], "sa-a")]), &[]).unwrap();
    let put = Update {
        put: config(vec![wl("b", [10, 0, 0, 2], "sa-b")]),
        remove: vec![],
    };
    let ch = c.update(&put).unwrap();
    assert_eq!(ch.put.len(), 1);
    assert_eq!((ch.put[0].0, ch.put[0].1.as_str()), (ADDRESS_TYPE, "b"));
    assert!(ch.removed.is_empty());
    assert_eq!(c.resources(ADDRESS_TYPE).unwrap().1.len(), 2);
    assert!(c.serves_identity(&id("sa-b")));
    // The same body again is no change.
    assert!(c.update(&put).unwrap().is_empty());

    let gone = Update {
        remove: vec![(ADDRESS_TYPE, "b".into()), (ADDRESS_TYPE, "never".into())],
        ..Update::default()
    };
    let ch = c.update(&gone).unwrap();
    assert_eq!(ch.removed, vec![(ADDRESS_TYPE, "b".to_string())]);
    assert!(!c.serves_identity(&id("sa-b")));
    assert!(c.serves_identity(&id("sa-a")));
}

#[test]
fn a_name_removed_and_put_at_once_is_put() {
    let mut c = Catalog::build(&config(vec![wl("a", [10, 0, 0, 1], "sa-a")]), &[]).unwrap();
    let u = Update {
        put: config(vec![wl("a", [10, 0, 0, 9], "sa-x")]),
        remove: vec![(ADDRESS_TYPE, "a".into())],
    };
    let ch = c.update(&u).unwrap();
    assert_eq!(ch.put.len(), 1);
    assert!(ch.removed.is_empty(), "{ch:?}");
    assert!(c.serves_identity(&id("sa-x")));
    assert!(!c.serves_identity(&id("sa-a")));
}

#[test]
fn replacing_the_whole_configuration_yields_the_difference() {
    let (a, b) = (wl("a", [10, 0, 0, 1], "s"), wl("b", [10, 0, 0, 2], "s"));
    let mut c = Catalog::build(&config(vec![a.clone(), b]), &[]).unwrap();
    let a2 = wl("a", [10, 0, 0, 3], "s");
    let next = config(vec![a2, wl("c", [10, 0, 0, 4], "s")]);
    let ch = c.replace(Catalog::build(&next, &[]).unwrap());
    let mut put: Vec<&str> = ch.put.iter().map(|(_, n, _)| n.as_str()).collect();
    put.sort();
    assert_eq!(put, ["a", "c"]);
    assert_eq!(ch.removed, vec![(ADDRESS_TYPE, "b".to_string())]);
    // Raw resources of an unserved type are dropped; of a served one they are served.
    let raw = |t: &str| Raw {
        type_url: t.into(),
        name: "raw".into(),
        body: Any::default(),
    };
    let c = Catalog::build(&config(vec![a]), &[raw(AUTHORIZATION_TYPE), raw("x")]).unwrap();
    assert_eq!(c.resources(AUTHORIZATION_TYPE).unwrap().1.len(), 1);
    assert!(c.resources("x").is_none());
}
