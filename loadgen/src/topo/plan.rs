//! The topology as data: namespace names, interfaces and addresses of the articles'
//! two-node example (000_…), derived from a name prefix. Pure, no I/O.

use std::net::Ipv4Addr;

/// The subnet mask of the node link.
pub const NODE_LINK_PREFIX: u8 = 24;
/// The name of the link between the nodes and of each pod's interface.
pub const ETH0: &str = "eth0";
/// The HTTP responder's port in the server pods (the articles' httpbin port).
pub const HTTP_PORT: u16 = 8080;
/// The bulk sink's port in the server pods.
pub const SINK_PORT: u16 = 9000;
/// HBONE's port: the only port a mesh flow may use between the nodes.
pub const HBONE_PORT: u16 = 15008;

/// What a pod is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The node proxy's pod.
    Ztunnel,
    /// Runs the load client.
    Client,
    /// Runs the HTTP responder and the sink.
    Server,
}

/// One pod: its namespace, node-side veth, IP, and whether it is enrolled in the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub netns: String,
    /// Workload name in the proxy config (and the service account).
    pub name: &'static str,
    pub role: Role,
    /// The node-side end of the pod's veth (the pod side is `eth0`).
    pub host_veth: &'static str,
    pub ip: Ipv4Addr,
    pub enrolled: bool,
}

/// One node: its namespace, link address, pod gateway and pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node name in the proxy config (`node-a`, `node-b`).
    pub name: &'static str,
    pub netns: String,
    pub eth0_ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    /// The node's pod CIDR (/24), routed to the other node.
    pub pod_cidr: Ipv4Addr,
    pub pods: Vec<Pod>,
}

impl Node {
    /// The node's ztunnel pod.
    pub fn ztunnel(&self) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.role == Role::Ztunnel)
            .expect("every node has a ztunnel pod")
    }

    /// The node's pods of `role`, enrolled or not.
    pub fn pod(&self, role: Role, enrolled: bool) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.role == role && p.enrolled == enrolled)
    }

    /// IPs of the enrolled pods (the node's ipset members).
    pub fn enrolled_ips(&self) -> Vec<Ipv4Addr> {
        self.pods
            .iter()
            .filter(|p| p.enrolled)
            .map(|p| p.ip)
            .collect()
    }
}

/// The whole topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub prefix: String,
    pub a: Node,
    pub b: Node,
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

impl Plan {
    /// The articles' topology with every name prefixed by `prefix`.
    pub fn new(prefix: &str) -> Self {
        let ns = |s: &str| format!("{prefix}{s}");
        let pod = |netns: &str, name, role, host_veth, ip, enrolled| Pod {
            netns: ns(netns),
            name,
            role,
            host_veth,
            ip,
            enrolled,
        };
        let a = Node {
            name: "node-a",
            netns: ns("node-a"),
            eth0_ip: ip(172, 18, 0, 2),
            gateway: ip(10, 244, 1, 1),
            pod_cidr: ip(10, 244, 1, 0),
            pods: vec![
                pod(
                    "ztunnel-a",
                    "ztunnel-a",
                    Role::Ztunnel,
                    "vztunnel",
                    ip(10, 244, 1, 2),
                    false,
                ),
                pod(
                    "client",
                    "client",
                    Role::Client,
                    "vclient",
                    ip(10, 244, 1, 4),
                    true,
                ),
                pod(
                    "client-plain",
                    "client-plain",
                    Role::Client,
                    "vclientp",
                    ip(10, 244, 1, 5),
                    false,
                ),
            ],
        };
        let b = Node {
            name: "node-b",
            netns: ns("node-b"),
            eth0_ip: ip(172, 18, 0, 3),
            gateway: ip(10, 244, 2, 1),
            pod_cidr: ip(10, 244, 2, 0),
            pods: vec![
                pod(
                    "ztunnel-b",
                    "ztunnel-b",
                    Role::Ztunnel,
                    "vztunnel",
                    ip(10, 244, 2, 3),
                    false,
                ),
                pod(
                    "server",
                    "server",
                    Role::Server,
                    "vserver",
                    ip(10, 244, 2, 5),
                    true,
                ),
                pod(
                    "server-plain",
                    "server-plain",
                    Role::Server,
                    "vserverp",
                    ip(10, 244, 2, 6),
                    false,
                ),
            ],
        };
        Plan {
            prefix: prefix.to_string(),
            a,
            b,
        }
    }

    /// Both nodes.
    pub fn nodes(&self) -> [&Node; 2] {
        [&self.a, &self.b]
    }

    /// Every namespace, nodes first (creation order; delete in reverse).
    pub fn all_netns(&self) -> Vec<String> {
        let mut v = vec![self.a.netns.clone(), self.b.netns.clone()];
        for n in self.nodes() {
            v.extend(n.pods.iter().map(|p| p.netns.clone()));
        }
        v
    }

    /// (client, server) of the mesh path: enrolled → enrolled.
    pub fn mesh_pair(&self) -> (&Pod, &Pod) {
        let c = self
            .a
            .pod(Role::Client, true)
            .expect("plan has an enrolled client");
        (
            c,
            self.b
                .pod(Role::Server, true)
                .expect("plan has an enrolled server"),
        )
    }

    /// (client, server) of the baseline path: not enrolled → not enrolled.
    pub fn baseline_pair(&self) -> (&Pod, &Pod) {
        let c = self
            .a
            .pod(Role::Client, false)
            .expect("plan has a plain client");
        (
            c,
            self.b
                .pod(Role::Server, false)
                .expect("plan has a plain server"),
        )
    }

    /// (client, server) of the passthrough path: enrolled client → not-enrolled server.
    pub fn passthrough_pair(&self) -> (&Pod, &Pod) {
        let c = self
            .a
            .pod(Role::Client, true)
            .expect("plan has an enrolled client");
        (
            c,
            self.b
                .pod(Role::Server, false)
                .expect("plan has a plain server"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_addresses_and_prefixed_names() {
        let p = Plan::new("zrl-");
        assert_eq!(p.a.ztunnel().ip, ip(10, 244, 1, 2));
        assert_eq!(p.b.ztunnel().ip, ip(10, 244, 2, 3));
        let (c, s) = p.mesh_pair();
        assert_eq!((c.ip, s.ip), (ip(10, 244, 1, 4), ip(10, 244, 2, 5)));
        assert_eq!(p.a.enrolled_ips(), vec![ip(10, 244, 1, 4)]);
        assert!(p.all_netns().iter().all(|n| n.starts_with("zrl-")));
        assert_eq!(p.all_netns().len(), 8);
    }

    #[test]
    fn interface_names_fit_ifnamsiz() {
        let p = Plan::new("a-very-long-prefix-");
        for n in p.nodes() {
            assert!(n.pods.iter().all(|pod| pod.host_veth.len() < 16));
        }
    }

    #[test]
    fn baseline_and_passthrough_use_unenrolled_pods() {
        let p = Plan::new("x-");
        let (c, s) = p.baseline_pair();
        assert!(!c.enrolled && !s.enrolled);
        let (c, s) = p.passthrough_pair();
        assert!(c.enrolled && !s.enrolled);
    }
}
