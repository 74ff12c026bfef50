//! Property-based fuzzing of what `zring plumb` parses: the clap argument tree (pod
//! add/del, node, ztunnel) and the YAML input files, through `resolve` and the pure
//! renderers. 3 s per target under `cargo test`; `ZRING_FUZZ_SECS=600` for a campaign.
//! Touches no kernel state: only parsing, merging and rendering run.

/// Test binaries free only what they allocated (issue 24): see `testsupport::Checked`.
#[global_allocator]
static CHECKED: testsupport::Checked = testsupport::Checked;

use std::io::Write;

use clap::Parser;
use plumbing::cli::{PlumbCommand, PodCmd, SideCmd};
use plumbing::{node_show, render, NodeInput, PlumbError, ZtunnelInput};
use proptest::prelude::*;
use testsupport::fuzz::{budget, run_for};

const SMOKE_SECS: u64 = 3;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: PlumbCommand,
}

/// Argument words: real subcommands and flags, IP-like and arbitrary values.
fn word() -> impl Strategy<Value = String> {
    const KNOWN: &[&str] = &[
        "node",
        "pod",
        "ztunnel",
        "up",
        "down",
        "check",
        "show",
        "add",
        "del",
        "--netns",
        "--gateway-ip",
        "--ztunnel-ip",
        "--ztunnel-veth",
        "--pod-ip",
        "--tunnel",
        "--eth0",
        "geneve",
        "vxlan",
        "--",
        "-h",
    ];
    prop_oneof![
        4 => prop::sample::select(KNOWN).prop_map(String::from),
        2 => any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        1 => "[0-9.]{0,20}",
        1 => any::<String>(),
    ]
}

fn argv() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(word(), 0..14)
}

/// Parses, resolves (no `--file`: the file target covers YAML) and renders.
fn exercise(words: &[String]) -> Result<(), TestCaseError> {
    let argv = std::iter::once("plumb".to_string()).chain(words.iter().cloned());
    let Ok(cli) = Cli::try_parse_from(argv) else {
        return Ok(());
    };
    match cli.cmd {
        PlumbCommand::Node(
            SideCmd::Show(a) | SideCmd::Up(a) | SideCmd::Down(a) | SideCmd::Check(a),
        ) => {
            if let Ok(input) = a.resolve() {
                check_node(&input)?;
            }
        }
        PlumbCommand::Pod(PodCmd::Add { ip, args } | PodCmd::Del { ip, args }) => {
            if let Some(g) = args.gateway_ip {
                let route = format!("{:?}", render::pod_route(g, ip));
                prop_assert!(route.contains(&ip.to_string()), "{} not in {}", ip, route);
            }
        }
        PlumbCommand::Ztunnel(
            SideCmd::Show(a) | SideCmd::Up(a) | SideCmd::Down(a) | SideCmd::Check(a),
        ) => {
            if let Ok(input) = a.resolve() {
                let _ = render::ztunnel(&input, input.tunnel);
            }
        }
        // `trace` reads the live kernel state: its arguments are only parsed here (its
        // evaluator has its own golden tests).
        PlumbCommand::Trace(_) => {}
    }
    Ok(())
}

/// Every enrolled pod appears in the rendered node state.
fn check_node(input: &NodeInput) -> Result<(), TestCaseError> {
    let shown = node_show(input);
    for ip in &input.pod_ips {
        prop_assert!(
            shown.contains(&ip.to_string()),
            "{} missing from\n{}",
            ip,
            shown
        );
    }
    let _ = render::node(input, input.tunnel);
    Ok(())
}

#[test]
fn plumb_arguments_parse_resolve_and_render_without_panicking() {
    run_for("plumb argv", budget(SMOKE_SECS), argv(), |w| exercise(&w));
}

fn yaml_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(
        &[
            "gateway_ip",
            "ztunnel_ip",
            "ztunnel_veth",
            "pod_ips",
            "tunnel",
            "eth0",
            "other",
        ][..],
    );
    let value = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        Just("[10.0.0.1, 10.0.0.2]".to_string()),
        Just("geneve".to_string()),
        any::<String>().prop_map(|s| s.replace('\n', " ")),
    ];
    (key, value).prop_map(|(k, v)| format!("{k}: {v}\n"))
}

fn yaml_file() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(yaml_line(), 0..8).prop_map(|l| l.concat()),
        any::<String>(),
    ]
}

#[test]
fn plumb_yaml_inputs_parse_or_name_the_file() {
    let dir = std::env::temp_dir().join(format!("zrr-fuzz-plumb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("input.yaml");
    run_for("plumb yaml", budget(SMOKE_SECS), yaml_file(), |text| {
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        for side in ["node", "ztunnel"] {
            let argv = ["plumb", side, "show", "--file", path.to_str().unwrap()];
            let cmd = Cli::try_parse_from(argv).expect("fixed argv parses").cmd;
            let err = match cmd {
                PlumbCommand::Node(SideCmd::Show(a)) => match a.resolve() {
                    Ok(input) => {
                        check_node(&input)?;
                        None
                    }
                    Err(e) => Some(e),
                },
                PlumbCommand::Ztunnel(SideCmd::Show(a)) => a.resolve().err(),
                _ => unreachable!(),
            };
            if let Some(e) = err.filter(|e| !matches!(e, PlumbError::MissingInput(..))) {
                let msg = e.to_string();
                prop_assert!(
                    msg.contains("input.yaml"),
                    "error does not name the file: {}",
                    msg
                );
            }
        }
        let _ = plumbing::from_yaml_file::<NodeInput>(&path);
        let _ = plumbing::from_yaml_file::<ZtunnelInput>(&path);
        Ok(())
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
