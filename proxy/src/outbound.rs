//! Outbound: a client pod's connection captured on 15001 (or asked for over SOCKS5 on
//! 15080) goes to its destination through an HBONE tunnel or as plain TCP, leaving with
//! the client pod's source IP when transparent.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{Either, FutureExt, OptionFuture};
use monoio::net::TcpStream;

use crate::access_log::Accounting;
use crate::config::{is_proxy_port, resolve_from, resolve_hostname, Config, RoundRobin, Route};
use crate::context::Common;
use crate::error::ProxyError;
use crate::fast_path;
use crate::hbone::client::{self, Timing};
use crate::hbone::pool::{Handle, Pool, PoolKey};
use crate::relay;
use crate::runtime::handoff::{BulkView, Handoff, Origin, Placement};
use crate::runtime::metrics::Labels;
use crate::socks5::{self, Reply, Target};
use crate::sys;
use crate::tls::resume::session_name;

/// A core's pool of HBONE client connections.
pub type HbonePool = Pool<Handle, ProxyError>;

/// What the outbound leg uses on one core; the runtime builds it, every connection
/// captured on the core's 15001 (node-level or a pod's) and 15080 shares it.
pub struct Context {
    pub common: Rc<Common>,
    pub pool: HbonePool,
    rr: RefCell<RoundRobin>,
    /// Places the inbound end of a same-node HBONE connection on this core or the next.
    handoff: Arc<Handoff>,
    /// This core's copy of the bulk destinations ([`Handoff::placement`]).
    bulk: RefCell<BulkView>,
    /// Same-node HBONE tunnels this core's outbound side has open.
    same_node_open: Cell<usize>,
    settings: Settings,
}

impl Context {
    pub fn new(common: Rc<Common>, config: &Config, handoff: Arc<Handoff>) -> Context {
        Context {
            common,
            pool: Pool::new(config.pool_max_streams as usize),
            rr: RefCell::default(),
            handoff,
            bulk: RefCell::default(),
            same_node_open: Cell::new(0),
            settings: Settings::of(config),
        }
    }
}

/// The settings the outbound leg reads.
struct Settings {
    /// The outbound listener's port: a connection accepted there came by REDIRECT.
    listen_port: Option<u16>,
    hbone_port: u16,
    fast_path: bool,
    cores: usize,
    trust_domain: String,
    timing: Timing,
}

impl Settings {
    fn of(config: &Config) -> Settings {
        Settings {
            listen_port: config.outbound_addr.map(|a| a.port()),
            hbone_port: config.hbone_port,
            fast_path: config.same_node_fast_path,
            cores: config.cores,
            trust_domain: config.trust_domain.clone(),
            timing: Timing {
                connect_timeout: config.connect_timeout,
                ping_interval: config.ping_interval,
                ping_timeout: config.ping_timeout,
                own_http2: config.hbone_own_http2,
            },
        }
    }
}

/// A connection captured by TPROXY (or REDIRECT) on the outbound listener.
pub fn serve_captured(
    cx: &Rc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
) -> impl Future<Output = Result<(), ProxyError>> + '_ {
    // Boxed: see `serve_socks5`.
    let setup = Box::pin(async move {
        let dst = original_destination(cx, &stream)?;
        connect(cx, stream, peer, Target::Addr(dst), false).await
    });
    set_up_then_relay(setup)
}

/// A SOCKS5 client on 15080.
pub fn serve_socks5(
    cx: &Rc<Context>,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> impl Future<Output = Result<(), ProxyError>> + '_ {
    // Boxed (and built here, not in the task's future: the arguments of an async fn stay
    // in its future for its whole life): the handshake's buffers, the accepted socket
    // and the routing, connect, pool checkout and CONNECT futures are freed before the
    // relay starts, so a long-lived connection's task holds only the relay's state.
    let setup = Box::pin(async move {
        let target = socks5::accept(&mut stream).await?;
        connect(cx, stream, peer, target, true).await
    });
    set_up_then_relay(setup)
}

/// Runs a connection's boxed setup (freed once it is done), then its relay. Combinators,
/// not an async fn: the task is then the larger of the two (an async fn kept the setup's
/// `Ready` beside the relay built from it, ~300 bytes more per held connection).
fn set_up_then_relay(
    setup: Pin<Box<impl Future<Output = Result<Option<Ready>, ProxyError>>>>,
) -> impl Future<Output = Result<(), ProxyError>> {
    setup.then(|set_up| match set_up {
        Ok(ready) => Either::Left(OptionFuture::from(ready.map(relay)).map(|_| Ok(()))),
        Err(e) => Either::Right(std::future::ready(Err(e))),
    })
}

/// TPROXY keeps the original destination as the socket's local address; REDIRECT
/// leaves our own listener address there and the destination in SO_ORIGINAL_DST.
fn original_destination(cx: &Context, stream: &TcpStream) -> Result<SocketAddr, ProxyError> {
    let local = stream.local_addr()?;
    let listen_port = cx.settings.listen_port;
    let dst = if Some(local.port()) == listen_port {
        sys::original_dst(stream, local.is_ipv6()).map_err(|_| ProxyError::Loop(local))?
    } else {
        local
    };
    if is_proxy_port(dst.port()) {
        return Err(ProxyError::Loop(dst));
    }
    Ok(dst)
}

/// A connection whose far side is connected: what its relay needs, nothing more.
struct Ready {
    client: TcpStream,
    leg: Leg,
    accounting: Accounting,
    ends: Ends,
}

/// Who the connection is for the closing debug line.
struct Ends {
    core: usize,
    peer: SocketAddr,
    target: Target,
}

impl Ends {
    fn close(self, accounting: Accounting, result: Result<relay::Transferred, ProxyError>) {
        accounting.close(&result);
        if let Err(e) = result {
            let Ends { core, peer, target } = self;
            tracing::debug!(core, %peer, ?target, error = %e, "outbound connection failed");
        }
    }
}

/// Routes `target` and connects its far side. `Err` when it cannot be routed, `None`
/// when the connect failed (counted and logged as a failed connection).
async fn connect(
    cx: &Rc<Context>,
    mut client: TcpStream,
    peer: SocketAddr,
    target: Target,
    socks: bool,
) -> Result<Option<Ready>, ProxyError> {
    let route = match route(cx, peer.ip(), &target) {
        Ok(route) => route,
        Err(e) => {
            refused_for_waypoint(cx, peer, &e);
            reply(&mut client, socks, Reply::HostUnreachable).await;
            return Err(e);
        }
    };
    let accounting = {
        let state = cx.common.state();
        let labels = Labels::outbound(&state.snapshot, peer.ip(), &route);
        let (dst, hbone) = match &route {
            Route::Hbone {
                hbone_addr,
                authority,
                ..
            } => (*hbone_addr, Some(*authority)),
            Route::Passthrough { addr } => (*addr, None),
        };
        Accounting::open(
            &state.snapshot,
            &cx.common.metrics,
            labels,
            (peer, dst),
            hbone,
        )
    };
    let direct = match cx.settings.fast_path {
        true => fast_path::eligible(
            &cx.common.state().snapshot,
            peer.ip(),
            &route,
            cx.settings.hbone_port,
        ),
        false => None,
    };
    let accounting = match direct {
        Some(_) => accounting.fast_path(),
        None => accounting,
    };
    // Leave with the client pod's IP when transparent; a SOCKS5 client is local, not a pod.
    let spoof = (cx.common.transparent && !socks).then_some(peer.ip());
    let ends = Ends {
        core: cx.common.core,
        peer,
        target,
    };
    match establish(cx, &mut client, peer, (route, direct), spoof, socks).await {
        Ok(leg) => Ok(Some(Ready {
            client,
            leg,
            accounting,
            ends,
        })),
        Err(e) => {
            ends.close(accounting, Err(e));
            Ok(None)
        }
    }
}

/// Relays until both sides are done; the outcome is counted and logged. The future is
/// built from `ready`'s parts (no async fn: its argument would stay in the future beside
/// the relay's own copy of each socket and stream, for the connection's whole life).
fn relay(ready: Ready) -> impl Future<Output = ()> {
    let Ready {
        client,
        leg,
        accounting,
        ends,
    } = ready;
    // The spliced legs are boxed: their relay is larger than the tunnel's, which would
    // otherwise pay for it in every held tunnel's task.
    let relaying = match leg {
        Leg::Plain(upstream) => {
            Either::Left(Either::Left(Box::pin(relay::splice_bidi(client, upstream))))
        }
        Leg::Direct { upstream, inbound } => {
            let relaying = relay::splice_bidi(client, upstream).map(move |result| {
                // The inbound side's own copy of the outcome (an io::Error is not Clone).
                let copy = match &result {
                    Ok(moved) => Ok(*moved),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string()).into()),
                };
                inbound.close(copy);
                result
            });
            Either::Left(Either::Right(Box::pin(relaying)))
        }
        // The lease holds the pooled connection's stream slot until the relay ends.
        Leg::Tunnel {
            stream,
            lease,
            same_node,
        } => {
            let relaying = match stream {
                Stream::H2 { tx, rx } => Either::Left(relay::h2_bidi(client, tx, rx)),
                Stream::Own(open) => Either::Right(client::relay_own(client, open)),
            };
            Either::Right(relaying.map(move |result| {
                if let (Some(tunnel), Ok(moved)) = (same_node, &result) {
                    tunnel.finished(moved.up + moved.down);
                }
                drop(lease);
                result
            }))
        }
    };
    relaying.map(move |result| ends.close(accounting, result.map_err(Into::into)))
}

fn route(cx: &Context, src: IpAddr, target: &Target) -> Result<Route, ProxyError> {
    let state = cx.common.state();
    let mut rr = cx.rr.borrow_mut();
    let hbone_port = cx.settings.hbone_port;
    let snap = &state.snapshot;
    let routed = match target {
        Target::Addr(a) if is_proxy_port(a.port()) => return Err(ProxyError::Loop(*a)),
        Target::Addr(a) => resolve_from(snap, &mut rr, Some(src), *a, hbone_port),
        Target::Domain(host, port) => {
            resolve_hostname(snap, &mut rr, Some(src), (host, *port), hbone_port)
        }
    };
    routed.map_err(|source| ProxyError::Route {
        target: format!("{target:?}"),
        source,
    })
}

/// A connection refused because of its destination's waypoint is logged and counted by
/// that waypoint: an operator sees which waypoint keeps traffic from flowing.
fn refused_for_waypoint(cx: &Context, peer: SocketAddr, e: &ProxyError) {
    let ProxyError::Route { target, source } = e else {
        return;
    };
    if let Some(waypoint) = source.waypoint() {
        cx.common.metrics.waypoint_refused(waypoint);
        tracing::warn!(core = cx.common.core, %peer, %target, waypoint, error = %source, "outbound connection refused at its waypoint");
    }
}

async fn reply(client: &mut TcpStream, socks: bool, reply: Reply) {
    if socks {
        socks5::send_reply(client, reply).await;
    }
}

/// The far side of an outbound connection, ready to relay.
enum Leg {
    Plain(TcpStream),
    /// The same-node fast path: the destination pod itself, its inbound side counted.
    Direct {
        upstream: TcpStream,
        inbound: fast_path::Inbound,
    },
    Tunnel {
        stream: Stream,
        lease: H2Lease,
        /// Set for a tunnel to this node's own 15008.
        same_node: Option<SameNode>,
    },
}

/// A CONNECT stream, on the h2 crate or on our own HTTP/2.
enum Stream {
    H2 {
        tx: h2::SendStream<bytes::Bytes>,
        rx: h2::RecvStream,
    },
    Own(client::OwnStream),
}

/// A tunnel to this node's own 15008, counted among its core's open ones while it lives;
/// its destination and opening time let its volume decide where the destination's next
/// streams run.
struct SameNode {
    cx: Rc<Context>,
    dst: SocketAddr,
    opened: Instant,
}

impl SameNode {
    fn new(cx: &Rc<Context>, dst: SocketAddr, opened: Instant) -> SameNode {
        cx.same_node_open.set(cx.same_node_open.get() + 1);
        SameNode {
            cx: cx.clone(),
            dst,
            opened,
        }
    }

    fn finished(self, bytes: u64) {
        let now = Instant::now();
        let lived = now - self.opened;
        self.cx.handoff.finished(self.dst, bytes, lived, now);
    }
}

impl Drop for SameNode {
    fn drop(&mut self) {
        let open = &self.cx.same_node_open;
        open.set(open.get() - 1);
    }
}

type H2Lease = crate::hbone::pool::Lease<Handle>;

/// Connects the far side of `route` and answers a SOCKS5 client with the outcome.
async fn establish(
    cx: &Rc<Context>,
    client: &mut TcpStream,
    peer: SocketAddr,
    (route, direct): (Route, Option<fast_path::Direct>),
    spoof: Option<IpAddr>,
    socks: bool,
) -> Result<Leg, ProxyError> {
    let plain = matches!(route, Route::Passthrough { .. });
    let leg = match (route, direct) {
        (Route::Passthrough { addr }, _) => cx
            .common
            .connect_upstream(addr, spoof)
            .await
            .map(Leg::Plain),
        (Route::Hbone { .. }, Some(direct)) => {
            // The inbound side leaves with the client's IP when transparent, SOCKS5 too.
            let source = cx.common.transparent.then_some(peer.ip());
            fast_path::connect(&cx.common, &direct, peer, source)
                .await
                .map(|(upstream, inbound)| Leg::Direct { upstream, inbound })
        }
        (
            Route::Hbone {
                hbone_addr,
                authority,
                dst_identity,
                ..
            },
            None,
        ) => {
            let tunnel = Tunnel {
                hbone_addr,
                authority,
                dst_identity,
                spoof,
            };
            tunnel.open(cx, peer).await
        }
    };
    let code = match &leg {
        Ok(_) => Reply::Succeeded,
        Err(_) if plain => Reply::ConnectionRefused,
        Err(ProxyError::UnknownSource(_)) => Reply::NotAllowed,
        Err(ProxyError::Status { .. }) => Reply::ConnectionRefused,
        Err(_) => Reply::HostUnreachable,
    };
    reply(client, socks, code).await;
    leg
}

/// A core with this many same-node tunnels open spreads its next ones whatever their
/// destination: with both ends of every tunnel on the core that accepted it, the kernel's
/// random spread of accepts leaves one core with more work than the other (churn at
/// concurrency 16 had a p99 1.1–1.65× ztunnel's with every tunnel near, 0.91–0.97× spread).
const NEAR_MAX_OPEN: usize = 4;

struct Tunnel {
    hbone_addr: SocketAddr,
    authority: SocketAddr,
    dst_identity: crate::identity::Identity,
    /// Source IP for the HBONE connection (part of the pool key).
    spoof: Option<IpAddr>,
}

impl Tunnel {
    async fn open(&self, cx: &Rc<Context>, peer: SocketAddr) -> Result<Leg, ProxyError> {
        let state = cx.common.state();
        let src_identity = match state.snapshot.workload_by_ip(peer.ip()) {
            Some(src) => state.snapshot.identity(src),
            // In-pod mode, as ztunnel: a captured pod the workload config does not know
            // yet speaks with the identity AddWorkload gave it.
            None => crate::inpod::pods::identity_for(peer.ip(), &cx.settings.trust_domain)
                .ok_or(ProxyError::UnknownSource(peer.ip()))?,
        };
        let same_node = state.snapshot.is_local(self.hbone_addr.ip()) && cx.settings.cores > 1;
        let opened = Instant::now();
        // `Some` exactly for a tunnel to this node's own 15008.
        let placement = same_node.then(|| {
            if cx.same_node_open.get() >= NEAR_MAX_OPEN {
                return Placement::Far;
            }
            let view = &mut cx.bulk.borrow_mut();
            cx.handoff.placement(view, self.authority, opened)
        });
        let key = PoolKey {
            src_identity,
            dst_identity: self.dst_identity.clone(),
            dst: self.hbone_addr,
            src_ip: self.spoof,
            placement,
        };
        let tls = cx.common.client_tls(&key.src_identity, &key.dst_identity)?;
        let dst_node = state.snapshot.workload_by_ip(self.hbone_addr.ip());
        let session = session_name(self.hbone_addr.ip(), dst_node.map(|w| w.node.as_str()));
        let timing = cx.settings.timing;
        let origin = || {
            let placement = placement?;
            let origin = Origin {
                core: cx.common.core,
                placement,
            };
            Some((cx.handoff.clone(), origin))
        };
        let lease = cx
            .pool
            .checkout(&key, || {
                client::open(key.clone(), tls.clone(), session.clone(), timing, origin())
            })
            .await
            .map_err(|e| ProxyError::Pooled(e.to_string()))?;
        let (addr, authority) = (self.hbone_addr, self.authority);
        let stream = match lease.handle() {
            Handle::H2(send) => client::connect_stream(send, addr, authority, peer)
                .await
                .map(|(tx, rx)| Stream::H2 { tx, rx }),
            Handle::Own(conn) => client::connect_own(conn, addr, authority, peer)
                .await
                .map(Stream::Own),
        };
        match stream {
            Ok(stream) => Ok(Leg::Tunnel {
                stream,
                lease,
                same_node: placement.map(|_| SameNode::new(cx, self.authority, opened)),
            }),
            Err(e) => {
                if matches!(e, ProxyError::H2 { .. } | ProxyError::HboneRefused { .. }) {
                    lease.mark_dead();
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
#[path = "outbound_tests.rs"]
mod tests;
