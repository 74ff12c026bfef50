//! One monoio runtime per core (FusionDriver: io_uring, epoll fallback), optionally
//! inside a network namespace: the thread enters the namespace before the runtime and
//! its sockets exist.

use crate::error::{Error, Result};
use crate::sys;
use monoio::{FusionDriver, RuntimeBuilder};
use std::future::Future;
use std::thread::JoinHandle;

/// Submission-queue entries per runtime: enough for a few thousand connections per core.
const URING_ENTRIES: u32 = 4096;

/// Runs `fut` to completion on a fresh per-thread runtime (the current thread).
pub fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    let mut rt = RuntimeBuilder::<FusionDriver>::new()
        .with_entries(URING_ENTRIES)
        .enable_timer()
        .build()
        .map_err(Error::io(
            "building the monoio runtime (io_uring, then epoll)",
        ))?;
    Ok(rt.block_on(fut))
}

/// Spawns a thread that enters `netns` (if any) and runs `make()` on its own runtime.
pub fn spawn_core<T, F, Fut>(
    name: String,
    netns: Option<String>,
    make: F,
) -> Result<JoinHandle<Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Some(ns) = &netns {
                sys::enter_netns(ns).map_err(Error::io(format!(
                    "entering network namespace {ns} (is the topology up?)"
                )))?;
            }
            block_on(make())?
        })
        .map_err(Error::io("spawning a core thread"))
}

/// Runs `make(core)` on `cores` threads and collects the results in core order.
pub fn run_per_core<T, F, Fut>(cores: usize, netns: Option<&str>, make: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<T>>,
{
    let handles = (0..cores.max(1))
        .map(|core| {
            let make = make.clone();
            spawn_core(
                format!("zrl-core{core}"),
                netns.map(str::to_string),
                move || make(core),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::Topology("a core thread panicked".into())))
        })
        .collect()
}
