//! TraefikService, TLSOption, TLSStore and ServersTransport (`traefik.io/v1alpha1`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::routes::{Domain, Service, Sticky};

/// A service built from others: exactly one of `weighted` or `mirroring` (other kinds, such as
/// `highestRandomWeight` and `failover`, are kept in `other` to be refused by name).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "traefik.io",
    version = "v1alpha1",
    kind = "TraefikService",
    plural = "traefikservices",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct TraefikServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted: Option<Weighted>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirroring: Option<Mirroring>,
    /// Service kinds Sluice does not model, by their field name.
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Weighted {
    #[serde(default)]
    pub services: Vec<Service>,
    /// Pins a client to one child service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mirroring {
    /// The main service.
    #[serde(flatten)]
    pub service: Service,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_body: Option<bool>,
    /// Bytes; -1 (default) is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<MirrorService>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorService {
    #[serde(flatten)]
    pub service: Service,
    /// 0 to 100.
    #[serde(default)]
    pub percent: i64,
}

/// TLS parameters for the hosts of the routes that reference it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "traefik.io",
    version = "v1alpha1",
    kind = "TLSOption",
    plural = "tlsoptions",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct TLSOptionSpec {
    /// `VersionTLS10` to `VersionTLS13`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    /// Go names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curve_preferences: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni_strict: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn_protocols: Vec<String>,
    /// Deprecated in Traefik, without effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_server_cipher_suites: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_session_tickets: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuth {
    /// Secrets (in the TLSOption's namespace) holding CAs in `tls.ca` or `ca.crt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_names: Vec<String>,
    /// `NoClientCert`, `RequestClientCert`, `RequireAnyClientCert`, `VerifyClientCertIfGiven`
    /// or `RequireAndVerifyClientCert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth_type: Option<String>,
}

/// Certificates; only the store named `default` is used.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "traefik.io",
    version = "v1alpha1",
    kind = "TLSStore",
    plural = "tlsstores",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct TLSStoreSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_certificate: Option<SecretRef>,
    /// ACME-issued default: not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_generated_cert: Option<GeneratedCert>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub secret_name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedCert {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
}

/// How Traefik connects to HTTP backends (upstream TLS, timeouts).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "traefik.io",
    version = "v1alpha1",
    kind = "ServersTransport",
    plural = "serverstransports",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct ServersTransportSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Refused unless the Gateway allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "rootCAs")]
    pub root_cas: Vec<RootCa>,
    /// Deprecated form of `rootCAs`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        rename = "rootCAsSecrets"
    )]
    pub root_cas_secrets: Vec<String>,
    /// Client certificates (`tls.crt`, `tls.key`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates_secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_conns_per_host: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding_timeouts: Option<ForwardingTimeouts>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "disableHTTP2"
    )]
    pub disable_http2: Option<bool>,
    /// A string, as in Traefik's CRD.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "peerCertURI"
    )]
    pub peer_cert_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe: Option<Spiffe>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RootCa {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardingTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_timeout: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_timeout: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_conn_timeout: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_idle_timeout: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_timeout: Option<IntOrString>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Spiffe {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}
