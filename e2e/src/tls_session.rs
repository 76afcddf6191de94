//! TLS below HTTP, for tests that look at the handshake itself: which certificate the server
//! presented, which protocol version was negotiated, raw bytes through a TLS-terminating TCP
//! proxy ([`TlsSession`]); and HTTPS clients limited to some TLS versions
//! ([`client_with_versions`]), usable with [`crate::client::Request::send_tls`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ProtocolVersion, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::client::DEFAULT_TIMEOUT;
use crate::tls::TlsClient;
use crate::{Error, Result};

/// The certificates in `pem`, DER-encoded, in order.
pub fn certificates_der(pem: &str) -> Result<Vec<Vec<u8>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("parsing certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls("no certificate in PEM".into()));
    }
    Ok(certs)
}

/// An HTTPS client like [`TlsClient::trusting`] that offers only `versions`, e.g.
/// `&[&rustls::version::TLS12]` for a client that cannot speak TLS 1.3.
pub fn client_with_versions(
    ca_pem: &str,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<TlsClient> {
    TlsClient::trusting_versions(ca_pem, versions)
}

/// A client TLS session to 127.0.0.1 after a successful handshake.
#[derive(Debug)]
pub struct TlsSession {
    stream: TlsStream<TcpStream>,
}

impl TlsSession {
    /// Connects to 127.0.0.1:`port` and completes a handshake sending `sni`, verifying the
    /// server's certificate with `tls` (its CA, its versions) against `sni`. A refused handshake
    /// is [`Error::Io`] whose source says why (an alert from the server, a closed connection,
    /// an untrusted certificate). The client's own fixed SNI, if any, is ignored.
    pub async fn connect(port: u16, sni: &str, tls: &TlsClient) -> Result<TlsSession> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let handshake = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(Error::io(format!("connecting to {addr}")))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(sni.to_owned())
                .map_err(|e| Error::Tls(format!("bad SNI name {sni:?}: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(name, tcp)
                .await
                .map_err(Error::io(format!("TLS handshake with {addr} for {sni}")))?;
            Ok(TlsSession { stream })
        };
        tokio::time::timeout(DEFAULT_TIMEOUT, handshake)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    what: format!("TLS handshake with {addr} for {sni}"),
                    after: DEFAULT_TIMEOUT,
                })
            })
    }

    /// The server's certificate chain as presented, DER-encoded, leaf first.
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default()
    }

    /// The negotiated TLS version.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.stream.get_ref().1.protocol_version()
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// Writes `data` and reads back exactly as many bytes (an echo server's answer), bounded by
    /// `timeout`.
    pub async fn round_trip(&mut self, data: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let exchange = async {
            self.stream
                .write_all(data)
                .await
                .map_err(Error::io("writing over TLS"))?;
            self.stream
                .flush()
                .await
                .map_err(Error::io("flushing over TLS"))?;
            let mut answer = vec![0; data.len()];
            self.stream
                .read_exact(&mut answer)
                .await
                .map_err(Error::io("reading over TLS"))?;
            Ok(answer)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    what: format!("{} bytes echoed over TLS", data.len()),
                    after: timeout,
                })
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::tls::TestCa;

    #[tokio::test]
    async fn a_session_reports_the_certificate_and_version_it_got() {
        let ca = TestCa::new("session ca").unwrap();
        let leaf = ca.issue(&["backend.example.com"]).unwrap();
        let backend = Backend::start_tls("b", &leaf).await.unwrap();

        let client = TlsClient::trusting(&ca.cert_pem()).unwrap();
        let session = TlsSession::connect(backend.port(), "backend.example.com", &client)
            .await
            .unwrap();
        assert_eq!(
            session.peer_certificates().first(),
            certificates_der(&leaf.cert_pem).unwrap().first()
        );
        assert_eq!(session.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        assert_eq!(session.alpn_protocol().as_deref(), Some(&b"http/1.1"[..]));

        let tls12 = client_with_versions(&ca.cert_pem(), &[&rustls::version::TLS12]).unwrap();
        let session = TlsSession::connect(backend.port(), "backend.example.com", &tls12)
            .await
            .unwrap();
        assert_eq!(session.protocol_version(), Some(ProtocolVersion::TLSv1_2));

        // The certificate is not valid for another name.
        let wrong = TlsSession::connect(backend.port(), "other.example.com", &client).await;
        assert!(matches!(wrong, Err(Error::Io { .. })), "{wrong:?}");
    }

    #[test]
    fn certificates_der_needs_a_certificate() {
        assert!(certificates_der("not pem").is_err());
    }
}
