//! The target of the hostile-input suite: one in-process zring (node-b) with its HBONE
//! listener on 127.0.0.2 and an echo workload behind it, plus well-behaved clients that
//! prove, after each attack, that other streams and connections still work.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use testsupport::certs::{Leaf, Root};
use testsupport::hbone::{self, Conn, Tunnel};
use zring::config::Config;
use zring::Proxy;

use crate::common::{self, Scratch};

pub mod wire;

pub const SERVER_IP: &str = "127.0.0.2";
pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/httpbin";

pub struct Target {
    proxy: Option<Proxy>,
    pub hbone: SocketAddr,
    pub echo: SocketAddr,
    pub root: Root,
    _scratch: Scratch,
}

impl Target {
    /// Drains the proxy (GOAWAY on its HBONE connections) from another thread; the handle
    /// answers whether the drain finished within `within`.
    pub fn drain(&self, within: std::time::Duration) -> bool {
        self.proxy.as_ref().is_some_and(|p| p.drain(within))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            let _ = p.shutdown();
        }
    }
}

impl Target {
    pub fn start() -> Target {
        Target::start_with(common::own_http2())
    }

    /// `own_http2`: the HBONE listener runs zring's own HTTP/2 (`--hbone-own-http2`).
    pub fn start_with(own_http2: bool) -> Target {
        let scratch = Scratch::new("zri-hostile");
        let dir = scratch.path();
        common::make_certs(dir, &[common::id("cluster.local", "default", "httpbin")]);
        let echo = common::echo_server(&format!("{SERVER_IP}:0"));
        let yaml = common::mesh_yaml("127.0.0.1", "cluster.local", SERVER_IP, echo.port());
        std::fs::write(dir.join("workloads.yaml"), yaml).unwrap();
        let proxy = zring::start(Config {
            config_path: dir.join("workloads.yaml"),
            cert_dir: dir.to_path_buf(),
            node_name: Some("node-b".into()),
            transparent: false,
            cores: 2,
            inbound_addr: Some(format!("{SERVER_IP}:0").parse().unwrap()),
            outbound_addr: None,
            inbound_plaintext_addr: None,
            socks5_addr: None,
            admin_addr: None,
            stats_addr: None,
            readiness_addr: None,
            hbone_own_http2: own_http2,
            ..Config::default()
        })
        .expect("start zring");
        let root = Root::load(
            &dir.join(zring::tls::ROOT_CERT_FILE),
            &dir.join(zring::tls::ROOT_KEY_FILE),
        )
        .unwrap();
        Target {
            hbone: proxy.addrs.inbound.unwrap(),
            proxy: Some(proxy),
            echo,
            root,
            _scratch: scratch,
        }
    }

    /// A client presenting `leaf` (None: no certificate), trusting zring's root.
    pub fn client(&self, leaf: Option<&Leaf>) -> Arc<ClientConfig> {
        hbone::client_config(&self.root.cert_pem, leaf).unwrap()
    }

    /// The well-behaved client of the node's own trust domain.
    pub fn good_client(&self) -> Arc<ClientConfig> {
        self.client(Some(&self.root.valid_leaf(CLIENT_ID).unwrap()))
    }

    /// A verified HBONE connection (server identity checked) with one echoing stream.
    pub async fn good_conn(&self) -> (Conn, Tunnel) {
        let tls = hbone::handshake(self.hbone, self.good_client())
            .await
            .unwrap();
        assert_eq!(hbone::server_identity(&tls).as_deref(), Some(SERVER_ID));
        let mut conn = hbone::h2(tls).await.unwrap();
        let mut tunnel = self.good_stream(&mut conn).await;
        assert_eq!(tunnel.echo(b"before").await.unwrap(), b"before");
        (conn, tunnel)
    }

    /// A new CONNECT to the echo workload on `conn`.
    pub async fn good_stream(&self, conn: &mut Conn) -> Tunnel {
        hbone::connect(conn, &self.echo.to_string())
            .await
            .tunnel()
            .unwrap()
    }

    /// After an attack: the stream opened before it still echoes, a new stream on its
    /// connection works, and so does a brand-new connection.
    pub async fn still_serving(&self, conn: &mut Conn, tunnel: &mut Tunnel) {
        let msg = b"the stream opened before the attack";
        assert_eq!(tunnel.echo(msg).await.unwrap(), msg, "old stream");
        let mut again = self.good_stream(conn).await;
        assert_eq!(again.echo(b"new stream").await.unwrap(), b"new stream");
        let (_fresh, mut t) = self.good_conn().await;
        assert_eq!(t.echo(b"new conn").await.unwrap(), b"new conn");
    }
}
