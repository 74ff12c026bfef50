//! The admin (15000), stats (15020) and readiness (15021) HTTP endpoints, each on its own
//! blocking thread, off the data cores.
//!
//! Each listener serves only its own pages ([`page`] is the whole routing table): stats
//! and readiness bind `0.0.0.0` by default, so anything that reveals configuration,
//! workloads or certificates (`/config_dump`) is served on the admin listener alone,
//! which binds `127.0.0.1` by default.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::error::ProxyError;
use crate::runtime::metrics;
use crate::runtime::state::Shared;
use crate::runtime::BoundAddrs;

/// How long an HTTP thread waits after a failed accept.
const RETRY: Duration = Duration::from_millis(50);
/// A client that has not sent its request line by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `--admin-addr` (127.0.0.1:15000): config dump and liveness.
    Admin,
    /// `--stats-addr` (0.0.0.0:15020): Prometheus metrics only.
    Stats,
    /// `--readiness-addr` (0.0.0.0:15021): readiness only.
    Readiness,
}

impl Endpoint {
    fn flag(self) -> &'static str {
        match self {
            Endpoint::Admin => "admin-addr",
            Endpoint::Stats => "stats-addr",
            Endpoint::Readiness => "readiness-addr",
        }
    }
}

/// What a request gets; decided without I/O from the listener and the path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Ready,
    Metrics,
    ConfigDump,
    NotFound,
}

/// The routing table of all three listeners.
pub fn page(endpoint: Endpoint, path: &str) -> Page {
    let path = path.split('?').next().unwrap_or(path);
    match (endpoint, path) {
        (Endpoint::Readiness, "/healthz/ready") => Page::Ready,
        (Endpoint::Admin, "/healthz" | "/healthz/ready") => Page::Ready,
        (Endpoint::Stats, "/metrics" | "/stats/prometheus") => Page::Metrics,
        (Endpoint::Admin, "/config_dump") => Page::ConfigDump,
        _ => Page::NotFound,
    }
}

/// Starts the admin, stats and readiness endpoints that are not `off`.
pub fn start(
    config: &Arc<Config>,
    shared: &Arc<Shared>,
    addrs: &mut BoundAddrs,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<(), ProxyError> {
    let endpoints = [
        (Endpoint::Admin, config.admin_addr, &mut addrs.admin),
        (Endpoint::Stats, config.stats_addr, &mut addrs.stats),
        (
            Endpoint::Readiness,
            config.readiness_addr,
            &mut addrs.readiness,
        ),
    ];
    for (endpoint, addr, slot) in endpoints {
        let Some(addr) = addr else { continue };
        let flag = endpoint.flag();
        let err = |source| ProxyError::Listen { flag, addr, source };
        let listener = TcpListener::bind(addr).map_err(err)?;
        *slot = Some(listener.local_addr().map_err(err)?);
        // The thread blocks in accept; a stop shuts the listener down, which wakes it.
        let waker = listener.try_clone().map_err(err)?;
        shared.on_stop(Box::new(move || {
            let _ = socket2::SockRef::from(&waker).shutdown(std::net::Shutdown::Read);
        }));
        let (config, shared) = (config.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("zring-{flag}"))
            .spawn(move || serve(endpoint, listener, &config, &shared))
            .map_err(|source| ProxyError::Runtime { core: 0, source })?;
        threads.push(thread);
    }
    Ok(())
}

fn serve(endpoint: Endpoint, listener: TcpListener, config: &Config, shared: &Shared) {
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer(endpoint, stream, config, shared);
            }
            // Out of descriptors, say: do not spin (a stop still ends the wait).
            Err(_) => {
                shared.wait_stop(RETRY);
            }
        }
    }
}

fn answer(
    endpoint: Endpoint,
    stream: TcpStream,
    config: &Config,
    shared: &Shared,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match page(endpoint, path) {
        // A draining node must leave the load balancers' and kubelet's rotation.
        Page::Ready if shared.draining() => ("503 Service Unavailable", "draining\n".into()),
        Page::Ready if !shared.ready() => (
            "503 Service Unavailable",
            "no configuration from istiod yet\n".into(),
        ),
        Page::Ready => ("200 OK", "ready\n".into()),
        Page::Metrics => ("200 OK", metrics::render(&shared.fresh_aggregate())),
        Page::ConfigDump => ("200 OK", config_dump(config, shared)),
        Page::NotFound => ("404 Not Found", "not found\n".into()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn config_dump(config: &Config, shared: &Shared) -> String {
    let state = shared.current();
    let source = match &config.xds {
        Some(x) => format!("xDS {}", x.address),
        None => format!("file {}", config.config_path.display()),
    };
    let local = serde_yaml::to_string(&state.snapshot.to_local_config())
        .unwrap_or_else(|e| format!("(cannot render: {e})\n"));
    format!(
        "generation: {}\nadopted by every core: {}\nsource: {source}\nworkloads: {}\nidentities: {}\nsettings:\n{config}\nconfig:\n{local}",
        state.generation,
        shared.adopted_generation(),
        state.snapshot.workloads().len(),
        state
            .certs
            .identities()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_dump_is_only_on_the_admin_listener() {
        assert_eq!(page(Endpoint::Admin, "/config_dump"), Page::ConfigDump);
        assert_eq!(page(Endpoint::Stats, "/config_dump"), Page::NotFound);
        assert_eq!(page(Endpoint::Readiness, "/config_dump"), Page::NotFound);
    }

    #[test]
    fn stats_serves_metrics_only() {
        assert_eq!(page(Endpoint::Stats, "/metrics"), Page::Metrics);
        assert_eq!(page(Endpoint::Stats, "/stats/prometheus"), Page::Metrics);
        for p in ["/healthz/ready", "/healthz", "/", "/config_dump?x=1"] {
            assert_eq!(page(Endpoint::Stats, p), Page::NotFound, "{p}");
        }
    }

    #[test]
    fn readiness_serves_readiness_only() {
        assert_eq!(page(Endpoint::Readiness, "/healthz/ready"), Page::Ready);
        for p in ["/metrics", "/config_dump", "/healthz", "/"] {
            assert_eq!(page(Endpoint::Readiness, p), Page::NotFound, "{p}");
        }
    }

    #[test]
    fn query_strings_do_not_change_the_page() {
        assert_eq!(page(Endpoint::Admin, "/config_dump?all"), Page::ConfigDump);
        assert_eq!(page(Endpoint::Stats, "/metrics?x"), Page::Metrics);
    }
}
