//! Criterion benchmarks for zring's I/O-free core; see `benches/core.rs`.
//!
//! `cargo bench -p zring-benches` runs them. Whole-path speed (throughput, latency, CPU)
//! is measured by `zring-loadgen` and recorded under `results/`.
#![forbid(unsafe_code)]

use std::sync::Arc;

use zring::identity::Identity;
use zring::tls::{self, CertStore};

/// A fresh dev CA's certificates for two identities, loaded as zring loads them.
pub struct Identities {
    pub store: CertStore,
    /// `spiffe://cluster.local/ns/default/sa/a`
    pub client: Identity,
    /// `spiffe://cluster.local/ns/default/sa/b`
    pub server: Identity,
}

/// [`Identities`] from a CA made in a temporary directory named after `tag` (removed
/// once the certificates are loaded).
pub fn identities(tag: &str) -> Identities {
    let dir = std::env::temp_dir().join(format!("zring-bench-{tag}-{}", std::process::id()));
    let (client, server) = (
        Identity::new("cluster.local", "default", "a"),
        Identity::new("cluster.local", "default", "b"),
    );
    tls::init_ca(&dir, "cluster.local", true).unwrap();
    tls::issue(&dir, &client).unwrap();
    tls::issue(&dir, &server).unwrap();
    let store = CertStore::load(&dir, "cluster.local").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Identities {
        store,
        client,
        server,
    }
}

impl Identities {
    /// zring's client config (client → server) and the server's config.
    pub fn configs(&self) -> (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
        let client = self
            .store
            .client_config(&self.client, std::slice::from_ref(&self.server));
        (
            client.unwrap(),
            self.store.server_config(&self.server).unwrap(),
        )
    }
}

/// The server name a zring client hands rustls for a pod (no SNI is sent).
pub fn server_name() -> rustls::pki_types::ServerName<'static> {
    tls::server_name(std::net::IpAddr::from([10, 244, 2, 7]))
}

/// Moves every pending TLS byte from `from` to `to` and processes it; whether any moved.
pub fn shuttle(
    from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl rustls::SideData>>,
    to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl rustls::SideData>>,
) -> bool {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).unwrap();
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets().unwrap();
    }
    !wire.is_empty()
}

/// A client and a server connection of `configs`, handshaken in memory.
pub fn tls_pair(
    (client, server): (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>),
) -> (rustls::ClientConnection, rustls::ServerConnection) {
    let mut client = rustls::ClientConnection::new(client, server_name()).unwrap();
    let mut server = rustls::ServerConnection::new(server).unwrap();
    while client.is_handshaking() || server.is_handshaking() {
        shuttle(&mut client, &mut server);
        shuttle(&mut server, &mut client);
    }
    (client, server)
}

/// A workload config with `n` HBONE workloads behind one service VIP, for lookups at scale.
pub fn mesh_yaml(n: usize) -> String {
    let mut yaml = String::from("workloads:\n");
    for i in 0..n {
        let (hi, lo) = (i / 250, i % 250 + 2);
        yaml.push_str(&format!(
            "- uid: c//v1/Pod/default/w{i}\n  name: w{i}\n  namespace: default\n  serviceAccount: sa{i}\n  workloadIps: [\"10.244.{hi}.{lo}\"]\n  protocol: HBONE\n  node: node-{}\n  services:\n    \"default/svc.default.svc.cluster.local\":\n      80: 8080\n",
            i % 2
        ));
    }
    yaml.push_str("services:\n- name: svc\n  namespace: default\n  hostname: svc.default.svc.cluster.local\n  vips: [\"/10.96.0.10\"]\n  ports:\n    80: 8080\n");
    yaml
}

/// A cluster as issue 22 measured it: `n` workloads, `n / 10` services (one port each),
/// each workload behind one service, half of them on `node-0`; two policies.
pub fn cluster(n: usize) -> zring::config::LocalConfig {
    use zring::config::{LocalConfig, Policy, Service};
    let services = (n / 10).max(1);
    let workloads = (0..n).map(|i| cluster_workload(i, i % services)).collect();
    let services = (0..services)
        .map(|s| Service {
            name: format!("svc{s}"),
            namespace: "default".into(),
            hostname: format!("svc{s}.default.svc.cluster.local"),
            vips: vec![format!("/10.96.{}.{}", s / 250, s % 250 + 1)
                .parse()
                .unwrap()],
            ports: [(80, 8080)].into(),
            ..Default::default()
        })
        .collect();
    let policy = |name: &str, scope| Policy {
        name: name.into(),
        namespace: "default".into(),
        scope,
        action: zring::config::Action::Allow,
        rules: vec![vec![vec![zring::config::Match {
            destination_ports: vec![8080],
            ..Default::default()
        }]]],
        dry_run: false,
        selector: None,
    };
    LocalConfig {
        workloads,
        services,
        policies: vec![
            policy("ns-wide", zring::config::Scope::Namespace),
            policy("everyone", zring::config::Scope::Global),
        ],
    }
}

/// Workload `i` of [`cluster`], behind service `svc`.
pub fn cluster_workload(i: usize, svc: usize) -> zring::config::Workload {
    zring::config::Workload {
        uid: format!("c//v1/Pod/default/w{i}").into(),
        name: format!("w{i}").into(),
        namespace: "default".into(),
        service_account: format!("sa{}", i % 1000).into(),
        workload_ips: vec![std::net::IpAddr::from([
            10,
            128 + (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ])]
        .into(),
        protocol: zring::config::Protocol::Hbone,
        node: format!("node-{}", i % 2).into(),
        services: [(
            format!("default/svc{svc}.default.svc.cluster.local"),
            Default::default(),
        )]
        .into(),
        ..Default::default()
    }
}

/// One delta ADS response: `items` upserted, `removed` removed.
pub fn update(
    type_url: &str,
    items: &[(String, zring_xds::prost_types::Any)],
    removed: &[String],
) -> zring_xds::delta::Update {
    zring_xds::delta::Update::new(
        type_url.into(),
        "n".into(),
        items
            .iter()
            .map(|(name, any)| zring_xds::discovery::Resource {
                name: name.clone(),
                version: "1".into(),
                resource: Some(any.clone()),
                ..Default::default()
            })
            .collect(),
        removed.to_vec(),
    )
}

/// User + system CPU seconds from a `/proc` stat file: `/proc/self/stat` for the whole
/// process, `/proc/thread-self/stat` for the calling thread (0 when it cannot be read).
pub fn cpu_seconds(stat: &str) -> f64 {
    let s = std::fs::read_to_string(stat).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The `i`th command-line argument as a number, `default` when absent or not a number.
pub fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixture_parses_with_all_workloads() {
        let local = zring::config::LocalConfig::from_yaml("bench", &super::mesh_yaml(600)).unwrap();
        assert_eq!(local.workloads.len(), 600);
        assert_eq!(local.services.len(), 1);
    }
}
