//! The cluster `scale` serves (pure): N workloads spread over nodes, S services with one
//! port each, every workload in one service; then the pushes a cluster's churn makes:
//! single workloads added one at a time, a bulk addition, and the removal of all of them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use zring::config::{LocalConfig, NetworkAddress, Protocol, Service, Workload};
use zring_xds::ADDRESS_TYPE;

use crate::control::Update;
use crate::mesh::TRUST_DOMAIN;

/// The Kubernetes namespace of every generated workload and service.
pub const NAMESPACE: &str = "scale";
/// The node the measured proxy runs on (only its own client workload is there).
pub const NODE: &str = "scale-node";
/// The proxy's own workload (ztunnel's dedicated-mode `PROXY_WORKLOAD_INFO`).
pub const CLIENT: &str = "scale-client";
/// Workloads per node of the rest of the cluster (a busy Kubernetes node).
const PODS_PER_NODE: usize = 100;
/// The service port each service exposes, and the port its pods listen on.
const SERVICE_PORT: (u16, u16) = (80, 8080);

/// The size of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Size {
    pub workloads: usize,
    pub services: usize,
}

/// Workload `i`'s IP: 10.128.0.0 + i (room for 8M workloads).
pub fn workload_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a80_0000 + i as u32))
}

/// Service `s`'s VIP: 10.96.0.0 + s (below the workloads' range for 2M services).
fn service_vip(s: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + s as u32))
}

fn hostname(s: usize) -> String {
    format!("svc-{s}.{NAMESPACE}.svc.cluster.local")
}

/// The uid (and xDS resource name) of workload `i`.
pub fn workload_uid(i: usize) -> String {
    format!("Kubernetes//Pod/{NAMESPACE}/w-{i}")
}

/// Workload `i`, a pod of service `s` on a node of its own rank.
pub fn workload(i: usize, s: usize) -> Workload {
    let mut services = BTreeMap::new();
    services.insert(format!("{NAMESPACE}/{}", hostname(s)), BTreeMap::new());
    Workload {
        uid: workload_uid(i).into(),
        name: format!("w-{i}").into(),
        namespace: NAMESPACE.into(),
        service_account: format!("sa-{s}").into(),
        trust_domain: TRUST_DOMAIN.into(),
        workload_ips: vec![workload_ip(i)].into(),
        protocol: Protocol::Hbone,
        node: format!("node-{}", i / PODS_PER_NODE).into(),
        services: services.into(),
        workload_name: format!("svc-{s}").into(),
        canonical_name: format!("svc-{s}").into(),
        ..Workload::default()
    }
}

fn service(s: usize) -> Service {
    Service {
        name: format!("svc-{s}"),
        namespace: NAMESPACE.into(),
        hostname: hostname(s),
        vips: vec![NetworkAddress {
            network: String::new(),
            ip: service_vip(s),
        }],
        ports: [SERVICE_PORT].into(),
        waypoint: None,
    }
}

/// The proxy's own workload on [`NODE`]; its IP is outside the generated range.
fn client() -> Workload {
    Workload {
        uid: format!("Kubernetes//Pod/{NAMESPACE}/{CLIENT}").into(),
        name: CLIENT.into(),
        namespace: NAMESPACE.into(),
        service_account: CLIENT.into(),
        trust_domain: TRUST_DOMAIN.into(),
        workload_ips: vec![crate::peer::CLIENT_IP].into(),
        protocol: Protocol::Hbone,
        node: NODE.into(),
        ..Workload::default()
    }
}

/// ztunnel's `PROXY_WORKLOAD_INFO` for [`client`].
pub fn client_info() -> String {
    format!("{NAMESPACE}/{CLIENT}/{CLIENT}")
}

/// The cluster of `size`: workload i is in service i mod S.
pub fn cluster(size: Size) -> LocalConfig {
    let s = size.services.max(1);
    let mut workloads: Vec<Workload> = (0..size.workloads).map(|i| workload(i, i % s)).collect();
    workloads.push(client());
    LocalConfig {
        workloads,
        services: (0..s).map(service).collect(),
        ..LocalConfig::default()
    }
}

/// The pushes measured after the cluster is in force.
#[derive(Debug, Clone)]
pub struct Pushes {
    /// One workload added each.
    pub singles: Vec<Update>,
    /// `bulk` workloads added at once.
    pub bulk_add: Update,
    /// Every workload the pushes above added, removed at once.
    pub bulk_remove: Update,
}

/// Which of [`Pushes`] a push is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Single,
    BulkAdd,
    BulkRemove,
}

impl Pushes {
    /// The pushes in the order they are sent. A bulk push with nothing in it (`--bulk 0`,
    /// and the removal too when nothing was added) is left out: a proxy is sent no
    /// response for it, so no ACK would ever come.
    pub fn sequence(&self) -> Vec<(Kind, &Update)> {
        let singles = self.singles.iter().map(|u| (Kind::Single, u));
        let bulk_add = (!self.bulk_add.put.workloads.is_empty()).then_some(&self.bulk_add);
        let bulk_remove = (!self.bulk_remove.remove.is_empty()).then_some(&self.bulk_remove);
        let bulks = [(Kind::BulkAdd, bulk_add), (Kind::BulkRemove, bulk_remove)];
        singles
            .chain(bulks.into_iter().filter_map(|(k, u)| Some((k, u?))))
            .collect()
    }
}

/// `singles` single-workload additions, then `bulk` at once, then their removal; new
/// workloads join services picked by a generator seeded with `seed`.
pub fn pushes(size: Size, singles: usize, bulk: usize, seed: u64) -> Pushes {
    let mut rng = SplitMix(seed);
    let s = size.services.max(1) as u64;
    let mut next = size.workloads..;
    let mut one = |rng: &mut SplitMix| {
        let i = next.next().expect("unbounded");
        workload(i, (rng.next() % s) as usize)
    };
    let put = |workloads| Update {
        put: LocalConfig {
            workloads,
            ..LocalConfig::default()
        },
        remove: Vec::new(),
    };
    let singles: Vec<Update> = (0..singles).map(|_| put(vec![one(&mut rng)])).collect();
    let bulk_add = put((0..bulk).map(|_| one(&mut rng)).collect());
    let added = singles.iter().chain([&bulk_add]);
    let remove = added
        .flat_map(|u| &u.put.workloads)
        .map(|w| (ADDRESS_TYPE, w.uid.to_string()))
        .collect();
    Pushes {
        singles,
        bulk_add,
        bulk_remove: Update {
            remove,
            ..Update::default()
        },
    }
}

/// SplitMix64: a seeded, dependency-free generator (enough to pick services).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_validates_and_has_its_size() {
        let size = Size {
            workloads: 300,
            services: 30,
        };
        let c = cluster(size);
        assert_eq!(c.workloads.len(), 301);
        assert_eq!(c.services.len(), 30);
        zring::config::Snapshot::new(c, None).expect("a valid configuration");
    }

    #[test]
    fn pushes_add_new_workloads_then_remove_them_all() {
        let size = Size {
            workloads: 100,
            services: 10,
        };
        let p = pushes(size, 20, 1000, 7);
        assert_eq!(p.singles.len(), 20);
        assert!(p.singles.iter().all(|u| u.put.workloads.len() == 1));
        assert_eq!(p.singles[0].put.workloads[0].uid, workload_uid(100));
        assert_eq!(p.bulk_add.put.workloads.len(), 1000);
        assert_eq!(p.bulk_remove.remove.len(), 1020);
        assert_eq!(p.bulk_remove.remove[1019].1, workload_uid(1119));
        let again = pushes(size, 20, 1000, 7);
        assert_eq!(again.singles[3].put.workloads, p.singles[3].put.workloads);
        let kinds: Vec<Kind> = p.sequence().iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds.len(), 22);
        assert_eq!(kinds[19..], [Kind::Single, Kind::BulkAdd, Kind::BulkRemove]);
        let mut all = cluster(size);
        all.workloads.extend(p.bulk_add.put.workloads);
        zring::config::Snapshot::new(all, None).expect("pushed workloads are valid");
    }

    #[test]
    fn an_empty_bulk_push_is_not_sent() {
        let size = Size {
            workloads: 100,
            services: 10,
        };
        let kinds = |p: &Pushes| p.sequence().iter().map(|(k, _)| *k).collect::<Vec<_>>();
        // --bulk 0: the singles, then the removal of what they added.
        let p = pushes(size, 2, 0, 7);
        assert_eq!(kinds(&p), [Kind::Single, Kind::Single, Kind::BulkRemove]);
        // Nothing added at all: nothing to remove either.
        assert!(kinds(&pushes(size, 0, 0, 7)).is_empty());
    }
}
