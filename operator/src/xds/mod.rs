//! Envoy xDS: the pure translation of a DAG into Envoy v3 resources (`translate`), and, beside it,
//! the cache and the ADS server that serve them. `resource` is the vocabulary both sides share;
//! the arrows point one way: `translate` → `resource` ← `cache` ← `server`.
pub mod attribution;
pub mod cache;
pub mod listener_blame;
pub mod resource;
pub mod server;
pub mod translate;
