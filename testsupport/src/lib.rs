//! What zring's integration tests share, so each suite does not grow its own copy.
//!
//! - [`require`] — "can this test run here?": skips locally, fails under `CI=true`.
//! - [`cni`] — the fake istio-cni of in-pod tests: serves ZDS (AddWorkload with a netns
//!   descriptor, Keep, Del, SnapshotSent, raw packets) and reads the proxy's Acks.
//! - [`echo`] — blocking echo servers on listeners the caller bound (in any netns).
//! - [`certs`] — workload leaves with chosen validity, signed by a root on disk.
//! - [`fuzz`] — time-boxed property runs (proptest on the stable toolchain).
//! - [`h2raw`] — hand-built HTTP/2 frames for misbehaving-client tests.
//! - [`hbone`] — a tokio-rustls + h2 HBONE client that reports exactly what the server
//!   answered (status, reset code, TLS alert), for interop and hostile-input tests.
//! - [`waypoint`] — a test waypoint: an HBONE terminator that records each CONNECT's
//!   authority and client identity, then echoes or forwards over HBONE as a waypoint would.
//! - [`kernel`] — kernel state read with `ip`/`ipset` inside a netns (`ns_output`,
//!   `ipset_members`).
//! - [`Checked`] — a global allocator for test binaries that aborts on freeing memory it
//!   did not allocate (the only `unsafe`, in `sys`).

pub mod certs;
pub mod cni;
pub mod echo;
pub mod fuzz;
pub mod h2raw;
pub mod hbone;
pub mod kernel;
pub mod prom;
pub mod require;
mod sys;
pub mod waypoint;

pub use sys::{free_foreign_buffer, Checked};
