//! TLS 1.3 records of our own once the handshake is done (I/O-free).
//!
//! rustls negotiates the connection; then [`super::session::Session`] takes its traffic
//! secrets (rustls's kernel-connection API, the one made for kTLS) and seals and opens
//! records itself with ring: a record is built where it is sent from (plaintext copied
//! once, from the caller's slices straight behind its 5-byte header, then sealed in
//! place) and opened where the read op put it. rustls's `encrypt` copied each record's
//! plaintext into a fresh `Vec` and then the sealed record into our buffer: two copies and
//! an allocation per record where this has one copy. rustls keeps what only it can do:
//! the next secrets of a key update and the tickets a server sends.
//!
//! Record format (RFC 8446 5.2): `23 3 3 len16` then the AEAD-sealed `plaintext ||
//! content type || zero padding`, the 5-byte header as associated data, the nonce the
//! IV XOR the record's sequence number.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use rustls::ConnectionTrafficSecrets;

/// The record header: type, legacy version (2), length (2).
pub const HEADER: usize = 5;
/// The AEAD tag of every suite TLS 1.3 uses.
pub const TAG: usize = 16;
/// Largest plaintext of one record.
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Largest sealed length a peer may send (RFC 8446 5.2: 2^14 + 256).
const MAX_SEALED: usize = MAX_PLAINTEXT + 256;
/// What sealing adds to a plaintext: header, content type byte, tag.
pub const OVERHEAD: usize = HEADER + 1 + TAG;
/// Outer type of every TLS 1.3 record after the handshake.
const OUTER_TYPE: u8 = 23;

/// Inner content types (RFC 8446 B.1).
pub mod content {
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

/// Why a record could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("TLS record failed authentication (corrupted, or not from the handshake's peer)")]
    BadRecord,
    #[error("TLS record header {0:02x?} is not a TLS 1.3 application record")]
    BadHeader([u8; HEADER]),
    #[error("TLS record has no content type (all padding)")]
    NoContentType,
    #[error("the negotiated AEAD is not one ring provides here")]
    UnknownAead,
    #[error("TLS sequence numbers exhausted without a key update")]
    Exhausted,
}

/// One direction's key, IV and sequence number.
pub struct Keys {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Keys {
    /// Keys for `secrets`, starting at record `seq`.
    pub fn new(seq: u64, secrets: &ConnectionTrafficSecrets) -> Result<Self, RecordError> {
        let (alg, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return Err(RecordError::UnknownAead),
        };
        let key = UnboundKey::new(alg, key.as_ref()).map_err(|_| RecordError::UnknownAead)?;
        let iv: [u8; NONCE_LEN] = iv
            .as_ref()
            .try_into()
            .map_err(|_| RecordError::UnknownAead)?;
        Ok(Keys {
            key: LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// Records sealed or opened with these keys.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The nonce of the next record; advances the sequence number.
    fn next_nonce(&mut self) -> Result<Nonce, RecordError> {
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq = self.seq.checked_add(1).ok_or(RecordError::Exhausted)?;
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Seals the record in `record`, whose plaintext the caller wrote at
    /// `record[HEADER..HEADER + len]`: writes the header, the content type and the tag.
    /// `record` must be at least `len + OVERHEAD` long; returns the record's length.
    pub fn seal(&mut self, record: &mut [u8], len: usize, typ: u8) -> Result<usize, RecordError> {
        debug_assert!(len <= MAX_PLAINTEXT);
        let sealed = len + 1 + TAG;
        let header = header(sealed);
        record[..HEADER].copy_from_slice(&header);
        record[HEADER + len] = typ;
        let nonce = self.next_nonce()?;
        let (body, rest) = record[HEADER..].split_at_mut(len + 1);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), body)
            .map_err(|_| RecordError::BadRecord)?;
        rest[..TAG].copy_from_slice(tag.as_ref());
        Ok(HEADER + sealed)
    }

    /// Opens the record at the front of `buf` in place, if it is all there.
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Option<Opened>, RecordError> {
        let Some(head) = buf.get(..HEADER) else {
            return Ok(None);
        };
        let header: [u8; HEADER] = head.try_into().expect("slice of HEADER bytes");
        let sealed = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[..3] != [OUTER_TYPE, 3, 3] || !(TAG + 1..=MAX_SEALED).contains(&sealed) {
            return Err(RecordError::BadHeader(header));
        }
        let Some(body) = buf.get_mut(HEADER..HEADER + sealed) else {
            return Ok(None);
        };
        let nonce = self.next_nonce()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(header), body)
            .map_err(|_| RecordError::BadRecord)?;
        // The content type is the last non-zero byte; zeros after it are padding.
        let end = plain
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(RecordError::NoContentType)?;
        Ok(Some(Opened {
            len: HEADER + sealed,
            typ: plain[end],
            plain: HEADER..HEADER + end,
        }))
    }
}

/// A record opened in place.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    /// Bytes of the buffer the record took (consume them once the plaintext is used).
    pub len: usize,
    /// Inner content type.
    pub typ: u8,
    /// Where its plaintext lies in the buffer.
    pub plain: std::ops::Range<usize>,
}

fn header(sealed: usize) -> [u8; HEADER] {
    let [hi, lo] = u16::try_from(sealed)
        .expect("a sealed record is at most 2^14 + 256 bytes")
        .to_be_bytes();
    [OUTER_TYPE, 3, 3, hi, lo]
}

/// Handshake message types after the handshake (RFC 8446 4).
pub mod handshake {
    pub const NEW_SESSION_TICKET: u8 = 4;
    pub const KEY_UPDATE: u8 = 24;
}

/// The next complete handshake message at the front of `buf`: its type, its body and
/// the bytes it took.
pub fn handshake_message(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let [typ, a, b, c, rest @ ..] = buf else {
        return None;
    };
    let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
    let body = rest.get(..len)?;
    Some((*typ, body, 4 + len))
}

/// A KeyUpdate message (RFC 8446 4.6.3); `request` asks the peer to update too.
pub fn key_update(request: bool) -> [u8; 5] {
    [handshake::KEY_UPDATE, 0, 0, 1, u8::from(request)]
}
