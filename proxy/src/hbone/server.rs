//! HBONE on our own HTTP/2 ([`super::http2`]) and record layer, server and client: one
//! task per connection reads and opens records and parses their frames in place, one task
//! per stream carries its TCP socket's bytes the other way (the server's upstream, or the
//! client's captured connection: [`super::client`] opens streams with [`open_stream`]).
//! Below, "upstream" is that TCP socket, "peer" the HTTP/2 peer.
//!
//! - Peer → upstream: a DATA payload is sent to the upstream socket from the opened
//!   record, by the connection task, without waking the stream's task; only what a full
//!   socket refuses is copied out (into the stream's `pending`), and the stream's task
//!   sends it once the socket has room. Window is given back as bytes reach the socket.
//! - Upstream → peer: the stream's task reads what the socket has into this core's
//!   scratch buffer, seals it as DATA frames straight into the TLS send buffer (one copy)
//!   and sends the records at once; the connection task runs a write op only for what a
//!   full socket left.
//!
//! The state both tasks touch is per core (`Rc<RefCell<_>>`), borrowed only between
//! awaits.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, Read as _};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use http::Request;
use monoio::net::TcpStream;

use super::http2::frame::{self, HEADER_LEN};
pub use super::http2::Limits;
use super::http2::{Endpoint, Event, Reason};
use crate::error::ProxyError;
use crate::relay::Transferred;
use crate::runtime::drain::DrainWait;
use crate::sys;
use crate::tls::session::{Read, SEND_BUFFER_LIMIT};
use crate::tls::TlsStream;

/// Upstream bytes read per syscall: a read that fills it means the stream is flowing
/// (the h2 relay's measured 256 KiB).
const READ_MAX: usize = 256 * 1024;
/// DATA frames per read at the smallest frame size a peer may ask (16 KiB).
const MAX_FRAMES: usize = READ_MAX / frame::MIN_MAX_FRAME as usize;

/// How long the last frames (GOAWAY, close_notify) may take to leave a closing connection.
const FINAL_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_MAX].into_boxed_slice());
}

/// One HBONE connection's state, shared by its tasks.
pub struct Conn {
    tls: TlsStream,
    h2: Endpoint,
    streams: HashMap<u32, Rc<Tunnel>>,
    /// The connection task's waker: a stream's task that left records queued wakes it.
    waker: Option<Waker>,
    /// A stream waits for room in the TLS send buffer: notified once it is flushed.
    tls_blocked: bool,
}

pub type Shared = Rc<RefCell<Conn>>;

/// What the connection task and a stream's task share of one stream.
#[derive(Default)]
pub struct Tunnel {
    /// The upstream socket, once connected.
    fd: Cell<Option<RawFd>>,
    /// Peer bytes the upstream has not taken yet (a full socket, or not yet connected).
    pending: RefCell<Vec<u8>>,
    /// The peer's END_STREAM arrived.
    fin: Cell<bool>,
    /// The upstream's write side is shut (after `fin` and `pending`).
    shut: Cell<bool>,
    /// The stream is gone (the peer reset it, or the connection ended).
    reset: Cell<Option<Reason>>,
    /// The stream's task waits for send window or room in the TLS send buffer.
    blocked: Cell<bool>,
    /// Bytes delivered to the upstream.
    up: Cell<u64>,
    /// The response's status (client), once it arrived.
    response: Cell<Option<u16>>,
    notified: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Tunnel {
    fn notify(&self) {
        self.notified.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.notified.replace(false) {
            return Poll::Ready(());
        }
        let mut waker = self.waker.borrow_mut();
        match &*waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Peer bytes for the upstream (`pieces`, in order): sent now, in one syscall, while
    /// nothing waits before them and the socket has room; the rest is kept for the
    /// stream's task. Returns the bytes sent.
    fn deliver(&self, pieces: &[&[u8]]) -> io::Result<usize> {
        let mut pending = self.pending.borrow_mut();
        let sent = match self.fd.get() {
            Some(fd) if pending.is_empty() => writev_now(fd, pieces)?,
            _ => 0,
        };
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        if sent < total {
            let mut skip = sent;
            for p in pieces {
                let from = skip.min(p.len());
                pending.extend_from_slice(&p[from..]);
                skip -= from;
            }
            drop(pending);
            self.notify();
        }
        self.up.set(self.up.get() + sent as u64);
        Ok(sent)
    }

    /// Sends what `pending` holds while the socket has room; returns the bytes sent.
    fn flush_pending(&self, fd: RawFd) -> io::Result<usize> {
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            return Ok(0);
        }
        let left = write_now(fd, &pending)?.len();
        let sent = pending.len() - left;
        pending.drain(..sent);
        if pending.is_empty() {
            // A waiting stream holds no buffer.
            *pending = Vec::new();
        }
        self.up.set(self.up.get() + sent as u64);
        Ok(sent)
    }

    /// After the peer's END_STREAM and every byte before it: FIN to the upstream.
    fn shut_when_done(&self) -> io::Result<()> {
        let Some(fd) = self.fd.get() else {
            return Ok(());
        };
        if self.fin.get() && !self.shut.get() && self.pending.borrow().is_empty() {
            self.shut.set(true);
            sys::shutdown_write(&fd)?;
        }
        Ok(())
    }
}

/// Writes what of `pieces` fits in `fd` now, gathered; returns the bytes written.
fn writev_now(fd: RawFd, pieces: &[&[u8]]) -> io::Result<usize> {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let mut sent = 0;
    while sent < total {
        let mut skip = sent;
        let mut iov: smallvec::SmallVec<[IoSlice<'_>; 8]> = smallvec::SmallVec::new();
        for p in pieces {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            iov.push(IoSlice::new(&p[skip..]));
            skip = 0;
        }
        match std::io::Write::write_vectored(&mut sys::DontWait(fd), &iov) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Writes what fits in `fd` now; returns the rest.
fn write_now(fd: RawFd, mut bytes: &[u8]) -> io::Result<&[u8]> {
    while !bytes.is_empty() {
        match std::io::Write::write(&mut sys::DontWait(fd), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(bytes)
}

/// A new stream's request, for the caller to serve (admission, upstream, relay).
pub struct Opened {
    pub stream: u32,
    pub req: Request<()>,
    pub tunnel: Rc<Tunnel>,
}

impl Conn {
    pub fn new(tls: TlsStream, limits: Limits) -> Shared {
        Conn::with(tls, Endpoint::server(limits))
    }

    /// A client connection; its preface and SETTINGS leave with the first flush.
    pub fn client(tls: TlsStream, limits: Limits) -> Shared {
        Conn::with(tls, Endpoint::client(limits))
    }

    fn with(tls: TlsStream, h2: Endpoint) -> Shared {
        Rc::new(RefCell::new(Conn {
            tls,
            h2,
            streams: HashMap::new(),
            waker: None,
            tls_blocked: false,
        }))
    }

    /// Seals the control frames the HTTP/2 state queued and sends what the socket takes.
    fn flush_control(&mut self) -> io::Result<()> {
        if !self.h2.out.is_empty() {
            let out = std::mem::take(&mut self.h2.out);
            self.tls.seal_all(&[IoSlice::new(&out)])?;
            self.h2.out = out;
            self.h2.out.clear();
        }
        self.send_or_wake()
    }

    /// Sends queued records now; what a full socket leaves is the connection task's.
    fn send_or_wake(&mut self) -> io::Result<()> {
        if !self.tls.send_now()? {
            if let Some(w) = &self.waker {
                w.wake_by_ref();
            }
        }
        Ok(())
    }

    fn wake_blocked(&self) {
        wake_blocked(&self.streams);
    }

    /// The connection ended: every stream left is reset.
    fn reset_all(&mut self) {
        for (_, tunnel) in self.streams.drain() {
            tunnel.reset.set(Some(Reason::CANCEL));
            tunnel.notify();
        }
    }

    /// The stream's task ended.
    fn finished(&mut self, stream: u32) {
        self.streams.remove(&stream);
        if self.h2.is_open(stream) {
            self.h2.reset(stream, Reason::CANCEL);
        }
    }
}

/// Runs the connection: reads, parses and answers frames, hands new streams to `serve`,
/// flushes what the streams' tasks left, and ends after a drain (`drain`: the GOAWAY is
/// sent and open streams finish) or when the peer closes.
pub async fn run(
    conn: &Shared,
    peer: std::net::SocketAddr,
    mut drain: Pin<&mut DrainWait<'_>>,
    mut serve: impl FnMut(Opened),
) -> Result<(), ProxyError> {
    let mut draining = false;
    let mut opened = Vec::new();
    let result = poll_fn(|cx| {
        if !draining && drain.as_mut().poll(cx).is_ready() {
            draining = true;
            conn.borrow_mut().h2.start_drain();
        }
        let polled = poll_conn(conn, cx, &mut opened);
        for o in opened.drain(..) {
            serve(o);
        }
        polled
    })
    .await;
    end(conn, peer, result).await
}

/// Runs a client connection until the peer closes it, it fails, or the peer's GOAWAY
/// leaves no stream open; `closing` is set once the peer's GOAWAY arrived (the pool opens
/// no new stream on it).
pub async fn run_client(
    conn: &Shared,
    peer: std::net::SocketAddr,
    closing: &Cell<bool>,
) -> Result<(), ProxyError> {
    let mut opened = Vec::new();
    let result = poll_fn(|cx| {
        let polled = poll_conn(conn, cx, &mut opened);
        if conn.borrow().h2.peer_goaway() {
            closing.set(true);
        }
        polled
    })
    .await;
    end(conn, peer, result).await
}

/// The connection's end: streams reset, GOAWAY and close_notify flushed (for a while).
async fn end(
    conn: &Shared,
    peer: std::net::SocketAddr,
    result: io::Result<Ended>,
) -> Result<(), ProxyError> {
    let h2err = |source| ProxyError::Http2 { addr: peer, source };
    let ended = {
        let mut c = conn.borrow_mut();
        c.reset_all();
        let _ = c.flush_control();
        match result {
            Ok(Ended::Clean) => {
                let _ = c.tls.close_notify();
                Ok(())
            }
            // The GOAWAY that says why goes out before the socket closes.
            Ok(Ended::Protocol(e)) => Err(h2err(e)),
            Err(e) => Err(ProxyError::from(e)),
        }
    };
    if !matches!(ended, Err(ProxyError::Io(_))) {
        // A peer that stopped reading does not hold the connection open.
        let flush = poll_fn(|cx| conn.borrow_mut().tls.poll_flush_tls(cx));
        let _ = monoio::time::timeout(FINAL_FLUSH, flush).await;
        let _ = conn.borrow().tls.shutdown_write();
    }
    ended
}

enum Ended {
    /// Drained, or the peer closed.
    Clean,
    /// A connection error (its GOAWAY is queued).
    Protocol(super::http2::H2Error),
}

/// Sealed bytes waiting to be sent above which the connection stops reading. Streams stop
/// sealing at [`SEND_BUFFER_LIMIT`] (one read of [`READ_MAX`] may go past it), so only
/// answers to the peer's control frames reach this.
const CONTROL_BACKLOG_LIMIT: usize = 4 * SEND_BUFFER_LIMIT;

fn poll_conn(
    conn: &Shared,
    cx: &mut Context<'_>,
    opened: &mut Vec<Opened>,
) -> Poll<io::Result<Ended>> {
    let mut c = conn.borrow_mut();
    if !c.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        c.waker = Some(cx.waker().clone());
    }
    loop {
        let mut progress = false;
        // A peer that sends PINGs or SETTINGS and never reads the answers would grow the
        // send buffer without bound; nothing more is read while this much waits.
        let room = c.tls.pending_out() < CONTROL_BACKLOG_LIMIT;
        if room && c.tls.poll_fill(cx)?.is_ready() {
            progress = true;
            // New streams are spawned by the caller when this returns.
            if let Some(ended) = read_frames(&mut c, opened)? {
                return Poll::Ready(Ok(ended));
            }
        }
        c.flush_control()?;
        if c.tls.poll_flush_tls(cx)?.is_ready() && c.tls_blocked {
            c.tls_blocked = false;
            c.wake_blocked();
        }
        if c.h2.is_done() {
            return Poll::Ready(Ok(Ended::Clean));
        }
        if !progress {
            return Poll::Pending;
        }
    }
}

/// Opens the records received and handles their frames in place; `Some` when the
/// connection is over (the peer closed, or broke the protocol). Consecutive DATA of one
/// stream (across the records of one read) leaves for its upstream in one syscall.
fn read_frames(c: &mut Conn, opened: &mut Vec<Opened>) -> io::Result<Option<Ended>> {
    let Conn {
        tls, h2, streams, ..
    } = c;
    let mut failed = None;
    let read = tls.read_in_place(&mut |buf, ranges| {
        let mut batch = Batch::default();
        for range in ranges {
            let mut plain = &buf[range.clone()];
            while failed.is_none() {
                match h2.next(plain) {
                    Ok((0, None)) => break,
                    Ok((n, event)) => {
                        match event {
                            Some(Event::Data { stream, data }) => {
                                if batch.stream != stream {
                                    batch.flush(h2, streams);
                                    batch.stream = stream;
                                }
                                batch.pieces.push(data);
                            }
                            Some(event) => {
                                batch.flush(h2, streams);
                                handle(h2, streams, event, opened);
                            }
                            None => {}
                        }
                        plain = &plain[n..];
                    }
                    Err(e) => failed = Some(e),
                }
            }
        }
        batch.flush(h2, streams);
        Ok(())
    })?;
    if let Some(e) = failed {
        return Ok(Some(Ended::Protocol(e)));
    }
    Ok((read == Read::Eof).then_some(Ended::Clean))
}

/// DATA of one stream gathered across records, for one send.
#[derive(Default)]
struct Batch<'a> {
    stream: u32,
    pieces: smallvec::SmallVec<[&'a [u8]; 8]>,
}

impl Batch<'_> {
    fn flush(&mut self, h2: &mut Endpoint, streams: &mut HashMap<u32, Rc<Tunnel>>) {
        if self.pieces.is_empty() {
            return;
        }
        let stream = self.stream;
        let total: usize = self.pieces.iter().map(|p| p.len()).sum();
        match streams.get(&stream).map(|t| t.deliver(&self.pieces)) {
            None => h2.release(stream, total),
            Some(Ok(sent)) => h2.release(stream, sent),
            Some(Err(_)) => {
                // The upstream is gone: the stream is reset both ways.
                h2.release(stream, total);
                h2.reset(stream, Reason::CANCEL);
                forget(streams, stream, Reason::CANCEL);
            }
        }
        self.pieces.clear();
    }
}

/// Handles one parsed event; a new stream is pushed to `opened`.
fn handle(
    h2: &mut Endpoint,
    streams: &mut HashMap<u32, Rc<Tunnel>>,
    event: Event<'_>,
    opened: &mut Vec<Opened>,
) {
    match event {
        Event::Request {
            stream,
            req,
            end_stream,
        } => {
            let tunnel = Rc::new(Tunnel::default());
            tunnel.fin.set(end_stream);
            streams.insert(stream, tunnel.clone());
            opened.push(Opened {
                stream,
                req,
                tunnel,
            });
        }
        Event::Data { stream, data } => {
            let mut batch = Batch {
                stream,
                ..Batch::default()
            };
            batch.pieces.push(data);
            batch.flush(h2, streams);
        }
        Event::End { stream } => {
            if let Some(tunnel) = streams.get(&stream) {
                tunnel.fin.set(true);
                if tunnel.shut_when_done().is_err() || tunnel.shut.get() {
                    tunnel.notify();
                }
            }
        }
        Event::Reset { stream, reason } => forget(streams, stream, reason),
        Event::Response {
            stream,
            status,
            end_stream,
        } => {
            if let Some(tunnel) = streams.get(&stream) {
                tunnel.response.set(Some(status));
                tunnel.fin.set(end_stream);
                tunnel.notify();
            }
        }
        Event::GoAway { last_stream } => {
            let unserved: Vec<u32> = streams
                .keys()
                .filter(|s| **s > last_stream)
                .copied()
                .collect();
            for stream in unserved {
                forget(streams, stream, Reason::REFUSED_STREAM);
            }
        }
        Event::WindowOpened => wake_blocked(streams),
    }
}

/// Ends a client connection the pool let go: close_notify if the socket takes it now,
/// then FIN. Only dropping it would leave the socket open while a read op is in flight
/// (io_uring keeps the op's socket until it completes, i.e. until the peer sends).
pub fn close(conn: &Shared) {
    let mut c = conn.borrow_mut();
    if c.tls.close_notify().is_ok() {
        let _ = c.tls.send_now();
    }
    let _ = c.tls.shutdown_write();
}

/// Opens a client stream with the HPACK header `block` of its request and sends its
/// HEADERS; `None` when the connection takes no new stream (the peer's GOAWAY or
/// MAX_CONCURRENT_STREAMS).
pub fn open_stream(conn: &Shared, block: &[u8]) -> io::Result<Option<(u32, Rc<Tunnel>)>> {
    let mut c = conn.borrow_mut();
    let Some(stream) = c.h2.open_stream(block) else {
        return Ok(None);
    };
    let tunnel = Rc::new(Tunnel::default());
    c.streams.insert(stream, tunnel.clone());
    c.flush_control()?;
    Ok(Some((stream, tunnel)))
}

/// Waits for the response to a client stream: its status, or the reason it was reset
/// (a refusal's status counts even when the RST_STREAM that stops our sending followed).
pub async fn response(tunnel: &Tunnel) -> Result<u16, Reason> {
    poll_fn(|cx| loop {
        if let Some(status) = tunnel.response.get() {
            return Poll::Ready(Ok(status));
        }
        if let Some(reason) = tunnel.reset.get() {
            return Poll::Ready(Err(reason));
        }
        if tunnel.poll_notified(cx).is_pending() {
            return Poll::Pending;
        }
    })
    .await
}

/// Whether a client connection can take a new stream now.
pub fn can_open(conn: &Shared) -> bool {
    conn.borrow().h2.can_open()
}

/// Queues a keepalive PING and sends it; returns the PING ACKs seen before it.
pub fn ping(conn: &Shared) -> io::Result<u64> {
    let mut c = conn.borrow_mut();
    let seen = c.h2.pongs();
    c.h2.send_ping();
    c.flush_control()?;
    Ok(seen)
}

/// PING ACKs received so far.
pub fn pongs(conn: &Shared) -> u64 {
    conn.borrow().h2.pongs()
}

fn forget(streams: &mut HashMap<u32, Rc<Tunnel>>, stream: u32, reason: Reason) {
    if let Some(tunnel) = streams.remove(&stream) {
        tunnel.reset.set(Some(reason));
        tunnel.notify();
    }
}

fn wake_blocked(streams: &HashMap<u32, Rc<Tunnel>>) {
    for tunnel in streams.values() {
        if tunnel.blocked.replace(false) {
            tunnel.notify();
        }
    }
}

/// Queues `stream`'s response HEADERS (`end`: a refusal, the stream is over) and sends it.
pub fn respond(conn: &Shared, stream: u32, status: u16, end: bool) -> io::Result<()> {
    let mut c = conn.borrow_mut();
    c.h2.respond(stream, status, end);
    if end {
        c.streams.remove(&stream);
    }
    c.flush_control()
}

/// The stream's task is done with it (reset if it is still open).
pub fn finished(conn: &Shared, stream: u32) {
    let mut c = conn.borrow_mut();
    c.finished(stream);
    let _ = c.flush_control();
}

/// Relays an admitted stream and its connected upstream until both directions end (FIN
/// ↔ END_STREAM) or either resets (RST ↔ RST_STREAM).
pub async fn relay(
    conn: &Shared,
    stream: u32,
    tunnel: &Tunnel,
    tcp: TcpStream,
) -> io::Result<Transferred> {
    tunnel.fd.set(Some(tcp.as_raw_fd()));
    let relaying = Relaying {
        conn,
        stream,
        tunnel,
    };
    let result = relay_loop(conn, stream, tunnel, &tcp).await;
    if result.is_err() {
        // Propagate the reset: the upstream closes with RST.
        let _ = sys::set_linger_zero(&tcp);
    }
    drop(relaying);
    result
}

/// A relay under way: however it ends, dropped too (its task aborted by a drain), the
/// connection task stops writing to its socket (whose descriptor may be reused once it is
/// closed) and the stream is reset if it is still open.
struct Relaying<'a> {
    conn: &'a Shared,
    stream: u32,
    tunnel: &'a Tunnel,
}

impl Drop for Relaying<'_> {
    fn drop(&mut self) {
        self.tunnel.fd.set(None);
        if let Ok(mut c) = self.conn.try_borrow_mut() {
            c.finished(self.stream);
            let _ = c.flush_control();
        }
    }
}

/// What one read from the upstream did.
enum Pumped {
    /// `n` bytes sealed as DATA; `full`: the read filled its buffer (read again at once).
    Sent { n: usize, full: bool },
    /// Nothing to read now.
    Empty,
    /// End of file: END_STREAM sealed.
    Eof,
    /// No send window, or the TLS send buffer is full: wait to be notified.
    Blocked,
}

enum Wake {
    Readable,
    Writable,
    Notified,
}

async fn relay_loop(
    conn: &Shared,
    stream: u32,
    tunnel: &Tunnel,
    tcp: &TcpStream,
) -> io::Result<Transferred> {
    let fd = tcp.as_raw_fd();
    let mut down = 0u64;
    let mut eof = false;
    let mut flowing = false;
    loop {
        if let Some(reason) = tunnel.reset.get() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("the HBONE stream was reset ({reason})"),
            ));
        }
        let sent = tunnel.flush_pending(fd)?;
        if sent > 0 {
            let mut c = conn.borrow_mut();
            c.h2.release(stream, sent);
            c.flush_control()?;
        }
        tunnel.shut_when_done()?;
        if eof && tunnel.shut.get() {
            let up = tunnel.up.get();
            return Ok(Transferred { up, down });
        }
        let want_write = !tunnel.pending.borrow().is_empty();
        let want_read = !eof && !tunnel.blocked.get();
        // An idle stream waits here: what this future holds across the wait, every held
        // stream holds, so the wait for room in a full upstream (rare) is boxed.
        let woke = match (want_read && flowing, want_write) {
            (true, _) => Wake::Readable,
            (false, false) => wait_readable(tcp, tunnel, want_read).await?,
            (false, true) => Box::pin(wait(tcp, tunnel, want_read, true)).await?,
        };
        if !matches!(woke, Wake::Readable) {
            continue;
        }
        flowing = false;
        match pump(conn, stream, tunnel, fd)? {
            Pumped::Sent { n, full } => {
                down += n as u64;
                flowing = full;
            }
            Pumped::Eof => eof = true,
            Pumped::Empty | Pumped::Blocked => {}
        }
    }
}

/// Waits until the upstream is readable (when `read`), or the connection task notifies
/// the stream. [`wait`] with `write` false would do, but an idle stream waits here, and
/// `wait`'s future keeps room for a second readiness future (held memory per connection).
async fn wait_readable(tcp: &TcpStream, tunnel: &Tunnel, read: bool) -> io::Result<Wake> {
    let mut readable = pin!(futures_util::future::OptionFuture::from(
        read.then(|| tcp.readable(false))
    ));
    poll_fn(|cx| {
        if tunnel.poll_notified(cx).is_ready() {
            return Poll::Ready(Ok(Wake::Notified));
        }
        if read {
            if let Poll::Ready(Some(r)) = readable.as_mut().poll(cx) {
                return Poll::Ready(r.map(|_| Wake::Readable));
            }
        }
        Poll::Pending
    })
    .await
}

/// Waits until the upstream is readable (`read`) or writable (`write`), or the
/// connection task notifies the stream.
async fn wait(tcp: &TcpStream, tunnel: &Tunnel, read: bool, write: bool) -> io::Result<Wake> {
    let mut readable = pin!(futures_util::future::OptionFuture::from(
        read.then(|| tcp.readable(false))
    ));
    let mut writable = pin!(futures_util::future::OptionFuture::from(
        write.then(|| tcp.writable(false))
    ));
    poll_fn(|cx| {
        if tunnel.poll_notified(cx).is_ready() {
            return Poll::Ready(Ok(Wake::Notified));
        }
        if read {
            if let Poll::Ready(Some(r)) = readable.as_mut().poll(cx) {
                return Poll::Ready(r.map(|_| Wake::Readable));
            }
        }
        if write {
            if let Poll::Ready(Some(r)) = writable.as_mut().poll(cx) {
                return Poll::Ready(r.map(|_| Wake::Writable));
            }
        }
        Poll::Pending
    })
    .await
}

/// Reads what the upstream has (within the send window) and seals it as DATA frames
/// straight into the TLS send buffer, then sends.
fn pump(conn: &Shared, stream: u32, tunnel: &Tunnel, fd: RawFd) -> io::Result<Pumped> {
    let mut c = conn.borrow_mut();
    let window = c.h2.send_window(stream);
    if window == 0 || c.tls.pending_out() >= SEND_BUFFER_LIMIT {
        tunnel.blocked.set(true);
        if window > 0 {
            // Blocked on the socket: the connection task flushes, then notifies.
            c.tls_blocked = true;
            if let Some(w) = &c.waker {
                w.wake_by_ref();
            }
        }
        return Ok(Pumped::Blocked);
    }
    let max_frame = c.h2.max_frame();
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        let cap = window.min(READ_MAX);
        let n = match sys::DontWait(fd).read(&mut buf[..cap]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Empty),
            Err(e) => return Err(e),
        };
        if n == 0 {
            let head = frame::data_head(stream, 0, true);
            c.tls.seal_all(&[IoSlice::new(&head)])?;
            c.h2.sent_data(stream, 0, true);
            c.send_or_wake()?;
            return Ok(Pumped::Eof);
        }
        seal_data(&mut c, stream, &buf[..n], max_frame)?;
        c.h2.sent_data(stream, n, false);
        c.send_or_wake()?;
        Ok(Pumped::Sent { n, full: n == cap })
    })
}

/// Seals `data` as DATA frames of at most `max_frame` bytes, in one pass over the
/// record layer.
fn seal_data(c: &mut Conn, stream: u32, data: &[u8], max_frame: usize) -> io::Result<()> {
    let mut heads = [[0u8; HEADER_LEN]; MAX_FRAMES];
    let chunks = data.chunks(max_frame);
    for (head, chunk) in heads.iter_mut().zip(chunks.clone()) {
        *head = frame::data_head(stream, chunk.len(), false);
    }
    let mut slices = [IoSlice::new(&[]); 2 * MAX_FRAMES];
    let mut n = 0;
    for (head, chunk) in heads.iter().zip(chunks) {
        slices[n] = IoSlice::new(head);
        slices[n + 1] = IoSlice::new(chunk);
        n += 2;
    }
    c.tls.seal_all(&slices[..n])?;
    Ok(())
}
