//! TLS + HTTP/2 serving and gRPC responses for the control plane.

use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::{ads, ca, Event, Settings, Shared};
use crate::error::Error;

/// gRPC status codes used here.
pub const UNIMPLEMENTED: u32 = 12;
pub const UNAUTHENTICATED: u32 = 16;
pub const PERMISSION_DENIED: u32 = 7;
pub const INVALID_ARGUMENT: u32 = 3;

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Setup(format!("control plane TLS: {what}: {e}"))
}

/// The server's TLS config: a certificate from the dev CA for the listen IP and names, ALPN h2.
pub fn server_tls(s: &Settings, ip: IpAddr) -> Result<Arc<rustls::ServerConfig>, Error> {
    let dns: Vec<&str> = s.dns_names.iter().map(String::as_str).collect();
    let (chain, key) = zring::tls::issue_server(&s.ca_dir, &dns, &[ip])
        .map_err(|e| tls_error("issue the server certificate", e))?;
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("read the server chain", e))?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| tls_error("read the server key", e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(zring::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("server certificate", e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

pub fn spawn(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    stopped: oneshot::Receiver<()>,
) -> Result<JoinHandle<()>, Error> {
    listener.set_nonblocking(true).map_err(|source| Error::Io {
        what: "make the control plane listener non-blocking".into(),
        source,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "start the control plane's runtime".into(),
            source,
        })?;
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || rt.block_on(serve(listener, tls, shared, stopped)))
        .map_err(|source| Error::Io {
            what: "spawn the control plane thread".into(),
            source,
        })
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!("control plane listener: {e}"),
    };
    let acceptor = TlsAcceptor::from(tls);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    tokio::spawn(connection(acceptor.clone(), tcp, shared.clone()));
                }
                Err(e) => tracing::warn!("control plane accept: {e}"),
            },
        }
    }
}

async fn connection(acceptor: TlsAcceptor, tcp: tokio::net::TcpStream, shared: Arc<Shared>) {
    // As istiod (gRPC-go) does: without it, the short last segment of each flow-control
    // window waits for the client's delayed ACK (~40 ms per window; 20 s for 100k
    // workloads to a client with HTTP/2's default 64 KiB windows).
    let _ = tcp.set_nodelay(true);
    let tls = match acceptor.accept(tcp).await {
        Ok(t) => t,
        Err(e) => {
            return shared.record(Event::Refused {
                reason: format!("TLS handshake: {e}"),
            })
        }
    };
    let mut conn = match h2::server::handshake(tls).await {
        Ok(c) => c,
        Err(e) => return tracing::warn!("control plane HTTP/2 handshake: {e}"),
    };
    while let Some(req) = conn.accept().await {
        match req {
            Ok((req, respond)) => {
                tokio::spawn(route(req, respond, shared.clone()));
            }
            Err(e) => return tracing::debug!("control plane connection ended: {e}"),
        }
    }
}

async fn route(
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    shared: Arc<Shared>,
) {
    let want = format!("Bearer {}", shared.settings.token);
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(want.as_str()) {
        shared.record(Event::Refused {
            reason: format!("{}: missing or wrong bearer token", req.uri().path()),
        });
        return status_only(&mut respond, UNAUTHENTICATED, "bad bearer token");
    }
    match req.uri().path() {
        zring_xds::DELTA_ADS_PATH => ads::stream(req, respond, shared).await,
        zring_xds::CREATE_CERTIFICATE_PATH => ca::create(req, respond, shared).await,
        other => {
            let msg = format!("{other} is not served here");
            status_only(&mut respond, UNIMPLEMENTED, &msg)
        }
    }
}

/// Response headers of a gRPC reply with a body to follow.
pub fn start_reply(respond: &mut SendResponse<Bytes>) -> Result<h2::SendStream<Bytes>, h2::Error> {
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/grpc")
        .body(())
        .expect("static response head");
    respond.send_response(resp, false)
}

/// A trailers-only gRPC reply carrying `code` and `message`.
pub fn status_only(respond: &mut SendResponse<Bytes>, code: u32, message: &str) {
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .header("grpc-message", sanitize(message))
        .body(())
        .expect("status headers are ASCII");
    let _ = respond.send_response(resp, true);
}

/// Trailers ending a reply with `code` (0: OK).
pub fn trailers(code: u32, message: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from(code));
    if !message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&sanitize(message)) {
            h.insert("grpc-message", v);
        }
    }
    h
}

fn sanitize(m: &str) -> String {
    m.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}
