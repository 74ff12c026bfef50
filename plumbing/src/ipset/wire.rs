//! ipset's netlink protocol (nfnetlink subsystem 6), built and parsed in memory: the
//! requests zring sends for its one `hash:ip` set and the replies it reads back.
//!
//! The constants are the kernel's UAPI (`linux/netfilter/ipset/ip_set.h`,
//! `linux/netfilter/nfnetlink.h`, `linux/netlink.h`). Nothing here does I/O; `super`
//! sends what [`Request::encode`] builds and feeds what arrives to [`parse`].

use std::net::Ipv4Addr;

#[cfg(test)]
mod tests;

/// nfnetlink's subsystem number for ipset (the high byte of the message type).
const NFNL_SUBSYS_IPSET: u16 = 6;
/// The protocol version sent with every request (ipset 7.x userspace sends 7; kernels
/// accept 6 and up).
const IPSET_PROTOCOL: u8 = 7;
/// `NFPROTO_IPV4`.
const NFPROTO_IPV4: u8 = 2;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;

const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

// Command-level attributes.
const ATTR_PROTOCOL: u16 = 1;
const ATTR_SETNAME: u16 = 2;
const ATTR_TYPENAME: u16 = 3;
const ATTR_REVISION: u16 = 4;
const ATTR_FAMILY: u16 = 5;
const ATTR_DATA: u16 = 7;
const ATTR_ADT: u16 = 8;
// Attributes inside DATA.
const ATTR_IP: u16 = 1;
const ATTR_HASHSIZE: u16 = 18;
const ATTR_MAXELEM: u16 = 19;
// Inside IP.
const ATTR_IPADDR_IPV4: u16 = 1;

/// The longest set name the kernel takes, without its NUL (`IPSET_MAXNAMELEN - 1`).
pub(crate) const MAX_NAME: usize = 31;
/// The set type zring creates.
pub(crate) const HASH_IP: &str = "hash:ip";
/// `hash:ip` revisions, newest first: creation tries each until the kernel knows one.
pub(crate) const HASH_IP_REVISIONS: [u8; 7] = [6, 5, 4, 3, 2, 1, 0];

/// `IPSET_ERR_FIND_TYPE`: the kernel has no such type (or revision).
pub(crate) const ERR_FIND_TYPE: i32 = 4098;
/// `IPSET_ERR_EXIST`: the element already exists (add) or does not (del).
pub(crate) const ERR_EXIST: i32 = 4103;

/// ipset commands (`enum ipset_cmd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    Create = 2,
    Destroy = 3,
    List = 7,
    Add = 9,
    Del = 10,
    Header = 12,
}

/// One request for one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// `ipset create SET hash:ip family inet hashsize H maxelem M` at a type revision.
    Create {
        set: &'a str,
        revision: u8,
        hashsize: u32,
        maxelem: u32,
    },
    /// `ipset destroy SET`.
    Destroy { set: &'a str },
    /// `ipset add -exist SET IP` (no NLM_F_EXCL: an existing member is not an error).
    Add { set: &'a str, ip: Ipv4Addr },
    /// `ipset del -exist SET IP`.
    Del { set: &'a str, ip: Ipv4Addr },
    /// The set's header (type): ENOENT when it does not exist.
    Header { set: &'a str },
    /// A dump of the set's header and members.
    List { set: &'a str },
}

impl<'a> Request<'a> {
    fn cmd(&self) -> Cmd {
        match self {
            Request::Create { .. } => Cmd::Create,
            Request::Destroy { .. } => Cmd::Destroy,
            Request::Add { .. } => Cmd::Add,
            Request::Del { .. } => Cmd::Del,
            Request::Header { .. } => Cmd::Header,
            Request::List { .. } => Cmd::List,
        }
    }

    /// The set the request is about.
    pub(crate) fn set(&self) -> &'a str {
        match *self {
            Request::Create { set, .. }
            | Request::Destroy { set }
            | Request::Add { set, .. }
            | Request::Del { set, .. }
            | Request::Header { set }
            | Request::List { set } => set,
        }
    }

    /// Whether the kernel answers with a dump (ended by NLMSG_DONE) rather than an ack.
    pub(crate) fn is_dump(&self) -> bool {
        matches!(self, Request::List { .. })
    }

    /// The whole netlink message with sequence number `seq`. The set name must be at most
    /// [`MAX_NAME`] bytes (checked by the caller, which names the set in its error).
    pub(crate) fn encode(&self, seq: u32) -> Vec<u8> {
        let flags = NLM_F_REQUEST
            | if self.is_dump() {
                NLM_F_DUMP
            } else {
                NLM_F_ACK
            };
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&[0; NLMSG_HDRLEN]);
        b.extend_from_slice(&[NFPROTO_IPV4, 0, 0, 0]);
        put(&mut b, ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
        put_str(&mut b, ATTR_SETNAME, self.set());
        match *self {
            Request::Create {
                revision,
                hashsize,
                maxelem,
                ..
            } => {
                put_str(&mut b, ATTR_TYPENAME, HASH_IP);
                put(&mut b, ATTR_REVISION, &[revision]);
                put(&mut b, ATTR_FAMILY, &[NFPROTO_IPV4]);
                let data = nest(&mut b, ATTR_DATA);
                put_be32(&mut b, ATTR_HASHSIZE, hashsize);
                put_be32(&mut b, ATTR_MAXELEM, maxelem);
                end_nest(&mut b, data);
            }
            Request::Add { ip, .. } | Request::Del { ip, .. } => {
                let data = nest(&mut b, ATTR_DATA);
                let addr = nest(&mut b, ATTR_IP);
                put_be32(&mut b, ATTR_IPADDR_IPV4, u32::from(ip));
                end_nest(&mut b, addr);
                end_nest(&mut b, data);
            }
            Request::Destroy { .. } | Request::Header { .. } | Request::List { .. } => {}
        }
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let kind = (NFNL_SUBSYS_IPSET << 8) | self.cmd() as u16;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b[4..6].copy_from_slice(&kind.to_ne_bytes());
        b[6..8].copy_from_slice(&flags.to_ne_bytes());
        b[8..12].copy_from_slice(&seq.to_ne_bytes());
        b
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn put(b: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(payload);
    b.resize(align4(b.len()), 0);
}

fn put_str(b: &mut Vec<u8>, kind: u16, s: &str) {
    let mut z = Vec::with_capacity(s.len() + 1);
    z.extend_from_slice(s.as_bytes());
    z.push(0);
    put(b, kind, &z);
}

fn put_be32(b: &mut Vec<u8>, kind: u16, v: u32) {
    put(b, kind | NLA_F_NET_BYTEORDER, &v.to_be_bytes());
}

/// Opens a nested attribute; returns where its header is, for [`end_nest`].
fn nest(b: &mut Vec<u8>, kind: u16) -> usize {
    let at = b.len();
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

fn end_nest(b: &mut [u8], at: usize) {
    let len = u16::try_from(b.len() - at).unwrap_or(u16::MAX);
    b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// What one received datagram said about the request with sequence number `seq`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The set's type name, when a message named it.
    pub typename: Option<String>,
    /// IPv4 members listed (in the kernel's order).
    pub members: Vec<Ipv4Addr>,
    /// The request is answered: an ack, an error or the end of a dump.
    pub done: bool,
    /// The kernel's error (a positive errno or `IPSET_ERR_*`), if it refused the request.
    pub error: Option<i32>,
}

/// A reply the kernel should never send: too short, or lengths that overrun.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

/// Parses one datagram of replies into `into` (members accumulate across datagrams of a
/// dump). Messages with another sequence number are ignored.
pub(crate) fn parse(datagram: &[u8], seq: u32, into: &mut Reply) -> Result<(), Malformed> {
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32_at(rest, 0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(Malformed("netlink message length overruns the datagram"));
        }
        let (msg, next) = rest.split_at(len);
        rest = next.get(align4(len) - len..).unwrap_or(&[]);
        if u32_at(msg, 8) != seq {
            continue;
        }
        message(u16_at(msg, 4), &msg[NLMSG_HDRLEN..], into)?;
    }
    Ok(())
}

fn message(kind: u16, body: &[u8], into: &mut Reply) -> Result<(), Malformed> {
    match kind {
        NLMSG_ERROR => {
            let code = body
                .get(..4)
                .ok_or(Malformed("short netlink error message"))?;
            into.error = error_code(u32_at(code, 0));
            into.done = true;
        }
        // A dump that failed part-way ends with its (negative) error here.
        NLMSG_DONE => {
            into.error = body.get(..4).and_then(|c| error_code(u32_at(c, 0)));
            into.done = true;
        }
        k if k >> 8 == NFNL_SUBSYS_IPSET => {
            let attrs = body
                .get(NFGENMSG_LEN..)
                .ok_or(Malformed("short ipset message"))?;
            set_attrs(attrs, into)?;
        }
        _ => {}
    }
    Ok(())
}

/// A netlink error field (0 or a negative errno) as a positive code, None for success.
fn error_code(raw: u32) -> Option<i32> {
    let code = raw as i32;
    (code < 0).then(|| code.saturating_neg())
}

fn set_attrs(attrs: &[u8], into: &mut Reply) -> Result<(), Malformed> {
    for (kind, payload) in Attrs(attrs) {
        match kind? {
            ATTR_TYPENAME => into.typename = Some(c_string(payload)),
            ATTR_ADT => {
                for (k, entry) in Attrs(payload) {
                    if k? == ATTR_DATA {
                        into.members.extend(entry_ip(entry)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The IPv4 address inside one listed entry (`DATA { IP { IPADDR_IPV4 } }`).
fn entry_ip(entry: &[u8]) -> Result<Option<Ipv4Addr>, Malformed> {
    for (k, ip) in Attrs(entry) {
        if k? != ATTR_IP {
            continue;
        }
        for (k, addr) in Attrs(ip) {
            if k? == ATTR_IPADDR_IPV4 {
                let a: [u8; 4] = addr
                    .try_into()
                    .map_err(|_| Malformed("IPv4 member is not 4 bytes"))?;
                return Ok(Some(Ipv4Addr::from(a)));
            }
        }
    }
    Ok(None)
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The attributes of one level: (type without flags, payload).
struct Attrs<'a>(&'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (Result<u16, Malformed>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.len() < 4 {
            return None;
        }
        let len = usize::from(u16_at(self.0, 0));
        if len < 4 || len > self.0.len() {
            self.0 = &[];
            return Some((Err(Malformed("attribute length overruns its message")), &[]));
        }
        let kind = u16_at(self.0, 2) & NLA_TYPE_MASK;
        let payload = &self.0[4..len];
        self.0 = self.0.get(align4(len)..).unwrap_or(&[]);
        Some((Ok(kind), payload))
    }
}

/// The kernel's words for an ipset error code (`IPSET_ERR_*`, else the errno's).
pub(crate) fn describe(code: i32) -> String {
    let s = match code {
        libc::ENOENT => "the set does not exist",
        libc::EPERM => "operation not permitted (CAP_NET_ADMIN is needed)",
        4097 => "kernel and zring speak incompatible ipset protocol versions",
        ERR_FIND_TYPE => "the kernel has no hash:ip set type (load the ip_set_hash_ip module)",
        4099 => "the kernel's limit on the number of sets is reached",
        4100 => "the set is in use by iptables rules",
        4101 => "a set with that name already exists",
        4102 => "a set with that name exists with another type",
        ERR_EXIST => "the element already exists (add) or does not exist (del)",
        4106 => "wrong address family for the set",
        4108 => "the set is referenced by other rules or sets",
        4109 => "invalid IPv4 address",
        4352 => "the set is full (maxelem reached)",
        _ => return std::io::Error::from_raw_os_error(code).to_string(),
    };
    format!("{s} (error {code})")
}
