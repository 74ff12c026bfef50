//! Byte relays: TCP↔TCP with splice(2) through a pipe (zero copy), and TCP↔HTTP/2 stream
//! for HBONE. EOF becomes FIN / END_STREAM; an error on one side resets the other.

use std::future::poll_fn;
use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::future::try_join;
use h2::{RecvStream, SendStream};
use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;

use crate::sys;

/// Bytes moved per splice: the default pipe capacity (16 pages).
const SPLICE_CHUNK: u32 = 64 * 1024;
/// Read size for TCP→HTTP/2: one max-size-ish DATA frame batch without hogging memory.
const H2_READ_CHUNK: usize = 64 * 1024;

/// Bytes each way, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    pub up: u64,
    pub down: u64,
}

/// Relays two plain TCP sockets both ways with splice, half-closing on EOF.
pub async fn splice_bidi(a: TcpStream, b: TcpStream) -> io::Result<Transferred> {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let result = try_join(splice_one(&mut ar, &mut bw), splice_one(&mut br, &mut aw)).await;
    if result.is_err() {
        abort(ar, aw);
        abort(br, bw);
    }
    let (up, down) = result?;
    Ok(Transferred { up, down })
}

/// Closes a socket with RST (propagating a reset). Reuniting the halves first matters:
/// dropping monoio's write half would send FIN.
fn abort(r: OwnedReadHalf<TcpStream>, w: OwnedWriteHalf<TcpStream>) {
    if let Ok(stream) = r.reunite(w) {
        let _ = sys::set_linger_zero(&stream);
    }
}

async fn splice_one<R, W>(reader: &mut R, writer: &mut W) -> io::Result<u64>
where
    R: SpliceSource,
    W: SpliceDestination + AsyncWriteRent,
{
    let (mut pipe_r, mut pipe_w) = monoio::net::unix::new_pipe()?;
    let mut total = 0u64;
    loop {
        let mut pending = reader.splice_to_pipe(&mut pipe_w, SPLICE_CHUNK).await?;
        if pending == 0 {
            writer.shutdown().await?;
            return Ok(total);
        }
        total += u64::from(pending);
        while pending > 0 {
            let n = writer.splice_from_pipe(&mut pipe_r, pending).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            pending -= n;
        }
    }
}

/// Relays a TCP socket and an HTTP/2 stream (an HBONE tunnel) both ways.
pub async fn h2_bidi(
    tcp: TcpStream,
    tx: SendStream<Bytes>,
    rx: RecvStream,
) -> io::Result<Transferred> {
    let (mut r, mut w) = tcp.into_split();
    let result = try_join(tcp_to_h2(&mut r, tx), h2_to_tcp(rx, &mut w)).await;
    if result.is_err() {
        abort(r, w);
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

async fn tcp_to_h2(r: &mut impl AsyncReadRent, mut tx: SendStream<Bytes>) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let (res, buf) = r.read(BytesMut::with_capacity(H2_READ_CHUNK)).await;
        let n = match res {
            Ok(n) => n,
            Err(e) => {
                tx.send_reset(h2::Reason::CANCEL);
                return Err(e);
            }
        };
        if n == 0 {
            tx.send_data(Bytes::new(), true).map_err(h2_io)?;
            return Ok(total);
        }
        total += n as u64;
        send_all(&mut tx, buf.freeze()).await?;
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

async fn h2_to_tcp(mut rx: RecvStream, w: &mut impl AsyncWriteRent) -> io::Result<u64> {
    let mut total = 0u64;
    while let Some(chunk) = rx.data().await {
        let chunk = chunk.map_err(h2_io)?;
        let n = chunk.len();
        total += n as u64;
        let (res, _) = w.write_all(chunk).await;
        res?;
        rx.flow_control().release_capacity(n).map_err(h2_io)?;
    }
    // A reset after the last DATA frame shows up as an error from trailers.
    rx.trailers().await.map_err(h2_io)?;
    w.shutdown().await?;
    Ok(total)
}
