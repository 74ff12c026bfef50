//! Shared harness for the end-to-end suites: a scratch directory with a dev CA and
//! certificates, a workload config, loopback echo servers and a SOCKS5 client.
#![allow(dead_code)]

/// Test binaries free only what they allocated (issue 24): see `testsupport::Checked`.
#[global_allocator]
static CHECKED: testsupport::Checked = testsupport::Checked;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use zring::config::Config;
use zring::identity::Identity;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory removed on drop, also when the test panics.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("zring-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn id(td: &str, ns: &str, sa: &str) -> Identity {
    Identity::new(td, ns, sa)
}

/// A dev CA in `dir` with certificates for `ids`.
pub fn make_certs(dir: &Path, ids: &[Identity]) {
    zring::tls::ca::init_ca(dir, "cluster.local", false).expect("CA init");
    for i in ids {
        zring::tls::ca::issue(dir, i).expect("issue");
    }
}

/// The workload config both proxies read: the client pod `client_ip` on node-a, the
/// server pod `server_ip` on node-b behind service VIP 10.96.0.105:8000.
pub fn mesh_yaml(client_ip: &str, client_td: &str, server_ip: &str, port: u16) -> String {
    format!(
        r#"workloads:
- uid: cluster1//v1/Pod/default/sleep
  name: sleep
  workloadName: sleep
  namespace: default
  serviceAccount: sleep
  trustDomain: {client_td}
  workloadIps: ["{client_ip}"]
  protocol: HBONE
  node: node-a
- uid: cluster1//v1/Pod/default/httpbin
  name: httpbin
  workloadName: httpbin
  namespace: default
  serviceAccount: httpbin
  workloadIps: ["{server_ip}"]
  protocol: HBONE
  node: node-b
  services:
    "default/httpbin.default.svc.cluster.local":
      8000: {port}
services:
- name: httpbin
  namespace: default
  hostname: httpbin.default.svc.cluster.local
  vips: ["/10.96.0.105"]
  ports:
    8000: {port}
"#
    )
}

/// Inbound HBONE on zring's own HTTP/2 (`--hbone-own-http2`) when the suite runs with
/// `ZRING_HBONE_OWN_HTTP2=true`, as the proxy binary reads it; else the h2 crate's.
pub fn own_http2() -> bool {
    std::env::var("ZRING_HBONE_OWN_HTTP2").is_ok_and(|v| v == "true")
}

/// A proxy config for `dir`'s certificates and `config_path`: not transparent, every
/// listener off (each test turns on the ones it needs).
pub fn base_config(dir: &Path, config_path: PathBuf) -> Config {
    Config {
        hbone_own_http2: own_http2(),
        config_path,
        cert_dir: dir.to_path_buf(),
        transparent: false,
        // The tests built on this config are about the tunnel: a same-node pair keeps it
        // (the fast path's own tests turn it on).
        same_node_fast_path: false,
        outbound_addr: None,
        inbound_addr: None,
        inbound_plaintext_addr: None,
        socks5_addr: None,
        admin_addr: None,
        stats_addr: None,
        readiness_addr: None,
        ..Config::default()
    }
}

/// An echo server on `addr`: every connection gets its bytes back, and FIN after the
/// client's FIN (`testsupport::echo`).
pub fn echo_server(addr: &str) -> SocketAddr {
    let listener = TcpListener::bind(addr).expect("bind echo server");
    let local = listener.local_addr().unwrap();
    testsupport::echo::spawn(listener);
    local
}

/// A one-connection server on `ip` that answers the client's first byte with `!`, then
/// aborts the connection 100 ms later (RST, not FIN).
pub fn one_byte_then_reset(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind(format!("{ip}:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut one = [0u8; 1];
            let _ = conn.read_exact(&mut one);
            let _ = conn.write_all(b"!");
            std::thread::sleep(std::time::Duration::from_millis(100));
            socket2::SockRef::from(&conn)
                .set_linger(Some(std::time::Duration::ZERO))
                .unwrap();
        }
    });
    addr
}

/// SOCKS5 CONNECT through `socks` to `target` (IPv4); returns the stream and reply code.
pub fn socks_connect(socks: SocketAddr, target: SocketAddr) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(socks).expect("connect to SOCKS5 port");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut greet = [0u8; 2];
    s.read_exact(&mut greet).unwrap();
    assert_eq!(greet, [5, 0], "proxy must accept no-auth");
    let SocketAddr::V4(v4) = target else {
        panic!("IPv4 targets only")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    (s, reply[1])
}

/// Deterministic pseudo-random block `i` (xorshift64*), regenerated by the checker.
pub fn block(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Established TCP connections whose remote end is `remote` (from /proc/net/tcp).
pub fn established_to(remote: SocketAddr) -> usize {
    let SocketAddr::V4(v4) = remote else { return 0 };
    let ip = u32::from_le_bytes(v4.ip().octets());
    let want = format!("{ip:08X}:{:04X}", v4.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == want && f[3] == "01"
        })
        .count()
}

/// Sends `blocks` seeded blocks of `len` bytes through `stream` (an echo tunnel) from a
/// second thread, then FIN; asserts every block comes back intact and FIN after them.
pub fn echo_blocks(stream: TcpStream, blocks: u64, len: usize) {
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..blocks {
            writer.write_all(&block(i, len)).unwrap();
        }
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut reader = stream;
    let mut buf = vec![0u8; len];
    for i in 0..blocks {
        reader.read_exact(&mut buf).unwrap();
        assert!(buf == block(i, len), "block {i} came back corrupted");
    }
    assert_eq!(
        reader.read(&mut buf).unwrap(),
        0,
        "FIN must follow the data"
    );
    sender.join().unwrap();
}
