//! The DAG: what one Gateway instance serves, after selection, delegation and validation. Plain
//! data in a deterministic order; `xds::translate` turns it into Envoy resources. Its lists hold
//! shared entries ([`SharedList`]), so a copy of a DAG shares every entry with the original.

use serde::Serialize;

use crate::api::ingressroute::TlsVersion;

mod shared;
pub mod traefik_options;
pub mod transport;

pub use shared::SharedList;
pub use traefik_options::DirectResponse;

/// What one Gateway instance serves, and the status of every IngressRoute it selects.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dag {
    /// `namespace/name` of the Gateway (the Envoy node cluster).
    pub gateway: String,
    /// Sorted by fqdn.
    pub virtual_hosts: SharedList<VirtualHost>,
    /// Every cluster a route or tcpproxy uses, sorted by name, no duplicates.
    pub clusters: SharedList<Cluster>,
    /// Endpoints of every EDS cluster, sorted by service name.
    pub endpoints: SharedList<ClusterEndpoints>,
    /// TLS certificates and CA bundles the configuration references, sorted by name.
    pub secrets: SharedList<Secret>,
    /// Every selected IngressRoute, sorted by namespace/name.
    pub statuses: SharedList<RouteStatus>,
    /// Verdicts on selected objects of other kinds (Traefik's), which have no status subresource:
    /// reported, never written to the cluster. Sorted by kind, namespace and name.
    #[serde(default, skip_serializing_if = "SharedList::is_empty")]
    pub object_statuses: SharedList<ObjectStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHost {
    /// Lower-case fully qualified domain name.
    pub fqdn: String,
    /// The root IngressRoute owning this host (`namespace/name`).
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<VirtualHostTls>,
    /// HTTP routes, longest prefix first (ties by prefix).
    pub routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_proxy: Option<TcpProxy>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHostTls {
    /// Name of the TLS secret (`namespace/name`, an entry of `Dag::secrets`); `None` with
    /// passthrough.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Effective minimum: the virtual host's, raised to the Gateway's floor.
    pub minimum_protocol_version: TlsVersion,
    pub passthrough: bool,
    /// What a Traefik TLSOption adds (`None`: Envoy's defaults as Contour set them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Box<TlsOptions>>,
}

/// A Traefik TLSOption applied to one virtual host, in Envoy's terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsOptions {
    /// The TLSOption (`namespace/name`).
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_protocol_version: Option<TlsVersion>,
    /// BoringSSL names; empty means Envoy's defaults.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    /// Envoy `ecdh_curves` names; empty means Envoy's defaults.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ecdh_curves: Vec<String>,
    /// ALPN protocols advertised; `None` keeps what the filter chain would advertise anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn_protocols: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_validation: Option<ClientValidation>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable_session_tickets: bool,
}

/// Client certificates: asked for with the CAs of `ca_secret`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientValidation {
    /// CA bundle, an entry of `Dag::secrets`.
    pub ca_secret: String,
    /// Refuse the handshake without a client certificate.
    pub require: bool,
    /// Accept a certificate that does not chain to the CAs (Go's `RequestClientCert`,
    /// `RequireAnyClientCert`).
    pub accept_untrusted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub prefix: String,
    /// The IngressRoute that defined this route (`namespace/name`).
    pub owner: String,
    /// Weighted clusters; weights follow the reference's rules (all zero means even split is
    /// impossible, so translation sends such a route to no cluster).
    pub clusters: Vec<WeightedCluster>,
    pub permit_insecure: bool,
    pub websocket: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Some service uses the Cookie strategy: hash on the session-affinity cookie.
    pub session_affinity: bool,
    /// Conditions and filters beyond a path prefix (Traefik routes); `None` for Contour's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Box<RouteExtra>>,
}

impl Route {
    /// Every cluster the route sends to: its weighted clusters, then its mirrors, then its
    /// auth server's.
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.clusters
            .iter()
            .map(|c| c.cluster.as_str())
            .chain(
                self.extra
                    .iter()
                    .flat_map(|e| &e.mirrors)
                    .map(|m| m.cluster.as_str()),
            )
            .chain(
                self.extra
                    .iter()
                    .filter_map(|e| e.policy.as_ref()?.ext_authz.as_ref())
                    .map(|a| a.cluster.as_str()),
            )
    }
}

/// What a route matches and does beyond Contour's model. With it, [`Route::prefix`] is the path,
/// matched as [`RouteExtra::path`] says, and the virtual host's routes are in priority order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteExtra {
    pub path: PathKind,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderCondition>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<QueryCondition>,
    /// Conditions on the client's address (the TCP peer), all true.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceCondition>,
    /// Higher first; ties keep the order the builder gave.
    pub priority: i64,
    /// Answer with a redirect instead of forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// Rewrite the path (without the query) before forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_rewrite: Option<RegexRewrite>,
    /// Lower-case name and value, set (replacing any value), sorted by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_headers_set: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_headers_remove: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_headers_set: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_headers_remove: Vec<String>,
    /// Host header sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_rewrite: Option<String>,
    /// Clusters a copy of each request goes to (responses dropped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
    /// HTTP filters enabled on this route, and its retry policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Box<super::policy::RoutePolicy>>,
    /// Options of the route's Traefik services (upstream Host, sticky cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_options: Option<Box<traefik_options::RouteServiceOptions>>,
    /// The Gateway's compressor stays on (a `compress` middleware); off otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compress: bool,
    /// Answer directly instead of forwarding (a Host `allowedHosts` refuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<traefik_options::DirectResponse>,
}

/// A cluster that gets a copy of `percent` % of a route's requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    pub cluster: String,
    /// 1 to 100.
    pub percent: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PathKind {
    #[default]
    Prefix,
    Exact,
    /// RE2, matching the whole path without the query.
    Regex,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderCondition {
    /// Lower case; `:authority` and `:method` included.
    pub name: String,
    pub value: ValueCondition,
    /// The value condition does not hold; a missing header (never a pseudo-header) counts as
    /// an empty value then (Traefik's `!Header()`: no value matches).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

/// The client's address in a network (`invert`: not in it); Traefik `ClientIP()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceCondition {
    pub range: SourceRange,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryCondition {
    pub name: String,
    pub value: ValueCondition,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ValueCondition {
    Exact(String),
    /// RE2, matching the whole value.
    Regex(String),
    Present,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// `http` or `https`.
    pub scheme: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// 301, 302, 307 or 308.
    pub status: u16,
    /// The new host (a Traefik `redirectRegex`); unset, the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The new path, rewritten from the request's (the query kept after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<RegexRewrite>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegexRewrite {
    /// RE2.
    pub pattern: String,
    /// RE2 rewrite (`\1`).
    pub substitution: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedCluster {
    /// An entry of `Dag::clusters`.
    pub cluster: String,
    pub weight: u32,
    /// `Set-Cookie` values a response from this pick carries (sticky weighted TraefikServices
    /// name the children picked); the same cluster may be listed once per set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_cookie: Vec<String>,
}

/// Request timeout; absent means Envoy's default (15 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Timeout {
    /// `infinity`, `0s` or unparseable: no timeout.
    Disabled,
    Millis(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Retry on 5xx this many times (at least 1).
    pub count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpProxy {
    /// The IngressRoute whose tcpproxy services are used (`namespace/name`).
    pub owner: String,
    /// The connections no branch takes; empty (with branches) when every chain of the name has
    /// a condition.
    pub clusters: Vec<WeightedCluster>,
    /// Filter chains of the same name with conditions (Traefik `ALPN()`, `ClientIP()`; see
    /// `dag::traefik::tcp_match`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<TcpBranch>,
    /// Plain TCP (Traefik `HostSNI(`*`)` without `tls`): the connections that are not TLS, on
    /// the catch-all host only (its `tls` is a passthrough without certificate); see
    /// `dag::traefik::tcp_plain`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain: bool,
    /// Traefik `HostSNIRegexp()` on a wildcard or catch-all host: RE2 regexes matched against
    /// the whole server name, one of which must match or the connection is closed before any
    /// upstream connection (see `dag::traefik::tcp_open`); empty: no such condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni_regexes: Vec<String>,
}

impl TcpProxy {
    /// Every cluster it sends connections to.
    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.clusters
            .iter()
            .chain(self.branches.iter().flat_map(|b| &b.clusters))
            .map(|c| c.cluster.as_str())
    }
}

/// A filter chain of a TCP proxy's name taking only some connections: those offering one of
/// `alpn` (when not empty) from one of `sources` (when not empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpBranch {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRange>,
    pub clusters: Vec<WeightedCluster>,
}

/// A client network: address (host bits cleared) and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRange {
    pub address: std::net::IpAddr,
    pub prefix_len: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// `namespace/service/port/<hash of policy>`.
    pub name: String,
    /// `namespace/service`.
    pub service: String,
    /// Service port number.
    pub port: u16,
    pub upstream: Upstream,
    pub protocol: UpstreamProtocol,
    pub lb_policy: LbPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<UpstreamValidation>,
    /// PROXY protocol version (1 or 2) sent to the upstream before the stream (Traefik TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<u8>,
    /// A Traefik service's active health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_health_check: Option<Box<traefik_options::ActiveHealthCheck>>,
    /// A Traefik ServersTransport's timeouts, connection reuse and client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Box<transport::TransportOptions>>,
}

impl Cluster {
    /// The entries of `Dag::secrets` the cluster uses: its CA bundle and client certificate.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        let ca = self.validation.as_ref().map(|v| v.ca_secret.as_str());
        let client = self
            .transport
            .as_ref()
            .and_then(|t| t.client_certificate.as_deref());
        ca.into_iter().chain(client)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Upstream {
    /// Endpoints by EDS under this service name (`namespace/service/portname`), an entry of
    /// `Dag::endpoints`.
    Eds { service_name: String },
    /// A Service of type ExternalName, resolved by DNS.
    Dns { host: String, port: u16 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamProtocol {
    Http1,
    H2,
    H2c,
    Tls,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    /// Ring hash on the session-affinity cookie.
    RingHash,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub path: String,
    pub host: String,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamValidation {
    /// CA secret, an entry of `Dag::secrets`.
    pub ca_secret: String,
    pub subject_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEndpoints {
    /// EDS service name (`namespace/service/portname`).
    pub service_name: String,
    /// Ready addresses, sorted.
    pub addresses: Vec<SocketAddress>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SocketAddress {
    pub ip: String,
    pub port: u16,
}

/// A secret the configuration references. Private key bytes never serialize.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// `namespace/name`.
    pub name: String,
    pub kind: SecretKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SecretKind {
    /// A serving certificate chain and its key (PEM).
    Tls {
        #[serde(skip)]
        cert_chain: String,
        #[serde(skip)]
        private_key: String,
    },
    /// A CA bundle (PEM) for upstream validation.
    Ca {
        #[serde(skip)]
        ca: String,
    },
}

/// Status of one IngressRoute as seen by one Gateway instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    pub namespace: String,
    pub name: String,
    pub current_status: Validity,
    pub description: String,
}

/// The verdict on a selected object other than a Contour IngressRoute.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub current_status: Validity,
    pub description: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Invalid,
    Orphaned,
}

impl Validity {
    pub fn as_str(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Invalid => "invalid",
            Validity::Orphaned => "orphaned",
        }
    }
}

/// Messages Contour wrote, kept verbatim for compatibility.
pub mod msg {
    pub const VALID: &str = "valid IngressRoute";
    pub const ORPHANED: &str =
        "this IngressRoute is not part of a delegation chain from a root IngressRoute";
    pub const ROOT_NAMESPACE: &str = "root IngressRoute cannot be defined in this namespace";
    pub const FQDN_REQUIRED: &str = "Spec.VirtualHost.Fqdn must be specified";
    pub const ROOT_TO_ROOT: &str = "root ingressroute cannot delegate to another root ingressroute";
}
