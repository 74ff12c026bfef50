//! Golden cases: the articles' flows through their own rule dumps.

use super::fixture::{self, CLIENT, SERVER};
use super::*;

fn q(src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, port: u16, proto: Proto) -> Query {
    Query {
        src,
        dst,
        port,
        proto,
        endpoint: None,
    }
}

#[test]
fn print_main_flow() {
    let t = trace(&fixture::articles(), &q(CLIENT, SERVER, 8080, Proto::Tcp));
    println!("{}", render_text(&t));
}
