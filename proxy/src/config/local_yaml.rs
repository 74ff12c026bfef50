//! The YAML shapes of [`LocalConfig`]: private twins of the public types that also accept
//! (and drop) the fields ztunnel knows but zring does not use. Converting them records
//! problems (unparsable VIPs) instead of stopping at the first.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::local::{
    or_default, LocalConfig, Locality, NetworkAddress, Protocol, Service, Workload,
    DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN,
};
use super::policy::Policy;
use super::text::Str;
use super::waypoint::GatewayAddress;
use super::{ConfigError, ConfigErrors};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct LocalConfigYaml {
    #[serde(default)]
    workloads: Vec<WorkloadYaml>,
    #[serde(default)]
    services: Vec<ServiceYaml>,
    #[serde(default)]
    policies: Vec<Policy>,
}

impl LocalConfigYaml {
    pub(super) fn into_config(self, problems: &mut ConfigErrors) -> LocalConfig {
        LocalConfig {
            workloads: self.workloads.into_iter().map(Workload::from).collect(),
            services: self
                .services
                .into_iter()
                .map(|s| s.into_service(problems))
                .collect(),
            policies: self.policies,
        }
    }
}

/// ztunnel's workload fields; the `_`-prefixed ones are accepted and ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WorkloadYaml {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    name: String,
    namespace: String,
    #[serde(default)]
    service_account: String,
    #[serde(default)]
    trust_domain: String,
    #[serde(default)]
    workload_ips: Vec<IpAddr>,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    node: String,
    #[serde(default)]
    services: BTreeMap<String, BTreeMap<u16, u16>>,
    #[serde(default)]
    authorization_policies: Vec<String>,
    #[serde(default)]
    waypoint: Option<GatewayAddress>,
    #[serde(default, rename = "networkGateway")]
    _network_gateway: IgnoredAny,
    #[serde(default, rename = "networkMode")]
    _network_mode: IgnoredAny,
    #[serde(default, rename = "network")]
    _network: IgnoredAny,
    #[serde(default)]
    workload_name: String,
    #[serde(default, rename = "workloadType")]
    _workload_type: IgnoredAny,
    #[serde(default)]
    canonical_name: String,
    #[serde(default)]
    canonical_revision: String,
    #[serde(default, rename = "hostname")]
    _hostname: IgnoredAny,
    #[serde(default, rename = "nativeTunnel")]
    _native_tunnel: IgnoredAny,
    #[serde(default, rename = "applicationTunnel")]
    _application_tunnel: IgnoredAny,
    #[serde(default, rename = "status")]
    _status: IgnoredAny,
    #[serde(default)]
    cluster_id: String,
    #[serde(default)]
    locality: Locality,
    #[serde(default, rename = "capacity")]
    _capacity: IgnoredAny,
}

impl From<WorkloadYaml> for Workload {
    fn from(w: WorkloadYaml) -> Workload {
        Workload {
            uid: Str::unique(&w.uid),
            name: Str::unique(&w.name),
            namespace: w.namespace.into(),
            service_account: or_default(&w.service_account, DEFAULT_SERVICE_ACCOUNT).into(),
            trust_domain: or_default(&w.trust_domain, DEFAULT_TRUST_DOMAIN).into(),
            workload_ips: w.workload_ips.into(),
            protocol: w.protocol,
            node: w.node.into(),
            services: w.services.into(),
            authorization_policies: w.authorization_policies.into(),
            workload_name: w.workload_name.into(),
            canonical_name: w.canonical_name.into(),
            canonical_revision: w.canonical_revision.into(),
            cluster_id: w.cluster_id.into(),
            locality: w.locality,
            waypoint: w.waypoint.map(Box::new),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceYaml {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    hostname: String,
    #[serde(default)]
    vips: Vec<String>,
    #[serde(default)]
    ports: BTreeMap<u16, u16>,
    #[serde(default, rename = "endpoints")]
    _endpoints: IgnoredAny,
    #[serde(default, rename = "subjectAltNames")]
    _subject_alt_names: IgnoredAny,
    #[serde(default)]
    waypoint: Option<GatewayAddress>,
    #[serde(default, rename = "loadBalancer")]
    _load_balancer: IgnoredAny,
    #[serde(default, rename = "ipFamilies")]
    _ip_families: IgnoredAny,
    // ztunnel's own examples set these (`canonical: true`); zring does not use them.
    #[serde(default, rename = "cidrVips")]
    _cidr_vips: IgnoredAny,
    #[serde(default, rename = "weightedWaypoints")]
    _weighted_waypoints: IgnoredAny,
    #[serde(default, rename = "canonical")]
    _canonical: IgnoredAny,
    #[serde(default, rename = "visibility")]
    _visibility: IgnoredAny,
}

impl ServiceYaml {
    fn into_service(self, problems: &mut ConfigErrors) -> Service {
        let mut vips = Vec::with_capacity(self.vips.len());
        for vip in self.vips {
            match vip.parse::<NetworkAddress>() {
                Ok(a) => vips.push(a),
                Err(reason) => problems.push(ConfigError::BadVip {
                    service: self.hostname.clone(),
                    vip,
                    reason,
                }),
            }
        }
        Service {
            name: self.name,
            namespace: self.namespace,
            hostname: self.hostname,
            vips,
            ports: self.ports,
            waypoint: self.waypoint.map(Box::new),
        }
    }
}
