//! A test waypoint: an HBONE terminator (TLS 1.3 mTLS, ALPN h2, HTTP/2 CONNECT) that
//! records each CONNECT's authority and the client certificate's identity, then either
//! echoes the stream (a destination) or forwards it over HBONE as a waypoint would: a
//! new tunnel to the hop its route picks for the authority, presenting its own leaf.
//!
//! It judges nothing: whatever a node proxy sends it is recorded, so a test can compare
//! where two proxies sent the same connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;

use crate::certs::Leaf;
use crate::hbone;

/// One CONNECT as the terminator saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// The terminator's name (which hop received it).
    pub at: String,
    /// The CONNECT's `:authority`.
    pub authority: String,
    /// The client certificate's URI SAN.
    pub peer: Option<String>,
}

/// Every CONNECT received, in order, shared by the terminators of a test.
pub type Records = Arc<Mutex<Vec<Record>>>;

/// Where a forwarding terminator sends an authority: the next hop's HBONE address and
/// the authority to CONNECT there (None: answer 503).
pub type Route = Arc<dyn Fn(&str) -> Option<(SocketAddr, String)> + Send + Sync>;

/// What a terminator does with an accepted stream.
#[derive(Clone)]
pub enum Next {
    /// Send every byte back (a destination workload).
    Echo,
    /// Forward over HBONE with `client` (its own leaf) to where `route` says.
    Forward {
        client: Arc<rustls::ClientConfig>,
        route: Route,
    },
}

/// TLS 1.3, ALPN h2, presenting `leaf`, requiring a client certificate chained to `root_pem`.
pub fn server_config(root_pem: &str, leaf: &Leaf) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let chain =
        CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `listener` until the runtime stops: each connection's streams are recorded
/// under `at` and handled as `next` says.
pub async fn serve(
    listener: TcpListener,
    at: String,
    tls: Arc<ServerConfig>,
    next: Next,
    records: Records,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    while let Ok((tcp, _)) = listener.accept().await {
        // As a proxy: each small write leaves at once (no Nagle wait on a delayed ACK).
        let _ = tcp.set_nodelay(true);
        let (acceptor, at, next, records) =
            (acceptor.clone(), at.clone(), next.clone(), records.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| uri_san(c));
            let Ok(mut conn) = h2::server::handshake(tls).await else {
                return;
            };
            while let Some(Ok((req, respond))) = conn.accept().await {
                let authority = req.uri().to_string();
                records.lock().unwrap().push(Record {
                    at: at.clone(),
                    authority: authority.clone(),
                    peer: peer.clone(),
                });
                tokio::spawn(stream(req.into_body(), respond, authority, next.clone()));
            }
        });
    }
}

/// The first URI SAN of a DER certificate.
pub fn uri_san(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
        _ => None,
    })
}

type Respond = h2::server::SendResponse<Bytes>;

async fn stream(rx: h2::RecvStream, mut respond: Respond, authority: String, next: Next) {
    match next {
        Next::Echo => {
            if let Ok(tx) = respond.send_response(status(200), false) {
                pump(rx, tx).await;
            }
        }
        Next::Forward { client, route } => {
            let hop = match route(&authority) {
                Some(hop) => forward(hop, client).await,
                None => None,
            };
            let Some((conn, tunnel)) = hop else {
                let _ = respond.send_response(status(503), true);
                return;
            };
            let Ok(tx) = respond.send_response(status(200), false) else {
                return;
            };
            let up = tokio::spawn(pump(rx, tunnel.tx));
            pump(tunnel.rx, tx).await;
            let _ = up.await;
            drop(conn);
        }
    }
}

/// A tunnel to `(addr, authority)`: the connection (kept while the tunnel lives) and it.
async fn forward(
    (addr, authority): (SocketAddr, String),
    client: Arc<rustls::ClientConfig>,
) -> Option<(hbone::Conn, hbone::Tunnel)> {
    let tls = hbone::handshake(addr, client).await.ok()?;
    let _ = tls.get_ref().0.set_nodelay(true);
    let mut conn = hbone::h2(tls).await.ok()?;
    let tunnel = hbone::connect(&mut conn, &authority).await.tunnel().ok()?;
    Some((conn, tunnel))
}

fn status(code: u16) -> http::Response<()> {
    let mut r = http::Response::new(());
    *r.status_mut() = http::StatusCode::from_u16(code).expect("a valid status");
    r
}

/// Copies `rx` into `tx` until `rx` ends, then ends `tx`.
async fn pump(mut rx: h2::RecvStream, mut tx: h2::SendStream<Bytes>) {
    while let Some(Ok(chunk)) = rx.data().await {
        let _ = rx.flow_control().release_capacity(chunk.len());
        if tx.send_data(chunk, false).is_err() {
            return;
        }
    }
    let _ = tx.send_data(Bytes::new(), true);
}
