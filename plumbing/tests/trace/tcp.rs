//! Real traffic: iptables counters, a transparent listener, a round trip.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use plumbing::netns;
use socket2::{Domain, Socket, Type};

use super::common;

/// `iptables-save -c` of mangle and nat in `ns`: (table, chain, number in chain) → packets.
pub fn counters(ns: &str) -> HashMap<(String, String, usize), u64> {
    let mut out = HashMap::new();
    for table in ["mangle", "nat"] {
        let mut seen = HashMap::<String, usize>::new();
        for l in common::sh(ns, &["iptables-save", "-c", "-t", table]).lines() {
            let Some((c, rule)) = l.strip_prefix('[').and_then(|r| r.split_once("] -A ")) else {
                continue;
            };
            let chain = rule.split(' ').next().unwrap_or("").to_string();
            let n = seen.entry(chain.clone()).or_default();
            *n += 1;
            let pkts = c
                .split(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            out.insert((table.to_string(), chain, *n), pkts);
        }
    }
    out
}

pub fn round_trip(c: &mut TcpStream, s: &mut TcpStream) {
    use std::io::{Read, Write};
    for x in [&*c, &*s] {
        x.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    c.write_all(&[7u8; 10_000]).unwrap();
    let mut buf = vec![0u8; 10_000];
    s.read_exact(&mut buf).unwrap();
    s.write_all(b"pong").unwrap();
    let mut pong = [0u8; 4];
    c.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"pong");
}

pub fn transparent_listener(ns: &str, port: u16) -> TcpListener {
    netns::run_in(Some(ns), || {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.set_ip_transparent_v4(true)?;
        s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
        s.listen(16)?;
        Ok::<TcpListener, std::io::Error>(s.into())
    })
    .unwrap()
    .unwrap()
}

pub fn accept(l: &TcpListener) -> (TcpStream, SocketAddr) {
    l.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match l.accept() {
            Ok((s, p)) => {
                s.set_nonblocking(false).unwrap();
                return (s, p);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no captured connection: {e}"),
        }
    }
}
