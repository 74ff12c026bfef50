//! The `ztunnel-pods-ips` hash:ip set, spoken to the kernel over ipset's own netlink
//! protocol (NETLINK_NETFILTER, subsystem 6) on a socket opened per call, so callers run
//! it inside `netns::run_in` and it acts on that thread's namespace.
//!
//! Nothing here is linked from C: the messages are built and parsed in Rust (`wire`), and
//! every buffer is Rust's own. (The libipset binding used before freed C-allocated
//! strings with Rust's allocator, which crashed the mimalloc-linked binary; see
//! ARCHITECTURE.md, "FFI boundaries".)

mod wire;

use std::net::Ipv4Addr;

use netlink_sys::{constants::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::PlumbError;
use wire::{Reply, Request};

/// The hash size and element limit zring creates the set with (the articles' values).
const HASHSIZE: u32 = 1024;
const MAXELEM: u32 = 65536;

fn err(op: &'static str, set: &str, detail: impl Into<String>) -> PlumbError {
    PlumbError::Ipset {
        op,
        set: set.to_string(),
        detail: detail.into(),
    }
}

/// Sends `req` and reads until the kernel has answered it: `Ok(Ok(reply))`, or
/// `Ok(Err(code))` with the kernel's error code (an errno or `IPSET_ERR_*`); `Err` when
/// the socket itself failed or the name cannot be sent.
fn exchange(op: &'static str, req: &Request) -> Result<Result<Reply, i32>, PlumbError> {
    let set = req.set();
    if set.len() > wire::MAX_NAME || set.contains('\0') {
        return Err(err(
            op,
            set,
            format!("a set name is at most {} bytes", wire::MAX_NAME),
        ));
    }
    let io = |e: std::io::Error| err(op, set, format!("netlink socket: {e}"));
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io)?;
    socket.bind_auto().map_err(io)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(io)?;
    const SEQ: u32 = 1;
    socket.send(&req.encode(SEQ), 0).map_err(io)?;
    let mut reply = Reply::default();
    while !reply.done {
        let (datagram, _) = socket.recv_from_full().map_err(io)?;
        wire::parse(&datagram, SEQ, &mut reply).map_err(|m| err(op, set, m.0))?;
    }
    Ok(match reply.error {
        Some(code) => Err(code),
        None => Ok(reply),
    })
}

/// Whether the set exists.
pub(crate) fn exists(set: &str) -> Result<bool, PlumbError> {
    match exchange("header", &Request::Header { set })? {
        Ok(_) => Ok(true),
        Err(libc::ENOENT) => Ok(false),
        Err(code) => Err(err("header", set, wire::describe(code))),
    }
}

/// `ipset create SET hash:ip family inet hashsize 1024 maxelem 65536`, at the newest
/// hash:ip revision the kernel knows.
pub(crate) fn create(set: &str) -> Result<(), PlumbError> {
    let mut last = wire::ERR_FIND_TYPE;
    for revision in wire::HASH_IP_REVISIONS {
        let req = Request::Create {
            set,
            revision,
            hashsize: HASHSIZE,
            maxelem: MAXELEM,
        };
        match exchange("create", &req)? {
            Ok(_) => return Ok(()),
            Err(wire::ERR_FIND_TYPE) => last = wire::ERR_FIND_TYPE,
            Err(code) => {
                last = code;
                break;
            }
        }
    }
    Err(err("create", set, wire::describe(last)))
}

/// `ipset add -exist SET IP`.
pub(crate) fn add(set: &str, ip: Ipv4Addr) -> Result<(), PlumbError> {
    match exchange("add", &Request::Add { set, ip })? {
        Ok(_) => Ok(()),
        Err(code) => Err(err("add", set, wire::describe(code))),
    }
}

/// `ipset del -exist SET IP`.
pub(crate) fn del(set: &str, ip: Ipv4Addr) -> Result<(), PlumbError> {
    match exchange("del", &Request::Del { set, ip })? {
        // The member was not there, which is what del wants.
        Ok(_) | Err(wire::ERR_EXIST) => Ok(()),
        Err(code) => Err(err("del", set, wire::describe(code))),
    }
}

/// `ipset destroy SET` (a missing set is fine).
pub(crate) fn destroy(set: &str) -> Result<(), PlumbError> {
    match exchange("destroy", &Request::Destroy { set })? {
        Ok(_) | Err(libc::ENOENT) => Ok(()),
        Err(code) => Err(err("destroy", set, wire::describe(code))),
    }
}

/// The set's type (`hash:ip`) and IPv4 members, sorted; None when the set does not exist.
pub(crate) fn list(set: &str) -> Result<Option<(String, Vec<Ipv4Addr>)>, PlumbError> {
    match exchange("list", &Request::List { set })? {
        Ok(reply) => {
            let mut members = reply.members;
            members.sort();
            Ok(Some((reply.typename.unwrap_or_default(), members)))
        }
        Err(libc::ENOENT) => Ok(None),
        Err(code) => Err(err("list", set, wire::describe(code))),
    }
}
