//! HBONE client: opens mTLS + HTTP/2 connections for the pool and runs CONNECT streams.
//!
//! TLS runs on monoio's owned-buffer ops ([`TlsStream`]). HTTP/2 is the h2 crate's (it
//! drives the TLS stream as an `AsyncRead`/`AsyncWrite`), or with `--hbone-own-http2` our
//! own ([`crate::hbone::server`] in its client role): one task per connection opens the
//! records and sends DATA payloads to the client's socket from them, and each stream's
//! task seals what its socket has straight into the record buffer.

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
use crate::hbone::http2::frame;
use crate::hbone::pool::{H2Conn, Handle, PoolKey};
use crate::hbone::{proto, server};
use crate::relay::Transferred;
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
    /// HTTP/2 of our own instead of the h2 crate's (`--hbone-own-http2`).
    pub own_http2: bool,
}

/// The windows and frame size we advertise (ztunnel's); the client opens no more than the
/// pool's streams per connection, and advertises no stream limit.
const LIMITS: server::Limits = server::Limits {
    stream_window: STREAM_WINDOW,
    connection_window: CONNECTION_WINDOW,
    max_frame: MAX_FRAME,
    max_streams: 0,
};

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
    if timing.own_http2 {
        return Ok(open_own(tls, addr, timing, registration));
    }
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
    Ok(H2Conn::new(Handle::H2(send), dead, abort))
}

/// Starts our own HTTP/2 client on a handshaken connection: its task, and its keepalive.
fn open_own(
    tls: TlsStream,
    addr: SocketAddr,
    timing: Timing,
    registration: Option<impl Sized + 'static>,
) -> H2Conn {
    let conn = server::Conn::client(tls, LIMITS);
    let dead = Rc::new(Cell::new(false));
    let (driver, abort) = {
        let (conn, dead) = (conn.clone(), dead.clone());
        abortable(async move { server::run_client(&conn, addr, &dead).await })
    };
    let (dead_on_exit, closing) = (dead.clone(), conn.clone());
    monoio::spawn(async move {
        match driver.await {
            Ok(Err(e)) => tracing::debug!(%addr, error = %e, "HBONE connection ended"),
            Ok(Ok(())) => {}
            // The pool dropped it (idle, or the PING deadline passed).
            Err(_) => server::close(&closing),
        }
        dead_on_exit.set(true);
        drop(registration);
    });
    let keepalive = keepalive_own(conn.clone(), dead.clone(), abort.clone(), timing, addr);
    monoio::spawn(keepalive);
    H2Conn::new(Handle::Own(conn), dead, abort)
}

/// [`keepalive`] on our own HTTP/2: a PING every interval; no ACK within the timeout
/// closes the connection. Holds the connection weakly: a pooled connection that is dropped ends it.
async fn keepalive_own(
    conn: server::Shared,
    dead: Rc<Cell<bool>>,
    abort: AbortHandle,
    timing: Timing,
    addr: SocketAddr,
) {
    let conn = Rc::downgrade(&conn);
    while !dead.get() {
        monoio::time::sleep(timing.ping_interval).await;
        let Some(c) = conn.upgrade().filter(|_| !dead.get()) else {
            return;
        };
        let Ok(seen) = server::ping(&c) else {
            return;
        };
        drop(c);
        monoio::time::sleep(timing.ping_timeout).await;
        let acked = conn.upgrade().is_none_or(|c| server::pongs(&c) > seen);
        if !acked && !dead.get() {
            tracing::warn!(%addr, "HBONE connection missed its PING deadline; closing it");
            dead.set(true);
            abort.abort();
            return;
        }
    }
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

/// A CONNECT stream open on our own HTTP/2.
pub struct OwnStream {
    conn: server::Shared,
    stream: u32,
    tunnel: Rc<server::Tunnel>,
}

/// Sends CONNECT on a pooled connection of our own HTTP/2 and waits for 200.
pub async fn connect_own(
    conn: &server::Shared,
    addr: SocketAddr,
    authority: SocketAddr,
    client: SocketAddr,
) -> Result<OwnStream, ProxyError> {
    let forwarded = format!("for=\"{client}\"");
    let block = frame::connect_block(&authority.to_string(), &[(proto::FORWARDED, &forwarded)]);
    let Some((stream, tunnel)) = server::open_stream(conn, &block)? else {
        return Err(ProxyError::HboneRefused {
            addr,
            what: "the connection takes no new stream (GOAWAY, or its stream limit)".into(),
        });
    };
    let opened = OwnStream {
        conn: conn.clone(),
        stream,
        tunnel,
    };
    match server::response(&opened.tunnel).await {
        Ok(200) => Ok(opened),
        Ok(status) => {
            server::finished(conn, stream);
            Err(ProxyError::Status {
                addr,
                status: http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY),
            })
        }
        Err(reason) => {
            server::finished(conn, stream);
            Err(ProxyError::HboneRefused {
                addr,
                what: format!("the CONNECT stream was reset ({reason})"),
            })
        }
    }
}

/// Relays the client's socket and an open stream both ways (FIN ↔ END_STREAM, RST ↔
/// RST_STREAM): `up` is what the client sent.
pub async fn relay_own(tcp: monoio::net::TcpStream, open: OwnStream) -> io::Result<Transferred> {
    let OwnStream {
        conn,
        stream,
        tunnel,
    } = open;
    let moved = server::relay(&conn, stream, &tunnel, tcp).await?;
    Ok(Transferred {
        up: moved.down,
        down: moved.up,
    })
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
