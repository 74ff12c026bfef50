//! The control-plane client's transport: TLS (verified with a configured root file) and
//! HTTP/2 to istiod or the CA, and gRPC status checks. Used by [`super::xds`] and
//! [`super::ca`] on the xDS thread only.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::Uri;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::ProxyError;

pub fn err(what: &str, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::Xds(format!("{what}: {e}"))
}

/// One control-plane server and how to verify it.
pub struct Server<'a> {
    pub uri: &'a Uri,
    pub roots: &'a Path,
    /// The variable naming `roots`, for error messages.
    pub roots_env: &'static str,
    pub alt_hostname: Option<&'a str>,
    pub timeout: Duration,
}

impl Server<'_> {
    /// TCP, TLS (ALPN h2) and the HTTP/2 handshake; the connection is driven by a task.
    pub async fn connect(&self) -> Result<SendRequest<Bytes>, ProxyError> {
        let host = self
            .uri
            .host()
            .ok_or_else(|| err(&self.uri.to_string(), "has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self.uri.port_u16().unwrap_or(443);
        let what = format!("connect to {host}:{port}");
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| err(&what, "timed out"))?
            .map_err(|e| err(&what, e))?;
        let _ = tcp.set_nodelay(true);
        let name = self.alt_hostname.unwrap_or(host);
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| err(&format!("{name:?} as a TLS server name"), e))?;
        let hint = format!(
            "TLS handshake with {host}:{port} (does {} hold its root?)",
            self.roots_env
        );
        let tls = TlsConnector::from(self.tls()?)
            .connect(name, tcp)
            .await
            .map_err(|e| err(&hint, e))?;
        let (h2, conn) = h2::client::handshake(tls)
            .await
            .map_err(|e| err(&format!("HTTP/2 handshake with {host}:{port}"), e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("control-plane connection ended: {e}");
            }
        });
        Ok(h2)
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
        let what = format!("read {} {}", self.roots_env, self.roots.display());
        let pem = std::fs::read(self.roots).map_err(|e| err(&what, e))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.map_err(|e| err(&what, e))?)
                .map_err(|e| err(&what, e))?;
        }
        if roots.is_empty() {
            return Err(err(&what, "no certificate in the file"));
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("TLS versions", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// `Err` when headers or trailers carry a non-zero grpc-status.
pub fn grpc_status(h: &http::HeaderMap) -> Result<(), ProxyError> {
    match h.get("grpc-status").and_then(|v| v.to_str().ok()) {
        None | Some("0") => Ok(()),
        Some(code) => {
            let msg = h
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            Err(err(
                "the server refused the call",
                format!("grpc-status {code}: {msg}"),
            ))
        }
    }
}

/// Reads the bearer token file (re-read per call: it is rotated).
fn bearer(token: &Path) -> Result<String, ProxyError> {
    let t = std::fs::read_to_string(token).map_err(|e| {
        err(
            &format!("read the token {} (AUTH_TOKEN)", token.display()),
            e,
        )
    })?;
    Ok(format!("Bearer {}", t.trim()))
}

/// A gRPC POST of `path` on `uri` with the bearer token and extra headers.
pub fn request(
    uri: &Uri,
    path: &str,
    token: &Path,
    headers: &[(String, String)],
) -> Result<http::Request<()>, ProxyError> {
    let mut req = http::Request::post(format!("{uri}{}", path.trim_start_matches('/')))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", bearer(token)?);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.body(()).map_err(|e| {
        err(
            &format!("build the request for {path} (check *_HEADER_*)"),
            e,
        )
    })
}

/// The next chunk of a response body, its flow-control capacity released.
pub async fn recv(body: &mut h2::RecvStream, what: &str) -> Result<Option<Bytes>, ProxyError> {
    match body.data().await {
        None => Ok(None),
        Some(Err(e)) => Err(err(what, e)),
        Some(Ok(data)) => {
            let _ = body.flow_control().release_capacity(data.len());
            Ok(Some(data))
        }
    }
}
