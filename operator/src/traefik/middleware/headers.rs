//! The `headers` middleware: custom request and response headers, CORS, security headers.

use std::collections::BTreeMap;

use crate::api::traefik::middleware::Headers;
use crate::dag::checks;

use super::super::regex::{self, Pattern};

/// Headers Envoy will not let a route set or remove (pseudo-headers are not tokens anyway).
const RESERVED: &[&str] = &[
    "host",
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "keep-alive",
];

/// What the `headers` middleware does, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeadersModel {
    /// Lower-case name and value to set (replacing), sorted.
    pub request_set: Vec<(String, String)>,
    pub request_remove: Vec<String>,
    /// `customRequestHeaders.Host`: rewrites the authority.
    pub host_rewrite: Option<String>,
    pub response_set: Vec<(String, String)>,
    pub response_remove: Vec<String>,
    pub cors: Option<Cors>,
    /// Static security headers (Strict-Transport-Security, X-Frame-Options, ...), sorted.
    pub security: Vec<(String, String)>,
    /// Strict-Transport-Security also on plain HTTP (`forceSTSHeader`); else HTTPS only.
    pub sts_on_plain_http: bool,
    /// Lower-case hosts allowed (`allowedHosts`); empty means any.
    pub allowed_hosts: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cors {
    /// Exact origins; `*` for any.
    pub allow_origins: Vec<String>,
    pub allow_origin_regexes: Vec<Pattern>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_seconds: Option<u64>,
    pub add_vary_header: bool,
}

fn token(what: &str, v: &str) -> Result<String, String> {
    if v.len() > crate::traefik::MAX_NAME_LEN {
        return Err(format!(
            "{what} a header name is at most {} bytes long",
            crate::traefik::MAX_NAME_LEN
        ));
    }
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(format!("{what} {v:?} is not a header name"))
    }
}

fn custom(
    field: &str,
    map: &BTreeMap<String, String>,
    request: bool,
    m: &mut HeadersModel,
) -> Result<(), String> {
    for (k, v) in map {
        let name = token(&format!(".{field}:"), k)?;
        if request && name == "host" {
            if !v.is_empty() {
                checks::resolvable_host(v.strip_suffix('.').unwrap_or(v))
                    .map_err(|e| format!(".{field}.{k}: {e}"))?;
                m.host_rewrite = Some(v.to_ascii_lowercase());
            }
            continue;
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(format!(
                ".{field}.{k}: Envoy does not let routes change this header"
            ));
        }
        checks::header_value(v).map_err(|e| format!(".{field}.{k}: {e}"))?;
        let (set, remove) = if request {
            (&mut m.request_set, &mut m.request_remove)
        } else {
            (&mut m.response_set, &mut m.response_remove)
        };
        if v.is_empty() {
            remove.push(name);
        } else {
            set.push((name, v.clone()));
        }
    }
    Ok(())
}

pub(super) fn build(h: &Headers) -> Result<HeadersModel, String> {
    let mut m = HeadersModel::default();
    custom(
        "customRequestHeaders",
        &h.custom_request_headers,
        true,
        &mut m,
    )?;
    custom(
        "customResponseHeaders",
        &h.custom_response_headers,
        false,
        &mut m,
    )?;
    if !h.hosts_proxy_headers.is_empty() {
        return Err(".hostsProxyHeaders: not supported by Sluice".into());
    }
    if !h.ssl_proxy_headers.is_empty() {
        return Err(".sslProxyHeaders: not supported by Sluice".into());
    }
    if h.public_key.is_some() {
        return Err(".publicKey: HTTP public key pinning is obsolete; not supported".into());
    }
    let cors_set = h.access_control_allow_credentials.is_some()
        || !h.access_control_allow_headers.is_empty()
        || !h.access_control_allow_methods.is_empty()
        || !h.access_control_allow_origin_list.is_empty()
        || !h.access_control_allow_origin_list_regex.is_empty()
        || !h.access_control_expose_headers.is_empty()
        || h.access_control_max_age.is_some();
    if cors_set {
        m.cors = Some(cors(h)?);
    }
    let dev = h.is_development.unwrap_or(false);
    let mut sec: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: String, field: &str| -> Result<(), String> {
        checks::header_value(&value).map_err(|e| format!(".{field}: {e}"))?;
        sec.push((name.to_owned(), value));
        Ok(())
    };
    if let Some(secs) = h.sts_seconds.filter(|s| *s > 0 && !dev) {
        let mut v = format!("max-age={secs}");
        if h.sts_include_subdomains.unwrap_or(false) {
            v.push_str("; includeSubDomains");
        }
        if h.sts_preload.unwrap_or(false) {
            v.push_str("; preload");
        }
        add("strict-transport-security", v, "stsSeconds")?;
        m.sts_on_plain_http = h.force_sts_header.unwrap_or(false);
    } else if h.sts_seconds.is_some_and(|s| s < 0) {
        return Err(".stsSeconds: must not be negative".into());
    }
    match (&h.custom_frame_options_value, h.frame_deny.unwrap_or(false)) {
        (Some(v), _) if !v.is_empty() => {
            add("x-frame-options", v.clone(), "customFrameOptionsValue")?
        }
        (_, true) => add("x-frame-options", "DENY".into(), "frameDeny")?,
        _ => {}
    }
    if h.content_type_nosniff.unwrap_or(false) {
        add(
            "x-content-type-options",
            "nosniff".into(),
            "contentTypeNosniff",
        )?;
    }
    match (
        &h.custom_browser_xss_value,
        h.browser_xss_filter.unwrap_or(false),
    ) {
        (Some(v), _) if !v.is_empty() => {
            add("x-xss-protection", v.clone(), "customBrowserXSSValue")?
        }
        (_, true) => add(
            "x-xss-protection",
            "1; mode=block".into(),
            "browserXssFilter",
        )?,
        _ => {}
    }
    for (name, value, field) in [
        (
            "content-security-policy",
            &h.content_security_policy,
            "contentSecurityPolicy",
        ),
        (
            "content-security-policy-report-only",
            &h.content_security_policy_report_only,
            "contentSecurityPolicyReportOnly",
        ),
        ("referrer-policy", &h.referrer_policy, "referrerPolicy"),
        (
            "permissions-policy",
            &h.permissions_policy,
            "permissionsPolicy",
        ),
    ] {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            add(name, v.clone(), field)?;
        }
    }
    sec.sort();
    m.security = sec;
    if !dev {
        for (i, host) in h.allowed_hosts.iter().enumerate() {
            let lower = checks::dns_name(host).map_err(|e| format!(".allowedHosts[{i}]: {e}"))?;
            m.allowed_hosts.push(lower);
        }
    }
    m.request_set.sort();
    m.response_set.sort();
    Ok(m)
}

fn cors(h: &Headers) -> Result<Cors, String> {
    let mut c = Cors {
        allow_credentials: h.access_control_allow_credentials.unwrap_or(false),
        add_vary_header: h.add_vary_header.unwrap_or(false),
        ..Cors::default()
    };
    for (i, o) in h.access_control_allow_origin_list.iter().enumerate() {
        if o != "*" {
            origin(o).map_err(|e| format!(".accessControlAllowOriginList[{i}]: {e}"))?;
        }
        c.allow_origins.push(o.clone());
    }
    for (i, r) in h.access_control_allow_origin_list_regex.iter().enumerate() {
        c.allow_origin_regexes.push(
            regex::check(r).map_err(|e| format!(".accessControlAllowOriginListRegex[{i}]: {e}"))?,
        );
    }
    for (i, m) in h.access_control_allow_methods.iter().enumerate() {
        let t = token(&format!(".accessControlAllowMethods[{i}]: method"), m)?;
        c.allow_methods.push(t.to_ascii_uppercase());
    }
    for (field, list, out) in [
        (
            "accessControlAllowHeaders",
            &h.access_control_allow_headers,
            &mut c.allow_headers,
        ),
        (
            "accessControlExposeHeaders",
            &h.access_control_expose_headers,
            &mut c.expose_headers,
        ),
    ] {
        for (i, v) in list.iter().enumerate() {
            if v == "*" {
                out.push(v.clone());
            } else {
                out.push(token(&format!(".{field}[{i}]:"), v)?);
            }
        }
    }
    c.max_age_seconds = match h.access_control_max_age {
        None => None,
        Some(s) if s >= 0 => Some(s.unsigned_abs()),
        Some(_) => return Err(".accessControlMaxAge: must not be negative".into()),
    };
    Ok(c)
}

/// `scheme://host[:port]` without a path.
fn origin(o: &str) -> Result<(), String> {
    let Some((scheme, rest)) = o.split_once("://") else {
        return Err(format!("{o:?} is not an origin (scheme://host[:port])"));
    };
    if !scheme
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        || scheme.is_empty()
    {
        return Err(format!("{o:?}: invalid scheme"));
    }
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => rest,
    };
    if host.contains('/') {
        return Err(format!("{o:?}: an origin has no path"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    checks::resolvable_host(host).map_err(|e| format!("{o:?}: {e}"))
}
