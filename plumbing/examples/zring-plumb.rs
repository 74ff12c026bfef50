//! Standalone `zring plumb` for operators and tests before/without the proxy binary:
//! `cargo run -p zring-plumbing --example zring-plumb -- node show --gateway-ip ...`.

use std::process::ExitCode;

use clap::Parser;

/// The `zring plumb` tree.
#[derive(Parser)]
#[command(name = "zring-plumb")]
struct Args {
    #[command(subcommand)]
    cmd: plumbing::cli::PlumbCommand,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::from_default_env()
                .add_directive("plumbing=info".parse().expect("static directive")),
        )
        .with_writer(std::io::stderr)
        .init();
    match plumbing::cli::run(Args::parse().cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zring plumb: {e}");
            ExitCode::from(2)
        }
    }
}
