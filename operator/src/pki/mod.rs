//! Sluice's private PKI for authenticated xDS: the certificate authority, the identities its
//! certificates carry (one per Gateway instance, one for the xDS server), and the credentials
//! the xDS server serves with. Pure apart from key generation: no file, network or clock access.
//! `provision` turns these into Kubernetes Secrets; `xds::server` requires and checks them;
//! neither imports the other for it.

pub mod credentials;
pub mod identity;

pub use credentials::{TlsConfigError, XdsServerTls};
