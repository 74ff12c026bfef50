//! A workload decoded straight from its `istio.workload.Address` bytes (a cold start holds
//! ~100k of them): its text is borrowed from the message and goes once into the store's
//! [`Str`]s, without prost's `String` per field, `Vec` per address and map per workload
//! in between.
//!
//! Only the shapes istiod sends are read here: one `workload` field in the Address, each
//! embedded message (waypoint, locality, a service's port list) at most once, each service
//! named once. Anything else, and anything the wire reader cannot read, is left to prost
//! ([`super::decode_address`]), so what a resource decodes to, or why it is refused, does
//! not depend on the path it took (the tests compare the two).

use smallvec::SmallVec;
use zring_xds::wire::{Fields, Malformed};
use zring_xds::workload as pw;

use super::super::index::Name;
use super::super::local::{or_default, Locality, DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN};
use super::super::text::Str;
use super::super::workload_services::Ports;
use super::super::{Protocol, Workload, WorkloadServices};
use super::{ip_from, no_address, port};

/// An Address's workload read in place: `None` when prost must decode the Address (it
/// holds a service, or a shape this path leaves to prost); else the workload or why it
/// is refused. `name` is the resource's name: a uid equal to it shares its allocation.
pub(super) fn workload(address: &[u8], name: Option<&Name>) -> Option<Result<Workload, String>> {
    let body = only_workload(address).ok()?;
    let raw = Raw::read(body).ok()?;
    raw.into_workload(name).ok()
}

/// The bytes of the Address's one `workload` field and nothing else.
fn only_workload(address: &[u8]) -> Result<&[u8], Malformed> {
    let mut body = None;
    for field in Fields::new(address) {
        match field? {
            (1, v) if body.is_none() => body = Some(v.bytes()?),
            _ => return Err(Malformed),
        }
    }
    body.ok_or(Malformed)
}

/// A workload's fields as they are on the wire.
#[derive(Default)]
struct Raw<'a> {
    uid: &'a str,
    name: &'a str,
    namespace: &'a str,
    addresses: SmallVec<[&'a [u8]; 2]>,
    tunnel_protocol: i32,
    trust_domain: &'a str,
    service_account: &'a str,
    waypoint: Option<&'a [u8]>,
    node: &'a str,
    canonical_name: &'a str,
    canonical_revision: &'a str,
    workload_name: &'a str,
    services: SmallVec<[(&'a str, &'a [u8]); 2]>,
    authorization_policies: Vec<&'a str>,
    cluster_id: &'a str,
    locality: Option<[&'a str; 3]>,
}

impl<'a> Raw<'a> {
    fn read(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut w = Raw::default();
        for field in Fields::new(body) {
            let (number, v) = field?;
            match number {
                20 => w.uid = v.str()?,
                1 => w.name = v.str()?,
                2 => w.namespace = v.str()?,
                3 => w.addresses.push(v.bytes()?),
                // hostname, network: unused, but prost refuses them when not UTF-8.
                21 | 4 => {
                    v.str()?;
                }
                // prost keeps an enum's low 32 bits.
                5 => w.tunnel_protocol = v.varint()? as i32,
                6 => w.trust_domain = v.str()?,
                7 => w.service_account = v.str()?,
                8 => once(&mut w.waypoint, v.bytes()?)?,
                9 => w.node = v.str()?,
                10 => w.canonical_name = v.str()?,
                11 => w.canonical_revision = v.str()?,
                // workload_type, status: unused enums.
                12 | 17 => {
                    v.varint()?;
                }
                13 => w.workload_name = v.str()?,
                22 => w.services.push(service_entry(v.bytes()?)?),
                16 => w.authorization_policies.push(v.str()?),
                18 => w.cluster_id = v.str()?,
                24 => once(&mut w.locality, locality(v.bytes()?)?)?,
                // Unknown to this version: prost skips them too.
                _ => {}
            }
        }
        let keys = || w.services.iter().map(|(k, _)| *k);
        if keys()
            .enumerate()
            .any(|(i, k)| keys().skip(i + 1).any(|o| o == k))
        {
            // A key given twice: prost's map keeps the last; left to it.
            return Err(Malformed);
        }
        Ok(w)
    }

    /// The workload as `workload_from` makes it from prost's message, problems in the
    /// same order; `Err(Malformed)` when a port list cannot be read.
    fn into_workload(self, res: Option<&Name>) -> Result<Result<Workload, String>, Malformed> {
        // What prost would refuse to decode first, then the problems in `workload_from`'s
        // order.
        let lists = self.services.iter().map(|(_, list)| port_list(list));
        let lists: Vec<Result<Ports, String>> = lists.collect::<Result<_, _>>()?;
        let waypoint = self.waypoint.map(prost::Message::decode).transpose();
        let waypoint: Option<pw::GatewayAddress> = waypoint.map_err(|_| Malformed)?;
        Ok(self.checked(res, lists, waypoint))
    }

    fn checked(
        self,
        res: Option<&Name>,
        lists: Vec<Result<Ports, String>>,
        waypoint: Option<pw::GatewayAddress>,
    ) -> Result<Workload, String> {
        if self.addresses.is_empty() {
            return Err(no_address(self.uid));
        }
        let workload_ips = self.addresses.iter().map(|b| ip_from(b));
        let workload_ips = workload_ips.collect::<Result<_, _>>()?;
        let mut services = Vec::with_capacity(lists.len());
        for ((key, _), ports) in self.services.iter().zip(lists) {
            services.push((key.to_string(), ports?));
        }
        let waypoint = super::super::waypoint::from_xds(waypoint)?.map(Box::new);
        let uid = match res {
            Some(n) if **n == *self.uid => Str::from(n.clone()),
            _ => Str::unique(self.uid),
        };
        let workload_name = Str::from(self.workload_name);
        // Usually the same value (the owner's name): one lookup in the shared set.
        let canonical_name = if self.canonical_name == self.workload_name {
            workload_name.clone()
        } else {
            Str::from(self.canonical_name)
        };
        let [region, zone, subzone] = self.locality.unwrap_or_default();
        Ok(Workload {
            uid,
            name: Str::unique(self.name),
            namespace: self.namespace.into(),
            service_account: or_default(self.service_account, DEFAULT_SERVICE_ACCOUNT).into(),
            trust_domain: or_default(self.trust_domain, DEFAULT_TRUST_DOMAIN).into(),
            workload_ips,
            protocol: match pw::TunnelProtocol::try_from(self.tunnel_protocol) {
                Ok(pw::TunnelProtocol::Hbone) => Protocol::Hbone,
                _ => Protocol::Tcp,
            },
            node: self.node.into(),
            services: WorkloadServices::from_iter(services),
            authorization_policies: self
                .authorization_policies
                .iter()
                .map(|p| p.to_string())
                .collect(),
            workload_name,
            canonical_name,
            canonical_revision: self.canonical_revision.into(),
            cluster_id: self.cluster_id.into(),
            locality: Locality {
                region: region.into(),
                zone: zone.into(),
                subzone: subzone.into(),
            },
            waypoint,
        })
    }
}

/// Sets `slot` to `v`; an embedded message given twice is merged by prost: left to it.
fn once<T>(slot: &mut Option<T>, v: T) -> Result<(), Malformed> {
    match slot.replace(v) {
        None => Ok(()),
        Some(_) => Err(Malformed),
    }
}

/// One entry of the `services` map: its key and its `PortList`'s bytes.
fn service_entry(entry: &[u8]) -> Result<(&str, &[u8]), Malformed> {
    let (mut key, mut list) = ("", None);
    for field in Fields::new(entry) {
        match field? {
            (1, v) => key = v.str()?,
            (2, v) => once(&mut list, v.bytes()?)?,
            _ => {}
        }
    }
    Ok((key, list.unwrap_or_default()))
}

/// `istio.workload.Locality`: region, zone, subzone.
fn locality(b: &[u8]) -> Result<[&str; 3], Malformed> {
    let mut l = [""; 3];
    for field in Fields::new(b) {
        if let (n @ 1..=3, v) = field? {
            l[n as usize - 1] = v.str()?;
        }
    }
    Ok(l)
}

/// A `PortList` as `ports_from` makes it.
fn port_list(b: &[u8]) -> Result<Result<Ports, String>, Malformed> {
    let mut ports = Ports::new();
    for field in Fields::new(b) {
        let (1, v) = field? else { continue };
        let (mut service, mut target) = (0u32, 0u32);
        for f in Fields::new(v.bytes()?) {
            match f? {
                // prost keeps a uint32's low 32 bits.
                (1, p) => service = p.varint()? as u32,
                (2, p) => target = p.varint()? as u32,
                _ => {}
            }
        }
        match (port(service), port(target)) {
            (Ok(s), Ok(t)) => {
                ports.insert(s, t);
            }
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
        }
    }
    Ok(Ok(ports))
}

#[cfg(test)]
#[path = "xds_wire_tests.rs"]
mod tests;
