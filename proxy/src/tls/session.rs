//! rustls's unbuffered API on buffers we own: the I/O-free half of [`super::TlsStream`].
//!
//! Ciphertext is read straight into [`Session`]'s receive buffer and rustls decrypts it
//! there, in place; records are encrypted straight into the send buffer, which the socket
//! writes from. Against rustls's buffered API this saves one copy of every received byte
//! (`read_tls` into rustls's own deframer buffer, which it also regrows in 4 KiB steps
//! and shrinks again per record), and one allocation per sent record.
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
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    WriteTraffic,
};
use rustls::CommonState;
use tokio::io::ReadBuf;

/// Ciphertext read per op: up to four full records, one syscall's worth of a bulk stream.
pub const READ_CAPACITY: usize = 64 * 1024;
/// Unsent TLS records a session holds before [`Session::write`] refuses more (backpressure).
pub const SEND_BUFFER_LIMIT: usize = 256 * 1024;
/// A send buffer above this size is released once the connection has held it for
/// [`TRIM_AFTER`] and nothing waits to be sent: a burst's buffers do not stay with an idle
/// connection, and a flowing one reallocates (and zeroes) them at most once per period.
const TRIM_ABOVE: usize = 64 * 1024;
const TRIM_AFTER: Duration = Duration::from_secs(1);
/// Largest plaintext of one TLS record.
const MAX_RECORD: usize = 16 * 1024;
/// Upper bound of what TLS 1.3 adds to one record (header, content type, AEAD tag).
const RECORD_OVERHEAD: usize = 64;
/// Slices of a write shorter than this (h2's 9-byte frame headers, small frames) are
/// copied together into one record rather than sealed one record each.
const COALESCE_BELOW: usize = 4 * 1024;

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

/// What a call asks of rustls.
enum Job<'a, 'b> {
    Handshake,
    Read(&'a mut ReadBuf<'b>),
    Write(&'a [IoSlice<'a>]),
    Close,
}

/// What one `process_tls_records` step ended in.
enum Outcome {
    /// Something was done; ask again.
    Progress,
    /// No complete record left in the receive buffer (or the handshake waits for one).
    NeedInput,
    /// Application data may be sent and the job did not need to send any.
    Traffic,
    /// The write (this many plaintext bytes taken) or close job is done.
    Done(usize),
    /// Both sides sent close_notify.
    Closed,
}

/// Received ciphertext.
#[derive(Default)]
struct Rx {
    /// `buf[pos..]` is not yet processed by rustls.
    buf: Vec<u8>,
    pos: usize,
    /// The previous receive buffer, for a read op that must carry a partial record over.
    spare: Vec<u8>,
    /// `pos` when the unprocessed tail was copied into a read op's buffer.
    lent_at: Option<usize>,
    /// The socket reached end of file.
    eof: bool,
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
    /// Small leading slices of a write, coalesced into one record.
    stage: Vec<u8>,
    /// Since when the send buffers have been larger than [`TRIM_ABOVE`].
    big_since: Option<Instant>,
    peer_closed: bool,
}

/// A TLS connection over caller-driven I/O.
pub struct Session {
    side: Side,
    rx: Rx,
    bufs: Bufs,
    /// The error that ended the connection; rustls must not process input after one.
    failed: Option<(io::ErrorKind, String)>,
}

impl Session {
    pub fn new(side: impl Into<Side>) -> Self {
        Session {
            side: side.into(),
            rx: Rx::default(),
            bufs: Bufs::default(),
            failed: None,
        }
    }

    /// The connection's negotiated state (peer certificates, ALPN, version).
    pub fn common(&self) -> &CommonState {
        match &self.side {
            Side::Client(c) => c,
            Side::Server(s) => s,
        }
    }

    /// Advances the handshake over the ciphertext received so far.
    pub fn handshake(&mut self) -> io::Result<Handshake> {
        loop {
            match self.process(&mut Job::Handshake)? {
                Outcome::Progress => {}
                Outcome::NeedInput if self.rx.eof => return Err(eof_in_handshake()),
                Outcome::NeedInput => return Ok(Handshake::NeedInput),
                Outcome::Traffic | Outcome::Done(_) => return Ok(Handshake::Complete),
                Outcome::Closed => return Err(eof_in_handshake()),
            }
        }
    }

    /// Copies decrypted bytes into `out`, decrypting records while it has room.
    pub fn read(&mut self, out: &mut ReadBuf<'_>) -> io::Result<Read> {
        let start = out.filled().len();
        if self.take_plain(out) {
            return Ok(Read::Data);
        }
        loop {
            let outcome = self.process(&mut Job::Read(out))?;
            if out.filled().len() > start && (out.remaining() == 0 || self.has_plain()) {
                return Ok(Read::Data);
            }
            match outcome {
                Outcome::Progress => continue,
                _ if out.filled().len() > start => return Ok(Read::Data),
                Outcome::Closed => return Ok(Read::Eof),
                _ if self.bufs.peer_closed || self.rx.eof => return Ok(Read::Eof),
                _ => return Ok(Read::NeedInput),
            }
        }
    }

    /// Encrypts `slices` (all of them) into the send buffer; `Ok(0)` while
    /// [`SEND_BUFFER_LIMIT`] of records wait to be sent.
    pub fn write(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.pending() >= SEND_BUFFER_LIMIT || slices.iter().all(|s| s.is_empty()) {
            return Ok(0);
        }
        let mut job = Job::Write(slices);
        loop {
            match self.process(&mut job)? {
                Outcome::Progress => {}
                Outcome::Done(n) => return Ok(n),
                Outcome::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
                Outcome::NeedInput | Outcome::Traffic => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "TLS write before the handshake completed",
                    ))
                }
            }
        }
    }

    /// Queues close_notify (once the peer has it, it sees a clean end of stream).
    pub fn close(&mut self) -> io::Result<()> {
        loop {
            match self.process(&mut Job::Close)? {
                Outcome::Progress => {}
                _ => return Ok(()),
            }
        }
    }

    /// After an error: encodes the alert rustls queued for the peer, if any. One step
    /// only: the next would process the failed input again.
    pub fn encode_alert(&mut self) {
        if self.failed.is_some() {
            let _ = self.step(&mut Job::Handshake);
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

    fn pending(&self) -> usize {
        self.bufs.olen - self.bufs.opos
    }

    /// The buffer the next read op appends to, with room for [`READ_CAPACITY`]. With
    /// nothing left unprocessed it is the receive buffer itself (a waiting connection
    /// holds one buffer, not two); otherwise the spare, with the unprocessed tail (a
    /// partial record) copied to its front.
    pub fn read_buffer(&mut self) -> Vec<u8> {
        let rx = &mut self.rx;
        let tail = rx.buf.len() - rx.pos;
        let mut buf = if tail == 0 {
            rx.spare = Vec::new();
            rx.pos = 0;
            std::mem::take(&mut rx.buf)
        } else {
            std::mem::take(&mut rx.spare)
        };
        buf.clear();
        buf.reserve(READ_CAPACITY + tail);
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
        if n == 0 {
            rx.eof = true;
        }
    }

    fn has_plain(&self) -> bool {
        self.bufs.ppos < self.bufs.plain.len()
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

    fn process(&mut self, job: &mut Job<'_, '_>) -> io::Result<Outcome> {
        if let Some((kind, message)) = &self.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
        let outcome = self.step(job);
        if let Err(e) = &outcome {
            self.failed = Some((e.kind(), e.to_string()));
        }
        outcome
    }

    fn step(&mut self, job: &mut Job<'_, '_>) -> io::Result<Outcome> {
        let input = &mut self.rx.buf[self.rx.pos..];
        let (discard, outcome) = match &mut self.side {
            Side::Client(c) => step(c.process_tls_records(input), job, &mut self.bufs),
            Side::Server(s) => step(s.process_tls_records(input), job, &mut self.bufs),
        };
        self.rx.pos += discard;
        if self.rx.pos == self.rx.buf.len() && self.rx.lent_at.is_none() {
            self.rx.buf.clear();
            self.rx.pos = 0;
        }
        outcome
    }
}

/// Handles one state; returns the bytes to discard from the front of the input.
fn step<D>(
    status: UnbufferedStatus<'_, '_, D>,
    job: &mut Job<'_, '_>,
    bufs: &mut Bufs,
) -> (usize, io::Result<Outcome>) {
    let mut discard = status.discard;
    let state = match status.state {
        Ok(state) => state,
        Err(e) => return (discard, Err(invalid(e))),
    };
    let outcome = match state {
        ConnectionState::ReadTraffic(mut records) => {
            while let Some(record) = records.next_record() {
                match record {
                    Ok(record) => {
                        discard += record.discard;
                        deliver(record.payload, job, bufs);
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
        ConnectionState::WriteTraffic(mut traffic) => write_traffic(&mut traffic, job, bufs),
        ConnectionState::ReadEarlyData(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TLS peer sent early data, which HBONE does not accept",
        )),
        _ => Err(io::Error::other("unknown rustls connection state")),
    };
    (discard, outcome)
}

fn write_traffic<D>(
    traffic: &mut WriteTraffic<'_, D>,
    job: &mut Job<'_, '_>,
    bufs: &mut Bufs,
) -> io::Result<Outcome> {
    match job {
        Job::Write(slices) => Ok(Outcome::Done(encrypt_slices(traffic, slices, bufs)?)),
        Job::Close => {
            encrypt_into(bufs, 0, |buf| traffic.queue_close_notify(buf))?;
            Ok(Outcome::Done(0))
        }
        Job::Handshake => Ok(Outcome::Traffic),
        Job::Read(_) => Ok(Outcome::NeedInput),
    }
}

/// Decrypted bytes go to the reader's buffer while it has room, the rest to `plain`.
fn deliver(payload: &[u8], job: &mut Job<'_, '_>, bufs: &mut Bufs) {
    let mut rest = payload;
    if let Job::Read(out) = job {
        if bufs.ppos == bufs.plain.len() {
            let n = rest.len().min(out.remaining());
            out.put_slice(&rest[..n]);
            rest = &rest[n..];
        }
    }
    bufs.plain.extend_from_slice(rest);
}

/// Encrypts every slice. Runs of short slices (h2 frame headers, small frames) are
/// copied into `stage` and share a record; a long slice is encrypted where it lies (a
/// 9-byte record ahead of it costs less than copying 16 KiB to top the header up).
fn encrypt_slices<D>(
    traffic: &mut WriteTraffic<'_, D>,
    slices: &[IoSlice<'_>],
    bufs: &mut Bufs,
) -> io::Result<usize> {
    let mut stage = std::mem::take(&mut bufs.stage);
    stage.clear();
    let mut total = 0;
    let mut result = Ok(());
    for slice in slices.iter().map(|s| &s[..]) {
        total += slice.len();
        if slice.len() < COALESCE_BELOW && stage.len() + slice.len() <= MAX_RECORD {
            stage.extend_from_slice(slice);
            continue;
        }
        if !stage.is_empty() {
            result = encrypt_data(traffic, &stage, bufs);
            stage.clear();
        }
        if result.is_ok() {
            result = encrypt_data(traffic, slice, bufs);
        }
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() && !stage.is_empty() {
        result = encrypt_data(traffic, &stage, bufs);
    }
    bufs.stage = stage;
    result.map(|()| total)
}

fn encrypt_data<D>(
    traffic: &mut WriteTraffic<'_, D>,
    data: &[u8],
    bufs: &mut Bufs,
) -> io::Result<()> {
    let room = data.len() + (data.len() / MAX_RECORD + 1) * RECORD_OVERHEAD;
    encrypt_into(bufs, room, |buf| traffic.encrypt(data, buf))
}

/// Runs an encryption into the send buffer's free space, growing it until it fits.
fn encrypt_into(
    bufs: &mut Bufs,
    room: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<()> {
    fill_out(bufs, room.max(RECORD_OVERHEAD), |buf| match f(buf) {
        Ok(n) => Fill::Wrote(n),
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Fill::Grow(required_size)
        }
        Err(e) => Fill::Failed(io::Error::other(e)),
    })
}

/// Encodes a handshake record into the send buffer, growing it until it fits.
fn encode(bufs: &mut Bufs, mut f: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) {
    // Encoding fails only for want of room, or when the record is already out.
    let _ = fill_out(bufs, 4096, |buf| match f(buf) {
        Ok(n) => Fill::Wrote(n),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Fill::Grow(required_size)
        }
        Err(EncodeError::AlreadyEncoded) => Fill::Wrote(0),
    });
}

/// What one attempt to write into the send buffer's free space did.
enum Fill {
    Wrote(usize),
    /// Needs this many bytes of free space.
    Grow(usize),
    Failed(io::Error),
}

/// Calls `f` on at least `need` bytes of free space after the queued records, growing
/// the buffer to what `f` asks for until it fits.
fn fill_out(
    bufs: &mut Bufs,
    mut need: usize,
    mut f: impl FnMut(&mut [u8]) -> Fill,
) -> io::Result<()> {
    loop {
        grow_out(bufs, need);
        match f(&mut bufs.out[bufs.olen..]) {
            Fill::Wrote(n) => {
                bufs.olen += n;
                return Ok(());
            }
            Fill::Grow(required) => need = required,
            Fill::Failed(e) => return Err(e),
        }
    }
}

/// Ensures `need` bytes of initialised free space after `olen`.
fn grow_out(bufs: &mut Bufs, need: usize) {
    if bufs.out.len() - bufs.olen < need {
        bufs.out.resize(bufs.olen + need, 0);
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
