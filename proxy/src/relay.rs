//! Byte relays: TCP↔TCP with splice(2) through a pipe (zero copy), and TCP↔HTTP/2 stream
//! for HBONE. EOF becomes FIN / END_STREAM; an error on one side resets the other.

use std::future::poll_fn;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use futures_util::future::try_join;
use h2::{RecvStream, SendStream};
use monoio::net::TcpStream;

use crate::sys;

/// Bytes moved per splice: the default pipe capacity (16 pages).
const SPLICE_CHUNK: usize = 64 * 1024;
/// Read sizes for TCP→HTTP/2. A read waits with a small buffer (an idle connection holds
/// only that much, and a request fits it); a read that fills its buffer means a stream is
/// flowing, so the next one takes a bulk-sized buffer (256 KiB: 6% less proxy CPU per GB
/// than 64 KiB in A/B runs; 1 MiB was 30% worse).
const H2_READ_MIN: usize = 4 * 1024;
const H2_READ_MAX: usize = 256 * 1024;

/// The next read's buffer size after a read of `n` bytes into `cap` (pure).
fn next_read_size(cap: usize, n: usize) -> usize {
    if n == cap {
        H2_READ_MAX
    } else {
        H2_READ_MIN
    }
}

/// Bytes each way, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    pub up: u64,
    pub down: u64,
}

/// Relays two plain TCP sockets both ways with splice(2), half-closing on EOF.
///
/// The splices are plain non-blocking syscalls driven by monoio readiness waits (a poll
/// op under io_uring, epoll otherwise): io_uring's own splice op on a socket without data
/// either returns EAGAIN (non-blocking socket) or parks a kernel worker thread per idle
/// connection (blocking socket).
pub async fn splice_bidi(a: TcpStream, b: TcpStream) -> io::Result<Transferred> {
    sys::set_nonblocking(&a)?;
    sys::set_nonblocking(&b)?;
    let result = try_join(splice_one(&a, &b), splice_one(&b, &a)).await;
    if result.is_err() {
        // Propagate the reset: both sockets close with RST.
        let _ = sys::set_linger_zero(&a);
        let _ = sys::set_linger_zero(&b);
    }
    let (up, down) = result?;
    Ok(Transferred { up, down })
}

/// Empty pipes a core keeps for its splice relays. A relay direction holds a pipe only
/// while bytes flow and gives it back, empty, when its socket has nothing more to read:
/// an idle or held connection then costs its two sockets and no pipes. Holding one per
/// direction for a connection's life cost 6 descriptors per connection, and 5000 held
/// fast-path connections that had echoed once ran into RLIMIT_NOFILE (peer --only held:
/// 1671 of 5000 echoes failed).
const SPARE_PIPES: usize = 64;

thread_local! {
    static PIPES: std::cell::RefCell<Vec<sys::Pipe>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn take_pipe() -> io::Result<sys::Pipe> {
    match PIPES.with(|p| p.borrow_mut().pop()) {
        Some(pipe) => Ok(pipe),
        None => sys::pipe(),
    }
}

/// Returns an empty pipe to this core's spares (closed when there are enough).
fn give_pipe(pipe: sys::Pipe) {
    PIPES.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < SPARE_PIPES {
            p.push(pipe);
        }
    });
}

async fn splice_one(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        from.readable(false).await?;
        let pipe = take_pipe()?;
        let moved = splice_burst(from, to, &pipe).await;
        // The pipe is empty unless an error stopped a write half-way: only then is it
        // dropped rather than reused.
        match moved {
            Ok(Burst::Idle(n)) => {
                give_pipe(pipe);
                total += n;
            }
            Ok(Burst::Eof(n)) => {
                give_pipe(pipe);
                sys::shutdown_write(to)?;
                return Ok(total + n);
            }
            Err(e) => return Err(e),
        }
    }
}

/// How a burst of splices ended, with the bytes it moved.
enum Burst {
    /// The source has nothing more to read for now.
    Idle(u64),
    /// The source reached EOF.
    Eof(u64),
}

/// Splices from `from` to `to` through `pipe` until `from` would block or ends; every
/// byte taken into the pipe is written out before returning.
async fn splice_burst(from: &TcpStream, to: &TcpStream, pipe: &sys::Pipe) -> io::Result<Burst> {
    let mut total = 0u64;
    loop {
        let mut pending = match sys::splice(from, &pipe.write, SPLICE_CHUNK) {
            Ok(0) => return Ok(Burst::Eof(total)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Idle(total)),
            Err(e) => return Err(e),
        };
        total += pending as u64;
        while pending > 0 {
            match sys::splice(&pipe.read, to, pending) {
                Ok(n) => pending -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable(false).await?,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Relays a TCP socket and an HTTP/2 stream (an HBONE tunnel) both ways.
///
/// The TCP side is driven by readiness waits and non-blocking syscalls rather than
/// read/write ops: an idle connection then holds no read buffer (one is allocated only
/// once bytes are waiting), and a flowing one reads again at once without a ring round
/// trip. Both directions borrow the one socket; no split halves.
pub async fn h2_bidi(
    tcp: TcpStream,
    tx: SendStream<Bytes>,
    rx: RecvStream,
) -> io::Result<Transferred> {
    let result = try_join(tcp_to_h2(&tcp, tx), h2_to_tcp(rx, &tcp)).await;
    if result.is_err() {
        // Propagate the reset: the socket closes with RST.
        let _ = sys::set_linger_zero(&tcp);
    }
    let (up, down) = result?;
    Ok(Transferred { up, down })
}

fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::ErrorKind::Other.into());
    }
    io::Error::new(io::ErrorKind::ConnectionReset, e)
}

async fn tcp_to_h2(tcp: &TcpStream, mut tx: SendStream<Bytes>) -> io::Result<u64> {
    let mut total = 0u64;
    let mut cap = H2_READ_MIN;
    loop {
        let buf = match recv_when_ready(tcp, cap).await {
            Ok(buf) => buf,
            Err(e) => {
                tx.send_reset(h2::Reason::CANCEL);
                return Err(e);
            }
        };
        let n = buf.len();
        if n == 0 {
            tx.send_data(Bytes::new(), true).map_err(h2_io)?;
            return Ok(total);
        }
        total += n as u64;
        cap = next_read_size(cap, n);
        send_all(&mut tx, buf.freeze()).await?;
    }
}

/// The next bytes from `tcp` (empty at EOF), read into a buffer of `cap` bytes that is
/// allocated only once the socket has something to read. A bulk-sized `cap` means the
/// last read filled its buffer, so the socket is tried before waiting.
async fn recv_when_ready(tcp: &TcpStream, cap: usize) -> io::Result<BytesMut> {
    let mut ready = cap > H2_READ_MIN;
    loop {
        if !ready {
            tcp.readable(false).await?;
        }
        let mut buf = BytesMut::with_capacity(cap);
        match sys::recv_dontwait(tcp, &mut buf) {
            Ok(_) => return Ok(buf),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready = false,
            Err(e) => return Err(e),
        }
    }
}

/// Sends `data` respecting the peer's flow-control window.
async fn send_all(tx: &mut SendStream<Bytes>, mut data: Bytes) -> io::Result<()> {
    while !data.is_empty() {
        tx.reserve_capacity(data.len());
        let cap = loop {
            match poll_fn(|cx| tx.poll_capacity(cx)).await {
                Some(Ok(0)) => continue,
                Some(Ok(cap)) => break cap,
                Some(Err(e)) => return Err(h2_io(e)),
                None => return Err(io::ErrorKind::BrokenPipe.into()),
            }
        };
        let chunk = data.split_to(cap.min(data.len()));
        tx.send_data(chunk, false).map_err(h2_io)?;
    }
    Ok(())
}

/// Writes all of `bytes` to `tcp`: inline while the socket has room, waiting for
/// writability only when it is full. Under io_uring a write op costs a completion round
/// trip even when the socket has room.
pub async fn write_ready(tcp: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    loop {
        bytes = write_now(tcp, bytes)?;
        if bytes.is_empty() {
            return Ok(());
        }
        tcp.writable(false).await?;
    }
}

/// HTTP/2 → TCP. An idle tunnel waits here for its next DATA frame, so what this future
/// keeps across that wait is kept by every held connection: the wait for room in a full
/// socket (rare: a bulk stream faster than its reader) is boxed, and the frames are
/// polled in place (h2's `data()` is a future of its own).
async fn h2_to_tcp(mut rx: RecvStream, tcp: &TcpStream) -> io::Result<u64> {
    let mut total = 0u64;
    while let Some(chunk) = poll_fn(|cx| rx.poll_data(cx)).await {
        let chunk = chunk.map_err(h2_io)?;
        let n = chunk.len();
        total += n as u64;
        let rest = write_now(tcp, &chunk)?;
        if !rest.is_empty() {
            Box::pin(write_ready(tcp, rest)).await?;
        }
        rx.flow_control().release_capacity(n).map_err(h2_io)?;
    }
    // A reset after the last DATA frame shows up as an error from trailers.
    rx.trailers().await.map_err(h2_io)?;
    sys::shutdown_write(tcp)?;
    Ok(total)
}

/// Writes what fits in `tcp` now; returns the rest (empty when all of it went).
fn write_now<'a>(tcp: &TcpStream, mut bytes: &'a [u8]) -> io::Result<&'a [u8]> {
    while !bytes.is_empty() {
        match sys::DontWait(tcp.as_raw_fd()).write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_size_grows_when_full_and_shrinks_when_not() {
        assert_eq!(next_read_size(H2_READ_MIN, H2_READ_MIN), H2_READ_MAX);
        assert_eq!(next_read_size(H2_READ_MAX, H2_READ_MAX), H2_READ_MAX);
        assert_eq!(next_read_size(H2_READ_MAX, 100), H2_READ_MIN);
        assert_eq!(next_read_size(H2_READ_MIN, 1024), H2_READ_MIN);
    }
}
