//! Root-only: a workload that names a policy zring has not seen (over xDS, Address and
//! Authorization are separate types: the workload may come first) is applied, not NACKed;
//! the policy is skipped (counted in `zring_policies_skipped_total`) until it arrives. The
//! control plane pushes the workload, then its WorkloadSelector DENY policy, then removes
//! the policy: traffic to the workload is allowed, denied, allowed again, each step for
//! connections opened after the push was adopted. Then the fields xDS used to drop: an
//! ALLOW by another service account denies, one by the client's allows even beside a
//! dry-run DENY of the port. Fails, never skips, under CI.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::xds::{
    connect_in, echo_server, get_in, sample, spawn_zring_with, wait_for, workload, Site, SLEEP,
    ZRING_READY, ZRING_SOCKS, ZRING_STATS,
};
use zring::config::LocalConfig;
use zring_loadgen::control::Event;
use zring_loadgen::socks;

/// The destination pod, on zring's node (its inbound leg applies the policy).
const API: &str = "10.77.0.6";
const PORT: u16 = 8080;
const POLICY: &str = "zxd/deny-api";

/// The api workload listing [`POLICY`], and the policy itself when `with_policy`.
fn site_config(with_policy: bool) -> LocalConfig {
    let deny = format!(
        "- name: deny-api\n  namespace: zxd\n  scope: WorkloadSelector\n  action: Deny\n  \
         dryRun: false\n  rules:\n  - - - destinationPorts: [{PORT}]\n"
    );
    with_policies(if with_policy { &deny } else { "" })
}

/// The api workload listing [`POLICY`] and `policies` (a YAML list, maybe empty).
fn with_policies(policies: &str) -> LocalConfig {
    let sleep = workload("sleep", SLEEP, "HBONE", "node-a");
    let api = format!(
        "{}  authorizationPolicies: [\"{POLICY}\"]\n",
        workload("api", API, "HBONE", "node-a")
    );
    let yaml = format!("workloads:\n{sleep}{api}policies:\n{policies}");
    LocalConfig::from_yaml("xds_policy", &yaml).unwrap()
}

/// `deny-api` as an ALLOW of the service account `zxd/<sa>`, plus a dry-run DENY of the
/// port when `dry_deny` (never enforced).
fn by_account(sa: &str, dry_deny: bool) -> LocalConfig {
    let mut p = format!(
        "- name: deny-api\n  namespace: zxd\n  scope: WorkloadSelector\n  action: Allow\n  \
         dryRun: false\n  rules:\n  - - - serviceAccounts: [{{namespace: zxd, serviceAccount: {sa}}}]\n"
    );
    if dry_deny {
        p.push_str(&format!(
            "- name: dry\n  namespace: zxd\n  scope: Namespace\n  action: Deny\n  \
             dryRun: true\n  rules:\n  - - - destinationPorts: [{PORT}]\n"
        ));
    }
    with_policies(&p)
}

/// One SOCKS5 connection through zring to `target` and one echo: true when it came back.
fn echoes(ns: &str, target: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = connect_in(ns, ZRING_SOCKS.parse().unwrap())?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(&[5, 1, 0])?;
        let mut m = [0u8; 2];
        s.read_exact(&mut m)?;
        if socks::check_method(&m).is_err() {
            return Ok(false);
        }
        s.write_all(&socks::connect_request(target))?;
        let mut reply = Vec::new();
        loop {
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
            reply.push(b[0]);
            match socks::connect_reply_len(&reply) {
                Err(_) => return Ok(false),
                Ok(Some(n)) if reply.len() == n => break,
                Ok(_) => {}
            }
        }
        s.write_all(b"ping")?;
        let mut back = [0u8; 4];
        s.read_exact(&mut back)?;
        Ok(&back == b"ping")
    };
    attempt().unwrap_or(false)
}

fn acked_without_nack(events: &[Event], before: usize) -> bool {
    let new = &events[before..];
    !new.iter().any(|e| matches!(e, Event::Nack { .. }))
}

#[test]
fn a_policy_pushed_after_its_workload_applies_then_its_removal_lifts_it() {
    if !common::can_run("the zring xDS policy-order test", &["ip"]) {
        return;
    }
    let site = Site::new("pol", &[SLEEP, API]);
    let ns = site.ns.as_str();
    let target: SocketAddr = format!("{API}:{PORT}").parse().unwrap();
    echo_server(ns, target);
    let cp = site.control_plane(site_config(false));
    let flags = [("--inbound-addr", "0.0.0.0:15008")];
    let zr = spawn_zring_with(ns, &site.dir, cp.addr(), &flags, &[]);
    let scrape = || get_in(ns, ZRING_STATS, "/metrics").map_or(String::new(), |(_, b)| b);
    let context = || {
        format!(
            "control plane events: {:#?}\nzring log:\n{}\nzring metrics:\n{}",
            cp.events(),
            zr.log(),
            scrape()
        )
    };
    wait_for(
        Duration::from_secs(20),
        "zring did not become ready on its xDS state",
        || matches!(get_in(ns, ZRING_READY, "/healthz/ready"), Some((200, _))),
        context,
    );

    // 1. The workload names a policy that was never sent: applied, the policy skipped.
    assert!(acked_without_nack(&cp.events(), 0), "{}", context());
    assert!(echoes(ns, target), "step 1: no policy yet\n{}", context());
    let skipped = || sample(&scrape(), "zring_policies_skipped_total", &[]).unwrap_or(0.0);
    wait_for(
        Duration::from_secs(5),
        "the skipped policy is not counted",
        || skipped() >= 1.0,
        context,
    );

    // 2. The policy arrives: connections opened after it was adopted are denied.
    let before = cp.events().len();
    cp.push(site_config(true));
    wait_for(
        Duration::from_secs(10),
        "step 2: the DENY policy pushed after its workload is not enforced",
        || !echoes(ns, target),
        context,
    );
    let counted = skipped();
    assert!(!echoes(ns, target), "step 2 holds\n{}", context());

    // 3. The policy is removed (the workload still names it): allowed again.
    cp.push(site_config(false));
    wait_for(
        Duration::from_secs(10),
        "step 3: the removed policy still denies",
        || echoes(ns, target),
        context,
    );
    assert!(acked_without_nack(&cp.events(), before), "{}", context());
    wait_for(
        Duration::from_secs(5),
        "the policy skipped again after its removal is not counted",
        || skipped() > counted,
        context,
    );

    // 4. serviceAccounts and dryRun travel: an ALLOW of another account denies the client
    // (sleep); one of sleep's allows it, beside a dry-run DENY of the port.
    cp.push(by_account("other", false));
    wait_for(
        Duration::from_secs(10),
        "step 4: an ALLOW of another service account does not deny",
        || !echoes(ns, target),
        context,
    );
    cp.push(by_account("sleep", true));
    wait_for(
        Duration::from_secs(10),
        "step 4: the client's service account is not allowed (or the dry run is enforced)",
        || echoes(ns, target),
        context,
    );
    assert!(acked_without_nack(&cp.events(), before), "{}", context());
}
