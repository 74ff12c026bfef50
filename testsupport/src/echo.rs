//! Blocking echo servers. The caller binds the listener (inside a netns if it wants:
//! a socket keeps the namespace it was created in), so this module never changes
//! namespace itself.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

/// Serves `listener` forever on a background thread: each connection gets its bytes
/// back, then FIN after the client's FIN.
pub fn spawn(listener: TcpListener) {
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || echo(conn));
        }
    });
}

fn echo(mut conn: TcpStream) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = conn.shutdown(Shutdown::Write);
}
