//! The control plane's health as seen by zring: CreateCertificate calls, the ADS stream,
//! and the xDS responses it answered. Bumped by the xDS thread (never by a data core) and
//! read when `/metrics` is scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zring_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE};

/// The types zring subscribes to, in the order of [`ControlSample::updates`].
const TYPES: [&str; 2] = [ADDRESS_TYPE, AUTHORIZATION_TYPE];

/// Live counters in the shared block.
#[derive(Debug, Default)]
pub struct ControlMetrics {
    ca_success: AtomicU64,
    ca_failure: AtomicU64,
    xds_connected: AtomicBool,
    /// Per type of [`TYPES`]: `[acked, nacked]` responses.
    updates: [[AtomicU64; 2]; 2],
}

/// A copy of [`ControlMetrics`] for one scrape.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ControlSample {
    /// `[success, failure]` CreateCertificate calls.
    pub ca: [u64; 2],
    pub xds_connected: bool,
    /// Per type of [`TYPES`]: `[acked, nacked]` responses.
    pub updates: [[u64; 2]; 2],
}

impl ControlMetrics {
    /// Counts one CreateCertificate call by its outcome.
    pub fn ca_request(&self, ok: bool) {
        let c = if ok {
            &self.ca_success
        } else {
            &self.ca_failure
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_xds_connected(&self, up: bool) {
        self.xds_connected.store(up, Ordering::Relaxed);
    }

    /// Counts one answered response of `type_url`: ACK, or NACK (`refused`).
    pub fn xds_update(&self, type_url: &str, refused: bool) {
        if let Some(i) = TYPES.iter().position(|t| *t == type_url) {
            self.updates[i][usize::from(refused)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn sample(&self) -> ControlSample {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ControlSample {
            ca: [load(&self.ca_success), load(&self.ca_failure)],
            xds_connected: self.xds_connected.load(Ordering::Relaxed),
            updates: self.updates.each_ref().map(|u| u.each_ref().map(load)),
        }
    }
}

/// The `zring_ca_*` and `zring_xds_*` families; every series is rendered, zero or not.
pub fn render(out: &mut String, s: &ControlSample) {
    let name = "zring_ca_certificate_requests_total";
    let _ = writeln!(
        out,
        "# HELP {name} CreateCertificate calls to the CA, by outcome.\n# TYPE {name} counter"
    );
    for (outcome, n) in ["success", "failure"].iter().zip(s.ca) {
        let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {n}");
    }
    let name = "zring_xds_connected";
    let _ = writeln!(
        out,
        "# HELP {name} 1 while the delta ADS stream to istiod is up.\n# TYPE {name} gauge\n\
         {name} {}",
        u8::from(s.xds_connected)
    );
    let name = "zring_xds_updates_total";
    let _ = writeln!(
        out,
        "# HELP {name} xDS responses answered with an ACK or a NACK, by type.\n\
         # TYPE {name} counter"
    );
    for (type_url, counts) in TYPES.iter().zip(s.updates) {
        for (outcome, n) in ["ack", "nack"].iter().zip(counts) {
            let _ = writeln!(
                out,
                "{name}{{type_url=\"{type_url}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
}
