//! Who may fetch which instance's configuration: the certificates of authenticated xDS.
//!
//! Sluice runs a small private CA. It issues one server certificate to the xDS server and one
//! client certificate per Gateway instance. A client certificate names its instance in a single
//! URI subject alternative name,
//!
//! ```text
//! spiffe://sluice.dev/gateway/<namespace>/<name>
//! ```
//!
//! (SPIFFE ID form, trust domain [`TRUST_DOMAIN`]; see [`gateway_uri`]). The ADS server requires a
//! client certificate signed by the CA and serves a stream only the instance the certificate
//! names ([`instance_from_peer_chain`]), so one team's Envoys never receive another team's
//! routes or private keys.
//!
//! Pure: no file, network or clock access. Every function that dates a certificate takes `now`.
//! Keys are ECDSA P-256. Certificates are backdated by [`CLOCK_SKEW`] so that a node whose clock
//! is a little behind the operator's still accepts them.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::snapshot::ObjKey;

/// SPIFFE trust domain of Sluice identities.
pub const TRUST_DOMAIN: &str = "sluice.dev";
/// Path prefix of a Gateway instance's identity, after the trust domain.
const GATEWAY_PATH: &str = "/gateway/";
/// The name the xDS server's certificate always carries (and Envoy checks by default).
pub const DEFAULT_SERVER_NAME: &str = "sluice-xds";
/// Common name of the CA certificate Sluice generates.
pub const CA_COMMON_NAME: &str = "Sluice xDS CA";

const DAY: u64 = 24 * 60 * 60;
/// Lifetime of a generated CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * DAY);
/// Default lifetime of server and client certificates (see
/// [`CertificateAuthority::with_leaf_validity`]).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * DAY);
/// How far back `not_before` is set, for clocks that lag the operator's; at most a tenth of the
/// certificate's lifetime, so that short-lived certificates (tests) are not born expired.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60 * 60);

/// Why certificates cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("CA: {0}")]
    InvalidCa(String),
    #[error("certificate: {0}")]
    InvalidCertificate(String),
    #[error("{0:?} is not a valid DNS name for a certificate")]
    InvalidName(String),
    #[error("time {0:?} cannot be written in a certificate")]
    InvalidTime(SystemTime),
}

impl PkiError {
    /// Stable short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Generate(_) => "generate",
            Self::InvalidCa(_) => "invalid_ca",
            Self::InvalidCertificate(_) => "invalid_certificate",
            Self::InvalidName(_) => "invalid_name",
            Self::InvalidTime(_) => "invalid_time",
        }
    }
}

/// Why a peer's certificate does not identify an instance.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate")]
    NoCertificate,
    #[error("the client certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error(
        "the client certificate names no Gateway (expected a URI SAN spiffe://{TRUST_DOMAIN}/gateway/<namespace>/<name>)"
    )]
    NoGateway,
    #[error("the client certificate names more than one Gateway")]
    Ambiguous,
}

/// The identity URI of a Gateway instance's Envoys.
pub fn gateway_uri(instance: &ObjKey) -> String {
    format!(
        "spiffe://{TRUST_DOMAIN}{GATEWAY_PATH}{}/{}",
        instance.namespace, instance.name
    )
}

/// The instance a URI names, if it is a well-formed Sluice Gateway identity: exactly
/// `spiffe://sluice.dev/gateway/<namespace>/<name>`, both parts non-empty and made of the
/// characters Kubernetes allows in namespaces and names.
pub fn instance_from_uri(uri: &str) -> Option<ObjKey> {
    let path = uri
        .strip_prefix("spiffe://")?
        .strip_prefix(TRUST_DOMAIN)?
        .strip_prefix(GATEWAY_PATH)?;
    let (namespace, name) = path.split_once('/')?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    (valid(namespace) && valid(name)).then(|| ObjKey::new(namespace, name))
}

/// The instance named by a DER certificate's URI SANs. Does not verify the certificate: call
/// it only on a chain the TLS layer has verified.
pub fn instance_from_certificate(der: &[u8]) -> Result<ObjKey, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?
        .ok_or(IdentityError::NoGateway)?;
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) if uri.starts_with(&format!("spiffe://{TRUST_DOMAIN}/")) => Some(uri),
        _ => None,
    });
    let uri = found.next().ok_or(IdentityError::NoGateway)?;
    if found.next().is_some() {
        return Err(IdentityError::Ambiguous);
    }
    instance_from_uri(uri).ok_or(IdentityError::NoGateway)
}

/// The instance named by a verified peer chain (leaf first, as TLS presents it).
pub fn instance_from_peer_chain<C: AsRef<[u8]>>(chain: &[C]) -> Result<ObjKey, IdentityError> {
    let leaf = chain.first().ok_or(IdentityError::NoCertificate)?;
    instance_from_certificate(leaf.as_ref())
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// The CA that signs xDS server and client certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: String,
    /// DER of the CA's SubjectPublicKeyInfo, to check what it signed.
    spki_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    /// Lifetime of the certificates it issues.
    leaf_validity: Duration,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new CA, valid from `now` (less [`CLOCK_SKEW`]) for [`CA_VALIDITY`].
    pub fn generate(now: SystemTime) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, now, CA_VALIDITY)?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            spki_der: key.subject_public_key_info(),
            issuer: Issuer::new(params, key),
            leaf_validity: LEAF_VALIDITY,
        })
    }

    /// Loads a CA from PEM (a Secret's `ca.crt` and `ca.key`): the certificate must be a CA,
    /// valid at `now`, and its public key must match the private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str, now: SystemTime) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| PkiError::InvalidCa(format!("private key: {e}")))?;
        let der = pem_der(cert_pem).map_err(PkiError::InvalidCa)?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| PkiError::InvalidCa(format!("certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(PkiError::InvalidCa(
                "the certificate is not a CA (basicConstraints CA:TRUE missing)".to_owned(),
            ));
        }
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::InvalidCa(
                "the private key does not belong to the certificate".to_owned(),
            ));
        }
        let (not_before, not_after) = validity(&cert);
        if now < not_before || now >= not_after {
            return Err(PkiError::InvalidCa(format!(
                "not valid now (valid from {} to {} Unix time)",
                unix(not_before),
                unix(not_after)
            )));
        }
        let spki_der = key.subject_public_key_info();
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| PkiError::InvalidCa(format!("certificate: {e}")))?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            spki_der,
            issuer,
            leaf_validity: LEAF_VALIDITY,
        })
    }

    /// Issues certificates valid for `validity` ([`LEAF_VALIDITY`] by default; short ones are
    /// for tests of renewal).
    #[must_use]
    pub fn with_leaf_validity(mut self, validity: Duration) -> Self {
        self.leaf_validity = validity;
        self
    }

    /// Lifetime of the certificates this CA issues.
    pub fn leaf_validity(&self) -> Duration {
        self.leaf_validity
    }

    /// When the CA certificate expires (`None` if it cannot be read).
    pub fn not_after(&self) -> Option<SystemTime> {
        CertificateInfo::from_pem(&self.cert_pem)
            .ok()
            .map(|i| i.not_after)
    }

    /// The CA certificate, PEM: what servers and clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM. Only the CA Secret may hold it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A server certificate for the xDS server: DNS SANs `dns_names` (plus
    /// [`DEFAULT_SERVER_NAME`] if missing) and IP SANs `ips`; extended key usage serverAuth only.
    pub fn issue_server(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        now: SystemTime,
    ) -> Result<CertifiedKey, PkiError> {
        let mut names: Vec<String> = vec![DEFAULT_SERVER_NAME.to_owned()];
        for n in dns_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let mut sans = Vec::new();
        for n in &names {
            if !is_dns_name(n) {
                return Err(PkiError::InvalidName(n.clone()));
            }
            let ia5 = n
                .clone()
                .try_into()
                .map_err(|_| PkiError::InvalidName(n.clone()))?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(ips.iter().copied().map(SanType::IpAddress));
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(DEFAULT_SERVER_NAME);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, now)
    }

    /// The client certificate of one Gateway instance's Envoys: the single URI SAN
    /// [`gateway_uri`]; extended key usage clientAuth only.
    pub fn issue_gateway(
        &self,
        instance: &ObjKey,
        now: SystemTime,
    ) -> Result<CertifiedKey, PkiError> {
        let uri = gateway_uri(instance);
        let ia5 = uri
            .clone()
            .try_into()
            .map_err(|_| PkiError::InvalidName(uri.clone()))?;
        let mut params = CertificateParams::default();
        // Common names have a 64-character limit; the URI is the identity, the CN a label.
        let cn: String = format!("gateway {instance}").chars().take(64).collect();
        params.distinguished_name = distinguished_name(&cn);
        params.subject_alt_names = vec![SanType::URI(ia5)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, now)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        now: SystemTime,
    ) -> Result<CertifiedKey, PkiError> {
        let key = KeyPair::generate()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, now, self.leaf_validity)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Whether `cert_pem` carries a signature by this CA's key.
    pub fn signed(&self, cert_pem: &str) -> bool {
        let Ok(der) = pem_der(cert_pem) else {
            return false;
        };
        let Ok((_, cert)) = X509Certificate::from_der(&der) else {
            return false;
        };
        let Ok((_, spki)) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(self.spki_der.as_slice())
        else {
            return false;
        };
        cert.verify_signature(Some(&spki)).is_ok()
    }
}

/// Whether `key_pem` is the private key of the certificate `cert_pem`.
pub fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    let (Ok(der), Ok(key)) = (pem_der(cert_pem), KeyPair::from_pem(key_pem)) else {
        return false;
    };
    X509Certificate::from_der(&der)
        .is_ok_and(|(_, cert)| cert.public_key().raw == key.subject_public_key_info().as_slice())
}

/// What Sluice checks about a certificate it issued before reusing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub uris: Vec<String>,
}

impl CertificateInfo {
    /// Reads a PEM certificate.
    pub fn from_pem(cert_pem: &str) -> Result<Self, PkiError> {
        let der = pem_der(cert_pem).map_err(PkiError::InvalidCertificate)?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
        let (not_before, not_after) = validity(&cert);
        let mut info = CertificateInfo {
            not_before,
            not_after,
            dns_names: Vec::new(),
            ips: Vec::new(),
            uris: Vec::new(),
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(n) => info.dns_names.push((*n).to_owned()),
                GeneralName::URI(u) => info.uris.push((*u).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        info.ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        info.ips.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
        Ok(info)
    }

    /// True once less than a third of the certificate's lifetime is left (or it is not yet or
    /// no longer valid): time to issue a new one.
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        let renew_at = self.renewal_time();
        now < self.not_before || renew_at.is_none_or(|at| now >= at)
    }

    /// When renewal falls due: two thirds into the lifetime (a third of it left). `None` if
    /// that cannot be computed (renew at once).
    pub fn renewal_time(&self) -> Option<SystemTime> {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_after.checked_sub(lifetime / 3)
    }
}

/// A lowercase DNS name: dot-separated labels of `[a-z0-9-]`, none empty or over 63 characters.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Sluice");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    lifetime: Duration,
) -> Result<(), PkiError> {
    let from = now
        .checked_sub(CLOCK_SKEW.min(lifetime / 10))
        .unwrap_or(now);
    let to = now
        .checked_add(lifetime)
        .ok_or(PkiError::InvalidTime(now))?;
    params.not_before = offset(from)?;
    params.not_after = offset(to)?;
    Ok(())
}

fn offset(t: SystemTime) -> Result<OffsetDateTime, PkiError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or(PkiError::InvalidTime(t))?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| PkiError::InvalidTime(t))
}

fn validity(cert: &X509Certificate<'_>) -> (SystemTime, SystemTime) {
    let at = |ts: i64| match u64::try_from(ts) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    };
    (
        at(cert.validity().not_before.timestamp()),
        at(cert.validity().not_after.timestamp()),
    )
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// DER of the first `CERTIFICATE` block of a PEM text.
fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!("PEM block {:?}, expected CERTIFICATE", block.label));
    }
    Ok(block.contents)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        // A fixed instant: 2025-01-01T00:00:00Z.
        UNIX_EPOCH + Duration::from_secs(1_735_689_600)
    }

    fn der(pem: &str) -> Vec<u8> {
        pem_der(pem).unwrap()
    }

    #[test]
    fn uri_round_trip_and_rejects_lookalikes() {
        let key = ObjKey::new("team-a", "edge.gw");
        let uri = gateway_uri(&key);
        assert_eq!(uri, "spiffe://sluice.dev/gateway/team-a/edge.gw");
        assert_eq!(instance_from_uri(&uri), Some(key));
        for bad in [
            "spiffe://sluice.dev/gateway/team-a",
            "spiffe://sluice.dev/gateway/team-a/gw/extra",
            "spiffe://sluice.dev/gateway//gw",
            "spiffe://sluice.dev/gateway/team-a/",
            "spiffe://sluice.dev.evil/gateway/team-a/gw",
            "spiffe://evil.dev/gateway/team-a/gw",
            "https://sluice.dev/gateway/team-a/gw",
            "spiffe://sluice.dev/operator/team-a/gw",
            "spiffe://sluice.dev/gateway/Team-A/gw",
        ] {
            assert_eq!(instance_from_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn gateway_certificate_names_its_instance_and_is_a_client_leaf() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let gw = ObjKey::new("team-a", "gw");
        let issued = ca.issue_gateway(&gw, now()).unwrap();
        assert_eq!(
            instance_from_peer_chain(&[der(&issued.cert_pem), der(ca.cert_pem())]),
            Ok(gw.clone())
        );
        assert!(ca.signed(&issued.cert_pem));

        let d = der(&issued.cert_pem);
        let (_, cert) = X509Certificate::from_der(&d).unwrap();
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let info = CertificateInfo::from_pem(&issued.cert_pem).unwrap();
        assert_eq!(info.uris, vec![gateway_uri(&gw)]);
        assert!(info.dns_names.is_empty());
        assert_eq!(info.not_before, now() - CLOCK_SKEW);
        assert_eq!(info.not_after, now() + LEAF_VALIDITY);
        // The key is the certificate's.
        assert!(key_matches(&issued.cert_pem, &issued.key_pem));
        let other = ca.issue_gateway(&gw, now()).unwrap();
        assert!(!key_matches(&issued.cert_pem, &other.key_pem));
        assert!(!key_matches(&issued.cert_pem, "junk"));
    }

    #[test]
    fn server_certificate_has_the_names_and_only_server_auth() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let names = vec![
            "sluice-xds.sluice-system.svc".to_owned(),
            DEFAULT_SERVER_NAME.to_owned(),
        ];
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let issued = ca.issue_server(&names, &[ip], now()).unwrap();
        let info = CertificateInfo::from_pem(&issued.cert_pem).unwrap();
        assert_eq!(
            info.dns_names,
            vec!["sluice-xds", "sluice-xds.sluice-system.svc"]
        );
        assert_eq!(info.ips, vec![ip]);
        assert!(info.uris.is_empty());
        let d = der(&issued.cert_pem);
        let (_, cert) = X509Certificate::from_der(&d).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        // A server certificate is no Gateway identity.
        assert_eq!(instance_from_certificate(&d), Err(IdentityError::NoGateway));
        for bad in ["bad name", "", "a..b", "-a.b", "A.b"] {
            assert!(
                matches!(
                    ca.issue_server(&[bad.to_owned()], &[], now()),
                    Err(PkiError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ca_properties_and_round_trip_through_pem() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let d = der(ca.cert_pem());
        let (_, cert) = X509Certificate::from_der(&d).unwrap();
        assert!(cert.is_ca());
        let info = CertificateInfo::from_pem(ca.cert_pem()).unwrap();
        assert_eq!(info.not_after, now() + CA_VALIDITY);

        // Loaded back, it signs certificates the original CA's certificate verifies.
        let loaded = CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem(), now()).unwrap();
        let issued = loaded.issue_gateway(&ObjKey::new("a", "b"), now()).unwrap();
        assert!(ca.signed(&issued.cert_pem));
        let other = CertificateAuthority::generate(now()).unwrap();
        assert!(!other.signed(&issued.cert_pem));
        assert!(!other.signed("not a certificate"));
    }

    #[test]
    fn loading_a_ca_checks_key_role_and_validity() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let other = CertificateAuthority::generate(now()).unwrap();
        let err = |r: Result<CertificateAuthority, PkiError>| r.unwrap_err().to_string();
        assert!(
            err(CertificateAuthority::from_pem(
                ca.cert_pem(),
                other.key_pem(),
                now()
            ))
            .contains("does not belong")
        );
        let leaf = ca.issue_gateway(&ObjKey::new("a", "b"), now()).unwrap();
        assert!(
            err(CertificateAuthority::from_pem(
                &leaf.cert_pem,
                &leaf.key_pem,
                now()
            ))
            .contains("not a CA")
        );
        assert!(
            err(CertificateAuthority::from_pem(
                ca.cert_pem(),
                ca.key_pem(),
                now() + CA_VALIDITY
            ))
            .contains("not valid now")
        );
        assert!(err(CertificateAuthority::from_pem("junk", ca.key_pem(), now())).contains("PEM"));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        let leaf_debug = format!("{leaf:?}");
        assert!(!leaf_debug.contains("PRIVATE KEY"), "{leaf_debug}");
    }

    #[test]
    fn renewal_after_two_thirds_of_the_lifetime() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let issued = ca.issue_gateway(&ObjKey::new("a", "b"), now()).unwrap();
        let info = CertificateInfo::from_pem(&issued.cert_pem).unwrap();
        let lifetime = LEAF_VALIDITY + CLOCK_SKEW;
        assert!(!info.needs_renewal(now()));
        let renew_at = info.not_after - lifetime / 3;
        assert!(!info.needs_renewal(renew_at - Duration::from_secs(1)));
        assert!(info.needs_renewal(renew_at));
        assert!(info.needs_renewal(info.not_after + Duration::from_secs(1)));
        assert!(info.needs_renewal(info.not_before - Duration::from_secs(1)));
    }

    #[test]
    fn short_lived_certificates_are_valid_now_and_renew_at_two_thirds() {
        let ca = CertificateAuthority::generate(now())
            .unwrap()
            .with_leaf_validity(Duration::from_secs(30));
        assert_eq!(ca.leaf_validity(), Duration::from_secs(30));
        for issued in [
            ca.issue_gateway(&ObjKey::new("a", "b"), now()).unwrap(),
            ca.issue_server(&[], &[], now()).unwrap(),
        ] {
            let info = CertificateInfo::from_pem(&issued.cert_pem).unwrap();
            // Backdated by a tenth of the lifetime only, not the full clock skew.
            assert_eq!(info.not_before, now() - Duration::from_secs(3));
            assert_eq!(info.not_after, now() + Duration::from_secs(30));
            assert!(!info.needs_renewal(now()));
            // 33 s of lifetime: renewal 11 s before the end.
            let renew_at = now() + Duration::from_secs(19);
            assert_eq!(info.renewal_time(), Some(renew_at));
            assert!(!info.needs_renewal(renew_at - Duration::from_secs(1)));
            assert!(info.needs_renewal(renew_at));
        }
        // The CA itself keeps its ten years.
        assert_eq!(ca.not_after(), Some(now() + CA_VALIDITY));
    }

    #[test]
    fn identity_errors() {
        assert_eq!(
            instance_from_peer_chain::<Vec<u8>>(&[]),
            Err(IdentityError::NoCertificate)
        );
        assert!(matches!(
            instance_from_certificate(b"garbage"),
            Err(IdentityError::Unparsable(_))
        ));
        // Two Gateway URIs in one certificate: refuse rather than pick one.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::URI(gateway_uri(&ObjKey::new("a", "b")).try_into().unwrap()),
            SanType::URI(gateway_uri(&ObjKey::new("c", "d")).try_into().unwrap()),
        ];
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            instance_from_certificate(cert.der()),
            Err(IdentityError::Ambiguous)
        );
        // A foreign SPIFFE URI beside none of ours names no Gateway.
        params.subject_alt_names = vec![SanType::URI(
            "spiffe://other.dev/ns/a/sa/b".try_into().unwrap(),
        )];
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            instance_from_certificate(cert.der()),
            Err(IdentityError::NoGateway)
        );
    }
}
