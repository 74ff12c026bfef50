//! The inbound leg driven with a context built here, without a core or a listener:
//! which captured plaintext connections it delivers, and what it counts.

use std::net::SocketAddr;

use super::*;
use crate::config::{LocalConfig, Snapshot};

/// node-a holds a client and a server whose policies deny port 7 and name one policy the
/// config lacks; a workload on node-b is remote.
const NODE: &str = r#"
workloads:
- {name: client, namespace: ns, serviceAccount: client, workloadIps: ["10.0.0.1"], protocol: HBONE, node: node-a}
- {name: server, namespace: ns, serviceAccount: server, workloadIps: ["10.0.0.2"], protocol: HBONE, node: node-a, authorizationPolicies: ["ns/deny-7", "ns/ghost"]}
- {name: far, namespace: ns, serviceAccount: far, workloadIps: ["10.0.1.2"], protocol: HBONE, node: node-b}
policies:
- {name: deny-7, namespace: ns, scope: WorkloadSelector, action: Deny, rules: [[[{destinationPorts: [7]}]]]}
"#;

fn context() -> Context {
    let local = LocalConfig::from_yaml("node.yaml", NODE).expect("parses");
    let snapshot = Snapshot::new(local, Some("node-a")).expect("valid");
    Context::new(crate::context::for_test(snapshot), Some(15006))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn plaintext_is_delivered_to_a_local_workload_its_policy_admits() {
    let cx = context();
    let client = addr("10.0.0.1:40000");
    assert!(authorize_plaintext(&cx, client, addr("10.0.0.2:8")).is_ok());
    match authorize_plaintext(&cx, client, addr("10.0.0.2:7")) {
        Err(ProxyError::Denied { dst, policy }) => {
            assert_eq!(dst, addr("10.0.0.2:7"));
            assert!(policy.contains("deny-7"), "{policy}");
        }
        other => panic!("port 7 must be denied, got {other:?}"),
    }
    // A workload on another node is not delivered here, whatever its policy.
    assert!(matches!(
        authorize_plaintext(&cx, client, addr("10.0.1.2:8")),
        Err(ProxyError::NotLocal(ip)) if ip == addr("10.0.1.2:8").ip()
    ));
}

#[test]
fn an_unknown_policy_is_skipped_and_counted_once_per_evaluation() {
    let cx = context();
    let client = addr("10.0.0.1:40000");
    assert!(authorize_plaintext(&cx, client, addr("10.0.0.2:8")).is_ok());
    assert!(authorize_plaintext(&cx, client, addr("10.0.0.2:7")).is_err());
    let _ = authorize_plaintext(&cx, client, addr("10.0.1.2:8"));
    // Two evaluations ("ns/ghost" each time); the remote destination was never evaluated.
    assert_eq!(cx.common.metrics.snapshot().policies_skipped, 2);
}
