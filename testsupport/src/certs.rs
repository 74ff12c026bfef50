//! Workload leaves for tests that need what a production CA never issues on purpose:
//! expired or not-yet-valid certificates, other trust domains, foreign roots.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate chain (leaf first) and its key, both PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
}

/// A root that signs leaves: its certificate PEM and key.
pub struct Root {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Root {
    /// Loads `cert` and `key` (PEM files).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Root> {
        let cert_pem = std::fs::read_to_string(cert).with_context(|| cert.display().to_string())?;
        let key_pem = std::fs::read_to_string(key).with_context(|| key.display().to_string())?;
        let key = KeyPair::from_pem(&key_pem).context("root key")?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).context("root certificate")?;
        Ok(Root { cert_pem, issuer })
    }

    /// A fresh self-signed root for `org` (a CA nobody else trusts).
    pub fn generate(org: &str) -> anyhow::Result<Root> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Root { cert_pem, issuer })
    }

    /// A leaf whose only SAN is the URI `spiffe`, valid from `not_before` to `not_after`.
    pub fn leaf(
        &self,
        spiffe: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> anyhow::Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(spiffe.try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }

    /// A leaf valid from an hour ago for a day: what a CA issues every day.
    pub fn valid_leaf(&self, spiffe: &str) -> anyhow::Result<Leaf> {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        self.leaf(spiffe, now - hour, now + 24 * hour)
    }
}
