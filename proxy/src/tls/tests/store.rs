//! Loading the certificate store: the happy path and each operator mistake it must name.

use std::fs;

use super::{ca_with, httpbin_id, id, sleep_id, TD};
use crate::tls::{fingerprint, issue, CertStore, TlsError, CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE};

fn load_err(dir: &std::path::Path) -> TlsError {
    CertStore::load(dir, TD).expect_err("load must fail")
}

#[test]
fn loads_bundle_and_every_workload() {
    let dir = ca_with("load", &[sleep_id(), httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let ids: Vec<_> = store.identities().cloned().collect();
    assert_eq!(ids, vec![httpbin_id(), sleep_id()]);
    assert!(store.contains(&sleep_id()));
    assert_eq!(store.roots().len(), 1);
    assert_eq!(store.trust_domain(), TD);
    let chain = &store.certified_key(&sleep_id()).unwrap().cert;
    assert_eq!(chain.len(), 2, "leaf then CA");
}

#[test]
fn refuses_certificate_in_the_wrong_directory() {
    let dir = ca_with("wrongdir", &[sleep_id()]);
    let ns = dir.path().join("default");
    fs::rename(ns.join("sleep"), ns.join("other")).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, TlsError::DirectoryMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("default/other/cert-chain.pem"), "{msg}");
    assert!(
        msg.contains("spiffe://cluster.local/ns/default/sa/sleep"),
        "{msg}"
    );
}

#[test]
fn refuses_certificate_from_another_trust_domain() {
    let dir = ca_with("foreign", &[]);
    issue(dir.path(), &id("spiffe://evil.local/ns/default/sa/sleep")).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, TlsError::TrustDomainMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("default/sleep/cert-chain.pem"),
        "{err}"
    );
}

#[test]
fn refuses_key_that_does_not_match_the_certificate() {
    let dir = ca_with("keymismatch", &[sleep_id(), httpbin_id()]);
    let (sleep, httpbin) = (
        dir.path().join("default/sleep"),
        dir.path().join("default/httpbin"),
    );
    fs::copy(httpbin.join(KEY_FILE), sleep.join(KEY_FILE)).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("default/sleep/key.pem"), "{err}");
}

#[test]
fn refuses_chain_not_signed_by_the_bundle() {
    let dir = ca_with("untrusted", &[sleep_id()]);
    let other = ca_with("otherroot", &[]);
    fs::copy(
        other.path().join(ROOT_CERT_FILE),
        dir.path().join(ROOT_CERT_FILE),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, TlsError::Untrusted { .. }), "{err}");
    assert!(
        err.to_string().contains("default/sleep/cert-chain.pem"),
        "{err}"
    );
}

#[test]
fn refuses_files_without_pem_blocks_or_missing_keys() {
    let dir = ca_with("garbage", &[sleep_id()]);
    let wl = dir.path().join("default/sleep");
    fs::remove_file(wl.join(KEY_FILE)).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, TlsError::Io { .. }), "{err}");
    assert!(err.to_string().contains("default/sleep/key.pem"), "{err}");

    fs::write(wl.join(CHAIN_FILE), "not a certificate\n").unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");

    fs::remove_file(dir.path().join(ROOT_CERT_FILE)).unwrap();
    let err = load_err(dir.path());
    assert!(err.to_string().contains(ROOT_CERT_FILE), "{err}");
}

#[test]
fn fingerprint_tracks_changes_only() {
    let dir = ca_with("fp", &[sleep_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let before = fingerprint(dir.path()).unwrap();
    assert_eq!(store.loaded_fingerprint(), before);
    assert_eq!(
        fingerprint(dir.path()).unwrap(),
        before,
        "no change, same value"
    );

    issue(dir.path(), &sleep_id()).unwrap();
    let reissued = fingerprint(dir.path()).unwrap();
    assert_ne!(reissued, before, "re-issuing a workload must be seen");

    issue(dir.path(), &httpbin_id()).unwrap();
    assert_ne!(
        fingerprint(dir.path()).unwrap(),
        reissued,
        "a new workload must be seen"
    );
    let reloaded = CertStore::load(dir.path(), TD).unwrap();
    assert!(reloaded.contains(&httpbin_id()));
}
