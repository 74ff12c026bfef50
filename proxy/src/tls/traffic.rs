//! A connection's records after the handshake (I/O-free): our [`super::record`] keys for
//! both directions, and rustls's kernel connection for what only rustls can do (the next
//! secrets of a key update, a server's session tickets into the client's cache).
//!
//! Post-handshake messages handled: NewSessionTicket (client side), KeyUpdate (either
//! side; answered when the peer asks), alerts (close_notify ends the stream,
//! user_canceled is ignored, any other is fatal). We send a KeyUpdate ourselves before a
//! suite's confidentiality limit of records under one key (2^24 for AES-GCM), as rustls
//! does.

use std::io::{self, IoSlice};

use rustls::client::ClientConnectionData;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;

use super::record::{
    content, handshake, handshake_message, key_update, Keys, RecordError, HEADER, MAX_PLAINTEXT,
    OVERHEAD,
};
use super::session::Side;

/// Handshake bytes a peer may leave unfinished across records (a ticket is a few hundred).
const MAX_PENDING_HANDSHAKE: usize = 64 * 1024;
/// rustls's soft limit of sequence numbers, for suites without a confidentiality limit.
const SEQ_SOFT_LIMIT: u64 = 0xffff_ffff_ffff_0000;
/// Alert descriptions (RFC 8446 6).
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const DECODE_ERROR: u8 = 50;

enum Kernel {
    Client(KernelConnection<ClientConnectionData>),
    Server(KernelConnection<ServerConnectionData>),
}

/// What an opened record carried.
pub enum Record<'a> {
    /// Application data, in place in the receive buffer.
    Data(&'a [u8]),
    /// A post-handshake message or an ignorable alert, handled.
    Control,
    /// The peer's close_notify.
    CloseNotify,
}

/// Keys and post-handshake state of a connection whose handshake is done.
pub struct Traffic {
    tx: Keys,
    rx: Keys,
    kernel: Kernel,
    /// A KeyUpdate is sent before the record with this sequence number.
    tx_limit: u64,
    /// A handshake message split across records.
    pending: Vec<u8>,
    /// The alert description owed to the peer after a failed record.
    fatal: Option<u8>,
}

impl Traffic {
    /// Takes the traffic secrets of a connection whose handshake completed (its config
    /// must enable secret extraction, as zring's do).
    pub fn start(side: Side) -> io::Result<Self> {
        let (secrets, kernel) = match side {
            Side::Client(c) => {
                let (s, k) = c.dangerous_into_kernel_connection().map_err(extract)?;
                (s, Kernel::Client(k))
            }
            Side::Server(c) => {
                let (s, k) = c.dangerous_into_kernel_connection().map_err(extract)?;
                (s, Kernel::Server(k))
            }
        };
        let suite = match &kernel {
            Kernel::Client(k) => k.negotiated_cipher_suite(),
            Kernel::Server(k) => k.negotiated_cipher_suite(),
        };
        let limit = suite
            .tls13()
            .map_or(SEQ_SOFT_LIMIT, |s| s.common.confidentiality_limit);
        Ok(Traffic {
            tx: Keys::new(secrets.tx.0, &secrets.tx.1).map_err(record)?,
            rx: Keys::new(secrets.rx.0, &secrets.rx.1).map_err(record)?,
            kernel,
            tx_limit: limit.min(SEQ_SOFT_LIMIT) - 1,
            pending: Vec::new(),
            fatal: None,
        })
    }

    /// Sends a KeyUpdate after `records` more records (tests of key updates).
    #[cfg(test)]
    pub fn update_after(&mut self, records: u64) {
        self.tx_limit = self.tx.seq() + records;
    }

    /// Opens the record at the front of `input`, if complete, and handles what is not
    /// application data (a KeyUpdate the peer asks us to answer is sealed into `out`).
    /// Returns the bytes of `input` it took.
    pub fn open<'a>(
        &mut self,
        input: &'a mut [u8],
        out: &mut Out<'_>,
    ) -> io::Result<Option<(usize, Record<'a>)>> {
        let opened = match self.rx.open(input) {
            Ok(Some(opened)) => opened,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.fatal = Some(match e {
                    RecordError::BadRecord => BAD_RECORD_MAC,
                    _ => DECODE_ERROR,
                });
                return Err(record(e));
            }
        };
        self.fatal = Some(UNEXPECTED_MESSAGE);
        let plain = &input[opened.plain];
        let what = match opened.typ {
            content::APPLICATION_DATA if self.pending.is_empty() => Record::Data(plain),
            content::HANDSHAKE => {
                self.post_handshake(plain, out)?;
                Record::Control
            }
            content::ALERT => alert(plain)?,
            content::APPLICATION_DATA => {
                return Err(invalid(
                    "TLS peer interleaved application data with a post-handshake message",
                ))
            }
            typ => {
                return Err(invalid(format!(
                    "TLS peer sent a record of content type {typ} where application data, \
                     a post-handshake message or an alert was expected"
                )))
            }
        };
        self.fatal = None;
        Ok(Some((opened.len, what)))
    }

    /// After a failed record: seals the fatal alert the peer is owed, once.
    pub fn seal_fatal(&mut self, out: &mut Out<'_>) {
        if let Some(desc) = self.fatal.take() {
            let _ = self.seal_control(out, content::ALERT, &[2, desc]);
        }
    }

    /// Seals all of `slices` as application data records of up to 16 KiB each, their
    /// plaintext copied straight behind each record's header in `out`.
    pub fn seal_data(&mut self, slices: &[IoSlice<'_>], out: &mut Out<'_>) -> io::Result<usize> {
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let records = total.div_ceil(MAX_PLAINTEXT);
        out.reserve(total + records * OVERHEAD);
        let mut rest = slices.iter().map(|s| &s[..]).filter(|s| !s.is_empty());
        let mut cur: &[u8] = &[];
        let mut left = total;
        while left > 0 {
            self.update_tx_when_due(out)?;
            let len = left.min(MAX_PLAINTEXT);
            out.reserve(len + OVERHEAD);
            let body = &mut out.free()[HEADER..HEADER + len];
            let mut at = 0;
            while at < len {
                if cur.is_empty() {
                    cur = rest.next().expect("the slices hold `total` bytes");
                }
                let n = cur.len().min(len - at);
                body[at..at + n].copy_from_slice(&cur[..n]);
                cur = &cur[n..];
                at += n;
            }
            let n = self.tx.seal(out.free(), len, content::APPLICATION_DATA);
            out.advance(n.map_err(record)?);
            left -= len;
        }
        Ok(total)
    }

    /// Seals a close_notify alert.
    pub fn seal_close(&mut self, out: &mut Out<'_>) -> io::Result<()> {
        self.seal_control(out, content::ALERT, &[1, CLOSE_NOTIFY])
    }

    fn seal_control(&mut self, out: &mut Out<'_>, typ: u8, plain: &[u8]) -> io::Result<()> {
        out.reserve(plain.len() + OVERHEAD);
        out.free()[HEADER..HEADER + plain.len()].copy_from_slice(plain);
        let n = self.tx.seal(out.free(), plain.len(), typ).map_err(record)?;
        out.advance(n);
        Ok(())
    }

    /// Before the suite's limit of records under one key: a KeyUpdate (sealed with the
    /// old key), then the new key.
    fn update_tx_when_due(&mut self, out: &mut Out<'_>) -> io::Result<()> {
        if self.tx.seq() < self.tx_limit {
            return Ok(());
        }
        self.update_tx(out)
    }

    fn update_tx(&mut self, out: &mut Out<'_>) -> io::Result<()> {
        self.seal_control(out, content::HANDSHAKE, &key_update(false))?;
        let (seq, secrets) = match &mut self.kernel {
            Kernel::Client(k) => k.update_tx_secret(),
            Kernel::Server(k) => k.update_tx_secret(),
        }
        .map_err(invalid)?;
        self.tx = Keys::new(seq, &secrets).map_err(record)?;
        self.tx_limit = self.tx_limit.max(self.tx.seq() + 1);
        Ok(())
    }

    fn post_handshake(&mut self, plain: &[u8], out: &mut Out<'_>) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(plain);
        let mut at = 0;
        while let Some((typ, body, n)) = handshake_message(&buf[at..]) {
            self.handle(typ, body, out)?;
            at += n;
        }
        buf.drain(..at);
        if buf.len() > MAX_PENDING_HANDSHAKE {
            return Err(invalid("TLS peer sent an oversized post-handshake message"));
        }
        self.pending = buf;
        Ok(())
    }

    fn handle(&mut self, typ: u8, body: &[u8], out: &mut Out<'_>) -> io::Result<()> {
        match (typ, &mut self.kernel) {
            (handshake::NEW_SESSION_TICKET, Kernel::Client(k)) => {
                k.handle_new_session_ticket(body).map_err(invalid)
            }
            (handshake::KEY_UPDATE, kernel) => {
                let requested = match body {
                    [0] => false,
                    [1] => true,
                    _ => return Err(invalid("TLS peer sent a malformed KeyUpdate")),
                };
                let (seq, secrets) = match kernel {
                    Kernel::Client(k) => k.update_rx_secret(),
                    Kernel::Server(k) => k.update_rx_secret(),
                }
                .map_err(invalid)?;
                self.rx = Keys::new(seq, &secrets).map_err(record)?;
                if requested {
                    self.update_tx(out)?;
                }
                Ok(())
            }
            _ => Err(invalid(format!(
                "TLS peer sent handshake message {typ} after the handshake"
            ))),
        }
    }
}

fn alert(plain: &[u8]) -> io::Result<Record<'static>> {
    match plain {
        [_, CLOSE_NOTIFY] => Ok(Record::CloseNotify),
        [_, USER_CANCELED] => Ok(Record::Control),
        [_, desc] => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("TLS peer sent alert {desc}"),
        )),
        _ => Err(invalid("TLS peer sent a malformed alert")),
    }
}

/// The send buffer: `buf[..len]` is queued; `buf` stays initialised (zeroed once, on
/// growth), so sealing into it costs no memset.
pub struct Out<'a> {
    pub buf: &'a mut Vec<u8>,
    pub len: &'a mut usize,
}

impl Out<'_> {
    /// Ensures `need` bytes of free space after what is queued.
    pub fn reserve(&mut self, need: usize) {
        if self.buf.len() - *self.len < need {
            self.buf.resize(*self.len + need, 0);
        }
    }

    fn free(&mut self) -> &mut [u8] {
        &mut self.buf[*self.len..]
    }

    fn advance(&mut self, n: usize) {
        *self.len += n;
    }
}

fn extract(e: rustls::Error) -> io::Error {
    io::Error::other(format!(
        "taking the TLS traffic secrets from rustls failed ({e}); zring's TLS configs \
         enable secret extraction"
    ))
}

fn record(e: RecordError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
