use super::*;

/// A namespace in tests: just its id.
struct Ns(u64);

impl Namespace for Ns {
    fn id(&self) -> NetnsId {
        NetnsId {
            dev: 1,
            ino: self.0,
        }
    }
}

/// Records starts and stops; refuses uids starting with "bad".
#[derive(Default)]
struct Log(Vec<String>);

impl PodSink for Log {
    type Netns = Ns;
    type Pod = u64;
    fn start(&mut self, uid: &PodUid, _: &PodInfo, netns: Ns) -> Result<u64, String> {
        if uid.0.starts_with("bad") {
            return Err("no".into());
        }
        self.0.push(format!("start {} {}", uid.0, netns.0));
        Ok(netns.0)
    }
    fn stop(&mut self, uid: &PodUid, pod: u64) {
        self.0.push(format!("stop {} {pod}", uid.0));
    }
}

fn info() -> Option<PodInfo> {
    Some(PodInfo {
        name: "p".into(),
        namespace: "default".into(),
        service_account: "sa".into(),
    })
}

fn add(uid: &str, ns: u64) -> Request<Ns> {
    Request::Add {
        uid: PodUid(uid.into()),
        info: info(),
        netns: Ns(ns),
    }
}

fn uid(u: &str) -> PodUid {
    PodUid(u.into())
}

fn synced(pods: &[(&str, u64)]) -> (Registry<Log>, Log) {
    let mut r = Registry::default();
    let mut s = Log::default();
    r.connected();
    for (u, ns) in pods {
        r.handle(add(u, *ns), &mut s).unwrap();
    }
    r.handle(Request::SnapshotSent, &mut s).unwrap();
    s.0.clear();
    (r, s)
}

#[test]
fn add_is_idempotent_and_a_new_netns_replaces() {
    let (mut r, mut s) = synced(&[]);
    r.handle(add("a", 1), &mut s).unwrap();
    r.handle(add("a", 1), &mut s).unwrap();
    r.handle(add("a", 2), &mut s).unwrap();
    assert_eq!(s.0, ["start a 1", "stop a 1", "start a 2"]);
    assert_eq!(r.len(), 1);
}

#[test]
fn delete_after_snapshot_stops() {
    let (mut r, mut s) = synced(&[("a", 1)]);
    r.handle(Request::Del { uid: uid("a") }, &mut s).unwrap();
    r.handle(Request::Del { uid: uid("zzz") }, &mut s).unwrap();
    assert_eq!(s.0, ["stop a 1"]);
    assert!(r.is_empty());
}

#[test]
fn reconnect_keeps_pods_and_the_snapshot_reconciles() {
    let (mut r, mut s) = synced(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
    // The socket dropped and came back: nothing stops until SnapshotSent.
    r.connected();
    assert!(!r.synced());
    assert_eq!(r.len(), 4);
    r.handle(add("a", 1), &mut s).unwrap(); // same namespace: kept as is
    r.handle(Request::Keep { uid: uid("b") }, &mut s).unwrap();
    r.handle(add("d", 4), &mut s).unwrap();
    r.handle(Request::Del { uid: uid("d") }, &mut s).unwrap(); // leaves the snapshot only
    r.handle(add("e", 5), &mut s).unwrap();
    assert_eq!(s.0, ["start e 5"]);
    r.handle(Request::SnapshotSent, &mut s).unwrap();
    s.0.sort();
    assert_eq!(s.0, ["start e 5", "stop c 3", "stop d 4"]);
    assert!(r.synced());
    for u in ["a", "b", "e"] {
        assert!(r.contains(&uid(u)), "{u}");
    }
    assert_eq!(r.len(), 3);
}

#[test]
fn protocol_errors_change_nothing() {
    let (mut r, mut s) = synced(&[("a", 1)]);
    assert_eq!(
        r.handle(Request::Keep { uid: uid("x") }, &mut s),
        Err(ZdsError::KeepAfterSnapshot)
    );
    assert_eq!(
        r.handle(Request::SnapshotSent, &mut s),
        Err(ZdsError::SnapshotTwice)
    );
    let no_info = Request::Add {
        uid: uid("b"),
        info: None,
        netns: Ns(9),
    };
    assert_eq!(r.handle(no_info, &mut s), Err(ZdsError::NoWorkloadInfo));
    assert_eq!(
        r.handle(add("bad1", 7), &mut s),
        Err(ZdsError::Start("no".into()))
    );
    assert!(s.0.is_empty(), "{:?}", s.0);
    assert_eq!(r.len(), 1);
}

#[test]
fn a_failed_start_before_the_snapshot_is_not_reconciled_away_twice() {
    let mut r = Registry::default();
    let mut s = Log::default();
    r.connected();
    assert!(r.handle(add("bad", 1), &mut s).is_err());
    r.handle(Request::SnapshotSent, &mut s).unwrap();
    assert!(s.0.is_empty());
    r.stop_all(&mut s);
    assert!(r.is_empty());
}

#[test]
fn stop_all_stops_every_pod() {
    let (mut r, mut s) = synced(&[("a", 1), ("b", 2)]);
    r.stop_all(&mut s);
    s.0.sort();
    assert_eq!(s.0, ["stop a 1", "stop b 2"]);
}
