//! The `ztunnel-pods-ips` hash:ip set through libipset (the `ipset` crate), called on the
//! current thread, so callers run it inside `netns::run_in`.
//!
//! libipset keeps a process-global type registry that it fills lazily, so every call here
//! is serialized by one mutex (namespace workers may run concurrently).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use ipset::types::{Error, HashIp, IpDataType, ListResult};
use ipset::Session;

use crate::PlumbError;

static LIBIPSET: Mutex<()> = Mutex::new(());

fn locked<T>(f: impl FnOnce() -> T) -> T {
    let _guard = LIBIPSET
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f()
}

fn err(op: &'static str, set: &str, e: Error) -> PlumbError {
    PlumbError::Ipset {
        op,
        set: set.to_string(),
        detail: e.to_string(),
    }
}

fn session(set: &str) -> Session<HashIp> {
    Session::<HashIp>::new(set.to_string())
}

fn exists_inner(set: &str) -> Result<bool, PlumbError> {
    match session(set).exists() {
        Ok(b) => Ok(b),
        // libipset answers a name-filtered listing of an absent set with this error.
        Err(Error::Cmd(m, _)) if m.contains("does not exist") => Ok(false),
        Err(e) => Err(err("list", set, e)),
    }
}

/// Whether the set exists.
pub(crate) fn exists(set: &str) -> Result<bool, PlumbError> {
    locked(|| exists_inner(set))
}

/// `ipset create SET hash:ip family inet hashsize 1024 maxelem 65536`.
pub(crate) fn create(set: &str) -> Result<(), PlumbError> {
    locked(|| {
        session(set)
            .create(|b| b.with_hash_size(1024)?.with_max_elem(65536)?.build())
            .map(drop)
            .map_err(|e| err("create", set, e))
    })
}

/// `ipset add -exist SET IP`.
pub(crate) fn add(set: &str, ip: Ipv4Addr) -> Result<(), PlumbError> {
    locked(|| {
        session(set)
            .add(ip, &[])
            .map(drop)
            .map_err(|e| err("add", set, e))
    })
}

/// `ipset del -exist SET IP`.
pub(crate) fn del(set: &str, ip: Ipv4Addr) -> Result<(), PlumbError> {
    locked(|| {
        session(set)
            .del(ip)
            .map(drop)
            .map_err(|e| err("del", set, e))
    })
}

/// `ipset destroy SET` (a missing set is fine).
pub(crate) fn destroy(set: &str) -> Result<(), PlumbError> {
    locked(|| {
        if !exists_inner(set)? {
            return Ok(());
        }
        session(set)
            .destroy()
            .map(drop)
            .map_err(|e| err("destroy", set, e))
    })
}

/// The set's type (`hash:ip`) and IPv4 members, sorted; None when the set does not exist.
pub(crate) fn list(set: &str) -> Result<Option<(String, Vec<Ipv4Addr>)>, PlumbError> {
    locked(|| {
        if !exists_inner(set)? {
            return Ok(None);
        }
        let ListResult::Normal(r) = session(set).list().map_err(|e| err("list", set, e))? else {
            return Ok(Some((String::new(), Vec::new())));
        };
        let mut members: Vec<Ipv4Addr> = r
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(d, _): (IpDataType, _)| match d.to_ip_addr() {
                IpAddr::V4(v) => Some(v),
                IpAddr::V6(_) => None,
            })
            .collect();
        members.sort();
        Ok(Some((r.typ, members)))
    })
}
