use thiserror::Error;

/// Everything that can go wrong decoding control-plane traffic.
#[derive(Debug, Error)]
pub enum XdsError {
    #[error("gRPC message of {len} bytes exceeds the {max}-byte limit; the control plane sent an oversized response (raise the limit or check the server)")]
    TooLarge { len: usize, max: usize },
    #[error("gRPC message is compressed (flag {0}); zring does not negotiate compression, so the server must not send it")]
    Compressed(u8),
    #[error("gRPC stream ended inside a message ({0} bytes left over): the connection to the control plane was cut")]
    Truncated(usize),
    #[error("cannot decode {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error("response has type {got:?}, expected one of the subscribed types {expected:?}")]
    UnexpectedType { got: String, expected: Vec<String> },
}
