//! TLS over monoio's owned-buffer I/O, exposed to h2 as tokio's `AsyncRead`/`AsyncWrite`.
//!
//! rustls runs through its unbuffered API ([`Session`]) on our own buffers, driven by
//! completion-style operations (io_uring read/write ops, or their epoll emulation under
//! the fallback driver): while h2 waits for ciphertext a read op is in flight (with a 64
//! KiB buffer, or 4 KiB once the connection's reads have stayed small) and records are
//! opened in that buffer; records are encrypted into one send buffer
//! that leaves in one `send` (or one write op when the socket is full). No readiness
//! adapter (`poll-io`) and no tokio-rustls.
//!
//! One task (the h2 connection driver) polls both directions, so the read and write ops
//! wake the same task. A write op started on the read path (alerts, key updates) is driven
//! by the next poll of either direction.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, Write};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use rustls::pki_types::UnixTime;
use rustls::CommonState;
use tokio::io::ReadBuf;

use super::resume;
use super::session::{Handshake, OpenedRecords, Read, Session, Side};
use crate::sys;

type ReadOp = Pin<Box<dyn Future<Output = (OwnedReadHalf<TcpStream>, io::Result<usize>, Vec<u8>)>>>;
type WriteOp = Pin<Box<dyn Future<Output = (OwnedWriteHalf<TcpStream>, io::Result<()>, Vec<u8>)>>>;

enum ReadSide {
    Idle(OwnedReadHalf<TcpStream>),
    Busy(ReadOp),
    /// The socket reached end of file (or failed); nothing more will be read.
    Done,
}

enum WriteSide {
    Idle(OwnedWriteHalf<TcpStream>),
    Busy(WriteOp),
    Failed,
}

/// A TLS connection over a monoio TCP socket. Build with [`TlsStream::handshake`].
pub struct TlsStream {
    tls: Session,
    fd: RawFd,
    rd: ReadSide,
    wr: WriteSide,
    close_sent: bool,
}

impl TlsStream {
    /// Runs the handshake of `tls` (a fresh unbuffered client or server connection) over
    /// `tcp`.
    pub async fn handshake(tcp: TcpStream, tls: impl Into<Side>) -> io::Result<Self> {
        let fd = tcp.as_raw_fd();
        let (r, w) = tcp.into_split();
        let mut stream = TlsStream {
            tls: Session::new(tls),
            fd,
            rd: ReadSide::Idle(r),
            wr: WriteSide::Idle(w),
            close_sent: false,
        };
        stream.complete_handshake().await?;
        let common = (stream.tls.common())
            .expect("rustls's state is kept until the first read or write after the handshake");
        if resume::expired_peer(common, UnixTime::now()) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the resumed TLS session's peer certificate has expired since its full \
                 handshake; the peer must connect again without the ticket",
            ));
        }
        tracing::debug!(resumed = resume::resumed(common), "TLS handshake complete");
        Ok(stream)
    }

    /// Runs the handshake to its end. What it leaves queued (the client's Finished, the
    /// server's session ticket) is not flushed here: it leaves with the first flush of
    /// h2, which always writes first (the client's preface, the server's SETTINGS), in the
    /// same segment (a pairs profile counted 7 sends per new connection on the client and
    /// 7 on the server, the Finished and the ticket each alone).
    async fn complete_handshake(&mut self) -> io::Result<()> {
        loop {
            match self.tls.handshake() {
                Ok(Handshake::Complete) => return Ok(()),
                Ok(Handshake::NeedInput) => {
                    poll_fn(|cx| self.poll_flush_tls(cx)).await?;
                    poll_fn(|cx| self.poll_fill(cx)).await?;
                }
                Err(e) => {
                    // Best effort: let the peer see our alert before we give up.
                    self.tls.encode_alert();
                    let _ = poll_fn(|cx| self.poll_flush_tls(cx)).await;
                    return Err(e);
                }
            }
        }
    }

    /// The connection's negotiated state (peer certificates, ALPN): until the first read
    /// or write (then the session's own record layer runs and rustls's state is gone).
    pub fn connection(&self) -> Option<&CommonState> {
        self.tls.common()
    }

    /// Runs one read op into the session's receive buffer (returns at once after EOF).
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match std::mem::replace(&mut self.rd, ReadSide::Done) {
                ReadSide::Idle(half) => {
                    if matches!(self.wr, WriteSide::Idle(_)) {
                        self.tls.trim(std::time::Instant::now);
                    }
                    self.rd = ReadSide::Busy(read_op(half, self.tls.read_buffer()));
                }
                ReadSide::Busy(mut op) => {
                    let Poll::Ready((half, res, buf)) = op.as_mut().poll(cx) else {
                        self.rd = ReadSide::Busy(op);
                        return Poll::Pending;
                    };
                    let n = *res.as_ref().unwrap_or(&0);
                    self.tls.received(buf, n);
                    res?;
                    if n > 0 {
                        self.rd = ReadSide::Idle(half);
                    }
                    return Poll::Ready(Ok(()));
                }
                ReadSide::Done => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Writes every queued TLS record: inline while the socket has room, the rest in one
    /// write op.
    pub(crate) fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match std::mem::replace(&mut self.wr, WriteSide::Failed) {
                WriteSide::Idle(half) => {
                    if let Err(e) = self.send_inline() {
                        return Poll::Ready(Err(e));
                    }
                    let Some((buf, range)) = self.tls.take_outgoing() else {
                        self.wr = WriteSide::Idle(half);
                        return Poll::Ready(Ok(()));
                    };
                    self.wr = WriteSide::Busy(write_op(half, buf, range));
                }
                WriteSide::Busy(mut op) => {
                    let Poll::Ready((half, res, buf)) = op.as_mut().poll(cx) else {
                        self.wr = WriteSide::Busy(op);
                        return Poll::Pending;
                    };
                    res?;
                    self.tls.recycle_outgoing(buf);
                    self.wr = WriteSide::Idle(half);
                }
                WriteSide::Failed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    /// Sends queued records straight from the session's buffer while the socket has room
    /// (no completion round trip); what does not fit goes to a write op.
    fn send_inline(&mut self) -> io::Result<()> {
        while !self.tls.outgoing().is_empty() {
            match sys::DontWait(self.fd).write(self.tls.outgoing()) {
                Ok(0) => return Ok(()),
                Ok(n) => self.tls.sent(n),
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
            let queued = self.tls.outgoing().len();
            match self.tls.read(out)? {
                Read::Data | Read::Eof => return Poll::Ready(Ok(())),
                Read::NeedInput => {}
            }
            // Alerts or key updates produced while reading (or a write op they started),
            // driven on this task. What h2 wrote is left for h2's own flush, which follows
            // a read that waits: its frames then leave together.
            let produced = self.tls.outgoing().len() > queued;
            if produced || matches!(self.wr, WriteSide::Busy(_)) {
                if let Poll::Ready(Err(e)) = self.poll_flush_tls(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    fn write_plaintext(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = self.tls.write(bufs)?;
            if n > 0 || bufs.iter().all(|b| b.is_empty()) {
                return Poll::Ready(Ok(n));
            }
            // SEND_BUFFER_LIMIT of records wait: wait for the socket.
            ready!(self.poll_flush_tls(cx))?;
        }
    }
}

/// The record-level API of the HBONE server's own HTTP/2 ([`crate::hbone::server`]): one
/// connection task reads ([`TlsStream::poll_fill`], then [`TlsStream::read_in_place`]) and
/// runs the write ops ([`TlsStream::poll_flush_tls`]); a stream's task seals its DATA
/// frames ([`TlsStream::seal_all`]) and sends them at once while no write op is in flight
/// ([`TlsStream::send_now`]).
impl TlsStream {
    /// Hands the application data of every complete record received to `f`, in place:
    /// the receive buffer and the plaintext ranges in it.
    pub(crate) fn read_in_place(&mut self, f: &mut OpenedRecords<'_>) -> io::Result<Read> {
        self.tls.read_in_place(f)
    }

    /// Seals all of `slices` into the send buffer, however full it is (the caller bounds
    /// it with [`TlsStream::pending_out`]).
    pub(crate) fn seal_all(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.tls.write_unbounded(slices)
    }

    /// Bytes of sealed records not yet sent.
    pub(crate) fn pending_out(&self) -> usize {
        self.tls.pending_out()
    }

    /// Sends what is queued while the socket takes it, unless a write op is in flight (it
    /// must finish first, for order). True when nothing is left queued.
    pub(crate) fn send_now(&mut self) -> io::Result<bool> {
        match self.wr {
            WriteSide::Idle(_) => self.send_inline()?,
            WriteSide::Busy(_) => return Ok(false),
            WriteSide::Failed => return Err(io::ErrorKind::BrokenPipe.into()),
        }
        Ok(self.tls.outgoing().is_empty())
    }

    /// Queues close_notify (sent by the next flush).
    pub(crate) fn close_notify(&mut self) -> io::Result<()> {
        if !self.close_sent {
            self.tls.close()?;
            self.close_sent = true;
        }
        Ok(())
    }

    /// Shuts the socket's write side down (after the flush that sent close_notify).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        sys::shutdown_write(&self.fd)
    }
}

fn read_op(mut half: OwnedReadHalf<TcpStream>, buf: Vec<u8>) -> ReadOp {
    Box::pin(async move {
        let filled = buf.len();
        let (res, slice) = half.read(buf.slice_mut(filled..)).await;
        (half, res, slice.into_inner())
    })
}

fn write_op(mut half: OwnedWriteHalf<TcpStream>, buf: Vec<u8>, range: Range<usize>) -> WriteOp {
    Box::pin(async move {
        let (res, slice) = half.write_all(buf.slice(range)).await;
        (half, res.map(|_| ()), slice.into_inner())
    })
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
            this.tls.close()?;
            this.close_sent = true;
        }
        ready!(this.poll_flush_tls(cx))?;
        Poll::Ready(sys::shutdown_write(&this.fd))
    }
}
