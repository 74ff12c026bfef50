//! HTTP/2 of our own for HBONE, both ends: frames ([`frame`]) and an I/O-free connection
//! ([`conn`], server or client) that parses opened TLS records in place and leaves DATA
//! frames to be built straight into the TLS send buffer. HPACK decoding is `loona-hpack`'s (Huffman and the
//! dynamic table, as hyper/h2 peers send them); our responses use only the static table
//! and literals, as do our requests ([`frame::connect_block`]).

pub mod conn;
pub mod frame;

pub use conn::{Endpoint, Event, Limits, Role};
pub use frame::Reason;

/// A connection-level HTTP/2 error: the GOAWAY that says so is queued, and the connection
/// ends once it is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H2Error {
    #[error("the HBONE peer did not open with the HTTP/2 client preface (is it an HTTP/2 client? ztunnel and zring send it right after the TLS handshake)")]
    Preface,
    #[error("HTTP/2 peer broke the protocol: {what} (answered with GOAWAY {reason})")]
    Protocol { reason: Reason, what: &'static str },
}
