//! Criterion benchmarks for zring (see benches/benches/).
