//! Dev CA for demos and tests: `zring ca init` and `zring ca issue`.
//!
//! Not a production CA: the root key sits next to the certificates. Istio's CA (istiod) or
//! cert-manager would issue the same layout in production. Every key is ECDSA P-256;
//! workload certificates carry the SPIFFE identity as their only SAN (a URI, as Istio's do)
//! and both serverAuth and clientAuth EKUs, because HBONE uses them in both roles.
//!
//! Files are written to a temporary name and renamed into place, so a reload loop never
//! reads half a file; keys are created with mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};

use super::{TlsError, CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE, ROOT_KEY_FILE};
use crate::identity::Identity;

/// Root validity: ten years, so a demo CA never expires under anyone's feet.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Workload validity used by [`issue`]: one year (Istio rotates every 24 h; this is a dev CA).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Backdating of `notBefore`, so peers with slightly slow clocks accept fresh certificates.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// `zring ca ...`: create a dev CA and issue workload certificates from it.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CaCommand {
    /// Create DIR/root-cert.pem and DIR/root-key.pem (a new self-signed ECDSA P-256 root).
    Init {
        /// Certificate directory.
        #[arg(long)]
        dir: PathBuf,
        /// SPIFFE trust domain recorded in the root's subject.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// Replace an existing CA (certificates it issued stop being trusted).
        #[arg(long)]
        force: bool,
    },
    /// Issue DIR/<ns>/<sa>/cert-chain.pem and key.pem for each identity.
    Issue {
        /// Certificate directory holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// Identities such as spiffe://cluster.local/ns/default/sa/sleep.
        #[arg(required = true)]
        identities: Vec<Identity>,
    },
}

/// Runs a `zring ca` command, printing the files it wrote.
pub fn run_ca(cmd: CaCommand) -> Result<(), TlsError> {
    match cmd {
        CaCommand::Init {
            dir,
            trust_domain,
            force,
        } => {
            init_ca(&dir, &trust_domain, force)?;
            println!("wrote {}", dir.join(ROOT_CERT_FILE).display());
            println!("wrote {}", dir.join(ROOT_KEY_FILE).display());
        }
        CaCommand::Issue { dir, identities } => {
            for id in &identities {
                let chain = issue(&dir, id)?;
                println!("{id}: wrote {}", chain.display());
            }
        }
    }
    Ok(())
}

/// Creates a dev CA in `dir` (created if missing). Refuses to replace an existing CA
/// unless `force`.
pub fn init_ca(dir: &Path, trust_domain: &str, force: bool) -> Result<(), TlsError> {
    let (cert_path, key_path) = (dir.join(ROOT_CERT_FILE), dir.join(ROOT_KEY_FILE));
    if !force && (cert_path.exists() || key_path.exists()) {
        return Err(TlsError::CaExists {
            dir: dir.to_path_buf(),
        });
    }
    fs::create_dir_all(dir).map_err(TlsError::io("create directory", dir))?;
    let key = generate_key("the CA key")?;
    let cert = ca_params(trust_domain, SystemTime::now())
        .self_signed(&key)
        .map_err(|source| TlsError::Generate {
            what: format!("the CA certificate for {trust_domain}"),
            source,
        })?;
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)
}

/// Issues a certificate for `id` valid for [`LEAF_VALIDITY`]; see [`issue_for`].
pub fn issue(dir: &Path, id: &Identity) -> Result<PathBuf, TlsError> {
    issue_for(dir, id, LEAF_VALIDITY)
}

/// Signs a fresh ECDSA P-256 workload certificate for `id` with the CA in `dir`, writes
/// `dir/<ns>/<sa>/cert-chain.pem` (leaf, then the CA) and `key.pem`, and returns the
/// chain's path.
pub fn issue_for(dir: &Path, id: &Identity, validity: Duration) -> Result<PathBuf, TlsError> {
    let (ca_pem, issuer) = load_issuer(dir)?;
    let key = generate_key(&format!("a key for {id}"))?;
    let leaf = leaf_params(id, SystemTime::now(), validity)?
        .signed_by(&key, &issuer)
        .map_err(|source| TlsError::Generate {
            what: format!("the certificate for {id}"),
            source,
        })?;
    let wl_dir = dir.join(&id.namespace).join(&id.service_account);
    fs::create_dir_all(&wl_dir).map_err(TlsError::io("create directory", &wl_dir))?;
    let chain_path = wl_dir.join(CHAIN_FILE);
    write_atomic(
        &wl_dir.join(KEY_FILE),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    let chain = format!("{}{}", leaf.pem(), ca_pem);
    write_atomic(&chain_path, chain.as_bytes(), 0o644)?;
    Ok(chain_path)
}

/// Signs a PKCS#10 request (PEM) for `id` with the CA in `dir`, as Istio's CA does: the
/// request supplies only the public key; subject, SAN (`id`), usages and validity are the
/// CA's. Returns the chain, leaf first and the root last.
pub fn sign_csr(
    dir: &Path,
    csr_pem: &str,
    id: &Identity,
    validity: Duration,
) -> Result<Vec<String>, TlsError> {
    let (ca_pem, issuer) = load_issuer(dir)?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|source| {
        TlsError::Generate {
            what: format!("a certificate from the signing request for {id} (unreadable request)"),
            source,
        }
    })?;
    csr.params = leaf_params(id, SystemTime::now(), validity)?;
    let leaf = csr
        .signed_by(&issuer)
        .map_err(|source| TlsError::Generate {
            what: format!("the certificate for {id}"),
            source,
        })?;
    Ok(vec![leaf.pem(), ca_pem])
}

/// A fresh ECDSA P-256 key and a PKCS#10 request for `id` (URI SAN, empty subject, as
/// ztunnel sends to the Istio CA): (CSR PEM, key PEM). The key stays in memory.
pub fn new_csr(id: &Identity) -> Result<(String, String), TlsError> {
    let key = generate_key(&format!("a key for {id}"))?;
    let generate = |source| TlsError::Generate {
        what: format!("a signing request for {id}"),
        source,
    };
    let uri = rcgen::string::Ia5String::try_from(id.to_string()).map_err(generate)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params.serialize_request(&key).map_err(generate)?;
    Ok((csr.pem().map_err(generate)?, key.serialize_pem()))
}

/// The SPIFFE identity a PKCS#10 request (PEM) asks for in its URI SAN.
pub fn csr_identity(csr_pem: &str) -> Result<Identity, String> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| format!("unreadable signing request: {e}"))?;
    let uri = csr.params.subject_alt_names.iter().find_map(|s| match s {
        SanType::URI(u) => Some(u.as_str().to_string()),
        _ => None,
    });
    let uri = uri.ok_or("the signing request has no URI SAN")?;
    uri.parse().map_err(|e| format!("{e}"))
}

/// A server certificate for a control plane (istiod's role) from the CA in `dir`: DNS and
/// IP SANs, serverAuth. Returns (chain PEM, key PEM); nothing is written.
pub fn issue_server(
    dir: &Path,
    dns: &[&str],
    ips: &[std::net::IpAddr],
) -> Result<(String, String), TlsError> {
    let (ca_pem, issuer) = load_issuer(dir)?;
    let key = generate_key("the control plane's key")?;
    let generate = |source| TlsError::Generate {
        what: "the control plane's certificate".into(),
        source,
    };
    let mut params = CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
        .map_err(generate)?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + LEAF_VALIDITY).into();
    let cert = params.signed_by(&key, &issuer).map_err(generate)?;
    Ok((format!("{}{}", cert.pem(), ca_pem), key.serialize_pem()))
}

fn generate_key(what: &str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| TlsError::Generate {
        what: what.to_string(),
        source,
    })
}

fn ca_params(trust_domain: &str, now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    dn.push(DnType::CommonName, "zring dev root CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + CA_VALIDITY).into();
    params
}

/// Leaf parameters as Istio issues them: empty subject, one critical URI SAN.
fn leaf_params(
    id: &Identity,
    now: SystemTime,
    validity: Duration,
) -> Result<CertificateParams, TlsError> {
    let uri =
        rcgen::string::Ia5String::try_from(id.to_string()).map_err(|e| TlsError::Generate {
            what: format!("a URI SAN for {id}"),
            source: e,
        })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + validity).into();
    Ok(params)
}

/// Reads the CA in `dir`: its certificate PEM (appended to chains) and an rcgen issuer.
fn load_issuer(dir: &Path) -> Result<(String, Issuer<'static, KeyPair>), TlsError> {
    let (cert_path, key_path) = (dir.join(ROOT_CERT_FILE), dir.join(ROOT_KEY_FILE));
    if !cert_path.exists() || !key_path.exists() {
        return Err(TlsError::NoCa {
            dir: dir.to_path_buf(),
        });
    }
    let ca_pem = fs::read_to_string(&cert_path).map_err(TlsError::io("read", &cert_path))?;
    let key_pem = fs::read_to_string(&key_path).map_err(TlsError::io("read", &key_path))?;
    let bad_ca = |source| TlsError::BadCa {
        dir: dir.to_path_buf(),
        source,
    };
    let key = KeyPair::from_pem(&key_pem).map_err(bad_ca)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).map_err(bad_ca)?;
    Ok((ca_pem, issuer))
}

/// Writes `path` through a temporary sibling and a rename, with the given mode.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    // A leftover from an interrupted run would keep its old mode; start afresh.
    if let Err(e) = fs::remove_file(&tmp) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(TlsError::io("remove", &tmp)(e));
        }
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(TlsError::io("create", &tmp))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(TlsError::io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(TlsError::io("rename into place", path))
}
