//! Byte relays: TCP↔TCP with splice(2) through a pipe (zero copy), and TCP↔HTTP/2 stream
//! for HBONE. EOF becomes FIN / END_STREAM; an error on one side resets the other.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use futures_util::future::try_join;
use h2::{RecvStream, SendStream};
use monoio::net::TcpStream;

use crate::sys;

/// Bytes moved per splice: the default pipe capacity (16 pages).
const SPLICE_CHUNK: usize = 64 * 1024;
/// Bytes a TCP↔TCP relay direction reads into its core's scratch buffer and sends on at
/// once. A message that fits costs a recv and a send where a splice through a pipe cost
/// three syscalls (socket→pipe, pipe→socket, and the splice that found the socket empty)
/// and a pipe's page bookkeeping; a read that fills the buffer means a stream is flowing,
/// and the direction splices until a burst moves less than this again.
const COPY_CHUNK: usize = 16 * 1024;
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

/// One direction: waits until `from` is readable, then moves what it has. A read through
/// the scratch buffer that does not fill it is taken as all there was: the next readiness
/// wait says otherwise, so no syscall is spent to hear EAGAIN. An idle direction's future
/// holds only the readiness wait: every burst that may wait on `to` is boxed (one
/// allocation per burst, none for a message sent at once).
async fn splice_one(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut total = 0u64;
    let mut flowing = false;
    loop {
        from.readable(false).await?;
        let burst = if flowing {
            Box::pin(splice_piped(from, to)).await?
        } else {
            match copy_now(from, to)? {
                Copied::Empty => Burst::Idle(0),
                Copied::Eof => Burst::Eof(0),
                Copied::Sent(n) if n < COPY_CHUNK => Burst::Idle(n as u64),
                Copied::Sent(n) => Box::pin(after_copy(n, Vec::new(), from, to)).await?,
                Copied::Partly { read, rest } => Box::pin(after_copy(read, rest, from, to)).await?,
            }
        };
        match burst {
            Burst::Idle(n) => {
                total += n;
                flowing = n >= COPY_CHUNK as u64;
            }
            Burst::Eof(n) => {
                sys::shutdown_write(to)?;
                return Ok(total + n);
            }
        }
    }
}

/// One splice burst through a pipe from this core's spares. The pipe is empty unless an
/// error stopped a write half-way: only then is it dropped rather than given back.
async fn splice_piped(from: &TcpStream, to: &TcpStream) -> io::Result<Burst> {
    let pipe = take_pipe()?;
    let burst = splice_burst(from, to, &pipe).await?;
    give_pipe(pipe);
    Ok(burst)
}

/// The rest of a burst whose first `read` bytes went through the scratch buffer: `rest`
/// of them (those a full `to` refused) are written once it has room, and a read that
/// filled the buffer means a stream is flowing, so the burst goes on as splices.
async fn after_copy(
    read: usize,
    rest: Vec<u8>,
    from: &TcpStream,
    to: &TcpStream,
) -> io::Result<Burst> {
    if !rest.is_empty() {
        write_ready(to, &rest).await?;
    }
    if read < COPY_CHUNK {
        return Ok(Burst::Idle(read as u64));
    }
    Ok(match splice_piped(from, to).await? {
        Burst::Idle(m) => Burst::Idle(read as u64 + m),
        Burst::Eof(m) => Burst::Eof(read as u64 + m),
    })
}

/// What one read through the scratch buffer did.
enum Copied {
    /// Nothing was queued (a spurious wake-up).
    Empty,
    /// The source reached EOF.
    Eof,
    /// `n` bytes read and all of them sent.
    Sent(usize),
    /// `read` bytes read; `to` was full, and `rest` of them still have to be sent.
    Partly { read: usize, rest: Vec<u8> },
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; COPY_CHUNK].into_boxed_slice());
}

/// Reads what `from` has (up to [`COPY_CHUNK`]) and sends it to `to`, neither waiting.
/// The scratch buffer is this core's and is free again on return: only bytes a full
/// socket did not take are copied out.
fn copy_now(from: &TcpStream, to: &TcpStream) -> io::Result<Copied> {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        let n = match sys::DontWait(from.as_raw_fd()).read(&mut buf) {
            Ok(0) => return Ok(Copied::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Copied::Empty),
            Err(e) => return Err(e),
        };
        let rest = write_now(to, &buf[..n])?;
        Ok(if rest.is_empty() {
            Copied::Sent(n)
        } else {
            Copied::Partly {
                read: n,
                rest: rest.to_vec(),
            }
        })
    })
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
    use std::net::{Shutdown, TcpListener};

    /// Byte `i` of a test stream: a pattern that a lost, repeated or reordered chunk breaks.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    /// Runs `client` against `server` with [`splice_bidi`] between them (on a monoio runtime
    /// of the driver the environment picks); returns what the relay counted. `upstream_buf`
    /// shrinks the relay's send buffer toward the server and the server's receive buffer,
    /// so that a server that does not read fills them after a few KiB.
    fn relayed(
        upstream_buf: Option<usize>,
        client: impl FnOnce(std::net::TcpStream) + Send + 'static,
        server: impl FnOnce(std::net::TcpStream) + Send + 'static,
    ) -> Transferred {
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let upstream =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if let Some(size) = upstream_buf {
            upstream.set_recv_buffer_size(size).unwrap();
        }
        upstream.bind(&addr.into()).unwrap();
        upstream.listen(1).unwrap();
        let upstream = TcpListener::from(upstream);
        let upstream_addr = upstream.local_addr().unwrap();
        let server = std::thread::spawn(move || server(upstream.accept().unwrap().0));
        let front = TcpListener::bind(addr).unwrap();
        let front_addr = front.local_addr().unwrap();
        let client =
            std::thread::spawn(move || client(std::net::TcpStream::connect(front_addr).unwrap()));
        let moved = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .build()
            .unwrap()
            .block_on(async move {
                let (accepted, _) = front.accept().unwrap();
                accepted.set_nonblocking(true).unwrap();
                let a = TcpStream::from_std(accepted).unwrap();
                let b = std::net::TcpStream::connect(upstream_addr).unwrap();
                if let Some(size) = upstream_buf {
                    socket2::SockRef::from(&b)
                        .set_send_buffer_size(size)
                        .unwrap();
                }
                b.set_nonblocking(true).unwrap();
                splice_bidi(a, TcpStream::from_std(b).unwrap()).await
            })
            .unwrap();
        client.join().unwrap();
        server.join().unwrap();
        moved
    }

    #[test]
    fn small_messages_then_a_bulk_stream_arrive_exactly_both_ways() {
        const ECHOES: usize = 50;
        const MSG: usize = 1000;
        const BULK: usize = 8 << 20;
        let moved = relayed(
            None,
            |c| {
                let mut buf = vec![0u8; MSG];
                for i in 0..ECHOES {
                    let msg = vec![i as u8; MSG];
                    (&c).write_all(&msg).unwrap();
                    (&c).read_exact(&mut buf).unwrap();
                    assert_eq!(buf, msg, "echo {i}");
                }
                let mut writer = c.try_clone().unwrap();
                let sender = std::thread::spawn(move || {
                    writer.write_all(&pattern(BULK)).unwrap();
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut back = Vec::new();
                (&c).read_to_end(&mut back).unwrap();
                sender.join().unwrap();
                assert!(back == pattern(BULK), "the bulk stream came back altered");
            },
            |mut s| {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).unwrap();
                }
                s.shutdown(Shutdown::Write).unwrap();
            },
        );
        let each_way = (ECHOES * MSG + BULK) as u64;
        assert_eq!(
            moved,
            Transferred {
                up: each_way,
                down: each_way
            }
        );
    }

    #[test]
    fn small_messages_to_a_server_that_pauses_are_held_not_lost() {
        const WRITES: usize = 300;
        const MSG: usize = 1000;
        let moved = relayed(
            Some(4096),
            |mut c| {
                // One message at a time, so the relay reads each on its own (less than a
                // full scratch buffer) while the server's side is already full.
                for chunk in pattern(WRITES * MSG).chunks(MSG) {
                    c.write_all(chunk).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                c.shutdown(Shutdown::Write).unwrap();
                assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0, "the server's FIN");
            },
            |mut s| {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                assert!(got == pattern(WRITES * MSG), "bytes lost or reordered");
                s.shutdown(Shutdown::Write).unwrap();
            },
        );
        let up = (WRITES * MSG) as u64;
        assert_eq!(moved, Transferred { up, down: 0 });
    }

    #[test]
    fn read_size_grows_when_full_and_shrinks_when_not() {
        assert_eq!(next_read_size(H2_READ_MIN, H2_READ_MIN), H2_READ_MAX);
        assert_eq!(next_read_size(H2_READ_MAX, H2_READ_MAX), H2_READ_MAX);
        assert_eq!(next_read_size(H2_READ_MAX, 100), H2_READ_MIN);
        assert_eq!(next_read_size(H2_READ_MIN, 1024), H2_READ_MIN);
    }
}
