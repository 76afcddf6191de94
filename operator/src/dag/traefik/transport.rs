//! The fields of a Traefik ServersTransport beyond the backend's certificate check (see
//! `upstream.rs`): the client certificate (`certificatesSecrets`), `forwardingTimeouts`,
//! `maxIdleConnsPerHost`, `disableHTTP2` and `peerCertURI`. Each is served where Envoy does
//! exactly what Traefik does, and refused otherwise with a message saying what differs.
//!
//! - `certificatesSecrets`: one `kubernetes.io/tls` Secret of the transport's namespace, checked
//!   as every certificate Sluice serves; Envoy sends one client certificate per upstream TLS
//!   context, so a second one is refused.
//! - `dialTimeout`: the cluster's connect timeout; 0 (no timeout in Go) is refused, as Envoy
//!   needs a positive one. `idleConnTimeout`: the upstream idle timeout (0: none, in both).
//!   `responseHeaderTimeout`: refused unless 0 (Envoy's route timeout runs until the whole
//!   response, not its headers). `readIdleTimeout`: refused unless 0 (Go pings an HTTP/2
//!   connection that received nothing for that long; Envoy's keepalive pings at fixed
//!   intervals); `pingTimeout` only matters with it, so any bounded value is accepted.
//!   Durations are bounded (100 years) and never negative.
//! - `maxIdleConnsPerHost`: negative (no idle connection kept) is one request per connection;
//!   other values are refused: Envoy keeps every idle connection until its idle timeout.
//! - `disableHTTP2: true` is what Envoy does (HTTP/1.1 to https backends); `false` asks for
//!   HTTP/2 by ALPN, which Sluice does not negotiate, and is refused.
//! - `peerCertURI` is refused: Traefik requires the certificate to hold `serverName` among its
//!   DNS names and its first URI name to match (ignoring that URI's host and case), while
//!   Envoy accepts a certificate when any one of its name matchers matches.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::traefik::objects::{ForwardingTimeouts, ServersTransportSpec};
use crate::dag::build::Builder;
use crate::dag::model::transport::TransportOptions;
use crate::dag::model::{Secret, SecretKind};
use crate::snapshot::ObjKey;
use crate::traefik::duration;

impl Builder<'_> {
    /// The options of the ServersTransport `key`, with the client certificate it names (to be
    /// recorded when the cluster speaks TLS). Errors name the field.
    pub(super) fn transport_options(
        &mut self,
        key: &ObjKey,
        spec: &ServersTransportSpec,
    ) -> Result<(TransportOptions, Option<Secret>), String> {
        let mut options = options(spec)?;
        let certificate = match certificate_name(spec)? {
            None => None,
            Some(name) => Some(self.client_certificate(key, name)?),
        };
        options.client_certificate = certificate.as_ref().map(|s| s.name.clone());
        Ok((options, certificate))
    }

    /// The `kubernetes.io/tls` Secret `name` of the transport's namespace, checked as every
    /// certificate Sluice serves.
    fn client_certificate(&mut self, key: &ObjKey, name: &str) -> Result<Secret, String> {
        let field = "spec.certificatesSecrets[0]";
        let secret = ObjKey::new(key.namespace.clone(), name);
        let (cert_chain, private_key) = self
            .tls_secret_pem(&secret)
            .map_err(|e| format!("{field}: {e}"))?;
        Ok(Secret {
            name: secret.to_string(),
            kind: SecretKind::Tls {
                cert_chain,
                private_key,
            },
        })
    }
}

/// The name of the client certificate's Secret, if the transport names one.
fn certificate_name(spec: &ServersTransportSpec) -> Result<Option<&str>, String> {
    match spec.certificates_secrets.as_slice() {
        [] => Ok(None),
        [name] if name.trim().is_empty() || name.contains('/') => Err(format!(
            "spec.certificatesSecrets[0]: {name:?} must name a Secret of the ServersTransport's \
             namespace"
        )),
        [name] => Ok(Some(name)),
        [_, _, ..] => Err(
            "spec.certificatesSecrets: name at most one Secret: Envoy sends one client \
             certificate to a backend"
                .into(),
        ),
    }
}

/// A ServersTransport's verdict from its own fields, whether a route uses it or not: the fields
/// Sluice refuses whatever the backend (`insecureSkipVerify` as the Gateway allows it), its
/// options, the form of its client certificate's name and of `serverName`. The Secrets it names
/// and what a TLS backend requires (`serverName`, `rootCAs`) are checked where a route uses it.
/// Pure.
pub(super) fn own_fields(allow_insecure: bool, spec: &ServersTransportSpec) -> Result<(), String> {
    super::upstream::refuse_unserved_transport(spec, allow_insecure)?;
    options(spec)?;
    certificate_name(spec)?;
    match spec.server_name.as_deref().map(str::trim) {
        None | Some("") => Ok(()),
        Some(name) => {
            crate::dag::checks::subject_name(name).map_err(|e| format!("spec.serverName {e}"))
        }
    }
}

/// The options that read nothing else, checked.
fn options(spec: &ServersTransportSpec) -> Result<TransportOptions, String> {
    if !spec.peer_cert_uri.as_deref().unwrap_or("").is_empty() {
        return Err(
            "spec.peerCertURI: not served: Traefik requires both serverName among the \
             certificate's DNS names and its first URI name to match (ignoring that URI's host \
             and case), while Envoy accepts a certificate when any one of its name matchers \
             matches; use serverName"
                .into(),
        );
    }
    if spec.disable_http2 == Some(false) {
        return Err(
            "spec.disableHTTP2: false asks for HTTP/2 to https backends where they offer it, \
             which Sluice does not negotiate (Envoy speaks HTTP/1.1 over TLS); remove the field \
             or set it to true"
                .into(),
        );
    }
    let mut options = TransportOptions::default();
    match spec.max_idle_conns_per_host {
        None => {}
        Some(n) if n < 0 => options.one_request_per_connection = true,
        Some(n) => {
            return Err(format!(
                "spec.maxIdleConnsPerHost: {n} is not served: Envoy does not cap idle \
                 connections (they close after the idle timeout, \
                 forwardingTimeouts.idleConnTimeout); a negative value (no connection reuse) is \
                 served"
            ));
        }
    }
    if let Some(t) = &spec.forwarding_timeouts {
        timeouts(t, &mut options)?;
    }
    Ok(options)
}

fn timeouts(t: &ForwardingTimeouts, options: &mut TransportOptions) -> Result<(), String> {
    let at = "spec.forwardingTimeouts";
    let ms = |field: &str, v: &Option<IntOrString>| -> Result<Option<u64>, String> {
        v.as_ref()
            .map(|v| duration::millis(v).map_err(|e| format!("{at}.{field}: {e}")))
            .transpose()
    };
    match ms("dialTimeout", &t.dial_timeout)? {
        Some(0) => {
            return Err(format!(
                "{at}.dialTimeout: 0 (no timeout) is not served: Envoy needs a positive connect \
                 timeout"
            ));
        }
        dial => options.connect_timeout_ms = dial,
    }
    options.idle_timeout_ms = ms("idleConnTimeout", &t.idle_conn_timeout)?;
    if let Some(v) = ms("responseHeaderTimeout", &t.response_header_timeout)?
        && v != 0
    {
        return Err(format!(
            "{at}.responseHeaderTimeout: not served: Envoy has no timeout that ends with the \
             response's headers (a route timeout runs until the whole response)"
        ));
    }
    if let Some(v) = ms("readIdleTimeout", &t.read_idle_timeout)?
        && v != 0
    {
        return Err(format!(
            "{at}.readIdleTimeout: not served: Traefik pings an HTTP/2 connection that received \
             nothing for that long, Envoy's keepalive pings at fixed intervals"
        ));
    }
    // Without readIdleTimeout no ping is sent, so pingTimeout changes nothing; still bounded.
    ms("pingTimeout", &t.ping_timeout)?;
    Ok(())
}
