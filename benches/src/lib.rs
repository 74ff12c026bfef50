//! Criterion benchmarks for zring's I/O-free core; see `benches/core.rs`.
//!
//! `cargo bench -p zring-benches` runs them. Whole-path speed (throughput, latency, CPU)
//! is measured by `zring-loadgen` and recorded under `results/`.
#![forbid(unsafe_code)]

/// A workload config with `n` HBONE workloads behind one service VIP, for lookups at scale.
pub fn mesh_yaml(n: usize) -> String {
    let mut yaml = String::from("workloads:\n");
    for i in 0..n {
        let (hi, lo) = (i / 250, i % 250 + 2);
        yaml.push_str(&format!(
            "- uid: c//v1/Pod/default/w{i}\n  name: w{i}\n  namespace: default\n  serviceAccount: sa{i}\n  workloadIps: [\"10.244.{hi}.{lo}\"]\n  protocol: HBONE\n  node: node-{}\n  services:\n    \"default/svc.default.svc.cluster.local\":\n      80: 8080\n",
            i % 2
        ));
    }
    yaml.push_str("services:\n- name: svc\n  namespace: default\n  hostname: svc.default.svc.cluster.local\n  vips: [\"/10.96.0.10\"]\n  ports:\n    80: 8080\n");
    yaml
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixture_parses_with_all_workloads() {
        let local = zring::config::LocalConfig::from_yaml("bench", &super::mesh_yaml(600)).unwrap();
        assert_eq!(local.workloads.len(), 600);
        assert_eq!(local.services.len(), 1);
    }
}
