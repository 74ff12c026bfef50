//! Configuration (owned by the config work).
