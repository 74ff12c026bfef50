//! Root-only: zring asks the CA for 4 s certificates (`SECRET_TTL=4s`) and must renew
//! each when half of its remaining validity is gone — about every 2 s, not on every
//! tick — and serve the new one: the certificate its HBONE port presents changes, an
//! HBONE echo still works after the first certificate expired, and the CA requests
//! are counted in `/metrics` with no failure. Fails, never skips, under CI.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::xds::{
    config, connect_in, echo_rounds, echo_server, get_in, sample, socks_connect, spawn_zring_with,
    wait_for, workload, Site, SLEEP, ZRING_READY, ZRING_SOCKS, ZRING_STATS,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use zring_loadgen::control::Event;

/// A local HBONE workload: zring's own inbound presents its certificate.
const SERVER: &str = "10.77.0.3";
const SERVER_ID: &str = "spiffe://cluster.local/ns/zxd/sa/server";
const PORT: u16 = 8080;
const TTL: Duration = Duration::from_secs(4);

/// Records the end-entity certificate the server presents; verifies nothing (the test
/// compares what it recorded, and the handshake fails anyway without a client cert).
#[derive(Debug, Default)]
struct Recorder(Mutex<Option<Vec<u8>>>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        zring::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The DER certificate zring presents on `addr` (a TLS handshake without a client
/// certificate, which zring then refuses).
fn served_cert(ns: &str, addr: SocketAddr) -> Vec<u8> {
    let recorder = Arc::new(Recorder::default());
    let cfg = rustls::ClientConfig::builder_with_provider(zring::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut tcp = connect_in(ns, addr).expect("zring's HBONE port");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    let _ = stream
        .write_all(b"x")
        .and_then(|()| stream.read(&mut [0u8; 1]));
    let der = recorder.0.lock().unwrap().take();
    der.expect("zring presented no certificate")
}

#[test]
fn zring_renews_its_certificates_at_half_life_and_serves_the_new_one() {
    if !common::can_run("the zring certificate renewal test", &["ip"]) {
        return;
    }
    let site = Site::new("renew", &[SLEEP, SERVER]);
    let ns = site.ns.as_str();
    let cp = site.control_plane(config(&[
        workload("sleep", SLEEP, "HBONE", "node-a"),
        workload("server", SERVER, "HBONE", "node-a"),
    ]));
    let target: SocketAddr = format!("{SERVER}:{PORT}").parse().unwrap();
    echo_server(ns, target);
    let zr = spawn_zring_with(
        ns,
        &site.dir,
        cp.addr(),
        &[("--inbound-addr", "0.0.0.0:15008")],
        &[("SECRET_TTL", "4s")],
    );
    let scrape = || get_in(ns, ZRING_STATS, "/metrics").map_or(String::new(), |(_, b)| b);
    let context = || format!("events: {:#?}\nzring log:\n{}", cp.events(), zr.log());
    let issued = || {
        let id = Event::Issued {
            identity: SERVER_ID.into(),
        };
        cp.events().iter().filter(|e| **e == id).count()
    };
    wait_for(
        Duration::from_secs(20),
        "zring did not become ready on its xDS state",
        || matches!(get_in(ns, ZRING_READY, "/healthz/ready"), Some((200, _))),
        context,
    );
    let start = Instant::now();
    let hbone: SocketAddr = format!("{SERVER}:15008").parse().unwrap();
    let first = served_cert(ns, hbone);
    echo_rounds(socks_connect(ns, ZRING_SOCKS, target), &context);

    // Renewal at half of the remaining validity: ~2 s apart for a 4 s certificate.
    wait_for(
        Duration::from_secs(10),
        "zring did not renew the server's certificate twice",
        || issued() >= 3,
        context,
    );
    let renewals = issued();
    let after = served_cert(ns, hbone);
    assert_ne!(first, after, "zring still presents its first certificate");
    while start.elapsed() < TTL + Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(100));
    }
    echo_rounds(socks_connect(ns, ZRING_SOCKS, target), &context);
    let elapsed = start.elapsed().as_secs_f64();
    // A renewal on every 200 ms tick would issue ~5 a second; half-life ~0.5 a second.
    assert!(
        (issued() as f64) < 3.0 + elapsed,
        "{} certificates in {elapsed:.1} s (renewing too often)\n{}",
        issued(),
        context()
    );
    assert!(renewals >= 3);

    let metrics = scrape();
    let outcome = |o: &str| {
        sample(
            &metrics,
            "zring_ca_certificate_requests_total",
            &[("outcome", o)],
        )
        .unwrap_or(-1.0)
    };
    assert!(
        outcome("success") >= 6.0,
        "two identities, three each\n{metrics}"
    );
    assert_eq!(outcome("failure"), 0.0, "{metrics}");
}
