//! The certificate store: a trust bundle plus one certified key per local workload identity,
//! loaded from a certificate directory (layout in the [module docs](super)).
//!
//! Loading validates everything an operator could get wrong (PEM, identity vs directory,
//! trust domain, key vs certificate, chain vs bundle) and names the file at fault, so a bad
//! rotation is refused at load time instead of failing handshakes. [`fingerprint`] is a
//! cheap change detector (names, sizes, mtimes) for a reload loop: when it changes, call
//! [`CertStore::load`] again and keep the old store if that fails.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ParsedCertificate, ProducesTickets, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};

use super::verify::{spiffe_id, TrustDomainClientVerifier};
use super::{TlsError, CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE};
use crate::identity::Identity;

/// Trust bundle and workload certificates of one certificate directory (or of the CA
/// client). Immutable: reload by loading a new store; clones share the keys.
#[derive(Clone)]
pub struct CertStore {
    pub(super) dir: PathBuf,
    pub(super) trust_domain: String,
    pub(super) provider: Arc<CryptoProvider>,
    pub(super) roots: Arc<RootCertStore>,
    pub(super) client_verifier: Arc<dyn ClientCertVerifier>,
    workloads: BTreeMap<Identity, Arc<CertifiedKey>>,
    /// Session-ticket keys per local identity, made with the store: a reload (new
    /// certificates or trust bundle) makes every earlier ticket unusable.
    tickets: BTreeMap<Identity, Arc<dyn ProducesTickets>>,
    fingerprint: u64,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("dir", &self.dir)
            .field("trust_domain", &self.trust_domain)
            .field("roots", &self.roots.len())
            .field("identities", &self.workloads.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CertStore {
    /// Loads `dir/root-cert.pem` and every `dir/<ns>/<sa>/{cert-chain,key}.pem` pair.
    pub fn load(dir: &Path, trust_domain: &str) -> Result<CertStore, TlsError> {
        let fingerprint = fingerprint(dir)?;
        let bundle_path = dir.join(ROOT_CERT_FILE);
        let roots = load_bundle(&bundle_path, &read_file(&bundle_path)?)?;
        let mut store = CertStore::with_roots(dir, &bundle_path, trust_domain, roots)?;
        store.fingerprint = fingerprint;
        for (namespace, service_account) in workload_dirs(dir)? {
            store.load_workload(&namespace, &service_account)?;
        }
        Ok(store)
    }

    /// A store of certificates held in memory (the CA client's; keys never touch disk):
    /// the trust bundle `bundle_pem` (read from `bundle_path`) and `(chain PEM, key PEM)`
    /// pairs. Checked like [`CertStore::load`]; errors name `bundle_path` or the pair's index.
    /// Its [`loaded_fingerprint`](CertStore::loaded_fingerprint) is 0: there is no directory.
    pub fn from_pem(
        bundle_path: &Path,
        bundle_pem: &[u8],
        trust_domain: &str,
        workloads: &[(String, String)],
    ) -> Result<CertStore, TlsError> {
        let roots = load_bundle(bundle_path, bundle_pem)?;
        let mut store = CertStore::with_roots(Path::new(""), bundle_path, trust_domain, roots)?;
        for (i, (chain, key)) in workloads.iter().enumerate() {
            let what = PathBuf::from(format!("(certificate {i} from the CA)"));
            let chain = parse_certs(&what, chain.as_bytes())?;
            let key = parse_key(&what, key.as_bytes())?;
            store.add(&what, &what, chain, key)?;
        }
        Ok(store)
    }

    fn with_roots(
        dir: &Path,
        bundle_path: &Path,
        trust_domain: &str,
        roots: RootCertStore,
    ) -> Result<CertStore, TlsError> {
        let provider = super::config::provider();
        let roots = Arc::new(roots);
        let inner = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Pem {
                path: bundle_path.to_path_buf(),
                reason: format!("unusable as a client trust bundle ({e})"),
            })?;
        let client_verifier = Arc::new(TrustDomainClientVerifier::new(inner, trust_domain));
        Ok(CertStore {
            dir: dir.to_path_buf(),
            trust_domain: trust_domain.to_string(),
            provider,
            roots,
            client_verifier,
            workloads: BTreeMap::new(),
            tickets: BTreeMap::new(),
            fingerprint: 0,
        })
    }

    /// The certificate directory this store was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trust domain every local and peer identity must belong to.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Identities with a certificate, in order.
    pub fn identities(&self) -> impl Iterator<Item = &Identity> {
        self.workloads.keys()
    }

    /// Whether a certificate for `id` was loaded.
    pub fn contains(&self, id: &Identity) -> bool {
        self.workloads.contains_key(id)
    }

    /// The [`fingerprint`] of the directory taken just before loading: if
    /// `fingerprint(dir)` differs now, something changed since.
    pub fn loaded_fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Trust anchors from `root-cert.pem`.
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// The chain and signing key presented for `id`.
    pub fn certified_key(&self, id: &Identity) -> Result<&Arc<CertifiedKey>, TlsError> {
        self.workloads.get(id).ok_or_else(|| TlsError::NoIdentity {
            identity: Box::new(id.clone()),
            dir: self.dir.clone(),
        })
    }

    /// The session-ticket keys of `id`'s listener.
    pub(super) fn ticketer(&self, id: &Identity) -> Result<&Arc<dyn ProducesTickets>, TlsError> {
        self.tickets.get(id).ok_or_else(|| TlsError::NoIdentity {
            identity: Box::new(id.clone()),
            dir: self.dir.clone(),
        })
    }

    fn load_workload(&mut self, namespace: &str, service_account: &str) -> Result<(), TlsError> {
        let wl_dir = self.dir.join(namespace).join(service_account);
        let (chain_path, key_path) = (wl_dir.join(CHAIN_FILE), wl_dir.join(KEY_FILE));
        let chain = read_certs(&chain_path)?;
        let id = self.leaf_identity(&chain_path, &chain[0])?;
        if id.namespace != namespace || id.service_account != service_account {
            return Err(TlsError::DirectoryMismatch {
                path: chain_path,
                found: Box::new(id),
                namespace: namespace.to_string(),
                service_account: service_account.to_string(),
            });
        }
        let key = read_key(&key_path)?;
        self.add(&chain_path, &key_path, chain, key).map(|_| ())
    }

    /// Checks a chain and its key and adds them under the leaf's identity.
    fn add(
        &mut self,
        chain_path: &Path,
        key_path: &Path,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Identity, TlsError> {
        let id = self.leaf_identity(chain_path, &chain[0])?;
        self.check_chain(chain_path, &chain)?;
        let certified =
            CertifiedKey::from_der(chain, key, &self.provider).map_err(|e| match e {
                rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
                    TlsError::KeyMismatch {
                        chain: chain_path.to_path_buf(),
                        key: key_path.to_path_buf(),
                    }
                }
                other => TlsError::Pem {
                    path: key_path.to_path_buf(),
                    reason: format!("unusable private key ({other})"),
                },
            })?;
        let ticketer = super::resume::ticketer().map_err(|source| TlsError::Rustls {
            what: "session ticket key (the system's random source failed)",
            source,
        })?;
        self.workloads.insert(id.clone(), Arc::new(certified));
        self.tickets.insert(id.clone(), ticketer);
        Ok(id)
    }

    fn leaf_identity(&self, path: &Path, leaf: &CertificateDer<'_>) -> Result<Identity, TlsError> {
        let id = spiffe_id(leaf)
            .map_err(|reason| TlsError::BadCertificate {
                path: path.to_path_buf(),
                reason,
            })?
            .ok_or_else(|| TlsError::NoSpiffeId {
                path: path.to_path_buf(),
            })?;
        if id.trust_domain != self.trust_domain {
            return Err(TlsError::TrustDomainMismatch {
                path: path.to_path_buf(),
                found: Box::new(id),
                expected: self.trust_domain.clone(),
            });
        }
        Ok(id)
    }

    /// Refuses a chain that peers would refuse: not signed by the bundle, or expired.
    fn check_chain(&self, path: &Path, chain: &[CertificateDer<'static>]) -> Result<(), TlsError> {
        let untrusted = |e: rustls::Error| TlsError::Untrusted {
            chain: path.to_path_buf(),
            bundle: self.dir.join(ROOT_CERT_FILE),
            reason: e.to_string(),
        };
        let leaf = ParsedCertificate::try_from(&chain[0]).map_err(untrusted)?;
        let algs = self.provider.signature_verification_algorithms.all;
        verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &self.roots,
            &chain[1..],
            UnixTime::now(),
            algs,
        )
        .map_err(untrusted)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(TlsError::io("read", path))
}

/// All certificates in a PEM file, in order; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(path, &read_file(path)?)
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            reason: format!("malformed PEM ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_key(path, &read_file(path)?)
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        reason: format!("no usable PEM private key ({e})"),
    })
}

fn load_bundle(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(path, pem)? {
        roots.add(cert).map_err(|e| TlsError::BadCertificate {
            path: path.to_path_buf(),
            reason: format!("not usable as a trust anchor ({e})"),
        })?;
    }
    Ok(roots)
}

/// `(namespace, service account)` of every `dir/<ns>/<sa>/` holding a `cert-chain.pem`,
/// sorted.
fn workload_dirs(dir: &Path) -> Result<Vec<(String, String)>, TlsError> {
    let mut found = Vec::new();
    for namespace in subdirs(dir)? {
        for service_account in subdirs(&dir.join(&namespace))? {
            let wl_dir = dir.join(&namespace).join(&service_account);
            if wl_dir.join(CHAIN_FILE).exists() {
                found.push((namespace.clone(), service_account));
            }
        }
    }
    Ok(found)
}

/// Names of the subdirectories of `dir` (UTF-8 names only: identities are UTF-8), sorted.
fn subdirs(dir: &Path) -> Result<Vec<String>, TlsError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(TlsError::io("list", dir))? {
        let entry = entry.map_err(TlsError::io("list", dir))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// A cheap change detector for `dir`: hashes the name, size, mtime and inode of the trust bundle
/// and of every workload's chain and key. Equal values mean "nothing to reload".
pub fn fingerprint(dir: &Path) -> Result<u64, TlsError> {
    let mut hasher = DefaultHasher::new();
    hash_file(&mut hasher, &dir.join(ROOT_CERT_FILE))?;
    for (namespace, service_account) in workload_dirs(dir)? {
        let wl_dir = dir.join(namespace).join(service_account);
        hash_file(&mut hasher, &wl_dir.join(CHAIN_FILE))?;
        hash_file(&mut hasher, &wl_dir.join(KEY_FILE))?;
    }
    Ok(hasher.finish())
}

fn hash_file(hasher: &mut DefaultHasher, path: &Path) -> Result<(), TlsError> {
    path.hash(hasher);
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        // A missing file is a state like any other: loading will report it by name.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            0u8.hash(hasher);
            return Ok(());
        }
        Err(e) => return Err(TlsError::io("stat", path)(e)),
    };
    meta.len().hash(hasher);
    meta.modified().ok().hash(hasher);
    // Writers that rename a new file into place (as `zring ca` does) change the inode even
    // when size and a coarse mtime stay equal.
    meta.ino().hash(hasher);
    Ok(())
}
