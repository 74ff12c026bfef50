//! One `iptables-save` rule spec as the evaluator understands it: the matches and targets
//! the plumbing writes (and nothing else). A spec with any other option is reported as
//! "not evaluated" instead of being guessed at. Pure.

use std::net::Ipv4Addr;

use super::{Packet, Proto};

/// Which address of the packet an ipset match tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dir {
    Src,
    Dst,
}

/// One match of a rule; `bool` = negated (`!`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    InIf(bool, String),
    Src(bool, Ipv4Addr, u8),
    Dst(bool, Ipv4Addr, u8),
    Proto(bool, Proto),
    Dport(u16),
    Mark(u32, u32),
    Connmark(u32, u32),
    Set(String, Dir),
    SocketExists,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `MARK --set-xmark VALUE/MASK`.
    Mark(u32, u32),
    /// `CONNMARK --save-mark --nfmask N --ctmask C`.
    SaveMark(u32, u32),
    /// `TPROXY --on-port P --tproxy-mark VALUE/MASK`.
    Tproxy(u16, u32, u32),
    Return,
    Accept,
    /// `-j CHAIN` (a user chain).
    Jump(String),
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub conds: Vec<Cond>,
    pub action: Action,
}

/// `0x100/0x100` → (0x100, 0x100); a bare value has mask 0xffffffff.
pub(crate) fn mark_mask(s: &str) -> Option<(u32, u32)> {
    let hex = |v: &str| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok();
    match s.split_once('/') {
        Some((v, m)) => Some((hex(v)?, hex(m)?)),
        None => Some((hex(s)?, u32::MAX)),
    }
}

fn cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    match s.split_once('/') {
        Some((a, p)) => Some((a.parse().ok()?, p.parse().ok()?)),
        None => Some((s.parse().ok()?, 32)),
    }
}

/// Parses one spec (everything after `-A CHAIN `); Err names the token not understood.
pub(crate) fn parse(spec: &str) -> Result<Parsed, String> {
    let t: Vec<&str> = spec.split_whitespace().collect();
    let (mut conds, mut i, mut neg, mut module) = (Vec::new(), 0, false, "");
    while i < t.len() {
        let args = &t[i + 1..];
        match t[i] {
            "!" => neg = true,
            "-j" => return action(args).map(|action| Parsed { conds, action }),
            "-m" if matches!(
                args.first(),
                Some(&("tcp" | "udp" | "mark" | "connmark" | "set" | "owner"))
            ) =>
            {
                module = args[0];
            }
            opt => conds.push(
                cond(opt, args, neg, module).ok_or_else(|| t[i..(i + 2).min(t.len())].join(" "))?,
            ),
        }
        if t[i] != "!" {
            neg = false;
        }
        i += 1 + arity(t[i]);
    }
    Err("-j (no target)".into())
}

/// How many arguments follow an option.
fn arity(opt: &str) -> usize {
    match opt {
        "!" | "--socket-exists" => 0,
        "--match-set" => 2,
        _ => 1,
    }
}

fn cond(opt: &str, args: &[&str], neg: bool, module: &str) -> Option<Cond> {
    let arg = *args.first().unwrap_or(&"");
    Some(match opt {
        "-i" => Cond::InIf(neg, arg.to_string()),
        "-s" => cidr(arg).map(|(a, p)| Cond::Src(neg, a, p))?,
        "-d" => cidr(arg).map(|(a, p)| Cond::Dst(neg, a, p))?,
        "-p" => Cond::Proto(neg, Proto::parse(arg)?),
        "--dport" if !neg => Cond::Dport(arg.parse().ok()?),
        "--mark" if !neg && module == "connmark" => {
            mark_mask(arg).map(|(v, m)| Cond::Connmark(v, m))?
        }
        "--mark" if !neg => mark_mask(arg).map(|(v, m)| Cond::Mark(v, m))?,
        "--match-set" if !neg => Cond::Set(arg.to_string(), dir(args.get(1)?)?),
        "--socket-exists" if !neg => Cond::SocketExists,
        _ => return None,
    })
}

fn dir(s: &str) -> Option<Dir> {
    match s {
        "src" => Some(Dir::Src),
        "dst" => Some(Dir::Dst),
        _ => None,
    }
}

fn opt<'a>(t: &[&'a str], name: &str) -> Option<&'a str> {
    t.iter()
        .position(|x| *x == name)
        .and_then(|i| t.get(i + 1).copied())
}

fn action(t: &[&str]) -> Result<Action, String> {
    let bad = || t.join(" ");
    let mm = |name| opt(t, name).and_then(mark_mask).ok_or_else(bad);
    let hex = |name| mm(name).map(|(v, _)| v);
    Ok(match t.first().copied() {
        Some("MARK") => mm("--set-xmark").map(|(v, m)| Action::Mark(v, m))?,
        Some("CONNMARK") if t.contains(&"--save-mark") => {
            Action::SaveMark(hex("--nfmask")?, hex("--ctmask")?)
        }
        Some("TPROXY") => {
            let port = opt(t, "--on-port").and_then(|p| p.parse().ok());
            let (v, m) = mm("--tproxy-mark")?;
            Action::Tproxy(port.ok_or_else(bad)?, v, m)
        }
        Some("RETURN") if t.len() == 1 => Action::Return,
        Some("ACCEPT") if t.len() == 1 => Action::Accept,
        Some(c) if c.starts_with("ztunnel-") && t.len() == 1 => Action::Jump(c.to_string()),
        _ => return Err(bad()),
    })
}

fn in_net(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// What a condition needs to know beyond the packet.
pub(crate) struct Env<'a> {
    /// The ipset members, by set name.
    pub set: &'a dyn Fn(&str, Ipv4Addr) -> bool,
    /// Whether the packet belongs to a local socket (OUTPUT of a connected socket).
    pub socket: bool,
}

impl Cond {
    /// Whether `p` satisfies this condition.
    pub(crate) fn holds(&self, p: &Packet, env: &Env<'_>) -> bool {
        match self {
            Cond::InIf(n, d) => (p.iif.as_deref() == Some(d.as_str())) != *n,
            Cond::Src(n, a, l) => in_net(p.src, *a, *l) != *n,
            Cond::Dst(n, a, l) => in_net(p.dst, *a, *l) != *n,
            Cond::Proto(n, pr) => (p.proto == *pr) != *n,
            Cond::Dport(d) => p.dport == Some(*d),
            Cond::Mark(v, m) => p.mark & m == *v,
            Cond::Connmark(v, m) => p.connmark & m == *v,
            Cond::Set(name, Dir::Src) => (env.set)(name, p.src),
            Cond::Set(name, Dir::Dst) => (env.set)(name, p.dst),
            Cond::SocketExists => env.socket,
        }
    }
}

/// `--set-xmark V/M`: zero the bits of M, then XOR V (iptables' definition).
pub(crate) fn xmark(mark: u32, v: u32, m: u32) -> u32 {
    (mark & !m) ^ v
}

/// Whether `ip` is in `net/prefix` (shared with route lookup).
pub(crate) fn contains(net: Ipv4Addr, prefix: u8, ip: Ipv4Addr) -> bool {
    in_net(ip, net, prefix)
}
