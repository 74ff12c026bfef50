//! Certificates the dev CA does not make but real meshes do: intermediates (Istio with a
//! plugged-in CA), expired leaves, leaves without a SPIFFE SAN. Built with rcgen directly.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ClientConfig;

use super::handshake::{exchange, expect_err, spiffe_verifier};
use super::{ca_with, httpbin_id, sleep_id, TempDir, TD};
use crate::identity::Identity;
use crate::tls::{provider, CertStore, TlsError, ALPN_H2, ROOT_CERT_FILE, ROOT_KEY_FILE};

const DAY: Duration = Duration::from_secs(86_400);

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn leaf_params(san: SanType, not_before: SystemTime, not_after: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![san];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params
}

fn uri(id: &Identity) -> SanType {
    SanType::URI(id.to_string().try_into().unwrap())
}

/// Writes `DIR/<ns>/<sa>/{cert-chain,key}.pem` from PEM strings.
fn write_workload(dir: &Path, id: &Identity, chain: &str, key: &KeyPair) {
    let wl = dir.join(&id.namespace).join(&id.service_account);
    fs::create_dir_all(&wl).unwrap();
    fs::write(wl.join("cert-chain.pem"), chain).unwrap();
    fs::write(wl.join("key.pem"), key.serialize_pem()).unwrap();
}

/// The dev CA in `dir` as an rcgen issuer.
fn dev_issuer(dir: &Path) -> (String, Issuer<'static, KeyPair>) {
    let ca_pem = fs::read_to_string(dir.join(ROOT_CERT_FILE)).unwrap();
    let key = KeyPair::from_pem(&fs::read_to_string(dir.join(ROOT_KEY_FILE)).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).unwrap();
    (ca_pem, issuer)
}

#[test]
fn chains_through_an_intermediate_verify_both_ways() {
    let dir = TempDir::new("intermediate");
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("test root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().unwrap();
    let int_params = ca_params("test intermediate");
    let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    fs::write(dir.path().join(ROOT_CERT_FILE), root.pem()).unwrap();
    let now = SystemTime::now();
    for id in [sleep_id(), httpbin_id()] {
        let key = KeyPair::generate().unwrap();
        let leaf = leaf_params(uri(&id), now - DAY, now + DAY)
            .signed_by(&key, &int_issuer)
            .unwrap();
        let chain = format!("{}{}{}", leaf.pem(), int.pem(), root.pem());
        write_workload(dir.path(), &id, &chain, &key);
    }
    let store = CertStore::load(dir.path(), TD).unwrap();
    let server = store.server_config(&httpbin_id()).unwrap();
    let client = store.client_config(&sleep_id(), &[httpbin_id()]).unwrap();
    let (client, server) = exchange(server, client);
    assert_eq!(client.unwrap().peer, Some(httpbin_id()));
    assert_eq!(server.unwrap().peer, Some(sleep_id()));
}

#[test]
fn store_refuses_an_expired_certificate() {
    let dir = ca_with("expired", &[]);
    let (ca_pem, issuer) = dev_issuer(dir.path());
    let key = KeyPair::generate().unwrap();
    let now = SystemTime::now();
    let leaf = leaf_params(uri(&sleep_id()), now - 3 * DAY, now - DAY)
        .signed_by(&key, &issuer)
        .unwrap();
    write_workload(dir.path(), &sleep_id(), &(leaf.pem() + &ca_pem), &key);
    let err = CertStore::load(dir.path(), TD).unwrap_err();
    assert!(matches!(err, TlsError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("certificate expired"), "{err}");
}

#[test]
fn server_rejects_a_client_certificate_without_spiffe_id() {
    let dir = ca_with("nospiffe", &[httpbin_id()]);
    let (_, issuer) = dev_issuer(dir.path());
    let key = KeyPair::generate().unwrap();
    let now = SystemTime::now();
    let san = SanType::DnsName("sleep.default.svc".try_into().unwrap());
    let leaf = leaf_params(san, now - DAY, now + DAY)
        .signed_by(&key, &issuer)
        .unwrap();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let certified = CertifiedKey::from_der(chain, key_der, &provider()).unwrap();

    let store = CertStore::load(dir.path(), TD).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(spiffe_verifier(&store, httpbin_id()))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    let server = store.server_config(&httpbin_id()).unwrap();
    let (client, server) = exchange(server, Arc::new(client));
    expect_err(
        "server",
        server,
        "peer certificate has no spiffe:// URI SAN",
    );
    assert!(client.is_err(), "client completed: {client:?}");
}
