//! TLS and identity material (owned by the tls work).
