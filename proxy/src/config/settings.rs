//! Run settings: command-line flags and environment variables → a validated [`Config`].
//!
//! Values that can be wrong are taken as strings by clap and parsed in
//! [`RunArgs::into_config`], so one run reports every bad setting, not just the first.
//! Environment variable names are ztunnel's where ztunnel has the setting.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{ConfigError, ConfigErrors};

pub const ENV_CONFIG: &str = "LOCAL_XDS_PATH";
pub const ENV_CERT_DIR: &str = "ZRING_CERT_DIR";
pub const ENV_NODE_NAME: &str = "NODE_NAME";
pub const ENV_TRUST_DOMAIN: &str = "TRUST_DOMAIN";
pub const ENV_CORES: &str = "ZTUNNEL_WORKER_THREADS";
pub const ENV_OUTBOUND_ADDR: &str = "ZRING_OUTBOUND_ADDR";
pub const ENV_INBOUND_ADDR: &str = "ZRING_INBOUND_ADDR";
pub const ENV_INBOUND_PLAINTEXT_ADDR: &str = "ZRING_INBOUND_PLAINTEXT_ADDR";
pub const ENV_SOCKS5_ADDR: &str = "ZRING_SOCKS5_ADDR";
pub const ENV_ADMIN_ADDR: &str = "ZRING_ADMIN_ADDR";
pub const ENV_STATS_ADDR: &str = "ZRING_STATS_ADDR";
pub const ENV_READINESS_ADDR: &str = "ZRING_READINESS_ADDR";
pub const ENV_HBONE_PORT: &str = "ZRING_HBONE_PORT";
pub const ENV_TRANSPARENT: &str = "ZRING_TRANSPARENT";
pub const ENV_HBONE_OWN_HTTP2: &str = "ZRING_HBONE_OWN_HTTP2";
pub const ENV_SAME_NODE_FAST_PATH: &str = "ZRING_SAME_NODE_FAST_PATH";
pub const ENV_POOL_MAX_STREAMS: &str = "POOL_MAX_STREAMS_PER_CONNECTION";
pub const ENV_POOL_IDLE_TIMEOUT: &str = "POOL_UNUSED_RELEASE_TIMEOUT";
pub const ENV_PING_INTERVAL: &str = "ZRING_PING_INTERVAL";
pub const ENV_PING_TIMEOUT: &str = "ZRING_PING_TIMEOUT";
pub const ENV_CONNECT_TIMEOUT: &str = "ZRING_CONNECT_TIMEOUT";
pub const ENV_RELOAD_INTERVAL: &str = "ZRING_RELOAD_INTERVAL";
pub const ENV_PLUMB: &str = "ZRING_PLUMB";
pub const ENV_PLUMB_ETH0: &str = "ZRING_PLUMB_ETH0";
pub const ENV_PLUMB_GATEWAY: &str = "ZRING_PLUMB_GATEWAY";
pub const ENV_HOST_NETNS: &str = "ZRING_HOST_NETNS";
/// In-pod mode (istio-cni hands pods over ZDS), off by default.
pub const ENV_INPOD: &str = "ZRING_INPOD";
/// The CNI's ZDS socket, ztunnel's variable.
pub const ENV_INPOD_UDS: &str = crate::inpod::INPOD_UDS_ENV;
pub const ENV_PLUMB_HOST_VETH: &str = "ZRING_PLUMB_HOST_VETH";
pub const ENV_IO_URING_ENTRIES: &str = "ZRING_IO_URING_ENTRIES";
pub const ENV_PIN: &str = "ZRING_PIN";
/// ztunnel's (and Kubernetes') name: seconds a terminating pod is given.
pub const ENV_DRAIN_TIMEOUT: &str = "TERMINATION_GRACE_PERIOD_SECONDS";

/// Whether each core's thread is pinned to one CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pin {
    /// Pin only when the process was given a cpuset smaller than the machine (dedicated
    /// CPUs, e.g. Kubernetes' static CPU manager); otherwise let the scheduler place the
    /// threads, since pinned cores compete with everything else sharing those CPUs.
    Auto,
    On,
    Off,
}

impl Pin {
    /// The decision for a process allowed on `allowed` of the machine's `online` CPUs.
    pub fn pins(self, allowed: usize, online: usize) -> bool {
        match self {
            Pin::On => true,
            Pin::Off => false,
            Pin::Auto => allowed < online,
        }
    }
}

/// monoio accepts ring sizes in this range (see STACK.md).
pub const IO_URING_ENTRIES: std::ops::RangeInclusive<u32> = 256..=32768;
/// Linux interface names are at most IFNAMSIZ - 1 bytes.
pub(super) const MAX_IFNAME: usize = 15;

/// `zring run` flags. Every flag also reads the environment variable shown in `--help`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Workload config: ztunnel LocalConfig YAML (workloads, services, policies).
    #[arg(long = "config", env = ENV_CONFIG, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory with the CA bundle and this node's workload certificates.
    #[arg(long, env = ENV_CERT_DIR, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// This node's name; workloads whose `node` equals it are local (unset: all are).
    #[arg(long, env = ENV_NODE_NAME)]
    pub node_name: Option<String>,
    #[arg(long, env = ENV_TRUST_DOMAIN, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Data-plane cores (one io_uring runtime each); default: all available.
    #[arg(long, env = ENV_CORES, value_name = "N")]
    pub cores: Option<String>,
    /// Outbound capture listener (`off` disables it).
    #[arg(long, env = ENV_OUTBOUND_ADDR, default_value = "0.0.0.0:15001", value_name = "ADDR|off")]
    pub outbound_addr: String,
    /// Inbound HBONE listener.
    #[arg(long, env = ENV_INBOUND_ADDR, default_value = "0.0.0.0:15008", value_name = "ADDR|off")]
    pub inbound_addr: String,
    /// Inbound plaintext capture listener.
    #[arg(long, env = ENV_INBOUND_PLAINTEXT_ADDR, default_value = "0.0.0.0:15006", value_name = "ADDR|off")]
    pub inbound_plaintext_addr: String,
    /// SOCKS5 outbound listener (no auth; for tests and benchmarks without capture).
    #[arg(long, env = ENV_SOCKS5_ADDR, default_value = "127.0.0.1:15080", value_name = "ADDR|off")]
    pub socks5_addr: String,
    #[arg(long, env = ENV_ADMIN_ADDR, default_value = "127.0.0.1:15000", value_name = "ADDR|off")]
    pub admin_addr: String,
    /// Prometheus /metrics.
    #[arg(long, env = ENV_STATS_ADDR, default_value = "0.0.0.0:15020", value_name = "ADDR|off")]
    pub stats_addr: String,
    /// /healthz/ready.
    #[arg(long, env = ENV_READINESS_ADDR, default_value = "0.0.0.0:15021", value_name = "ADDR|off")]
    pub readiness_addr: String,
    /// Port dialled on destination pods for HBONE.
    #[arg(long, env = ENV_HBONE_PORT, default_value = "15008", value_name = "PORT")]
    pub hbone_port: String,
    /// IP_TRANSPARENT listeners and source-IP spoofing.
    #[arg(long, env = ENV_TRANSPARENT, default_value = "true", value_name = "true|false")]
    pub transparent: String,
    /// Join a connection between two workloads on this node directly (no HBONE to
    /// ourselves); the destination's policy is still applied with the source identity.
    #[arg(long, env = ENV_SAME_NODE_FAST_PATH, default_value = "true", value_name = "true|false")]
    pub same_node_fast_path: String,
    /// Run HBONE's HTTP/2 on zring's own code at both ends, the inbound server (15008)
    /// and the outbound pool's client (frames parsed in the opened TLS records, DATA
    /// sealed straight into the send buffer), instead of the h2 crate.
    #[arg(long, env = ENV_HBONE_OWN_HTTP2, default_value = "false", value_name = "true|false")]
    pub hbone_own_http2: String,
    /// Concurrent CONNECT streams per pooled HBONE connection.
    #[arg(long, env = ENV_POOL_MAX_STREAMS, default_value = "100", value_name = "N")]
    pub pool_max_streams: String,
    /// Idle pooled connections are closed after this long (e.g. 300s, 5m).
    #[arg(long, env = ENV_POOL_IDLE_TIMEOUT, default_value = "300s", value_name = "DURATION")]
    pub pool_idle_timeout: String,
    #[arg(long, env = ENV_PING_INTERVAL, default_value = "10s", value_name = "DURATION")]
    pub ping_interval: String,
    /// A pooled connection whose PING is unanswered this long is dropped.
    #[arg(long, env = ENV_PING_TIMEOUT, default_value = "20s", value_name = "DURATION")]
    pub ping_timeout: String,
    #[arg(long, env = ENV_CONNECT_TIMEOUT, default_value = "10s", value_name = "DURATION")]
    pub connect_timeout: String,
    /// How often the workload config and certificate files are re-checked.
    #[arg(long, env = ENV_RELOAD_INTERVAL, default_value = "2s", value_name = "DURATION")]
    pub reload_interval: String,
    /// Install the node's capture rules and routes at start (needs root).
    #[arg(long, env = ENV_PLUMB)]
    pub plumb: bool,
    /// The node's uplink interface, for --plumb.
    #[arg(long, env = ENV_PLUMB_ETH0, default_value = "eth0", value_name = "IFNAME")]
    pub plumb_eth0: String,
    /// The node's pod gateway IP, for --plumb (default: the pod's default route).
    #[arg(long, env = ENV_PLUMB_GATEWAY, value_name = "IP")]
    pub plumb_gateway: Option<String>,
    /// With --plumb: also bring the node side up in this network namespace (a namespace
    /// file, e.g. a mount of the host's /proc/1/ns/net, or a name under /run/netns) and
    /// enrol this node's HBONE workloads there.
    #[arg(long, env = ENV_HOST_NETNS, value_name = "PATH")]
    pub host_netns: Option<String>,
    /// The host-side veth of zring's pod, for --host-netns (default: found from the
    /// pod interface's peer).
    #[arg(long, env = ENV_PLUMB_HOST_VETH, value_name = "IFNAME")]
    pub plumb_host_veth: Option<String>,
    /// In-pod mode: take pods' network namespaces from istio-cni over ZDS and listen on
    /// 15001/15006/15008 inside each (no --plumb).
    #[arg(long, env = ENV_INPOD, default_value = "false", value_name = "true|false")]
    pub inpod: String,
    /// The CNI's ZDS socket, for --inpod.
    #[arg(long, env = ENV_INPOD_UDS, default_value = crate::inpod::DEFAULT_INPOD_UDS, value_name = "PATH")]
    pub inpod_uds: PathBuf,
    /// io_uring submission queue size per core.
    #[arg(long, env = ENV_IO_URING_ENTRIES, default_value = "1024", value_name = "N")]
    pub io_uring_entries: String,
    /// Pin each core's thread to a CPU: auto (only with a dedicated cpuset), on, off.
    #[arg(long, env = ENV_PIN, default_value = "auto", value_name = "auto|on|off")]
    pub pin: String,
    /// On SIGTERM/SIGINT: stop accepting, GOAWAY inbound HBONE connections, and let open
    /// connections finish for up to this long (seconds, or 500ms/10s/1m; 0 = no drain).
    #[arg(long, env = ENV_DRAIN_TIMEOUT, default_value = "5s", value_name = "DURATION")]
    pub drain_timeout: String,
    /// Take workloads and policies from istiod over delta ADS (`https://host:port`)
    /// instead of --config; the other XDS_*/AUTH_TOKEN/ISTIO_META_* variables as ztunnel's.
    #[arg(long = "xds-address", env = super::xds_env::ENV_XDS_ADDRESS, value_name = "URL")]
    pub xds_address: Option<String>,
}

/// The validated run configuration; what `/config_dump` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub config_path: PathBuf,
    pub cert_dir: PathBuf,
    pub node_name: Option<String>,
    pub trust_domain: String,
    pub cores: usize,
    pub outbound_addr: Option<SocketAddr>,
    pub inbound_addr: Option<SocketAddr>,
    pub inbound_plaintext_addr: Option<SocketAddr>,
    pub socks5_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub stats_addr: Option<SocketAddr>,
    pub readiness_addr: Option<SocketAddr>,
    pub hbone_port: u16,
    pub transparent: bool,
    pub same_node_fast_path: bool,
    pub hbone_own_http2: bool,
    pub pool_max_streams: u32,
    #[serde(serialize_with = "ser_duration")]
    pub pool_idle_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub ping_interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub ping_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub reload_interval: Duration,
    pub plumb: bool,
    pub plumb_eth0: String,
    pub plumb_gateway: Option<IpAddr>,
    /// The node's network namespace, when zring plumbs the node side too.
    pub host_netns: Option<String>,
    pub plumb_host_veth: Option<String>,
    /// Set: in-pod mode, with the CNI's ZDS socket.
    pub inpod: Option<PathBuf>,
    pub io_uring_entries: u32,
    pub pin: Pin,
    pub drain_timeout: Duration,
    /// Set: workloads come from istiod, not from `config_path` (which is then empty).
    pub xds: Option<super::xds_env::XdsSettings>,
    /// Set (with `xds`): certificates come from the Istio CA, not from `cert_dir`.
    pub ca: Option<super::xds_env::CaSettings>,
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().expect("default listener addresses are valid"))
}

impl Default for Config {
    /// The defaults of every flag; `config_path` and `cert_dir` are empty.
    fn default() -> Config {
        Config {
            config_path: PathBuf::new(),
            cert_dir: PathBuf::new(),
            xds: None,
            ca: None,
            node_name: None,
            trust_domain: "cluster.local".into(),
            cores: available_cores(),
            outbound_addr: addr("0.0.0.0:15001"),
            inbound_addr: addr("0.0.0.0:15008"),
            inbound_plaintext_addr: addr("0.0.0.0:15006"),
            socks5_addr: addr("127.0.0.1:15080"),
            admin_addr: addr("127.0.0.1:15000"),
            stats_addr: addr("0.0.0.0:15020"),
            readiness_addr: addr("0.0.0.0:15021"),
            hbone_port: 15008,
            transparent: true,
            same_node_fast_path: true,
            hbone_own_http2: false,
            pool_max_streams: 100,
            pool_idle_timeout: Duration::from_secs(300),
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            reload_interval: Duration::from_secs(2),
            plumb: false,
            plumb_eth0: "eth0".into(),
            plumb_gateway: None,
            host_netns: None,
            plumb_host_veth: None,
            inpod: None,
            io_uring_entries: 1024,
            pin: Pin::Auto,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Every listener by flag name, `None` when turned `off`.
    pub fn listeners(&self) -> [(&'static str, Option<SocketAddr>); 7] {
        [
            ("--outbound-addr", self.outbound_addr),
            ("--inbound-addr", self.inbound_addr),
            ("--inbound-plaintext-addr", self.inbound_plaintext_addr),
            ("--socks5-addr", self.socks5_addr),
            ("--admin-addr", self.admin_addr),
            ("--stats-addr", self.stats_addr),
            ("--readiness-addr", self.readiness_addr),
        ]
    }

    /// Problems no single field shows: listener clashes, ping timing, plumbing needs.
    pub fn check(&self) -> Result<(), ConfigErrors> {
        let mut errs = ConfigErrors::default();
        listener_conflicts(&self.listeners(), &mut errs);
        if self.ping_timeout <= self.ping_interval {
            errs.push(bad(
                "--ping-timeout",
                ENV_PING_TIMEOUT,
                &format_duration(self.ping_timeout),
                format!(
                    "must be longer than --ping-interval ({})",
                    format_duration(self.ping_interval)
                ),
            ));
        }
        if self.host_netns.is_some() && !self.plumb {
            errs.push(bad(
                "--host-netns",
                ENV_HOST_NETNS,
                self.host_netns.as_deref().unwrap_or_default(),
                "the node side is plumbed only with --plumb".into(),
            ));
        }
        if self.plumb && !self.transparent {
            errs.push(bad(
                "--plumb",
                ENV_PLUMB,
                "true",
                "the capture rules it installs need --transparent true".into(),
            ));
        }
        if self.inpod.is_some() && self.plumb {
            errs.push(bad(
                "--inpod",
                ENV_INPOD,
                "true",
                "in-pod mode captures with istio-cni's rules inside each pod: drop --plumb".into(),
            ));
        }
        if self.inpod.is_some() && !self.transparent {
            errs.push(bad(
                "--inpod",
                ENV_INPOD,
                "true",
                "delivery to a pod keeps the client's address: needs --transparent true".into(),
            ));
        }
        errs.into_result(())
    }
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yaml = serde_yaml::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&yaml)
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_duration(*d))
}

/// CPUs this process may run on (1 if unknown).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Two enabled listeners clash when they share a non-zero port and either has the same IP
/// or one of them binds the unspecified address of the same family.
fn listener_conflicts(listeners: &[(&'static str, Option<SocketAddr>)], errs: &mut ConfigErrors) {
    let enabled: Vec<(&'static str, SocketAddr)> = listeners
        .iter()
        .filter_map(|(n, a)| a.map(|a| (*n, a)))
        .collect();
    for (i, (first, a)) in enabled.iter().enumerate() {
        for (second, b) in &enabled[i + 1..] {
            if clash(*a, *b) {
                errs.push(ConfigError::ListenerConflict {
                    addr: *b,
                    first,
                    second,
                });
            }
        }
    }
}

fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    let same_family = a.is_ipv4() == b.is_ipv4();
    a.port() == b.port()
        && a.port() != 0
        && same_family
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn bad(flag: &'static str, env: &'static str, value: &str, problem: String) -> ConfigError {
    ConfigError::BadSetting {
        flag,
        env,
        value: value.to_string(),
        problem,
    }
}

/// Parses `300ms`, `10s`, `5m`, `1h` (a whole number and a unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let hint = "write a whole number with a unit: 500ms, 10s, 5m, 1h";
    let n: u64 = num.parse().map_err(|_| hint.to_string())?;
    let secs = |mul: u64| n.checked_mul(mul).map(Duration::from_secs);
    let d = match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        _ => None,
    };
    d.ok_or_else(|| hint.to_string())
}

/// Formats a duration in the largest unit that represents it exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, per) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if (ms / per) * per == ms {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
