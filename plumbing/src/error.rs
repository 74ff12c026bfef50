//! The crate's one error type: every variant names the object and what to do about it.

use std::path::PathBuf;

/// Errors from rendering, applying, checking or removing the plumbing.
#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    /// The process lacks CAP_NET_ADMIN (plumbing changes kernel networking state).
    #[error("missing CAP_NET_ADMIN: run as root (or grant CAP_NET_ADMIN and CAP_SYS_ADMIN for netns) and retry")]
    NotPermitted,
    /// A binary the plumbing shells out to is not on PATH.
    #[error("`{tool}` not found on PATH: install the `{package}` package (scripts/install-deps does) and retry")]
    MissingTool {
        /// The missing binary.
        tool: &'static str,
        /// The Debian package providing it.
        package: &'static str,
    },
    /// A named network namespace does not exist.
    #[error("network namespace `{0}` not found (a name under /run/netns, or a namespace file such as a mount of the host's /proc/1/ns/net): create it (`ip netns add NAME`), mount it, or fix --netns / --host-netns")]
    NetnsMissing(String),
    /// A named network namespace already exists.
    #[error("network namespace `{0}` already exists under /run/netns: delete it (`ip netns del {0}`) or pick another name")]
    NetnsExists(String),
    /// A system call on a namespace, mount or file failed.
    #[error("{op} on `{path}` failed: {source}")]
    Sys {
        /// What was attempted (setns, unshare, mount, ...).
        op: &'static str,
        /// The file or namespace concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A network interface the plumbing needs does not exist.
    #[error("interface `{dev}` not found in {netns}: {hint}")]
    LinkMissing {
        /// Interface name.
        dev: String,
        /// Where it was looked for.
        netns: String,
        /// What to do.
        hint: &'static str,
    },
    /// A netlink request failed.
    #[error("netlink {op} for {object} failed: {detail}")]
    Netlink {
        /// The request (add route, add rule, ...).
        op: &'static str,
        /// The object, in `ip` notation.
        object: String,
        /// The kernel's answer.
        detail: String,
    },
    /// A pre-existing object is in the way of one the plumbing owns.
    #[error("conflicting {object} already exists (found `{found}`): remove it (or run `zring plumb ... down` if a previous run left it) and retry")]
    Conflict {
        /// The object kind and key, e.g. "rule at priority 101".
        object: String,
        /// What was found, in `ip` notation.
        found: String,
    },
    /// iptables-restore / iptables-save / iptables failed.
    #[error("`{cmd}` failed for table {table}: {stderr}")]
    Iptables {
        /// The command line run.
        cmd: String,
        /// The iptables table.
        table: &'static str,
        /// Its stderr.
        stderr: String,
    },
    /// An ipset operation failed.
    #[error("ipset {op} on `{set}` failed: {detail}: is the ip_set kernel module available and the set not in use by other rules?")]
    Ipset {
        /// create, add, del, list, destroy.
        op: &'static str,
        /// The set name.
        set: String,
        /// The kernel's answer.
        detail: String,
    },
    /// Writing a sysctl failed.
    #[error("sysctl {key}={value} failed: {source}")]
    Sysctl {
        /// Dotted key.
        key: String,
        /// Value written.
        value: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A YAML input file could not be read or parsed.
    #[error("input file {path}: {detail}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong (serde_yaml reports line and column).
        detail: String,
    },
    /// A required input field was neither given as a flag nor in the file.
    #[error("missing input `{0}`: pass --{0} or set `{1}` in the --file YAML")]
    MissingInput(&'static str, &'static str),
    /// An apply step failed and rollback of what it created also failed.
    #[error("{first}; rollback also failed: {rollback}: inspect with `zring plumb ... check` and clean up with `... down`")]
    RollbackFailed {
        /// The original failure.
        first: Box<PlumbError>,
        /// The rollback failure.
        rollback: Box<PlumbError>,
    },
    /// An incremental operation needs objects that `up` creates.
    #[error("{object} does not exist: run `zring plumb {side} up` first")]
    NotUp {
        /// The missing object.
        object: String,
        /// node or ztunnel.
        side: &'static str,
    },
    /// A trace query that the traced namespaces cannot answer.
    #[error("trace: {what}: {hint}")]
    Trace {
        /// What is wrong with the query.
        what: String,
        /// What to pass instead.
        hint: &'static str,
    },
    /// The worker thread running a namespace job panicked or could not start.
    #[error("netns worker thread failed: {0}")]
    Thread(String),
}

impl PlumbError {
    pub(crate) fn sys(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Sys {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn netlink(
        op: &'static str,
        object: impl Into<String>,
        e: impl std::fmt::Display,
    ) -> Self {
        Self::Netlink {
            op,
            object: object.into(),
            detail: e.to_string(),
        }
    }
}
