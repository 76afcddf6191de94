//! TLS for tests: a throwaway CA issuing server certificates ([`TestCa`]), and the rustls
//! configurations used by the TLS backend ([`crate::backend::Backend::start_tls`]) and the
//! HTTPS client ([`TlsClient`]). Keys are ECDSA P-256 in PKCS#8 PEM, which Envoy accepts.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

fn tls_error<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Tls(format!("{context}: {e}"))
}

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed CA that issues server certificates for tests.
#[derive(Debug)]
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA with a fresh key and `common_name` as subject.
    pub fn new(common_name: &str) -> Result<TestCa> {
        let err = |e: rcgen::Error| Error::Tls(format!("creating CA {common_name}: {e}"));
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(err)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(err)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate (PEM), to trust in clients or put in a CA Secret.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server (and client) certificate for `names` (DNS names or IP addresses; the first is
    /// also the common name), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Result<CertKey> {
        let err = |e: rcgen::Error| Error::Tls(format!("issuing a certificate for {names:?}: {e}"));
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).map_err(err)?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Explicit, so no process-wide default provider has to be installed.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("parsing certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls("no certificate in PEM".into()));
    }
    Ok(certs)
}

/// A rustls server configuration serving `cert`, speaking HTTP/1.1 only.
pub fn server_config(cert: &CertKey) -> Result<Arc<rustls::ServerConfig>> {
    let chain = parse_certs(&cert.cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("parsing private key PEM: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error("TLS versions"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error("server certificate"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A rustls server configuration serving `cert` (HTTP/1.1 only) that requires every client to
/// present a certificate issued by the CA `client_ca_pem`: a handshake without one, or with one
/// from another CA, fails.
pub fn server_config_requiring_clients(
    cert: &CertKey,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in parse_certs(client_ca_pem)? {
        roots.add(ca).map_err(tls_error("client CA"))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(tls_error("client certificate verifier"))?;
    let chain = parse_certs(&cert.cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("parsing private key PEM: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error("TLS versions"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error("server certificate"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client side of HTTPS tests: which CA to trust and, optionally, a fixed SNI name.
#[derive(Debug, Clone)]
pub struct TlsClient {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) sni: Option<String>,
}

impl TlsClient {
    /// Trusts only the CA certificates in `ca_pem`. Server names are verified, so a handshake
    /// succeeds only if the server presents a certificate for the SNI name.
    pub fn trusting(ca_pem: &str) -> Result<TlsClient> {
        TlsClient::trusting_versions(ca_pem, rustls::DEFAULT_VERSIONS)
    }

    /// A copy of its rustls configuration, for a test that changes what the client offers
    /// (SNI, ALPN) and drives the handshake itself.
    pub fn rustls_config(&self) -> rustls::ClientConfig {
        rustls::ClientConfig::clone(&self.config)
    }

    /// [`TlsClient::trusting`], offering only `versions` (e.g. `&[&rustls::version::TLS12]`
    /// for a client that cannot speak TLS 1.3).
    pub fn trusting_versions(
        ca_pem: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<TlsClient> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in parse_certs(ca_pem)? {
            roots.add(cert).map_err(tls_error("trusting a CA"))?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(tls_error("TLS versions"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            config: Arc::new(config),
            sni: None,
        })
    }

    /// Sends `name` as SNI (and verifies the certificate against it) instead of the request's
    /// host.
    pub fn sni(mut self, name: &str) -> TlsClient {
        self.sni = Some(name.to_owned());
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_load_into_rustls() {
        let ca = TestCa::new("test ca").unwrap();
        let leaf = ca.issue(&["a.example.com", "127.0.0.1"]).unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        server_config(&leaf).unwrap();
        TlsClient::trusting(&ca.cert_pem()).unwrap();
        assert!(TlsClient::trusting("not pem").is_err());
    }
}
