//! Golden cases: the articles' flows (000_…, "1st/2nd/3rd TCP 路径") through their own rule
//! dumps (appendices 1-9), and the bypass, UDP, non-enrolled, VIP and probe paths.

use std::net::Ipv4Addr;

use super::fixture::{self, CLIENT, GW_A, SERVER};
use super::*;

fn q(src: Ipv4Addr, dst: Ipv4Addr, port: u16, proto: Proto) -> Query {
    Query {
        src,
        dst,
        port,
        proto,
        endpoint: None,
    }
}

fn main_flow() -> Trace {
    trace(&fixture::articles(), &q(CLIENT, SERVER, 8080, Proto::Tcp))
}

/// The packet `k` of leg `l` (both 0-based).
fn pkt(t: &Trace, l: usize, k: usize) -> &PacketTrace {
    &t.legs[l].packets[k]
}

fn lines(s: &Step) -> Vec<&str> {
    s.matched.iter().map(|m| m.line.as_str()).collect()
}

fn captured(host: &str, port: u16) -> Verdict {
    Verdict::Captured {
        host: host.into(),
        port,
    }
}

fn socket(host: &str) -> Verdict {
    Verdict::Socket { host: host.into() }
}

const MARK_100: &str = "-A ztunnel-PREROUTING -p tcp -m set --match-set ztunnel-pods-ips src -j MARK --set-xmark 0x100/0x100";
const MARK_210_A: &str =
    "-A ztunnel-PREROUTING ! -s 10.244.1.2/32 -i veth08baa690 -j MARK --set-xmark 0x210/0x210";
const MARK_40_A: &str = "-A ztunnel-PREROUTING ! -i veth08baa690 -m connmark --mark 0x210/0x210 -j MARK --set-xmark 0x40/0x40";
const SAVE_210: &str = "-A ztunnel-FORWARD -m mark --mark 0x210/0x210 -j CONNMARK --save-mark --nfmask 0x210 --ctmask 0x210";

#[test]
fn outbound_syn_goes_through_istioout_to_15001() {
    let t = main_flow();
    let syn = pkt(&t, 0, 0);
    let s = &syn.steps;
    assert_eq!(s[0].host, "node A");
    assert_eq!(s[0].packet.iif.as_deref(), Some("veth7a81c12c"));
    assert!(lines(&s[0]).contains(&MARK_100), "{:?}", lines(&s[0]));
    assert_eq!(s[0].mark, 0x100);
    assert_eq!(
        s[0].route.as_deref(),
        Some("table 101: default via 192.168.127.2 dev istioout")
    );
    assert!(
        matches!(&s[0].outcome, Outcome::Encap { dev, vni: 1001, port: 6081, .. } if dev == "istioout")
    );
    // The outer GENEVE packet, 10.244.1.1 -> 10.244.1.2:6081, routed with the inner mark.
    assert_eq!((s[1].packet.src, s[1].packet.dport), (GW_A, Some(6081)));
    assert_eq!(
        s[1].route.as_deref(),
        Some("table 101: 10.244.1.2 dev veth08baa690 scope link")
    );
    assert!(matches!(&s[2].outcome, Outcome::Decap { dev, .. } if dev == "pistioout"));
    assert_eq!(s[3].packet.iif.as_deref(), Some("pistioout"));
    assert_eq!(s[3].mark, 0x400);
    assert_eq!(s.len(), 4);
    assert_eq!(syn.verdict, captured("ztunnel A", 15001));
}

#[test]
fn ztunnel_reply_is_marked_0x210_and_later_packets_take_0x40_to_the_veth() {
    let t = main_flow();
    let reply = &pkt(&t, 0, 1).steps[1];
    assert_eq!(reply.packet.iif.as_deref(), Some("veth08baa690"));
    assert!(lines(reply).contains(&MARK_210_A) && lines(reply).contains(&SAVE_210));
    assert_eq!((reply.mark, reply.connmark), (0x210, 0x210));
    assert!(reply
        .policy
        .as_deref()
        .unwrap()
        .starts_with("100: from all fwmark 0x200/0x200 goto 32766"));
    let later = &pkt(&t, 0, 2).steps;
    assert!(lines(&later[0]).contains(&MARK_40_A));
    assert_eq!(
        later[0].route.as_deref(),
        Some("table 102: default via 10.244.1.2 dev veth08baa690 onlink")
    );
    assert_eq!(later[1].mark, 0x4d3, "plain veth, not the tunnel");
    assert_eq!(pkt(&t, 0, 2).verdict, socket("ztunnel A"));
}

#[test]
fn hbone_leg_enters_node_b_through_table_100_and_istioin_to_15008() {
    let t = main_flow();
    let syn = pkt(&t, 1, 0);
    assert_eq!(syn.steps[0].packet.dport, Some(15008));
    assert_eq!(syn.steps[0].packet.src, CLIENT, "spoofed client IP");
    let b = syn.steps.iter().find(|s| s.host == "node B").unwrap();
    assert_eq!(b.policy.as_deref(), Some("103: from all lookup 100"));
    assert_eq!(
        b.route.as_deref(),
        Some("table 100: 10.244.2.5 via 192.168.126.2 dev istioin src 10.244.2.1")
    );
    let last = syn.steps.last().unwrap();
    assert_eq!(last.matched[0].line, "-A PREROUTING -i pistioin -p tcp -m tcp --dport 15008 -j TPROXY --on-port 15008 --on-ip 127.0.0.1 --tproxy-mark 0x400/0xfff");
    assert_eq!(syn.verdict, captured("ztunnel B", 15008));
}

#[test]
fn hbone_reply_returns_to_ztunnel_a_via_connmark_0x210_and_mark_0x40() {
    let t = main_flow();
    let reply = pkt(&t, 1, 1);
    let a = reply.steps.iter().find(|s| s.host == "node A").unwrap();
    assert_eq!(
        (a.packet.iif.as_deref(), a.packet.connmark),
        (Some("eth0"), 0x210)
    );
    assert!(lines(a).contains(&MARK_40_A));
    assert_eq!(
        a.policy.as_deref(),
        Some("102: from all fwmark 0x40/0x40 lookup 102")
    );
    assert_eq!(reply.verdict, socket("ztunnel A"));
    assert_eq!(pkt(&t, 1, 2).verdict, socket("ztunnel B"));
}

#[test]
fn server_leg_is_delivered_by_node_b_and_its_reply_goes_back_to_ztunnel_b() {
    let t = main_flow();
    assert_eq!(t.legs.len(), 3);
    let syn = pkt(&t, 2, 0);
    let expect = Verdict::Delivered {
        host: "node B".into(),
        dev: "veth935904a0".into(),
        bypassed: true,
    };
    assert_eq!(syn.verdict, expect);
    let reply = pkt(&t, 2, 1);
    assert_eq!(reply.steps[0].packet.iif.as_deref(), Some("veth935904a0"));
    assert_eq!(reply.steps[0].mark, 0x40);
    assert_eq!(reply.verdict, socket("ztunnel B"));
}

#[test]
fn udp_is_marked_0x220_and_bypassed() {
    let t = trace(&fixture::articles(), &q(CLIENT, SERVER, 53, Proto::Udp));
    assert_eq!(t.legs.len(), 1);
    let syn = pkt(&t, 0, 0);
    assert_eq!(syn.steps[0].mark, 0x220);
    assert_eq!(syn.steps[0].connmark, 0x220);
    assert!(lines(&syn.steps[0])
        .contains(&"-A ztunnel-PREROUTING -p udp -j MARK --set-xmark 0x220/0x220"));
    assert!(
        matches!(&syn.verdict, Verdict::Delivered { host, bypassed: true, .. } if host == "node B")
    );
}

#[test]
fn non_enrolled_source_is_captured_inbound_on_15006() {
    let w = fixture::articles_with(&[], &[SERVER]);
    let t = trace(&w, &q(CLIENT, SERVER, 8080, Proto::Tcp));
    let syn = pkt(&t, 0, 0);
    assert_eq!(syn.steps[0].mark, 0, "not in ztunnel-pods-ips");
    assert_eq!(syn.verdict, captured("ztunnel B", 15006));
    assert_eq!(t.legs.len(), 2, "then ztunnel B -> server");
}

#[test]
fn non_enrolled_destination_is_passthrough_from_ztunnel_a() {
    let w = fixture::articles_with(&[CLIENT], &[]);
    let t = trace(&w, &q(CLIENT, SERVER, 8080, Proto::Tcp));
    assert_eq!(pkt(&t, 0, 0).verdict, captured("ztunnel A", 15001));
    let leg2 = pkt(&t, 1, 0);
    assert_eq!(leg2.steps[0].packet.dport, Some(8080), "no HBONE");
    assert!(matches!(&leg2.verdict, Verdict::Delivered { host, .. } if host == "node B"));
    assert!(
        t.notes.iter().any(|n| n.contains("passthrough")),
        "{:?}",
        t.notes
    );
}

#[test]
fn node_local_probe_is_marked_0x220_in_output_and_bypasses() {
    let t = trace(&fixture::articles(), &q(GW_A, CLIENT, 8080, Proto::Tcp));
    let s = &pkt(&t, 0, 0).steps[0];
    assert_eq!(s.packet.iif, None);
    assert!(lines(s).contains(&"-A ztunnel-OUTPUT -s 10.244.1.1/32 -p tcp -m owner --socket-exists -m set --match-set ztunnel-pods-ips dst -j MARK --set-xmark 0x220/0xffffffff"));
    assert_eq!(
        s.route.as_deref(),
        Some("table main: 10.244.1.4 dev veth7a81c12c scope host")
    );
    assert!(matches!(
        &pkt(&t, 0, 0).verdict,
        Verdict::Delivered { bypassed: true, .. }
    ));
}

#[test]
fn service_vip_keeps_its_destination_and_legs_follow_the_endpoint() {
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    let mut query = q(CLIENT, vip, 8080, Proto::Tcp);
    let t = trace(&fixture::articles(), &query);
    let s = &pkt(&t, 0, 0).steps[0];
    assert!(s
        .matched
        .iter()
        .any(|m| m.table == "nat" && m.effect == "ACCEPT"));
    assert_eq!(pkt(&t, 0, 0).verdict, captured("ztunnel A", 15001));
    assert!(t.notes.iter().any(|n| n.contains("--endpoint")));
    query.endpoint = Some(SERVER);
    let t = trace(&fixture::articles(), &query);
    assert_eq!(pkt(&t, 1, 0).verdict, captured("ztunnel B", 15008));
    assert_eq!(t.legs.len(), 3);
}

#[test]
fn every_rendered_rule_is_understood() {
    for h in fixture::articles().hosts {
        for r in &h.iptables {
            assert!(rule::parse(&r.spec).is_ok(), "{}", r.line());
        }
    }
    assert_eq!(
        rule::parse("-p tcp -m comment --comment x -j ACCEPT"),
        Err("-m comment".into())
    );
}

#[test]
fn text_names_every_hop_of_the_main_flow() {
    let s = render_text(&main_flow());
    for want in [
        "captured by ztunnel A :15001",
        "captured by ztunnel B :15008",
        "into istioin (geneve vni 1000)",
    ] {
        assert!(s.contains(want), "{want} in\n{s}");
    }
}

#[test]
fn missing_rule_101_is_named_as_what_changed_the_path() {
    use crate::check::{Drift, DriftKind};
    let desired = fixture::articles();
    let mut live = desired.clone();
    live.hosts[0].rules.retain(|r| r.priority != 101);
    let drift = vec![
        Drift {
            object: "rule 101: 101:\tfrom all fwmark 0x100/0x100 lookup 101".into(),
            kind: DriftKind::Missing,
        },
        Drift {
            object: "route table 100 10.9.9.9 dev eth9".into(),
            kind: DriftKind::Extra,
        },
    ];
    let query = q(CLIENT, SERVER, 8080, Proto::Tcp);
    let (l, d) = (trace(&live, &query), trace(&desired, &query));
    let div = diverge(&l, &d, &drift);
    let first = &div[0];
    assert_eq!(
        (first.packet.as_str(), first.at.as_str()),
        ("SYN", "node A")
    );
    assert_eq!(first.desired, Some(captured("ztunnel A", 15001)));
    // Without rule 101 the SYN falls to 103/main and is captured inbound by ztunnel B.
    assert_eq!(first.live, captured("ztunnel B", 15006));
    assert_eq!(first.because, vec![drift[0].to_string()]);
    assert!(
        l.notes.iter().any(|n| n.contains("asymmetric")),
        "{:?}",
        l.notes
    );
}

#[test]
fn same_state_does_not_diverge() {
    let t = main_flow();
    assert_eq!(diverge(&t, &t, &[]), vec![]);
}

#[test]
fn json_form_names_verdicts_and_outcomes() {
    let v = serde_json::to_value(main_flow()).unwrap();
    let syn = &v["legs"][0]["packets"][0];
    assert_eq!(
        syn["verdict"],
        serde_json::json!({"kind": "captured", "host": "ztunnel A", "port": 15001})
    );
    assert_eq!(syn["steps"][0]["outcome"]["kind"], "encap");
    assert_eq!(syn["steps"][0]["lookup"]["answer"]["type"], "unicast");
    assert_eq!(syn["steps"][0]["packet"]["proto"], "tcp");
}

#[test]
fn a_tunnel_to_an_untraced_ztunnel_leaves_node_a() {
    let mut w = fixture::articles();
    w.hosts.retain(|h| h.label != "ztunnel A");
    let t = trace(&w, &q(CLIENT, SERVER, 8080, Proto::Tcp));
    assert!(matches!(&pkt(&t, 0, 0).verdict, Verdict::Left { host, .. } if host == "node A"));
    assert!(w.source_known(CLIENT) && w.source_known(GW_A));
    assert!(
        !w.source_known(Ipv4Addr::new(192, 0, 2, 1)),
        "no default route on the fixture"
    );
}

#[test]
fn foreign_policy_rules_are_noted_not_guessed() {
    let mut w = fixture::articles();
    w.hosts[0]
        .foreign_rules
        .push("50: from 10.0.0.0/8 lookup 7".into());
    let t = trace(&w, &q(CLIENT, SERVER, 8080, Proto::Tcp));
    assert!(t
        .notes
        .iter()
        .any(|n| n.starts_with("node A: policy rule not evaluated") && n.ends_with("lookup 7")));
}
