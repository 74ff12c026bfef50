//! The Istio CA client (`CA_ADDRESS`): a key pair and CSR per local workload identity,
//! sent to `istio.v1.auth.IstioCertificateService/CreateCertificate` with the
//! `ImpersonatedIdentity` metadata, as ztunnel sends it. Certificates are held in memory
//! (keys never touch disk), renewed when half of the remaining validity is gone; the old
//! one serves until a new one arrives, and a failed request is retried with backoff and
//! logged. Every change is a new generation with the current workloads and the new
//! certificate store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Uri;
use zring_xds::ca::{IstioCertificateRequest, IstioCertificateResponse};
use zring_xds::grpc::{encode, Decoder};
use zring_xds::{CREATE_CERTIFICATE_PATH, IMPERSONATED_IDENTITY};

use crate::config::xds_env::CaSettings;
use crate::config::Config;
use crate::error::ProxyError;
use crate::identity::Identity;
use crate::runtime::grpc::{err, grpc_status, recv, request, Server};
use crate::runtime::state::Shared;
use crate::tls::CertStore;

/// The longest the loop sleeps with nothing due. It wakes at once for a generation that
/// changes the local identities (and for the first full state) and otherwise sleeps until
/// the next renewal or retry is due; this bound only guards against the wall clock jumping
/// (a suspended VM), since renewals are wall-clock times and the sleep is monotonic.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The shortest: a certificate the CA issued already half spent (or expired) must not
/// turn the loop into a stream of requests.
const MIN_SLEEP: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// One certificate held, and when to renew it (or retry after a failure).
struct Held {
    pem: Option<(String, String)>,
    next: SystemTime,
    retry: Duration,
}

/// The CA loop; runs on a thread of its own (`runtime::xds::spawn_ca`) until the process stops.
pub async fn run(config: Arc<Config>, shared: Arc<Shared>, ca: CaSettings) {
    let mut held: BTreeMap<Identity, Held> = BTreeMap::new();
    let mut news = shared.news();
    while !shared.stopping() {
        news.borrow_and_update();
        let mut changed = false;
        for id in local_identities(&shared) {
            let h = held.entry(id.clone()).or_insert(Held {
                pem: None,
                next: SystemTime::UNIX_EPOCH,
                retry: RETRY_MIN,
            });
            if SystemTime::now() < h.next {
                continue;
            }
            let fetched = fetch(&config, &ca, &id).await;
            shared.control.ca_request(fetched.is_ok());
            match fetched {
                Ok((chain, key, renew_at)) => {
                    tracing::info!(identity = %id, "certificate from the CA");
                    h.pem = Some((chain, key));
                    h.next = renew_at;
                    h.retry = RETRY_MIN;
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(identity = %id, retry_in = ?h.retry, "certificate request failed: {e}; the previous certificate (if any) keeps serving (check CA_ADDRESS, CA_ROOT_CA and AUTH_TOKEN)");
                    h.next = SystemTime::now() + h.retry;
                    h.retry = (h.retry * 2).min(RETRY_MAX);
                }
            }
        }
        if changed {
            if let Err(e) = publish(&config, &shared, &ca, &held) {
                tracing::error!("the CA's certificates cannot be used: {e}");
            }
        }
        // Read again: the workloads may have changed while the requests were in flight.
        let all_held = local_identities(&shared)
            .iter()
            .all(|id| held.get(id).is_some_and(|h| h.pem.is_some()));
        if shared.synced() && !shared.has_state() && all_held {
            let generation = shared.generation();
            tracing::info!(
                generation,
                "workloads and their certificates in place; ready once the cores adopt them"
            );
            shared.set_ready_at(generation);
        }
        let sleep = until_due(&held, &local_identities(&shared), SystemTime::now());
        if let Ok(Err(_)) = tokio::time::timeout(sleep, news.changed()).await {
            tokio::time::sleep(sleep).await;
        }
    }
}

/// How long the loop may sleep: until the earliest renewal or retry of a local identity's
/// certificate, within [`MIN_SLEEP`, `MAX_SLEEP`].
fn until_due(held: &BTreeMap<Identity, Held>, local: &[Identity], now: SystemTime) -> Duration {
    local
        .iter()
        .map(|id| held.get(id).map_or(SystemTime::UNIX_EPOCH, |h| h.next))
        .map(|next| next.duration_since(now).unwrap_or(Duration::ZERO))
        .fold(MAX_SLEEP, Duration::min)
        .max(MIN_SLEEP)
}

/// Identities of the workloads on this node in the running generation.
/// (From the snapshot's identity index: O(local identities), not O(workloads).)
fn local_identities(shared: &Shared) -> Vec<Identity> {
    shared.current().snapshot.local_identities()
}

/// The trust bundle and every held certificate as a store (also the start-up store).
pub fn store(
    ca: &CaSettings,
    trust_domain: &str,
    pems: &[(String, String)],
) -> Result<CertStore, ProxyError> {
    let bundle = std::fs::read(&ca.root_ca)
        .map_err(|e| err(&format!("read CA_ROOT_CA {}", ca.root_ca.display()), e))?;
    CertStore::from_pem(&ca.root_ca, &bundle, trust_domain, pems).map_err(ProxyError::from)
}

fn publish(
    config: &Config,
    shared: &Shared,
    ca: &CaSettings,
    held: &BTreeMap<Identity, Held>,
) -> Result<(), ProxyError> {
    let pems: Vec<(String, String)> = held.values().filter_map(|h| h.pem.clone()).collect();
    let certs = store(ca, &config.trust_domain, &pems)?;
    let generation = shared.publish(|current| (current.snapshot.clone(), certs));
    tracing::info!(
        generation,
        certificates = pems.len(),
        "certificates from the CA applied"
    );
    Ok(())
}

/// One CreateCertificate call: (chain PEM, key PEM, when to renew).
async fn fetch(
    config: &Config,
    ca: &CaSettings,
    id: &Identity,
) -> Result<(String, String, SystemTime), ProxyError> {
    let uri: Uri = ca
        .address
        .parse()
        .map_err(|e| err(&format!("CA_ADDRESS {:?} is not a URL", ca.address), e))?;
    let server = Server {
        uri: &uri,
        roots: &ca.root_ca,
        roots_env: "CA_ROOT_CA",
        alt_hostname: ca.alt_hostname.as_deref(),
        timeout: config.connect_timeout,
    };
    let (csr, key) = crate::tls::new_csr(id)?;
    let body = IstioCertificateRequest {
        csr,
        validity_duration: i64::try_from(ca.ttl.as_secs()).unwrap_or(i64::MAX),
        metadata: Some(zring_xds::string_struct([(
            IMPERSONATED_IDENTITY,
            id.to_string().as_str(),
        )])),
    };
    let mut h2 = server.connect().await?;
    let req = request(&uri, CREATE_CERTIFICATE_PATH, &ca.token, &[])?;
    let (response, mut send) = h2
        .send_request(req, false)
        .map_err(|e| err("call the CA", e))?;
    send.send_data(encode(&body), true)
        .map_err(|e| err("send the CSR", e))?;
    let response = response.await.map_err(|e| err("the CA's answer", e))?;
    grpc_status(response.headers())?;
    let mut body = response.into_body();
    let mut decoder = Decoder::default();
    while let Some(data) = recv(&mut body, "read the CA's answer").await? {
        decoder.push(&data);
    }
    if let Ok(Some(t)) = body.trailers().await {
        grpc_status(&t)?;
    }
    let reply: IstioCertificateResponse = decoder
        .next_message("IstioCertificateResponse")
        .map_err(|e| err("decode the CA's answer", e))?
        .ok_or_else(|| err("the CA's answer", "no certificate in it"))?;
    let chain = reply.cert_chain.concat();
    let renew_at =
        half_life(&chain).ok_or_else(|| err("the CA's certificate", "unreadable validity"))?;
    Ok((chain, key, renew_at))
}

/// Halfway through what is left of the leaf's validity. Not from notBefore: CAs backdate
/// it (the dev CA by an hour), which would put the midpoint of a short-lived certificate in
/// the past and renew it in a loop.
fn half_life(chain_pem: &str) -> Option<SystemTime> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let not_after = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(not_after);
    let left = not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Some(SystemTime::now() + left / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> Identity {
        format!("spiffe://cluster.local/ns/default/sa/{name}")
            .parse()
            .unwrap()
    }

    fn held_until(next: SystemTime) -> Held {
        Held {
            pem: None,
            next,
            retry: RETRY_MIN,
        }
    }

    #[test]
    fn the_loop_sleeps_until_the_earliest_local_renewal_within_its_bounds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (a, b, gone) = (id("a"), id("b"), id("gone"));
        let mut held = BTreeMap::new();
        held.insert(a.clone(), held_until(now + Duration::from_secs(30)));
        held.insert(b.clone(), held_until(now + Duration::from_secs(20)));
        // A workload that left the node: its renewal no longer wakes the loop.
        held.insert(gone, held_until(now + Duration::from_secs(5)));
        let local = [a.clone(), b.clone()];
        assert_eq!(until_due(&held, &local, now), Duration::from_secs(20));
        // Nothing local: the loop waits for news, waking at the bound.
        assert_eq!(until_due(&held, &[], now), MAX_SLEEP);
        // Renewals far away: the bound.
        held.insert(b.clone(), held_until(now + Duration::from_secs(86_400)));
        held.insert(a.clone(), held_until(now + Duration::from_secs(86_400)));
        assert_eq!(until_due(&held, &local, now), MAX_SLEEP);
        // Overdue, or a new identity never asked for: at the floor, not a busy loop.
        held.insert(a.clone(), held_until(now - Duration::from_secs(3)));
        assert_eq!(until_due(&held, &local, now), MIN_SLEEP);
        assert_eq!(until_due(&held, &[id("new")], now), MIN_SLEEP);
    }
}
