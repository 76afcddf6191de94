//! A virtual host's TLS: the minimum version against the Gateway's floor, and its certificate,
//! from its own namespace or delegated by a TLSCertificateDelegation, checked as Envoy loads it.

use super::build::Builder;
use super::checks;
use super::deps::Dep;
use super::model::{Secret, SecretKind, VirtualHostTls};
use crate::api::ingressroute::{self as ir, TlsVersion};
use crate::snapshot::ObjKey;

/// Secret keys of a serving certificate.
const TLS_CERT_KEY: &str = "tls.crt";
const TLS_PRIVATE_KEY: &str = "tls.key";
/// The only Secret type whose certificates terminate TLS, as in Contour.
const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

impl Builder<'_> {
    /// Checks the virtual host's TLS block and resolves its secret, returned for the caller to
    /// record once the whole root is valid.
    pub(super) fn build_vhost_tls(
        &self,
        key: &ObjKey,
        tls: &ir::Tls,
    ) -> Result<(VirtualHostTls, Option<Secret>), String> {
        let requested = tls.minimum_protocol_version.unwrap_or(TlsVersion::V1_1);
        let minimum_protocol_version = match self.sel.minimum_tls_version {
            Some(floor) if floor > requested => floor,
            _ => requested,
        };
        let secret = match tls
            .secret_name
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None if tls.passthrough => None,
            None => {
                return Err("Spec.VirtualHost.TLS must specify secretName or passthrough".into());
            }
            Some(name) => {
                let secret_key = match name.split_once('/') {
                    Some((ns, n)) => ObjKey::new(ns, n),
                    None => ObjKey::new(key.namespace.clone(), name),
                };
                if secret_key.namespace != key.namespace
                    && !self.delegation_permits(&secret_key, &key.namespace)
                {
                    return Err(format!(
                        "{secret_key}: certificate delegation not permitted"
                    ));
                }
                let (cert_chain, private_key) = self.tls_secret_pem(&secret_key)?;
                Some(Secret {
                    name: secret_key.to_string(),
                    kind: SecretKind::Tls {
                        cert_chain,
                        private_key,
                    },
                })
            }
        };
        let vhost_tls = VirtualHostTls {
            secret: secret.as_ref().map(|s| s.name.clone()),
            minimum_protocol_version,
            passthrough: tls.passthrough,
            options: None,
        };
        Ok((vhost_tls, secret))
    }

    /// True when a TLSCertificateDelegation in the secret's namespace lets `target_ns` use it.
    pub(super) fn delegation_permits(&self, secret: &ObjKey, target_ns: &str) -> bool {
        // The delegations naming the Secret (one dependency with the Secret).
        self.read(Dep::Secret(secret.clone()));
        self.snap
            .delegations_of(secret)
            .flat_map(|d| &d.spec.delegations)
            .any(|d| {
                *d.secret_name == *secret.name
                    && d.target_namespaces
                        .iter()
                        .any(|t| t == "*" || t == target_ns)
            })
    }

    /// The certificate chain and key of a `kubernetes.io/tls` Secret, checked as Envoy will load
    /// them (every certificate parses, the key matches the first one).
    pub(super) fn tls_secret_pem(&self, secret: &ObjKey) -> Result<(String, String), String> {
        let not_found = || format!("TLS Secret [{secret}] not found or is malformed");
        self.read(Dep::Secret(secret.clone()));
        let obj = self.snap.secrets.get(secret).ok_or_else(not_found)?;
        let type_ = obj.type_.as_deref().unwrap_or("Opaque");
        if type_ != TLS_SECRET_TYPE {
            return Err(format!(
                "{}: its type is {type_:?}, not {TLS_SECRET_TYPE:?}",
                not_found()
            ));
        }
        let cert = self
            .snap
            .secret_data(secret, TLS_CERT_KEY)
            .ok_or_else(not_found)?;
        let key = self
            .snap
            .secret_data(secret, TLS_PRIVATE_KEY)
            .ok_or_else(not_found)?;
        checks::tls_key_pair(cert, key).map_err(|e| format!("{}: {e}", not_found()))?;
        let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| not_found());
        Ok((utf8(cert)?, utf8(key)?))
    }
}
