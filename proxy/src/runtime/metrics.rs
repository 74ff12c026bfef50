//! Per-core counters: plain `Cell`s bumped on the data path, copied into the shared
//! block by each core on its control tick, summed only when `/metrics` is scraped.
//! Names are ztunnel's so Istio dashboards keep working.

use std::cell::Cell;
use std::fmt::Write;

use crate::runtime::state::Shared;

/// One core's counters.
#[derive(Default)]
pub struct Counters {
    pub opened: Cell<u64>,
    pub closed: Cell<u64>,
    pub failed: Cell<u64>,
    pub received_bytes: Cell<u64>,
    pub sent_bytes: Cell<u64>,
    pub hbone_accepted: Cell<u64>,
}

/// A copy of one core's counters at a control tick.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub opened: u64,
    pub closed: u64,
    pub failed: u64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    pub hbone_accepted: u64,
}

impl Counters {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    fn totals(&self) -> Totals {
        Totals {
            opened: self.opened.get(),
            closed: self.closed.get(),
            failed: self.failed.get(),
            received_bytes: self.received_bytes.get(),
            sent_bytes: self.sent_bytes.get(),
            hbone_accepted: self.hbone_accepted.get(),
        }
    }

    pub fn publish(&self, core: usize, generation: u64, shared: &Shared) {
        shared.store_core(core, self.totals(), generation);
    }
}

impl std::ops::Add for Totals {
    type Output = Totals;
    fn add(self, o: Totals) -> Totals {
        Totals {
            opened: self.opened + o.opened,
            closed: self.closed + o.closed,
            failed: self.failed + o.failed,
            received_bytes: self.received_bytes + o.received_bytes,
            sent_bytes: self.sent_bytes + o.sent_bytes,
            hbone_accepted: self.hbone_accepted + o.hbone_accepted,
        }
    }
}

/// Prometheus text exposition of the summed totals.
pub fn render(t: &Totals) -> String {
    let mut out = String::new();
    let rows: [(&str, &str, &str, u64); 6] = [
        (
            "istio_tcp_connections_opened_total",
            "counter",
            "TCP connections opened",
            t.opened,
        ),
        (
            "istio_tcp_connections_closed_total",
            "counter",
            "TCP connections closed",
            t.closed,
        ),
        (
            "istio_tcp_connections_failed",
            "counter",
            "TCP connections that failed",
            t.failed,
        ),
        (
            "istio_tcp_received_bytes_total",
            "counter",
            "Bytes received from clients",
            t.received_bytes,
        ),
        (
            "istio_tcp_sent_bytes_total",
            "counter",
            "Bytes sent to clients",
            t.sent_bytes,
        ),
        (
            "zring_hbone_connections_accepted_total",
            "counter",
            "Inbound HBONE TCP connections accepted",
            t.hbone_accepted,
        ),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}.\n# TYPE {name} {kind}\n{name}{{reporter=\"zring\"}} {value}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ztunnel_names_with_sums() {
        let a = Totals {
            opened: 2,
            sent_bytes: 10,
            ..Totals::default()
        };
        let b = Totals {
            opened: 3,
            sent_bytes: 5,
            ..Totals::default()
        };
        let text = render(&(a + b));
        assert!(text.contains("istio_tcp_connections_opened_total{reporter=\"zring\"} 5\n"));
        assert!(text.contains("istio_tcp_sent_bytes_total{reporter=\"zring\"} 15\n"));
        assert!(text.contains("# TYPE istio_tcp_received_bytes_total counter"));
    }
}
