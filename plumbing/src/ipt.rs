//! iptables through its own tools: one `iptables-restore --noflush` payload per table
//! (atomic per table), `iptables -C` to keep builtin-chain rules from duplicating, and
//! `iptables-save -t TABLE` to read back. Payload building and parsing are pure.
//!
//! Commands run on the calling thread, so inside `netns::run_in` they act in that netns.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::model::{IptRule, Table};
use crate::PlumbError;

/// The binaries used, with the Debian package that provides them.
pub(crate) const TOOLS: [&str; 3] = ["iptables", "iptables-save", "iptables-restore"];

/// Errors unless every iptables binary is on PATH.
pub(crate) fn require_tools() -> Result<(), PlumbError> {
    require_tools_in(&std::env::var_os("PATH").unwrap_or_default())
}

/// Errors unless every iptables binary is in one of the directories of `path`.
fn require_tools_in(path: &std::ffi::OsStr) -> Result<(), PlumbError> {
    for tool in TOOLS {
        if !std::env::split_paths(path).any(|d| d.join(tool).is_file()) {
            return Err(PlumbError::MissingTool {
                tool,
                package: "iptables",
            });
        }
    }
    Ok(())
}

/// The restore payload that installs `chains` with `rules` in `table`. `present[i]` says
/// whether builtin rule i already exists: if all do they are left alone, otherwise the
/// present ones are deleted and all re-added in order (jumps inserted first in their chain).
pub(crate) fn apply_payload(
    table: Table,
    chains: &[String],
    rules: &[&IptRule],
    present: &[bool],
) -> String {
    let mut p = format!("*{}\n", table.name());
    for c in chains {
        p.push_str(&format!(":{c} - [0:0]\n"));
    }
    let (builtin, own): (Vec<&IptRule>, Vec<&IptRule>) = rules.iter().partition(|r| r.in_builtin());
    for r in own {
        p.push_str(&format!("{}\n", r.line()));
    }
    if !present.iter().all(|x| *x) {
        for (r, _) in builtin.iter().zip(present).filter(|(_, here)| **here) {
            p.push_str(&format!("-D {} {}\n", r.chain, r.spec));
        }
        for r in builtin {
            match r.is_jump() {
                true => p.push_str(&format!("-I {} 1 {}\n", r.chain, r.spec)),
                false => p.push_str(&format!("{}\n", r.line())),
            }
        }
    }
    p.push_str("COMMIT\n");
    p
}

/// The restore payload that removes our builtin rules that are `present`, then flushes and
/// deletes `chains` (a chain declared in the payload exists for the `-X`, so this is
/// idempotent).
pub(crate) fn remove_payload(
    table: Table,
    chains: &[String],
    present_builtin: &[&IptRule],
) -> String {
    let mut p = format!("*{}\n", table.name());
    for c in chains {
        p.push_str(&format!(":{c} - [0:0]\n"));
    }
    for r in present_builtin {
        p.push_str(&format!("-D {} {}\n", r.chain, r.spec));
    }
    for c in chains {
        p.push_str(&format!("-X {c}\n"));
    }
    p.push_str("COMMIT\n");
    p
}

/// What `iptables-save -t TABLE` shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Saved {
    /// Declared chains (`:NAME POLICY [p:b]`), builtins included.
    pub chains: Vec<String>,
    /// `(chain, spec)` of every `-A` line, in order.
    pub rules: Vec<(String, String)>,
}

impl Saved {
    /// The specs of `chain`, in order.
    pub fn chain(&self, chain: &str) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|(c, _)| c == chain)
            .map(|(_, s)| s.as_str())
            .collect()
    }
}

/// Parses one table of `iptables-save` output.
pub(crate) fn parse_save(text: &str) -> Saved {
    let mut s = Saved::default();
    for l in text.lines() {
        if let Some(decl) = l.strip_prefix(':') {
            s.chains
                .extend(decl.split_whitespace().next().map(str::to_string));
        } else if let Some(rule) = l.strip_prefix("-A ") {
            let (chain, spec) = rule.split_once(' ').unwrap_or((rule, ""));
            s.rules.push((chain.to_string(), spec.to_string()));
        }
    }
    s
}

fn run(table: Table, args: &[&str], stdin: Option<&str>) -> Result<(bool, String), PlumbError> {
    let cmdline = args.join(" ");
    let fail = |stderr: String| PlumbError::Iptables {
        cmd: cmdline.clone(),
        table: table.name(),
        stderr,
    };
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() || stdin.is_none() && args.contains(&"-C") {
        return Ok((out.status.success(), stdout));
    }
    Err(fail(
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// `iptables -w -t TABLE -C CHAIN SPEC`: whether the rule exists.
pub(crate) fn exists(rule: &IptRule) -> Result<bool, PlumbError> {
    let mut args = vec![
        "iptables",
        "-w",
        "-t",
        rule.table.name(),
        "-C",
        rule.chain.as_str(),
    ];
    args.extend(rule.spec.split_whitespace());
    Ok(run(rule.table, &args, None)?.0)
}

/// `iptables-restore -w --noflush` with `payload`.
pub(crate) fn restore(table: Table, payload: &str) -> Result<(), PlumbError> {
    tracing::debug!(table = table.name(), %payload, "iptables-restore --noflush");
    run(
        table,
        &["iptables-restore", "-w", "--noflush"],
        Some(payload),
    )
    .map(drop)
}

/// `iptables-save -t TABLE`, parsed.
pub(crate) fn save(table: Table) -> Result<Saved, PlumbError> {
    run(table, &["iptables-save", "-t", table.name()], None).map(|(_, out)| parse_save(&out))
}

#[cfg(test)]
mod tests;
