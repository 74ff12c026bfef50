use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::super::local::{LocalConfig, NetworkAddress, Service, Workload};
use super::*;

/// Workload `i` of a cluster of `services`, behind service `i % services`; half of the
/// workloads are on node `n1`.
fn workload(i: usize, services: usize) -> Workload {
    Workload {
        uid: format!("c/w{i}").as_str().into(),
        name: format!("w{i}").as_str().into(),
        namespace: "ns".into(),
        service_account: format!("sa{}", i % 7).into(),
        node: ["n1", "n2"][i % 2].into(),
        workload_ips: vec![IpAddr::from([10, 1, (i >> 8) as u8, i as u8])].into(),
        services: [(
            format!("ns/s{}.ns", i % services),
            BTreeMap::from([(80, 8080)]),
        )]
        .into_iter()
        .collect(),
        ..Workload::default()
    }
}

fn service(s: usize) -> Service {
    Service {
        name: format!("s{s}"),
        namespace: "ns".into(),
        hostname: format!("s{s}.ns"),
        vips: vec![NetworkAddress {
            network: String::new(),
            ip: IpAddr::from([10, 96, (s >> 8) as u8, s as u8]),
        }],
        ports: BTreeMap::from([(80, 8080)]),
        waypoint: None,
    }
}

/// A cluster large enough to be built on two threads, with services longer than a
/// list searched without an index.
fn cluster() -> LocalConfig {
    let n = 2 * SPLIT;
    LocalConfig {
        workloads: (0..n).map(|i| workload(i, SERVICES)).collect(),
        services: (0..SERVICES).map(service).collect(),
        policies: Vec::new(),
    }
}

/// `local`'s changes against the blank generation.
fn changes(local: LocalConfig) -> Vec<Change> {
    let (changes, errs) = Snapshot::empty(Some("n1")).diff(local);
    assert!(errs.is_empty(), "{errs}");
    changes
}

/// Built at once and one by one.
fn both(changes: &[Change]) -> [Result<(Snapshot, bool), ConfigErrors>; 2] {
    let blank = Snapshot::empty(Some("n1"));
    let refs: Vec<&Change> = changes.iter().collect();
    [blank.try_build(&refs), blank.apply_each(changes)]
}

/// What a generation answers, with every order the data path sees.
fn view(s: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> =
        s.ix.endpoints
            .iter()
            .map(|(k, e)| {
                let names: Vec<&Name> = e.names().collect();
                format!("{k} {names:?}")
            })
            .collect();
    out.extend(s.ix.by_ip.iter().map(|(ip, o)| {
        let names: Vec<&Name> = o.all().iter().map(|w| &w.name).collect();
        format!("{ip} {names:?}")
    }));
    out.extend(
        s.ix.by_vip
            .iter()
            .map(|(ip, o)| format!("{ip} {}", o.first().name)),
    );
    out.extend(s.ix.local.keys().map(|n| format!("local {n}")));
    out.sort();
    out.push(format!("{:?}", s.local_identities()));
    out
}

#[test]
fn a_large_cold_start_built_on_two_threads_is_the_one_applied_one_by_one() {
    let changes = changes(cluster());
    assert!(changes.len() >= SPLIT);
    let [built, each] = both(&changes);
    let ((built, bc), (each, ec)) = (built.unwrap(), each.unwrap());
    assert!(bc && ec);
    assert_eq!(built, each);
    assert_eq!(view(&built), view(&each));
    assert_eq!(built.ix.endpoints.size(), SERVICES);
    assert_eq!(built.ix.local.size(), SPLIT);
    let svc = service(3);
    let eps = built.endpoints(&svc);
    assert!(eps.len() > super::super::index::SCAN_MAX);
    assert!(eps
        .iter()
        .all(|e| e.workload().services.contains_key("ns/s3.ns")));
}

const SERVICES: usize = 200;

#[test]
fn a_large_cold_start_finds_every_problem_one_by_one_finds() {
    let mut local = cluster();
    // Two workloads of one IP, a workload naming a service nobody sends, two services of
    // one VIP and a workload of bad identity.
    local.workloads[5].workload_ips = local.workloads[6].workload_ips.clone();
    local.workloads[7].services = [("ns/gone.ns".to_string(), BTreeMap::new())]
        .into_iter()
        .collect();
    local.services[9].vips = local.services[10].vips.clone();
    local.workloads[11].service_account = "a/b".into();
    let changes = changes(local);
    let [built, each] = both(&changes);
    let set = |r: &Result<(Snapshot, bool), ConfigErrors>| -> BTreeSet<String> {
        let Err(errs) = r else { panic!("accepted") };
        errs.0.iter().map(|e| e.to_string()).collect()
    };
    assert_eq!(set(&built), set(&each));
    assert_eq!(set(&built).len(), 4, "{:?}", set(&built));
    // The same problems in the same order on every build (each map hashes with a seed of
    // its own).
    let again = &both(&changes)[0];
    let order = |r: &Result<(Snapshot, bool), ConfigErrors>| r.as_ref().err().unwrap().to_string();
    assert_eq!(order(&built), order(again));
}

#[test]
fn a_name_given_twice_is_left_to_one_by_one() {
    let w = |i: usize| {
        let w = workload(i, 1);
        Change::Workload(Rec::<Workload>::new(Name::from("x"), w))
    };
    let s = Change::Service(Rec::<Service>::new(Name::from("s"), service(0)));
    let drop = |k| Change::Drop(k, Name::from("x"));
    let blank = Snapshot::empty(Some("n1"));
    let twice = [
        vec![s.clone(), w(1), w(2)],
        vec![s.clone(), w(1), drop(Kind::Workload)],
        vec![s.clone(), s.clone(), w(1)],
    ];
    for changes in twice {
        let refs: Vec<&Change> = changes.iter().collect();
        assert!(blank.build_at_once(&refs).is_none());
        let [built, each] = both(&changes);
        assert_eq!(built.unwrap(), each.unwrap());
    }
    // A drop before any put, or of another kind, is no second mention.
    let once = vec![drop(Kind::Workload), s, w(1), drop(Kind::Service)];
    let refs: Vec<&Change> = once.iter().collect();
    let (built, changed) = blank.build_at_once(&refs).unwrap().unwrap();
    assert!(changed);
    assert_eq!(built, both(&once)[1].as_ref().unwrap().0);
}
