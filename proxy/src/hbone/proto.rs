//! HBONE request building and validation: pure functions over `http` types.
//!
//! Inbound checks follow ztunnel's order (HBONE.md): method, authority syntax, authority
//! IP is the local workload the connection was addressed to; policy and upstream connect
//! come later in the data plane.

use std::net::{IpAddr, SocketAddr};

use http::{Method, Request, StatusCode};

use crate::config::is_proxy_port;

/// Header ztunnel sends with the original client address (`for="ip:port"`).
pub const FORWARDED: &str = "forwarded";

/// Builds the CONNECT request for one tunnelled connection.
pub fn connect_request(authority: SocketAddr, client: SocketAddr) -> Request<()> {
    Request::builder()
        .method(Method::CONNECT)
        .uri(authority.to_string())
        .version(http::Version::HTTP_2)
        .header(FORWARDED, format!("for=\"{client}\""))
        .body(())
        .expect("CONNECT request from a SocketAddr authority is always valid")
}

/// Why an inbound CONNECT is refused, with the status it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("method {0} is not CONNECT")]
    NotConnect(String),
    #[error("authority {0:?} is not ip:port")]
    BadAuthority(String),
    #[error("authority IP {authority} is not the local workload {local} this connection was addressed to")]
    NotLocal { authority: IpAddr, local: IpAddr },
    #[error("authority IP {0} is not a workload on this node")]
    UnknownWorkload(IpAddr),
    #[error("denied by authorization policy {0}")]
    Denied(String),
    #[error("authority {0} is one of the proxy's own ports (a loop)")]
    ProxyPort(SocketAddr),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Denied(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Validates method and authority; `local` is the HBONE socket's local address, or `None`
/// when the listener is not addressed per workload (then any local workload is allowed
/// and `is_local` decides). A target on one of the proxy's ports (the well-known ones, or
/// the port this connection arrived on) is a loop and refused.
pub fn validate<B>(
    req: &Request<B>,
    local: Option<SocketAddr>,
    is_local: impl Fn(IpAddr) -> bool,
) -> Result<SocketAddr, Rejection> {
    if req.method() != Method::CONNECT {
        return Err(Rejection::NotConnect(req.method().to_string()));
    }
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| req.uri().to_string());
    let target: SocketAddr = raw.parse().map_err(|_| Rejection::BadAuthority(raw))?;
    if is_proxy_port(target.port()) || local.is_some_and(|l| l.port() == target.port()) {
        return Err(Rejection::ProxyPort(target));
    }
    if let Some(local) = local.map(|l| l.ip()) {
        if local != target.ip() && !local.is_unspecified() {
            return Err(Rejection::NotLocal {
                authority: target.ip(),
                local,
            });
        }
    }
    if !is_local(target.ip()) {
        return Err(Rejection::UnknownWorkload(target.ip()));
    }
    Ok(target)
}

/// The original client address from a `forwarded: for="ip:port"` header, if any.
pub fn forwarded_for<B>(req: &Request<B>) -> Option<SocketAddr> {
    let value = req.headers().get(FORWARDED)?.to_str().ok()?;
    value.split(';').find_map(|part| {
        let v = part.trim().strip_prefix("for=")?;
        v.trim_matches('"').parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn builds_connect_with_authority_and_forwarded() {
        let req = connect_request(addr("10.244.2.5:8080"), addr("10.244.1.4:40000"));
        assert_eq!(req.method(), Method::CONNECT);
        assert_eq!(req.uri().authority().unwrap().as_str(), "10.244.2.5:8080");
        assert_eq!(forwarded_for(&req), Some(addr("10.244.1.4:40000")));
        let ok = validate(&req, Some("10.244.2.5:15008".parse().unwrap()), |_| true);
        assert_eq!(ok, Ok(addr("10.244.2.5:8080")));
    }

    #[test]
    fn rejects_proxy_ports_and_the_arrival_port_with_400() {
        let local = Some(addr("10.244.2.5:40008"));
        for target in ["10.244.2.5:15008", "10.244.2.5:15001", "10.244.2.5:40008"] {
            let req = connect_request(addr(target), addr("10.244.1.4:40000"));
            let err = validate(&req, local, |_| true).unwrap_err();
            assert_eq!(err, Rejection::ProxyPort(addr(target)));
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn rejects_non_connect_with_400() {
        let req = Request::get("http://10.0.0.1:80/").body(()).unwrap();
        let err = validate(&req, None, |_| true).unwrap_err();
        assert!(matches!(err, Rejection::NotConnect(_)));
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn rejects_hostname_authority() {
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("httpbin.default:8000")
            .body(())
            .unwrap();
        let err = validate(&req, None, |_| true).unwrap_err();
        assert!(matches!(err, Rejection::BadAuthority(_)));
    }

    #[test]
    fn rejects_authority_other_than_local_ip() {
        let req = connect_request(addr("10.244.2.9:8080"), addr("10.244.1.4:1"));
        let err = validate(&req, Some("10.244.2.5:15008".parse().unwrap()), |_| true).unwrap_err();
        assert!(matches!(err, Rejection::NotLocal { .. }));
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn rejects_non_local_workload() {
        let req = connect_request(addr("192.0.2.1:80"), addr("10.244.1.4:1"));
        let err = validate(&req, None, |ip| {
            ip != "192.0.2.1".parse::<IpAddr>().unwrap()
        })
        .unwrap_err();
        assert_eq!(
            err,
            Rejection::UnknownWorkload("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn denied_maps_to_401() {
        assert_eq!(
            Rejection::Denied("p".into()).status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
