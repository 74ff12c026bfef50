//! Unit tests of drift detection on hand-built live snapshots.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::*;
use crate::input::NodeInput;
use crate::ipt::parse_save;
use crate::model::TunnelKind;
use crate::render;
use crate::state::{Live, LiveLink};
use crate::tunnel::LiveTunnel;

fn desired() -> Desired {
    let i = NodeInput {
        gateway_ip: Ipv4Addr::new(10, 0, 1, 1),
        ztunnel_ip: Ipv4Addr::new(10, 0, 1, 2),
        ztunnel_veth: "vzt".into(),
        pod_ips: vec![Ipv4Addr::new(10, 0, 1, 4)],
        tunnel: TunnelKind::Geneve,
    };
    render::node(&i, TunnelKind::Vxlan)
}

/// A snapshot that matches `d` exactly, as the kernel would report it.
fn matching(d: &Desired) -> Live {
    let links = d
        .tunnels
        .iter()
        .map(|t| {
            let tunnel = LiveTunnel {
                index: 1,
                kind: Some(d.kind),
                vni: Some(t.vni),
                remote: Some(t.remote),
                port: Some(4789),
                up: true,
            };
            (
                t.name.clone(),
                Some(LiveLink {
                    tunnel,
                    addrs: vec![(t.addr, t.prefix)],
                }),
            )
        })
        .collect();
    let mut saved = HashMap::new();
    for table in [Table::Mangle, Table::Nat] {
        let mut text = String::new();
        for (_, c) in d.chains.iter().filter(|(t, _)| *t == table) {
            text.push_str(&format!(":{c} - [0:0]\n"));
        }
        for l in d.iptables_lines(table) {
            text.push_str(&format!("{l}\n"));
        }
        saved.insert(table, parse_save(&text));
    }
    Live {
        links,
        rules: d
            .rules
            .iter()
            .map(|r| (r.priority, Some(*r), r.to_string()))
            .collect(),
        routes: d.routes.clone(),
        ipset: d
            .ipset
            .as_ref()
            .map(|(_, m)| ("hash:ip".to_string(), m.clone())),
        saved,
        builtin_present: d
            .iptables
            .iter()
            .filter(|r| r.in_builtin())
            .map(|_| true)
            .collect(),
        sysctls: d
            .sysctls
            .iter()
            .map(|s| (s.key.clone(), Some(s.value.clone())))
            .collect(),
    }
}

#[test]
fn matching_state_is_clean() {
    let d = desired();
    assert_eq!(diff(&d, &matching(&d)), vec![]);
}

#[test]
fn reports_missing_extra_and_different_per_object() {
    let d = desired();
    let mut live = matching(&d);
    live.rules.retain(|(p, _, _)| *p != 101);
    live.routes.pop();
    live.routes.push(foreign_route());
    live.ipset
        .as_mut()
        .unwrap()
        .1
        .push(Ipv4Addr::new(10, 0, 1, 99));
    live.sysctls
        .insert("net.ipv4.ip_forward".into(), Some("0".into()));
    let got: Vec<String> = diff(&d, &live).iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec![
            "extra      ipset ztunnel-pods-ips member 10.0.1.99",
            "missing    rule 101: 101:\tfrom all fwmark 0x100/0x100 lookup 101",
            "missing    route table 100 10.0.1.4 via 192.168.126.2 dev istioin src 10.0.1.1",
            "extra      route table 101 10.9.9.0/24 dev eth9",
            "different  sysctl net.ipv4.ip_forward: want `1`, got `0`",
        ]
    );
}

fn foreign_route() -> crate::model::RouteSpec {
    crate::model::RouteSpec::new(101, Ipv4Addr::new(10, 9, 9, 0), 24).dev("eth9")
}

#[test]
fn duplicated_jump_and_reordered_chain_are_reported() {
    let d = desired();
    let mut live = matching(&d);
    let mangle = live.saved.get_mut(&Table::Mangle).unwrap();
    mangle
        .rules
        .push(("PREROUTING".into(), "-j ztunnel-PREROUTING".into()));
    let first = mangle
        .rules
        .iter()
        .position(|(c, _)| c == "ztunnel-INPUT")
        .unwrap();
    mangle.rules.swap(first, first + 1);
    let got = diff(&d, &live);
    assert!(
        got.iter().any(
            |x| x.object.contains("-A PREROUTING -j ztunnel-PREROUTING (x2")
                && x.kind == DriftKind::Extra
        ),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|x| x.object == "mangle chain ztunnel-INPUT order"),
        "{got:?}"
    );
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
fn wrong_tunnel_kind_and_down_link_differ() {
    let d = desired();
    let mut live = matching(&d);
    let l = live.links.get_mut("istioout").unwrap().as_mut().unwrap();
    l.tunnel.kind = Some(TunnelKind::Geneve);
    l.tunnel.up = false;
    let got = diff(&d, &live);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|x| x.object == "link istioout"));
}
