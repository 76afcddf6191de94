//! Who may read which instance: the TLS accept loop (client certificates required, certificate
//! reloads), the peer's identity, and the authorization of a stream's `node.cluster`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};
use tracing::{debug, info, warn};

use super::RESPONSE_BUFFER;
use crate::pki::XdsServerTls;
use crate::pki::identity::{IdentityError, instance_from_peer_chain};
use crate::snapshot::ObjKey;

/// How long a client may take to finish its TLS handshake before it is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that finished its TLS handshake.
pub(super) type TlsConnection = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Accepts TCP connections on `listener` and TLS handshakes (each in its own task, at most
/// [`TLS_HANDSHAKE_TIMEOUT`]) with the latest configuration of `tls`: a new certificate there
/// is used from the next connection on. An unusable update is logged and the previous one kept.
/// Ends when the returned stream is dropped.
pub(super) fn tls_incoming(
    listener: tokio::net::TcpListener,
    mut tls: watch::Receiver<XdsServerTls>,
    mut config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<TlsConnection, std::io::Error>> {
    let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // E.g. out of file descriptors: wait a little rather than spin.
                    warn!(error = %e, "accepting an xDS connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tls.has_changed().unwrap_or(false) {
                let update = tls.borrow_and_update().clone();
                match update.server_config() {
                    Ok(c) => {
                        info!("xDS server certificate reloaded");
                        config = c;
                    }
                    Err(e) => {
                        warn!(error = %e, "new xDS server certificate unusable; keeping the previous one");
                    }
                }
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "xDS TLS handshake failed"),
                    Err(_) => debug!(%peer, "xDS TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// How a peer authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAuth {
    /// The server runs without TLS (an explicit insecure mode): any peer may read any instance.
    Insecure,
    /// A client certificate, verified against the CA, naming this instance.
    Instance(ObjKey),
    /// TLS, but no certificate naming an instance.
    Unidentified(IdentityError),
}

/// Who is at the other end of a stream.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    pub remote_addr: Option<SocketAddr>,
    pub auth: PeerAuth,
}

impl PeerIdentity {
    /// The identity of a request's peer. `tls`: whether the server requires client
    /// certificates; then the TLS layer has verified the chain `Request::peer_certs` returns.
    pub(super) fn of<T>(request: &Request<T>, tls: bool) -> Self {
        let auth = if tls {
            match request.peer_certs() {
                Some(chain) => match instance_from_peer_chain(&chain) {
                    Ok(instance) => PeerAuth::Instance(instance),
                    Err(e) => PeerAuth::Unidentified(e),
                },
                None => PeerAuth::Unidentified(IdentityError::NoCertificate),
            }
        } else {
            PeerAuth::Insecure
        };
        PeerIdentity {
            remote_addr: request.remote_addr(),
            auth,
        }
    }
}

/// Decides whether a peer may fetch an instance's configuration: with TLS, only the instance
/// its client certificate names (`node_cluster` must equal `<namespace>/<name>` of the
/// certificate's Gateway identity).
pub fn authorize(peer: &PeerIdentity, node_cluster: &str) -> Result<(), Status> {
    match &peer.auth {
        PeerAuth::Insecure => Ok(()),
        PeerAuth::Instance(instance) if instance.to_string() == node_cluster => Ok(()),
        PeerAuth::Instance(instance) => Err(Status::permission_denied(format!(
            "the client certificate is for Gateway {instance}, not {node_cluster}"
        ))),
        PeerAuth::Unidentified(e) => Err(Status::unauthenticated(e.to_string())),
    }
}
