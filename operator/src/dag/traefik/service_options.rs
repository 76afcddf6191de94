//! Options of a Traefik service that change its cluster or its route's forwarding:
//! `passHostHeader: false` (the backend's `ip:port` as Host), `sticky.cookie` (a cookie that
//! pins a client to one server) and `healthCheck` (Envoy active health checks). Every value is
//! checked and bounded here, so that none can make Envoy refuse the configuration: a bad one
//! makes its route invalid, naming the field.

use std::collections::BTreeMap;

use crate::api::traefik::routes as tr;
use crate::dag::checks;
use crate::dag::model::traefik_options::{
    ActiveHealthCheck, EndpointVariant, RouteServiceOptions, StickyCookie,
};
use crate::dag::model::{Cluster, LbPolicy, Upstream, UpstreamProtocol};
use crate::traefik::duration;

/// Shortest health-check interval (Traefik's documented example is 100 ms).
pub const MIN_INTERVAL_MS: u64 = 100;
/// Longest health-check interval or timeout.
pub const MAX_INTERVAL_MS: u64 = 24 * 3600 * 1000;
/// How many headers a health check may send.
pub const MAX_HEALTH_HEADERS: usize = 32;
/// Longest cookie name, path or domain.
pub const MAX_COOKIE_FIELD: usize = 256;
/// Longest cookie `Max-Age`, in seconds (Go's `int` on 32-bit systems).
pub const MAX_COOKIE_AGE: u64 = i32::MAX as u64;

/// Methods Envoy's health checker sends (its `RequestMethod`, without CONNECT).
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
];

/// What a service's options change on its cluster, checked.
#[derive(Debug, Default)]
pub(super) struct ClusterOptions {
    pub variant: EndpointVariant,
    pub health: Option<ActiveHealthCheck>,
    pub sticky: Option<StickyCookie>,
}

/// Checks the options of the service `s` (Service `svc_key`, port `port`, at `context`) whose
/// cluster speaks `protocol` to `upstream`.
pub(super) fn cluster_options(
    s: &tr::Service,
    svc_key: &str,
    port: u16,
    upstream: &Upstream,
    protocol: UpstreamProtocol,
    context: &str,
) -> Result<ClusterOptions, String> {
    let dns = matches!(upstream, Upstream::Dns { .. });
    let mut out = ClusterOptions::default();
    if s.pass_host_header == Some(false) {
        if dns {
            return Err(format!(
                "{context}.passHostHeader: false is not served for an ExternalName Service: \
                 Traefik sends the name with the port as Host, Envoy would send it without"
            ));
        }
        out.variant.address_host = true;
    }
    if let Some(sticky) = &s.sticky {
        if s.strategy.as_deref() == Some("p2c") {
            return Err(format!(
                "{context}.sticky: not served with strategy p2c: Envoy pins clients by hashing \
                 the cookie, which replaces the balancing strategy"
            ));
        }
        // Traefik's name for a route's Service: `namespace-name-port`.
        let service = format!("{}-{port}", svc_key.replace('/', "-"));
        out.sticky =
            Some(sticky_cookie(sticky, &service).map_err(|e| format!("{context}.sticky.{e}"))?);
    }
    if let Some(hc) = &s.health_check {
        let (health, hc_port) =
            health_check(hc, protocol).map_err(|e| format!("{context}.healthCheck.{e}"))?;
        out.variant.health_port = hc_port;
        // Traefik's checks carry the server's address as Host unless `hostname` is set.
        out.variant.health_host = health.host.is_empty();
        out.health = Some(health);
    }
    Ok(out)
}

/// The sticky cookie of `service` (Traefik's name for it, from which an unset cookie name is
/// derived), checked; the error names the field under `sticky`.
pub(super) fn sticky_cookie(s: &tr::Sticky, service: &str) -> Result<StickyCookie, String> {
    let Some(c) = &s.cookie else {
        return Err("cookie: required (Traefik pins clients with a cookie only)".into());
    };
    let name = match c.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => {
            if n.len() > MAX_COOKIE_FIELD || !n.bytes().all(is_token) {
                return Err(format!(
                    "cookie.name: {:?} is not a cookie name (letters, digits and \
                     !#$%&'*+-.^_`|~, at most {MAX_COOKIE_FIELD} bytes)",
                    truncated(n)
                ));
            }
            n.to_owned()
        }
        None => default_cookie_name(service),
    };
    let path = match c.path.as_deref().filter(|p| !p.is_empty()) {
        None => "/".to_owned(),
        Some(p) => {
            checks::path(p).map_err(|e| format!("cookie.path: {e}"))?;
            if p.len() > MAX_COOKIE_FIELD || p.contains(';') {
                return Err(format!(
                    "cookie.path: {:?} must be at most {MAX_COOKIE_FIELD} bytes without \";\"",
                    truncated(p)
                ));
            }
            p.to_owned()
        }
    };
    let max_age_seconds = match c.max_age {
        None => 0,
        Some(a) if a < 0 => {
            return Err(format!(
                "cookie.maxAge: {a} is negative: Traefik then sends a cookie that expires at \
                 once, which pins nothing; use 0 for a session cookie"
            ));
        }
        Some(a) => {
            let a = a.unsigned_abs();
            if a > MAX_COOKIE_AGE {
                return Err(format!(
                    "cookie.maxAge: {a} is more than {MAX_COOKIE_AGE} seconds"
                ));
            }
            a
        }
    };
    let mut attributes = Vec::new();
    if c.secure == Some(true) {
        attributes.push(("Secure".to_owned(), String::new()));
    }
    match c.same_site.as_deref() {
        None | Some("") => {}
        Some("none") => attributes.push(("SameSite".to_owned(), "None".to_owned())),
        Some("lax") => attributes.push(("SameSite".to_owned(), "Lax".to_owned())),
        Some("strict") => attributes.push(("SameSite".to_owned(), "Strict".to_owned())),
        Some(other) => {
            return Err(format!(
                "cookie.sameSite: {:?} must be none, lax or strict",
                truncated(other)
            ));
        }
    }
    if let Some(domain) = c.domain.as_deref().filter(|d| !d.is_empty()) {
        let ok = domain.len() <= MAX_COOKIE_FIELD
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(format!(
                "cookie.domain: {:?} must be a DNS name (letters, digits, \".\" and \"-\")",
                truncated(domain)
            ));
        }
        attributes.push(("Domain".to_owned(), domain.to_owned()));
    }
    Ok(StickyCookie {
        name,
        path,
        max_age_seconds,
        attributes,
    })
}

/// The `Set-Cookie` value that names `value` in `c`, its attributes in the order Go writes
/// them (`Path`, `Domain`, `Max-Age`, `HttpOnly`, `Secure`, `SameSite`). Every part is checked
/// by [`sticky_cookie`] (tokens, a path without `;` or controls, a DNS domain), so the header is
/// one cookie and nothing else.
pub(super) fn set_cookie_header(c: &StickyCookie, value: &str, http_only: bool) -> String {
    let attribute = |name: &str| {
        c.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut out = format!("{}={value}; Path={}", c.name, c.path);
    if let Some(domain) = attribute("Domain") {
        out.push_str(&format!("; Domain={domain}"));
    }
    if c.max_age_seconds > 0 {
        out.push_str(&format!("; Max-Age={}", c.max_age_seconds));
    }
    if http_only {
        out.push_str("; HttpOnly");
    }
    if attribute("Secure").is_some() {
        out.push_str("; Secure");
    }
    if let Some(same_site) = attribute("SameSite") {
        out.push_str(&format!("; SameSite={same_site}"));
    }
    out
}

/// Traefik's default cookie name: `_` and five hex digits of a SHA-1 of its service's name
/// (`namespace-name-port` for a route's Service, `namespace-name@kubernetescrd` for a
/// TraefikService).
fn default_cookie_name(service: &str) -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(format!("_TRAEFIK_BACKEND_{service}").as_bytes());
    let hex: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    format!("_{}", &hex[..5])
}

/// A health check, and the port it goes to when not the server's.
fn health_check(
    hc: &tr::ServerHealthCheck,
    protocol: UpstreamProtocol,
) -> Result<(ActiveHealthCheck, Option<u16>), String> {
    match hc.mode.as_deref() {
        None | Some("" | "http") => {}
        Some(other) => {
            return Err(format!(
                "mode: {:?} is not served (Sluice serves http)",
                truncated(other)
            ));
        }
    }
    let own_scheme = match protocol {
        UpstreamProtocol::Tls | UpstreamProtocol::H2 => "https",
        UpstreamProtocol::Http1 => "http",
        UpstreamProtocol::H2c => "h2c",
    };
    if let Some(scheme) = hc.scheme.as_deref().filter(|s| !s.is_empty())
        && scheme != own_scheme
    {
        return Err(format!(
            "scheme: {:?} differs from the service's scheme {own_scheme}: Envoy checks a server \
             over the connection settings it forwards with",
            truncated(scheme)
        ));
    }
    let path = hc
        .path
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or("path: required")?;
    checks::path(path).map_err(|e| format!("path: {e}"))?;
    let method = match hc.method.as_deref().filter(|m| !m.is_empty()) {
        None => "GET".to_owned(),
        Some(m) => {
            let upper = m.to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return Err(format!(
                    "method: {:?} is not one Envoy's health checker sends ({})",
                    truncated(m),
                    METHODS.join(", ")
                ));
            }
            upper
        }
    };
    let expected_statuses = match hc.status {
        None | Some(0) => (200, 400),
        Some(s) if (100..=599).contains(&s) => {
            let s = u16::try_from(s).map_err(|_| format!("status: {s} is not an HTTP status"))?;
            (s, s + 1)
        }
        Some(s) => return Err(format!("status: {s} is not an HTTP status (100-599)")),
    };
    let port = match hc.port {
        None | Some(0) => None,
        Some(p) => Some(
            u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port: {p} is not in the range 1-65535"))?,
        ),
    };
    let interval_ms = interval("interval", hc.interval.as_ref(), 30_000, MIN_INTERVAL_MS)?;
    let unhealthy_interval_ms = interval(
        "unhealthyInterval",
        hc.unhealthy_interval.as_ref(),
        interval_ms,
        MIN_INTERVAL_MS,
    )?;
    let timeout_ms = interval("timeout", hc.timeout.as_ref(), 5_000, 1)?;
    let host = match hc.hostname.as_deref().filter(|h| !h.is_empty()) {
        None => String::new(),
        Some(h) => {
            let ok = h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
            if !ok {
                return Err(format!(
                    "hostname: {:?} must be a host name (letters, digits, \".\", \"-\", an \
                     optional port), at most 255 bytes",
                    truncated(h)
                ));
            }
            h.to_ascii_lowercase()
        }
    };
    if hc.headers.len() > MAX_HEALTH_HEADERS {
        return Err(format!("headers: more than {MAX_HEALTH_HEADERS}"));
    }
    let mut headers = BTreeMap::new();
    for (name, value) in &hc.headers {
        let lower = name.to_ascii_lowercase();
        if name.is_empty()
            || name.len() > crate::traefik::MAX_NAME_LEN
            || !name.bytes().all(is_token)
        {
            return Err(format!(
                "headers: {:?} is not a header name",
                truncated(name)
            ));
        }
        if lower == "host" {
            return Err("headers: Host cannot be set here; use hostname".into());
        }
        checks::header_value(value).map_err(|e| format!("headers[{name}]: {e}"))?;
        if headers.insert(lower, value.clone()).is_some() {
            return Err(format!("headers: {name:?} is given twice"));
        }
    }
    Ok((
        ActiveHealthCheck {
            path: path.to_owned(),
            host,
            method,
            interval_ms,
            unhealthy_interval_ms,
            timeout_ms,
            expected_statuses,
            headers: headers.into_iter().collect(),
        },
        port,
    ))
}

fn interval(
    field: &str,
    v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    default: u64,
    min: u64,
) -> Result<u64, String> {
    let Some(v) = v else {
        return Ok(default);
    };
    let ms = duration::millis(v).map_err(|e| format!("{field}: {e}"))?;
    if !(min..=MAX_INTERVAL_MS).contains(&ms) {
        return Err(format!(
            "{field}: must be between {min} ms and 24h (got {ms} ms)"
        ));
    }
    Ok(ms)
}

/// The options of `route`, one Envoy route of services that resolved to `backend`.
pub(super) fn for_route(
    backend: &super::services::Backend,
    route: &super::services::BackendRoute,
) -> Result<Option<Box<RouteServiceOptions>>, String> {
    let live: Vec<&str> = route
        .weighted
        .iter()
        .filter(|w| w.weight > 0)
        .map(|w| w.cluster.as_str())
        .collect();
    let mirrors: Vec<&str> = route.mirrors.iter().map(|m| m.cluster.as_str()).collect();
    route_options(&backend.clusters, &backend.sticky, &live, &mirrors)
}

/// The options of a route whose services resolved to `clusters` (their options in `options`,
/// by cluster name), sending to those of `live` (weight above 0) and mirroring to `mirrors`.
fn route_options(
    clusters: &[Cluster],
    options: &BTreeMap<String, Option<StickyCookie>>,
    live: &[&str],
    mirrors: &[&str],
) -> Result<Option<Box<RouteServiceOptions>>, String> {
    let find = |name: &str| clusters.iter().find(|c| c.name == name);
    let address_host = |c: &Cluster| match &c.upstream {
        Upstream::Eds { service_name } => EndpointVariant::of(service_name).address_host,
        Upstream::Dns { .. } => false,
    };
    let mut out = RouteServiceOptions::default();
    for name in mirrors {
        if find(name).is_some_and(address_host) {
            return Err(
                "passHostHeader: false is not served on a mirror (Envoy sends mirrored requests \
                 with the original Host)"
                    .into(),
            );
        }
    }
    let live: Vec<&Cluster> = live.iter().filter_map(|n| find(n)).collect();
    out.address_host = live.iter().any(|c| address_host(c));
    if out.address_host {
        if !mirrors.is_empty() {
            return Err(
                "passHostHeader: false is not served on a route that mirrors requests (Envoy \
                 would send the mirrors the backend's address as Host)"
                    .into(),
            );
        }
        if live
            .iter()
            .any(|c| matches!(c.upstream, Upstream::Dns { .. }))
        {
            return Err(
                "passHostHeader: false next to an ExternalName Service is not served: Envoy \
                 would send the ExternalName as Host to it"
                    .into(),
            );
        }
    }
    let stickies: Vec<Option<&StickyCookie>> = live
        .iter()
        .map(|c| options.get(&c.name).and_then(Option::as_ref))
        .collect();
    if let Some(first) = stickies.first().copied().flatten() {
        if stickies.iter().any(|s| *s != Some(first)) {
            return Err(
                "sticky: every service a route splits over must have the same sticky cookie: \
                 Envoy hashes one cookie per route"
                    .into(),
            );
        }
        out.sticky = Some(first.clone());
    } else if stickies.iter().any(Option::is_some) {
        return Err(
            "sticky: every service a route splits over must have the same sticky cookie: \
             Envoy hashes one cookie per route"
                .into(),
        );
    }
    if out == RouteServiceOptions::default() {
        return Ok(None);
    }
    Ok(Some(Box::new(out)))
}

/// The balancing of a cluster with a sticky cookie: a hash ring on the cookie.
pub(super) fn sticky_policy(sticky: bool, policy: LbPolicy) -> LbPolicy {
    if sticky { LbPolicy::RingHash } else { policy }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// At most 64 bytes of a hostile value, for a message.
fn truncated(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
