//! Traefik's `forwardAuth` as Envoy's HTTP `ext_authz`: the listener carries one `ext_authz`
//! filter, disabled, and each route listing a `forwardAuth` enables it with its own auth
//! service (`check_settings.service_override`), so a Middleware costs one route setting, never a
//! filter or a listener change.
//!
//! The auth server must be a Service of the cluster, named by the address's host as a pod's DNS
//! would resolve it, but against the Middleware's namespace:
//! `name`, `name.namespace`, `name.namespace.svc` or `name.namespace.svc.cluster.local`. Another
//! namespace needs the Gateway's `allowCrossNamespace`, and an ExternalName Service its
//! `enableExternalNameServices` (the only way to an auth server outside the cluster): an IP
//! literal or any other host is refused, since it could reach whatever the Gateway's Envoy can.
//!
//! What Envoy cannot do as Traefik does is refused, naming the field; what differs in every case
//! (the method and the Host header of the auth request, 2xx other than 200) is in the README.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::filters::Filters;
use super::policy::Policies;
use crate::api::traefik::routes as tr;
use crate::dag::build::Builder;
use crate::dag::checks;
use crate::dag::ext_authz::ExtAuthzPolicy;
use crate::dag::model::{Cluster, Secret, SecretKind, UpstreamProtocol, UpstreamValidation};
use crate::dag::upstream::policy_hash;
use crate::snapshot::ObjKey;
use crate::traefik::middleware::ForwardAuth;

/// Largest request body a `forwardAuth` may send to its auth server: Envoy holds it in memory,
/// shared with every other tenant's traffic (as `buffering`'s bound).
pub(super) const MAX_AUTH_BODY_BYTES: u32 = super::policy::MAX_BUFFER_BYTES;

/// How many `authResponseHeaders` one Middleware may list.
pub(super) const MAX_RESPONSE_HEADERS: usize = 64;

/// Headers Envoy must never copy from an auth response onto the request.
const FRAMING: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
];
/// Headers Envoy's router acts on (retries, timeouts, tracing, statistics): an auth server
/// setting them would steer the shared proxy's handling of the request. Any `x-envoy-` name is
/// refused in `authResponseHeaders`; a regex is refused if it matches one of these.
const ENVOY_CONTROL: &[&str] = &[
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-stream-duration-ms",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-original-path",
    "x-envoy-ip-tags",
];
const WHY_ENVOY: &str = "steer how the shared Envoy retries, times out or counts the request";

const WHY_FRAMING: &str = "change where the request goes or how its body is framed (Envoy \
                           copies it; Go's client does not frame by it)";

/// A route's `forwardAuth` waiting for its auth Service's cluster (see
/// [`Builder::traefik_forward_auth`]).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PendingAuth {
    /// `{field}: Middleware {key} (forwardAuth)`, to prefix errors with.
    pub label: String,
    pub middleware: ObjKey,
    pub service: String,
    /// `None`: the Middleware's namespace.
    pub namespace: Option<String>,
    pub port: u16,
    pub tls: Option<AuthTls>,
}

/// An https auth server's TLS, its Secrets in the Middleware's namespace.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct AuthTls {
    /// The CA bundle the auth server's certificate must chain to; `None`: not checked
    /// (`tls.insecureSkipVerify`, where the Gateway allows it).
    pub ca_secret: Option<String>,
    pub cert_secret: Option<String>,
    /// The address's host: sent as SNI and, when verified, checked in the certificate.
    pub server_name: String,
}

/// The policy of a `forwardAuth` (its cluster still empty) and the Service it names; errors
/// name the field under `spec.forwardAuth`. `allow_insecure`: the Gateway's
/// `allowInsecureSkipVerify`. Pure: reads nothing but its arguments.
pub(super) fn policy(
    key: &ObjKey,
    label: String,
    f: &ForwardAuth,
    allow_insecure: bool,
) -> Result<(ExtAuthzPolicy, PendingAuth), String> {
    const AT: &str = "spec.forwardAuth";
    let tls = auth_tls(f, allow_insecure)?;
    // `trustForwardHeader: true` is served as `false`: see [`super::forward_auth_more`].
    if !f.auth_request_headers.is_empty() {
        return Err(format!(
            "{AT}.authRequestHeaders: {}",
            super::forward_auth_more::WHY_NO_REQUEST_HEADERS
        ));
    }
    if f.auth_response_headers.len() > MAX_RESPONSE_HEADERS {
        return Err(format!(
            "{AT}.authResponseHeaders: lists {} headers; at most {MAX_RESPONSE_HEADERS} are \
             served",
            f.auth_response_headers.len()
        ));
    }
    if let Some(h) = f
        .auth_response_headers
        .iter()
        .find(|h| FRAMING.contains(&h.as_str()))
    {
        return Err(format!(
            "{AT}.authResponseHeaders: {h:?} is not served: copied from the auth response onto \
             the request, it would {WHY_FRAMING}"
        ));
    }
    if let Some(h) = f
        .auth_response_headers
        .iter()
        .find(|h| h.to_ascii_lowercase().starts_with("x-envoy-"))
    {
        return Err(format!(
            "{AT}.authResponseHeaders: {h:?} is not served: copied from the auth response onto \
             the request, it would {WHY_ENVOY}"
        ));
    }
    if f.path.contains('#') {
        return Err(format!(
            "{AT}.address: the path {:?} holds a fragment ('#'), which is never sent",
            f.path
        ));
    }
    let body_limit = match (f.forward_body, f.max_body_size) {
        (false, _) => None,
        (true, Some(n)) if n > 0 && n <= u64::from(MAX_AUTH_BODY_BYTES) => u32::try_from(n).ok(),
        (true, _) => {
            return Err(format!(
                "{AT}.maxBodySize: with forwardBody, set 1 to {MAX_AUTH_BODY_BYTES} bytes: \
                 Envoy holds the body in memory shared with every route (Traefik's default is \
                 no limit)"
            ));
        }
    };
    let (service, namespace) = service_of(&f.host).map_err(|e| format!("{AT}.address: {e}"))?;
    let upstream_headers_regex = match &f.auth_response_headers_regex {
        None => None,
        Some(p) => {
            // Traefik searches canonical names (X-Auth-User); Envoy's names are lower case.
            let regex = format!("(?i:{})", p.envoy_full_match());
            crate::traefik::regex::parse(&regex)
                .map_err(|e| format!("{AT}.authResponseHeadersRegex: {e}"))?;
            // Header names are ASCII: compiled as byte classes, within a small limit (review
            // 5 R5.9: compiled per route using the Middleware, on every build of the root).
            let whole = crate::traefik::regex::ascii_matcher(&format!("^(?:{regex})$"))
                .map_err(|e| format!("{AT}.authResponseHeadersRegex: {e}"))?;
            if let Some(h) = FRAMING.iter().find(|h| whole.is_match(h.as_bytes())) {
                return Err(format!(
                    "{AT}.authResponseHeadersRegex: matches {h:?}: copied from the auth \
                     response onto the request, it would {WHY_FRAMING}; narrow the regex"
                ));
            }
            if let Some(h) = ENVOY_CONTROL.iter().find(|h| whole.is_match(h.as_bytes())) {
                return Err(format!(
                    "{AT}.authResponseHeadersRegex: matches {h:?}: copied from the auth \
                     response onto the request, it would {WHY_ENVOY}; narrow the regex"
                ));
            }
            Some(regex)
        }
    };
    let mut upstream_headers = f.auth_response_headers.clone();
    upstream_headers.sort();
    upstream_headers.dedup();
    let ns = namespace.as_deref().unwrap_or(&key.namespace);
    let policy = ExtAuthzPolicy {
        source: key.to_string(),
        cluster: String::new(),
        uri: format!(
            "{}://{service}.{ns}:{}",
            if tls.is_some() { "https" } else { "http" },
            f.port
        ),
        path: f.path.clone(),
        upstream_headers,
        upstream_headers_regex,
        body_limit,
    };
    let pending = PendingAuth {
        label,
        middleware: key.clone(),
        service,
        namespace,
        port: f.port,
        tls,
    };
    Ok((policy, pending))
}

/// The TLS of an `https://` address: the auth server's certificate is checked against the CA
/// bundle of `tls.caSecret` and the address's host (Sluice trusts no system CAs), and
/// `tls.certSecret` is the client certificate. With `tls.insecureSkipVerify`, where the Gateway
/// allows it (`allow_insecure`), the certificate is not checked and `caSecret` not read, as Go
/// does; the address's host is still sent as SNI, as Go's client sends it.
fn auth_tls(f: &ForwardAuth, allow_insecure: bool) -> Result<Option<AuthTls>, String> {
    const AT: &str = "spec.forwardAuth.tls";
    if f.insecure_skip_verify && !allow_insecure {
        return Err(format!(
            "{AT}.insecureSkipVerify: not served: Sluice verifies the auth server's certificate \
             unless the Gateway sets spec.allowInsecureSkipVerify"
        ));
    }
    let name = |field: &str, v: &Option<String>| -> Result<Option<String>, String> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(n) if n.contains('/') || n.contains('@') => Err(format!(
                "{AT}.{field}: {n:?} must name a Secret of the Middleware's namespace"
            )),
            Some(n) => Ok(Some(n.to_owned())),
        }
    };
    let ca_secret = name("caSecret", &f.ca_secret)?;
    let cert_secret = name("certSecret", &f.cert_secret)?;
    if !f.https {
        if ca_secret.is_some() || cert_secret.is_some() || f.insecure_skip_verify {
            return Err(format!(
                "{AT}: applies to an https:// address only (this one is http://)"
            ));
        }
        return Ok(None);
    }
    let ca_secret = match ca_secret {
        // Not read, as Go's client with InsecureSkipVerify never reads its root CAs.
        _ if f.insecure_skip_verify => None,
        Some(ca) => Some(ca),
        None => {
            return Err(format!(
                "{AT}.caSecret: required with an https:// address: Sluice does not trust the \
                 system CAs for auth servers"
            ));
        }
    };
    checks::subject_name(&f.host)
        .map_err(|e| format!("spec.forwardAuth.address: host {:?} {e}", f.host))?;
    Ok(Some(AuthTls {
        ca_secret,
        cert_secret,
        server_name: f.host.clone(),
    }))
}

/// The Service (and its namespace, when named) of an address's lower-case host.
fn service_of(host: &str) -> Result<(String, Option<String>), String> {
    const FORMS: &str = "the host must name a Service of the cluster (name, name.namespace, \
                         name.namespace.svc or name.namespace.svc.cluster.local; an \
                         ExternalName Service reaches a server outside the cluster when the \
                         Gateway sets enableExternalNameServices)";
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("{host:?} is an IP address: {FORMS}"));
    }
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [name] => Ok(((*name).to_owned(), None)),
        [name, ns] | [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => {
            Ok(((*name).to_owned(), Some((*ns).to_owned())))
        }
        _ => Err(format!("{host:?}: {FORMS}")),
    }
}

/// Refuses a `forwardAuth` after a middleware that changed the request: Envoy asks the auth
/// server before any route edit is made, so it would see the request as the client sent it
/// where Traefik shows it the changed one.
pub(super) fn check_position(f: &Filters) -> Result<(), String> {
    if f.path_rewrite.is_some()
        || f.host_rewrite.is_some()
        || !f.request_set.is_empty()
        || !f.request_remove.is_empty()
    {
        return Err(
            "a forwardAuth after a middleware that rewrites the path or edits request headers \
             is not served: Envoy asks the auth server about the request as the client sent it, \
             Traefik about the edited one; list forwardAuth first"
                .into(),
        );
    }
    Ok(())
}

impl Policies {
    /// Adds the `forwardAuth` Middleware `key` (`label` names it in errors).
    pub(super) fn forward_auth(
        &mut self,
        key: &ObjKey,
        label: String,
        f: &ForwardAuth,
        allow_insecure: bool,
    ) -> Result<(), String> {
        self.stage(crate::dag::policy::Stage::ExtAuthz, key)?;
        let (policy, pending) = policy(key, label, f, allow_insecure)?;
        self.policy.ext_authz = Some(Box::new(policy));
        self.forward_auth = Some(pending);
        Ok(())
    }
}

impl Builder<'_> {
    /// Resolves the auth Service of the route's `forwardAuth`, if any, into a cluster (pushed on
    /// `clusters`), and names it in the route's policies.
    pub(super) fn traefik_forward_auth(
        &mut self,
        policies: &mut Policies,
        clusters: &mut Vec<Cluster>,
        secrets: &mut Vec<Secret>,
    ) -> Result<(), String> {
        let Some(p) = policies.forward_auth.take() else {
            return Ok(());
        };
        let service = tr::Service {
            name: p.service.clone(),
            namespace: p.namespace.clone(),
            port: Some(IntOrString::Int(i32::from(p.port))),
            scheme: Some("http".to_owned()),
            ..Default::default()
        };
        let context = format!("{}: spec.forwardAuth.address", p.label);
        let (mut cluster, _) =
            self.traefik_cluster(&p.middleware.namespace, &service, &context, secrets)?;
        if let Some(tls) = &p.tls {
            self.auth_cluster_tls(&p.middleware, tls, &mut cluster, secrets)
                .map_err(|e| format!("{}: spec.forwardAuth.tls.{e}", p.label))?;
        }
        for policy in [Some(&mut policies.policy), policies.at_redirect.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(e) = policy.ext_authz.as_mut() {
                e.cluster = cluster.name.clone();
            }
        }
        clusters.push(cluster);
        Ok(())
    }

    /// Makes `cluster` speak TLS to the auth server: its certificate checked against the CA
    /// bundle of `tls.ca_secret` and the server name, `tls.cert_secret` presented. Errors start
    /// with the field (`caSecret`, `certSecret`).
    fn auth_cluster_tls(
        &mut self,
        middleware: &ObjKey,
        tls: &AuthTls,
        cluster: &mut Cluster,
        secrets: &mut Vec<Secret>,
    ) -> Result<(), String> {
        let mut options = cluster.transport.take().map(|t| *t).unwrap_or_default();
        cluster.validation = match &tls.ca_secret {
            Some(ca) => Some(self.auth_ca(middleware, ca, &tls.server_name, secrets)?),
            None => {
                // `insecureSkipVerify`: any certificate, the address's host sent as SNI.
                options.unverified_sni = Some(tls.server_name.clone());
                None
            }
        };
        if let Some(name) = &tls.cert_secret {
            let key = ObjKey::new(middleware.namespace.clone(), name.clone());
            let (cert_chain, private_key) = self
                .tls_secret_pem(&key)
                .map_err(|e| format!("certSecret: {e}"))?;
            options.client_certificate = Some(key.to_string());
            secrets.push(Secret {
                name: key.to_string(),
                kind: SecretKind::Tls {
                    cert_chain,
                    private_key,
                },
            });
        }
        cluster.protocol = UpstreamProtocol::Tls;
        cluster.transport = (!options.is_empty()).then(|| Box::new(options));
        let hash =
            policy_hash(cluster).map_err(|e| format!("caSecret: cannot name the cluster: {e}"))?;
        cluster.name = format!("{}/{}/{hash}", cluster.service, cluster.port);
        Ok(())
    }

    /// The check of the auth server's certificate: the CA bundle of the Secret `ca` of the
    /// Middleware's namespace (recorded in `secrets`) and `server_name`.
    fn auth_ca(
        &mut self,
        middleware: &ObjKey,
        ca: &str,
        server_name: &str,
        secrets: &mut Vec<Secret>,
    ) -> Result<UpstreamValidation, String> {
        let ca_key = ObjKey::new(middleware.namespace.clone(), ca);
        self.read(crate::dag::Dep::Secret(ca_key.clone()));
        let pem = CA_KEYS
            .iter()
            .find_map(|k| self.snap.secret_data(&ca_key, k))
            .ok_or_else(|| {
                format!("caSecret: Secret {ca_key} not found or without a tls.ca or ca.crt key")
            })?;
        checks::ca_bundle(pem).map_err(|e| format!("caSecret: Secret {ca_key}: {e}"))?;
        let pem = std::str::from_utf8(pem)
            .map_err(|_| format!("caSecret: Secret {ca_key} is not PEM text"))?;
        // Named apart from the other CA bundles (`namespace/secret/ca`, `traefik:<transport>/ca`).
        let ca_name = format!("traefik:{middleware}/forwardauth-ca");
        secrets.push(Secret {
            name: ca_name.clone(),
            kind: SecretKind::Ca {
                ca: format!("{}\n", pem.trim_end()),
            },
        });
        Ok(UpstreamValidation {
            ca_secret: ca_name,
            subject_name: server_name.to_owned(),
        })
    }
}

/// Keys of a Secret holding a CA bundle, in the order Traefik reads them.
const CA_KEYS: [&str; 2] = ["tls.ca", "ca.crt"];

#[cfg(test)]
#[path = "forward_auth_tests.rs"]
mod tests;
