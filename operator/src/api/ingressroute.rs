//! `contour.heptio.com/v1beta1` IngressRoute and TLSCertificateDelegation, field for field as in
//! the IngressRoute reference. Existing manifests must deserialize unchanged.
//!
//! Optional parts most routes leave out (health checks, upstream validation, retry policies, a
//! tcpproxy) are boxed: held inline, each made every decoded route and service larger by its
//! whole size, present or not, for every IngressRoute the operator holds.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// IngressRoute: a root (with `virtualhost`) or a delegated set of routes.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "contour.heptio.com",
    version = "v1beta1",
    kind = "IngressRoute",
    derive = "PartialEq",
    plural = "ingressroutes",
    namespaced,
    status = "IngressRouteStatus",
    printcolumn = r#"{"name":"FQDN","type":"string","jsonPath":".spec.virtualhost.fqdn","description":"Fully qualified domain name"}"#,
    printcolumn = r#"{"name":"TLS Secret","type":"string","jsonPath":".spec.virtualhost.tls.secretName","description":"Secret with TLS credentials"}"#,
    printcolumn = r#"{"name":"First route","type":"string","jsonPath":".spec.routes[0].match","description":"First routes defined"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.currentStatus","description":"The current status of the IngressRoute"}"#,
    printcolumn = r#"{"name":"Status Description","type":"string","jsonPath":".status.description","description":"Description of the current status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IngressRouteSpec {
    /// Present only on a root IngressRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<VirtualHost>,
    /// HTTP routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// TCP proxying of TLS-encapsulated sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcpproxy: Option<Box<TcpProxy>>,
    /// Default health check for every service of this IngressRoute (a service's own wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Box<HealthCheck>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHost {
    /// The fully qualified domain name matched against the Host header.
    #[serde(default)]
    pub fqdn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// `name` in the IngressRoute's namespace, or `namespace/name` subject to delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_protocol_version: Option<TlsVersion>,
    /// Forward the TLS session to the backend without terminating it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passthrough: bool,
}

/// TLS protocol versions a virtual host may require.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum TlsVersion {
    #[serde(rename = "1.1")]
    V1_1,
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Path prefix.
    #[serde(rename = "match", default)]
    pub match_: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_websockets: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permit_insecure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_policy: Option<TimeoutPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<Box<RetryPolicy>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpProxy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Name of a Service in the IngressRoute's namespace.
    pub name: String,
    /// Service port number (checked to be 1-65535 when building).
    pub port: i64,
    /// Relative weight (checked to be >= 0 when building).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<LbStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Box<HealthCheck>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Box<UpstreamValidation>>,
}

/// Load-balancing strategy for one upstream service.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum LbStrategy {
    RoundRobin,
    WeightedLeastRequest,
    Random,
    Cookie,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold_count: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamValidation {
    /// Secret in the IngressRoute's namespace holding `ca.crt`.
    #[serde(default)]
    pub ca_secret: String,
    /// Subject alternative name the upstream certificate must carry.
    #[serde(default)]
    pub subject_name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delegate {
    pub name: String,
    /// Defaults to the delegating IngressRoute's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutPolicy {
    /// A Go duration (`1s`, `150ms`), `infinity`, or `0s` (also infinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Maximum number of retries; defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
}

/// `status` of an IngressRoute.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRouteStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Lets IngressRoutes in other namespaces reference a TLS secret of this namespace.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "contour.heptio.com",
    version = "v1beta1",
    kind = "TLSCertificateDelegation",
    derive = "PartialEq",
    plural = "tlscertificatedelegations",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct TLSCertificateDelegationSpec {
    #[serde(default)]
    pub delegations: Vec<CertificateDelegation>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDelegation {
    pub secret_name: String,
    /// Namespaces allowed to use the secret; `*` for all.
    #[serde(default)]
    pub target_namespaces: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Decoded routes and services are held by the thousand: the optional parts they usually
    /// leave out take a pointer each, not their size.
    #[test]
    fn routes_and_services_stay_small() {
        assert!(size_of::<Service>() <= 80, "{}", size_of::<Service>());
        assert!(size_of::<Route>() <= 168, "{}", size_of::<Route>());
        assert!(
            size_of::<IngressRouteSpec>() <= 128,
            "{}",
            size_of::<IngressRouteSpec>()
        );
    }

    /// Boxed parts read and write as before.
    #[test]
    fn boxed_parts_decode_and_encode_unchanged() {
        let spec = serde_json::json!({
            "healthCheck": {"path": "/healthz", "intervalSeconds": 5},
            "routes": [{"match": "/", "retryPolicy": {"count": 3, "perTryTimeout": "1s"},
                        "services": [{"name": "s", "port": 80,
                                      "healthCheck": {"path": "/h"},
                                      "validation": {"caSecret": "ca", "subjectName": "s.example"}}]}],
            "tcpproxy": {"services": [{"name": "t", "port": 443}]}
        });
        let decoded: IngressRouteSpec = serde_json::from_value(spec.clone()).unwrap();
        assert_eq!(decoded.health_check.as_ref().unwrap().path, "/healthz");
        let svc = &decoded.routes[0].services[0];
        assert_eq!(svc.validation.as_ref().unwrap().subject_name, "s.example");
        assert_eq!(
            decoded.routes[0].retry_policy.as_ref().unwrap().count,
            Some(3)
        );
        assert_eq!(decoded.tcpproxy.as_ref().unwrap().services[0].name, "t");
        assert_eq!(serde_json::to_value(&decoded).unwrap(), spec);
    }
}
