//! Lowering `net.ipv4.conf.all.rp_filter` without loosening anyone else's devices.
//!
//! The kernel filters with max(all, device): the ztunnel veth's 0 only takes effect with
//! `all` at 0. Lowering `all` alone would also lower every device whose own value is below
//! it, so those are first raised to the old `all` (their effective value stays the same).

use std::fs;
use std::path::{Path, PathBuf};

use crate::render::Desired;
use crate::PlumbError;

const CONF: &str = "/proc/sys/net/ipv4/conf";
const ALL: &str = "net.ipv4.conf.all.rp_filter";

/// Before `d`'s sysctls are written in the calling thread's netns: when `d` lowers `all`,
/// raises every device not named by `d` (and `default`, for devices created later) to the
/// current `all`.
pub(crate) fn keep_effective(d: &Desired) -> Result<(), PlumbError> {
    let Some(want) = d.sysctls.iter().find(|s| s.key == ALL) else {
        return Ok(());
    };
    let old = read(&path("all"))?;
    if old <= want.value.parse().unwrap_or(0) {
        return Ok(());
    }
    for dev in devices()? {
        let key = format!("net.ipv4.conf.{dev}.rp_filter");
        if dev == "all" || d.sysctls.iter().any(|s| s.key == key) {
            continue;
        }
        let p = path(&dev);
        if read(&p)? < old {
            fs::write(&p, old.to_string()).map_err(|source| err(&key, old.to_string(), source))?;
        }
    }
    Ok(())
}

fn devices() -> Result<Vec<String>, PlumbError> {
    let rd = fs::read_dir(CONF).map_err(|source| err(CONF, "<list>".into(), source))?;
    Ok(rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

fn path(dev: &str) -> PathBuf {
    Path::new(CONF).join(dev).join("rp_filter")
}

fn read(p: &Path) -> Result<u8, PlumbError> {
    let key = p.display().to_string();
    let s = fs::read_to_string(p).map_err(|source| err(&key, "<read>".into(), source))?;
    s.trim().parse().map_err(|_| {
        err(
            &key,
            "<read>".into(),
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a number: {s:?}"),
            ),
        )
    })
}

fn err(key: &str, value: String, source: std::io::Error) -> PlumbError {
    PlumbError::Sysctl {
        key: key.into(),
        value,
        source,
    }
}
