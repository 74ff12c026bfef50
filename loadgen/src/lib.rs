//! zring-loadgen: the two-node ambient topology in network namespaces, the servers
//! that run in its pods, an open-loop load client, and the report.
//!
//! A tour of the modules:
//! - [`pacer`]: open-loop schedule and coordinated-omission-correct latency base (pure).
//! - [`hist`]: HdrHistogram wrapper, per-core merge, percentiles (pure).
//! - [`proto`], [`checksum`]: the HTTP/1.1 echo and sink wire formats, FNV, payloads (pure).
//! - [`server`]: the HTTP responder and bulk sink (monoio per core).
//! - [`client`], [`phase`]: per-connection load loops and one measured phase over cores.
//! - [`cores`]: per-core monoio runtimes, optionally inside a network namespace.
//! - [`topo`]: the topology plan (pure) and `up`/`down`/`status` over `plumbing::netns`.
//! - [`mesh`]: certificates, the generated LocalConfig, node plumbing, one zring per node;
//!   [`control`]: the xDS and CA control plane; [`enrol`]: the xDS demo's live enrolment.
//! - [`procs`]: state directory, child processes in pod namespaces, CPU time from /proc.
//! - [`run`]: the scenarios, baseline and mesh alternating; [`report`]: JSON, Markdown,
//!   SVG; [`progress`]: the stderr progress bar; [`capture`]: tcpdump on the node link.
//! - [`scale`]: a cluster of N workloads over the control plane to ztunnel and zring:
//!   ready time, RSS, CPU and ACK time per push.
//! - [`inpod`]: in-pod mode side by side on the fake istio-cni (`testsupport::cni`):
//!   memory and descriptors per pod, AddWorkload → first connection, bulk, echo, churn.
//! - [`pairs`]: new pod pairs across nodes (M sources × K destinations, one HBONE
//!   connection each), zring vs ztunnel: pairs/s, p99, CPU per pair.
//! - [`error`]: the crate's error type.
//! - `sys`: the only unsafe code (setns, pre_exec, kill, sysconf).
#![deny(unsafe_code)]

pub mod capacity;
pub mod capture;
pub mod checksum;
pub mod client;
pub mod control;
pub mod cores;
pub mod enrol;
pub mod error;
pub mod hist;
pub mod inpod;
pub mod mesh;
pub mod pacer;
pub mod pairs;
pub mod peer;
pub mod phase;
pub mod procs;
pub mod progress;
pub mod proto;
pub mod report;
pub mod restart;
pub mod run;
pub mod scale;
pub mod server;
pub mod soak;
pub mod socks;
#[allow(unsafe_code)]
pub mod sys;
pub mod topo;
