//! Named network namespaces and the topology helpers tests and the load generator share.
//!
//! Namespaces are bind mounts under `/run/netns/NAME`, exactly as `ip netns add` makes them,
//! so `ip netns exec NAME ...` works on them. Every helper takes `netns: Option<&str>`
//! (None = the caller's namespace) and runs on a dedicated thread that `setns()`s first:
//! a thread's namespace is its own, so the caller is never moved.
//!
//! ```no_run
//! use plumbing::netns;
//! let a = netns::NetnsGuard::new("zrp-doc-a").unwrap(); // deleted on drop
//! let b = netns::NetnsGuard::new("zrp-doc-b").unwrap();
//! netns::veth_pair(Some(a.name()), "va", "vb", Some(b.name())).unwrap();
//! netns::add_address(Some(a.name()), "va", "10.0.0.1".parse().unwrap(), 24).unwrap();
//! netns::set_link_up(Some(a.name()), "va").unwrap();
//! ```

use std::cell::RefCell;
use std::fs::{self, OpenOptions};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use rtnetlink::{LinkUnspec, LinkVeth};

use crate::model::RouteSpec;
use crate::{msg, nl, sys, PlumbError};

/// Where named namespaces are bound (iproute2's convention).
pub const NETNS_DIR: &str = "/run/netns";

thread_local! {
    static CURRENT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The namespace the current worker thread runs in, for error messages.
pub(crate) fn current_label() -> String {
    CURRENT.with(|c| match &*c.borrow() {
        Some(n) => format!("netns {n}"),
        None => "the current netns".to_string(),
    })
}

/// The bind-mount path of namespace `name`; an absolute path names a namespace file
/// directly (e.g. a mount of the host's `/proc/1/ns/net`).
pub fn path(name: &str) -> PathBuf {
    if name.starts_with('/') {
        return PathBuf::from(name);
    }
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether namespace `name` exists under `/run/netns`.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Runs `f` on a fresh thread inside namespace `netns` (None = the caller's) and returns
/// its result. A panic in `f` is propagated to the caller.
pub fn run_in<F, T>(netns: Option<&str>, f: F) -> Result<T, PlumbError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    if let Some(n) = netns {
        if !exists(n) {
            return Err(PlumbError::NetnsMissing(n.to_string()));
        }
    }
    let joined = std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("zring-netns".into())
            .spawn_scoped(s, move || {
                if let Some(n) = netns {
                    sys::enter_netns(&path(n))?;
                    CURRENT.with(|c| *c.borrow_mut() = Some(n.to_string()));
                }
                Ok(f())
            });
        worker.map(|h| h.join())
    });
    match joined {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => Err(PlumbError::Thread(e.to_string())),
    }
}

/// Creates namespace `name` (like `ip netns add`) and brings its `lo` up.
pub fn create(name: &str) -> Result<(), PlumbError> {
    fs::create_dir_all(NETNS_DIR).map_err(|e| PlumbError::sys("mkdir", NETNS_DIR, e))?;
    let p = path(name);
    match OpenOptions::new().write(true).create_new(true).open(&p) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(PlumbError::NetnsExists(name.into()))
        }
        Err(e) => return Err(PlumbError::sys("create", &p, e)),
    }
    let made = std::thread::scope(|s| s.spawn(|| sys::new_netns_at(&p)).join());
    let made = made.unwrap_or_else(|_| Err(PlumbError::Thread("netns creation panicked".into())));
    if let Err(e) = made.and_then(|()| set_link_up(Some(name), "lo")) {
        let _ = delete(name);
        return Err(e);
    }
    Ok(())
}

/// Deletes namespace `name` (like `ip netns del`); a missing namespace is not an error.
pub fn delete(name: &str) -> Result<(), PlumbError> {
    let p = path(name);
    if !p.exists() {
        return Ok(());
    }
    sys::unmount(&p)?;
    fs::remove_file(&p).map_err(|e| PlumbError::sys("remove", &p, e))
}

/// Names under `/run/netns` starting with `prefix`, sorted.
pub fn list(prefix: &str) -> Result<Vec<String>, PlumbError> {
    let rd = match fs::read_dir(NETNS_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PlumbError::sys("read_dir", NETNS_DIR, e)),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}

/// A namespace deleted when dropped (also on panic): tests and topologies hold one per netns.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    /// Creates namespace `name` and guards it.
    pub fn new(name: &str) -> Result<Self, PlumbError> {
        create(name)?;
        Ok(Self {
            name: name.to_string(),
        })
    }
    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = delete(&self.name) {
            eprintln!("zring: failed to delete netns {}: {e}", self.name);
        }
    }
}

/// Creates veth pair `name` (in `netns`) ↔ `peer`, moving `peer` into `peer_netns` when given.
/// Both ends stay down, as with `ip link add`.
pub fn veth_pair(
    netns: Option<&str>,
    name: &str,
    peer: &str,
    peer_netns: Option<&str>,
) -> Result<(), PlumbError> {
    let target = match peer_netns {
        Some(p) if !exists(p) => return Err(PlumbError::NetnsMissing(p.to_string())),
        Some(p) => {
            Some(fs::File::open(path(p)).map_err(|e| PlumbError::sys("open netns", path(p), e))?)
        }
        None => None,
    };
    nl::with_handle(netns, |h| async move {
        let what = format!("veth {name} peer {peer}");
        h.link()
            .add(LinkVeth::new(name, peer).build())
            .execute()
            .await
            .map_err(|e| PlumbError::netlink("add link", &what, e))?;
        if let Some(f) = &target {
            use std::os::fd::AsRawFd;
            let idx = nl::require_index(&h, peer, "just created").await?;
            let msg = LinkUnspec::new_with_index(idx)
                .setns_by_fd(f.as_raw_fd())
                .build();
            h.link()
                .set(msg)
                .execute()
                .await
                .map_err(|e| PlumbError::netlink("move link to netns", peer, e))?;
        }
        Ok(())
    })
}

/// `ip addr add IP/PREFIX dev DEV`.
pub fn add_address(
    netns: Option<&str>,
    dev: &str,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), PlumbError> {
    nl::with_handle(netns, |h| async move {
        let idx = nl::require_index(&h, dev, "create the interface first").await?;
        nl::add_addr(&h, idx, dev, ip, prefix).await
    })
}

/// `ip link set DEV up`.
pub fn set_link_up(netns: Option<&str>, dev: &str) -> Result<(), PlumbError> {
    nl::with_handle(netns, |h| async move {
        let idx = nl::require_index(&h, dev, "create the interface first").await?;
        nl::set_up(&h, idx, dev).await
    })
}

/// `ip link set dev FROM name TO` (the link must be down, as the kernel requires).
pub fn rename_link(netns: Option<&str>, from: &str, to: &str) -> Result<(), PlumbError> {
    nl::with_handle(netns, |h| async move {
        let idx = nl::require_index(&h, from, "create the interface first").await?;
        let msg = LinkUnspec::new_with_index(idx).name(to).build();
        h.link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| PlumbError::netlink("rename link", format!("{from} -> {to}"), e))
    })
}

/// `ip link del DEV` (a missing link is not an error; a veth takes its peer with it).
pub fn delete_link(netns: Option<&str>, dev: &str) -> Result<(), PlumbError> {
    nl::with_handle(netns, |h| async move {
        match nl::link_by_name(&h, dev).await? {
            Some(m) => nl::del_link(&h, m.header.index, dev).await,
            None => Ok(()),
        }
    })
}

/// `ip route add ROUTE` (table, via, dev, src, scope, onlink as in `route`).
pub fn add_route(netns: Option<&str>, route: &RouteSpec) -> Result<(), PlumbError> {
    nl::with_handle(netns, |h| async move {
        let oif = match &route.dev {
            Some(d) => Some(nl::require_index(&h, d, "create the interface first").await?),
            None => None,
        };
        nl::add_route(&h, msg::route_message(route, oif), &route.to_string()).await
    })
}

/// `sysctl -w KEY=VALUE` inside `netns` (dotted key, e.g. `net.ipv4.ip_forward`).
pub fn set_sysctl(netns: Option<&str>, key: &str, value: &str) -> Result<(), PlumbError> {
    let p = sysctl_path(key);
    run_in(netns, || fs::write(&p, value))?.map_err(|source| PlumbError::Sysctl {
        key: key.into(),
        value: value.into(),
        source,
    })
}

/// Reads a sysctl inside `netns` (trimmed).
pub fn read_sysctl(netns: Option<&str>, key: &str) -> Result<String, PlumbError> {
    let p = sysctl_path(key);
    let v = run_in(netns, || fs::read_to_string(&p))?;
    v.map(|s| s.trim().to_string())
        .map_err(|source| PlumbError::Sysctl {
            key: key.into(),
            value: "<read>".into(),
            source,
        })
}

/// Writes a sysctl in the calling thread's namespace (for code already inside `run_in`).
pub(crate) fn write_sysctl_here(key: &str, value: &str) -> Result<(), PlumbError> {
    fs::write(sysctl_path(key), value).map_err(|source| PlumbError::Sysctl {
        key: key.into(),
        value: value.into(),
        source,
    })
}

fn sysctl_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}
