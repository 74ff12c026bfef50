//! Inbound: HBONE on 15008 (mTLS + HTTP/2 CONNECT) and captured plaintext on 15006, both
//! delivered to a local workload with the original client's source IP.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::future::{FutureExt, OptionFuture};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Request, Response, StatusCode};
use monoio::net::TcpStream;

use crate::access_log::Accounting;
use crate::config::{waypoint, ConnInfo, Decision, Workload};
use crate::context::Common;
use crate::error::ProxyError;
use crate::hbone::client::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::hbone::proto::{self, Rejection};
use crate::hbone::server;
use crate::identity::Identity;
use crate::relay::{self, Transferred};
use crate::runtime::drain::{Drain, DrainWait};
use crate::runtime::metrics::{Labels, Metrics};
use crate::tls::TlsStream;

/// What the inbound leg uses on one core; the runtime builds it, every connection on
/// the core's 15008 and 15006 (node-level or a pod's) shares it.
pub struct Context {
    pub common: Rc<Common>,
    /// The plaintext listener's own port: a connection addressed to it is a loop.
    plaintext_port: Option<u16>,
    /// HBONE is served by our own HTTP/2 ([`crate::hbone::server`]), not the h2 crate.
    own_http2: bool,
}

impl Context {
    pub fn new(common: Rc<Common>, plaintext_port: Option<u16>) -> Context {
        Context {
            common,
            plaintext_port,
            own_http2: false,
        }
    }

    /// `--hbone-own-http2`.
    pub fn with_own_http2(mut self, own: bool) -> Context {
        self.own_http2 = own;
        self
    }
}

/// Concurrent streams we accept per HBONE connection (ztunnel's server value).
const SERVER_MAX_STREAMS: u32 = 200;

/// One inbound HBONE connection: TLS as the addressed workload, then CONNECT streams.
pub async fn serve_hbone(
    cx: &Rc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
    drain: &Drain,
) -> Result<(), ProxyError> {
    cx.common.metrics.hbone_accepted();
    let local = stream.local_addr()?;
    let identity = local_identity(cx, local.ip())?;
    let config = cx.common.server_tls(&identity)?;
    let handshake = |source| ProxyError::Handshake { addr: peer, source };
    let session = rustls::server::UnbufferedServerConnection::new(config)
        .map_err(|e| handshake(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    // A peer that never finishes its handshake must not hold the socket forever.
    let tls = monoio::time::timeout(
        cx.common.connect_timeout,
        TlsStream::handshake(stream, session),
    )
    .await
    .map_err(|_| handshake(std::io::ErrorKind::TimedOut.into()))?
    .map_err(handshake)?;
    let peer_identity = tls.connection().and_then(crate::tls::peer_identity);
    if cx.own_http2 {
        let info = Rc::new(HboneConn {
            local,
            peer,
            peer_identity,
        });
        return serve_own(cx, tls, info, drain).await;
    }
    let mut conn = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(SERVER_MAX_STREAMS)
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(ProxyError::h2(peer))?;
    let conn_info = Rc::new(HboneConn {
        local,
        peer,
        peer_identity,
    });
    let mut goaway_sent = false;
    // One drain waiter for the connection's life, polled beside every accept.
    let mut drain = std::pin::pin!(drain.wait());
    loop {
        let next = match next_stream(&mut conn, drain.as_mut(), goaway_sent).await {
            Next::Stream(next) => next,
            Next::Drain => {
                // Finish the streams we have; refuse new ones.
                conn.graceful_shutdown();
                goaway_sent = true;
                continue;
            }
            Next::Closed => return Ok(()),
        };
        let (req, respond) = next.map_err(ProxyError::h2(peer))?;
        monoio::spawn(serve_stream(cx.clone(), conn_info.clone(), req, respond));
    }
}

type Accepted = Result<(Request<RecvStream>, SendResponse<Bytes>), h2::Error>;

// Lives for one match on the stack; boxing would allocate per stream.
#[allow(clippy::large_enum_variant)]
enum Next {
    Stream(Accepted),
    Drain,
    Closed,
}

/// The next CONNECT stream, or the core's drain signal (once, before GOAWAY is sent).
async fn next_stream(
    conn: &mut h2::server::Connection<TlsStream, Bytes>,
    drain: Pin<&mut DrainWait<'_>>,
    goaway_sent: bool,
) -> Next {
    let accepted = if goaway_sent {
        conn.accept().await
    } else {
        let accept = std::pin::pin!(conn.accept());
        match futures_util::future::select(accept, drain).await {
            futures_util::future::Either::Left((accepted, _)) => accepted,
            futures_util::future::Either::Right(_) => return Next::Drain,
        }
    };
    accepted.map_or(Next::Closed, Next::Stream)
}

/// The HTTP/2 limits we advertise (ztunnel's).
const LIMITS: server::Limits = server::Limits {
    stream_window: STREAM_WINDOW,
    connection_window: CONNECTION_WINDOW,
    max_frame: MAX_FRAME,
    max_streams: SERVER_MAX_STREAMS,
};

/// One inbound HBONE connection on our own HTTP/2: each stream's task is spawned as its
/// request arrives.
async fn serve_own(
    cx: &Rc<Context>,
    tls: TlsStream,
    info: Rc<HboneConn>,
    drain: &Drain,
) -> Result<(), ProxyError> {
    tracing::debug!(peer = %info.peer, "HBONE connection served by zring's own HTTP/2");
    let conn = server::Conn::new(tls, LIMITS);
    let drain = std::pin::pin!(drain.wait());
    server::run(&conn, info.peer, drain, |opened| {
        let task = own_stream(cx.clone(), info.clone(), conn.clone(), opened);
        drop(monoio::spawn(task));
    })
    .await
}

/// The task of one CONNECT stream on our own HTTP/2. Its setup (admission, the upstream
/// connect, the response, and the request's headers) runs boxed and is freed before the
/// relay starts, so an open stream's task holds only the relay's state.
fn own_stream(
    cx: Rc<Context>,
    conn: Rc<HboneConn>,
    shared: server::Shared,
    opened: server::Opened,
) -> impl std::future::Future<Output = ()> {
    let server::Opened {
        stream,
        req,
        tunnel,
    } = opened;
    let setup = Box::pin(own_setup(cx, conn, shared.clone(), stream, req));
    async move {
        if let Some(open) = setup.await {
            open.relay(shared, stream, tunnel).await;
        }
    }
}

/// A stream on our own HTTP/2 whose upstream is connected and whose 200 was sent.
struct OwnOpen {
    upstream: TcpStream,
    accounting: Accounting,
    peer: SocketAddr,
}

impl OwnOpen {
    /// The relay's future, built from the stream's parts.
    fn relay(
        self,
        shared: server::Shared,
        stream: u32,
        tunnel: Rc<server::Tunnel>,
    ) -> impl std::future::Future<Output = ()> {
        let OwnOpen {
            upstream,
            accounting,
            peer,
        } = self;
        async move {
            let result = server::relay(&shared, stream, &tunnel, upstream).await;
            close(accounting, peer, result.map_err(ProxyError::from));
        }
    }
}

/// Counts the stream as opened, admits it and connects its upstream; `None` when that
/// failed (counted and logged).
async fn own_setup(
    cx: Rc<Context>,
    conn: Rc<HboneConn>,
    shared: server::Shared,
    stream: u32,
    req: Request<()>,
) -> Option<OwnOpen> {
    let accounting = open_accounting(&cx, &conn, &req);
    match own_upstream(&cx, &conn, &shared, stream, &req).await {
        Ok(upstream) => Some(OwnOpen {
            upstream,
            accounting,
            peer: conn.peer,
        }),
        Err(e) => {
            server::finished(&shared, stream);
            close(accounting, conn.peer, Err(e));
            None
        }
    }
}

/// Admits the CONNECT, connects its target and answers 200 (or the refusal).
async fn own_upstream(
    cx: &Context,
    conn: &HboneConn,
    shared: &server::Shared,
    stream: u32,
    req: &Request<()>,
) -> Result<TcpStream, ProxyError> {
    let refuse = |status: StatusCode| {
        let _ = server::respond(shared, stream, status.as_u16(), true);
    };
    let upstream = connect_admitted(cx, conn, req, refuse).await?;
    server::respond(shared, stream, 200, false)?;
    Ok(upstream)
}

/// The identity this node presents for connections addressed to `ip`.
fn local_identity(cx: &Context, ip: IpAddr) -> Result<Identity, ProxyError> {
    let state = cx.common.state();
    let workload = state
        .snapshot
        .workload_by_ip(ip)
        .filter(|_| state.snapshot.is_local(ip))
        .ok_or(ProxyError::NotLocal(ip))?;
    Ok(state.snapshot.identity(workload))
}

struct HboneConn {
    local: SocketAddr,
    peer: SocketAddr,
    peer_identity: Option<Identity>,
}

/// The task of one CONNECT stream. Its setup (admission, the upstream connect, the
/// response, and the request's headers) runs boxed and is freed before the relay
/// starts, so an open stream's task holds only the relay's state.
fn serve_stream(
    cx: Rc<Context>,
    conn: Rc<HboneConn>,
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) -> impl std::future::Future<Output = ()> {
    let setup = Box::pin(open_stream(cx, conn, req, respond));
    async move {
        // The relay's future is awaited where it is built: a binding awaited later would
        // keep a second copy of it in this future.
        OptionFuture::from(setup.await.map(OpenStream::relay)).await;
    }
}

/// A stream whose upstream is connected and whose 200 was sent.
struct OpenStream {
    upstream: TcpStream,
    tx: h2::SendStream<Bytes>,
    rx: RecvStream,
    accounting: Accounting,
    peer: SocketAddr,
}

impl OpenStream {
    /// The relay's future, built from the stream's parts (an async fn would keep `self`
    /// beside the relay's own copies for the stream's whole life).
    fn relay(self) -> impl std::future::Future<Output = ()> {
        let OpenStream {
            upstream,
            tx,
            rx,
            accounting,
            peer,
        } = self;
        relay::h2_bidi(upstream, tx, rx)
            .map(move |result| close(accounting, peer, result.map_err(Into::into)))
    }
}

fn close(accounting: Accounting, peer: SocketAddr, result: Result<Transferred, ProxyError>) {
    accounting.close(&result);
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "inbound HBONE stream failed");
    }
}

/// Counts the stream as opened, admits it and connects its upstream; `None` when that
/// failed (counted and logged).
async fn open_stream(
    cx: Rc<Context>,
    conn: Rc<HboneConn>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Option<OpenStream> {
    let accounting = open_accounting(&cx, &conn, &req);
    match open_upstream(&cx, &conn, &req, &mut respond).await {
        Ok((upstream, tx)) => Some(OpenStream {
            upstream,
            tx,
            rx: req.into_body(),
            accounting,
            peer: conn.peer,
        }),
        Err(e) => {
            close(accounting, conn.peer, Err(e));
            None
        }
    }
}

/// Counts the stream as opened (metrics, access log).
fn open_accounting<B>(cx: &Context, conn: &HboneConn, req: &Request<B>) -> Accounting {
    let state = cx.common.state();
    let client = client_ip(&state.snapshot, conn.peer, req);
    let labels = Labels::inbound(
        &state.snapshot,
        client,
        conn.peer_identity.as_ref(),
        conn.local.ip(),
    );
    let authority = req.uri().authority().and_then(|a| a.as_str().parse().ok());
    let src = SocketAddr::new(client, conn.peer.port());
    let ends = (src, conn.local);
    Accounting::open(&state.snapshot, &cx.common.metrics, labels, ends, authority)
}

/// Admits the CONNECT, connects its target and answers 200 (or the refusal).
async fn open_upstream(
    cx: &Context,
    conn: &HboneConn,
    req: &Request<RecvStream>,
    respond: &mut SendResponse<Bytes>,
) -> Result<(TcpStream, h2::SendStream<Bytes>), ProxyError> {
    let upstream = connect_admitted(cx, conn, req, |status| send_status(respond, status)).await?;
    let tx = respond
        .send_response(Response::new(()), false)
        .map_err(ProxyError::h2(conn.peer))?;
    Ok((upstream, tx))
}

/// Admits the CONNECT and connects its target; on a refusal or a failed connect,
/// `refuse` answers the stream with the status (either HTTP/2 layer's way).
async fn connect_admitted<B>(
    cx: &Context,
    conn: &HboneConn,
    req: &Request<B>,
    refuse: impl FnOnce(StatusCode),
) -> Result<TcpStream, ProxyError> {
    let (target, source) = match admit(cx, conn, req) {
        Ok(v) => v,
        Err(rejection) => {
            refuse(rejection.status());
            return Err(ProxyError::Rejected {
                local: conn.local,
                rejection,
            });
        }
    };
    match cx.common.connect_upstream(target, source).await {
        Ok(s) => Ok(s),
        Err(e) => {
            refuse(StatusCode::SERVICE_UNAVAILABLE);
            Err(e)
        }
    }
}

fn send_status(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let mut response = Response::new(());
    *response.status_mut() = status;
    let _ = respond.send_response(response, true);
}

/// Validates the CONNECT and applies policy; returns the target and the source IP to
/// spoof (none when not transparent).
fn admit<B>(
    cx: &Context,
    conn: &HboneConn,
    req: &Request<B>,
) -> Result<(SocketAddr, Option<IpAddr>), Rejection> {
    let state = cx.common.state();
    let snapshot = &state.snapshot;
    let target = match proto::validate(req, Some(conn.local), |ip| snapshot.is_local(ip)) {
        Err(Rejection::NotLocal { authority, local })
            if waypoint::serves(snapshot, authority, local) && snapshot.is_local(local) =>
        {
            // A waypoint pod here, sent its destination's address: the pod gets it, on
            // the port asked for (ztunnel's waypoint sandwich).
            let asked = proto::validate(req, None, |_| true)?;
            SocketAddr::new(local, asked.port())
        }
        checked => checked?,
    };
    let client_ip = client_ip(snapshot, conn.peer, req);
    let workload = snapshot
        .workload_by_ip(target.ip())
        .ok_or(Rejection::UnknownWorkload(target.ip()))?;
    let info = ConnInfo {
        src_ip: client_ip,
        src_identity: conn.peer_identity.clone(),
        dst: target,
        dst_workload: workload,
    };
    if let Decision::Deny { policy } = authorize(&cx.common.metrics, snapshot, &info) {
        return Err(Rejection::Denied(policy));
    }
    Ok((target, cx.common.transparent.then_some(client_ip)))
}

/// The original client: the HBONE peer itself when it is a workload (transparent
/// capture), else the `forwarded` header, else the peer.
fn client_ip<B>(snapshot: &crate::config::Snapshot, peer: SocketAddr, req: &Request<B>) -> IpAddr {
    if snapshot.workload_by_ip(peer.ip()).is_some() {
        return peer.ip();
    }
    proto::forwarded_for(req).map_or(peer.ip(), |a| a.ip())
}

/// Captured plaintext addressed to a local workload (15006).
pub async fn serve_plaintext(
    cx: &Rc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), ProxyError> {
    let dst = stream.local_addr()?;
    let listen_port = cx.plaintext_port;
    if Some(dst.port()) == listen_port {
        return Err(ProxyError::Loop(dst));
    }
    authorize_plaintext(cx, peer, dst)?;
    let accounting = {
        let state = cx.common.state();
        let labels = Labels::inbound(&state.snapshot, peer.ip(), None, dst.ip());
        Accounting::open(
            &state.snapshot,
            &cx.common.metrics,
            labels,
            (peer, dst),
            None,
        )
    };
    let source = cx.common.transparent.then_some(peer.ip());
    let result = match cx.common.connect_upstream(dst, source).await {
        Ok(upstream) => relay::splice_bidi(stream, upstream)
            .await
            .map_err(ProxyError::from),
        Err(e) => Err(e),
    };
    accounting.close(&result);
    if let Err(e) = result {
        tracing::debug!(%peer, %dst, error = %e, "inbound plaintext connection failed");
    }
    Ok(())
}

fn authorize_plaintext(cx: &Context, peer: SocketAddr, dst: SocketAddr) -> Result<(), ProxyError> {
    let state = cx.common.state();
    let snapshot = &state.snapshot;
    let workload = snapshot
        .workload_by_ip(dst.ip())
        .filter(|_| snapshot.is_local(dst.ip()))
        .ok_or(ProxyError::NotLocal(dst.ip()))?;
    let info = ConnInfo {
        src_ip: peer.ip(),
        src_identity: None,
        dst,
        dst_workload: workload,
    };
    match authorize(&cx.common.metrics, snapshot, &info) {
        Decision::Allow => Ok(()),
        Decision::Deny { policy } => Err(ProxyError::Denied { dst, policy }),
    }
}

/// The destination's policies applied to `info`: the one evaluation every path into a
/// local workload uses (HBONE, captured plaintext, and the same-node fast path).
pub fn authorize(
    metrics: &Metrics,
    snapshot: &crate::config::Snapshot,
    info: &ConnInfo,
) -> Decision {
    count_unknown_policies(metrics, snapshot, info.dst_workload);
    snapshot.authorize(info)
}

/// A policy the destination lists but this generation lacks is skipped, not refused
/// (ztunnel's rule: it may not have arrived yet, or was just removed): said at debug and
/// counted in `zring_policies_skipped_total`.
fn count_unknown_policies(metrics: &Metrics, snapshot: &crate::config::Snapshot, w: &Workload) {
    for key in snapshot.unknown_policies(w) {
        tracing::debug!(policy = key, workload = %w, "skipping unknown policy");
        metrics.policy_skipped();
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
