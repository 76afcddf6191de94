//! Envoy xDS: the pure translation of a DAG into Envoy v3 resources (`translate`), and, beside it,
//! the cache and the ADS server that serve them.
pub mod attribution;
pub mod cache;
pub mod server;
pub mod translate;
