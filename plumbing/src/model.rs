//! The desired-state vocabulary: routes, policy rules, tunnels, iptables rules, the ipset
//! and sysctls, each rendered in the notation the articles print (`ip route`, `ip rule`,
//! `iptables-save`). Pure data, no I/O.

use std::fmt;
use std::net::Ipv4Addr;

/// A route as `ip route show table N` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteSpec {
    /// Routing table id (254 = main).
    pub table: u32,
    /// Destination address (`0.0.0.0` with `prefix` 0 is `default`).
    pub dst: Ipv4Addr,
    /// Destination prefix length.
    pub prefix: u8,
    /// `local` route type (delivers to this host) instead of unicast.
    pub local: bool,
    /// Next hop (`via`).
    pub gateway: Option<Ipv4Addr>,
    /// Output device (`dev`).
    pub dev: Option<String>,
    /// Scope: `link` / `host` when set, universe otherwise.
    pub scope: Scope,
    /// Preferred source address (`src`).
    pub src: Option<Ipv4Addr>,
    /// Gateway reachable on the device without a covering route (`onlink`).
    pub onlink: bool,
}

/// Route scope, as printed by `ip route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Scope {
    /// Global (not printed).
    #[default]
    Universe,
    /// `scope link`: directly attached.
    Link,
    /// `scope host`: this host.
    Host,
}

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

impl RouteSpec {
    /// A unicast route `dst/prefix` in `table`, to be refined with the builder methods.
    pub fn new(table: u32, dst: Ipv4Addr, prefix: u8) -> Self {
        Self {
            table,
            dst,
            prefix,
            local: false,
            gateway: None,
            dev: None,
            scope: Scope::Universe,
            src: None,
            onlink: false,
        }
    }
    /// Sets `via`.
    pub fn via(mut self, gw: Ipv4Addr) -> Self {
        self.gateway = Some(gw);
        self
    }
    /// Sets `dev`.
    pub fn dev(mut self, dev: &str) -> Self {
        self.dev = Some(dev.to_string());
        self
    }
    /// Sets `src`.
    pub fn src(mut self, src: Ipv4Addr) -> Self {
        self.src = Some(src);
        self
    }
    /// Sets the scope.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
    /// Sets `onlink`.
    pub fn onlink(mut self) -> Self {
        self.onlink = true;
        self
    }
    /// Makes it a `local` route (scope host).
    pub fn local(mut self) -> Self {
        self.local = true;
        self.scope = Scope::Host;
        self
    }
}

impl fmt::Display for RouteSpec {
    /// `ip route show table N` notation (without the table).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.local {
            f.write_str("local ")?;
        }
        match (self.dst, self.prefix) {
            (_, 0) => f.write_str("default")?,
            (d, 32) => write!(f, "{d}")?,
            (d, p) => write!(f, "{d}/{p}")?,
        }
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        match self.scope {
            Scope::Universe => {}
            Scope::Link => f.write_str(" scope link")?,
            Scope::Host => f.write_str(" scope host")?,
        }
        if let Some(s) = self.src {
            write!(f, " src {s}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        Ok(())
    }
}

/// What a policy rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleTarget {
    /// `lookup N`: consult routing table N.
    Lookup(u32),
    /// `goto P`: continue at the rule with priority P.
    Goto(u32),
}

/// An IPv4 policy routing rule as `ip rule` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRule {
    /// Priority (`100:`).
    pub priority: u32,
    /// `fwmark MARK/MASK`.
    pub fwmark: Option<(u32, u32)>,
    /// Action.
    pub target: RuleTarget,
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:\tfrom all", self.priority)?;
        if let Some((m, k)) = self.fwmark {
            write!(f, " fwmark {m:#x}/{k:#x}")?;
        }
        match self.target {
            RuleTarget::Lookup(t) => write!(f, " lookup {t}"),
            RuleTarget::Goto(p) => write!(f, " goto {p}"),
        }
    }
}

/// The UDP encapsulation of the istioin/istioout tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKind {
    /// GENEVE, UDP 6081 (the articles); falls back to VXLAN when the kernel lacks it.
    #[default]
    Geneve,
    /// VXLAN, UDP 4789.
    Vxlan,
}

impl TunnelKind {
    /// The UDP destination port of the encapsulation.
    pub fn udp_port(self) -> u16 {
        match self {
            Self::Geneve => 6081,
            Self::Vxlan => 4789,
        }
    }
    /// The kernel's link kind name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Geneve => "geneve",
            Self::Vxlan => "vxlan",
        }
    }
}

/// One end of a point-to-point UDP tunnel with its /30 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Interface name (istioin, pistioout, ...).
    pub name: String,
    /// Virtual network identifier.
    pub vni: u32,
    /// Remote endpoint (the peer's IP).
    pub remote: Ipv4Addr,
    /// This end's address.
    pub addr: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
}

impl TunnelSpec {
    /// `ip link add ...` notation for `kind`.
    pub fn render(&self, kind: TunnelKind) -> String {
        let (n, v, r, p) = (&self.name, self.vni, self.remote, kind.udp_port());
        match kind {
            TunnelKind::Geneve => {
                format!("ip link add {n} type geneve id {v} remote {r} dstport {p}")
            }
            TunnelKind::Vxlan => {
                format!("ip link add {n} type vxlan id {v} remote {r} dstport {p}")
            }
        }
    }
}

/// An iptables table the plumbing writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Marks, CONNMARK and TPROXY.
    Mangle,
    /// The ACCEPT that skips kube-proxy's DNAT for captured packets.
    Nat,
}

impl Table {
    /// The name iptables uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mangle => "mangle",
            Self::Nat => "nat",
        }
    }
}

/// One iptables rule: `-A CHAIN SPEC` in `table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptRule {
    /// Table.
    pub table: Table,
    /// Chain (builtin or ours).
    pub chain: String,
    /// Everything after `-A CHAIN `, exactly as `iptables-save` prints it.
    pub spec: String,
}

impl IptRule {
    /// `-A CHAIN SPEC`, the iptables-save line.
    pub fn line(&self) -> String {
        format!("-A {} {}", self.chain, self.spec)
    }
    /// Whether the rule sits in a builtin chain (jumps and the ztunnel pod's TPROXY rules).
    pub fn in_builtin(&self) -> bool {
        matches!(
            self.chain.as_str(),
            "PREROUTING" | "INPUT" | "FORWARD" | "OUTPUT" | "POSTROUTING"
        )
    }
    /// Whether the rule only jumps to a chain of ours.
    pub fn is_jump(&self) -> bool {
        self.in_builtin() && self.spec.starts_with("-j ztunnel-")
    }
}

/// A sysctl the plumbing sets (settings, not objects: `down` leaves them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// Dotted key, e.g. `net.ipv4.conf.istioin.rp_filter`.
    pub key: String,
    /// Value.
    pub value: String,
}

impl Sysctl {
    /// `key = value`.
    pub fn new(key: String, value: &str) -> Self {
        Self {
            key,
            value: value.to_string(),
        }
    }
}
