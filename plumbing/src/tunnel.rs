//! istioin/istioout (node) and pistioin/pistioout (ztunnel pod): GENEVE as in the articles,
//! VXLAN when the kernel answers EOPNOTSUPP (this project's kernels have no GENEVE).

use std::net::Ipv4Addr;

use rtnetlink::packet_route::link::{
    InfoData, InfoGeneve, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::{Handle, LinkGeneve, LinkVxlan};

use crate::model::{TunnelKind, TunnelSpec};
use crate::{nl, PlumbError};

/// A tunnel link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveTunnel {
    /// Link index.
    pub index: u32,
    /// GENEVE / VXLAN, or None for any other link kind (a conflict).
    pub kind: Option<TunnelKind>,
    /// VNI.
    pub vni: Option<u32>,
    /// Remote endpoint.
    pub remote: Option<Ipv4Addr>,
    /// UDP port.
    pub port: Option<u16>,
    /// Administratively up.
    pub up: bool,
}

impl LiveTunnel {
    /// Whether this link is the tunnel `want` describes (kind aside).
    pub fn matches(&self, want: &TunnelSpec) -> bool {
        self.kind.is_some() && self.vni == Some(want.vni) && self.remote == Some(want.remote)
    }
    /// `kind id VNI remote IP dstport P`, for reports.
    pub fn describe(&self) -> String {
        let kind = self.kind.map_or("non-tunnel", TunnelKind::name);
        format!(
            "{kind} id {:?} remote {:?} dstport {:?}",
            self.vni, self.remote, self.port
        )
    }
}

fn info_data(m: &LinkMessage) -> Option<&InfoData> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| {
            if let LinkInfo::Data(d) = i {
                Some(d)
            } else {
                None
            }
        }),
        _ => None,
    })
}

/// Reads a tunnel's kind, VNI, remote and port from a link dump entry.
pub(crate) fn parse(m: &LinkMessage) -> LiveTunnel {
    let mut t = LiveTunnel {
        index: m.header.index,
        kind: None,
        vni: None,
        remote: None,
        port: None,
        up: nl::is_up(m),
    };
    match info_data(m) {
        Some(InfoData::Vxlan(attrs)) => {
            t.kind = Some(TunnelKind::Vxlan);
            for a in attrs {
                match a {
                    InfoVxlan::Id(v) => t.vni = Some(*v),
                    InfoVxlan::Group(r) => t.remote = Some(*r),
                    InfoVxlan::Port(p) => t.port = Some(*p),
                    _ => {}
                }
            }
        }
        Some(InfoData::Geneve(attrs)) => {
            t.kind = Some(TunnelKind::Geneve);
            for a in attrs {
                match a {
                    InfoGeneve::Id(v) => t.vni = Some(*v),
                    InfoGeneve::Remote(r) => t.remote = Some(*r),
                    InfoGeneve::Port(p) => t.port = Some(*p),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    t
}

/// The live state of link `name`, if it exists.
pub(crate) async fn live(h: &Handle, name: &str) -> Result<Option<LiveTunnel>, PlumbError> {
    Ok(nl::link_by_name(h, name).await?.map(|m| parse(&m)))
}

fn message(t: &TunnelSpec, kind: TunnelKind) -> LinkMessage {
    match kind {
        TunnelKind::Geneve => LinkGeneve::new(&t.name, t.vni)
            .remote(t.remote)
            .port(kind.udp_port())
            .build(),
        TunnelKind::Vxlan => LinkVxlan::new(&t.name, t.vni)
            .remote(t.remote)
            .port(kind.udp_port())
            .build(),
    }
}

/// Creates tunnel `t` as `kind`; GENEVE falls back to VXLAN on EOPNOTSUPP (logged).
/// Returns the kind actually created.
pub(crate) async fn create(
    h: &Handle,
    t: &TunnelSpec,
    kind: TunnelKind,
) -> Result<TunnelKind, PlumbError> {
    let what = t.render(kind);
    match h.link().add(message(t, kind)).execute().await {
        Ok(()) => Ok(kind),
        Err(e) if kind == TunnelKind::Geneve && nl::errno(&e) == Some(libc::EOPNOTSUPP) => {
            tracing::warn!(link = %t.name, "kernel has no GENEVE (EOPNOTSUPP): falling back to VXLAN, UDP 4789");
            let vx = TunnelKind::Vxlan;
            h.link()
                .add(message(t, vx))
                .execute()
                .await
                .map_err(|e| PlumbError::netlink("add link", t.render(vx), e))?;
            Ok(vx)
        }
        Err(e) => Err(PlumbError::netlink("add link", what, e)),
    }
}
