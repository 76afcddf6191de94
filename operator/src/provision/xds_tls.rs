//! The Secrets of authenticated xDS in a cluster. Pure: each function reads what the API
//! returned (`Option<&Secret>`) and returns what should be there; creating and applying them is
//! the controller's job.
//!
//! | Secret | namespace | keys | made by |
//! |---|---|---|---|
//! | [`XDS_CA_SECRET`] | operator's | `ca.crt`, `ca.key` | [`load_or_build_ca`]; or the administrator, to bring their own CA |
//! | [`XDS_SERVER_SECRET`] | operator's | `ca.crt`, `tls.crt`, `tls.key` | [`desired_xds_server_secret`] |
//! | `<gateway>-xds-client` ([`xds_client_secret_name`]) | the Gateway's | `ca.crt`, `tls.crt`, `tls.key` | [`desired_xds_client_secret`], owned by the Gateway |
//!
//! A client certificate names its Gateway (`spiffe://sluice.dev/gateway/<namespace>/<name>`, see
//! [`crate::pki::identity`]); the xDS server serves it that Gateway's configuration only.
//! Certificates are kept while they are signed by the current CA, name what they must, match
//! their key and have more than a third of their lifetime left; otherwise a new one is issued.
//! So calling these on every reconcile changes nothing until renewal is due.
//!
//! Envoy reads its client certificate when it starts: a renewed client Secret reaches running
//! Envoys only when their pods restart (see [`xds_client_secret_hash`]).

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::sha256_hex;
use super::objects::{
    GatewayRef, LABEL_MANAGED_BY, MANAGED_BY, XDS_CA_KEY, XDS_CERT_KEY, XDS_KEY_KEY,
    gateway_labels, gateway_ref, xds_client_secret_name,
};
use crate::api::Gateway;
use crate::pki::XdsServerTls;
use crate::pki::identity::{
    CertificateAuthority, CertificateInfo, DEFAULT_SERVER_NAME, PkiError, gateway_uri, key_matches,
};
use crate::snapshot::ObjKey;

/// The CA Secret, in the operator's namespace.
pub const XDS_CA_SECRET: &str = "sluice-xds-ca";
/// The xDS server's certificate Secret, in the operator's namespace.
pub const XDS_SERVER_SECRET: &str = "sluice-xds-server";
/// Name of the Service in front of the xDS server (and so of its certificate).
pub const XDS_SERVICE_NAME: &str = DEFAULT_SERVER_NAME;
/// Key of the CA private key in [`XDS_CA_SECRET`] (its certificate is under `ca.crt`).
pub const XDS_CA_PRIVATE_KEY: &str = "ca.key";
/// Type of the server and client Secrets.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// Why xDS credentials cannot be read or made.
#[derive(Debug, thiserror::Error)]
pub enum XdsTlsError {
    #[error("Secret {secret}: {source}")]
    Pki {
        secret: String,
        #[source]
        source: PkiError,
    },
    #[error("Secret {secret}: key {key} is missing")]
    MissingKey { secret: String, key: &'static str },
    #[error("Secret {secret}: key {key} is not UTF-8 PEM")]
    NotPem { secret: String, key: &'static str },
    #[error("Gateway {gateway}: {field} is missing")]
    MissingMetadata {
        gateway: String,
        field: &'static str,
    },
}

impl XdsTlsError {
    /// Stable short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pki { source, .. } => source.label(),
            Self::MissingKey { .. } => "missing_key",
            Self::NotPem { .. } => "not_pem",
            Self::MissingMetadata { .. } => "missing_metadata",
        }
    }
}

/// The CA, and the Secret to create when there was none.
#[derive(Debug)]
pub struct LoadedCa {
    pub ca: CertificateAuthority,
    /// `Some`: no CA Secret existed; create this one (create, not apply: when another replica
    /// won the race, the create fails with AlreadyExists, and the caller reads the Secret again
    /// and calls [`load_or_build_ca`] with it).
    pub create: Option<Secret>,
}

/// The xDS CA from the CA Secret (`existing`, as read from the operator namespace), or a new
/// one with the Secret to create. An existing Secret that is not a usable CA (missing keys,
/// not a CA certificate, key not matching, expired) is an error, never replaced: it may be the
/// administrator's own CA.
pub fn load_or_build_ca(
    existing: Option<&Secret>,
    namespace: &str,
    now: SystemTime,
) -> Result<LoadedCa, XdsTlsError> {
    if let Some(secret) = existing {
        return Ok(LoadedCa {
            ca: ca_from_secret(secret, now)?,
            create: None,
        });
    }
    let ca = CertificateAuthority::generate(now).map_err(|source| XdsTlsError::Pki {
        secret: format!("{namespace}/{XDS_CA_SECRET}"),
        source,
    })?;
    let create = build_ca_secret(&ca, namespace);
    Ok(LoadedCa {
        ca,
        create: Some(create),
    })
}

/// Reads the CA from a CA Secret (`ca.crt`, `ca.key`).
pub fn ca_from_secret(
    secret: &Secret,
    now: SystemTime,
) -> Result<CertificateAuthority, XdsTlsError> {
    let cert = pem_value(secret, XDS_CA_KEY)?;
    let key = pem_value(secret, XDS_CA_PRIVATE_KEY)?;
    CertificateAuthority::from_pem(&cert, &key, now).map_err(|source| XdsTlsError::Pki {
        secret: secret_key(secret),
        source,
    })
}

/// The CA Secret holding `ca` (type Opaque: it is no serving certificate).
pub fn build_ca_secret(ca: &CertificateAuthority, namespace: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(XDS_CA_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(managed_labels()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data(&[
            (XDS_CA_KEY, ca.cert_pem()),
            (XDS_CA_PRIVATE_KEY, ca.key_pem()),
        ])),
        ..Secret::default()
    }
}

/// DNS names of the xDS Service in `namespace`, for the server certificate: `sluice-xds`,
/// `sluice-xds.<ns>`, `sluice-xds.<ns>.svc`, `sluice-xds.<ns>.svc.cluster.local`.
pub fn xds_server_names(namespace: &str) -> Vec<String> {
    vec![
        XDS_SERVICE_NAME.to_owned(),
        format!("{XDS_SERVICE_NAME}.{namespace}"),
        format!("{XDS_SERVICE_NAME}.{namespace}.svc"),
        format!("{XDS_SERVICE_NAME}.{namespace}.svc.cluster.local"),
    ]
}

/// The server certificate Secret: `existing` kept when still good for `ca` and `dns_names`
/// (e.g. [`xds_server_names`], plus a custom `--xds-service-address` host), else a new
/// certificate. Apply it, then serve with [`server_tls_from_secret`].
pub fn desired_xds_server_secret(
    ca: &CertificateAuthority,
    namespace: &str,
    dns_names: &[String],
    existing: Option<&Secret>,
    now: SystemTime,
) -> Result<Secret, XdsTlsError> {
    let name = format!("{namespace}/{XDS_SERVER_SECRET}");
    // Names that are IP literals (an `--xds-service-address` by IP) become IP SANs.
    let ips: Vec<std::net::IpAddr> = dns_names.iter().filter_map(|n| n.parse().ok()).collect();
    let dns_names: Vec<String> = dns_names
        .iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_err())
        .cloned()
        .collect();
    let reusable = existing
        .and_then(|s| reusable_pair(s, ca, now))
        .filter(|(info, _, _)| {
            dns_names.iter().all(|n| info.dns_names.contains(n))
                && ips.iter().all(|ip| info.ips.contains(ip))
                && info.dns_names.iter().any(|n| n == DEFAULT_SERVER_NAME)
                && info.uris.is_empty()
        });
    let (cert, key) = match reusable {
        Some((_, cert, key)) => (cert, key),
        None => {
            let issued =
                ca.issue_server(&dns_names, &ips, now)
                    .map_err(|source| XdsTlsError::Pki {
                        secret: name,
                        source,
                    })?;
            (issued.cert_pem, issued.key_pem)
        }
    };
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(XDS_SERVER_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(managed_labels()),
            ..ObjectMeta::default()
        },
        type_: Some(TLS_SECRET_TYPE.to_owned()),
        data: Some(data(&[
            (XDS_CA_KEY, ca.cert_pem()),
            (XDS_CERT_KEY, &cert),
            (XDS_KEY_KEY, &key),
        ])),
        ..Secret::default()
    })
}

/// The xDS server's TLS configuration from its Secret: its certificate and key, and the CA
/// (`ca.crt`) client certificates must chain to.
pub fn server_tls_from_secret(secret: &Secret) -> Result<XdsServerTls, XdsTlsError> {
    Ok(XdsServerTls {
        cert_pem: pem_value(secret, XDS_CERT_KEY)?,
        key_pem: pem_value(secret, XDS_KEY_KEY)?,
        client_ca_pem: pem_value(secret, XDS_CA_KEY)?,
    })
}

/// The client Secret of Gateway `gw`'s Envoys, [`xds_client_secret_name`] in the Gateway's
/// namespace, owned by the Gateway: `ca.crt` (to verify the server), `tls.crt` (naming the
/// Gateway), `tls.key`. `existing` is kept while still good.
pub fn desired_xds_client_secret(
    gw: &Gateway,
    ca: &CertificateAuthority,
    existing: Option<&Secret>,
    now: SystemTime,
) -> Result<Secret, XdsTlsError> {
    let GatewayRef {
        name,
        namespace,
        owner,
    } = gateway_ref(gw)
        .map_err(|(gateway, field)| XdsTlsError::MissingMetadata { gateway, field })?;
    let key = ObjKey::new(namespace.clone(), name.clone());
    let secret_name = xds_client_secret_name(&name);
    let uri = gateway_uri(&key);
    let reusable = existing
        .and_then(|s| reusable_pair(s, ca, now))
        .filter(|(info, _, _)| info.uris == [uri.clone()] && info.dns_names.is_empty());
    let (cert, private_key) = match reusable {
        Some((_, cert, private_key)) => (cert, private_key),
        None => {
            let issued = ca
                .issue_gateway(&key, now)
                .map_err(|source| XdsTlsError::Pki {
                    secret: format!("{namespace}/{secret_name}"),
                    source,
                })?;
            (issued.cert_pem, issued.key_pem)
        }
    };
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name),
            namespace: Some(namespace),
            labels: Some(gateway_labels(&name)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some(TLS_SECRET_TYPE.to_owned()),
        data: Some(data(&[
            (XDS_CA_KEY, ca.cert_pem()),
            (XDS_CERT_KEY, &cert),
            (XDS_KEY_KEY, &private_key),
        ])),
        ..Secret::default()
    })
}

/// SHA-256 (hex) of a client Secret's CA and certificate. Put it in the Envoy pod template's
/// annotations so that a renewed certificate (or a new CA) rolls the pods: Envoy reads the
/// files only at start.
pub fn xds_client_secret_hash(secret: &Secret) -> String {
    let mut bytes = Vec::new();
    for key in [XDS_CA_KEY, XDS_CERT_KEY] {
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
            bytes.extend_from_slice(&v.0);
        }
        bytes.push(0);
    }
    sha256_hex(&bytes)
}

/// The `notAfter` of a server or client Secret's certificate (`tls.crt`), for the expiry
/// metric; `None` when it cannot be read.
pub fn certificate_not_after(secret: &Secret) -> Option<SystemTime> {
    let cert = pem_value(secret, XDS_CERT_KEY).ok()?;
    CertificateInfo::from_pem(&cert).ok().map(|i| i.not_after)
}

/// How long until a server or client Secret's certificate is due for renewal (zero when it is
/// due, or cannot be read): when to look at it again.
pub fn renewal_due_in(secret: &Secret, now: SystemTime) -> std::time::Duration {
    pem_value(secret, XDS_CERT_KEY)
        .ok()
        .and_then(|cert| CertificateInfo::from_pem(&cert).ok())
        .and_then(|info| info.renewal_time())
        .and_then(|at| at.duration_since(now).ok())
        .unwrap_or_default()
}

/// A Secret's certificate and key, if they are still good: `ca.crt` is `ca`'s, the certificate
/// is signed by it and matches the key, and renewal is not due.
fn reusable_pair(
    secret: &Secret,
    ca: &CertificateAuthority,
    now: SystemTime,
) -> Option<(CertificateInfo, String, String)> {
    let ca_pem = pem_value(secret, XDS_CA_KEY).ok()?;
    let cert = pem_value(secret, XDS_CERT_KEY).ok()?;
    let key = pem_value(secret, XDS_KEY_KEY).ok()?;
    if ca_pem != ca.cert_pem() || !ca.signed(&cert) || !key_matches(&cert, &key) {
        return None;
    }
    let info = CertificateInfo::from_pem(&cert).ok()?;
    (!info.needs_renewal(now)).then_some((info, cert, key))
}

fn pem_value(secret: &Secret, key: &'static str) -> Result<String, XdsTlsError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| XdsTlsError::MissingKey {
            secret: secret_key(secret),
            key,
        })?;
    String::from_utf8(bytes).map_err(|_| XdsTlsError::NotPem {
        secret: secret_key(secret),
        key,
    })
}

fn secret_key(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        secret.metadata.name.as_deref().unwrap_or_default()
    )
}

fn managed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned())])
}

fn data(entries: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::pki::identity::{LEAF_VALIDITY, instance_from_certificate};
    use crate::provision::desired;
    use crate::provision::fixtures::{ctx, gateway};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_735_689_600)
    }

    fn value(secret: &Secret, key: &str) -> String {
        String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
    }

    fn leaf_der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    #[test]
    fn ca_is_created_once_then_loaded() {
        let first = load_or_build_ca(None, "sluice-system", now()).unwrap();
        let secret = first.create.expect("a Secret to create");
        assert_eq!(secret.metadata.name.as_deref(), Some(XDS_CA_SECRET));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("sluice-system"));
        assert_eq!(value(&secret, "ca.crt"), first.ca.cert_pem());
        assert_eq!(value(&secret, "ca.key"), first.ca.key_pem());

        let again = load_or_build_ca(Some(&secret), "sluice-system", now()).unwrap();
        assert!(again.create.is_none());
        assert_eq!(again.ca.cert_pem(), first.ca.cert_pem());
    }

    #[test]
    fn a_broken_ca_secret_is_an_error_not_replaced() {
        let mut secret = build_ca_secret(
            &CertificateAuthority::generate(now()).unwrap(),
            "sluice-system",
        );
        secret.data.as_mut().unwrap().remove("ca.key");
        let err = load_or_build_ca(Some(&secret), "sluice-system", now()).unwrap_err();
        assert_eq!(err.label(), "missing_key");
        assert!(
            err.to_string().contains("sluice-system/sluice-xds-ca"),
            "{err}"
        );
        secret
            .data
            .as_mut()
            .unwrap()
            .insert("ca.key".into(), ByteString(b"junk".to_vec()));
        let err = load_or_build_ca(Some(&secret), "sluice-system", now()).unwrap_err();
        assert_eq!(err.label(), "invalid_ca");
    }

    #[test]
    fn client_secret_names_the_gateway_and_is_owned_by_it() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let gw = gateway("team-a", "gw");
        let secret = desired_xds_client_secret(&gw, &ca, None, now()).unwrap();

        // Where `desired` mounts it from, with the same owner reference as the other objects.
        let objects = desired(
            &gw,
            &{
                let mut c = ctx();
                c.xds_tls = true;
                c
            },
            None,
        )
        .unwrap();
        assert_eq!(secret.metadata.name, objects.xds_client_secret);
        assert_eq!(secret.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            secret.metadata.owner_references,
            objects.service_account.metadata.owner_references
        );
        assert_eq!(
            secret.metadata.labels,
            objects.service_account.metadata.labels
        );
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));

        assert_eq!(value(&secret, "ca.crt"), ca.cert_pem());
        let cert = value(&secret, "tls.crt");
        assert!(ca.signed(&cert));
        assert!(key_matches(&cert, &value(&secret, "tls.key")));
        assert_eq!(
            instance_from_certificate(&leaf_der(&cert)),
            Ok(ObjKey::new("team-a", "gw"))
        );
    }

    #[test]
    fn client_secret_is_kept_until_renewal_or_a_new_ca() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let gw = gateway("team-a", "gw");
        let first = desired_xds_client_secret(&gw, &ca, None, now()).unwrap();
        let later = now() + Duration::from_secs(24 * 3600);
        let same = desired_xds_client_secret(&gw, &ca, Some(&first), later).unwrap();
        assert_eq!(same, first);
        assert_eq!(
            xds_client_secret_hash(&same),
            xds_client_secret_hash(&first)
        );

        // Renewal due: a new certificate.
        let renewed =
            desired_xds_client_secret(&gw, &ca, Some(&first), now() + LEAF_VALIDITY).unwrap();
        assert_ne!(value(&renewed, "tls.crt"), value(&first, "tls.crt"));
        assert_ne!(
            xds_client_secret_hash(&renewed),
            xds_client_secret_hash(&first)
        );

        // Another CA: a new certificate and ca.crt.
        let other = CertificateAuthority::generate(now()).unwrap();
        let moved = desired_xds_client_secret(&gw, &other, Some(&first), now()).unwrap();
        assert_eq!(value(&moved, "ca.crt"), other.cert_pem());
        assert!(other.signed(&value(&moved, "tls.crt")));

        // Another Gateway's Secret content is never reused.
        let b =
            desired_xds_client_secret(&gateway("team-b", "gw"), &ca, Some(&first), now()).unwrap();
        assert_ne!(value(&b, "tls.crt"), value(&first, "tls.crt"));

        // A key that does not match the certificate: reissued.
        let mut tampered = first.clone();
        tampered.data.as_mut().unwrap().insert(
            "tls.key".into(),
            b.data.as_ref().unwrap()["tls.key"].clone(),
        );
        let fixed = desired_xds_client_secret(&gw, &ca, Some(&tampered), now()).unwrap();
        assert!(key_matches(
            &value(&fixed, "tls.crt"),
            &value(&fixed, "tls.key")
        ));
    }

    #[test]
    fn short_lived_secrets_are_renewed_at_two_thirds() {
        let ca = CertificateAuthority::generate(now())
            .unwrap()
            .with_leaf_validity(Duration::from_secs(30));
        let names = xds_server_names("sluice-system");
        let gw = gateway("team-a", "gw");
        let server = desired_xds_server_secret(&ca, "sluice-system", &names, None, now()).unwrap();
        let client = desired_xds_client_secret(&gw, &ca, None, now()).unwrap();
        for secret in [&server, &client] {
            // Issued backdated by 3 s for 30 s: 33 s of lifetime, renewal due 19 s from now.
            assert_eq!(
                certificate_not_after(secret),
                Some(now() + Duration::from_secs(30))
            );
            assert_eq!(renewal_due_in(secret, now()), Duration::from_secs(19));
            assert_eq!(
                renewal_due_in(secret, now() + Duration::from_secs(25)),
                Duration::ZERO
            );
        }
        let before = now() + Duration::from_secs(18);
        let kept =
            desired_xds_server_secret(&ca, "sluice-system", &names, Some(&server), before).unwrap();
        assert_eq!(kept, server);
        assert_eq!(
            desired_xds_client_secret(&gw, &ca, Some(&client), before).unwrap(),
            client
        );
        let due = now() + Duration::from_secs(19);
        let renewed =
            desired_xds_server_secret(&ca, "sluice-system", &names, Some(&server), due).unwrap();
        assert_eq!(
            certificate_not_after(&renewed),
            Some(due + Duration::from_secs(30))
        );
        let renewed = desired_xds_client_secret(&gw, &ca, Some(&client), due).unwrap();
        assert_eq!(
            certificate_not_after(&renewed),
            Some(due + Duration::from_secs(30))
        );
        assert_ne!(
            xds_client_secret_hash(&renewed),
            xds_client_secret_hash(&client)
        );
        // Nothing readable: look again at once.
        assert_eq!(renewal_due_in(&Secret::default(), now()), Duration::ZERO);
        assert_eq!(certificate_not_after(&Secret::default()), None);
    }

    #[test]
    fn client_secret_needs_gateway_metadata() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let mut gw = gateway("team-a", "gw");
        gw.metadata.uid = None;
        let err = desired_xds_client_secret(&gw, &ca, None, now()).unwrap_err();
        assert_eq!(err.label(), "missing_metadata");
    }

    #[test]
    fn server_secret_covers_the_service_names_and_is_kept() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let names = xds_server_names("sluice-system");
        let secret = desired_xds_server_secret(&ca, "sluice-system", &names, None, now()).unwrap();
        let tls = server_tls_from_secret(&secret).unwrap();
        assert_eq!(tls.client_ca_pem, ca.cert_pem());
        let info = CertificateInfo::from_pem(&tls.cert_pem).unwrap();
        for n in &names {
            assert!(info.dns_names.contains(n), "{n}");
        }
        assert!(ca.signed(&tls.cert_pem));
        let again =
            desired_xds_server_secret(&ca, "sluice-system", &names, Some(&secret), now()).unwrap();
        assert_eq!(again, secret);
        // A new name: a new certificate.
        let mut more = names.clone();
        more.push("xds.example.com".into());
        let wider =
            desired_xds_server_secret(&ca, "sluice-system", &more, Some(&secret), now()).unwrap();
        assert!(
            CertificateInfo::from_pem(&value(&wider, "tls.crt"))
                .unwrap()
                .dns_names
                .contains(&"xds.example.com".to_owned())
        );
        // A client Secret is no server Secret.
        let client = desired_xds_client_secret(&gateway("team-a", "gw"), &ca, None, now()).unwrap();
        let replaced =
            desired_xds_server_secret(&ca, "sluice-system", &names, Some(&client), now()).unwrap();
        assert_ne!(value(&replaced, "tls.crt"), value(&client, "tls.crt"));
    }
}
