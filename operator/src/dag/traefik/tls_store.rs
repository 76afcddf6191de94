//! The certificate a namespace's TLSStore `default` gives one host of a Traefik route that
//! names no Secret: the first of the store's `certificates` whose names hold the host exactly,
//! else the first holding it under a `*.` wildcard (one label, as TLS clients match), else the
//! store's `defaultCertificate`.
//!
//! Traefik puts every store's certificates in one pool chosen by SNI for any host, whoever
//! serves it. Sluice keeps a store to its own namespace: its certificates are only offered to
//! the hosts of that namespace's routes that ask for the store (`tls` without `secretName`),
//! and each is checked as every TLS Secret is (type, PEM, key pair) before its names are read.

use x509_parser::extensions::GeneralName;

use super::super::build::Builder;
use super::super::deps::Dep;
use super::tls::DEFAULT;
use crate::api::traefik::objects::{SecretRef, TLSStoreSpec};
use crate::snapshot::{ObjKey, TraefikKind};

/// At most this many `certificates` in one store.
pub const MAX_STORE_CERTIFICATES: usize = 64;

/// The DNS names a PEM certificate chain's first certificate is for (its subject alternative
/// names and, as Traefik counts it, its common name), lower case.
pub fn certificate_names(chain: &str) -> Result<Vec<String>, String> {
    let der = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
        .next()
        .ok_or("tls.crt holds no certificate")?
        .map_err(|e| format!("tls.crt: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der.contents)
        .map_err(|e| format!("tls.crt: the first certificate does not parse: {e}"))?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        names.extend(san.value.general_names.iter().filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        }));
    }
    Ok(names)
}

/// Whether a certificate name covers `host` exactly.
fn exact(name: &str, host: &str) -> bool {
    name.trim_end_matches('.') == host
}

/// Whether a certificate name `*.parent` covers `host` (one label under `parent`).
fn wildcard(name: &str, host: &str) -> bool {
    let Some(parent) = name.trim_end_matches('.').strip_prefix("*.") else {
        return false;
    };
    host.strip_suffix(parent)
        .and_then(|l| l.strip_suffix('.'))
        .is_some_and(|l| !l.is_empty() && !l.contains('.') && l != "*")
}

/// A namespace's TLSStore `default` as one route's hosts pick from it: read, and each of its
/// `certificates` checked and its names read, once for the route.
pub(super) struct StoreCandidates {
    key: ObjKey,
    /// `None`: the namespace has no store.
    store: Option<Store>,
}

struct Store {
    /// How errors name the store.
    at: String,
    /// Each certificate: its Secret, the field errors name, the names it holds.
    certificates: Vec<(String, String, Vec<String>)>,
    default: Option<String>,
}

impl StoreCandidates {
    /// The Secret `host` gets (see the module documentation) and the field its errors name.
    pub(super) fn pick(&self, host: &str) -> Result<(String, String), String> {
        let missing = || {
            format!(
                "spec.tls.secretName: required for host {host:?}, since TLSStore {} has \
                 no certificate for it and no defaultCertificate (Sluice serves a store's \
                 certificates only to the routes of its namespace that name no Secret)",
                self.key
            )
        };
        let store = self.store.as_ref().ok_or_else(missing)?;
        let pick = |covers: fn(&str, &str) -> bool| {
            store
                .certificates
                .iter()
                .find(|(_, _, names)| names.iter().any(|n| covers(n, host)))
                .map(|(secret, field, _)| (secret.clone(), field.clone()))
        };
        if let Some(found) = pick(exact).or_else(|| pick(wildcard)) {
            return Ok(found);
        }
        let name = store
            .default
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(missing)?;
        if name.contains('/') {
            return Err(format!(
                "spec.tls: {}: spec.defaultCertificate.secretName {name:?} must name a Secret \
                 of its namespace",
                store.at
            ));
        }
        Ok((
            name.to_owned(),
            format!("spec.tls: {}: spec.defaultCertificate.secretName", store.at),
        ))
    }
}

/// A TLSStore's verdict from its own fields, whether a route uses it or not: no ACME default
/// certificate, at most [`MAX_STORE_CERTIFICATES`] certificates, each naming a Secret of the
/// store's namespace. The Secrets themselves are read where a route uses the store. Pure.
pub(super) fn own_fields(spec: &TLSStoreSpec) -> Result<(), String> {
    if spec.default_generated_cert.is_some() {
        return Err("spec.defaultGeneratedCert is not supported (ACME)".into());
    }
    if spec.certificates.len() > MAX_STORE_CERTIFICATES {
        return Err(format!(
            "spec.certificates: {} entries, more than the {MAX_STORE_CERTIFICATES} Sluice serves",
            spec.certificates.len()
        ));
    }
    for (i, c) in spec.certificates.iter().enumerate() {
        let name = c.secret_name.trim();
        if name.is_empty() || name.contains('/') {
            return Err(format!(
                "spec.certificates[{i}].secretName: {name:?} must name a Secret of the store's \
                 namespace"
            ));
        }
    }
    Ok(())
}

impl Builder<'_> {
    /// The `default` TLSStore of `key`'s namespace, its certificates checked.
    pub(super) fn store_candidates(&self, key: &ObjKey) -> Result<StoreCandidates, String> {
        let store_key = ObjKey::new(key.namespace.clone(), DEFAULT);
        self.read(Dep::Traefik(TraefikKind::TlsStore, store_key.clone()));
        let Some(store) = self.snap.traefik_tls_stores.get(&store_key) else {
            return Ok(StoreCandidates {
                key: store_key,
                store: None,
            });
        };
        let at = format!("TLSStore {store_key}");
        let spec = &store
            .decoded
            .as_ref()
            .map_err(|e| format!("spec.tls: {at} could not be read: {e}"))?
            .spec;
        if let Some(field) = store.ignored.iter().find(|f| f.starts_with("spec.")) {
            return Err(format!(
                "spec.tls: {at}: {field}: field not supported by Sluice"
            ));
        }
        own_fields(spec).map_err(|e| format!("spec.tls: {at}: {e}"))?;
        let certificates = self.store_certificates(&store_key, &spec.certificates, &at)?;
        Ok(StoreCandidates {
            key: store_key,
            store: Some(Store {
                at,
                certificates,
                default: spec
                    .default_certificate
                    .as_ref()
                    .map(|c| c.secret_name.clone()),
            }),
        })
    }

    /// Each of `store_key`'s `certificates`, checked: its Secret, the field its errors name,
    /// and its names. `at` names the store in errors.
    fn store_certificates(
        &self,
        store_key: &ObjKey,
        certificates: &[SecretRef],
        at: &str,
    ) -> Result<Vec<(String, String, Vec<String>)>, String> {
        // Their number and names are checked with the store's own fields (`own_fields`).
        let mut candidates = Vec::with_capacity(certificates.len());
        for (i, c) in certificates.iter().enumerate() {
            let field = format!("spec.tls: {at}: spec.certificates[{i}].secretName");
            let name = c.secret_name.trim();
            let secret = ObjKey::new(store_key.namespace.clone(), name);
            let (chain, _) = self
                .tls_secret_pem(&secret)
                .map_err(|e| format!("{field}: {e}"))?;
            let names = certificate_names(&chain).map_err(|e| format!("{field}: {e}"))?;
            candidates.push((name.to_owned(), field, names));
        }
        Ok(candidates)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn names_cover_hosts_exactly_or_one_label_under_a_wildcard() {
        assert!(exact("a.example.com", "a.example.com"));
        assert!(!exact("a.example.com", "b.example.com"));
        assert!(exact("*.example.com", "*.example.com"));
        assert!(wildcard("*.example.com", "a.example.com"));
        assert!(!wildcard("*.example.com", "a.b.example.com"));
        assert!(!wildcard("*.example.com", "example.com"));
        assert!(!wildcard("*.example.com", "*.example.com"));
        assert!(!wildcard("a.example.com", "a.example.com"));
    }

    #[test]
    fn a_certificates_names_are_its_common_name_and_dns_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["A.example.com".into(), "*.b.example.com".into()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cn.example.com");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_names(&cert.pem()).unwrap(),
            ["cn.example.com", "a.example.com", "*.b.example.com"]
        );
        assert!(certificate_names("nothing").is_err());
    }
}
