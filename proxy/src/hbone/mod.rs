//! HBONE: HTTP/2 CONNECT over mutual TLS on port 15008.
//!
//! - [`proto`] — CONNECT request building and inbound validation (pure).
//! - [`pool`] — per-core client connection pool (one connect per key burst).
//! - [`client`] — opening pooled connections and CONNECT streams.

pub mod client;
pub mod http2;
pub mod pool;
pub mod proto;
pub mod server;
