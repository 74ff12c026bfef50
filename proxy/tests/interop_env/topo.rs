//! The namespaces, veth, addresses and routes of the two nodes, and zring's certificates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use plumbing::netns::{self, NetnsGuard};

use super::{test_root, SERVER_PORT, T_WORKLOAD, Z_WORKLOAD};

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub fn sh(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("run `ip netns exec`");
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn namespaces() -> (NetnsGuard, NetnsGuard) {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let prefix = format!("zri-{}-{n}", std::process::id());
    let z = NetnsGuard::new(&format!("{prefix}-z")).expect("create netns z");
    let t = NetnsGuard::new(&format!("{prefix}-t")).expect("create netns t");
    netns::veth_pair(Some(z.name()), "zeth0", "teth0", Some(t.name())).expect("veth");
    for (ns, dev, node, wl, other) in [
        (&z, "zeth0", "10.81.0.1/24", Z_WORKLOAD, "10.81.2.0/24"),
        (&t, "teth0", "10.81.0.2/24", T_WORKLOAD, "10.81.1.0/24"),
    ] {
        let (ns, gw) = (
            ns.name(),
            if dev == "zeth0" {
                "10.81.0.2"
            } else {
                "10.81.0.1"
            },
        );
        sh(ns, &["ip", "link", "set", "lo", "up"]);
        sh(ns, &["ip", "link", "set", dev, "up"]);
        sh(ns, &["ip", "addr", "add", node, "dev", dev]);
        sh(ns, &["ip", "addr", "add", &format!("{wl}/32"), "dev", dev]);
        sh(ns, &["ip", "route", "add", other, "via", gw]);
    }
    // ztunnel's inbound leg reaches its server from the HBONE client's (non-local) IP;
    // the server's replies must come back to ztunnel's transparent socket, not leave.
    let port = SERVER_PORT.to_string();
    let t_ns = t.name();
    sh(
        t_ns,
        &[
            "ip", "rule", "add", "from", T_WORKLOAD, "ipproto", "tcp", "sport", &port, "lookup",
            "200",
        ],
    );
    sh(
        t_ns,
        &[
            "ip",
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "200",
        ],
    );
    (z, t)
}

/// zring's cert dir: ztunnel's test root as the CA, and a leaf for `zri/zsa`.
pub fn zring_certs(dir: &Path) -> PathBuf {
    zring_certs_for(dir, &[("zri", "zsa")])
}

/// zring's cert dir with a leaf for each `(namespace, service account)` of cluster.local.
pub fn zring_certs_for(dir: &Path, ids: &[(&str, &str)]) -> PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key) = test_root();
    std::fs::copy(cert, certs.join(zring::tls::ROOT_CERT_FILE)).unwrap();
    std::fs::copy(key, certs.join(zring::tls::ROOT_KEY_FILE)).unwrap();
    for (ns, sa) in ids {
        let id = zring::identity::Identity::new("cluster.local", ns, sa);
        zring::tls::ca::issue(&certs, &id).expect("issue zring's leaf from ztunnel's test root");
    }
    certs
}
