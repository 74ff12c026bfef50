//! HBONE client: opens mTLS + HTTP/2 connections for the pool and runs CONNECT streams.
//!
//! TLS runs on monoio's owned-buffer ops ([`TlsStream`]); h2 drives it as an
//! `AsyncRead`/`AsyncWrite`.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{abortable, AbortHandle};
use h2::{RecvStream, SendStream};
use rustls_pki_types::ServerName;

use crate::error::ProxyError;
use crate::hbone::pool::{H2Conn, PoolKey};
use crate::hbone::proto;
use crate::runtime::handoff::{Handoff, Origin};
use crate::sockets;
use crate::tls::TlsStream;

/// HTTP/2 settings shared by client and server (ztunnel's values, HBONE.md).
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
pub const MAX_FRAME: u32 = 1024 * 1024;

/// Timing knobs for a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub connect_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// Opens one pooled connection for `key` with `tls` (src cert, dst identity check).
/// `session`: the name `tls` files its TLS sessions with this destination under
/// ([`crate::tls::resume::session_name`]: its node when known).
/// `same_node`: the destination is this node's own 15008 — the handoff registry, the core
/// opening it and where its inbound end should run, so the accepting core can move it.
pub async fn open(
    key: PoolKey,
    tls: Arc<rustls::ClientConfig>,
    session: ServerName<'static>,
    timing: Timing,
    same_node: Option<(Arc<Handoff>, Origin)>,
) -> Result<H2Conn, ProxyError> {
    let addr = key.dst;
    let connect_error = |source| ProxyError::Connect { addr, source };
    // A same-node socket is registered before its SYN leaves: the accepting core looks
    // its address up as soon as it has accepted, which can be before this core runs again
    // (on loopback the handshake completes inside connect()).
    let socket = sockets::bound(addr, key.src_ip, same_node.is_some()).map_err(connect_error)?;
    let registration = match same_node {
        Some((handoff, origin)) => {
            let local = socket.local_addr()?.as_socket();
            local.map(|local| handoff.register(local, origin))
        }
        None => None,
    };
    let socket = sockets::begin_connect(socket, addr).map_err(connect_error)?;
    let tcp = monoio::time::timeout(timing.connect_timeout, sockets::established(socket))
        .await
        .map_err(|_| ProxyError::ConnectTimeout { addr })?
        .map_err(connect_error)?;
    // No SNI (ztunnel sends none); the verifier checks the SPIFFE URI SAN instead.
    let handshake = |source| ProxyError::Handshake { addr, source };
    let session = rustls::client::UnbufferedClientConnection::new(tls, session)
        .map_err(|e| handshake(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let tls = TlsStream::handshake(tcp, session)
        .await
        .map_err(handshake)?;
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .enable_push(false)
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(ProxyError::h2(addr))?;
    let dead = Rc::new(Cell::new(false));
    let ping = conn.ping_pong();
    let (driver, abort) = abortable(conn);
    let dead_on_exit = dead.clone();
    monoio::spawn(async move {
        if let Ok(Err(e)) = driver.await {
            tracing::debug!(%addr, error = %e, "HBONE connection ended");
        }
        dead_on_exit.set(true);
        drop(registration);
    });
    if let Some(ping) = ping {
        monoio::spawn(keepalive(ping, dead.clone(), abort.clone(), timing, addr));
    }
    Ok(H2Conn::new(send, dead, abort))
}

/// PINGs every interval; a missing PONG marks the connection dead and stops it.
async fn keepalive(
    mut ping: h2::PingPong,
    dead: Rc<Cell<bool>>,
    abort: AbortHandle,
    timing: Timing,
    addr: SocketAddr,
) {
    while !dead.get() {
        monoio::time::sleep(timing.ping_interval).await;
        if dead.get() {
            return;
        }
        let pong = monoio::time::timeout(timing.ping_timeout, ping.ping(h2::Ping::opaque())).await;
        if !matches!(pong, Ok(Ok(_))) {
            tracing::warn!(%addr, "HBONE connection missed its PING deadline; closing it");
            dead.set(true);
            abort.abort();
            return;
        }
    }
}

/// Sends CONNECT on a pooled connection and waits for 200.
pub async fn connect_stream(
    send: &h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    authority: SocketAddr,
    client: SocketAddr,
) -> Result<(SendStream<Bytes>, RecvStream), ProxyError> {
    let ready = send.clone().ready().await.map_err(ProxyError::h2(addr))?;
    let mut ready = ready;
    let (response, tx) = ready
        .send_request(proto::connect_request(authority, client), false)
        .map_err(ProxyError::h2(addr))?;
    let response = response.await.map_err(ProxyError::h2(addr))?;
    if response.status() != http::StatusCode::OK {
        return Err(ProxyError::Status {
            addr,
            status: response.status(),
        });
    }
    Ok((tx, response.into_body()))
}
