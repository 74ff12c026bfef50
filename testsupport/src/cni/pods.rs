//! Pod network namespaces as the fake istio-cni makes them: a node namespace with a bridge,
//! each pod a namespace with `eth0` on it (one /24), enrolled by installing
//! [`super::rules`] inside it. Everything is named `<prefix>-…` and deleted when dropped.

use std::os::fd::OwnedFd;
use std::process::Command;

use anyhow::{bail, Context};

/// `ip netns exec NS ARGS…`, failing with its stderr.
pub fn sh(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    sh_input(ns, args, None)
}

fn sh_input(ns: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run `ip netns exec`")?;
    if let Some(i) = input {
        child.stdin.take().expect("piped").write_all(i.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{args:?} in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A named network namespace, deleted when dropped.
pub struct Ns(String);

impl Ns {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let out = Command::new("ip").args(["netns", "add", name]).output()?;
        if !out.status.success() {
            bail!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ns = Ns(name.to_owned());
        sh(name, &["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// A descriptor of the namespace, as istio-cni sends it in AddWorkload.
    pub fn open(&self) -> anyhow::Result<OwnedFd> {
        let p = format!("/run/netns/{}", self.0);
        Ok(std::fs::File::open(&p).with_context(|| p.clone())?.into())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// The node: a bridge `br0` with `gateway/24`.
pub struct Node {
    pub ns: Ns,
    prefix: String,
    seq: usize,
}

/// A pod: its namespace and IP.
pub struct Pod {
    pub ns: Ns,
    pub ip: String,
}

impl Node {
    pub fn new(prefix: &str, gateway: &str) -> anyhow::Result<Self> {
        let ns = Ns::new(&format!("{prefix}-node"))?;
        let n = ns.name().to_owned();
        sh(&n, &["ip", "link", "add", "br0", "type", "bridge"])?;
        sh(
            &n,
            &["ip", "addr", "add", &format!("{gateway}/24"), "dev", "br0"],
        )?;
        sh(&n, &["ip", "link", "set", "br0", "up"])?;
        Ok(Node {
            ns,
            prefix: prefix.to_owned(),
            seq: 0,
        })
    }

    /// A pod namespace `<prefix>-<name>` with `eth0` = `ip/24` on the bridge, default route
    /// via `gateway`; not enrolled.
    pub fn pod(&mut self, name: &str, ip: &str, gateway: &str) -> anyhow::Result<Pod> {
        self.seq += 1;
        let ns = Ns::new(&format!("{}-{name}", self.prefix))?;
        let (node, host) = (self.ns.name(), format!("veth{}", self.seq));
        sh(
            node,
            &[
                "ip",
                "link",
                "add",
                &host,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ],
        )?;
        sh(node, &["ip", "link", "set", &host, "master", "br0", "up"])?;
        let p = ns.name();
        sh(
            p,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )?;
        sh(p, &["ip", "link", "set", "eth0", "up"])?;
        sh(p, &["ip", "route", "add", "default", "via", gateway])?;
        Ok(Pod {
            ns,
            ip: ip.to_owned(),
        })
    }
}

impl Pod {
    /// Installs istio-cni's in-pod redirection ([`super::rules`]).
    pub fn enrol(&self) -> anyhow::Result<()> {
        enrol_netns(self.ns.name())
    }
}

/// Installs istio-cni's in-pod redirection ([`super::rules`]) in the named namespace `n`
/// (a pod this module did not make, e.g. the demo topology's).
pub fn enrol_netns(n: &str) -> anyhow::Result<()> {
    sh_input(
        n,
        &["iptables-restore", "--wait", "10", "--noflush"],
        Some(super::rules::IPTABLES),
    )?;
    for cmd in super::rules::IP {
        sh(n, cmd)?;
    }
    Ok(())
}

/// A descriptor of the named namespace, as istio-cni sends it in AddWorkload.
pub fn open_netns(n: &str) -> anyhow::Result<OwnedFd> {
    let p = format!("/run/netns/{n}");
    let f = std::fs::File::open(&p).with_context(|| format!("open {p}"))?;
    Ok(f.into())
}
