//! TLS for HBONE: a dev CA, the certificate store, rustls configs and SPIFFE verifiers.
//!
//! Certificate directory layout (the same one `zring ca` writes and [`CertStore::load`] reads):
//!
//! | path | holds |
//! |---|---|
//! | `DIR/root-cert.pem` | trust bundle: one or more CA certificates (PEM) |
//! | `DIR/root-key.pem` | the dev CA's private key (only `zring ca` reads it) |
//! | `DIR/<namespace>/<service-account>/cert-chain.pem` | workload leaf, then its CA chain |
//! | `DIR/<namespace>/<service-account>/key.pem` | the leaf's private key (PKCS#8, mode 0600) |
//!
//! A leaf's identity is its URI SAN `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`; it must agree
//! with the directory it sits in and with the configured trust domain.
//!
//! What a handshake verifies (HBONE, see `shared/design/HBONE.md`):
//! - TLS 1.3 only, AES-256-GCM / AES-128-GCM / ChaCha20-Poly1305, ALPN `h2`, no SNI,
//!   session resumption by stateless tickets, no early data ([`resume`]).
//! - Server side: the client must present a chain that verifies against the trust bundle
//!   and whose SPIFFE trust domain is ours ([`verify::TrustDomainClientVerifier`]).
//! - Client side: the server chain must verify against the trust bundle and its SPIFFE
//!   identity must be one of the destination's expected identities
//!   ([`verify::SpiffeServerVerifier`]); the DNS server name is ignored.
//!
//! Modules: [`ca`] (dev CA, `zring ca init|issue`), [`store`] (loading and change detection),
//! `config` (rustls `ServerConfig`/`ClientConfig` builders on [`CertStore`]), [`verify`]
//! (the verifiers and [`peer_identity`]), [`resume`] (ticket keys, client session caches,
//! the expiry check of a resumed peer), [`session`] (rustls's unbuffered API on our
//! buffers for the handshake, then records of our own: [`record`], `traffic`; I/O-free)
//! and [`stream`] (a session on monoio's owned-buffer ops, for h2).

pub mod ca;
mod config;
pub mod record;
pub mod resume;
pub mod session;
pub mod store;
pub mod stream;
mod traffic;
pub mod verify;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use crate::identity::Identity;

pub use ca::{
    csr_identity, init_ca, issue, issue_for, issue_server, new_csr, run_ca, sign_csr, CaCommand,
};
pub use config::{provider, server_name};
pub use store::{fingerprint, CertStore};
pub use stream::TlsStream;
pub use verify::{identity_of, peer_identity};

/// File name of the trust bundle inside a certificate directory.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
/// File name of the dev CA's private key inside a certificate directory.
pub const ROOT_KEY_FILE: &str = "root-key.pem";
/// File name of a workload's certificate chain (leaf first) in `DIR/<ns>/<sa>/`.
pub const CHAIN_FILE: &str = "cert-chain.pem";
/// File name of a workload's private key in `DIR/<ns>/<sa>/`.
pub const KEY_FILE: &str = "key.pem";

/// ALPN protocol spoken over HBONE TLS connections.
pub const ALPN_H2: &[u8] = b"h2";

/// Everything that can go wrong loading certificates or building TLS configs.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: {reason}; regenerate it with `zring ca issue` (or `zring ca init` for the root)"
    )]
    Pem { path: PathBuf, reason: String },
    #[error("{path} holds no PEM `CERTIFICATE` block; regenerate it with `zring ca issue` (or `zring ca init` for the root)")]
    NoCertificate { path: PathBuf },
    #[error("cannot parse the certificate in {path}: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("the leaf certificate in {path} has no spiffe://<trust-domain>/ns/<ns>/sa/<sa> URI SAN; issue workload certificates with `zring ca issue`")]
    NoSpiffeId { path: PathBuf },
    #[error("{path} holds a certificate for {found}, but its directory says namespace {namespace:?}, service account {service_account:?}: move it to <dir>/{}/{}/ or re-issue it", found.namespace, found.service_account)]
    DirectoryMismatch {
        path: PathBuf,
        found: Box<Identity>,
        namespace: String,
        service_account: String,
    },
    #[error("{path} holds a certificate for {found}, but the trust domain is {expected:?}: re-issue it for spiffe://{expected}/... or change the configured trust domain")]
    TrustDomainMismatch {
        path: PathBuf,
        found: Box<Identity>,
        expected: String,
    },
    #[error("the key in {key} does not belong to the leaf certificate in {chain}: re-issue both with `zring ca issue`")]
    KeyMismatch { chain: PathBuf, key: PathBuf },
    #[error("the certificate chain in {chain} does not verify against the trust bundle {bundle}: {reason}; re-issue it (`zring ca issue`) from the CA whose root is in the bundle")]
    Untrusted {
        chain: PathBuf,
        bundle: PathBuf,
        reason: String,
    },
    #[error("no certificate for {identity} in {dir}: run `zring ca issue --dir {dir} {identity}`", dir = dir.display())]
    NoIdentity {
        identity: Box<Identity>,
        dir: PathBuf,
    },
    #[error("no dev CA in {dir} ({ROOT_CERT_FILE} and {ROOT_KEY_FILE}): run `zring ca init --dir {dir}`", dir = dir.display())]
    NoCa { dir: PathBuf },
    #[error("a CA already exists in {dir}: pass --force to replace it (certificates it issued will stop being trusted)", dir = dir.display())]
    CaExists { dir: PathBuf },
    #[error("the dev CA in {dir} is unusable: {source}; re-create it with `zring ca init --force --dir {dir}`", dir = dir.display())]
    BadCa { dir: PathBuf, source: rcgen::Error },
    #[error("cannot generate {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("no expected server identity given for a client config from {src}: the destination workload must name at least one identity")]
    NoExpectedIdentity { src: Box<Identity> },
    #[error("rustls rejected the {what}: {source}")]
    Rustls {
        what: &'static str,
        source: rustls::Error,
    },
}

impl TlsError {
    fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| TlsError::Io {
            action,
            path,
            source,
        }
    }
}
