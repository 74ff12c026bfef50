//! The servers that run in the server pods: an HTTP/1.1 echo responder and a bulk TCP
//! sink, one monoio runtime per core on SO_REUSEPORT listeners. Both report the source
//! IP they saw (`x-client-ip` header, sink preamble) so the client can check that the
//! mesh preserved it.

use crate::checksum::{fnv, Fnv};
use crate::cores;
use crate::error::{Error, Result};
use crate::proto::{self, SINK_SUM_PREFIX};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

/// Read buffer per connection.
const READ_BUF: usize = 64 * 1024;

/// A deliberate one-time stall of the HTTP responder (tests of coordinated omission).
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    /// Stall before answering this request number (per core, counting from 0).
    pub at_request: u64,
    pub duration: Duration,
}

/// What to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind_ip: IpAddr,
    pub http_port: u16,
    pub sink_port: u16,
    pub cores: usize,
    pub stall: Option<Stall>,
}

/// The ports actually bound (differs from the config when it asked for port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub http: SocketAddr,
    pub sink: SocketAddr,
}

/// Starts the servers on `cfg.cores` threads (inside `netns` if given) and returns
/// once core 0 is listening. The threads serve until the process exits.
pub fn start(cfg: &ServeConfig, netns: Option<&str>) -> Result<Bound> {
    let bound = start_core(cfg.clone(), netns, 0)?;
    let pinned = ServeConfig {
        http_port: bound.http.port(),
        sink_port: bound.sink.port(),
        ..cfg.clone()
    };
    for core in 1..cfg.cores.max(1) {
        start_core(pinned.clone(), netns, core)?;
    }
    Ok(bound)
}

fn start_core(cfg: ServeConfig, netns: Option<&str>, core: usize) -> Result<Bound> {
    let (tx, rx) = mpsc::channel();
    cores::spawn_core(
        format!("zrl-serve{core}"),
        netns.map(str::to_string),
        move || serve_core(cfg, tx),
    )?;
    rx.recv()
        .map_err(|_| Error::Topology("a server core exited before listening".into()))?
}

async fn serve_core(cfg: ServeConfig, ready: mpsc::Sender<Result<Bound>>) -> Result<()> {
    let listen = |port| {
        let addr = SocketAddr::new(cfg.bind_ip, port);
        TcpListener::bind_with_config(addr, &ListenerOpts::new().backlog(4096)).map_err(Error::io(
            format!("listening on {addr} (another server already running?)"),
        ))
    };
    let bound = listen(cfg.http_port).and_then(|h| Ok((h, listen(cfg.sink_port)?)));
    let (http, sink) = match bound {
        Ok(pair) => pair,
        Err(e) => {
            let _ = ready.send(Err(Error::Topology(e.to_string())));
            return Err(e);
        }
    };
    let addrs = Bound {
        http: http
            .local_addr()
            .map_err(Error::io("reading the HTTP listener address"))?,
        sink: sink
            .local_addr()
            .map_err(Error::io("reading the sink listener address"))?,
    };
    let _ = ready.send(Ok(addrs));
    monoio::spawn(accept_loop(
        sink,
        |s, peer, _| sink_conn(s, peer),
        Rc::new(Cell::new(0)),
        None,
    ));
    accept_loop(http, http_conn, Rc::new(Cell::new(0)), cfg.stall).await;
    Ok(())
}

async fn accept_loop<F, Fut>(l: TcpListener, handle: F, served: Rc<Cell<u64>>, stall: Option<Stall>)
where
    F: Fn(TcpStream, IpAddr, Handler) -> Fut + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + 'static,
{
    loop {
        let Ok((stream, peer)) = l.accept().await else {
            monoio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let h = Handler {
            served: served.clone(),
            stall,
        };
        monoio::spawn(handle(stream, peer.ip(), h));
    }
}

/// Per-core request counter and stall setting shared by the HTTP connections.
struct Handler {
    served: Rc<Cell<u64>>,
    stall: Option<Stall>,
}

impl Handler {
    async fn maybe_stall(&self) {
        let n = self.served.get();
        self.served.set(n + 1);
        if let Some(s) = self.stall.filter(|s| s.at_request == n) {
            monoio::time::sleep(s.duration).await;
        }
    }
}

/// Reads more bytes into `acc`; returns 0 on EOF.
pub(crate) async fn read_more(
    s: &mut TcpStream,
    acc: &mut Vec<u8>,
    buf: Vec<u8>,
) -> (std::io::Result<usize>, Vec<u8>) {
    let (res, buf) = s.read(buf).await;
    if let Ok(n) = res {
        acc.extend_from_slice(&buf[..n]);
    }
    (res, buf)
}

async fn http_conn(mut s: TcpStream, peer: IpAddr, h: Handler) -> std::io::Result<()> {
    let mut acc = Vec::with_capacity(READ_BUF);
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let head = loop {
            match proto::parse_head(&acc) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
            let (res, b) = read_more(&mut s, &mut acc, buf).await;
            buf = b;
            if res? == 0 {
                return Ok(());
            }
        };
        let total = head.header_len + head.content_length;
        while acc.len() < total {
            let (res, b) = read_more(&mut s, &mut acc, buf).await;
            buf = b;
            if res? == 0 {
                return Ok(());
            }
        }
        h.maybe_stall().await;
        let body = &acc[head.header_len..total];
        let mut out = proto::response_head(body.len(), peer, fnv(body), head.close);
        out.extend_from_slice(body);
        acc.drain(..total);
        let (res, _) = s.write_all(out).await;
        res?;
        if head.close {
            return s.shutdown().await;
        }
    }
}

async fn sink_conn(mut s: TcpStream, peer: IpAddr) -> std::io::Result<()> {
    let (res, _) = s.write_all(proto::sink_preamble(peer)).await;
    res?;
    let mut buf = vec![0u8; READ_BUF * 4];
    let (mut total, mut sum) = (0u64, Fnv::default());
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        let n = res?;
        if n == 0 {
            break;
        }
        let already = total as usize;
        if already < SINK_SUM_PREFIX {
            sum.update(&buf[..n.min(SINK_SUM_PREFIX - already)]);
        }
        total += n as u64;
    }
    let (res, _) = s.write_all(proto::sink_trailer(total, sum.finish())).await;
    res?;
    s.shutdown().await
}
