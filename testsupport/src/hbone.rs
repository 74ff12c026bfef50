//! A deliberately plain HBONE client (TLS 1.3 mTLS, ALPN h2, HTTP/2 CONNECT) on tokio,
//! independent of zring's own client, so tests see exactly what a server answered.
//!
//! The server certificate's chain is verified against the given root; its name is not
//! (HBONE leaves carry only a SPIFFE URI SAN): read it with [`server_identity`] and
//! compare it with the workload you dialled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::certs::Leaf;

/// A current-thread tokio runtime with I/O and timers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds unless the process is out of fds")
}

/// Checks the chain against the root like webpki, but accepts any name.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// TLS 1.3, ALPN h2, trusting `root_pem`, presenting `leaf` (None: no client cert).
pub fn client_config(root_pem: &str, leaf: Option<&Leaf>) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyName(webpki)));
    let mut config = match leaf {
        None => builder.with_no_client_auth(),
        Some(l) => {
            let chain = CertificateDer::pem_slice_iter(l.chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_slice(l.key_pem.as_bytes())?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// TCP connect and TLS handshake to `addr`, no SNI (the name is an IP address).
pub async fn handshake(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The URI SAN of the server's leaf.
pub fn server_identity(tls: &TlsStream<TcpStream>) -> Option<String> {
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
        _ => None,
    })
}

/// The TLS alert the peer sent, if that is why `err` (from tokio-rustls) happened.
pub fn alert_of(err: &std::io::Error) -> Option<rustls::AlertDescription> {
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(*a),
        _ => None,
    }
}

/// Handshakes with `config` and expects the server to refuse it with an alert, either
/// during the handshake or (TLS 1.3: the client finishes before the server has checked
/// the client's certificate) on the first read. Returns the alert, or what happened.
pub async fn refusal(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<rustls::AlertDescription, String> {
    use tokio::io::AsyncReadExt;
    let mut tls = match handshake(addr, config).await {
        Err(e) => return alert_of(&e).ok_or(format!("handshake failed without an alert: {e}")),
        Ok(tls) => tls,
    };
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
        Err(_) => Err("the server neither refused nor spoke within 10 s".into()),
        Ok(Ok(0)) => Err("the server closed without an alert".into()),
        Ok(Ok(n)) => Err(format!("the server accepted and sent {n} bytes")),
        Ok(Err(e)) => alert_of(&e).ok_or(format!("read failed without an alert: {e}")),
    }
}

/// An HTTP/2 client connection whose driver runs on the current runtime.
pub struct Conn {
    pub send: h2::client::SendRequest<Bytes>,
    pub driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

/// HTTP/2 over an established TLS stream, with h2's default windows.
pub async fn h2(tls: TlsStream<TcpStream>) -> Result<Conn, h2::Error> {
    h2_with(tls, h2::client::Builder::new()).await
}

/// HTTP/2 over an established TLS stream, with the settings of `builder`.
pub async fn h2_with(
    tls: TlsStream<TcpStream>,
    builder: h2::client::Builder,
) -> Result<Conn, h2::Error> {
    let (send, conn) = builder.handshake(tls).await?;
    let driver = tokio::spawn(conn);
    Ok(Conn { send, driver })
}

/// What the server answered a CONNECT.
#[derive(Debug)]
pub enum Answer {
    /// A response with this status; a 200 carries the tunnel.
    Status(u16, Option<Tunnel>),
    /// The stream (or connection) was reset with this reason.
    Reset(h2::Reason),
    /// Anything else (I/O, GOAWAY without a reason we know).
    Broken(String),
}

/// An open CONNECT tunnel.
#[derive(Debug)]
pub struct Tunnel {
    pub tx: h2::SendStream<Bytes>,
    pub rx: h2::RecvStream,
    pending: Vec<u8>,
}

/// Sends `CONNECT authority` and waits for the answer.
pub async fn connect(conn: &mut Conn, authority: &str) -> Answer {
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(authority)
        .version(http::Version::HTTP_2)
        .body(());
    let req = match req {
        Ok(r) => r,
        Err(e) => return Answer::Broken(format!("building the request: {e}")),
    };
    let sent = async {
        let mut send = conn.send.clone().ready().await?;
        let (resp, tx) = send.send_request(req, false)?;
        Ok::<_, h2::Error>((resp.await?, tx))
    };
    match sent.await {
        Ok((resp, tx)) => {
            let status = resp.status().as_u16();
            let tunnel = (status == 200).then(|| Tunnel {
                tx,
                rx: resp.into_body(),
                pending: Vec::new(),
            });
            Answer::Status(status, tunnel)
        }
        Err(e) => match e.reason() {
            Some(r) => Answer::Reset(r),
            None => Answer::Broken(e.to_string()),
        },
    }
}

impl Answer {
    /// The tunnel of a 200, or a description of what came instead.
    pub fn tunnel(self) -> anyhow::Result<Tunnel> {
        match self {
            Answer::Status(200, Some(t)) => Ok(t),
            other => bail!("CONNECT was not accepted: {other:?}"),
        }
    }
}

impl Tunnel {
    /// Sends `msg` and reads exactly as many bytes back (within 10 s).
    pub async fn echo(&mut self, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.tx.send_data(Bytes::copy_from_slice(msg), false)?;
        self.read_exact(msg.len()).await
    }

    /// Reads exactly `want` bytes (within 10 s), releasing window as it goes.
    pub async fn read_exact(&mut self, want: usize) -> anyhow::Result<Vec<u8>> {
        let read = async {
            while self.pending.len() < want {
                let chunk = self
                    .rx
                    .data()
                    .await
                    .context("stream ended before the echo")??;
                let _ = self.rx.flow_control().release_capacity(chunk.len());
                self.pending.extend_from_slice(&chunk);
            }
            Ok::<_, anyhow::Error>(self.pending.drain(..want).collect())
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .context("echo timed out")?
    }
}
