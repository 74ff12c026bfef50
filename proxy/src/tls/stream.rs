//! TLS over monoio's owned-buffer I/O, exposed to h2 as tokio's `AsyncRead`/`AsyncWrite`.
//!
//! rustls is driven directly by completion-style operations (io_uring read/write ops, or
//! their epoll emulation under the fallback driver): while h2 waits for ciphertext a read
//! op with a 64 KiB buffer is in flight; records from every h2 write between two flushes
//! are coalesced and leave in one write op. No readiness adapter (`poll-io`) and no
//! tokio-rustls: each received byte costs one kernel copy into our buffer and no extra
//! readiness round trip.
//!
//! One task (the h2 connection driver) polls both directions, so the read and write ops
//! wake the same task. A write op started on the read path (alerts, key updates) is driven
//! by the next poll of either direction.

use std::future::{poll_fn, Future};
use std::io::{self, BufRead, IoSlice, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use rustls::Connection;
use tokio::io::ReadBuf;

use crate::sys;

/// Ciphertext read per op: up to four full records, one syscall's worth of a bulk stream.
const READ_CAPACITY: usize = 64 * 1024;
/// Unsent TLS records rustls may hold before `poll_write` waits for a flush (backpressure).
const SEND_BUFFER_LIMIT: usize = 256 * 1024;

type ReadOp = Pin<Box<dyn Future<Output = (OwnedReadHalf<TcpStream>, io::Result<usize>, Vec<u8>)>>>;
type WriteOp = Pin<Box<dyn Future<Output = (OwnedWriteHalf<TcpStream>, io::Result<()>, Vec<u8>)>>>;

enum ReadSide {
    Idle(OwnedReadHalf<TcpStream>),
    Busy(ReadOp),
    /// The socket reached end of file (or failed); nothing more will be read.
    Done,
}

enum WriteSide {
    Idle(OwnedWriteHalf<TcpStream>, Vec<u8>),
    Busy(WriteOp),
    Failed,
}

/// A TLS connection over a monoio TCP socket. Build with [`TlsStream::handshake`].
pub struct TlsStream {
    tls: Connection,
    fd: RawFd,
    rd: ReadSide,
    wr: WriteSide,
    /// Received ciphertext not yet taken by rustls: `inbuf[inpos..]`.
    inbuf: Vec<u8>,
    inpos: usize,
    close_sent: bool,
}

impl TlsStream {
    /// Runs the handshake of `tls` (a fresh client or server connection) over `tcp`.
    pub async fn handshake(tcp: TcpStream, tls: impl Into<Connection>) -> io::Result<Self> {
        let fd = tcp.as_raw_fd();
        let (r, w) = tcp.into_split();
        let mut tls = tls.into();
        tls.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        let mut stream = TlsStream {
            tls,
            fd,
            rd: ReadSide::Idle(r),
            wr: WriteSide::Idle(w, Vec::new()),
            inbuf: Vec::new(),
            inpos: 0,
            close_sent: false,
        };
        stream.complete_handshake().await?;
        Ok(stream)
    }

    async fn complete_handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            poll_fn(|cx| self.poll_flush_tls(cx)).await?;
            if poll_fn(|cx| self.poll_fill(cx)).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the TLS handshake",
                ));
            }
            if let Err(e) = self.feed() {
                // Best effort: let the peer see our alert before we give up.
                let _ = poll_fn(|cx| self.poll_flush_tls(cx)).await;
                return Err(e);
            }
        }
        poll_fn(|cx| self.poll_flush_tls(cx)).await
    }

    /// The rustls connection (peer certificates, negotiated ALPN).
    pub fn connection(&self) -> &Connection {
        &self.tls
    }

    /// Ensures unconsumed ciphertext is buffered; `Ok(0)` at end of file. The buffer
    /// moves into the read op and comes back with the bytes.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            if self.inpos < self.inbuf.len() {
                return Poll::Ready(Ok(self.inbuf.len() - self.inpos));
            }
            match std::mem::replace(&mut self.rd, ReadSide::Done) {
                ReadSide::Idle(half) => {
                    let mut buf = std::mem::take(&mut self.inbuf);
                    buf.clear();
                    self.inpos = 0;
                    self.rd = ReadSide::Busy(read_op(half, buf));
                }
                ReadSide::Busy(mut op) => {
                    let Poll::Ready((half, res, buf)) = op.as_mut().poll(cx) else {
                        self.rd = ReadSide::Busy(op);
                        return Poll::Pending;
                    };
                    self.inbuf = buf;
                    if res? == 0 {
                        return Poll::Ready(Ok(0));
                    }
                    self.rd = ReadSide::Idle(half);
                }
                ReadSide::Done => return Poll::Ready(Ok(0)),
            }
        }
    }

    /// Hands buffered ciphertext to rustls and processes it.
    fn feed(&mut self) -> io::Result<()> {
        while self.inpos < self.inbuf.len() {
            let mut rest = &self.inbuf[self.inpos..];
            let n = match self.tls.read_tls(&mut rest) {
                Ok(n) => n,
                // rustls's plaintext buffer is full: the reader must drain it first.
                Err(e) if e.kind() == io::ErrorKind::Other && self.has_plaintext() => return Ok(()),
                Err(e) => return Err(e),
            };
            self.inpos += n;
            self.tls
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if n == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    fn has_plaintext(&mut self) -> bool {
        matches!(self.tls.reader().fill_buf(), Ok(b) if !b.is_empty())
    }

    /// Writes every buffered TLS record; one write op per batch.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match std::mem::replace(&mut self.wr, WriteSide::Failed) {
                WriteSide::Idle(half, mut buf) => {
                    if let Err(e) = self.send_inline() {
                        return Poll::Ready(Err(e));
                    }
                    if !self.tls.wants_write() {
                        self.wr = WriteSide::Idle(half, buf);
                        return Poll::Ready(Ok(()));
                    }
                    buf.clear();
                    while self.tls.wants_write() {
                        self.tls.write_tls(&mut buf)?;
                    }
                    self.wr = WriteSide::Busy(write_op(half, buf));
                }
                WriteSide::Busy(mut op) => {
                    let Poll::Ready((half, res, buf)) = op.as_mut().poll(cx) else {
                        self.wr = WriteSide::Busy(op);
                        return Poll::Pending;
                    };
                    res?;
                    self.wr = WriteSide::Idle(half, buf);
                }
                WriteSide::Failed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    /// Sends buffered records straight from rustls to the socket while it has room (no
    /// copy, no completion round trip); what does not fit goes to a write op.
    fn send_inline(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut sys::DontWait(self.fd)) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Copies decrypted bytes into `out`; `Ready(Ok(()))` with nothing copied is EOF.
    fn poll_plaintext(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.tls.reader().fill_buf() {
                Ok(chunk) if !chunk.is_empty() => {
                    let n = chunk.len().min(out.remaining());
                    out.put_slice(&chunk[..n]);
                    self.tls.reader().consume(n);
                    return Poll::Ready(Ok(()));
                }
                // Clean close_notify, or TCP end of file without one: both end the stream.
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.tls.wants_write() {
                // Alerts or key updates produced while reading; driven on this task.
                if let Poll::Ready(Err(e)) = self.poll_flush_tls(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if ready!(self.poll_fill(cx))? == 0 {
                self.tls.read_tls(&mut io::empty())?;
                continue;
            }
            self.feed()?;
        }
    }

    fn write_plaintext(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = self.tls.writer().write_vectored(bufs)?;
            if n > 0 || bufs.iter().all(|b| b.is_empty()) {
                return Poll::Ready(Ok(n));
            }
            // rustls holds SEND_BUFFER_LIMIT of unsent records: wait for the socket.
            ready!(self.poll_flush_tls(cx))?;
        }
    }
}

fn read_op(mut half: OwnedReadHalf<TcpStream>, buf: Vec<u8>) -> ReadOp {
    Box::pin(async move {
        let buf = reserve(buf, READ_CAPACITY);
        let (res, buf) = half.read(buf).await;
        (half, res, buf)
    })
}

fn write_op(mut half: OwnedWriteHalf<TcpStream>, buf: Vec<u8>) -> WriteOp {
    Box::pin(async move {
        let (res, buf) = half.write_all(buf).await;
        (half, res.map(|_| ()), buf)
    })
}

fn reserve(mut buf: Vec<u8>, capacity: usize) -> Vec<u8> {
    buf.reserve(capacity);
    buf
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_plaintext(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_plaintext(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_plaintext(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_tls(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.tls.send_close_notify();
            this.close_sent = true;
        }
        ready!(this.poll_flush_tls(cx))?;
        Poll::Ready(sys::shutdown_write(&this.fd))
    }
}
