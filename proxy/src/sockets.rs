//! Socket construction with socket2: listeners (SO_REUSEPORT, optional IP_TRANSPARENT)
//! and upstream sockets that leave with the client's source address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use monoio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::sys;

/// Listen backlog: large enough for connect-per-request bursts at tens of thousands/s.
const BACKLOG: i32 = 4096;

/// A non-blocking TCP socket. Both flags go with `socket(2)` itself (socket2 adds
/// SOCK_CLOEXEC on Linux): setting them after cost three `fcntl` calls per connection.
fn new_tcp(addr: &SocketAddr) -> io::Result<Socket> {
    let stream = Type::STREAM.nonblocking();
    Socket::new(Domain::for_address(*addr), stream, Some(Protocol::TCP))
}

fn set_transparent(socket: &Socket, addr: &SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V4(_) => socket.set_ip_transparent_v4(true),
        SocketAddr::V6(_) => socket.set_ip_transparent_v6(true),
    }
}

/// Fails with `AddrInUse` when anything already listens on `addr`.
///
/// monoio (and our own listeners) use SO_REUSEPORT, which lets a second process of the
/// same user bind the same port silently; a probe bind *without* SO_REUSEPORT detects it.
pub fn probe_free(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let socket = new_tcp(&addr)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// A listener for one core: SO_REUSEPORT so every core has its own accept queue.
pub fn reuseport_listener(addr: SocketAddr, transparent: bool) -> io::Result<TcpListener> {
    let socket = new_tcp(&addr)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if transparent {
        set_transparent(&socket, &addr)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Connects to `dst`, leaving from `source` when given (IP_TRANSPARENT spoofing).
pub async fn connect(dst: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = bound(dst, source, false)?;
    established(begin_connect(socket, dst)?).await
}

/// A socket for connecting to `dst`, bound to `source` when given (IP_TRANSPARENT
/// spoofing). `port_now`: bind a local port here, so that the socket's local address is
/// known before the connect (`source` or the unspecified address, and the port); otherwise
/// a spoofed socket takes its port at connect time (IP_BIND_ADDRESS_NO_PORT: bind(ip, 0)
/// would reserve a port per source IP and never reuse one in TIME_WAIT).
pub fn bound(dst: SocketAddr, source: Option<IpAddr>, port_now: bool) -> io::Result<Socket> {
    let socket = match crate::inpod::pods::netns_for(source, dst) {
        // In-pod mode: made in the pod's namespace, marked so its rules let it through.
        Some(ns) => {
            let s = crate::inpod::pods::in_netns(ns.fd(), || new_tcp(&dst))?;
            crate::inpod::pods::mark(&s)?;
            s
        }
        None => new_tcp(&dst)?,
    };
    socket.set_tcp_nodelay(true)?;
    match source {
        Some(ip) => {
            let bind = SocketAddr::new(ip, 0);
            set_transparent(&socket, &bind)?;
            if bind.is_ipv4() {
                socket.set_freebind_v4(true)?;
                if !port_now {
                    sys::set_bind_address_no_port(&socket)?;
                }
            }
            socket.bind(&SockAddr::from(bind))?;
        }
        None if port_now => {
            let any: IpAddr = match dst {
                SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            };
            socket.bind(&SockAddr::from(SocketAddr::new(any, 0)))?;
        }
        None => {}
    }
    Ok(socket)
}

/// Starts `socket`'s non-blocking connect to `dst`. monoio has no API to connect a
/// pre-built socket, so [`established`] then hands the fd to monoio, waits for
/// writability and reads SO_ERROR.
pub fn begin_connect(socket: Socket, dst: SocketAddr) -> io::Result<Socket> {
    match socket.connect(&dst.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket)
}

/// Waits until the connect [`begin_connect`] started has succeeded or failed.
pub async fn established(socket: Socket) -> io::Result<TcpStream> {
    let stream = TcpStream::from_std(socket.into())?;
    stream.writable(false).await?;
    if let Some(err) = sys::take_error(&stream)? {
        return Err(err);
    }
    Ok(stream)
}
