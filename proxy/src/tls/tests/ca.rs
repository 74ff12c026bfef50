//! The dev CA: what it writes, and the `zring ca` command line.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use clap::Parser;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;

use super::{ca_with, id, sleep_id, TempDir, TD};
use crate::tls::{
    init_ca, issue, run_ca, CaCommand, TlsError, CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE,
    ROOT_KEY_FILE,
};

#[test]
fn init_refuses_to_replace_a_ca_without_force() {
    let dir = TempDir::new("force");
    init_ca(dir.path(), TD, false).unwrap();
    let root = fs::read(dir.path().join(ROOT_CERT_FILE)).unwrap();
    let err = init_ca(dir.path(), TD, false).unwrap_err();
    assert!(matches!(err, TlsError::CaExists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(fs::read(dir.path().join(ROOT_CERT_FILE)).unwrap(), root);
    init_ca(dir.path(), TD, true).unwrap();
    assert_ne!(fs::read(dir.path().join(ROOT_CERT_FILE)).unwrap(), root);
    let mode = fs::metadata(dir.path().join(ROOT_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn issue_without_a_ca_says_how_to_make_one() {
    let dir = TempDir::new("noca");
    let err = issue(dir.path(), &sleep_id()).unwrap_err();
    assert!(matches!(err, TlsError::NoCa { .. }), "{err}");
    assert!(err.to_string().contains("zring ca init --dir"), "{err}");
}

#[test]
fn issued_leaf_is_a_spiffe_only_p256_cert_valid_one_year() {
    let dir = ca_with("leaf", &[sleep_id()]);
    let wl = dir.path().join("default/sleep");
    let pem = fs::read(wl.join(CHAIN_FILE)).unwrap();
    let chain: Vec<_> = rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
        .collect::<Result<Vec<rustls::pki_types::CertificateDer<'static>>, _>>()
        .unwrap();
    assert_eq!(chain.len(), 2, "leaf then CA");
    let root = fs::read(dir.path().join(ROOT_CERT_FILE)).unwrap();
    assert!(
        pem.ends_with(&root),
        "the chain must end with the CA certificate"
    );

    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        vec![GeneralName::URI(
            "spiffe://cluster.local/ns/default/sa/sleep"
        )]
    );
    assert!(!leaf.is_ca());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let spki = &leaf.public_key().algorithm;
    assert_eq!(spki.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
    let curve = spki.parameters.as_ref().unwrap().as_oid().unwrap();
    assert_eq!(curve, OID_EC_P256);
    let days =
        (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()) / 86_400;
    assert!((365..=366).contains(&days), "validity {days} days");
    let mode = fs::metadata(wl.join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    ca: CaCommand,
}

#[test]
fn command_line_parses_validates_and_runs() {
    let dir = TempDir::new("cli");
    let d = dir.path().to_str().unwrap();
    assert!(
        Cli::try_parse_from(["ca", "issue", "--dir", d]).is_err(),
        "needs an identity"
    );
    assert!(Cli::try_parse_from(["ca", "issue", "--dir", d, "spiffe://x/ns/a"]).is_err());
    let init = Cli::try_parse_from(["ca", "init", "--dir", d]).unwrap().ca;
    match &init {
        CaCommand::Init {
            trust_domain,
            force,
            ..
        } => assert_eq!((trust_domain.as_str(), *force), (TD, false)),
        other => panic!("parsed as {other:?}"),
    }
    run_ca(init).unwrap();
    let ids = [
        "spiffe://cluster.local/ns/a/sa/b",
        "spiffe://cluster.local/ns/c/sa/d",
    ];
    let cmd = Cli::try_parse_from(["ca", "issue", "--dir", d, ids[0], ids[1]])
        .unwrap()
        .ca;
    run_ca(cmd).unwrap();
    let store = crate::tls::CertStore::load(dir.path(), TD).unwrap();
    let loaded: Vec<_> = store.identities().cloned().collect();
    assert_eq!(loaded, vec![id(ids[0]), id(ids[1])]);
}
