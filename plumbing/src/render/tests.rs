//! Unit tests of the renderer's invariants (the golden tests compare against the articles).

use std::net::Ipv4Addr;

use super::*;

fn input(pods: Vec<Ipv4Addr>) -> NodeInput {
    NodeInput {
        gateway_ip: Ipv4Addr::new(10, 0, 1, 1),
        ztunnel_ip: Ipv4Addr::new(10, 0, 1, 2),
        ztunnel_veth: "vzt".into(),
        pod_ips: pods,
        tunnel: TunnelKind::Geneve,
    }
}

#[test]
fn each_enrolled_pod_adds_one_member_and_one_route() {
    let p = Ipv4Addr::new(10, 0, 1, 9);
    let (a, b) = (
        node(&input(vec![]), TunnelKind::Vxlan),
        node(&input(vec![p]), TunnelKind::Vxlan),
    );
    assert_eq!(b.routes.len(), a.routes.len() + 1);
    assert_eq!(b.ipset.as_ref().map(|s| s.1.clone()), Some(vec![p]));
    assert_eq!(a.iptables, b.iptables);
    assert!(b.routes.contains(&pod_route(Ipv4Addr::new(10, 0, 1, 1), p)));
}

#[test]
fn every_jump_targets_a_declared_chain() {
    let d = node(&input(vec![]), TunnelKind::Geneve);
    for r in d.iptables.iter().filter(|r| r.is_jump()) {
        let target = r.spec.trim_start_matches("-j ");
        assert!(d.chains.contains(&(r.table, target.to_string())), "{r:?}");
    }
    assert_eq!(d.iptables.iter().filter(|r| r.is_jump()).count(), 7);
}

#[test]
fn routes_only_in_owned_tables_and_tunnels_are_slash_30() {
    for d in [
        node(&input(vec![Ipv4Addr::new(10, 0, 1, 5)]), TunnelKind::Geneve),
        ztunnel(
            &ZtunnelInput {
                ztunnel_ip: Ipv4Addr::new(10, 0, 1, 2),
                gateway_ip: Ipv4Addr::new(10, 0, 1, 1),
                eth0: "eth0".into(),
                tunnel: TunnelKind::Geneve,
            },
            TunnelKind::Geneve,
        ),
    ] {
        assert!(d.routes.iter().all(|r| d.tables.contains(&r.table)));
        assert!(d.tunnels.iter().all(|t| t.prefix == 30));
        assert!(d
            .sysctls
            .iter()
            .all(|s| ["0", "1", "2"].contains(&s.value.as_str())));
    }
}
