//! A route's external authorization (Traefik's `forwardAuth`): which auth Service is asked, at
//! which path, and what of its answer reaches the backend. Plain data;
//! `xds::translate::ext_authz` turns it into the route's configuration of the listener's one
//! `ext_authz` filter (disabled unless the route enables it).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthzPolicy {
    /// The Middleware (`namespace/name`).
    pub source: String,
    /// The auth Service's cluster, an entry of `Dag::clusters`.
    pub cluster: String,
    /// `http://service.namespace:port`: the auth server as the Middleware names it (Envoy sends
    /// every auth request to `cluster`; this names it in Envoy's configuration only).
    pub uri: String,
    /// Path and query every auth request goes to (the address's).
    pub path: String,
    /// Lower-case names of the auth response headers that replace the request's before it is
    /// forwarded (`authResponseHeaders`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream_headers: Vec<String>,
    /// RE2 matching a whole lower-case header name: more auth response headers copied
    /// (`authResponseHeadersRegex`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_headers_regex: Option<String>,
    /// The request body is sent to the auth server, up to this many bytes (`forwardBody`,
    /// `maxBodySize`); a larger body gets 413.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<u32>,
}
