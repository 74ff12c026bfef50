//! Real handshakes over loopback TCP: one std thread per side, rustls `StreamOwned`.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, ServerConfig, ServerConnection};

use super::{ca_with, httpbin_id, id, sleep_id, TempDir, TD};
use crate::identity::Identity;
use crate::tls::verify::SpiffeServerVerifier;
use crate::tls::{
    issue, peer_identity, provider, server_name, CertStore, ALPN_H2, ROOT_CERT_FILE, ROOT_KEY_FILE,
};

/// What one side saw after the handshake and a ping/pong exchange.
#[derive(Debug)]
pub(super) struct Seen {
    pub(super) peer: Option<Identity>,
    alpn: Option<Vec<u8>>,
    version: Option<ProtocolVersion>,
}

fn seen(conn: &rustls::CommonState) -> Seen {
    Seen {
        peer: peer_identity(conn),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version(),
    }
}

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a handshake plus one round trip; returns (client side, server side).
pub(super) fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (Result<Seen, String>, Result<Seen, String>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = thread::spawn(move || -> Result<Seen, String> {
        let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let conn = ServerConnection::new(server).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        Ok(seen(&tls.conn))
    });
    let client_side = (|| -> Result<Seen, String> {
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let name = server_name(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let conn = ClientConnection::new(client, name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(b"ping").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"pong");
        Ok(seen(&tls.conn))
    })();
    (
        client_side,
        server_side.join().expect("server thread panicked"),
    )
}

pub(super) fn spiffe_verifier(store: &CertStore, expected: Identity) -> Arc<SpiffeServerVerifier> {
    Arc::new(SpiffeServerVerifier::new(
        store.roots().clone(),
        vec![expected],
        provider().signature_verification_algorithms,
    ))
}

pub(super) fn expect_err(side: &str, r: Result<Seen, String>, needle: &str) {
    match r {
        Ok(s) => panic!("{side} accepted the handshake: {s:?}"),
        Err(e) => assert!(e.contains(needle), "{side} error {e:?} lacks {needle:?}"),
    }
}

#[test]
fn mutual_handshake_negotiates_h2_tls13_and_identities() {
    let dir = ca_with("ok", &[sleep_id(), httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let server = store.server_config(&httpbin_id()).unwrap();
    let expected = [id("spiffe://cluster.local/ns/other/sa/x"), httpbin_id()];
    let client = store.client_config(&sleep_id(), &expected).unwrap();
    let (client, server) = exchange(server, client);
    let (client, server) = (client.unwrap(), server.unwrap());
    assert_eq!(client.peer, Some(httpbin_id()));
    assert_eq!(server.peer, Some(sleep_id()));
    for side in [&client, &server] {
        assert_eq!(side.alpn.as_deref(), Some(ALPN_H2));
        assert_eq!(side.version, Some(ProtocolVersion::TLSv1_3));
    }
}

#[test]
fn client_rejects_unexpected_server_identity() {
    let dir = ca_with("unexpected", &[sleep_id(), httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let server = store.server_config(&httpbin_id()).unwrap();
    let expected = [id("spiffe://cluster.local/ns/default/sa/reviews")];
    let client = store.client_config(&sleep_id(), &expected).unwrap();
    let (client, server) = exchange(server, client);
    expect_err(
        "client",
        client,
        "peer presented spiffe://cluster.local/ns/default/sa/httpbin, expected one of",
    );
    assert!(server.is_err(), "server completed: {server:?}");
}

#[test]
fn client_rejects_server_from_another_ca() {
    let ours = ca_with("ours", &[sleep_id()]);
    let theirs = ca_with("theirs", &[httpbin_id()]);
    let server_store = CertStore::load(theirs.path(), TD).unwrap();
    let client_store = CertStore::load(ours.path(), TD).unwrap();
    let server = server_store.server_config(&httpbin_id()).unwrap();
    let client = client_store
        .client_config(&sleep_id(), &[httpbin_id()])
        .unwrap();
    let (client, server) = exchange(server, client);
    // Both dev roots have the same subject name, so webpki finds a candidate issuer and
    // its signature check fails.
    expect_err("client", client, "BadSignature");
    assert!(server.is_err(), "server completed: {server:?}");
}

#[test]
fn server_rejects_client_from_another_ca() {
    let ours = ca_with("srv", &[httpbin_id()]);
    let theirs = ca_with("cli", &[sleep_id()]);
    // The client trusts both roots (a multi-certificate bundle), so only the server can object.
    let both = format!(
        "{}{}",
        fs::read_to_string(theirs.path().join(ROOT_CERT_FILE)).unwrap(),
        fs::read_to_string(ours.path().join(ROOT_CERT_FILE)).unwrap()
    );
    fs::write(theirs.path().join(ROOT_CERT_FILE), both).unwrap();
    let client_store = CertStore::load(theirs.path(), TD).unwrap();
    assert_eq!(client_store.roots().len(), 2);
    let server_store = CertStore::load(ours.path(), TD).unwrap();
    let server = server_store.server_config(&httpbin_id()).unwrap();
    let client = client_store
        .client_config(&sleep_id(), &[httpbin_id()])
        .unwrap();
    let (client, server) = exchange(server, client);
    expect_err("server", server, "BadSignature");
    assert!(client.is_err(), "client completed: {client:?}");
}

#[test]
fn server_rejects_client_from_foreign_trust_domain_under_same_root() {
    let ours = ca_with("td", &[httpbin_id()]);
    // Same CA key and root, but a leaf for another trust domain.
    let evil = TempDir::new("evil");
    for f in [ROOT_CERT_FILE, ROOT_KEY_FILE] {
        fs::copy(ours.path().join(f), evil.path().join(f)).unwrap();
    }
    let evil_id = id("spiffe://evil.local/ns/default/sa/sleep");
    issue(evil.path(), &evil_id).unwrap();
    let client_store = CertStore::load(evil.path(), "evil.local").unwrap();
    let server_store = CertStore::load(ours.path(), TD).unwrap();
    let server = server_store.server_config(&httpbin_id()).unwrap();
    let client = client_store
        .client_config(&evil_id, &[httpbin_id()])
        .unwrap();
    let (client, server) = exchange(server, client);
    expect_err(
        "server",
        server,
        "peer presented spiffe://evil.local/ns/default/sa/sleep, which is outside our trust domain",
    );
    assert!(client.is_err(), "client completed: {client:?}");
}

#[test]
fn server_rejects_client_without_certificate() {
    let dir = ca_with("nocert", &[httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let server = store.server_config(&httpbin_id()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(spiffe_verifier(&store, httpbin_id()))
        .with_no_client_auth();
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    let (client, server) = exchange(server, Arc::new(client));
    expect_err("server", server, "peer sent no certificates");
    assert!(client.is_err(), "client completed: {client:?}");
}

#[test]
fn tls12_only_client_is_refused() {
    let dir = ca_with("tls12", &[sleep_id(), httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let server = store.server_config(&httpbin_id()).unwrap();
    let key = store.certified_key(&sleep_id()).unwrap().clone();
    let verifier = spiffe_verifier(&store, httpbin_id());
    let mut client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    let (client, server) = exchange(server, Arc::new(client));
    expect_err("server", server, "Tls12NotOfferedOrEnabled");
    assert!(client.is_err(), "client completed: {client:?}");
}

#[test]
fn config_refuses_unknown_identity_and_empty_expectations() {
    let dir = ca_with("cfg", &[sleep_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let err = store.server_config(&httpbin_id()).unwrap_err().to_string();
    assert!(
        err.contains("run `zring ca issue --dir") && err.contains("sa/httpbin"),
        "{err}"
    );
    let err = store.client_config(&sleep_id(), &[]).unwrap_err();
    assert!(
        matches!(err, crate::tls::TlsError::NoExpectedIdentity { .. }),
        "{err}"
    );
}
