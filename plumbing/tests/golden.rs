//! Golden tests (no root): the rendered desired state equals the articles' appendices
//! (copied verbatim from seeds/000_…txt into tests/golden/) line for line.

/// Test binaries free only what they allocated (issue 24): see `testsupport::Checked`.
#[global_allocator]
static CHECKED: testsupport::Checked = testsupport::Checked;

use std::net::Ipv4Addr;

use plumbing::model::Table;
use plumbing::render::{self, Desired};
use plumbing::{NodeInput, TunnelKind, ZtunnelInput};

fn golden(name: &str) -> String {
    let p = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn norm(l: &str) -> String {
    l.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(norm).filter(|l| !l.is_empty()).collect()
}

/// The lines after the first line containing `header`, up to the next blank line.
fn section(text: &str, header: &str) -> Vec<String> {
    let mut it = text.lines().skip_while(|l| !l.contains(header));
    it.next().unwrap_or_else(|| panic!("no section {header}"));
    it.take_while(|l| !l.trim().is_empty()).map(norm).collect()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The articles' node A (client side) and node B (server side).
fn node(gw: &str, zt: &str, veth: &str, pod: &str) -> NodeInput {
    NodeInput {
        gateway_ip: ip(gw),
        ztunnel_ip: ip(zt),
        ztunnel_veth: veth.into(),
        pod_ips: vec![ip(pod)],
        tunnel: TunnelKind::Geneve,
    }
}

fn node_a() -> NodeInput {
    node("10.244.1.1", "10.244.1.2", "veth08baa690", "10.244.1.4")
}

fn node_b() -> NodeInput {
    node("10.244.2.1", "10.244.2.3", "veth07706a33", "10.244.2.5")
}

fn ztunnel(zt: &str, gw: &str) -> ZtunnelInput {
    ZtunnelInput {
        ztunnel_ip: ip(zt),
        gateway_ip: ip(gw),
        eth0: "eth0".into(),
        tunnel: TunnelKind::Geneve,
    }
}

fn rendered_mangle(d: &Desired) -> Vec<String> {
    d.iptables_lines(Table::Mangle)
        .iter()
        .map(|l| norm(l))
        .collect()
}

fn check_routing(d: &Desired, text: &str, rule_header: &str) {
    let ours: Vec<u32> = d.rules.iter().map(|r| r.priority).collect();
    let article_rules: Vec<String> = section(text, rule_header)
        .into_iter()
        .filter(|l| ours.iter().any(|p| l.starts_with(&format!("{p}:"))))
        .collect();
    let rendered: Vec<String> = d.rules.iter().map(|r| norm(&r.to_string())).collect();
    assert_eq!(rendered, article_rules);
    for t in &d.tables {
        let rendered: Vec<String> = d.route_lines(*t).iter().map(|l| norm(l)).collect();
        assert_eq!(
            rendered,
            section(text, &format!("ip route show table {t}")),
            "table {t}"
        );
    }
}

#[test]
fn node_a_mangle_equals_appendix1_line_for_line() {
    let d = render::node(&node_a(), TunnelKind::Geneve);
    assert_eq!(
        rendered_mangle(&d),
        lines(&golden("appendix1-node-a-iptables.txt"))
    );
}

#[test]
fn node_b_mangle_equals_appendix6_line_for_line() {
    let d = render::node(&node_b(), TunnelKind::Geneve);
    assert_eq!(
        rendered_mangle(&d),
        lines(&golden("appendix6-node-b-iptables.txt"))
    );
}

#[test]
fn vxlan_changes_only_the_udp_return_port() {
    let g = render::node(&node_a(), TunnelKind::Geneve);
    let v = render::node(&node_a(), TunnelKind::Vxlan);
    let (gl, vl) = (
        g.iptables_lines(Table::Mangle),
        v.iptables_lines(Table::Mangle),
    );
    let diff: Vec<(&String, &String)> = gl.iter().zip(&vl).filter(|(a, b)| a != b).collect();
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert_eq!(
        diff[0].1.as_str(),
        diff[0].0.replace("--dport 6081", "--dport 4789")
    );
    assert_eq!(g.rules, v.rules);
    assert_eq!(g.routes, v.routes);
    assert!(v
        .show()
        .contains("type vxlan id 1000 remote 10.244.1.2 dstport 4789"));
}

#[test]
fn node_a_rules_and_tables_equal_appendix3() {
    check_routing(
        &render::node(&node_a(), TunnelKind::Geneve),
        &golden("appendix3-node-a-routing.txt"),
        "ip rule",
    );
}

#[test]
fn node_b_rules_and_tables_equal_appendix7() {
    check_routing(
        &render::node(&node_b(), TunnelKind::Geneve),
        &golden("appendix7-node-b-routing.txt"),
        "ip rule",
    );
}

#[test]
fn node_nat_accepts_marked_packets_as_in_articles_002_003() {
    let d = render::node(&node_a(), TunnelKind::Geneve);
    let nat = d.iptables_lines(Table::Nat);
    for l in [
        "-A PREROUTING -j ztunnel-PREROUTING",
        "-A POSTROUTING -j ztunnel-POSTROUTING",
        "-A ztunnel-PREROUTING -m mark --mark 0x100/0x100 -j ACCEPT",
        "-A ztunnel-POSTROUTING -m mark --mark 0x100/0x100 -j ACCEPT",
    ] {
        assert!(nat.iter().any(|n| n == l), "missing {l} in {nat:?}");
    }
    assert_eq!(nat.len(), 4);
}

#[test]
fn ztunnel_a_equals_appendix4_and_5() {
    let d = render::ztunnel(&ztunnel("10.244.1.2", "10.244.1.1"), TunnelKind::Geneve);
    assert_eq!(
        rendered_mangle(&d),
        lines(&golden("appendix4-ztunnel-a-iptables.txt"))
    );
    assert!(d.iptables_lines(Table::Nat).is_empty());
    check_routing(
        &d,
        &golden("appendix5-ztunnel-a-routing.txt"),
        "ip rule show",
    );
}

#[test]
fn ztunnel_b_equals_appendix8_and_9() {
    let d = render::ztunnel(&ztunnel("10.244.2.3", "10.244.2.1"), TunnelKind::Geneve);
    assert_eq!(
        rendered_mangle(&d),
        lines(&golden("appendix8-ztunnel-b-iptables.txt"))
    );
    check_routing(
        &d,
        &golden("appendix9-ztunnel-b-routing.txt"),
        "ip rule show",
    );
}

#[test]
fn show_prints_every_object_in_article_notation() {
    let s = render::node(&node_a(), TunnelKind::Geneve).show();
    for want in [
        "create ztunnel-pods-ips hash:ip family inet hashsize 1024 maxelem 65536",
        "add ztunnel-pods-ips 10.244.1.4",
        "ip link add istioin type geneve id 1000 remote 10.244.1.2 dstport 6081",
        "ip addr add 192.168.127.1/30 dev istioout",
        "*mangle",
        ":ztunnel-POSTROUTING - [0:0]",
        "*nat",
        "COMMIT",
        "103:\tfrom all lookup 100",
        "# ip route show table 102",
        "default via 10.244.1.2 dev veth08baa690 onlink",
        "net.ipv4.ip_forward = 1",
    ] {
        assert!(s.contains(want), "`{want}` missing from:\n{s}");
    }
}
