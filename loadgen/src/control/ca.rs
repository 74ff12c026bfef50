//! `CreateCertificate`: a CSR signed for the impersonated identity, if that identity
//! belongs to a workload the control plane serves.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use http::Request;
use zring::identity::Identity;
use zring_xds::ca::{IstioCertificateRequest, IstioCertificateResponse};
use zring_xds::grpc::{encode, Decoder};

use super::grpc::{start_reply, status_only, trailers, INVALID_ARGUMENT, PERMISSION_DENIED};
use super::{Event, Shared};

/// The longest validity granted (Istio's default `SECRET_TTL` is 24 h).
const MAX_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// The shortest: this CA serves tests, which ask for seconds to watch renewals.
const MIN_VALIDITY: Duration = Duration::from_secs(1);

pub async fn create(
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    shared: Arc<Shared>,
) {
    let request = match read_request(req.into_body()).await {
        Ok(r) => r,
        Err(reason) => return refuse(&mut respond, &shared, INVALID_ARGUMENT, reason),
    };
    let id = match identity_of(&request, &shared) {
        Ok(id) => id,
        Err(reason) => return refuse(&mut respond, &shared, PERMISSION_DENIED, reason),
    };
    let secs = u64::try_from(request.validity_duration).unwrap_or(0);
    let validity = Duration::from_secs(secs.clamp(MIN_VALIDITY.as_secs(), MAX_VALIDITY.as_secs()));
    let chain = match zring::tls::sign_csr(&shared.settings.ca_dir, &request.csr, &id, validity) {
        Ok(c) => c,
        Err(e) => return refuse(&mut respond, &shared, INVALID_ARGUMENT, e.to_string()),
    };
    shared.record(Event::Issued {
        identity: id.to_string(),
    });
    let Ok(mut out) = start_reply(&mut respond) else {
        return;
    };
    let reply = IstioCertificateResponse { cert_chain: chain };
    if out.send_data(encode(&reply), false).is_ok() {
        let _ = out.send_trailers(trailers(0, ""));
    }
}

fn refuse(respond: &mut SendResponse<Bytes>, shared: &Shared, code: u32, reason: String) {
    shared.record(Event::Refused {
        reason: format!("CreateCertificate: {reason}"),
    });
    status_only(respond, code, &reason);
}

async fn read_request(mut body: h2::RecvStream) -> Result<IstioCertificateRequest, String> {
    let mut all = BytesMut::new();
    while let Some(data) = body.data().await {
        let data = data.map_err(|e| format!("reading the request: {e}"))?;
        let _ = body.flow_control().release_capacity(data.len());
        all.extend_from_slice(&data);
    }
    let mut d = Decoder::default();
    d.push(&all);
    d.next_message::<IstioCertificateRequest>("IstioCertificateRequest")
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the request body holds no whole message".to_string())
}

/// The identity asked for, which must be that of a served workload: the
/// `ImpersonatedIdentity` a node proxy sends on a workload's behalf, else the one in the
/// CSR's SAN (a dedicated proxy asks for its own; istiod would take it from the token,
/// whose audience and subject this test control plane does not check).
fn identity_of(r: &IstioCertificateRequest, shared: &Shared) -> Result<Identity, String> {
    let impersonated = r
        .metadata
        .as_ref()
        .and_then(|m| zring_xds::struct_string(m, zring_xds::IMPERSONATED_IDENTITY));
    let id: Identity = match impersonated {
        Some(asked) => asked.parse().map_err(|e| format!("{e}"))?,
        None => zring::tls::csr_identity(&r.csr)?,
    };
    if shared.served().catalog.serves_identity(&id) {
        Ok(id)
    } else {
        Err(format!(
            "{id} is not the identity of any workload this control plane serves"
        ))
    }
}
