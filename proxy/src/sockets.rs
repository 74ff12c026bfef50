//! Socket construction with socket2: listeners (SO_REUSEPORT, optional IP_TRANSPARENT)
//! and upstream sockets that leave with the client's source address.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};

use monoio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::sys;

/// Listen backlog: large enough for connect-per-request bursts at tens of thousands/s.
const BACKLOG: i32 = 4096;

fn new_tcp(addr: &SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_cloexec(true)?;
    Ok(socket)
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
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Connects to `dst`, leaving from `source` when given (IP_TRANSPARENT spoofing).
pub async fn connect(dst: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    established(begin_connect(dst, source)?).await
}

/// A socket whose connect to `dst` has started (its local address is known from here on),
/// leaving from `source` when given.
///
/// monoio has no API to connect a pre-built socket, so: a non-blocking connect here, then
/// [`established`] hands the fd to monoio, waits for writability and reads SO_ERROR.
pub fn begin_connect(dst: SocketAddr, source: Option<IpAddr>) -> io::Result<Socket> {
    let socket = new_tcp(&dst)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        let bind = SocketAddr::new(ip, 0);
        set_transparent(&socket, &bind)?;
        if bind.is_ipv4() {
            socket.set_freebind_v4(true)?;
            sys::set_bind_address_no_port(&socket)?;
        }
        socket.bind(&SockAddr::from(bind))?;
    }
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
