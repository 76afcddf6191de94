//! SDS secrets: serving certificates and upstream CA bundles. Only what the DAG holds, which is
//! only what the configuration references.

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret as EnvoySecret, TlsCertificate, secret,
};

use super::Resource;
use super::envoy::inline_string;
use crate::dag::Dag;
use crate::dag::model::{Secret, SecretKind};

pub fn build_secrets(dag: &Dag) -> Vec<Resource<EnvoySecret>> {
    dag.secrets
        .iter()
        .map(|s| Resource::new(s.name.clone(), envoy_secret(s)))
        .collect()
}

pub(super) fn envoy_secret(s: &Secret) -> EnvoySecret {
    let kind = match &s.kind {
        SecretKind::Tls {
            cert_chain,
            private_key,
        } => secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline_string(cert_chain)),
            private_key: Some(inline_string(private_key)),
            ..Default::default()
        }),
        SecretKind::Ca { ca } => secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(inline_string(ca)),
            ..Default::default()
        }),
    };
    EnvoySecret {
        name: s.name.clone(),
        r#type: Some(kind),
    }
}
