//! `zring run --plumb`: the DaemonSet pod's "integrated plumbing" — the ztunnel-pod side of
//! the capture (pistioin/pistioout, TPROXY rules, policy routing) applied at start and
//! removed at shutdown, through the plumbing crate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use plumbing::ZtunnelInput;

use crate::config::Config;
use crate::error::ProxyError;

/// What `--plumb` applied, so shutdown removes exactly that.
pub struct Integrated {
    input: Option<ZtunnelInput>,
}

impl Integrated {
    /// Applies the ztunnel-pod objects in the current network namespace when `--plumb`.
    pub fn up(config: &Config) -> Result<Integrated, ProxyError> {
        if !config.plumb {
            return Ok(Integrated { input: None });
        }
        let Some(IpAddr::V4(gateway_ip)) = config.plumb_gateway else {
            return Err(ProxyError::Settings(
                "--plumb needs --plumb-gateway <node pod gateway IPv4> (e.g. 10.244.1.1)".into(),
            ));
        };
        let input = ZtunnelInput {
            ztunnel_ip: own_ip_towards(gateway_ip)?,
            gateway_ip,
            eth0: config.plumb_eth0.clone(),
            tunnel: Default::default(),
        };
        plumbing::ztunnel_up(None, &input)?;
        tracing::info!(ztunnel_ip = %input.ztunnel_ip, gateway = %gateway_ip, "ztunnel pod plumbing applied");
        Ok(Integrated { input: Some(input) })
    }

    /// Removes what [`Integrated::up`] applied.
    pub fn down(self) -> Result<(), ProxyError> {
        if let Some(input) = self.input {
            plumbing::ztunnel_down(None, &input)?;
            tracing::info!("ztunnel pod plumbing removed");
        }
        Ok(())
    }
}

/// The pod's own address: the source the kernel picks towards the gateway (a UDP
/// "connect" only consults the routing table; nothing is sent).
fn own_ip_towards(gateway: Ipv4Addr) -> Result<Ipv4Addr, ProxyError> {
    let probe = UdpSocket::bind("0.0.0.0:0")?;
    probe.connect(SocketAddr::new(IpAddr::V4(gateway), 9))?;
    match probe.local_addr()?.ip() {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => Err(ProxyError::Settings(
            "--plumb: the route to the gateway is not IPv4".into(),
        )),
    }
}
