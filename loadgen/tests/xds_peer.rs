//! Root-only: the real istio/ztunnel (`../shared/peers/ztunnel`, no FAKE_CA, no local
//! config) runs against the load generator's control plane in a namespace this test
//! creates: it must receive its workloads over delta ADS and ACK them, obtain its
//! certificate through `CreateCertificate`, become ready, carry a SOCKS5 connection over
//! HBONE (mTLS with that certificate) to a workload, and take a live push. This is the
//! proof that the control plane speaks Istio's protocol. Then zring, with no --config,
//! takes the same workloads from the same control plane, becomes ready, carries a SOCKS5
//! connection over HBONE to ztunnel (ztunnel logs zring's client identity) and takes the
//! same push. Fails, never skips, under CI.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use plumbing::netns::{self, NetnsGuard};
use zring::config::LocalConfig;
use zring_loadgen::control::{ControlPlane, Event, Settings};
use zring_loadgen::socks;
use zring_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE};

const TOKEN: &str = "zring-test-token";
const ECHO: &str = "10.77.0.2";
const SLEEP: &str = "10.77.0.1";
const SLEEP_ID: &str = "spiffe://cluster.local/ns/zxd/sa/sleep";
/// zring's ports in the shared namespace (ztunnel has the standard ones).
const ZRING_SOCKS: &str = "10.77.0.1:15081";
const ZRING_ADMIN: &str = "127.0.0.1:15100";
const ZRING_READY: &str = "127.0.0.1:15121";
const ECHO_PORT: u16 = 8080;
const IDENTITY: &str = "spiffe://cluster.local/ns/zxd/sa/echo";

fn mesh(extra: &str) -> LocalConfig {
    let yaml = format!(
        r#"
workloads:
- uid: Kubernetes//Pod/zxd/echo
  name: echo
  namespace: zxd
  serviceAccount: echo
  workloadIps: ["{ECHO}"]
  protocol: HBONE
  node: node-b
- uid: Kubernetes//Pod/zxd/sleep
  name: sleep
  namespace: zxd
  serviceAccount: sleep
  workloadIps: ["{SLEEP}"]
  protocol: HBONE
  node: node-a
{extra}"#
    );
    LocalConfig::from_yaml("test mesh", &yaml).unwrap()
}

const OTHER: &str = r#"- uid: Kubernetes//Pod/zxd/other
  name: other
  namespace: zxd
  serviceAccount: other
  workloadIps: ["10.77.0.3"]
  protocol: HBONE
  node: node-c
"#;

struct Proc(Child, PathBuf);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ztunnel_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/ztunnel")
}

fn sh(ns: &str, args: &[&str]) {
    let st = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "ip -n {ns} {args:?} failed");
}

fn spawn_ztunnel(ns: &str, dir: &Path, cp: SocketAddr) -> Proc {
    let log = dir.join("ztunnel.log");
    let f = std::fs::File::create(&log).unwrap();
    let root = dir.join("ca/root-cert.pem");
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(ztunnel_bin())
        .arg("proxy")
        .current_dir(dir)
        .env_remove("FAKE_CA")
        .env("RUST_LOG", "info")
        .env("XDS_ADDRESS", format!("https://{cp}"))
        .env("CA_ADDRESS", format!("https://{cp}"))
        .env("XDS_ROOT_CA", &root)
        .env("CA_ROOT_CA", &root)
        .env("AUTH_TOKEN", dir.join("istio-token"))
        .env("NODE_NAME", "node-b")
        .env("CLUSTER_ID", "Kubernetes")
        .env("PROXY_MODE", "dedicated")
        .env("PROXY_WORKLOAD_INFO", "zxd/echo/echo")
        .env("UNSTABLE_ENABLE_SOCKS5", "true")
        .env("ZTUNNEL_WORKER_THREADS", "1")
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("start ztunnel");
    Proc(child, log)
}

/// zring on node-a: workloads from the control plane (no --config) and the certificate
/// for `sleep` from its CA (no --cert-dir), SOCKS5 on the sleep pod's address.
fn spawn_zring(ns: &str, dir: &Path, cp: SocketAddr) -> Proc {
    let log = dir.join("zring.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(common::zring_bin())
        .arg("run")
        .args([
            "--node-name",
            "node-a",
            "--cores",
            "1",
            "--transparent",
            "false",
        ])
        .args(["--outbound-addr", "off", "--inbound-addr", "off"])
        .args([
            "--inbound-plaintext-addr",
            "off",
            "--socks5-addr",
            ZRING_SOCKS,
        ])
        .args([
            "--admin-addr",
            ZRING_ADMIN,
            "--stats-addr",
            "127.0.0.1:15120",
        ])
        .args(["--readiness-addr", ZRING_READY])
        .env_remove("LOCAL_XDS_PATH")
        .env("XDS_ADDRESS", format!("https://{cp}"))
        .env("XDS_ROOT_CA", dir.join("ca/root-cert.pem"))
        .env("CA_ADDRESS", format!("https://{cp}"))
        .env("CA_ROOT_CA", dir.join("ca/root-cert.pem"))
        .env("SECRET_TTL", "1h")
        .env("AUTH_TOKEN", dir.join("istio-token"))
        .env("INSTANCE_IP", SLEEP)
        .env("POD_NAME", "zring-node-a")
        .env("RUST_LOG", "info,zring=debug")
        .env("POD_NAMESPACE", "istio-system")
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("start zring");
    Proc(child, log)
}

fn connect_in(ns: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    netns::run_in(Some(ns), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .expect("enter netns")
}

fn get_in(ns: &str, addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = connect_in(ns, addr.parse().unwrap()).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((code, body.to_string()))
}

/// Polls `check` for up to `limit`; panics with `context()` when it never holds.
fn wait_for(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} within {limit:?}\n{}", context());
}

fn echo_server(ns: &str) {
    let addr: SocketAddr = format!("{ECHO}:{ECHO_PORT}").parse().unwrap();
    let l = netns::run_in(Some(ns), || TcpListener::bind(addr))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
    });
}

fn socks_connect(ns: &str, proxy: &str, target: SocketAddr) -> TcpStream {
    let mut s = connect_in(ns, proxy.parse().unwrap()).expect("the proxy's SOCKS5 port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).unwrap();
    socks::check_method(&m).unwrap();
    s.write_all(&socks::connect_request(target)).unwrap();
    let mut reply = Vec::new();
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        reply.push(b[0]);
        let len = socks::connect_reply_len(&reply);
        if let Some(n) = len.unwrap_or_else(|e| panic!("SOCKS5 via {proxy} to {target}: {e}")) {
            if reply.len() == n {
                return s;
            }
        }
    }
}

#[test]
fn ztunnel_and_zring_run_on_the_control_planes_workloads() {
    if !common::can_run("the ztunnel xDS/CA test", &["ip"]) {
        return;
    }
    let bin = ztunnel_bin();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !bin.exists() {
        assert!(!ci, "{} is missing", bin.display());
        eprintln!("SKIPPED: {} is missing", bin.display());
        return;
    }
    let ns = format!("{}n", common::prefix("xds"));
    let _ns = NetnsGuard::new(&ns).unwrap();
    sh(&ns, &["link", "set", "lo", "up"]);
    sh(&ns, &["addr", "add", &format!("{ECHO}/32"), "dev", "lo"]);
    sh(&ns, &["addr", "add", &format!("{SLEEP}/32"), "dev", "lo"]);
    let dir = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    let _scratch = Scratch(dir.clone());
    zring::tls::init_ca(&dir.join("ca"), "cluster.local", false).unwrap();
    std::fs::write(dir.join("istio-token"), TOKEN).unwrap();

    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        ca_dir: dir.join("ca"),
        token: TOKEN.into(),
        dns_names: vec!["istiod.istio-system.svc".into()],
    };
    let cp = netns::run_in(Some(&ns), || ControlPlane::start(settings, mesh("")))
        .unwrap()
        .unwrap();
    echo_server(&ns);
    let zt = spawn_ztunnel(&ns, &dir, cp.addr());
    let context = || {
        format!(
            "control plane events: {:#?}\nztunnel log:\n{}",
            cp.events(),
            zt.log()
        )
    };

    wait_for(
        Duration::from_secs(30),
        "ztunnel did not become ready",
        || {
            matches!(
                get_in(&ns, "127.0.0.1:15021", "/healthz/ready"),
                Some((200, _))
            )
        },
        context,
    );
    for t in [ADDRESS_TYPE, AUTHORIZATION_TYPE] {
        let ack = Event::Ack { type_url: t.into() };
        wait_for(
            Duration::from_secs(10),
            &format!("ztunnel did not ACK {t}"),
            || cp.events().contains(&ack),
            context,
        );
    }
    let events = cp.events();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Nack { .. })),
        "ztunnel refused a resource\n{}",
        context()
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Stream { node } if node.starts_with("ztunnel~"))),
        "no stream from a ztunnel node id\n{}",
        context()
    );

    // Traffic over HBONE: mTLS needs the certificate the control plane issued.
    let target: SocketAddr = format!("{ECHO}:{ECHO_PORT}").parse().unwrap();
    echo_rounds(socks_connect(&ns, "127.0.0.1:15080", target), &context);
    let issued = Event::Issued {
        identity: IDENTITY.into(),
    };
    assert!(
        cp.events().contains(&issued),
        "no certificate issued for {IDENTITY}\n{}",
        context()
    );
    wait_for(
        Duration::from_secs(10),
        "ztunnel's access log shows no HBONE connection with the issued identity",
        || zt.log().contains(IDENTITY) && zt.log().contains("connection complete"),
        context,
    );

    // zring on node-a, configured by the same control plane, reaches ztunnel's workload.
    let zr = spawn_zring(&ns, &dir, cp.addr());
    let context = || {
        format!(
            "control plane events: {:#?}\nztunnel log:\n{}\nzring log:\n{}\nzring metrics:\n{}",
            cp.events(),
            zt.log(),
            zr.log(),
            get_in(&ns, "127.0.0.1:15120", "/metrics")
                .map(|(_, b)| b)
                .unwrap_or_default()
        )
    };
    wait_for(
        Duration::from_secs(20),
        "zring did not become ready on its xDS state",
        || matches!(get_in(&ns, ZRING_READY, "/healthz/ready"), Some((200, _))),
        context,
    );
    let issued = Event::Issued {
        identity: SLEEP_ID.into(),
    };
    wait_for(
        Duration::from_secs(10),
        "zring did not get a certificate for sleep from the CA",
        || cp.events().contains(&issued),
        context,
    );
    wait_for(
        Duration::from_secs(5),
        "zring does not show the CA's certificate in /config_dump",
        || get_in(&ns, ZRING_ADMIN, "/config_dump").is_some_and(|(_, b)| b.contains(SLEEP_ID)),
        context,
    );
    let s = std::panic::catch_unwind(|| socks_connect(&ns, ZRING_SOCKS, target))
        .unwrap_or_else(|_| panic!("zring's SOCKS5 CONNECT failed\n{}", context()));
    echo_rounds(s, &context);
    wait_for(
        Duration::from_secs(10),
        "ztunnel did not log zring's connection with the sleep identity",
        || zt.log().contains(SLEEP_ID),
        context,
    );
    let nodes: Vec<String> = cp
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Stream { node } => Some(node),
            _ => None,
        })
        .collect();
    assert!(
        nodes
            .iter()
            .any(|n| n.starts_with("ztunnel~10.77.0.1~zring-node-a.istio-system~")),
        "zring's node id {nodes:?}"
    );

    // A live push: a new workload appears in both proxies without a restart.
    let acks_before = cp
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Ack { .. }))
        .count();
    cp.push(mesh(OTHER));
    for (who, admin) in [("ztunnel", "127.0.0.1:15000"), ("zring", ZRING_ADMIN)] {
        wait_for(
            Duration::from_secs(10),
            &format!("the pushed workload did not reach {who}'s /config_dump"),
            || get_in(&ns, admin, "/config_dump").is_some_and(|(_, b)| b.contains("10.77.0.3")),
            context,
        );
    }
    let acks = || {
        cp.events()
            .iter()
            .filter(|e| matches!(e, Event::Ack { .. }))
            .count()
    };
    wait_for(
        Duration::from_secs(10),
        "the push was not ACKed by both",
        || acks() >= acks_before + 2,
        context,
    );
    assert!(
        !cp.events().iter().any(|e| matches!(e, Event::Nack { .. })),
        "a proxy refused a resource\n{}",
        context()
    );

    // One certificate per identity: nothing is renewed long before its half-life.
    let sleep_certs = cp
        .events()
        .iter()
        .filter(|e| {
            **e == Event::Issued {
                identity: SLEEP_ID.into(),
            }
        })
        .count();
    assert_eq!(
        sleep_certs,
        1,
        "zring asked for sleep's certificate {sleep_certs} times\n{}",
        context()
    );

    // istiod goes away: zring keeps its last state, stays ready and keeps carrying HBONE.
    let log_before = zr.log().len();
    drop(cp);
    wait_for(
        Duration::from_secs(10),
        "zring did not notice the lost xDS stream",
        || {
            zr.log()[log_before..].contains("reconnecting")
                || zr.log()[log_before..].contains("stays in force")
        },
        || zr.log(),
    );
    assert!(
        matches!(get_in(&ns, ZRING_READY, "/healthz/ready"), Some((200, _))),
        "zring stopped being ready without istiod\n{}",
        zr.log()
    );
    echo_rounds(socks_connect(&ns, ZRING_SOCKS, target), &|| zr.log());
}

/// 50 checksummed 1 KiB echoes through `s`.
fn echo_rounds(mut s: TcpStream, context: &dyn Fn() -> String) {
    for i in 0..50u8 {
        let msg = vec![i; 1024];
        let mut back = vec![0u8; 1024];
        if let Err(e) = s.write_all(&msg).and_then(|()| s.read_exact(&mut back)) {
            panic!("echo {i} failed: {e}\n{}", context());
        }
        assert_eq!(back, msg, "echo {i} came back different");
    }
}
