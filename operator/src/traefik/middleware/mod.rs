//! Traefik Middlewares as a typed, checked model: one [`Middleware`] per object, or the reason
//! it cannot be served, naming the field. Values are checked like `dag::checks` checks Contour's
//! (header names and values, paths, regexes, CIDRs, durations), so that a model that builds can
//! be given to Envoy without Envoy refusing it.
//!
//! [`ENVOY_MAPPING`] records, for each kind, the Envoy construct it maps to;
//! `dag::traefik` serves the kinds the README's Middlewares table lists as served.

mod auth;
mod headers;
mod traffic;

pub use auth::{BasicAuth, ForwardAuth, HashFormat, IpAllowList, IpStrategy, basic_auth_users};
pub use headers::{Cors, HeadersModel};
pub use traffic::{Buffering, Compress, RateLimit, RateSource, Retry};

use crate::api::traefik::MiddlewareSpec;
use crate::api::traefik::routes::ObjectRef;
use crate::dag::checks;

use super::regex::{self, Pattern};

/// The Envoy construct each supported kind maps to (for the README and the wiring).
pub const ENVOY_MAPPING: &[(&str, &str)] = &[
    (
        "stripPrefix",
        "route prefix_rewrite (or regex_rewrite) + X-Forwarded-Prefix request header",
    ),
    (
        "stripPrefixRegex",
        "route regex_rewrite `^(?:re)` → `/` + X-Forwarded-Prefix",
    ),
    ("addPrefix", "route regex_rewrite `^` → prefix"),
    (
        "replacePath",
        "route regex_rewrite `^.*$` → path + X-Replaced-Path request header",
    ),
    (
        "replacePathRegex",
        "route regex_rewrite with `$1` → `\\1` + X-Replaced-Path",
    ),
    (
        "redirectScheme",
        "route redirect (scheme_redirect, port_redirect), GET and other methods split",
    ),
    (
        "redirectRegex",
        "route redirect only when the regex decomposes into host/path parts; else refused",
    ),
    (
        "headers",
        "request/response_headers_to_add and _to_remove, host_rewrite_literal, the cors filter, static security response headers",
    ),
    (
        "basicAuth",
        "basic_auth filter per route ({SHA} hashes only)",
    ),
    (
        "ipAllowList",
        "rbac filter per route (direct_remote_ip, or remote_ip with xff_num_trusted_hops)",
    ),
    (
        "rateLimit",
        "local_ratelimit filter per route (max_tokens=burst, tokens_per_fill=average, fill_interval=period)",
    ),
    (
        "retry",
        "route retry_policy (num_retries=attempts-1, connect-failure,refused-stream,reset, back-off)",
    ),
    (
        "compress",
        "compressor filter per encoding (gzip, brotli, zstd), min_content_length",
    ),
    ("buffering", "buffer filter (max_request_bytes → 413)"),
    (
        "chain",
        "flattened into the route's ordered middleware list",
    ),
    (
        "forwardAuth",
        "the listener's one ext_authz filter (disabled), enabled per route with an http_service override (original method forwarded)",
    ),
];

/// One Middleware, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Middleware {
    StripPrefix {
        prefixes: Vec<String>,
    },
    StripPrefixRegex {
        regexes: Vec<Pattern>,
    },
    AddPrefix {
        prefix: String,
    },
    ReplacePath {
        path: String,
    },
    /// `replacement` already in RE2 rewrite syntax (`\1`).
    ReplacePathRegex {
        regex: Pattern,
        replacement: String,
    },
    RedirectScheme {
        https: bool,
        port: Option<u16>,
        permanent: bool,
    },
    RedirectRegex {
        regex: Pattern,
        replacement: String,
        permanent: bool,
    },
    Headers(Box<HeadersModel>),
    BasicAuth(BasicAuth),
    IpAllowList(IpAllowList),
    RateLimit(RateLimit),
    Retry(Retry),
    Compress(Compress),
    Buffering(Buffering),
    /// References resolved against the chain's namespace by the caller.
    Chain(Vec<ObjectRef>),
    ForwardAuth(Box<ForwardAuth>),
}

/// Builds the model of one Middleware's spec. `ignored` are the paths of fields the types did
/// not know (from `api::traefik::decode`): any under `spec` makes the Middleware invalid, since
/// Sluice would otherwise serve it without that field's effect.
pub fn build(spec: &MiddlewareSpec, ignored: &[String]) -> Result<Middleware, String> {
    if let Some(field) = ignored.iter().find(|f| f.starts_with("spec.")) {
        return Err(format!("{field}: field not supported by Sluice"));
    }
    let mut kinds: Vec<&str> = Vec::new();
    macro_rules! set {
        ($($field:ident => $name:literal),*) => {
            $(if spec.$field.is_some() { kinds.push($name); })*
        };
    }
    set!(strip_prefix => "stripPrefix", strip_prefix_regex => "stripPrefixRegex",
        add_prefix => "addPrefix", replace_path => "replacePath",
        replace_path_regex => "replacePathRegex", redirect_scheme => "redirectScheme",
        redirect_regex => "redirectRegex", headers => "headers", basic_auth => "basicAuth",
        ip_allow_list => "ipAllowList", ip_white_list => "ipWhiteList", rate_limit => "rateLimit",
        retry => "retry", compress => "compress", buffering => "buffering", chain => "chain",
        forward_auth => "forwardAuth");
    if let Some(other) = spec.other.keys().next() {
        return Err(format!(
            "spec.{other}: middleware kind {other:?} is not supported by Sluice"
        ));
    }
    match kinds.as_slice() {
        [] => return Err("spec: sets no middleware kind".into()),
        [_] => {}
        many => {
            return Err(format!(
                "spec: sets several middleware kinds ({}); a Middleware sets exactly one",
                many.join(", ")
            ));
        }
    }
    let at = |field: &str, r: Result<Middleware, String>| r.map_err(|m| format!("spec.{field}{m}"));
    if let Some(s) = &spec.strip_prefix {
        return at("stripPrefix", strip_prefix(&s.prefixes));
    }
    if let Some(s) = &spec.strip_prefix_regex {
        return at("stripPrefixRegex", strip_prefix_regex(&s.regex));
    }
    if let Some(s) = &spec.add_prefix {
        return at(
            "addPrefix",
            checks::path(&s.prefix)
                .map(|()| Middleware::AddPrefix {
                    prefix: s.prefix.clone(),
                })
                .map_err(|m| format!(".prefix: {m}")),
        );
    }
    if let Some(s) = &spec.replace_path {
        return at(
            "replacePath",
            checks::path(&s.path)
                .map(|()| Middleware::ReplacePath {
                    path: s.path.clone(),
                })
                .map_err(|m| format!(".path: {m}")),
        );
    }
    if let Some(s) = &spec.replace_path_regex {
        return at(
            "replacePathRegex",
            replace_path_regex(&s.regex, &s.replacement),
        );
    }
    if let Some(s) = &spec.redirect_scheme {
        return at("redirectScheme", redirect_scheme(s));
    }
    if let Some(s) = &spec.redirect_regex {
        let regex = regex::check(&s.regex).map_err(|m| format!("spec.redirectRegex.regex: {m}"))?;
        checks::header_value(&s.replacement)
            .map_err(|m| format!("spec.redirectRegex.replacement: {m}"))?;
        return Ok(Middleware::RedirectRegex {
            regex,
            replacement: s.replacement.clone(),
            permanent: s.permanent.unwrap_or(false),
        });
    }
    if let Some(s) = &spec.headers {
        return at(
            "headers",
            headers::build(s).map(|h| Middleware::Headers(Box::new(h))),
        );
    }
    if let Some(s) = &spec.basic_auth {
        return at("basicAuth", auth::basic_auth(s).map(Middleware::BasicAuth));
    }
    if let Some(s) = &spec.ip_allow_list {
        return at(
            "ipAllowList",
            auth::ip_allow_list(s).map(Middleware::IpAllowList),
        );
    }
    if let Some(s) = &spec.ip_white_list {
        return at(
            "ipWhiteList",
            auth::ip_allow_list(s).map(Middleware::IpAllowList),
        );
    }
    if let Some(s) = &spec.rate_limit {
        return at(
            "rateLimit",
            traffic::rate_limit(s).map(Middleware::RateLimit),
        );
    }
    if let Some(s) = &spec.retry {
        return at("retry", traffic::retry(s).map(Middleware::Retry));
    }
    if let Some(s) = &spec.compress {
        return at("compress", traffic::compress(s).map(Middleware::Compress));
    }
    if let Some(s) = &spec.buffering {
        return at(
            "buffering",
            traffic::buffering(s).map(Middleware::Buffering),
        );
    }
    if let Some(s) = &spec.chain {
        return at("chain", chain(&s.middlewares));
    }
    if let Some(s) = &spec.forward_auth {
        return at(
            "forwardAuth",
            auth::forward_auth(s).map(|f| Middleware::ForwardAuth(Box::new(f))),
        );
    }
    Err("spec: sets no middleware kind".into())
}

fn strip_prefix(prefixes: &[String]) -> Result<Middleware, String> {
    if prefixes.is_empty() {
        return Err(".prefixes: must list at least one prefix".into());
    }
    for (i, p) in prefixes.iter().enumerate() {
        checks::path(p).map_err(|m| format!(".prefixes[{i}]: {m}"))?;
    }
    Ok(Middleware::StripPrefix {
        prefixes: prefixes.to_vec(),
    })
}

fn strip_prefix_regex(regexes: &[String]) -> Result<Middleware, String> {
    if regexes.is_empty() {
        return Err(".regex: must list at least one regex".into());
    }
    let regexes = regexes
        .iter()
        .enumerate()
        .map(|(i, r)| regex::check(r).map_err(|m| format!(".regex[{i}]: {m}")))
        .collect::<Result<_, _>>()?;
    Ok(Middleware::StripPrefixRegex { regexes })
}

fn replace_path_regex(re: &str, replacement: &str) -> Result<Middleware, String> {
    let regex = regex::check(re).map_err(|m| format!(".regex: {m}"))?;
    let groups = regex::parse(re)
        .map(|h| h.properties().explicit_captures_len())
        .unwrap_or(0);
    let replacement =
        rewrite_substitution(replacement, groups).map_err(|m| format!(".replacement: {m}"))?;
    Ok(Middleware::ReplacePathRegex { regex, replacement })
}

/// A Go `Expand` template (`/api/$1`, `${2}`, `$$`) as an RE2 rewrite (`/api/\1`). Named
/// groups are refused: RE2's rewrite knows numbers only; so are groups the regex does not have
/// (`groups` capturing groups), which Go expands to nothing and Envoy refuses.
pub fn rewrite_substitution(template: &str, groups: usize) -> Result<String, String> {
    checks::header_value(template)?;
    let mut out = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '$' => {
                let rest = &template[at + 1..];
                let (name, len) = if let Some(braced) = rest.strip_prefix('{') {
                    match braced.find('}') {
                        Some(end) => (&braced[..end], end + 2),
                        None => return Err(format!("unclosed ${{ at byte {at}")),
                    }
                } else if rest.starts_with('$') {
                    out.push('$');
                    chars.next();
                    continue;
                } else {
                    let n = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    (&rest[..n], n)
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "${name} at byte {at}: only numbered groups ($1, ${{2}}) can be rewritten"
                    ));
                }
                let n: u32 = name
                    .parse()
                    .map_err(|_| format!("group ${name} is too large"))?;
                if n > 9 || n as usize > groups {
                    return Err(format!(
                        "group ${n} at byte {at}: the regex has {groups} capturing groups (RE2 \
                         rewrites groups 0 to 9)"
                    ));
                }
                out.push('\\');
                out.push_str(&n.to_string());
                for _ in 0..len {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn redirect_scheme(
    s: &crate::api::traefik::middleware::RedirectScheme,
) -> Result<Middleware, String> {
    let https = match s.scheme.as_str() {
        "https" => true,
        "http" => false,
        other => return Err(format!(".scheme: {other:?} must be http or https")),
    };
    let port = match s.port.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!(".port: {p:?} is not a port number"))?,
        ),
    };
    // Traefik drops the default port of the scheme.
    let port = port.filter(|p| *p != if https { 443 } else { 80 });
    Ok(Middleware::RedirectScheme {
        https,
        port,
        permanent: s.permanent.unwrap_or(false),
    })
}

fn chain(refs: &[ObjectRef]) -> Result<Middleware, String> {
    if refs.is_empty() {
        return Err(".middlewares: must list at least one middleware".into());
    }
    for (i, r) in refs.iter().enumerate() {
        reference(r).map_err(|m| format!(".middlewares[{i}]{m}"))?;
    }
    Ok(Middleware::Chain(refs.to_vec()))
}

/// A reference to a Middleware (or a service): a name without `@` (references to other
/// Traefik providers do not exist in Sluice).
pub fn reference(r: &ObjectRef) -> Result<(), String> {
    if r.name.is_empty() {
        return Err(".name: must not be empty".into());
    }
    if r.name.contains('@') {
        return Err(format!(
            ".name: {:?}: references to other Traefik providers (name@provider) are not supported",
            r.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
