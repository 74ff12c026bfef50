//! The control thread (reload on file change) and the admin, stats and readiness
//! endpoints. Neither runs on a data core.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::error::ProxyError;
use crate::runtime::metrics;
use crate::runtime::state::{Shared, State};
use crate::runtime::BoundAddrs;

/// How often the HTTP threads look at the shutdown flag while idle.
const POLL: Duration = Duration::from_millis(50);

/// What the reload loop compares: the workload config file's (size, mtime, inode) and the
/// cert dir's fingerprint (the files `CertStore::load` reads). `None` where unreadable;
/// loading then reports why.
pub type Fingerprint = (Option<(u64, Option<SystemTime>, u64)>, Option<u64>);

pub fn fingerprint(config: &Config) -> Fingerprint {
    let file = std::fs::metadata(&config.config_path)
        .ok()
        .map(|m| (m.len(), m.modified().ok(), m.ino()));
    (file, crate::tls::fingerprint(&config.cert_dir).ok())
}

/// Reloads config + certs when their files change; a bad reload keeps the running one.
/// `seen` must be taken *before* the running generation was loaded, so a change made
/// between that load and this thread's first look is not missed.
pub fn spawn_reloader(
    config: Arc<Config>,
    shared: Arc<Shared>,
    seen: Fingerprint,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("zring-control".into())
        .spawn(move || reload_loop(&config, &shared, seen))
        .expect("spawning the control thread only fails when the process is out of threads")
}

fn reload_loop(config: &Config, shared: &Shared, mut seen: Fingerprint) {
    let mut waited = Duration::ZERO;
    while !shared.stopping() {
        std::thread::sleep(POLL);
        waited += POLL;
        if waited < config.reload_interval {
            continue;
        }
        waited = Duration::ZERO;
        let now = fingerprint(config);
        if now == seen {
            continue;
        }
        seen = now;
        match State::load(config, shared.generation() + 1) {
            Ok(state) => {
                tracing::info!(generation = state.generation, "configuration reloaded");
                shared.publish(state);
            }
            Err(e) => tracing::error!(
                error = %e,
                "configuration change refused; the running configuration stays in force"
            ),
        }
    }
}

/// Starts the admin (15000), stats (15020) and readiness (15021) endpoints.
pub fn start_http(
    config: &Arc<Config>,
    shared: &Arc<Shared>,
    addrs: &mut BoundAddrs,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<(), ProxyError> {
    let endpoints = [
        ("admin-addr", config.admin_addr, &mut addrs.admin),
        ("stats-addr", config.stats_addr, &mut addrs.stats),
        (
            "readiness-addr",
            config.readiness_addr,
            &mut addrs.readiness,
        ),
    ];
    for (flag, addr, slot) in endpoints {
        let Some(addr) = addr else { continue };
        let err = |source| ProxyError::Listen { flag, addr, source };
        let listener = TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        *slot = Some(listener.local_addr().map_err(err)?);
        let (config, shared) = (config.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("zring-{flag}"))
            .spawn(move || serve_http(listener, &config, &shared))
            .map_err(|source| ProxyError::Runtime { core: 0, source })?;
        threads.push(thread);
    }
    Ok(())
}

fn serve_http(listener: TcpListener, config: &Config, shared: &Shared) {
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer(stream, config, shared);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn answer(stream: TcpStream, config: &Config, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = route(path, config, shared);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn route(path: &str, config: &Config, shared: &Shared) -> (&'static str, String) {
    match path {
        "/healthz" | "/healthz/ready" => ("200 OK", "ready\n".into()),
        "/metrics" | "/stats/prometheus" => ("200 OK", metrics::render(&shared.aggregate())),
        "/config_dump" => ("200 OK", config_dump(config, shared)),
        _ => ("404 Not Found", "not found\n".into()),
    }
}

fn config_dump(config: &Config, shared: &Shared) -> String {
    let state = shared.current();
    format!(
        "generation: {}\nworkloads: {}\nidentities: {}\nsettings:\n{config}\n",
        state.generation,
        state.snapshot.workloads().len(),
        state
            .certs
            .identities()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    )
}
