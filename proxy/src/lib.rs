//! zring: a per-core io_uring node proxy for ambient service-mesh data planes.
//!
//! Tour of the modules:
//! - [`identity`] — SPIFFE identities (pure).
//! - [`config`] — ztunnel LocalConfig YAML, run settings, the immutable per-core snapshot,
//!   destination resolution and authorization policy (pure).
//! - [`tls`] — dev CA (`zring ca`), certificate store with reload, rustls configs and the
//!   SPIFFE server-certificate verifier.
#![deny(unsafe_code)]

pub mod config;
pub mod identity;
pub mod tls;
