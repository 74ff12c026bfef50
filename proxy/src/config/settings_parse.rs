//! [`RunArgs::into_config`]: parse and check every setting, collecting all problems.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::settings::*;
use super::xds_env::{CaSettings, XdsSettings, ENV_CA_ADDRESS, ENV_SECRET_TTL};
use super::{ConfigError, ConfigErrors};

/// Collects problems while parsing; each parser returns `None` after recording one.
struct Checker {
    errs: ConfigErrors,
}

impl Checker {
    fn bad(&mut self, flag: &'static str, env: &'static str, value: &str, problem: String) {
        self.errs.push(ConfigError::BadSetting {
            flag,
            env,
            value: value.to_string(),
            problem,
        });
    }

    fn parsed<T: FromStr>(
        &mut self,
        flag: &'static str,
        env: &'static str,
        value: &str,
        what: &str,
    ) -> Option<T> {
        let v = value.trim().parse().ok();
        if v.is_none() {
            self.bad(flag, env, value, format!("expected {what}"));
        }
        v
    }

    fn listener(&mut self, flag: &'static str, env: &'static str, v: &str) -> Option<SocketAddr> {
        if v.trim() == "off" {
            return None;
        }
        self.parsed(flag, env, v, "ip:port (e.g. 0.0.0.0:15001) or `off`")
    }

    fn duration(&mut self, flag: &'static str, env: &'static str, v: &str) -> Duration {
        match parse_duration(v) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.bad(flag, env, v, "must be greater than zero".into());
                Duration::from_secs(1)
            }
            Err(e) => {
                self.bad(flag, env, v, e);
                Duration::from_secs(1)
            }
        }
    }

    fn file(
        &mut self,
        flag: &'static str,
        env: &'static str,
        p: Option<PathBuf>,
        dir: bool,
    ) -> PathBuf {
        let what = if dir { "directory" } else { "file" };
        let Some(p) = p else {
            self.bad(
                flag,
                env,
                "",
                format!("required: set {flag} <{}> or {env}", what.to_uppercase()),
            );
            return PathBuf::new();
        };
        let ok = if dir { p.is_dir() } else { p.is_file() };
        if !ok {
            let problem = format!("no such {what} (check the path and that it is mounted)");
            self.bad(flag, env, &p.display().to_string(), problem);
        }
        p
    }

    fn cores(&mut self, v: Option<&str>) -> usize {
        let avail = available_cores();
        let Some(v) = v else { return avail };
        let what = format!("a number of cores between 1 and {avail} (the CPUs available)");
        match self.parsed::<usize>("--cores", ENV_CORES, v, &what) {
            Some(n) if (1..=avail).contains(&n) => n,
            Some(_) => {
                self.bad(
                    "--cores",
                    ENV_CORES,
                    v,
                    format!("must be between 1 and {avail} (the CPUs available)"),
                );
                avail
            }
            None => avail,
        }
    }

    fn bool(&mut self, flag: &'static str, env: &'static str, v: &str) -> bool {
        match v.trim() {
            "true" => true,
            "false" => false,
            _ => {
                self.bad(flag, env, v, "expected true or false".into());
                true
            }
        }
    }

    /// Bare seconds (as Kubernetes sets the variable) or a duration; zero is allowed.
    fn drain_timeout(&mut self, v: &str) -> Duration {
        let t = v.trim();
        let parsed = match t.parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => parse_duration(t),
        };
        parsed.unwrap_or_else(|e| {
            self.bad("--drain-timeout", ENV_DRAIN_TIMEOUT, v, e);
            Duration::from_secs(5)
        })
    }

    fn pin(&mut self, v: &str) -> Pin {
        match v.trim() {
            "auto" => Pin::Auto,
            "on" => Pin::On,
            "off" => Pin::Off,
            _ => {
                self.bad("--pin", ENV_PIN, v, "expected auto, on or off".into());
                Pin::Auto
            }
        }
    }

    fn trust_domain(&mut self, v: &str) {
        if v.is_empty() || v.contains('/') || v.chars().any(char::is_whitespace) {
            let problem =
                "must be a non-empty DNS-like name without '/' or spaces (e.g. cluster.local)";
            self.bad("--trust-domain", ENV_TRUST_DOMAIN, v, problem.into());
        }
    }

    fn ifname(&mut self, v: &str) {
        if v.is_empty()
            || v.len() > MAX_IFNAME
            || v.contains('/')
            || v.chars().any(char::is_whitespace)
        {
            let problem = "must be a Linux interface name (1-15 characters, no '/' or spaces)";
            self.bad("--plumb-eth0", ENV_PLUMB_ETH0, v, problem.into());
        }
    }
}

fn non_empty(p: Option<PathBuf>) -> Option<PathBuf> {
    p.filter(|p| p.as_os_str() != Path::new("").as_os_str())
}

impl RunArgs {
    /// Parses and checks every setting; `Err` lists all the bad ones.
    pub fn into_config(self) -> Result<Config, ConfigErrors> {
        let mut c = Checker {
            errs: ConfigErrors::default(),
        };
        let d = Config::default();
        c.trust_domain(&self.trust_domain);
        c.ifname(&self.plumb_eth0);
        let node_name = self.node_name.filter(|n| !n.is_empty());
        let xds = XdsSettings::from_env(self.xds_address.as_deref(), node_name.as_deref());
        let config_path = match (&xds, non_empty(self.config)) {
            (Some(_), None) => PathBuf::new(),
            (Some(_), Some(file)) => {
                let problem = "XDS_ADDRESS (--xds-address) is set too: workloads come from one \
                               source, so unset one of them"
                    .to_string();
                c.bad("--config", ENV_CONFIG, &file.display().to_string(), problem);
                file
            }
            (_, file) => c.file("--config", ENV_CONFIG, file, false),
        };
        let ca = match CaSettings::from_env() {
            Ok(ca) => ca,
            Err(problem) => {
                c.bad("(env)", ENV_SECRET_TTL, "", problem);
                None
            }
        };
        if ca.is_some() && xds.is_none() {
            let problem = "the CA client runs with workloads from istiod only: set XDS_ADDRESS \
                           too, or unset CA_ADDRESS and use --cert-dir"
                .to_string();
            c.bad("(env)", ENV_CA_ADDRESS, "", problem);
        }
        let cert_dir = match (&ca, non_empty(self.cert_dir)) {
            (Some(_), None) => PathBuf::new(),
            (_, dir) => c.file("--cert-dir", ENV_CERT_DIR, dir, true),
        };
        let cfg = Config {
            xds,
            ca,
            cert_dir,
            config_path,
            node_name,
            trust_domain: self.trust_domain,
            cores: c.cores(self.cores.as_deref()),
            outbound_addr: c.listener("--outbound-addr", ENV_OUTBOUND_ADDR, &self.outbound_addr),
            inbound_addr: c.listener("--inbound-addr", ENV_INBOUND_ADDR, &self.inbound_addr),
            inbound_plaintext_addr: c.listener(
                "--inbound-plaintext-addr",
                ENV_INBOUND_PLAINTEXT_ADDR,
                &self.inbound_plaintext_addr,
            ),
            socks5_addr: c.listener("--socks5-addr", ENV_SOCKS5_ADDR, &self.socks5_addr),
            admin_addr: c.listener("--admin-addr", ENV_ADMIN_ADDR, &self.admin_addr),
            stats_addr: c.listener("--stats-addr", ENV_STATS_ADDR, &self.stats_addr),
            readiness_addr: c.listener(
                "--readiness-addr",
                ENV_READINESS_ADDR,
                &self.readiness_addr,
            ),
            hbone_port: c.port(&self.hbone_port).unwrap_or(d.hbone_port),
            transparent: c.bool("--transparent", ENV_TRANSPARENT, &self.transparent),
            same_node_fast_path: c.bool(
                "--same-node-fast-path",
                ENV_SAME_NODE_FAST_PATH,
                &self.same_node_fast_path,
            ),
            hbone_own_http2: c.bool(
                "--hbone-own-http2",
                ENV_HBONE_OWN_HTTP2,
                &self.hbone_own_http2,
            ),
            pool_max_streams: c
                .streams(&self.pool_max_streams)
                .unwrap_or(d.pool_max_streams),
            pool_idle_timeout: c.duration(
                "--pool-idle-timeout",
                ENV_POOL_IDLE_TIMEOUT,
                &self.pool_idle_timeout,
            ),
            ping_interval: c.duration("--ping-interval", ENV_PING_INTERVAL, &self.ping_interval),
            ping_timeout: c.duration("--ping-timeout", ENV_PING_TIMEOUT, &self.ping_timeout),
            connect_timeout: c.duration(
                "--connect-timeout",
                ENV_CONNECT_TIMEOUT,
                &self.connect_timeout,
            ),
            reload_interval: c.duration(
                "--reload-interval",
                ENV_RELOAD_INTERVAL,
                &self.reload_interval,
            ),
            plumb: self.plumb,
            plumb_eth0: self.plumb_eth0,
            plumb_gateway: self
                .plumb_gateway
                .filter(|g| !g.trim().is_empty())
                .and_then(|g| c.parsed("--plumb-gateway", ENV_PLUMB_GATEWAY, &g, "an IP address")),
            host_netns: self.host_netns.filter(|p| !p.trim().is_empty()),
            plumb_host_veth: self.plumb_host_veth.filter(|v| !v.trim().is_empty()),
            inpod: c
                .bool("--inpod", ENV_INPOD, &self.inpod)
                .then_some(self.inpod_uds),
            io_uring_entries: c
                .entries(&self.io_uring_entries)
                .unwrap_or(d.io_uring_entries),
            pin: c.pin(&self.pin),
            drain_timeout: c.drain_timeout(&self.drain_timeout),
        };
        if let Err(more) = cfg.check() {
            c.errs.0.extend(more.0);
        }
        c.errs.into_result(cfg)
    }
}

impl Checker {
    fn port(&mut self, v: &str) -> Option<u16> {
        let p = self.parsed::<u16>("--hbone-port", ENV_HBONE_PORT, v, "a port 1-65535")?;
        if p == 0 {
            self.bad(
                "--hbone-port",
                ENV_HBONE_PORT,
                v,
                "expected a port 1-65535".into(),
            );
            return None;
        }
        Some(p)
    }

    fn streams(&mut self, v: &str) -> Option<u32> {
        let (flag, env) = ("--pool-max-streams", ENV_POOL_MAX_STREAMS);
        let n = self.parsed::<u32>(flag, env, v, "a positive number of streams")?;
        if n == 0 {
            self.bad(flag, env, v, "must be at least 1".into());
            return None;
        }
        Some(n)
    }

    fn entries(&mut self, v: &str) -> Option<u32> {
        let (flag, env) = ("--io-uring-entries", ENV_IO_URING_ENTRIES);
        let range = IO_URING_ENTRIES;
        let what = format!("a number between {} and {}", range.start(), range.end());
        let n = self.parsed::<u32>(flag, env, v, &what)?;
        if !range.contains(&n) {
            self.bad(
                flag,
                env,
                v,
                format!("must be between {} and {}", range.start(), range.end()),
            );
            return None;
        }
        Some(n)
    }
}
