use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

/// A scratch directory holding `mesh.yaml` and `certs/`, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("zring-settings-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        std::fs::write(dir.join("mesh.yaml"), "workloads: []\n").unwrap();
        Scratch(dir)
    }

    fn file(&self) -> String {
        self.0.join("mesh.yaml").display().to_string()
    }

    fn certs(&self) -> String {
        self.0.join("certs").display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parses `zring run` flags; node name and trust domain are pinned so the host's
/// environment (NODE_NAME, TRUST_DOMAIN) cannot change the outcome.
fn args(extra: &[&str]) -> RunArgs {
    let mut argv = vec!["zring", "--node-name", "node-a"];
    if !extra.contains(&"--trust-domain") {
        argv.extend(["--trust-domain", "cluster.local"]);
    }
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).unwrap().run
}

fn messages(errs: &ConfigErrors) -> Vec<String> {
    errs.0.iter().map(|e| e.to_string()).collect()
}

#[test]
fn defaults_match_config_default() {
    let s = Scratch::new("defaults");
    let cfg = args(&["--config", &s.file(), "--cert-dir", &s.certs()])
        .into_config()
        .unwrap();
    let want = Config {
        config_path: s.file().into(),
        cert_dir: s.certs().into(),
        node_name: Some("node-a".into()),
        ..Config::default()
    };
    assert_eq!(cfg, want);
    assert_eq!(cfg.inbound_addr, Some("0.0.0.0:15008".parse().unwrap()));
    assert_eq!(cfg.pool_idle_timeout, Duration::from_secs(300));
}

#[test]
fn listeners_can_be_turned_off_and_values_parsed() {
    let s = Scratch::new("off");
    let cfg = args(&[
        "--config",
        &s.file(),
        "--cert-dir",
        &s.certs(),
        "--outbound-addr",
        "off",
        "--inbound-plaintext-addr",
        "off",
        "--socks5-addr",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--transparent",
        "false",
        "--pool-idle-timeout",
        "5m",
        "--ping-interval",
        "500ms",
        "--plumb-gateway",
        "10.0.0.1",
        "--io-uring-entries",
        "256",
        "--hbone-port",
        "15999",
        "--hbone-own-http2",
        "true",
    ])
    .into_config()
    .unwrap();
    assert_eq!(
        (cfg.outbound_addr, cfg.inbound_plaintext_addr),
        (None, None)
    );
    assert_eq!(cfg.socks5_addr, Some("127.0.0.1:0".parse().unwrap()));
    assert_eq!(
        (cfg.cores, cfg.transparent, cfg.hbone_port),
        (1, false, 15999)
    );
    assert_eq!(cfg.pool_idle_timeout, Duration::from_secs(300));
    assert_eq!(cfg.ping_interval, Duration::from_millis(500));
    assert_eq!(cfg.plumb_gateway, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(cfg.io_uring_entries, 256);
    assert!(cfg.hbone_own_http2);
}

#[test]
fn reports_every_bad_setting_at_once() {
    let errs = args(&[
        "--config",
        "/nonexistent/zring.yaml",
        "--cores",
        "0",
        "--pool-max-streams",
        "0",
        "--admin-addr",
        "0.0.0.0:15020",
        "--ping-interval",
        "30s",
        "--ping-timeout",
        "20s",
        "--connect-timeout",
        "ten",
        "--inbound-addr",
        "localhost:15008",
        "--io-uring-entries",
        "10",
        "--transparent",
        "yes",
        "--plumb-gateway",
        "gw",
    ])
    .into_config()
    .unwrap_err();
    let msgs = messages(&errs);
    let expect = [
        "--config (env LOCAL_XDS_PATH) = \"/nonexistent/zring.yaml\": no such file",
        "--cert-dir (env ZRING_CERT_DIR) = \"\": required",
        "--cores (env ZTUNNEL_WORKER_THREADS) = \"0\": must be between 1 and",
        "--pool-max-streams (env POOL_MAX_STREAMS_PER_CONNECTION) = \"0\": must be at least 1",
        "--admin-addr and --stats-addr both listen on 0.0.0.0:15020",
        "--ping-timeout (env ZRING_PING_TIMEOUT) = \"20s\": must be longer than --ping-interval (30s)",
        "--connect-timeout (env ZRING_CONNECT_TIMEOUT) = \"ten\": write a whole number with a unit",
        "--inbound-addr (env ZRING_INBOUND_ADDR) = \"localhost:15008\": expected ip:port",
        "--io-uring-entries (env ZRING_IO_URING_ENTRIES) = \"10\": must be between 256 and 32768",
        "--transparent (env ZRING_TRANSPARENT) = \"yes\": expected true or false",
        "--plumb-gateway (env ZRING_PLUMB_GATEWAY) = \"gw\": expected an IP address",
    ];
    for e in expect {
        assert!(
            msgs.iter().any(|m| m.starts_with(e)),
            "missing {e:?} in {msgs:#?}"
        );
    }
    assert_eq!(msgs.len(), expect.len(), "{msgs:#?}");
    assert_eq!(errs.to_string().lines().count(), expect.len());
}

#[test]
fn too_many_cores_and_plumbing_without_transparency() {
    let s = Scratch::new("cores");
    let too_many = (available_cores() + 1).to_string();
    let errs = args(&[
        "--config",
        &s.file(),
        "--cert-dir",
        &s.certs(),
        "--cores",
        &too_many,
        "--plumb",
        "--transparent",
        "false",
        "--plumb-eth0",
        "a-very-long-ifname0",
        "--trust-domain",
        "a/b",
    ])
    .into_config()
    .unwrap_err();
    let msgs = messages(&errs).join("\n");
    for flag in ["--cores", "--plumb ", "--plumb-eth0", "--trust-domain"] {
        assert!(msgs.contains(flag), "{flag} missing in {msgs}");
    }
    assert_eq!(errs.len(), 4, "{msgs}");
}

#[test]
fn listener_clashes() {
    let cfg = Config {
        socks5_addr: Some("127.0.0.1:15001".parse().unwrap()),
        stats_addr: Some("[::]:15000".parse().unwrap()),
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        readiness_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    };
    let msgs = messages(&cfg.check().unwrap_err());
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(msgs[0].starts_with("--outbound-addr and --socks5-addr both listen on 127.0.0.1:15001"));
    assert!(Config::default().check().is_ok());
}

#[test]
fn every_flag_reads_its_environment_variable() {
    let cmd = Cli::command();
    let env = |id: &str| {
        let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
        arg.get_env().unwrap().to_str().unwrap().to_string()
    };
    assert_eq!(env("config"), "LOCAL_XDS_PATH");
    assert_eq!(env("node_name"), "NODE_NAME");
    assert_eq!(env("cores"), "ZTUNNEL_WORKER_THREADS");
    assert_eq!(env("pool_max_streams"), "POOL_MAX_STREAMS_PER_CONNECTION");
    assert_eq!(env("io_uring_entries"), "ZRING_IO_URING_ENTRIES");
    assert!(cmd
        .get_arguments()
        .filter(|a| a.get_id() != "help")
        .all(|a| a.get_env().is_some()));
}

#[test]
fn durations_parse_and_format() {
    assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    for bad in [
        "",
        "10",
        "s",
        "1.5s",
        "-1s",
        "10 parsecs",
        "99999999999999999999h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(format_duration(Duration::from_secs(300)), "5m");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
}

#[test]
fn config_dump_is_readable_yaml() {
    let cfg = Config {
        config_path: Path::new("/etc/zring/mesh.yaml").into(),
        outbound_addr: None,
        ..Config::default()
    };
    let dump = cfg.to_string();
    assert!(dump.contains("config_path: /etc/zring/mesh.yaml"), "{dump}");
    assert!(dump.contains("pool_idle_timeout: 5m"), "{dump}");
    assert!(dump.contains("outbound_addr: null"), "{dump}");
    assert!(dump.contains("inbound_addr: 0.0.0.0:15008"), "{dump}");
}

#[test]
fn pin_auto_pins_only_inside_a_smaller_cpuset() {
    use super::Pin;
    assert!(!Pin::Auto.pins(2, 2));
    assert!(Pin::Auto.pins(2, 8));
    assert!(Pin::On.pins(2, 2));
    assert!(!Pin::Off.pins(1, 8));
}

#[test]
fn drain_timeout_takes_kubernetes_seconds_or_a_duration() {
    let s = Scratch::new("drain");
    let drain = |v: &str| {
        let base = ["--config", &s.file(), "--cert-dir", &s.certs()];
        let mut argv: Vec<&str> = base.to_vec();
        argv.extend(["--drain-timeout", v]);
        args(&argv).into_config().map(|c| c.drain_timeout)
    };
    assert_eq!(drain("30").unwrap(), Duration::from_secs(30));
    assert_eq!(drain("1500ms").unwrap(), Duration::from_millis(1500));
    assert_eq!(drain("0").unwrap(), Duration::ZERO);
    let errs = drain("soon").unwrap_err();
    assert!(messages(&errs)[0].contains("--drain-timeout"), "{errs:?}");
}

#[test]
fn inpod_needs_transparency_and_no_plumbing() {
    let inpod = Some(PathBuf::from(crate::inpod::DEFAULT_INPOD_UDS));
    let cfg = Config {
        inpod: inpod.clone(),
        plumb: true,
        transparent: false,
        ..Config::default()
    };
    let msgs = messages(&cfg.check().unwrap_err());
    let inpod_msgs: Vec<_> = msgs.iter().filter(|m| m.starts_with("--inpod")).collect();
    assert_eq!(inpod_msgs.len(), 2, "{msgs:#?}");
    assert!(msgs.iter().any(|m| m.contains("drop --plumb")), "{msgs:#?}");
    assert!(Config {
        inpod,
        ..Config::default()
    }
    .check()
    .is_ok());
}
