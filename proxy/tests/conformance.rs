//! Policies as ztunnel reads and applies them (issue 26).
//!
//! - `ztunnel_examples_load_in_zring`: ztunnel's own example LocalConfigs
//!   (`tests/ztunnel_examples/`) and the suite's shapes load in zring, and what zring
//!   writes back reads back the same.
//! - `ztunnel_loads_the_same_files` (root, the peer binary): the real ztunnel loads those
//!   files, and zring's rewrites of them, unchanged.
//! - `zring_decides_as_ztunnel` (root, the peer binary): a differential suite. The real
//!   ztunnel pair and a zring pair (`conformance_env`) read the same LocalConfig; every
//!   connection to every (cell, port) must be allowed or denied alike. The runs hold the
//!   23 named shapes of the issue and random cells from a recorded seed
//!   (`ZRING_CONFORMANCE_SEED`, default [`SEED`]; `ZRING_CONFORMANCE_RUNS` random runs,
//!   default [`RANDOM_RUNS`]; `ZRING_CONFORMANCE_SHOW=1` prints every cell's outcomes).
//!   0 differences and 0 refused configs, or the test fails naming each difference.
//!
//! Root tests fail, never skip, under `CI=true` when they cannot run.

mod common;
mod conformance_env;
mod interop_env;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use conformance_env::random::{self, Rng};
use conformance_env::shapes::{self, Cell};
use conformance_env::{Lab, Outcome};
use zring::config::{LocalConfig, Snapshot};

/// The recorded seed of the random cells (override: `ZRING_CONFORMANCE_SEED`).
const SEED: u64 = 26;
/// Random runs after the first (named shapes + random cells); each adds [`CELLS`] cells.
const RANDOM_RUNS: usize = 3;
const CELLS: usize = 40;

fn examples() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ztunnel_examples");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "yaml").then(|| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    let (allowing, rest) = shapes::split(&first_run_cells(SEED));
    files.push(("shapes-allowing.yaml".into(), shapes::config(&allowing)));
    files.push(("shapes-rest.yaml".into(), shapes::config(&rest)));
    files
}

/// The first run: the named shapes, then random cells up to [`CELLS`] (at least 10).
fn first_run_cells(seed: u64) -> Vec<Cell> {
    let mut cells = shapes::named();
    let more = CELLS.saturating_sub(cells.len()).max(10);
    cells.extend(random::random(&mut Rng(seed), more));
    cells
}

/// zring's reading of `yaml`, and what zring writes back (`serde_yaml` of its config).
fn zring_reads(name: &str, yaml: &str) -> (LocalConfig, String) {
    let cfg =
        LocalConfig::from_yaml(name, yaml).unwrap_or_else(|e| panic!("zring refuses {name}: {e}"));
    Snapshot::new(cfg.clone(), None).unwrap_or_else(|e| panic!("zring refuses {name}: {e}"));
    let dumped = serde_yaml::to_string(&cfg).unwrap();
    (cfg, dumped)
}

#[test]
fn ztunnel_examples_load_in_zring() {
    for (name, yaml) in examples() {
        let (cfg, dumped) = zring_reads(&name, &yaml);
        let again = LocalConfig::from_yaml("rewritten", &dumped)
            .unwrap_or_else(|e| panic!("zring refuses its rewrite of {name}: {e}\n{dumped}"));
        assert_eq!(again, cfg, "{name} reads back differently:\n{dumped}");
    }
}

#[test]
fn ztunnel_loads_the_same_files() {
    if !interop_env::can_run("ztunnel loads zring's LocalConfigs") {
        return;
    }
    let scratch = common::Scratch::new("zpc-load");
    for (name, yaml) in examples() {
        let (_, dumped) = zring_reads(&name, &yaml);
        for (file, text) in [(name.clone(), yaml), (format!("rewritten-{name}"), dumped)] {
            std::fs::write(scratch.path().join(&file), &text).unwrap();
            ztunnel_loads(&scratch, &file, &text);
        }
    }
}

/// Starts ztunnel on `file` in a scratch namespace: it must log that it loaded the config
/// (with every policy of it) and keep running.
fn ztunnel_loads(scratch: &common::Scratch, file: &str, text: &str) {
    use interop_env::procs::{spawn_ztunnel_as, Run};
    let ns = plumbing::netns::NetnsGuard::new(&format!("zpc-{}-load", std::process::id()))
        .expect("create netns");
    interop_env::topo::sh(ns.name(), &["ip", "link", "set", "lo", "up"]);
    let log = format!("{file}.log");
    let run = Run {
        node: "default/local/default",
        socks: "127.0.0.1:15080",
        config: file,
        log: &log,
        rust_log: "info",
    };
    let mut proc = spawn_ztunnel_as(ns.name(), scratch.path(), &run);
    let policies = LocalConfig::from_yaml(file, text).unwrap().policies.len();
    let want = format!("num_policies={policies}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = std::fs::read_to_string(scratch.path().join(&log)).unwrap_or_default();
        let exited = proc.0.try_wait().unwrap().is_some();
        if text.contains("local config initialized") || exited || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let line = text
        .lines()
        .find(|l| l.contains("local config initialized"));
    assert!(
        line.is_some_and(|l| l.contains(&want)),
        "ztunnel did not load {file} ({want}):\n{text}"
    );
    assert!(
        proc.0.try_wait().unwrap().is_none(),
        "ztunnel exited on {file}:\n{text}"
    );
}

fn seed() -> u64 {
    std::env::var("ZRING_CONFORMANCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

#[test]
fn zring_decides_as_ztunnel() {
    if !interop_env::can_run("policy conformance zring vs ztunnel") {
        return;
    }
    let seed = seed();
    let runs: usize = std::env::var("ZRING_CONFORMANCE_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RANDOM_RUNS);
    let started = Instant::now();
    let lab = Lab::start();
    let mut rng = Rng(seed ^ 0x26);
    let mut cells = vec![first_run_cells(seed)];
    cells.extend((0..runs).map(|_| random::random(&mut rng, CELLS)));
    let plans: Vec<Vec<Cell>> = cells
        .iter()
        .flat_map(|c| {
            let (allowing, rest) = shapes::split(c);
            [allowing, rest]
        })
        .filter(|c| !c.is_empty())
        .collect();
    let (mut differences, mut connections, mut allowed) = (Vec::new(), 0, 0);
    for (run, cells) in plans.iter().enumerate() {
        let yaml = shapes::config(cells);
        let (z, t) = lab.run(run, &yaml, cells.len());
        if std::env::var("ZRING_CONFORMANCE_SHOW").is_ok() {
            for (i, c) in cells.iter().enumerate() {
                eprintln!(
                    "run {run} cell {i} {:?}: {:?}",
                    c.shape,
                    &t[i * 3..i * 3 + 3]
                );
            }
        }
        for (k, (zo, to)) in z.iter().zip(&t).enumerate() {
            let (cell, port) = (
                k / shapes::PORTS.len(),
                shapes::PORTS[k % shapes::PORTS.len()],
            );
            connections += 1;
            allowed += usize::from(*to == Outcome::Allowed);
            if zo != to || *to == Outcome::Hung {
                differences.push(format!(
                    "run {run}, port {port}: zring {zo:?}, ztunnel {to:?}; {}",
                    shapes::describe(&cells[cell], cell)
                ));
            }
        }
    }
    let cells: usize = plans.iter().map(Vec::len).sum();
    eprintln!(
        "policy conformance: seed {seed}, {} runs, {cells} cells, {connections} connections \
         per proxy ({allowed} allowed by ztunnel), {} differences, 0 refused configs, {:?}",
        plans.len(),
        differences.len(),
        started.elapsed()
    );
    assert!(
        differences.is_empty(),
        "{} of {connections} connections decided differently (seed {seed}):\n{}",
        differences.len(),
        differences.join("\n")
    );
}
