//! Per-route HTTP policies served by HTTP filters of the shared listeners, each enabled only on
//! the routes that carry it (Traefik's `basicAuth`, `ipAllowList`, `rateLimit`, `buffering`,
//! CORS), and the route retry policy of Traefik's `retry`. Plain data; `xds::translate::policies`
//! turns it into per-route filter configuration.
//!
//! The filters run in one fixed order on every route ([`Stage`]); the DAG builder refuses a
//! route whose middlewares ask for another order.

use serde::Serialize;

/// What a route's filters do besides routing. Every part is optional; a route without any has
/// no `policy` at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutePolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_allow: Option<IpAllowPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_authz: Option<Box<ExtAuthzPolicy>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer: Option<BufferPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

impl RoutePolicy {
    pub fn is_empty(&self) -> bool {
        *self == RoutePolicy::default()
    }

    /// Whether a filter that is disabled unless the route enables it serves this route
    /// (`basic_auth`, `ext_authz`, `buffer`): Envoy decides which such filters run from the route found
    /// before any filter ran, so the translation guards these routes (see
    /// `xds::translate::policies`).
    pub fn needs_route_at_start(&self) -> bool {
        self.basic_auth.is_some() || self.ext_authz.is_some() || self.buffer.is_some()
    }
}

/// The order the listener's filters run in, first to last. A route's middlewares that map to
/// filters must come in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Cors,
    IpAllow,
    RateLimit,
    BasicAuth,
    ExtAuthz,
    Buffer,
}

impl Stage {
    /// The Traefik middleware kind served at this stage.
    pub fn kind(self) -> &'static str {
        match self {
            Stage::Cors => "headers (CORS)",
            Stage::IpAllow => "ipAllowList",
            Stage::RateLimit => "rateLimit",
            Stage::BasicAuth => "basicAuth",
            Stage::ExtAuthz => "forwardAuth",
            Stage::Buffer => "buffering",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthPolicy {
    /// The users Secret (`namespace/name`).
    pub secret: String,
    /// htpasswd lines (`user:{SHA}hash`), never rendered.
    #[serde(skip_serializing)]
    pub users: Vec<String>,
    /// Drop the `Authorization` header before forwarding (`removeHeader`).
    pub remove_header: bool,
}

pub use super::ext_authz::ExtAuthzPolicy;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAllowPolicy {
    /// `address/prefix-length`, the address canonical; the client must be in one.
    pub source_ranges: Vec<(String, u8)>,
    /// 0: the client is the TCP peer. N: it is the N-th `X-Forwarded-For` entry from the right
    /// (Traefik's `ipStrategy.depth`), which is Envoy's client address when the Gateway trusts N
    /// hops; a request whose header has fewer entries, or no address there, is refused.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forwarded_depth: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Whose requests share a token bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RateKey {
    /// The TCP peer's address.
    PeerIp,
    /// The TCP peer's address on a Gateway that trusts X-Forwarded-For hops, where Envoy's own
    /// client address is a forwarded one: read from what the connection recorded.
    TcpPeer,
    /// The `depth`-th `X-Forwarded-For` entry from the right (Envoy's client address when the
    /// Gateway trusts that many hops); requests whose header has fewer entries, or no address
    /// there, share one bucket.
    ForwardedIp { depth: u32 },
    /// The value of this lower-case request header (requests without it share one bucket).
    Header(String),
    /// The request's host.
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitPolicy {
    /// Bucket size.
    pub max_tokens: u32,
    /// Tokens added every `fill_interval_ms`.
    pub tokens_per_fill: u32,
    pub fill_interval_ms: u64,
    pub key: RateKey,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BufferPolicy {
    /// Larger request bodies get 413.
    pub max_request_bytes: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub num_retries: u32,
    /// Base of the jittered exponential back-off.
    pub base_interval_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Origins allowed, each an RE2 pattern matching the whole `Origin` value.
    pub allow_origin_regexes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
}
