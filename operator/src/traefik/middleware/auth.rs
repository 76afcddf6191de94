//! basicAuth, ipAllowList (ipWhiteList) and forwardAuth.

use std::collections::BTreeMap;

use crate::api::traefik::middleware as api;
use crate::dag::checks;

use super::super::matcher::{Cidr, cidr};
use super::super::regex::{self, Pattern};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// Secret in the Middleware's namespace (read by the caller; see [`basic_auth_users`]).
    pub secret: String,
    pub realm: String,
    pub remove_header: bool,
    /// Request header that receives the authenticated user name.
    pub header_field: Option<String>,
}

/// The hash formats of htpasswd lines, and whether Envoy's `basic_auth` can check them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashFormat {
    /// `{SHA}base64(sha1)`: the only one Envoy checks.
    Sha1,
    Apr1,
    Bcrypt,
    /// Anything else (crypt, plain text).
    Other,
}

impl HashFormat {
    pub fn of(hash: &str) -> HashFormat {
        if hash.starts_with("{SHA}") {
            HashFormat::Sha1
        } else if hash.starts_with("$apr1$") {
            HashFormat::Apr1
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            HashFormat::Bcrypt
        } else {
            HashFormat::Other
        }
    }
}

pub(super) fn basic_auth(b: &api::BasicAuth) -> Result<BasicAuth, String> {
    if b.secret.is_empty() {
        return Err(".secret: must name a Secret".into());
    }
    let realm = b.realm.clone().unwrap_or_else(|| "traefik".into());
    checks::header_value(&realm).map_err(|e| format!(".realm: {e}"))?;
    if realm.contains('"') || realm.contains('\\') {
        return Err(".realm: must not contain '\"' or '\\'".into());
    }
    let header_field = match b.header_field.as_deref() {
        None | Some("") => None,
        Some(h) => Some(header_name(h).map_err(|e| format!(".headerField: {e}"))?),
    };
    Ok(BasicAuth {
        secret: b.secret.clone(),
        realm,
        remove_header: b.remove_header.unwrap_or(false),
        header_field,
    })
}

/// The htpasswd lines Envoy's `basic_auth` filter is to get from a users Secret, in Traefik's
/// two formats: a `kubernetes.io/basic-auth` Secret (`username`, `password`; hashed here as
/// `{SHA}`), or any other Secret with exactly one key holding `user:hash` lines. Hashes Envoy
/// cannot check (MD5-apr1, bcrypt, crypt) are refused, naming the line.
pub fn basic_auth_users(
    secret_type: Option<&str>,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<String>, String> {
    use base64::Engine as _;
    if secret_type == Some("kubernetes.io/basic-auth") {
        let field = |k: &str| {
            data.get(k)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the Secret has no {k}"))
        };
        let user = String::from_utf8_lossy(field("username")?).into_owned();
        // The password's bytes as they are: the client sends them, not a UTF-8 repair of them.
        let password = field("password")?;
        check_user(&user)?;
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password);
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        return Ok(vec![format!("{user}:{{SHA}}{hash}")]);
    }
    let mut values = data.values();
    let (Some(users), None) = (values.next(), values.next()) else {
        return Err("the Secret must hold exactly one key of htpasswd lines".into());
    };
    let text = std::str::from_utf8(users).map_err(|_| "the users are not UTF-8".to_owned())?;
    let mut out = Vec::new();
    // Users and their lines. Errors name lines, never users: whoever may write a Middleware
    // in a namespace must not read a Secret of it through a route's status.
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {n}: not user:hash"));
        };
        check_user(user).map_err(|e| format!("line {n}: {e}"))?;
        match HashFormat::of(hash) {
            HashFormat::Sha1 => {
                sha1_hash(hash).map_err(|e| format!("line {n}: {e}"))?;
                if let Some(&(_, first)) = seen.iter().find(|(u, _)| *u == user) {
                    return Err(format!(
                        "line {n}: its user is already listed on line {first}"
                    ));
                }
                seen.push((user, n));
                out.push(format!("{user}:{hash}"));
            }
            HashFormat::Apr1 | HashFormat::Bcrypt | HashFormat::Other => {
                return Err(format!(
                    "line {n}: Envoy checks only {{SHA}} hashes (htpasswd -s); \
                     this one is {:?}",
                    HashFormat::of(hash)
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("the Secret lists no users".into());
    }
    Ok(out)
}

/// Envoy reads a line starting with `#` as a comment: such a user could never log in.
fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty()
        || user.contains(':')
        || user.starts_with('#')
        || !user.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(
            "the user name must be visible ASCII without ':', not starting with '#'".to_owned(),
        );
    }
    Ok(())
}

/// `{SHA}` and the base64 of a 20-byte SHA-1 digest (28 characters), which Envoy requires of
/// every line or refuses the whole configuration.
fn sha1_hash(hash: &str) -> Result<(), String> {
    use base64::Engine as _;
    let b64 = hash.strip_prefix("{SHA}").unwrap_or(hash);
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(digest) if digest.len() == 20 && b64.len() == 28 => Ok(()),
        _ => Err("the {SHA} hash is not the base64 of a 20-byte SHA-1 digest".into()),
    }
}

fn header_name(v: &str) -> Result<String, String> {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(format!("{v:?} is not a header name"))
    }
}

/// Which address an IP check uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpStrategy {
    /// The TCP peer.
    Peer,
    /// The `depth`-th `X-Forwarded-For` entry from the right.
    Depth(u32),
    /// The first `X-Forwarded-For` entry from the right not in these networks.
    Excluded(Vec<Cidr>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpAllowList {
    pub source_ranges: Vec<Cidr>,
    pub strategy: IpStrategy,
    /// Status of a refusal (Traefik's default 403).
    pub reject_status: u16,
}

pub(super) fn ip_strategy(s: Option<&api::IpStrategy>, field: &str) -> Result<IpStrategy, String> {
    let Some(s) = s else {
        return Ok(IpStrategy::Peer);
    };
    if s.ipv6_subnet.is_some() {
        return Err(format!("{field}.ipv6Subnet: not supported by Sluice"));
    }
    match s.depth {
        Some(d) if d > 0 => {
            let d = u32::try_from(d)
                .ok()
                .filter(|d| *d <= 64)
                .ok_or_else(|| format!("{field}.depth: must be at most 64"))?;
            Ok(IpStrategy::Depth(d))
        }
        Some(d) if d < 0 => Err(format!("{field}.depth: must not be negative")),
        _ if !s.excluded_ips.is_empty() => Ok(IpStrategy::Excluded(
            s.excluded_ips
                .iter()
                .enumerate()
                .map(|(i, ip)| cidr(ip).map_err(|e| format!("{field}.excludedIPs[{i}]: {e}")))
                .collect::<Result<_, _>>()?,
        )),
        _ => Ok(IpStrategy::Peer),
    }
}

pub(super) fn ip_allow_list(a: &api::IpAllowList) -> Result<IpAllowList, String> {
    if a.source_range.is_empty() {
        return Err(".sourceRange: must list at least one network".into());
    }
    let source_ranges = a
        .source_range
        .iter()
        .enumerate()
        .map(|(i, r)| cidr(r).map_err(|e| format!(".sourceRange[{i}]: {e}")))
        .collect::<Result<_, _>>()?;
    let reject_status = match a.reject_status_code {
        None | Some(0) => 403,
        Some(c) => u16::try_from(c)
            .ok()
            .filter(|c| (200..=599).contains(c))
            .ok_or_else(|| format!(".rejectStatusCode: {c} is not an HTTP status (200-599)"))?,
    };
    Ok(IpAllowList {
        source_ranges,
        strategy: ip_strategy(a.ip_strategy.as_ref(), ".ipStrategy")?,
        reject_status,
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct ForwardAuth {
    pub https: bool,
    /// Host name or IP literal of the auth server.
    pub host: String,
    pub port: u16,
    /// Path (and query) the auth request goes to.
    pub path: String,
    pub trust_forward_header: bool,
    /// Lower-case names copied from the auth response to the request.
    pub auth_response_headers: Vec<String>,
    pub auth_response_headers_regex: Option<Pattern>,
    /// Lower-case names copied to the auth request; empty means all.
    pub auth_request_headers: Vec<String>,
    pub ca_secret: Option<String>,
    pub cert_secret: Option<String>,
    pub insecure_skip_verify: bool,
    pub forward_body: bool,
    pub max_body_size: Option<u64>,
    pub preserve_request_method: bool,
    /// A relative `Location` of a refusal stays as it is (Envoy never rewrites it).
    pub preserve_location_header: bool,
}

pub(super) fn forward_auth(f: &api::ForwardAuth) -> Result<ForwardAuth, String> {
    let (https, rest) = if let Some(r) = f.address.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = f.address.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            ".address: {:?} must be an http:// or https:// URL",
            f.address
        ));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    checks::path(&path).map_err(|e| format!(".address: the path {e}"))?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!(".address: port {p:?} is not a port number"))?,
        ),
        _ => (authority, if https { 443 } else { 80 }),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    checks::resolvable_host(&host).map_err(|e| format!(".address: host {host:?} {e}"))?;
    let names = |field: &str, list: &[String]| -> Result<Vec<String>, String> {
        list.iter()
            .enumerate()
            .map(|(i, h)| header_name(h).map_err(|e| format!(".{field}[{i}]: {e}")))
            .collect()
    };
    if f.add_auth_cookies_to_response
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(
            ".addAuthCookiesToResponse: not served: Envoy passes auth response headers to \
             the client by header name, so it would pass every Set-Cookie the auth server \
             sends, not only the named cookies, and beside the backend's cookies of the same \
             names (Traefik replaces them)"
                .into(),
        );
    }
    if f.header_field.as_ref().is_some_and(|h| !h.is_empty()) {
        return Err(".headerField: not supported by Sluice".into());
    }
    let tls = f.tls.as_ref();
    if tls.is_some_and(|t| t.ca_optional.is_some()) {
        return Err(".tls.caOptional: not supported by Sluice".into());
    }
    let max_body_size = match f.max_body_size {
        None => None,
        Some(n) if n < 0 => None,
        Some(n) => Some(n.unsigned_abs()),
    };
    Ok(ForwardAuth {
        https,
        host,
        port,
        path,
        trust_forward_header: f.trust_forward_header.unwrap_or(false),
        auth_response_headers: names("authResponseHeaders", &f.auth_response_headers)?,
        auth_response_headers_regex: f
            .auth_response_headers_regex
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(regex::check)
            .transpose()
            .map_err(|e| format!(".authResponseHeadersRegex: {e}"))?,
        auth_request_headers: names("authRequestHeaders", &f.auth_request_headers)?,
        ca_secret: tls.and_then(|t| t.ca_secret.clone()),
        cert_secret: tls.and_then(|t| t.cert_secret.clone()),
        insecure_skip_verify: tls.and_then(|t| t.insecure_skip_verify).unwrap_or(false),
        forward_body: f.forward_body.unwrap_or(false),
        max_body_size,
        preserve_request_method: f.preserve_request_method.unwrap_or(false),
        preserve_location_header: f.preserve_location_header.unwrap_or(false),
    })
}
