//! Time-boxed property runs: the stable-toolchain stand-in for a coverage-guided fuzzer.
//!
//! cargo-fuzz needs a nightly compiler (sanitizer flags), which this project's machines
//! do not have; proptest runs under plain `cargo test`. [`run_for`] repeats proptest
//! batches with fresh random seeds until a time budget is spent, so the same target is a
//! seconds-long smoke test in `cargo test` and a minutes-long campaign with
//! `ZRING_FUZZ_SECS=600`. A failing input is shrunk by proptest and printed in the panic.

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Seconds each target runs: `ZRING_FUZZ_SECS`, else `default_secs`.
pub fn budget(default_secs: u64) -> Duration {
    let secs = std::env::var("ZRING_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    Duration::from_secs(secs)
}

/// Runs `test` on inputs from `strategy` for `budget`; panics with the shrunk input on
/// the first failure. Returns how many cases ran (printed, so long runs can be recorded).
pub fn run_for<S: Strategy>(
    name: &str,
    budget: Duration,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u64 {
    let start = Instant::now();
    let mut cases = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        cases += 512;
        if start.elapsed() >= budget {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {:.1?}, no failure",
        start.elapsed()
    );
    cases
}
