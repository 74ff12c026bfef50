//! ZDS messages to and from bytes (pure): a received packet (its bytes, the descriptors
//! that came with it, whether the kernel truncated it) becomes a [`Request`] or an error;
//! our hello and acks become packets. One protobuf message per SOCK_SEQPACKET packet, no
//! length prefix (ztunnel's `src/inpod/protocol.rs`).

use prost::Message;
use zring_xds::zds::{self, workload_request::Payload, workload_response};

use super::{PodInfo, PodUid};

/// A packet above this size is refused as truncated. ztunnel reads into 1024 bytes; an
/// AddWorkload is a uid and three names.
pub const MAX_PACKET: usize = 4096;

/// What the CNI asked, with the descriptor type `F` (an `OwnedFd` in the client, anything
/// in tests).
#[derive(Debug, PartialEq, Eq)]
pub enum Request<F> {
    /// A pod to capture: its network namespace came as the packet's only descriptor.
    Add {
        uid: PodUid,
        info: Option<PodInfo>,
        netns: F,
    },
    /// Before `SnapshotSent`: a pod the CNI still has, whose namespace it could not send.
    Keep { uid: PodUid },
    /// Stop capturing a pod.
    Del { uid: PodUid },
    /// The snapshot of a new connection is complete.
    SnapshotSent,
}

/// Why a packet was refused; the text goes back in the Ack (ztunnel's wording where it has
/// one) and to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZdsError {
    #[error("received truncated message (data or control larger than the buffer)")]
    Truncated,
    #[error("cannot decode WorkloadRequest: {0}")]
    Decode(String),
    #[error("no payload")]
    NoPayload,
    #[error("AddWorkload without its network namespace descriptor (no control message)")]
    MissingFd,
    #[error("expected 1 descriptor, got {0}")]
    TooManyFds(usize),
    #[error("unexpected descriptor with a message other than AddWorkload")]
    UnexpectedFd,
    #[error("the descriptor is not a network namespace: {0}")]
    NotNetns(String),
    #[error("AddWorkload without workload_info")]
    NoWorkloadInfo,
    #[error("KeepWorkload after SnapshotSent")]
    KeepAfterSnapshot,
    #[error("SnapshotSent received twice on one connection")]
    SnapshotTwice,
    #[error("cannot start the pod's listeners: {0}")]
    Start(String),
}

/// Decodes one packet. Every descriptor in `fds` is dropped (closed) unless it becomes the
/// request's namespace.
pub fn decode<F>(data: &[u8], mut fds: Vec<F>, truncated: bool) -> Result<Request<F>, ZdsError> {
    if truncated {
        return Err(ZdsError::Truncated);
    }
    if fds.len() > 1 {
        return Err(ZdsError::TooManyFds(fds.len()));
    }
    let req = zds::WorkloadRequest::decode(data).map_err(|e| ZdsError::Decode(e.to_string()))?;
    let fd = fds.pop();
    match (req.payload.ok_or(ZdsError::NoPayload)?, fd) {
        (Payload::Add(a), Some(netns)) => Ok(Request::Add {
            uid: PodUid(a.uid),
            info: a.workload_info.map(|w| PodInfo {
                name: w.name,
                namespace: w.namespace,
                service_account: w.service_account,
            }),
            netns,
        }),
        (Payload::Add(_), None) => Err(ZdsError::MissingFd),
        (_, Some(_)) => Err(ZdsError::UnexpectedFd),
        (Payload::Keep(k), None) => Ok(Request::Keep { uid: PodUid(k.uid) }),
        (Payload::Del(d), None) => Ok(Request::Del { uid: PodUid(d.uid) }),
        (Payload::SnapshotSent(_), None) => Ok(Request::SnapshotSent),
    }
}

/// `ZdsHello { version: V1 }`, the first packet of every connection.
pub fn hello() -> Vec<u8> {
    zds::ZdsHello {
        version: zds::Version::V1 as i32,
    }
    .encode_to_vec()
}

/// The answer to one request: an empty error is success.
pub fn ack(result: &Result<(), ZdsError>) -> Vec<u8> {
    let error = match result {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    };
    zds::WorkloadResponse {
        payload: Some(workload_response::Payload::Ack(zds::Ack { error })),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests;
