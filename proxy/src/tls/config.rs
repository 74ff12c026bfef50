//! rustls configs for HBONE, built from a [`CertStore`].
//!
//! Both sides: TLS 1.3 only, the ring provider restricted to AES-128-GCM, AES-256-GCM
//! and ChaCha20-Poly1305 (ztunnel's suites plus ChaCha20 for CPUs without AES), ALPN `h2`,
//! TLS 1.3 session resumption with stateless tickets and no early data ([`super::resume`];
//! ztunnel keeps resumption off, and its handshakes with zring are full ones).
//!
//! Building is cheap: the provider, the trust anchors, the server-side verifier and every
//! parsed signing key are shared `Arc`s made once per store; a config costs a few small
//! allocations. Callers should still cache configs per identity (pair) and rebuild them
//! when the store is reloaded.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::{ClientSessionMemoryCache, Resumption, Tls12Resumption};
use rustls::crypto::ring::cipher_suite::{
    TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
};
use rustls::crypto::ring::{self, kx_group};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::server::NoServerSessionStorage;
use rustls::sign::SingleCertAndKey;
use rustls::version::TLS13;
use rustls::{ClientConfig, ServerConfig};

use super::resume;
use super::verify::SpiffeServerVerifier;
use super::{CertStore, TlsError, ALPN_H2};
use crate::identity::Identity;

/// The process-wide HBONE crypto provider: ring, TLS 1.3 AEAD suites only.
///
/// ring 0.17.14 seals and opens AES-GCM with VAES + AVX2 where the CPU has them (this
/// project's AMD EPYC machines do); aws-lc-rs 1.19 takes its AES-NI path there and costs
/// about twice as much per byte (ARCHITECTURE.md has the runs). AES-128-GCM comes first
/// (fewer rounds than AES-256). Key exchange is X25519 then P-256, the groups ztunnel's
/// ring build offers, so a handshake with it needs no HelloRetryRequest.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                cipher_suites: vec![
                    TLS13_AES_128_GCM_SHA256,
                    TLS13_AES_256_GCM_SHA384,
                    TLS13_CHACHA20_POLY1305_SHA256,
                ],
                kx_groups: vec![kx_group::X25519, kx_group::SECP256R1],
                ..ring::default_provider()
            })
        })
        .clone()
}

/// The `ServerName` to hand `rustls::ClientConnection::new` when dialling `ip`. HBONE has no
/// SNI (`enable_sni` is off) and [`SpiffeServerVerifier`] ignores the name.
pub fn server_name(ip: IpAddr) -> ServerName<'static> {
    ServerName::IpAddress(ip.into())
}

fn rustls_err(what: &'static str) -> impl FnOnce(rustls::Error) -> TlsError {
    move |source| TlsError::Rustls { what, source }
}

impl CertStore {
    /// Server config for the HBONE listener of workload `id`: presents `id`'s chain and
    /// requires a client chain from our trust bundle and trust domain.
    pub fn server_config(&self, id: &Identity) -> Result<Arc<ServerConfig>, TlsError> {
        let key = self.certified_key(id)?.clone();
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&TLS13])
            .map_err(rustls_err("TLS 1.3 server settings"))?
            .with_client_cert_verifier(self.client_verifier.clone())
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        // Stateless tickets only: nothing to cache per connection on the server.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.ticketer = self.ticketer(id)?.clone();
        config.send_tls13_tickets = resume::TICKETS_PER_HANDSHAKE;
        // tls::session seals and opens records itself after the handshake.
        config.enable_secret_extraction = true;
        Ok(Arc::new(config))
    }

    /// Client config for connections from workload `src` to a destination whose certificate
    /// must carry one of `expected_server` (its SPIFFE identities).
    pub fn client_config(
        &self,
        src: &Identity,
        expected_server: &[Identity],
    ) -> Result<Arc<ClientConfig>, TlsError> {
        if expected_server.is_empty() {
            return Err(TlsError::NoExpectedIdentity {
                src: Box::new(src.clone()),
            });
        }
        let key = self.certified_key(src)?.clone();
        let verifier = SpiffeServerVerifier::new(
            self.roots.clone(),
            expected_server.to_vec(),
            self.provider.signature_verification_algorithms,
        );
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&TLS13])
            .map_err(rustls_err("TLS 1.3 client settings"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        config.enable_sni = false;
        // One cache per config: sessions never cross source identities (rustls would also
        // refuse one made with another verifier or client certificate).
        let cache = ClientSessionMemoryCache::new(resume::CLIENT_SESSIONS);
        config.resumption =
            Resumption::store(Arc::new(cache)).tls12_resumption(Tls12Resumption::Disabled);
        // tls::session seals and opens records itself after the handshake.
        config.enable_secret_extraction = true;
        Ok(Arc::new(config))
    }
}
