//! Middleware (`traefik.io/v1alpha1`): one object sets one kind. The kinds Sluice models are
//! typed fields; every other kind (`digestAuth`, `plugin`, `errors`, ...) lands in `other` under
//! its own name, so that it is refused by name rather than dropped.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::routes::ObjectRef;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "traefik.io",
    version = "v1alpha1",
    kind = "Middleware",
    plural = "middlewares",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct MiddlewareSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<StripPrefix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix_regex: Option<StripPrefixRegex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_prefix: Option<AddPrefix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_path: Option<ReplacePath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_path_regex: Option<ReplacePathRegex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_scheme: Option<RedirectScheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_regex: Option<RedirectRegex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allow_list: Option<IpAllowList>,
    /// The v2 name of `ipAllowList`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_white_list: Option<IpAllowList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffering: Option<Buffering>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Chain>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<ForwardAuth>,
    /// Middleware kinds Sluice does not model, by their field name.
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StripPrefix {
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Deprecated in Traefik.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_slash: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StripPrefixRegex {
    #[serde(default)]
    pub regex: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddPrefix {
    #[serde(default)]
    pub prefix: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplacePath {
    #[serde(default)]
    pub path: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplacePathRegex {
    #[serde(default)]
    pub regex: String,
    #[serde(default)]
    pub replacement: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedirectScheme {
    #[serde(default)]
    pub scheme: String,
    /// A port number, as a string in Traefik's CRD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permanent: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedirectRegex {
    #[serde(default)]
    pub regex: String,
    #[serde(default)]
    pub replacement: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permanent: Option<bool>,
}

/// Custom headers, CORS and security headers.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Headers {
    /// An empty value removes the header.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_request_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_response_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_control_allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_control_allow_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_control_allow_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_control_allow_origin_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_control_allow_origin_list_regex: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_control_expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_control_max_age: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_vary_header: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts_proxy_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ssl_proxy_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_include_subdomains: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_preload: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "forceSTSHeader"
    )]
    pub force_sts_header: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_deny: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_frame_options_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type_nosniff: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_xss_filter: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "customBrowserXSSValue"
    )]
    pub custom_browser_xss_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_security_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_security_policy_report_only: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_development: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// A Secret in the Middleware's namespace.
    #[serde(default)]
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_header: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_field: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpAllowList {
    #[serde(default)]
    pub source_range: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_strategy: Option<IpStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_status_code: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "excludedIPs")]
    pub excluded_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average: Option<i64>,
    /// Seconds as a number, or a Go duration; default 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_criterion: Option<SourceCriterion>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceCriterion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_strategy: Option<IpStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_host: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Total tries, the first included.
    #[serde(default)]
    pub attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_interval: Option<IntOrString>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Compress {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_content_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_content_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_response_body_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encodings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_encoding: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Buffering {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_request_body_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_body_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_response_body_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_expression: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    #[serde(default)]
    pub middlewares: Vec<ObjectRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardAuth {
    #[serde(default)]
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_forward_header: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_response_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_response_headers_regex: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_request_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ForwardAuthTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_auth_cookies_to_response: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_body: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_location_header: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_request_method: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardAuthTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_optional: Option<bool>,
}
