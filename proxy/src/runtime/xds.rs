//! The xDS client thread: one delta ADS stream to istiod (gRPC over HTTP/2 over TLS, as
//! ztunnel speaks it), driven by `zring_xds::delta` and applied through
//! [`XdsStore`](crate::config::xds::XdsStore). Every applied update becomes a new
//! immutable generation for the cores (the same swap the file reload uses); refused
//! resources are NACKed with their reasons and the previous state stays in force. It
//! reconnects with backoff, resuming from the versions it holds. Readiness (15021) turns
//! on once both types have been received and applied. Off the data cores: its own thread
//! with a single-threaded tokio runtime.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Request, Uri};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zring_xds::delta::{Rejected, Subscription, Update};
use zring_xds::discovery::{DeltaDiscoveryResponse, Node};
use zring_xds::grpc::{encode, Decoder};
use zring_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE, DELTA_ADS_PATH};

use crate::config::xds::XdsStore;
use crate::config::xds_env::XdsSettings;
use crate::config::{Config, Snapshot};
use crate::error::ProxyError;
use crate::runtime::state::{Shared, State};

const TYPES: [&str; 2] = [ADDRESS_TYPE, AUTHORIZATION_TYPE];
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const STOP_POLL: Duration = Duration::from_millis(50);

pub fn spawn(config: Arc<Config>, shared: Arc<Shared>) -> Result<JoinHandle<()>, ProxyError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProxyError::Xds(format!("cannot start the xDS runtime: {e}")))?;
    std::thread::Builder::new()
        .name("zring-xds".into())
        .spawn(move || rt.block_on(run(config, shared)))
        .map_err(|e| ProxyError::Xds(format!("cannot spawn the xDS thread: {e}")))
}

/// What survives reconnects: the subscription's versions and the applied resources.
struct Client {
    config: Arc<Config>,
    shared: Arc<Shared>,
    settings: XdsSettings,
    sub: Subscription,
    store: XdsStore,
    /// Types received and applied at least once (readiness needs all of them).
    seen: HashSet<String>,
}

async fn run(config: Arc<Config>, shared: Arc<Shared>) {
    let Some(settings) = config.xds.clone() else {
        return;
    };
    let node = Node {
        id: settings.node_id.clone(),
        cluster: settings.cluster_id.clone(),
        metadata: Some(zring_xds::string_struct(
            settings
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )),
    };
    let mut c = Client {
        sub: Subscription::new(node, &TYPES),
        store: XdsStore::default(),
        seen: HashSet::new(),
        settings,
        config,
        shared,
    };
    let mut backoff = BACKOFF_MIN;
    let shared = c.shared.clone();
    while !shared.stopping() {
        let result = tokio::select! {
            r = c.session() => r,
            _ = stopped(&shared) => return,
        };
        match result {
            Ok(()) => {
                tracing::info!(address = %c.settings.address, "istiod ended the xDS stream; reconnecting");
                backoff = BACKOFF_MIN;
            }
            Err(e) => tracing::warn!(
                address = %c.settings.address,
                retry_in = ?backoff,
                "{e}; the last configuration stays in force (check XDS_ADDRESS, XDS_ROOT_CA, AUTH_TOKEN and that istiod is up)"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&shared) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn stopped(shared: &Shared) {
    while !shared.stopping() {
        tokio::time::sleep(STOP_POLL).await;
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::Xds(format!("{what}: {e}"))
}

impl Client {
    async fn session(&mut self) -> Result<(), ProxyError> {
        let uri: Uri = self.settings.address.parse().map_err(|e| {
            err(
                &format!("XDS_ADDRESS {:?} is not a URL", self.settings.address),
                e,
            )
        })?;
        let mut h2 = self.connect(&uri).await?;
        let token = std::fs::read_to_string(&self.settings.token).map_err(|e| {
            err(
                &format!("read the token {}", self.settings.token.display()),
                e,
            )
        })?;
        let mut req = Request::post(format!("{uri}{}", DELTA_ADS_PATH.trim_start_matches('/')))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {}", token.trim()));
        for (k, v) in &self.settings.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(())
            .map_err(|e| err("build the request (check XDS_HEADER_*)", e))?;
        let (response, mut send) = h2
            .send_request(req, false)
            .map_err(|e| err("open the ADS stream", e))?;
        for r in self.sub.initial_requests() {
            send.send_data(encode(&r), false)
                .map_err(|e| err("send the subscription", e))?;
        }
        let response = response.await.map_err(|e| err("istiod's answer", e))?;
        grpc_status(response.headers())?;
        let mut body = response.into_body();
        let mut decoder = Decoder::default();
        while let Some(data) = body.data().await {
            let data = data.map_err(|e| err("read the ADS stream", e))?;
            let _ = body.flow_control().release_capacity(data.len());
            decoder.push(&data);
            while let Some(resp) = decoder
                .next_message::<DeltaDiscoveryResponse>("DeltaDiscoveryResponse")
                .map_err(|e| err("decode istiod's response", e))?
            {
                let answer = self.on_response(resp)?;
                send.send_data(encode(&answer), false)
                    .map_err(|e| err("send the ACK", e))?;
            }
        }
        decoder.finish().map_err(|e| err("the ADS stream", e))?;
        match body.trailers().await {
            Ok(Some(t)) => grpc_status(&t),
            Ok(None) => Ok(()),
            Err(e) => Err(err("the ADS stream's end", e)),
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<SendRequest<Bytes>, ProxyError> {
        let host = uri
            .host()
            .ok_or_else(|| err("XDS_ADDRESS", "has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::time::timeout(
            self.config.connect_timeout,
            TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| err(&format!("connect to {host}:{port}"), "timed out"))?
        .map_err(|e| err(&format!("connect to {host}:{port}"), e))?;
        let _ = tcp.set_nodelay(true);
        let name = self.settings.alt_hostname.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| err(&format!("{name:?} as a TLS server name"), e))?;
        let tls = TlsConnector::from(self.tls()?)
            .connect(name, tcp)
            .await
            .map_err(|e| {
                err(
                    "TLS handshake with istiod (does XDS_ROOT_CA hold its root?)",
                    e,
                )
            })?;
        let (h2, conn) = h2::client::handshake(tls)
            .await
            .map_err(|e| err("HTTP/2 handshake with istiod", e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("xDS connection ended: {e}");
            }
        });
        Ok(h2)
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
        let path = &self.settings.root_ca;
        let what = format!("read XDS_ROOT_CA {}", path.display());
        let pem = std::fs::read(path).map_err(|e| err(&what, e))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.map_err(|e| err(&what, e))?)
                .map_err(|e| err(&what, e))?;
        }
        if roots.is_empty() {
            return Err(err(&what, "no certificate in the file"));
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("TLS versions", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Applies one response and returns its ACK or NACK.
    fn on_response(
        &mut self,
        resp: DeltaDiscoveryResponse,
    ) -> Result<zring_xds::discovery::DeltaDiscoveryRequest, ProxyError> {
        let update = self
            .sub
            .receive(resp)
            .map_err(|e| err("istiod's response", e))?;
        let (mut rejected, next) = self.store.apply(&update);
        if let Some(local) = next {
            if let Err(e) = self.publish(local) {
                rejected.extend(refuse_all(&update, &e.to_string()));
            }
        }
        for r in &rejected {
            tracing::warn!(resource = %r.name, type_url = %update.type_url, "refused: {}", r.reason);
        }
        self.seen.insert(update.type_url.clone());
        if TYPES.iter().all(|t| self.seen.contains(*t)) && !self.shared.has_state() {
            let generation = self.shared.generation();
            tracing::info!(
                generation,
                "first full state from istiod applied; ready once the cores adopt it"
            );
            self.shared.set_ready_at(generation);
        }
        Ok(self.sub.answer(&update, &rejected))
    }

    fn publish(&self, local: crate::config::LocalConfig) -> Result<(), ProxyError> {
        let snapshot = Snapshot::new(local, self.config.node_name.as_deref())?;
        let state = State::with_snapshot(&self.config, snapshot, self.shared.generation() + 1)?;
        tracing::info!(
            generation = state.generation,
            "configuration from istiod applied"
        );
        self.shared.publish(state);
        Ok(())
    }
}

fn refuse_all(update: &Update, reason: &str) -> Vec<Rejected> {
    update
        .upserts
        .iter()
        .map(|r| Rejected {
            name: r.name.clone(),
            reason: reason.to_string(),
        })
        .collect()
}

/// `Err` when headers or trailers carry a non-zero grpc-status.
fn grpc_status(h: &http::HeaderMap) -> Result<(), ProxyError> {
    match h.get("grpc-status").and_then(|v| v.to_str().ok()) {
        None | Some("0") => Ok(()),
        Some(code) => {
            let msg = h
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            Err(err(
                "istiod refused the stream",
                format!("grpc-status {code}: {msg}"),
            ))
        }
    }
}
