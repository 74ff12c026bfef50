//! `LOG_FORMAT` (ztunnel's setting): `json` and `plain` start the binary, anything else
//! is refused before it does anything, with a message naming the setting and its values.

/// Test binaries free only what they allocated (issue 24): see `testsupport::Checked`.
#[global_allocator]
static CHECKED: testsupport::Checked = testsupport::Checked;

use std::process::Command;

fn zring(log_format: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zring"))
        .args(["ca", "--help"])
        .env("LOG_FORMAT", log_format)
        .output()
        .expect("run zring")
}

#[test]
fn log_format_accepts_json_and_plain_and_names_the_setting_otherwise() {
    for ok in ["json", "plain"] {
        let out = zring(ok);
        assert!(out.status.success(), "LOG_FORMAT={ok}: {out:?}");
    }
    let out = zring("yaml");
    assert!(!out.status.success(), "LOG_FORMAT=yaml accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LOG_FORMAT=\"yaml\"") && err.contains("json"),
        "{err}"
    );
}
