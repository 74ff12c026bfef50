//! The ZDS client against the fake istio-cni (`testsupport::cni`), in one process and
//! without root: hello, Acks, bad input refused with nothing changed, snapshot
//! reconciliation after a reconnect, and no descriptor left open.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use testsupport::cni::{Info, ZdsServer};
use zring::inpod::netns::Netns;
use zring::inpod::registry::{PodSink, Registry};
use zring::inpod::{client, PodInfo, PodUid};

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn take(&self) -> Vec<String> {
        let mut v = std::mem::take(&mut *self.0.lock().unwrap());
        v.sort();
        v
    }
}

impl PodSink for Log {
    type Netns = Netns;
    type Pod = Netns;
    fn start(&mut self, uid: &PodUid, info: &PodInfo, netns: Netns) -> Result<Netns, String> {
        self.0
            .lock()
            .unwrap()
            .push(format!("start {} {}", uid.0, info.name));
        Ok(netns)
    }
    fn stop(&mut self, uid: &PodUid, _: Netns) {
        self.0.lock().unwrap().push(format!("stop {}", uid.0));
    }
}

fn info(name: &str) -> Option<Info<'_>> {
    Some(Info {
        name,
        namespace: "default",
        service_account: "sa",
    })
}

fn open(path: &str) -> OwnedFd {
    std::fs::File::open(path).unwrap().into()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn zds_client_against_the_fake_cni() {
    let dir = std::env::temp_dir().join(format!("zring-zds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("ztunnel.sock");
    let fds_before = open_fds();
    let server = ZdsServer::bind(&path).unwrap();
    let log = Log::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (log, stop, path) = (log.clone(), stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut registry = Registry::default();
            let mut sink = log;
            let hooks = client::Hooks {
                stop: &|| stop.load(std::sync::atomic::Ordering::Relaxed),
                synced: &|_| {},
            };
            client::run(&path, &mut registry, &mut sink, &hooks);
            registry.stop_all(&mut sink);
        })
    };
    let net = open("/proc/self/ns/net");

    // First connection: a snapshot of two pods, bad input between them.
    let conn = server.accept(Duration::from_secs(10)).unwrap();
    assert_eq!(conn.add("a", info("pa"), Some(net.as_fd())).unwrap(), "");
    assert_eq!(conn.add("b", info("pb"), Some(net.as_fd())).unwrap(), "");
    assert_eq!(log.take(), ["start a pa", "start b pb"]);
    let refusals = [
        conn.add("c", info("pc"), None).unwrap(),
        conn.add("c", info("pc"), Some(open("/proc/self/ns/uts").as_fd()))
            .unwrap(),
        conn.add("c", info("pc"), Some(open("/dev/null").as_fd()))
            .unwrap(),
        conn.add("c", None, Some(net.as_fd())).unwrap(),
        conn.request(&[0xff, 0xff, 0xff], &[]).unwrap(),
        conn.request(&[], &[net.as_fd()]).unwrap(),
        conn.request(
            &zring_xds::zds::WorkloadRequest {
                payload: Some(zring_xds::zds::workload_request::Payload::Add(
                    zring_xds::zds::AddWorkload {
                        uid: "c".into(),
                        workload_info: None,
                    },
                )),
            }
            .encode_to_vec(),
            &[net.as_fd(), net.as_fd()],
        )
        .unwrap(),
        conn.del("a")
            .and_then(|_| conn.add("a", info("pa"), Some(net.as_fd())))
            .unwrap(),
    ];
    for (i, r) in refusals.iter().take(7).enumerate() {
        assert!(!r.is_empty(), "request {i} was accepted");
    }
    assert_eq!(refusals[7], "", "re-adding a pod during the snapshot");
    assert_eq!(
        log.take(),
        Vec::<String>::new(),
        "a refused request changed something"
    );
    assert_eq!(conn.snapshot_sent().unwrap(), "");
    assert!(
        !conn.snapshot_sent().unwrap().is_empty(),
        "second SnapshotSent"
    );
    assert!(
        !conn.keep("a").unwrap().is_empty(),
        "keep after the snapshot"
    );
    assert_eq!(conn.add("d", info("pd"), Some(net.as_fd())).unwrap(), "");
    assert_eq!(log.take(), ["start d pd"]);

    // The CNI restarts: the pods stay until the new snapshot, which keeps a and d only.
    drop(conn);
    let conn = server.accept(Duration::from_secs(10)).unwrap();
    assert_eq!(
        log.take(),
        Vec::<String>::new(),
        "a dropped socket stopped pods"
    );
    assert_eq!(conn.add("a", info("pa"), Some(net.as_fd())).unwrap(), "");
    assert_eq!(conn.keep("d").unwrap(), "");
    assert_eq!(conn.snapshot_sent().unwrap(), "");
    assert_eq!(log.take(), ["stop b"]);
    assert_eq!(conn.del("a").unwrap(), "");
    assert_eq!(log.take(), ["stop a"]);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    client.join().unwrap();
    assert_eq!(log.take(), ["stop d"]);
    drop((conn, server, net));
    assert_eq!(open_fds(), fds_before, "descriptors left open");
    let _ = std::fs::remove_dir_all(&dir);
}
