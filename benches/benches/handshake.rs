//! One HBONE TLS handshake, both sides in memory, with zring's configs (TLS 1.3, ring,
//! mutual SPIFFE certificates from the dev CA, ECDSA P-256 leaves): full (resumption
//! off on the client) against resumed (a ticket from the previous handshake), and the
//! full handshake's key exchange X25519 (what zring and ztunnel offer first) against
//! P-256. Each iteration ends when the client holds the server's new tickets.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rustls::client::Resumption;
use rustls::crypto::{ring::kx_group, CryptoProvider, SupportedKxGroup};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use zring::tls;
use zring::tls::verify::SpiffeServerVerifier;
use zring_benches::{identities, server_name, shuttle, Identities};

/// zring's client config, with the key exchange restricted to `kx` and no resumption.
fn full_client(c: &Identities, kx: &'static dyn SupportedKxGroup) -> Arc<ClientConfig> {
    let provider = CryptoProvider {
        kx_groups: vec![kx],
        ..(*tls::provider()).clone()
    };
    let algs = provider.signature_verification_algorithms;
    let verifier = SpiffeServerVerifier::new(c.store.roots().clone(), vec![c.server.clone()], algs);
    let key = c.store.certified_key(&c.client).unwrap().clone();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
    config.enable_sni = false;
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// A whole handshake, tickets included; whether it resumed.
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> bool {
    let mut c = ClientConnection::new(client.clone(), server_name()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    while shuttle(&mut c, &mut s) | shuttle(&mut s, &mut c) {}
    assert!(!c.is_handshaking() && !s.is_handshaking());
    c.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

fn handshakes(cr: &mut Criterion) {
    let c = identities("hs");
    let server = c.store.server_config(&c.server).unwrap();
    let resuming = c
        .store
        .client_config(&c.client, std::slice::from_ref(&c.server))
        .unwrap();
    assert!(
        !handshake(&resuming, &server),
        "the first handshake is a full one"
    );
    let mut g = cr.benchmark_group("hbone_handshake");
    g.bench_function("full_x25519", |b| {
        let client = full_client(&c, kx_group::X25519);
        b.iter(|| assert!(!black_box(handshake(&client, &server))))
    });
    g.bench_function("full_p256", |b| {
        let client = full_client(&c, kx_group::SECP256R1);
        b.iter(|| assert!(!black_box(handshake(&client, &server))))
    });
    g.bench_function("resumed", |b| {
        b.iter(|| assert!(black_box(handshake(&resuming, &server))))
    });
    g.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
