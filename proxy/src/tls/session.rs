//! A TLS connection on buffers we own: the I/O-free half of [`super::TlsStream`].
//!
//! rustls runs the handshake through its unbuffered API: ciphertext is read straight into
//! [`Session`]'s receive buffer and handshake records are encoded into the send buffer.
//! Once application data flows (the first read, write or close after the handshake), the
//! session takes the traffic secrets from rustls (its kernel-connection API) and seals and
//! opens records itself ([`super::record`]): a sent record is built in the send buffer the
//! socket writes from, its plaintext copied there once and sealed in place; a received
//! record is opened in the buffer the read op filled. rustls keeps what only it can do:
//! the next secrets of a key update and the tickets a server sends.
//!
//! No I/O here: the stream asks for [`Session::read_buffer`] (the buffer its next read op
//! fills) and hands it back with [`Session::received`]; it sends [`Session::outgoing`]
//! and reports what left with [`Session::sent`] (or takes the whole batch for a write op
//! with [`Session::take_outgoing`]).

use std::io::{self, IoSlice};
use std::ops::Range;
use std::time::{Duration, Instant};

use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, InsufficientSizeError, UnbufferedStatus};
use rustls::CommonState;
use tokio::io::ReadBuf;

use super::traffic::{Out, Record, Traffic};

/// Ciphertext read per op: up to four full records, one syscall's worth of a bulk stream.
pub const READ_CAPACITY: usize = 64 * 1024;
/// Ciphertext read per op once a connection's reads have stayed small (a control frame, an
/// echo): what the read op of an idle HBONE connection holds while it waits. 50 pooled
/// connections under 5000 held streams otherwise held 3.3 MB of bulk-sized buffers.
pub const READ_IDLE_CAPACITY: usize = 4 * 1024;
/// Reads below [`READ_IDLE_CAPACITY`] in a row after which the next read op takes the idle
/// size; a read that fills it (or any read of that size or more) brings the bulk size back.
pub const SMALL_READS_TO_IDLE: u8 = 4;
/// Unsent TLS records a session holds before [`Session::write`] refuses more (backpressure).
pub const SEND_BUFFER_LIMIT: usize = 256 * 1024;
/// A send buffer above this size is released once the connection has held it for
/// [`TRIM_AFTER`] and nothing waits to be sent: a burst's buffers do not stay with an idle
/// connection, and a flowing one reallocates (and zeroes) them at most once per period.
const TRIM_ABOVE: usize = 64 * 1024;
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// What [`Session::read_in_place`] hands opened records to: the receive buffer and the
/// plaintext ranges in it.
pub type OpenedRecords<'a> = dyn FnMut(&[u8], &[Range<usize>]) -> io::Result<()> + 'a;

/// Either end of a TLS connection, in rustls's unbuffered form.
pub enum Side {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
}

impl From<UnbufferedClientConnection> for Side {
    fn from(c: UnbufferedClientConnection) -> Self {
        Side::Client(c)
    }
}

impl From<UnbufferedServerConnection> for Side {
    fn from(s: UnbufferedServerConnection) -> Self {
        Side::Server(s)
    }
}

/// Where a handshake stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Send [`Session::outgoing`], then read more ciphertext.
    NeedInput,
    /// Application data may flow (send what is outgoing first).
    Complete,
}

/// What [`Session::read`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Plaintext was copied into the caller's buffer.
    Data,
    /// Nothing decrypted is left: read more ciphertext (and send what is outgoing).
    NeedInput,
    /// The peer closed (close_notify or end of file): no more plaintext.
    Eof,
}

/// What one `process_tls_records` step of the handshake ended in.
enum Outcome {
    /// Something was done; ask again.
    Progress,
    /// No complete record left in the receive buffer (or the handshake waits for one).
    NeedInput,
    /// The handshake is done: application data may be sent.
    Traffic,
    /// Both sides sent close_notify.
    Closed,
}

/// Who seals and opens records.
enum Conn {
    /// rustls, during the handshake and until the first read, write or close after it
    /// (its [`CommonState`] stays readable until then). Boxed: a rustls connection is
    /// ~1.1 KB, which every held connection would carry inline after the switch.
    Rustls(Box<Side>),
    /// Our own record layer.
    Records(Box<Traffic>),
    /// Only while switching from one to the other, or after the switch failed.
    Gone,
}

/// Received ciphertext.
#[derive(Default)]
struct Rx {
    /// `buf[pos..]` is not yet processed.
    buf: Vec<u8>,
    pos: usize,
    /// The previous receive buffer, for a read op that must carry a partial record over.
    spare: Vec<u8>,
    /// `pos` when the unprocessed tail was copied into a read op's buffer.
    lent_at: Option<usize>,
    /// The socket reached end of file.
    eof: bool,
    /// Reads in a row that returned less than [`READ_IDLE_CAPACITY`].
    small_reads: u8,
}

/// Decrypted bytes and records to send.
#[derive(Default)]
struct Bufs {
    /// Decrypted bytes the reader's buffer had no room for: `plain[ppos..]`.
    plain: Vec<u8>,
    ppos: usize,
    /// Records to send: `out[opos..olen]`. `out` stays initialised (zeroed once, on
    /// growth), so encrypting into it costs no memset.
    out: Vec<u8>,
    opos: usize,
    olen: usize,
    /// Last send batch's buffer, recycled after its write op.
    out_spare: Vec<u8>,
    /// Since when the send buffers have been larger than [`TRIM_ABOVE`].
    big_since: Option<Instant>,
    peer_closed: bool,
    close_sent: bool,
}

impl Bufs {
    fn out(&mut self) -> Out<'_> {
        Out {
            buf: &mut self.out,
            len: &mut self.olen,
        }
    }
}

/// A TLS connection over caller-driven I/O.
pub struct Session {
    conn: Conn,
    /// The handshake completed (rustls said application data may flow).
    complete: bool,
    rx: Rx,
    bufs: Bufs,
    /// The error that ended the connection; nothing is processed after one.
    failed: Option<(io::ErrorKind, String)>,
}

impl Session {
    pub fn new(side: impl Into<Side>) -> Self {
        Session {
            conn: Conn::Rustls(Box::new(side.into())),
            complete: false,
            rx: Rx::default(),
            bufs: Bufs::default(),
            failed: None,
        }
    }

    /// The connection's negotiated state (peer certificates, ALPN, version): available
    /// until the first read, write or close after the handshake (then the record layer is
    /// ours and rustls's state is gone).
    pub fn common(&self) -> Option<&CommonState> {
        match &self.conn {
            Conn::Rustls(side) => match &**side {
                Side::Client(c) => Some(c),
                Side::Server(s) => Some(s),
            },
            _ => None,
        }
    }

    /// Advances the handshake over the ciphertext received so far.
    pub fn handshake(&mut self) -> io::Result<Handshake> {
        if self.complete {
            return Ok(Handshake::Complete);
        }
        loop {
            match self.process()? {
                Outcome::Progress => {}
                Outcome::NeedInput if self.rx.eof => return Err(eof_in_handshake()),
                Outcome::NeedInput => return Ok(Handshake::NeedInput),
                Outcome::Traffic => {
                    self.complete = true;
                    return Ok(Handshake::Complete);
                }
                Outcome::Closed => return Err(eof_in_handshake()),
            }
        }
    }

    /// Copies decrypted bytes into `out`, opening records while it has room.
    pub fn read(&mut self, out: &mut ReadBuf<'_>) -> io::Result<Read> {
        let start = out.filled().len();
        if self.take_plain(out) {
            return Ok(Read::Data);
        }
        self.records()?;
        while out.remaining() > 0 && !self.bufs.peer_closed && self.open_one(out)? {}
        if out.filled().len() > start {
            Ok(Read::Data)
        } else if self.bufs.peer_closed || self.rx.eof {
            Ok(Read::Eof)
        } else {
            Ok(Read::NeedInput)
        }
    }

    /// Opens every complete record received so far and hands their application data to
    /// `f` where it was decrypted, in the receive buffer (no copy): `f` gets the buffer
    /// and the plaintext ranges in it, all at once, so that bytes of several records can
    /// leave in one syscall. The HBONE server parses its HTTP/2 frames there. Plaintext
    /// that came with the handshake's last flight goes first.
    pub fn read_in_place(&mut self, f: &mut OpenedRecords<'_>) -> io::Result<Read> {
        let mut delivered = false;
        if self.bufs.ppos < self.bufs.plain.len() {
            let plain = std::mem::take(&mut self.bufs.plain);
            let from = std::mem::take(&mut self.bufs.ppos);
            let whole = from..plain.len();
            f(&plain, std::slice::from_ref(&whole))?;
            delivered = true;
        }
        self.records()?;
        let mut ranges: smallvec::SmallVec<[Range<usize>; 8]> = smallvec::SmallVec::new();
        let mut at = self.rx.pos;
        while !self.bufs.peer_closed {
            let Conn::Records(traffic) = &mut self.conn else {
                break;
            };
            let input = &mut self.rx.buf[at..];
            let base = input.as_ptr() as usize;
            let opened = traffic.open(input, &mut self.bufs.out());
            let Some((len, record)) = remember(&mut self.failed, opened)? else {
                break;
            };
            match record {
                Record::Data(plain) if !plain.is_empty() => {
                    let start = at + (plain.as_ptr() as usize - base);
                    ranges.push(start..start + plain.len());
                }
                Record::Data(_) | Record::Control => {}
                Record::CloseNotify => self.bufs.peer_closed = true,
            }
            at += len;
        }
        if !ranges.is_empty() {
            delivered = true;
            f(&self.rx.buf, &ranges)?;
        }
        self.consume(at - self.rx.pos);
        if delivered {
            Ok(Read::Data)
        } else if self.bufs.peer_closed || self.rx.eof {
            Ok(Read::Eof)
        } else {
            Ok(Read::NeedInput)
        }
    }

    /// Bytes of sealed records waiting to be sent.
    pub fn pending_out(&self) -> usize {
        self.pending()
    }

    /// Encrypts `slices` (all of them) into the send buffer; `Ok(0)` while
    /// [`SEND_BUFFER_LIMIT`] of records wait to be sent.
    pub fn write(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.pending() >= SEND_BUFFER_LIMIT {
            return Ok(0);
        }
        self.write_unbounded(slices)
    }

    /// Encrypts all of `slices` whatever the send buffer holds (control frames, and DATA
    /// whose sender checked [`Session::pending_out`] first).
    pub fn write_unbounded(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        if slices.iter().all(|s| s.is_empty()) {
            return Ok(0);
        }
        if self.bufs.close_sent {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let (traffic, mut out) = self.records()?;
        let result = traffic.seal_data(slices, &mut out);
        remember(&mut self.failed, result)
    }

    /// Queues close_notify (once the peer has it, it sees a clean end of stream).
    pub fn close(&mut self) -> io::Result<()> {
        if self.bufs.close_sent {
            return Ok(());
        }
        let (traffic, mut out) = self.records()?;
        let result = traffic.seal_close(&mut out);
        self.bufs.close_sent = true;
        remember(&mut self.failed, result)
    }

    /// After an error: encodes the alert the peer is owed, if any (during the handshake
    /// the one rustls queued: one step only, the next would process the failed input
    /// again).
    pub fn encode_alert(&mut self) {
        if self.failed.is_none() {
            return;
        }
        match &mut self.conn {
            Conn::Records(traffic) => traffic.seal_fatal(&mut self.bufs.out()),
            _ => {
                let _ = self.step();
            }
        }
    }

    /// Records waiting to be sent.
    pub fn outgoing(&self) -> &[u8] {
        &self.bufs.out[self.bufs.opos..self.bufs.olen]
    }

    /// `n` bytes of [`Session::outgoing`] were sent.
    pub fn sent(&mut self, n: usize) {
        let b = &mut self.bufs;
        b.opos += n;
        debug_assert!(b.opos <= b.olen);
        if b.opos == b.olen {
            b.opos = 0;
            b.olen = 0;
        }
    }

    /// Moves every waiting record out, for a write op: the buffer and the range to send.
    /// Give the buffer back with [`Session::recycle_outgoing`].
    pub fn take_outgoing(&mut self) -> Option<(Vec<u8>, Range<usize>)> {
        let b = &mut self.bufs;
        if b.opos == b.olen {
            return None;
        }
        let range = b.opos..b.olen;
        let spare = std::mem::take(&mut b.out_spare);
        let buf = std::mem::replace(&mut b.out, spare);
        b.opos = 0;
        b.olen = 0;
        Some((buf, range))
    }

    pub fn recycle_outgoing(&mut self, buf: Vec<u8>) {
        if self.bufs.out_spare.capacity() < buf.capacity() {
            self.bufs.out_spare = buf;
        }
    }

    /// Releases large send buffers held for [`TRIM_AFTER`] when nothing waits to be
    /// sent (called when the stream starts waiting for input). `now` is read only while
    /// the buffers are large.
    pub fn trim(&mut self, now: impl FnOnce() -> Instant) {
        let b = &mut self.bufs;
        if b.out.len().max(b.out_spare.len()) <= TRIM_ABOVE {
            b.big_since = None;
            return;
        }
        let now = now();
        let since = *b.big_since.get_or_insert(now);
        if b.opos == b.olen && now.duration_since(since) >= TRIM_AFTER {
            b.out = Vec::new();
            b.out_spare = Vec::new();
            b.opos = 0;
            b.olen = 0;
            b.big_since = None;
        }
    }

    /// Bytes the send buffers hold (tests of [`Session::trim`]).
    #[cfg(test)]
    pub(crate) fn send_buffers_len(&self) -> usize {
        self.bufs.out.len() + self.bufs.out_spare.len()
    }

    /// Bytes of receive buffers the session keeps while a read op holds the lent one
    /// (tests of [`Session::read_buffer`]).
    #[cfg(test)]
    pub(crate) fn kept_receive_capacity(&self) -> usize {
        self.rx.buf.capacity() + self.rx.spare.capacity()
    }

    /// Sends a KeyUpdate after `records` more records (tests of key updates).
    #[cfg(test)]
    pub(crate) fn update_keys_after(&mut self, records: u64) -> io::Result<()> {
        self.records()?.0.update_after(records);
        Ok(())
    }

    fn pending(&self) -> usize {
        self.bufs.olen - self.bufs.opos
    }

    /// The buffer the next read op appends to, with room for [`READ_CAPACITY`]. With
    /// nothing left unprocessed it is the receive buffer itself (a waiting connection
    /// holds one buffer, not two); otherwise the spare, with the unprocessed tail (a
    /// partial record) copied to its front.
    /// Once the handshake is done and reads have stayed small ([`SMALL_READS_TO_IDLE`]), the
    /// room is [`READ_IDLE_CAPACITY`] and a bulk-sized buffer is given back.
    pub fn read_buffer(&mut self) -> Vec<u8> {
        let idle = self.complete && self.rx.small_reads >= SMALL_READS_TO_IDLE;
        let rx = &mut self.rx;
        let tail = rx.buf.len() - rx.pos;
        let room = match idle && tail == 0 {
            true => READ_IDLE_CAPACITY,
            false => READ_CAPACITY,
        };
        let mut buf = if tail == 0 {
            rx.spare = Vec::new();
            rx.pos = 0;
            std::mem::take(&mut rx.buf)
        } else {
            std::mem::take(&mut rx.spare)
        };
        if buf.capacity() > READ_IDLE_CAPACITY && room == READ_IDLE_CAPACITY {
            buf = Vec::new();
        }
        buf.clear();
        buf.reserve(room + tail);
        buf.extend_from_slice(&rx.buf[rx.pos..]);
        rx.lent_at = Some(rx.pos);
        buf
    }

    /// The read op's buffer is back with `n` new bytes (0: end of file).
    pub fn received(&mut self, buf: Vec<u8>, n: usize) {
        let rx = &mut self.rx;
        // Processing while the op ran consumed nothing (no complete record was left);
        // if it did, the same bytes lead the new buffer.
        let consumed = rx.lent_at.take().map_or(0, |at| rx.pos - at);
        let old = std::mem::replace(&mut rx.buf, buf);
        if old.capacity() > 0 {
            rx.spare = old;
        }
        rx.pos = consumed;
        rx.small_reads = match n < READ_IDLE_CAPACITY {
            true => rx.small_reads.saturating_add(1),
            false => 0,
        };
        if n == 0 {
            rx.eof = true;
        }
    }

    /// Copies leftover plaintext into `out`; true if any was there.
    fn take_plain(&mut self, out: &mut ReadBuf<'_>) -> bool {
        let b = &mut self.bufs;
        if b.ppos == b.plain.len() {
            return false;
        }
        let n = (b.plain.len() - b.ppos).min(out.remaining());
        out.put_slice(&b.plain[b.ppos..b.ppos + n]);
        b.ppos += n;
        if b.ppos == b.plain.len() {
            b.plain.clear();
            b.ppos = 0;
        }
        true
    }

    /// Our record layer (and the send buffer), taking it over from rustls at the first
    /// call after the handshake.
    fn records(&mut self) -> io::Result<(&mut Traffic, Out<'_>)> {
        self.check_failed()?;
        if let Conn::Rustls(_) = self.conn {
            if !self.complete {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "TLS data before the handshake completed",
                ));
            }
            let Conn::Rustls(side) = std::mem::replace(&mut self.conn, Conn::Gone) else {
                unreachable!("matched above");
            };
            let traffic = remember(&mut self.failed, Traffic::start(*side))?;
            self.conn = Conn::Records(Box::new(traffic));
        }
        match &mut self.conn {
            Conn::Records(t) => Ok((t, self.bufs.out())),
            _ => Err(io::Error::other(
                "TLS record layer unavailable after an error",
            )),
        }
    }

    /// Opens the next complete record into `out` (or `plain` past its room); false when
    /// no complete record is left.
    fn open_one(&mut self, out: &mut ReadBuf<'_>) -> io::Result<bool> {
        let Conn::Records(traffic) = &mut self.conn else {
            return Ok(false);
        };
        let input = &mut self.rx.buf[self.rx.pos..];
        let opened = traffic.open(input, &mut self.bufs.out());
        let Some((len, record)) = remember(&mut self.failed, opened)? else {
            return Ok(false);
        };
        match record {
            Record::Data(plain) => deliver(plain, Some(out), &mut self.bufs),
            Record::Control => {}
            Record::CloseNotify => self.bufs.peer_closed = true,
        }
        self.consume(len);
        Ok(true)
    }

    fn consume(&mut self, n: usize) {
        self.rx.pos += n;
        if self.rx.pos == self.rx.buf.len() && self.rx.lent_at.is_none() {
            self.rx.buf.clear();
            self.rx.pos = 0;
        }
    }

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    fn process(&mut self) -> io::Result<Outcome> {
        self.check_failed()?;
        let outcome = self.step();
        remember(&mut self.failed, outcome)
    }

    fn step(&mut self) -> io::Result<Outcome> {
        let input = &mut self.rx.buf[self.rx.pos..];
        let (discard, outcome) = match &mut self.conn {
            Conn::Rustls(side) => match &mut **side {
                Side::Client(c) => step(c.process_tls_records(input), &mut self.bufs),
                Side::Server(s) => step(s.process_tls_records(input), &mut self.bufs),
            },
            _ => (0, Ok(Outcome::Traffic)),
        };
        self.consume(discard);
        outcome
    }
}

/// Remembers an error in `failed`: nothing is processed after one.
fn remember<T>(
    failed: &mut Option<(io::ErrorKind, String)>,
    result: io::Result<T>,
) -> io::Result<T> {
    if let Err(e) = &result {
        *failed = Some((e.kind(), e.to_string()));
    }
    result
}

/// Handles one handshake state; returns the bytes to discard from the front of the input.
fn step<D>(status: UnbufferedStatus<'_, '_, D>, bufs: &mut Bufs) -> (usize, io::Result<Outcome>) {
    let mut discard = status.discard;
    let state = match status.state {
        Ok(state) => state,
        Err(e) => return (discard, Err(invalid(e))),
    };
    let outcome = match state {
        ConnectionState::ReadTraffic(mut records) => {
            // Application data that came with the handshake's last flight.
            while let Some(record) = records.next_record() {
                match record {
                    Ok(record) => {
                        discard += record.discard;
                        deliver(record.payload, None, bufs);
                    }
                    Err(e) => return (discard, Err(invalid(e))),
                }
            }
            Ok(Outcome::Progress)
        }
        ConnectionState::EncodeTlsData(mut data) => {
            encode(bufs, |buf| data.encode(buf));
            Ok(Outcome::Progress)
        }
        ConnectionState::TransmitTlsData(transmit) => {
            // The records stay queued in `out`, in order, until the stream sends them.
            transmit.done();
            Ok(Outcome::Progress)
        }
        ConnectionState::BlockedHandshake => Ok(Outcome::NeedInput),
        ConnectionState::PeerClosed => {
            bufs.peer_closed = true;
            Ok(Outcome::Progress)
        }
        ConnectionState::Closed => {
            bufs.peer_closed = true;
            Ok(Outcome::Closed)
        }
        ConnectionState::WriteTraffic(_) => Ok(Outcome::Traffic),
        ConnectionState::ReadEarlyData(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TLS peer sent early data, which HBONE does not accept",
        )),
        _ => Err(io::Error::other("unknown rustls connection state")),
    };
    (discard, outcome)
}

/// Decrypted bytes go to the reader's buffer while it has room, the rest to `plain`.
fn deliver(payload: &[u8], out: Option<&mut ReadBuf<'_>>, bufs: &mut Bufs) {
    let mut rest = payload;
    if let Some(out) = out {
        if bufs.ppos == bufs.plain.len() {
            let n = rest.len().min(out.remaining());
            out.put_slice(&rest[..n]);
            rest = &rest[n..];
        }
    }
    bufs.plain.extend_from_slice(rest);
}

/// Encodes a handshake record into the send buffer, growing it until it fits.
fn encode(bufs: &mut Bufs, mut f: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) {
    let mut need = 4096;
    let mut out = bufs.out();
    loop {
        out.reserve(need);
        match f(&mut out.buf[*out.len..]) {
            Ok(n) => {
                *out.len += n;
                return;
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                need = required_size;
            }
            // Encoding fails only for want of room, or when the record is already out.
            Err(EncodeError::AlreadyEncoded) => return,
        }
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn eof_in_handshake() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "peer closed the connection during the TLS handshake",
    )
}
