//! One proxy on one cluster: a namespace of its own with the control plane on its
//! loopback, the proxy started on it the way `xds_peer` starts it, readiness timed from
//! the first response, then the pushes, each timed to its ACK with the proxy's CPU read
//! from /proc. Everything it made is removed when it returns, also on error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zring_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE};

use super::cluster::{self, Kind, Pushes, Size};
use super::report::{ProxyRun, Push};
use super::ScaleOptions;
use crate::control::proxies::{self, Endpoint};
use crate::control::{ControlPlane, Event, Update};
use crate::error::{Error, Result};
use crate::peer::{setup, Proxy};
use crate::procs::{self, Proc};

/// The control plane's address inside the proxy's namespace (istiod's port).
const CONTROL: ([u8; 4], u16) = ([127, 0, 0, 1], 15012);
const TOKEN: &str = "zring-scale-token";
/// How often readiness is asked for (its resolution).
const READY_POLL: Duration = Duration::from_millis(10);
/// How often the control plane's events are looked at for an ACK.
const ACK_POLL: Duration = Duration::from_millis(2);
/// Quiet time after a single push's ACK, and after a bulk push's: late work (the old
/// generation dropped, a core adopting) still counts to the push.
const SETTLE: Duration = Duration::from_millis(100);
const BULK_SETTLE: Duration = Duration::from_millis(500);
/// How long the idle proxy's CPU is read for.
const IDLE_WINDOW: Duration = Duration::from_secs(2);
/// Time after ready before RSS is read (allocator and caches settle).
const RSS_SETTLE: Duration = Duration::from_millis(500);

/// Measures `proxy` on a cluster of `size`; what failed is in the run's `error`.
pub fn proxy_on(o: &ScaleOptions, proxy: Proxy, size: Size, dir: &Path) -> ProxyRun {
    let mut run = ProxyRun::new(proxy.name(), size);
    let netns = format!("{}{}", o.prefix, proxy.name());
    if let Err(e) = measure(o, proxy, (size, &netns, dir), &mut run) {
        run.error = Some(e.to_string());
    }
    procs::terminate(&procs::pids_in_netns(&netns));
    if let Err(e) = plumbing::netns::delete(&netns) {
        tracing::warn!("removing {netns}: {e}");
    }
    run
}

fn measure(
    o: &ScaleOptions,
    proxy: Proxy,
    (size, netns, dir): (Size, &str, &Path),
    run: &mut ProxyRun,
) -> Result<()> {
    setup::make_netns(netns)?;
    let dir = dir.join(format!("{}-{}", proxy.name(), size.workloads));
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let listen = SocketAddr::from(CONTROL);
    let config = cluster::cluster(size);
    let (cp, endpoint) = proxies::start(Some(netns), &dir, listen, TOKEN, config)?;
    let p = spawn(
        o,
        proxy,
        netns,
        &endpoint,
        dir.join(format!("{}.log", proxy.name())),
    )?;
    let ready = setup::wait_ready_within(netns, &p, o.ready_timeout, READY_POLL)?;
    let address_ack = wait_ack(&cp, 0, ADDRESS_TYPE, &p, o.ready_timeout)?;
    wait_ack(&cp, 0, AUTHORIZATION_TYPE, &p, o.ready_timeout)?;
    let first =
        first_sent(&cp).ok_or_else(|| Error::Setup("no Address response was sent".into()))?;
    run.ready_s = Some(ready.saturating_duration_since(first).as_secs_f64());
    run.first_ack_s = Some(address_ack.saturating_duration_since(first).as_secs_f64());
    run.cpu_ready_s = Some(procs::cpu_seconds(&[p.pid]));
    std::thread::sleep(RSS_SETTLE);
    (run.rss_ready_mb, run.peak_ready_mb) = memory(&p);
    run.idle_run_ms_per_s = idle(&p);
    let pushes = cluster::pushes(size, o.singles, o.bulk, o.seed);
    pushes_on(&cp, &p, &pushes, run, o.ack_timeout)?;
    (run.rss_end_mb, run.peak_end_mb) = memory(&p);
    match super::datapath::measure(netns) {
        Ok(d) => run.data_path = Some(d),
        Err(e) => run.data_path_error = Some(e.to_string()),
    }
    Ok(())
}

/// The idle proxy's own CPU (schedstat ms per second): its share of each push's window.
fn idle(p: &Proc) -> Option<f64> {
    let before = Cpu::now(p);
    std::thread::sleep(IDLE_WINDOW);
    let after = Cpu::now(p);
    let ns = after.1?.saturating_sub(before.1?);
    Some(ns as f64 / 1e6 / IDLE_WINDOW.as_secs_f64())
}

fn memory(p: &Proc) -> (Option<f64>, Option<f64>) {
    let (rss, peak) = procs::rss_and_peak(p.pid);
    let mb = |b: u64| Some(b as f64 / 1e6);
    (mb(rss), mb(peak))
}

/// The proxy, configured by the control plane only, as `xds_peer` starts it.
fn spawn(o: &ScaleOptions, proxy: Proxy, netns: &str, ep: &Endpoint, log: PathBuf) -> Result<Proc> {
    let quiet = ("RUST_LOG", "warn".to_string());
    let (bin, args, mut env): (&Path, Vec<String>, _) = match proxy {
        Proxy::Ztunnel => {
            let env = ep.ztunnel_env(cluster::NODE, &cluster::client_info(), o.cores);
            (&o.peer, vec!["proxy".into()], env)
        }
        Proxy::Zring => {
            let args = ["run", "--node-name", cluster::NODE, "--cores"];
            let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            args.push(o.cores.to_string());
            let mut env = ep.env();
            env.extend([
                ("INSTANCE_IP", crate::peer::CLIENT_IP.to_string()),
                ("POD_NAME", "zring-scale".to_string()),
                ("POD_NAMESPACE", "istio-system".to_string()),
            ]);
            (&o.zring, args, env)
        }
    };
    env.push(quiet);
    procs::spawn_in_env(netns, proxy.name(), (bin, &args), &env, log)
}

/// When the first response of the Address type was sent.
fn first_sent(cp: &ControlPlane) -> Option<Instant> {
    cp.events_since(0).into_iter().find_map(|(t, e)| match e {
        Event::Sent { type_url, .. } if type_url == ADDRESS_TYPE => Some(t),
        _ => None,
    })
}

/// When the first ACK of `type_url` among the events from the `from`th on came; an error
/// on a NACK, the proxy's exit or `timeout`.
fn wait_ack(
    cp: &ControlPlane,
    from: usize,
    type_url: &str,
    p: &Proc,
    timeout: Duration,
) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        for (t, e) in cp.events_since(from) {
            match e {
                Event::Ack { type_url: u } if u == type_url => return Ok(t),
                Event::Nack {
                    type_url: u,
                    message,
                } if u == type_url => {
                    return Err(Error::Setup(format!("{} NACKed {u}: {message}", p.kind)))
                }
                _ => {}
            }
        }
        if !procs::is_alive(p.pid) || Instant::now() > deadline {
            return Err(Error::Child {
                what: format!("{} (no ACK of {type_url} within {timeout:?})", p.kind),
                status: if procs::is_alive(p.pid) {
                    "no answer".into()
                } else {
                    "an exit".into()
                },
                log: p.log.clone(),
            });
        }
        std::thread::sleep(ACK_POLL);
    }
}

/// CPU readings at one moment: /proc ticks (s), schedstat (ns), and when.
#[derive(Clone, Copy)]
struct Cpu(f64, Option<u64>, Instant);

impl Cpu {
    fn now(p: &Proc) -> Cpu {
        Cpu(
            procs::cpu_seconds(&[p.pid]),
            procs::run_ns(p.pid),
            Instant::now(),
        )
    }
}

/// A push done: its size, its time to ACK and the CPU reading before it.
type Done = (usize, f64, Cpu);

/// Every push in turn; a push's CPU runs from its update to the next push's (the last
/// one's to the end of its settle time), so the windows add up to the whole.
fn pushes_on(
    cp: &ControlPlane,
    p: &Proc,
    pushes: &Pushes,
    run: &mut ProxyRun,
    timeout: Duration,
) -> Result<()> {
    let sequence = pushes.sequence();
    let mut done: Vec<Done> = Vec::new();
    let mut failed = None;
    for (kind, u) in &sequence {
        match push(cp, p, u, timeout) {
            Ok(d) => done.push(d),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        std::thread::sleep(if *kind == Kind::Single {
            SETTLE
        } else {
            BULK_SETTLE
        });
    }
    let measured = windows(&done, Cpu::now(p));
    for ((kind, _), m) in sequence.iter().zip(measured) {
        match kind {
            Kind::Single => run.singles.push(m),
            Kind::BulkAdd => run.bulk_add = Some(m),
            Kind::BulkRemove => run.bulk_remove = Some(m),
        }
    }
    failed.map_or(Ok(()), Err)
}

/// One update, timed to its ACK.
fn push(cp: &ControlPlane, p: &Proc, u: &Update, timeout: Duration) -> Result<Done> {
    let before = Cpu::now(p);
    let from = cp.event_count();
    let sent = Instant::now();
    cp.update(u)?;
    let ack = wait_ack(cp, from, ADDRESS_TYPE, p, timeout)?;
    let ack_ms = ack.saturating_duration_since(sent).as_secs_f64() * 1e3;
    Ok((u.put.workloads.len() + u.remove.len(), ack_ms, before))
}

/// Each push's CPU: from its reading to the next push's (the last: to `end`).
fn windows(done: &[Done], end: Cpu) -> Vec<Push> {
    let ends = done.iter().skip(1).map(|d| d.2).chain([end]);
    done.iter()
        .zip(ends)
        .map(|(&(resources, ack_ms, before), after)| Push {
            resources,
            ack_ms,
            cpu_ms: (after.0 - before.0) * 1e3,
            run_ms: after
                .1
                .zip(before.1)
                .map(|(a, b)| a.saturating_sub(b) as f64 / 1e6),
            window_ms: after.2.saturating_duration_since(before.2).as_secs_f64() * 1e3,
        })
        .collect()
}
