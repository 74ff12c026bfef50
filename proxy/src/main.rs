//! The `zring` binary: `zring run`, `zring ca init|issue`, `zring plumb …`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zring::config::RunArgs;
use zring::tls::CaCommand;

#[derive(Parser)]
#[command(
    name = "zring",
    version,
    about = "Per-core io_uring node proxy for ambient service-mesh data planes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node proxy.
    Run(Box<RunArgs>),
    /// A development CA and SPIFFE workload certificates.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Create, check and remove the kernel objects of ambient capture.
    Plumb {
        #[command(subcommand)]
        command: plumbing::cli::PlumbCommand,
    },
}

/// Per-thread free lists without arena locks; with the options `runtime::tunables` sets,
/// freed memory returns to the OS after a burst (ARCHITECTURE.md has the measurement).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); `LOG_FORMAT=json` writes one
/// JSON object per line, as ztunnel's setting of the same name (access log included).
fn init_logging() -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().flatten_event(true).init(),
        Ok("plain") | Err(_) => builder.init(),
        Ok(other) => {
            builder.init();
            return Err(format!(
                "LOG_FORMAT={other:?} is not a log format: use `json` or `plain` (the default)"
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Err(e) = init_logging() {
        eprintln!("zring: {e}");
        return ExitCode::FAILURE;
    }
    let result = match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::Ca { command } => zring::tls::run_ca(command)
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Command::Plumb { command } => plumbing::cli::run(command).map_err(anyhow::Error::from),
    };
    result.unwrap_or_else(|e| {
        eprintln!("zring: {e:#}");
        ExitCode::FAILURE
    })
}

/// Re-executes this process with the allocator and memcpy settings of
/// `zring::runtime::tunables`; returns only when nothing is to change or exec failed.
fn reexec_with_tunables() {
    use std::os::unix::process::CommandExt;
    let env = zring::runtime::tunables::reexec_env(|k| std::env::var(k).ok());
    if env.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(env)
        .exec();
    tracing::warn!(error = %err, "could not re-execute with tuned allocator and memcpy; running untuned");
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    reexec_with_tunables();
    let config = args.into_config()?;
    let config_drain = config.drain_timeout;
    // The node side first: its gateway is the pod side's when none was given.
    let node = zring::plumb::NodeSide::up(&config)?;
    let plumb = zring::plumb::Integrated::up(&config, node.as_deref().map(|n| n.gateway()))?;
    // SIGINT or SIGTERM writes a byte into this pair; the main thread sleeps reading it.
    let (mut signalled, on_signal) = std::os::unix::net::UnixStream::pair()?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::low_level::pipe::register(signal, on_signal.try_clone()?)?;
    }
    let proxy = match zring::start_with(config, node) {
        Ok(proxy) => proxy,
        Err(e) => {
            plumb.down()?;
            return Err(e.into());
        }
    };
    tracing::info!(addrs = ?proxy.addrs, "zring running");
    let mut byte = [0u8];
    while let Err(e) = std::io::Read::read(&mut signalled, &mut byte) {
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e.into());
        }
    }
    if !config_drain.is_zero() {
        tracing::info!(timeout = ?config_drain, "draining");
        if !proxy.drain(config_drain) {
            tracing::warn!("drain timeout reached with connections still open; closing them");
        }
    }
    tracing::info!("shutting down");
    let result = proxy.shutdown();
    plumb.down()?;
    result?;
    Ok(ExitCode::SUCCESS)
}
