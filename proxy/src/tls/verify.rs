//! SPIFFE certificate verification for HBONE and reading a peer's identity.
//!
//! - [`SpiffeServerVerifier`] (client side): chain to the trust bundle, then the leaf's
//!   SPIFFE URI SAN must be one of the destination's expected identities. The DNS server
//!   name is ignored: HBONE dials pod IPs and Istio certificates carry no DNS SAN.
//! - [`TrustDomainClientVerifier`] (server side): rustls's `WebPkiClientVerifier` (which
//!   accepts URI-SAN-only client certificates), then the client's trust domain must be ours.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, CommonState, DigitallySignedStruct, DistinguishedName};
use rustls::{Error, OtherError, RootCertStore, SignatureScheme};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::identity::Identity;

/// The SPIFFE identity of the peer's leaf certificate, once the handshake has received it.
pub fn peer_identity(conn: &CommonState) -> Option<Identity> {
    identity_of(conn.peer_certificates()?.first()?)
}

/// The identity in a certificate's first `spiffe://` URI SAN; `None` if the DER does not
/// parse or no URI SAN is a SPIFFE identity.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<Identity> {
    spiffe_id(cert).ok().flatten()
}

/// Like [`identity_of`], but says why the certificate did not parse.
pub(crate) fn spiffe_id(cert: &CertificateDer<'_>) -> Result<Option<Identity>, String> {
    let (_, x509) = X509Certificate::from_der(cert).map_err(|e| e.to_string())?;
    let san = x509.subject_alternative_name().map_err(|e| e.to_string())?;
    let Some(san) = san else { return Ok(None) };
    Ok(san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with("spiffe://") => uri.parse().ok(),
        _ => None,
    }))
}

/// Why a peer's otherwise valid certificate was refused; carried in
/// `rustls::CertificateError::Other` so handshake errors say which identity was wrong.
/// (`Debug` prints the message too: rustls formats `Other` errors with `{:?}`.)
#[derive(thiserror::Error)]
pub enum PeerIdentityError {
    #[error("peer certificate has no spiffe:// URI SAN")]
    Missing,
    #[error("peer presented {found}, expected {}", list(expected))]
    Unexpected {
        found: Identity,
        expected: Vec<Identity>,
    },
    #[error("peer presented {found}, which is outside our trust domain {expected:?}")]
    ForeignTrustDomain { found: Identity, expected: String },
}

impl fmt::Debug for PeerIdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn list(ids: &[Identity]) -> String {
    let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
    format!("one of [{}]", names.join(", "))
}

fn reject(e: PeerIdentityError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

fn required_identity(cert: &CertificateDer<'_>) -> Result<Identity, Error> {
    match spiffe_id(cert) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(reject(PeerIdentityError::Missing)),
        Err(_) => Err(Error::InvalidCertificate(CertificateError::BadEncoding)),
    }
}

/// Client-side verifier: chain to the trust bundle + SPIFFE identity in an expected set.
pub struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected: Vec<Identity>,
    algs: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        expected: Vec<Identity>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Self {
        SpiffeServerVerifier {
            roots,
            expected,
            algs,
        }
    }
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("roots", &self.roots.len())
            .field("expected", &self.expected)
            .finish()
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        let found = required_identity(end_entity)?;
        if !self.expected.contains(&found) {
            return Err(reject(PeerIdentityError::Unexpected {
                found,
                expected: self.expected.clone(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Server-side verifier: webpki client-chain verification + same SPIFFE trust domain.
#[derive(Debug)]
pub struct TrustDomainClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl TrustDomainClientVerifier {
    /// `inner` must require client authentication (rustls's `WebPkiClientVerifier` does
    /// by default).
    pub fn new(inner: Arc<dyn ClientCertVerifier>, trust_domain: &str) -> Self {
        TrustDomainClientVerifier {
            inner,
            trust_domain: trust_domain.to_string(),
        }
    }
}

impl ClientCertVerifier for TrustDomainClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let found = required_identity(end_entity)?;
        if found.trust_domain != self.trust_domain {
            return Err(reject(PeerIdentityError::ForeignTrustDomain {
                found,
                expected: self.trust_domain.clone(),
            }));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
