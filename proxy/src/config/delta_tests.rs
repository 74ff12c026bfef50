use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use proptest::prelude::*;

use super::super::local::{NetworkAddress, Protocol};
use super::super::policy::{Action, ConnInfo, Decision, Match, Scope, Selector};
use super::super::test_fixtures::MESH;
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn workload(uid: &str, ns: &str, ips: &[&str]) -> Workload {
    Workload {
        uid: uid.into(),
        name: uid.into(),
        namespace: ns.into(),
        workload_ips: ips.iter().map(|s| ip(s)).collect(),
        ..Workload::default()
    }
}

fn put(w: Workload) -> Change {
    Change::Workload(Rec::<Workload>::new(Name::from(w.uid.as_str()), w))
}

fn mesh() -> Snapshot {
    Snapshot::build(LocalConfig::from_yaml("m", MESH).unwrap(), Some("node-a")).unwrap()
}

#[test]
fn add_update_and_remove_one_workload() {
    let base = mesh();
    let (added, changed) = base
        .try_apply(&[put(workload("new", "default", &["10.9.0.1"]))])
        .unwrap();
    assert!(changed);
    assert_eq!(added.workload_by_ip(ip("10.9.0.1")).unwrap().uid, "new");
    assert!(base.workload_by_ip(ip("10.9.0.1")).is_none(), "base moved");
    let moved = put(workload("new", "default", &["10.9.0.2"]));
    let (updated, _) = added.try_apply(&[moved]).unwrap();
    assert!(updated.workload_by_ip(ip("10.9.0.1")).is_none());
    assert_eq!(updated.workload_by_ip(ip("10.9.0.2")).unwrap().uid, "new");
    let gone = Change::Drop(Kind::Workload, Name::from("new"));
    let (removed, _) = updated.try_apply(&[gone]).unwrap();
    assert!(removed.workload_by_ip(ip("10.9.0.2")).is_none());
    assert_eq!(removed, base);
}

#[test]
fn a_repeat_changes_nothing() {
    let base = mesh();
    let w = base.workload_by_ip(ip("10.244.1.4")).unwrap().clone();
    let name = Name::from(w.to_string());
    let same = Change::Workload(Rec::<Workload>::new(name, w));
    let (_, changed) = base.try_apply(&[same]).unwrap();
    assert!(!changed);
}

#[test]
fn a_refused_delta_leaves_the_previous_generation_intact() {
    let base = mesh();
    let before = base.to_local_config();
    let good = put(workload("fresh", "default", &["10.9.0.1"]));
    let thief = put(workload("thief", "default", &["10.244.1.4"]));
    let errs = base.try_apply(&[good, thief]).unwrap_err().to_string();
    assert!(errs.contains("both claim IP 10.244.1.4"), "{errs}");
    assert_eq!(base.to_local_config(), before);
    assert_eq!(base.workload_by_ip(ip("10.244.1.4")).unwrap().name, "sleep");
    assert!(base.workload_by_ip(ip("10.9.0.1")).is_none());
}

#[test]
fn an_ip_may_move_between_workloads_in_one_delta() {
    let base = Snapshot::build(
        LocalConfig {
            workloads: vec![workload("a", "ns", &["10.0.0.1"])],
            ..LocalConfig::default()
        },
        None,
    )
    .unwrap();
    let take = put(workload("b", "ns", &["10.0.0.1"]));
    let give = put(workload("a", "ns", &["10.0.0.2"]));
    let (next, _) = base.try_apply(&[take.clone(), give]).unwrap();
    assert_eq!(next.workload_by_ip(ip("10.0.0.1")).unwrap().uid, "b");
    assert!(base.try_apply(&[take]).is_err(), "alone it takes a's IP");
}

#[test]
fn removing_a_named_service_is_refused_and_names_the_workload() {
    let base = mesh();
    let drop = Change::Drop(
        Kind::Service,
        Name::from("default/httpbin.default.svc.cluster.local"),
    );
    let errs = base.try_apply(&[drop]).unwrap_err().to_string();
    assert!(
        errs.contains("httpbin-1") && errs.contains("names no service"),
        "{errs}"
    );
}

#[test]
fn an_updated_endpoint_keeps_its_place_and_a_removed_one_is_filled_by_the_last() {
    let base = mesh();
    let svc = base
        .service_by_hostname("httpbin.default.svc.cluster.local")
        .unwrap()
        .clone();
    let names = |s: &Snapshot| -> Vec<String> {
        let eps = s.endpoints(&svc);
        eps.iter().map(|e| e.workload().name.to_string()).collect()
    };
    assert_eq!(names(&base), ["httpbin-1", "httpbin-2", "httpbin-3"]);
    let mut w = base.workload_by_ip(ip("10.244.1.10")).unwrap().clone();
    w.canonical_revision = "v2".into();
    let (next, _) = base.try_apply(&[put_keyed(w)]).unwrap();
    assert_eq!(names(&next), ["httpbin-1", "httpbin-2", "httpbin-3"]);
    let first = next.workload_by_ip(ip("10.244.1.10")).unwrap();
    let drop = Change::Drop(Kind::Workload, Name::from(first.to_string()));
    let (next, _) = next.try_apply(&[drop]).unwrap();
    assert_eq!(names(&next), ["httpbin-3", "httpbin-2"]);
}

fn put_keyed(w: Workload) -> Change {
    Change::Workload(Rec::<Workload>::new(Name::from(w.to_string()), w))
}

#[test]
fn a_reload_shares_what_did_not_change_and_an_identical_file_changes_nothing() {
    let base = mesh();
    let mut local = base.to_local_config();
    assert!(base.reload(local.clone()).unwrap().is_none());
    local.workloads.retain(|w| w.name != "sleep");
    let next = base.reload(local).unwrap().unwrap();
    assert!(next.workload_by_ip(ip("10.244.1.4")).is_none());
    let key = "default/httpbin-2";
    let (a, b) = (base.workloads.get(key), next.workloads.get(key));
    assert!(
        Arc::ptr_eq(a.unwrap(), b.unwrap()),
        "an unchanged workload was copied"
    );
}

#[test]
fn identities_of_local_workloads_follow_deltas() {
    let base = mesh();
    let before = base.local_identities();
    let mut w = workload("x", "extra", &["10.9.9.9"]);
    w.node = "node-a".into();
    w.service_account = "sa-x".into();
    let (next, _) = base.try_apply(&[put(w)]).unwrap();
    let after = next.local_identities();
    assert_eq!(after.len(), before.len() + 1);
    assert!(after
        .iter()
        .any(|i| i.to_string().ends_with("/ns/extra/sa/sa-x")));
    let (back, _) = next
        .try_apply(&[Change::Drop(Kind::Workload, Name::from("x"))])
        .unwrap();
    assert_eq!(back.local_identities(), before);
}

// ---- incremental vs. rebuilt, on random sequences ----

const IPS: [&str; 5] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"];
const VIPS: [&str; 3] = ["10.96.0.1", "10.96.0.2", "10.96.0.3"];
const NSS: [&str; 2] = ["a", "b"];

fn arb_workload(i: usize) -> impl Strategy<Value = Workload> {
    let services = proptest::collection::btree_set(0..3usize, 0..3);
    let policies = proptest::collection::btree_set(0..3usize, 0..2);
    (
        0..2usize,
        proptest::collection::vec(0..5usize, 0..3),
        services,
    )
        .prop_flat_map(move |(ns, ips, svcs)| {
            (
                Just((ns, ips, svcs)),
                policies.clone(),
                0..2usize,
                0..2usize,
                any::<bool>(),
            )
        })
        .prop_map(move |((ns, ips, svcs), pols, node, sa, hbone)| {
            let mut w = workload(&format!("w{i}"), NSS[ns], &[]);
            w.workload_ips = ips.iter().map(|j| ip(IPS[*j])).collect();
            w.services = svcs
                .iter()
                .map(|j| (format!("a/h{j}"), BTreeMap::from([(80, 8080 + *j as u16)])))
                .collect();
            w.authorization_policies = pols.iter().map(|k| format!("a/p{k}")).collect();
            w.node = ["n1", "n2"][node].into();
            w.service_account = ["x", "y"][sa].into();
            w.protocol = if hbone {
                Protocol::Hbone
            } else {
                Protocol::Tcp
            };
            w
        })
}

fn arb_service() -> impl Strategy<Value = Service> {
    (0..3usize, proptest::collection::vec(0..3usize, 0..2)).prop_map(|(h, vips)| Service {
        name: format!("h{h}"),
        namespace: "a".into(),
        hostname: format!("h{h}"),
        vips: vips
            .iter()
            .map(|v| NetworkAddress {
                network: String::new(),
                ip: ip(VIPS[*v]),
            })
            .collect(),
        ports: BTreeMap::from([(80, 8080)]),
        waypoint: None,
    })
}

fn arb_policy(k: usize) -> impl Strategy<Value = Policy> {
    let scope = prop_oneof![
        Just(Scope::Global),
        Just(Scope::Namespace),
        Just(Scope::WorkloadSelector)
    ];
    let selected = proptest::collection::vec(0..6usize, 0..2);
    (0..2usize, scope, any::<bool>(), selected, any::<bool>()).prop_map(
        move |(ns, scope, deny, selected, port80)| Policy {
            name: format!("p{k}"),
            namespace: NSS[ns].into(),
            scope,
            action: if deny { Action::Deny } else { Action::Allow },
            rules: vec![vec![vec![Match {
                destination_ports: if port80 { vec![80] } else { vec![81] },
                ..Match::default()
            }]]],
            dry_run: false,
            selector: Some(Selector {
                workloads: selected.iter().map(|i| format!("w{i}")).collect(),
            }),
        },
    )
}

/// One step: a few changes applied as one delta (resource names are xDS-like: `w3`, `s1`).
#[derive(Debug, Clone)]
enum Op {
    PutW(usize, Box<Workload>),
    DropW(usize),
    PutS(usize, Service),
    DropS(usize),
    PutP(usize, Policy),
    DropP(usize),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6usize).prop_flat_map(|i| arb_workload(i).prop_map(move |w| Op::PutW(i, Box::new(w)))),
        1 => (0..6usize).prop_map(Op::DropW),
        2 => (0..3usize, arb_service()).prop_map(|(j, s)| Op::PutS(j, s)),
        1 => (0..3usize).prop_map(Op::DropS),
        2 => (0..3usize).prop_flat_map(|k| arb_policy(k).prop_map(move |p| Op::PutP(k, p))),
        1 => (0..3usize).prop_map(Op::DropP),
    ]
}

/// The resources by name: what the delta engine is checked against.
#[derive(Debug, Clone, Default)]
struct Model {
    workloads: BTreeMap<String, Workload>,
    services: BTreeMap<String, Service>,
    policies: BTreeMap<String, Policy>,
}

impl Model {
    fn apply(&mut self, op: &Op) -> Change {
        let n = |p: &str, i: &usize| Name::from(format!("{p}{i}"));
        match op.clone() {
            Op::PutW(i, w) => {
                self.workloads.insert(format!("w{i}"), (*w).clone());
                Change::Workload(Rec::<Workload>::new(n("w", &i), *w))
            }
            Op::DropW(i) => {
                self.workloads.remove(&format!("w{i}"));
                Change::Drop(Kind::Workload, n("w", &i))
            }
            Op::PutS(j, s) => {
                self.services.insert(format!("s{j}"), s.clone());
                Change::Service(Rec::<Service>::new(n("s", &j), s))
            }
            Op::DropS(j) => {
                self.services.remove(&format!("s{j}"));
                Change::Drop(Kind::Service, n("s", &j))
            }
            Op::PutP(k, p) => {
                self.policies.insert(format!("p{k}"), p.clone());
                Change::Policy(Rec::<Policy>::new(n("p", &k), p))
            }
            Op::DropP(k) => {
                self.policies.remove(&format!("p{k}"));
                Change::Drop(Kind::Policy, n("p", &k))
            }
        }
    }

    fn local(&self) -> LocalConfig {
        LocalConfig {
            workloads: self.workloads.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            policies: self.policies.values().cloned().collect(),
        }
    }

    /// The cross-resource rules, written the naive way (the old whole-config validation).
    fn valid(&self) -> bool {
        let unique = |keys: Vec<String>| keys.iter().collect::<HashSet<_>>().len() == keys.len();
        let w = self.workloads.values();
        let ips: Vec<String> = w
            .clone()
            .flat_map(|w| &w.workload_ips)
            .map(|i| i.to_string())
            .collect();
        let vips = self
            .services
            .values()
            .flat_map(|s| &s.vips)
            .map(|v| v.ip.to_string());
        let svc_keys: HashSet<String> = self.services.values().map(Service::key).collect();
        unique(ips)
            && unique(w.clone().map(|w| w.to_string()).collect())
            && unique(vips.collect())
            && unique(self.services.values().map(|s| s.hostname.clone()).collect())
            && unique(self.policies.values().map(Policy::key).collect())
            && w.clone()
                .all(|w| w.services.keys().all(|k| svc_keys.contains(k)))
        // A workload may name a policy that is not held (skipped, as in ztunnel).
    }
}

/// What the data path and the CA loop can ask of a generation.
fn lookups(s: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for a in IPS.iter().chain(&VIPS) {
        let a = ip(a);
        out.push(format!("{a} w={:?}", s.workload_by_ip(a).map(|w| &w.uid)));
        out.push(format!(
            "{a} s={:?} local={}",
            s.service_by_vip(a).map(|s| &s.hostname),
            s.is_local(a)
        ));
        if let Some(w) = s.workload_by_ip(a) {
            for port in [80, 81] {
                let conn = ConnInfo {
                    src_ip: ip("10.1.1.1"),
                    src_identity: None,
                    dst: SocketAddr::new(a, port),
                    dst_workload: w,
                };
                let d = s.authorize(&conn);
                let d = match d {
                    Decision::Allow => "allow".to_string(),
                    Decision::Deny { policy } => policy,
                };
                out.push(format!("{a}:{port} {d}"));
            }
        }
    }
    for h in 0..3 {
        let Some(svc) = s.service_by_hostname(&format!("h{h}")) else {
            continue;
        };
        let eps: BTreeSet<String> = s
            .endpoints(svc)
            .iter()
            .map(|e| format!("{}@{}{:?}", e.workload().uid, e.ip, e.ports))
            .collect();
        out.push(format!("h{h} {eps:?}"));
    }
    out.push(format!("{:?}", s.local_identities()));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Deltas (of one to three changes) applied one after another agree with the naive
    /// rules on what to refuse, and answer every lookup as a generation rebuilt from
    /// scratch does; a refused delta leaves the generation as it was.
    #[test]
    fn incremental_generations_match_rebuilt_ones(
        steps in proptest::collection::vec(proptest::collection::vec(arb_op(), 1..4), 1..30)
    ) {
        let mut snap = Snapshot::empty(Some("n1"));
        let mut model = Model::default();
        for ops in &steps {
            let mut next_model = model.clone();
            let changes: Vec<Change> = ops.iter().map(|op| next_model.apply(op)).collect();
            let before = lookups(&snap);
            match snap.try_apply(&changes) {
                Ok((next, _)) => {
                    prop_assert!(next_model.valid(), "accepted an invalid delta {ops:?}");
                    snap = next;
                    model = next_model;
                }
                Err(e) => {
                    prop_assert!(!next_model.valid(), "refused a valid delta {ops:?}: {e}");
                    prop_assert_eq!(lookups(&snap), before);
                }
            }
            let rebuilt = Snapshot::build(model.local(), Some("n1")).unwrap();
            prop_assert_eq!(lookups(&snap), lookups(&rebuilt));
        }
    }
}

/// Every endpoint list in its round-robin order, and every key's owners in theirs.
fn orders(s: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> =
        s.ix.endpoints
            .iter()
            .map(|(k, e)| {
                // Those without an IP are a set: in no order.
                let mut names: Vec<&Name> = e.names().collect();
                names[e.list.len()..].sort();
                format!("{k} {names:?}")
            })
            .collect();
    out.extend(s.ix.by_ip.iter().map(|(ip, o)| {
        let names: Vec<&Name> = o.all().iter().map(|w| &w.name).collect();
        format!("{ip} {names:?}")
    }));
    out.sort();
    out
}

/// The kind and name of the resource `c` changes.
fn change_name(c: &Change) -> (u8, Name) {
    match c {
        Change::Workload(w) => (0, w.name.clone()),
        Change::Service(s) => (1, s.name.clone()),
        Change::Policy(p) => (2, p.name.clone()),
        Change::Drop(k, n) => (*k as u8, n.clone()),
    }
}

/// The problems of a refused delta, as a set (the two ways find them in their own order).
fn problems(r: &Result<(Snapshot, bool), ConfigErrors>) -> BTreeSet<String> {
    match r {
        Ok(_) => BTreeSet::new(),
        Err(e) => e.0.iter().map(|p| p.to_string()).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A delta to the blank generation (a cold start) built index by index is the one
    /// applying its changes one by one makes: the same resources, indexes and orders, the
    /// same problems. (A delta that names a resource twice is applied one by one.)
    #[test]
    fn a_built_generation_is_the_one_applied_one_by_one(
        ops in proptest::collection::vec(arb_op(), 1..40),
        once in any::<bool>(),
    ) {
        let blank = Snapshot::empty(Some("n1"));
        let mut model = Model::default();
        let mut named = HashSet::new();
        let changes: Vec<Change> = ops
            .iter()
            .map(|op| model.apply(op))
            .filter(|c| !once || named.insert(change_name(c)))
            .collect();
        let refs: Vec<&Change> = changes.iter().collect();
        if once {
            prop_assert!(blank.build_at_once(&refs).is_some());
        }
        let built = blank.try_build(&refs);
        let each = blank.apply_each(&changes);
        prop_assert_eq!(built.is_ok(), each.is_ok(), "{:?} vs {:?}", built.as_ref().err(), each.as_ref().err());
        prop_assert_eq!(problems(&built), problems(&each));
        if let (Ok((b, bc)), Ok((e, ec))) = (&built, &each) {
            prop_assert_eq!(bc, ec);
            prop_assert_eq!(b, e);
            prop_assert_eq!(lookups(b), lookups(e));
            prop_assert_eq!(orders(b), orders(e));
            prop_assert_eq!(b.local_workloads().count(), e.local_workloads().count());
        }
    }
}
