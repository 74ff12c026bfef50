//! Shared test data: the HBONE.md example and a richer mesh for resolution and policy tests.

use super::{LocalConfig, Snapshot};

/// The minimal example from HBONE.md, verbatim.
pub(super) const HBONE_MD_EXAMPLE: &str = r#"
workloads:
- uid: cluster1//v1/Pod/default/sleep
  name: sleep
  namespace: default
  serviceAccount: sleep
  trustDomain: cluster.local
  workloadIps: ["10.244.1.4"]
  protocol: HBONE            # HBONE: tunnel to <ip>:15008; TCP: plain passthrough
  node: node-a
  services:
    "default/httpbin.default.svc.cluster.local": {8000: 8080}
services:
- name: httpbin
  namespace: default
  hostname: httpbin.default.svc.cluster.local
  vips: ["/10.96.0.105"]     # "<network>/<ip>"
  ports: {8000: 8080}        # service port -> target port
policies:
- name: deny-9999
  namespace: default
  scope: Namespace           # Global | Namespace | WorkloadSelector
  action: Allow              # Allow | Deny (Deny evaluated first)
  rules:
  - - - notDestinationPorts: [9999]
"#;

/// A client, three HBONE httpbin endpoints (one with its own port override, one on
/// another node), a TCP-only legacy service and a service without endpoints.
pub(super) const MESH: &str = r#"
workloads:
- name: sleep
  namespace: default
  serviceAccount: sleep
  workloadIps: ["10.244.1.4"]
  protocol: HBONE
  node: node-a
- name: httpbin-1
  namespace: default
  serviceAccount: httpbin
  workloadIps: ["10.244.1.10"]
  protocol: HBONE
  node: node-a
  services: {"default/httpbin.default.svc.cluster.local": {}}
- name: httpbin-2
  namespace: default
  serviceAccount: httpbin
  workloadIps: ["10.244.1.11"]
  protocol: HBONE
  node: node-a
  services: {"default/httpbin.default.svc.cluster.local": {8000: 9090}}
- name: httpbin-3
  namespace: default
  serviceAccount: httpbin
  workloadIps: ["10.244.2.12"]
  protocol: HBONE
  node: node-b
  services: {"default/httpbin.default.svc.cluster.local": {}}
- name: legacy
  namespace: legacy
  workloadIps: ["10.244.1.20"]
  node: node-a
  services: {"legacy/legacy.legacy.svc.cluster.local": {}}
services:
- name: httpbin
  namespace: default
  hostname: httpbin.default.svc.cluster.local
  vips: ["/10.96.0.105"]
  ports: {8000: 8080, 9000: 9001}
- name: legacy
  namespace: legacy
  hostname: legacy.legacy.svc.cluster.local
  vips: ["10.96.0.20"]
  ports: {80: 8080}
- name: empty
  namespace: default
  hostname: empty.default.svc.cluster.local
  vips: ["/10.96.0.30"]
  ports: {80: 80}
"#;

/// [`MESH`] indexed for node-a.
pub(super) fn mesh() -> Snapshot {
    let local = LocalConfig::from_yaml("mesh.yaml", MESH).expect("MESH parses");
    Snapshot::new(local, Some("node-a")).expect("MESH is valid")
}
