//! Unit tests for netlink message building: the rtnetlink traps of STACK.md.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use rtnetlink::packet_route::route::{RouteAttribute, RouteFlags, RouteScope, RouteType};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};

use super::*;
use crate::model::{PolicyRule, RouteSpec, RuleTarget, Scope};

#[test]
fn lookup_rule_sets_to_table_action() {
    let r = PolicyRule {
        priority: 101,
        fwmark: Some((0x100, 0x100)),
        target: RuleTarget::Lookup(101),
    };
    let m = rule_message(&r);
    assert_eq!(
        m.header.action,
        RuleAction::ToTable,
        "without ToTable the kernel shows `lookup 101 none`"
    );
    assert_eq!(m.header.table, 101);
    assert!(m.attributes.contains(&RuleAttribute::Table(101)));
    assert!(m.attributes.contains(&RuleAttribute::Priority(101)));
    assert!(m.attributes.contains(&RuleAttribute::FwMark(0x100)));
    assert!(
        m.attributes.contains(&RuleAttribute::FwMask(0x100)),
        "mask must be pushed by hand"
    );
    assert_eq!(parse_rule(&m), Some(r));
}

#[test]
fn goto_rule_has_goto_attribute_and_table_zero() {
    let r = PolicyRule {
        priority: 100,
        fwmark: Some((0x200, 0x200)),
        target: RuleTarget::Goto(32766),
    };
    let m = rule_message(&r);
    assert_eq!(m.header.action, RuleAction::Goto);
    assert_eq!(m.header.table, 0);
    assert!(m.attributes.contains(&RuleAttribute::Goto(32766)));
    assert!(!m
        .attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::Table(_))));
    assert_eq!(parse_rule(&m), Some(r));
    assert_eq!(
        r.to_string(),
        "100:\tfrom all fwmark 0x200/0x200 goto 32766"
    );
}

#[test]
fn unmarked_lookup_rule_roundtrips() {
    let r = PolicyRule {
        priority: 103,
        fwmark: None,
        target: RuleTarget::Lookup(100),
    };
    let m = rule_message(&r);
    assert!(!m
        .attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::FwMark(_) | RuleAttribute::FwMask(_))));
    assert_eq!(parse_rule(&m), Some(r));
    assert_eq!(rule_priority(&m), 103);
}

#[test]
fn onlink_gateway_route_message() {
    let r = RouteSpec::new(102, Ipv4Addr::UNSPECIFIED, 0)
        .via(Ipv4Addr::new(10, 244, 1, 2))
        .dev("vz")
        .onlink();
    let m = route_message(&r, Some(7));
    assert_eq!(m.header.table, 102);
    assert!(m.header.flags.contains(RouteFlags::Onlink));
    assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
    let names = HashMap::from([(7, "vz".to_string())]);
    assert_eq!(parse_route(&m, &names), Some(r.clone()));
    assert_eq!(r.to_string(), "default via 10.244.1.2 dev vz onlink");
}

#[test]
fn local_default_route_is_type_local_scope_host() {
    let r = RouteSpec::new(100, Ipv4Addr::UNSPECIFIED, 0)
        .dev("lo")
        .local();
    let m = route_message(&r, Some(1));
    assert_eq!(m.header.kind, RouteType::Local);
    assert_eq!(m.header.scope, RouteScope::Host);
    assert_eq!(r.to_string(), "local default dev lo scope host");
    let names = HashMap::from([(1, "lo".to_string())]);
    assert_eq!(parse_route(&m, &names), Some(r));
}

#[test]
fn pod_route_with_src_and_large_table_id() {
    let r = RouteSpec::new(100, Ipv4Addr::new(10, 244, 1, 4), 32)
        .via(Ipv4Addr::new(192, 168, 126, 2))
        .dev("istioin")
        .src(Ipv4Addr::new(10, 244, 1, 1));
    assert_eq!(
        r.to_string(),
        "10.244.1.4 via 192.168.126.2 dev istioin src 10.244.1.1"
    );
    let big = RouteSpec {
        table: 1000,
        ..r.clone()
    }
    .scope(Scope::Link);
    let m = route_message(&big, Some(3));
    assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
    let names = HashMap::from([(3, "istioin".to_string())]);
    assert_eq!(parse_route(&m, &names), Some(big));
}

#[test]
fn kernel_dump_defaults_are_ignored_when_parsing() {
    // What Linux 6.x returns for `100: from all fwmark 0x200/0x200 goto 32766`.
    let mut m = rule_message(&PolicyRule {
        priority: 100,
        fwmark: Some((0x200, 0x200)),
        target: RuleTarget::Goto(32766),
    });
    m.attributes.insert(0, RuleAttribute::Table(0));
    m.attributes
        .insert(1, RuleAttribute::SuppressPrefixLen(u32::MAX));
    assert!(parse_rule(&m).is_some());
    m.attributes.push(RuleAttribute::SuppressPrefixLen(0));
    assert_eq!(
        parse_rule(&m),
        None,
        "a real suppress_prefixlength selector is not ours"
    );
}
