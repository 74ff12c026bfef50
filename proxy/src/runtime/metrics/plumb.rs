//! The node side's counters (`--plumb --host-netns`): repairs by object kind, the pods
//! enrolled now, and the workloads refused. Bumped by the control and plumbing threads,
//! rendered only when the node side is on.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct PlumbMetrics {
    repairs: Mutex<BTreeMap<&'static str, u64>>,
    enrolled: AtomicU64,
    /// Workload → why it is not enrolled (the current set, not a history).
    refused: Mutex<BTreeMap<String, String>>,
}

impl PlumbMetrics {
    /// Counts one repaired object of `kind` (`rule`, `route`, `ipset member`, …).
    pub fn repaired(&self, kind: &'static str) {
        let mut r = self.repairs.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry(kind).or_default() += 1;
    }

    pub fn set_enrolled(&self, pods: usize) {
        self.enrolled.store(pods as u64, Ordering::Relaxed);
    }

    pub fn set_refused(&self, refused: &BTreeMap<String, String>) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = refused.clone();
    }

    /// `zring_plumb_repairs_total{object}`, `zring_plumb_enrolled_pods`,
    /// `zring_plumb_refused_workloads{workload,reason}`.
    pub fn render(&self, out: &mut String) {
        let name = "zring_plumb_repairs_total";
        let _ = writeln!(
            out,
            "# HELP {name} Node-side objects found missing or different and repaired, by kind.\n\
             # TYPE {name} counter"
        );
        for (kind, n) in self
            .repairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{name}{{object=\"{kind}\"}} {n}");
        }
        let name = "zring_plumb_enrolled_pods";
        let _ = writeln!(
            out,
            "# HELP {name} Pods of this node in the capture set.\n# TYPE {name} gauge\n{name} {}",
            self.enrolled.load(Ordering::Relaxed)
        );
        let name = "zring_plumb_refused_workloads";
        let _ = writeln!(
            out,
            "# HELP {name} Workloads of this node that could not be enrolled (1 each).\n\
             # TYPE {name} gauge"
        );
        for (w, why) in self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let why = why.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{workload=\"{w}\",reason=\"{why}\"}} 1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_repairs_gauge_and_refusals() {
        let m = PlumbMetrics::default();
        m.repaired("rule");
        m.repaired("rule");
        m.repaired("ipset member");
        m.set_enrolled(3);
        let refused = BTreeMap::from([("default/x".to_string(), "a \"b\"".to_string())]);
        m.set_refused(&refused);
        let mut out = String::new();
        m.render(&mut out);
        for want in [
            "zring_plumb_repairs_total{object=\"rule\"} 2\n",
            "zring_plumb_repairs_total{object=\"ipset member\"} 1\n",
            "zring_plumb_enrolled_pods 3\n",
            "zring_plumb_refused_workloads{workload=\"default/x\",reason=\"a \\\"b\\\"\"} 1\n",
        ] {
            assert!(out.contains(want), "{want} missing from\n{out}");
        }
    }
}
