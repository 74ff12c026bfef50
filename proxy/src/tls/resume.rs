//! TLS 1.3 session resumption between HBONE peers: stateless tickets on the server,
//! a bounded session cache on the client, and the checks that keep a resumed session
//! as trustworthy as the full handshake it came from (ARCHITECTURE.md, "Session
//! resumption").
//!
//! | what | where | bound |
//! |---|---|---|
//! | ticket key | one [`TicketRotator`] per local identity per [`super::CertStore`] | a new key every [`TICKET_KEY_ROTATION`] s, tickets accepted ≤ 2× that |
//! | client sessions | one `ClientSessionMemoryCache` per client config (one per core, source identity and destination identity, rebuilt when the certificates change), filed by the destination's node ([`session_name`]) | [`CLIENT_SESSIONS`] tickets |
//! | tickets sent | after every full or resumed handshake | [`TICKETS_PER_HANDSHAKE`] |
//!
//! What a resumption cannot do: resume into another identity's listener (its ticket key
//! differs), survive a certificate or trust bundle reload (a new store makes new keys,
//! new client configs make new caches, and rustls refuses a cached session from another
//! verifier or client certificate), outlive the peer's certificate ([`expired_peer`]),
//! or carry 0-RTT data (early data stays off).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::crypto::ring::Ticketer;
use rustls::crypto::GetRandomFailed;
use rustls::pki_types::{CertificateDer, DnsName, ServerName, UnixTime};
use rustls::server::ProducesTickets;
use rustls::{CommonState, HandshakeKind, TicketRotator};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// Seconds a ticket key encrypts new tickets; it still decrypts for as long again, so a
/// ticket is good for at most twice this. Istio leaves live 24 h and renew at 12 h.
pub const TICKET_KEY_ROTATION: u32 = 30 * 60;
/// Tickets the server sends after each handshake: each resumption spends one and
/// brings one back. One rather than rustls's two: each ticket is an encryption of the
/// client's chain and a record to send and store, on every new connection (the pairs
/// figure measured 0.723 vs 0.742 ms CPU per resumed pair, `results/2026-12-07-4e17b3f-pairs/`);
/// a second connection opened to the same pod while the first still handshakes does a
/// full handshake.
pub const TICKETS_PER_HANDSHAKE: usize = 1;
/// Tickets one client config keeps (rustls holds at most 8 per [`session_name`], so this
/// covers 32 destination nodes of one identity per source identity and core).
pub const CLIENT_SESSIONS: usize = 256;

/// A fresh ticket key store for one local identity: rotates every
/// [`TICKET_KEY_ROTATION`] seconds (ChaCha20-Poly1305, random keys never written out).
pub fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    Ok(Arc::new(TicketRotator::new(TICKET_KEY_ROTATION, one_key)?))
}

/// One random key (ring's ticketer, replaced by the rotator long before its own 6 h
/// rotation would start).
fn one_key() -> Result<Box<dyn ProducesTickets>, GetRandomFailed> {
    let key = Ticketer::new().map_err(|_| GetRandomFailed)?;
    Ok(Box::new(OneKey(key)))
}

struct OneKey(Arc<dyn ProducesTickets>);

impl fmt::Debug for OneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneKey")
    }
}

impl ProducesTickets for OneKey {
    fn enabled(&self) -> bool {
        true
    }
    fn lifetime(&self) -> u32 {
        TICKET_KEY_ROTATION
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(cipher)
    }
}

/// Suffix of the names [`session_name`] files sessions under (`.invalid`: never a real
/// host; HBONE sends no SNI, so the name never leaves the process).
const NODE_SUFFIX: &str = ".node.hbone.invalid";

/// The name a client config files its sessions with a destination under (the
/// `ServerName` handed to rustls: its session cache key; no SNI is sent and the verifier
/// ignores it): the node serving the destination when the workload config names it,
/// else the destination IP.
///
/// A ticket opens at whatever listener holds the key that sealed it, which is one per
/// local identity per proxy, not one per pod. So a source's first connection to any pod
/// of identity X on node B brings a ticket that resumes its connection to every other pod
/// of X on B (a new pod pair needs no full handshake once the pair of nodes has met),
/// while tickets of node B are never offered to node C. It proves no less than a ticket
/// filed under the pod's IP: the client config is per (source, destination identity), the
/// full handshake checked the identity and never the IP, and the resumption proves the
/// server holds the secret of that full handshake.
pub fn session_name(dst: IpAddr, node: Option<&str>) -> ServerName<'static> {
    let scoped = node
        .filter(|n| !n.is_empty())
        .and_then(|n| DnsName::try_from(format!("{n}{NODE_SUFFIX}")).ok());
    match scoped {
        Some(name) => ServerName::DnsName(name),
        None => ServerName::IpAddress(dst.into()),
    }
}

/// Whether the handshake just completed resumed an earlier session.
pub fn resumed(conn: &CommonState) -> bool {
    conn.handshake_kind() == Some(HandshakeKind::Resumed)
}

/// For a resumed session: whether the peer's leaf (carried over from the full handshake,
/// not re-verified by rustls) has expired or cannot be read at `now`. Always false for a
/// full handshake, whose verifier has just checked the chain.
pub fn expired_peer(conn: &CommonState, now: UnixTime) -> bool {
    if !resumed(conn) {
        return false;
    }
    match conn.peer_certificates().and_then(|c| c.first()) {
        Some(leaf) => !valid_at(leaf, now),
        None => true,
    }
}

/// Whether `now` lies inside the certificate's notBefore..=notAfter.
pub fn valid_at(cert: &CertificateDer<'_>, now: UnixTime) -> bool {
    let Ok((_, x509)) = X509Certificate::from_der(cert) else {
        return false;
    };
    let now = now.as_secs() as i64;
    let v = x509.validity();
    v.not_before.timestamp() <= now && now <= v.not_after.timestamp()
}
