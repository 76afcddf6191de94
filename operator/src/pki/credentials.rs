//! The xDS server's credentials as the server uses them: its certificate chain and key, and
//! the CA its clients' certificates must chain to.

use std::sync::Arc;

/// Why TLS material cannot be used: the part (server certificate, key, client CA…) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsConfigError(String);

/// TLS material of the xDS server, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct XdsServerTls {
    /// The server's certificate (chain), leaf first.
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA client certificates must chain to.
    pub client_ca_pem: String,
}

impl std::fmt::Debug for XdsServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsServerTls")
            .field("cert_pem", &self.cert_pem)
            .field("client_ca_pem", &self.client_ca_pem)
            .finish_non_exhaustive()
    }
}

impl XdsServerTls {
    /// The rustls configuration serving this certificate and requiring client certificates
    /// that chain to `client_ca_pem`; HTTP/2 only.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let err = |what: &str, e: &dyn std::fmt::Display| TlsConfigError(format!("{what}: {e}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("server certificate", &e))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| err("server key", &e))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.client_ca_pem.as_bytes()) {
            let ca = ca.map_err(|e| err("client CA", &e))?;
            roots.add(ca).map_err(|e| err("client CA", &e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| err("client verifier", &e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err("protocol versions", &e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| err("server certificate", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}
