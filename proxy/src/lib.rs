//! zring: a per-core io_uring node proxy for ambient service-mesh data planes.
//!
//! Tour of the modules:
//! - [`identity`] — SPIFFE identities (pure).
//! - [`config`] — ztunnel LocalConfig YAML, run settings, the immutable per-core snapshot,
//!   destination resolution and authorization policy (pure).
//! - [`tls`] — dev CA (`zring ca`), certificate store with reload, rustls on monoio ops
//!   (`tls::stream`), rustls configs and the SPIFFE server-certificate verifier.
//! - [`hbone`] — HBONE protocol (pure), client pool, client and server.
//! - [`socks5`] — SOCKS5 CONNECT parsing (pure) and handshake.
//! - [`runtime`] — thread per core: listeners, per-core state, reload, admin endpoints.
//! - [`outbound`], [`inbound`] — the three legs: capture → tunnel → delivery; each takes
//!   its own context ([`context::Common`] plus what only it uses), built by [`runtime`].
//! - [`fast_path`] — two workloads on this node joined directly, inbound policy applied.
//! - [`inpod`] — in-pod mode: the ZDS client (istio-cni hands over pod namespaces).
//! - [`plumb`] — `zring run --plumb`: ztunnel-pod plumbing applied at start, removed at exit;
//!   with `--host-netns` the node side too, enrolment following the config, reconciled.
//! - [`relay`] — splice and HTTP/2 byte relays; [`sockets`] — listener/upstream sockets.
//! - [`sys`] — the only `unsafe`: socket options on monoio-owned descriptors.
#![deny(unsafe_code)]

/// Unit tests free only what they allocated (issue 24): see `testsupport::Checked`.
#[cfg(test)]
#[global_allocator]
static CHECKED: testsupport::Checked = testsupport::Checked;

pub mod access_log;
pub mod config;
pub mod context;
pub mod error;
pub mod fast_path;
pub mod hbone;
pub mod identity;
pub mod inbound;
pub mod inpod;
pub mod outbound;
pub mod plumb;
pub mod relay;
pub mod runtime;
pub mod sockets;
pub mod socks5;
mod sys;
pub mod tls;

pub use error::ProxyError;
pub use runtime::{start, start_with, BoundAddrs, Proxy};
