//! CLI parsing and input resolution (flags over YAML), without root.

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Zring {
    #[command(subcommand)]
    cmd: PlumbCommand,
}

fn parse(args: &[&str]) -> PlumbCommand {
    Zring::try_parse_from(std::iter::once("zring-plumb").chain(args.iter().copied()))
        .unwrap()
        .cmd
}

#[test]
fn node_flags_resolve() {
    let PlumbCommand::Node(SideCmd::Up(a)) = parse(&[
        "node",
        "up",
        "--netns",
        "n1",
        "--gateway-ip",
        "10.244.1.1",
        "--ztunnel-ip",
        "10.244.1.2",
        "--ztunnel-veth",
        "veth08baa690",
        "--pod-ip",
        "10.244.1.4",
        "--tunnel",
        "vxlan",
    ]) else {
        panic!("wrong subcommand")
    };
    let i = a.resolve().unwrap();
    assert_eq!(a.netns.as_deref(), Some("n1"));
    assert_eq!(i.ztunnel_veth, "veth08baa690");
    assert_eq!(i.pod_ips, vec![Ipv4Addr::new(10, 244, 1, 4)]);
    assert_eq!(i.tunnel, TunnelKind::Vxlan);
}

#[test]
fn yaml_file_fills_and_flags_override() {
    let dir = std::env::temp_dir().join(format!("zrp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("node.yaml");
    std::fs::write(
        &f,
        "gateway_ip: 10.0.0.1\nztunnel_ip: 10.0.0.2\nztunnel_veth: vz\npod_ips: [10.0.0.4]\n",
    )
    .unwrap();
    let p = f.to_str().unwrap();
    let PlumbCommand::Pod(PodCmd::Add { ip, args }) = parse(&[
        "pod",
        "add",
        "10.0.0.9",
        "--file",
        p,
        "--ztunnel-veth",
        "vy",
    ]) else {
        panic!("wrong subcommand")
    };
    let i = args.resolve().unwrap();
    assert_eq!(
        (ip, i.ztunnel_veth.as_str(), i.tunnel),
        (Ipv4Addr::new(10, 0, 0, 9), "vy", TunnelKind::Geneve)
    );
    assert_eq!(i.gateway_ip, Ipv4Addr::new(10, 0, 0, 1));
    std::fs::write(&f, "gateway_ip: 10.0.0.1\nbogus: 1\n").unwrap();
    let err = args.resolve().unwrap_err().to_string();
    assert!(err.contains("node.yaml") && err.contains("bogus"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_input_names_flag_and_field() {
    let PlumbCommand::Ztunnel(SideCmd::Show(a)) =
        parse(&["ztunnel", "show", "--gateway-ip", "10.0.0.1"])
    else {
        panic!("wrong subcommand")
    };
    let err = a.resolve().unwrap_err().to_string();
    assert!(
        err.contains("--ztunnel-ip") && err.contains("ztunnel_ip"),
        "{err}"
    );
}

#[test]
fn show_runs_without_root() {
    let cmd = parse(&[
        "ztunnel",
        "show",
        "--gateway-ip",
        "10.244.1.1",
        "--ztunnel-ip",
        "10.244.1.2",
    ]);
    assert_eq!(run(cmd).unwrap(), ExitCode::SUCCESS);
}

#[test]
fn trace_args_parse_with_optional_node_inputs() {
    let PlumbCommand::Trace(a) = parse(&[
        "trace",
        "10.244.1.4",
        "10.244.2.5:8080",
        "--udp",
        "--netns",
        "na",
        "--ztunnel-netns",
        "za",
        "--peer-netns",
        "nb",
    ]) else {
        panic!("wrong subcommand")
    };
    assert_eq!(
        (a.src, a.dst.port(), a.udp),
        (Ipv4Addr::new(10, 244, 1, 4), 8080, true)
    );
    assert_eq!(a.node.netns.as_deref(), Some("na"));
    assert!(
        matches!(a.node.resolve(), Err(PlumbError::MissingInput(..))),
        "drift is then not checked"
    );
    let bad = Zring::try_parse_from(["zring-plumb", "trace", "10.244.1.4", "10.244.2.5"]);
    assert!(bad.is_err(), "DST needs a port");
    let both = Zring::try_parse_from([
        "zring-plumb",
        "trace",
        "10.0.0.1",
        "10.0.0.2:1",
        "--tcp",
        "--udp",
    ]);
    assert!(both.is_err());
}
