//! The control thread: reloads configuration and certificates when their files change.
//! It never runs on a data core.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use crate::config::Config;
use crate::config::Snapshot;
use crate::error::ProxyError;
use crate::runtime::state::Shared;
use crate::tls::CertStore;

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
    while !shared.wait_stop(config.reload_interval) {
        let now = fingerprint(config);
        if now == seen {
            continue;
        }
        seen = now;
        // The snapshot to run (None: keep the one in force) and the certificates.
        let next = match (&config.xds, &config.ca) {
            // Certificates from the Istio CA, workloads from istiod: nothing on disk.
            (_, Some(_)) => continue,
            // Workloads come from istiod: only the certificates are reloaded here.
            (Some(_), None) => CertStore::load(&config.cert_dir, &config.trust_domain)
                .map(|certs| (None, certs))
                .map_err(ProxyError::from),
            _ => reload_file(config, shared),
        };
        match next {
            Ok((snapshot, certs)) => {
                let generation = shared.publish(|current| {
                    let snapshot = snapshot.unwrap_or_else(|| current.snapshot.clone());
                    (snapshot, certs)
                });
                tracing::info!(generation, "configuration reloaded");
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "configuration change refused; the running configuration stays in force"
                );
                shared.refuse();
            }
        }
    }
}

/// The workload file as a delta against the generation in force (None: the workloads did
/// not change), and the certificates. In file mode this thread is the only one that
/// changes the snapshot, so the generation it diffs against is still in force when it
/// publishes.
fn reload_file(
    config: &Config,
    shared: &Shared,
) -> Result<(Option<Snapshot>, CertStore), ProxyError> {
    let base = shared.current().snapshot.clone();
    let snapshot = base.load_file(&config.config_path)?;
    let certs = CertStore::load(&config.cert_dir, &config.trust_domain)?;
    Ok((snapshot, certs))
}
