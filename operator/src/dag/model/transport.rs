//! What a Traefik ServersTransport asks of a cluster beyond the backend's certificate check
//! ([`super::UpstreamValidation`]): its timeouts, connection reuse and client certificate.

use serde::Serialize;

/// A ServersTransport's settings that Envoy serves exactly (see `dag::traefik::transport`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportOptions {
    /// `forwardingTimeouts.dialTimeout`: the cluster's connect timeout (positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// `forwardingTimeouts.idleConnTimeout`: how long an idle upstream connection stays open
    /// (0: until the backend closes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// `maxIdleConnsPerHost` negative: no connection is kept idle, so every request opens one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_request_per_connection: bool,
    /// `certificatesSecrets`: the client certificate sent to a TLS backend, an entry of
    /// `Dag::secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// `insecureSkipVerify` (where the Gateway's `allowInsecureSkipVerify` lets it): TLS to the
    /// backend without checking its certificate, sending this SNI (`serverName`; empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified_sni: Option<String>,
}

impl TransportOptions {
    /// Whether nothing is set (a cluster then carries no options).
    pub fn is_empty(&self) -> bool {
        *self == TransportOptions::default()
    }
}
