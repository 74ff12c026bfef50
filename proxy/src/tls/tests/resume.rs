//! Session resumption over loopback TCP: what resumes, what it carries, what must not.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

use super::{ca_with, httpbin_id, id, sleep_id, TD};
use crate::identity::Identity;
use crate::tls::resume::{self, expired_peer, resumed, valid_at};
use crate::tls::{peer_identity, server_name, CertStore, CHAIN_FILE};

/// One side after a handshake and a ping/pong: the peer's identity, whether it resumed.
#[derive(Debug, PartialEq)]
struct End {
    peer: Option<Identity>,
    resumed: bool,
}

fn end(conn: &rustls::CommonState) -> End {
    assert!(
        !expired_peer(conn, UnixTime::now()),
        "fresh peer looked expired"
    );
    End {
        peer: peer_identity(conn),
        resumed: resumed(conn),
    }
}

/// Handshake + ping/pong (the pong carries the tickets); returns (client, server).
fn connect(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> (End, End) {
    connect_named(server, client, server_name(IpAddr::V4(Ipv4Addr::LOCALHOST)))
}

/// [`connect`], the client filing the session under `name`.
fn connect_named(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> (End, End) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = rustls::StreamOwned::new(ServerConnection::new(server).unwrap(), tcp);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).unwrap();
        tls.write_all(b"pong").unwrap();
        tls.flush().unwrap();
        end(&tls.conn)
    });
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(ClientConnection::new(client, name).unwrap(), tcp);
    tls.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).unwrap();
    let client_end = end(&tls.conn);
    (client_end, server_side.join().expect("server thread"))
}

fn full(peer: Identity) -> End {
    End {
        peer: Some(peer),
        resumed: false,
    }
}

fn resumed_with(peer: Identity) -> End {
    End {
        peer: Some(peer),
        resumed: true,
    }
}

#[test]
fn second_connection_resumes_and_carries_both_identities() {
    let dir = ca_with("resume", &[sleep_id(), httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let server = store.server_config(&httpbin_id()).unwrap();
    let client = store.client_config(&sleep_id(), &[httpbin_id()]).unwrap();
    let (c, s) = connect(server.clone(), client.clone());
    assert_eq!((c, s), (full(httpbin_id()), full(sleep_id())));
    for _ in 0..3 {
        // The server's identity check ran on the full handshake only; the resumed
        // session still names both ends, which inbound authorization reads.
        let (c, s) = connect(server.clone(), client.clone());
        assert_eq!(
            (c, s),
            (resumed_with(httpbin_id()), resumed_with(sleep_id()))
        );
    }
}

#[test]
fn a_ticket_from_one_pod_resumes_at_another_pod_of_its_node_only() {
    let dir = ca_with("resume-node", &[sleep_id(), httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    // One listener stands for node b's proxy serving every httpbin pod on it.
    let server = store.server_config(&httpbin_id()).unwrap();
    let client = store.client_config(&sleep_id(), &[httpbin_id()]).unwrap();
    let pod = |last: u8, node: &str| {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 244, 2, last));
        resume::session_name(ip, Some(node))
    };
    let (c, _) = connect_named(server.clone(), client.clone(), pod(7, "node-b"));
    assert!(!c.resumed, "first contact with node b");
    let (c, s) = connect_named(server.clone(), client.clone(), pod(8, "node-b"));
    assert_eq!(
        (c, s),
        (resumed_with(httpbin_id()), resumed_with(sleep_id())),
        "another pod on node b resumes node b's session"
    );
    let (c, _) = connect_named(server, client, pod(9, "node-c"));
    assert!(!c.resumed, "node b's tickets are not offered to node c");
}

#[test]
fn session_names_fall_back_to_the_destination_ip() {
    let ip = IpAddr::V4(Ipv4Addr::new(10, 244, 2, 7));
    let by_ip = server_name(ip);
    assert_eq!(resume::session_name(ip, None), by_ip);
    assert_eq!(resume::session_name(ip, Some("")), by_ip);
    assert_eq!(resume::session_name(ip, Some("not a dns name")), by_ip);
    let other = IpAddr::V4(Ipv4Addr::new(10, 244, 9, 9));
    assert_eq!(
        resume::session_name(ip, Some("node-b")),
        resume::session_name(other, Some("node-b"))
    );
    assert_ne!(
        resume::session_name(ip, Some("node-b")),
        resume::session_name(ip, Some("node-c"))
    );
}

#[test]
fn a_ticket_of_one_identity_does_not_resume_at_another() {
    let web = id("spiffe://cluster.local/ns/default/sa/web");
    let dir = ca_with("resume-other", &[sleep_id(), httpbin_id(), web.clone()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    // One client config accepting either server: the cached ticket (for 127.0.0.1) is
    // offered to `web`'s listener, whose ticket key cannot open it.
    let client = store
        .client_config(&sleep_id(), &[httpbin_id(), web.clone()])
        .unwrap();
    let (c, _) = connect(store.server_config(&httpbin_id()).unwrap(), client.clone());
    assert!(!c.resumed);
    let (c, s) = connect(store.server_config(&web).unwrap(), client);
    assert_eq!((c, s), (full(web), full(sleep_id())));
}

#[test]
fn a_reloaded_store_refuses_tickets_of_the_old_one() {
    let dir = ca_with("resume-reload", &[sleep_id(), httpbin_id()]);
    let old = CertStore::load(dir.path(), TD).unwrap();
    let client = old.client_config(&sleep_id(), &[httpbin_id()]).unwrap();
    let (c, _) = connect(old.server_config(&httpbin_id()).unwrap(), client.clone());
    assert!(!c.resumed);
    // A rotation re-issues the leaf; the reload makes new ticket keys.
    super::super::issue(dir.path(), &sleep_id()).unwrap();
    let new = CertStore::load(dir.path(), TD).unwrap();
    let (c, s) = connect(new.server_config(&httpbin_id()).unwrap(), client);
    assert_eq!((c, s), (full(httpbin_id()), full(sleep_id())));
}

#[test]
fn a_rebuilt_client_config_starts_without_sessions() {
    let dir = ca_with("resume-rebuilt", &[sleep_id(), httpbin_id()]);
    let store = CertStore::load(dir.path(), TD).unwrap();
    let server = store.server_config(&httpbin_id()).unwrap();
    let first = store.client_config(&sleep_id(), &[httpbin_id()]).unwrap();
    connect(server.clone(), first);
    let rebuilt = store.client_config(&sleep_id(), &[httpbin_id()]).unwrap();
    let (c, _) = connect(server, rebuilt);
    assert!(
        !c.resumed,
        "sessions must not outlive the config (generation) they came from"
    );
}

#[test]
fn validity_check_of_a_resumed_peer() {
    let dir = ca_with("resume-expiry", &[sleep_id()]);
    let pem = std::fs::read(dir.path().join("default/sleep").join(CHAIN_FILE)).unwrap();
    use rustls::pki_types::pem::PemObject;
    let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    let now = UnixTime::now();
    assert!(valid_at(&leaf, now));
    let years = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 5 * 365 * 86400));
    assert!(
        !valid_at(&leaf, years),
        "a leaf of one year is expired in five"
    );
    let before = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() - 86400));
    assert!(!valid_at(&leaf, before), "not valid before it was issued");
    assert!(!valid_at(
        &rustls::pki_types::CertificateDer::from(vec![1, 2, 3]),
        now
    ));
}

#[test]
fn ticket_keys_rotate_and_bound_ticket_life() {
    let t = resume::ticketer().unwrap();
    assert!(t.enabled());
    assert_eq!(t.lifetime(), 2 * resume::TICKET_KEY_ROTATION);
    let sealed = t.encrypt(b"session").unwrap();
    assert_eq!(t.decrypt(&sealed).as_deref(), Some(&b"session"[..]));
    let other = resume::ticketer().unwrap();
    assert_eq!(other.decrypt(&sealed), None, "keys are random per ticketer");
}
