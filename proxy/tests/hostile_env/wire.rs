//! The attacks' plumbing: reading until the server closes, expecting alerts, statuses
//! and frames.

use std::sync::Arc;
use std::time::Duration;

use rustls::AlertDescription as Alert;
use testsupport::h2raw::{self, Frame};
use testsupport::hbone::{self, Answer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::Target;

/// Reads everything until EOF or reset; Err when the peer keeps the socket open past `limit`.
pub async fn drain<R: AsyncRead + Unpin>(r: &mut R, limit: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    match tokio::time::timeout(limit, read).await {
        Ok(()) => Ok(got),
        Err(_) => Err(got),
    }
}

/// Expects a handshake with `client` to be refused with one of `alerts`.
pub async fn refused_with(
    target: &Target,
    client: Arc<rustls::ClientConfig>,
    alerts: &[Alert],
    what: &str,
) {
    let got = hbone::refusal(target.hbone, client).await;
    match got {
        Ok(a) if alerts.contains(&a) => eprintln!("{what}: refused with {a:?}"),
        other => panic!("{what}: expected one of {alerts:?}, got {other:?}"),
    }
}

/// A TLS connection (valid client cert) that then sends `junk`; returns all the server
/// sent until it closed, or panics if it keeps the connection open.
pub async fn after_handshake(target: &Target, junk: &[u8]) -> Vec<Frame> {
    let mut tls = hbone::handshake(target.hbone, target.good_client())
        .await
        .unwrap();
    tls.write_all(junk).await.unwrap();
    tls.flush().await.unwrap();
    let back = drain(&mut tls, Duration::from_secs(5))
        .await
        .expect("h2 garbage left the connection open");
    h2raw::parse(&back)
}

pub fn goaway(frames: &[Frame]) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.ty == h2raw::GOAWAY)
        .and_then(Frame::error_code)
}

/// CONNECT `authority` on a good connection: must be answered `400`, and the connection
/// must go on serving.
pub async fn bad_request(target: &Target, authority: &str) {
    let (mut conn, mut tunnel) = target.good_conn().await;
    let answer = hbone::connect(&mut conn, authority).await;
    assert!(
        matches!(answer, Answer::Status(400, None)),
        "CONNECT {authority}: {answer:?}"
    );
    target.still_serving(&mut conn, &mut tunnel).await;
}

/// Reads frames until `done` says so (or 15 s pass); returns them.
pub async fn read_until<R: AsyncRead + Unpin>(
    r: &mut R,
    mut done: impl FnMut(&Frame) -> bool,
) -> Vec<Frame> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(f) = h2raw::read_frame(r).await.expect("read a frame") {
            let stop = done(&f);
            seen.push(f);
            if stop {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(15), read).await;
    seen
}
