//! A `redirectRegex` middleware in Envoy's terms, where it decomposes exactly.
//!
//! Traefik matches the regex against the request's URL, `scheme://host[:port]` followed by the
//! request URI as sent (path and query), the scheme being `https` when the connection is TLS;
//! where it matches, the new URL is Go's `ReplaceAllString`; a new URL equal to the old one
//! passes the request on, and so does a URL the regex does not match. Envoy's `RedirectAction`
//! sets the scheme, the host and port, and rewrites the path with a regex (keeping the query).
//! Sluice serves the regexes of the form
//!
//! `^SCHEME://HOST/PATH[(.*)][$]`
//!
//! - `SCHEME` is `http`, `https`, `https?`, `(?:https?)` or `(?:http|https)`; an IngressRoute is
//!   served over one scheme only, so the middleware either applies or never does.
//! - `HOST` has no capturing group and cannot match `/`, `?` or `#`: it matches the whole Host
//!   (an `:authority` condition on the route, matched case-sensitively as Go does).
//! - `PATH` has no anchor or word boundary and cannot match `?`: it matches the start of the path
//!   (a `:path` condition), never the query. A last group `(.*)` (which takes the query too)
//!   must end the replacement, so that Envoy, which rewrites the path and then appends the
//!   query, gives the same URL. Without `(.*)` and `$`, the rest of the URL is kept, as Go does.
//!
//! The replacement is `http(s)://host[:port]/…`: a literal scheme and host (a DNS name, a port
//! other than the scheme's default) and a path of literals and `$1`…`$9` / `${1}`…`${9}` taken
//! from `PATH`'s groups. A redirect that could give back the request's own URL (same scheme,
//! a host the regex accepts) is served only when it keeps the path as it is, with a condition
//! that the Host differs; otherwise it is refused, since an Envoy route cannot tell which URLs
//! come back unchanged. Everything else is refused naming the part that cannot be expressed.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::dag::model::{HeaderCondition, Redirect, RegexRewrite, RouteExtra, ValueCondition};
use crate::dag::policy::RoutePolicy;
use crate::traefik::regex;

/// The scheme parts served (none has a capturing group).
const SCHEMES: [&str; 5] = ["http", "https", "https?", "(?:https?)", "(?:http|https)"];

/// A `redirectRegex` as the routes of one IngressRoute serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RegexRedirect {
    /// `http` or `https`.
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
    /// The path rewrite (the query is kept after it).
    pub path: RegexRewrite,
    pub permanent: bool,
    /// When the redirect applies: `:authority` and `:path` conditions (and a Host that differs
    /// from the new one, when the URL could otherwise come back unchanged).
    pub conditions: Vec<HeaderCondition>,
}

/// The redirect of `regex` and `replacement` on routes served over `tls` (or plain HTTP);
/// `None` when the regex never matches there. Errors say which part cannot be expressed.
pub(super) fn plan(
    source: &str,
    replacement: &str,
    permanent: bool,
    tls: bool,
) -> Result<Option<RegexRedirect>, String> {
    let parts = split(source)?;
    let scheme_now = if tls { "https" } else { "http" };
    let applies = match parts.scheme {
        "http" | "https" => parts.scheme == scheme_now,
        _ => true,
    };
    if !applies {
        return Ok(None);
    }
    let host_hir = regex::parse(parts.host).map_err(|e| format!("regex: host part: {e}"))?;
    if host_hir.properties().explicit_captures_len() > 0 || has_look(&host_hir) {
        return Err(format!(
            "regex: the host part {:?} must have no capturing group or anchor (Envoy's \
             redirect sets a literal host)",
            parts.host
        ));
    }
    if can_match_any(&host_hir, &['/', '?', '#']) {
        return Err(format!(
            "regex: the host part {:?} can match '/', '?' or '#', so where the host ends is not \
             known",
            parts.host
        ));
    }
    let path_hir = regex::parse(parts.path).map_err(|e| format!("regex: path part: {e}"))?;
    if has_look(&path_hir) {
        return Err(format!(
            "regex: the path part {:?} has an anchor or word boundary inside it, which Envoy \
             would see at the end of the path where Traefik sees the query",
            parts.path
        ));
    }
    if can_match_any(&path_hir, &['?']) {
        return Err(format!(
            "regex: the path part {:?} can match '?' (the query); end it with (.*) to keep the \
             query",
            parts.path
        ));
    }
    let groups = path_hir.properties().explicit_captures_len() + usize::from(parts.tail);
    let target = Target::parse(replacement, groups)?;
    if parts.tail && target.path.last() != Some(&Token::Group(groups)) {
        return Err(format!(
            "replacement: the regex's last group (.*) holds the rest of the URL with its query; \
             Envoy keeps the query after the new path, so ${{{groups}}} must end the replacement"
        ));
    }
    if parts.tail
        && target
            .path
            .iter()
            .filter(|t| **t == Token::Group(groups))
            .count()
            > 1
    {
        return Err(format!(
            "replacement: ${{{groups}}} (the rest of the URL with its query) may appear once"
        ));
    }
    let tail = if parts.tail { "(.*)" } else { "" };
    let end = if parts.tail || parts.end_anchored {
        "$"
    } else {
        ""
    };
    let path = RegexRewrite {
        pattern: format!("^/(?:{}){tail}{end}", parts.path),
        substitution: target.substitution(),
    };
    regex::parse(&path.pattern).map_err(|e| format!("regex: {e}"))?;
    let uri = match (parts.tail, parts.end_anchored) {
        (true, _) => format!("/(?:{})(?:.*)", parts.path),
        (false, true) => format!("/(?:{})", parts.path),
        (false, false) => format!("/(?:{})(?s:.*)", parts.path),
    };
    let mut conditions = vec![
        condition(
            ":authority",
            ValueCondition::Regex(parts.host.to_owned()),
            false,
        ),
        condition(":path", ValueCondition::Regex(uri), false),
    ];
    let authority = match target.port {
        Some(p) => format!("{}:{p}", target.host),
        None => target.host.clone(),
    };
    if target.scheme == scheme_now && matches(&host_hir, &authority) {
        // The path kept as it is: the URL comes back unchanged exactly when the Host is the new
        // one. A literal path the regex's (whole, query-less) path never is: never unchanged.
        let identity = parts.tail
            && parts.path.is_empty()
            && target.path == [Token::Literal("/".into()), Token::Group(groups)];
        let other_path = match target.path.as_slice() {
            [Token::Literal(p)] if parts.end_anchored && !parts.tail => {
                !matches(&path_hir, p.strip_prefix('/').unwrap_or(p))
            }
            _ => false,
        };
        if other_path {
            // Nothing to add: every URL the regex matches changes.
        } else if !identity {
            return Err(format!(
                "replacement: {replacement:?} can give back the request's own URL ({} with a \
                 Host the regex accepts), where Traefik passes the request on; an Envoy route \
                 cannot tell those URLs apart (served only when the path is kept as it is)",
                target.scheme
            ));
        } else {
            conditions.push(condition(
                ":authority",
                ValueCondition::Exact(authority),
                true,
            ));
        }
    }
    Ok(Some(RegexRedirect {
        scheme: target.scheme,
        host: target.host,
        port: target.port,
        path,
        permanent,
        conditions,
    }))
}

fn condition(name: &str, value: ValueCondition, invert: bool) -> HeaderCondition {
    HeaderCondition {
        name: name.to_owned(),
        value,
        invert,
    }
}

/// The regex's parts (see the module documentation).
struct Parts<'a> {
    scheme: &'a str,
    host: &'a str,
    /// Without the final `(.*)` and `$`.
    path: &'a str,
    /// The path part ends with `(.*)`.
    tail: bool,
    end_anchored: bool,
}

fn split(source: &str) -> Result<Parts<'_>, String> {
    regex::parse(source).map_err(|e| format!("regex: {e}"))?;
    let body = source.strip_prefix('^').ok_or(
        "regex: must start with ^ (Sluice serves regexes of the form ^scheme://host/path)",
    )?;
    if let Some(at) = flag_group(body) {
        return Err(format!(
            "regex: the flags group at byte {} changes the parts after it; use a scoped group \
             (?i:...)",
            at + 1
        ));
    }
    let (scheme, rest) = split_top(body, "://")
        .ok_or("regex: no :// after the scheme (Sluice serves ^scheme://host/path)")?;
    if !SCHEMES.contains(&scheme) {
        return Err(format!(
            "regex: the scheme part {scheme:?} must be http, https or https?"
        ));
    }
    let (host, path) = split_top(rest, "/")
        .ok_or("regex: no / after the host (Sluice serves ^scheme://host/path)")?;
    let (path, end_anchored) = match path.strip_suffix('$') {
        Some(p) if !p.ends_with('\\') => (p, true),
        _ => (path, false),
    };
    let (path, tail) = match path.strip_suffix("(.*)") {
        Some(p) if !p.ends_with('\\') => (p, true),
        _ => (path, false),
    };
    if has_top_alternation(path) || has_top_alternation(host) {
        return Err(
            "regex: an alternation | outside a group spans the scheme, host and path parts; \
             put it in a group"
                .into(),
        );
    }
    Ok(Parts {
        scheme,
        host,
        path,
        tail,
        end_anchored,
    })
}

/// Splits at the first occurrence of `sep` outside groups, classes and escapes.
fn split_top<'a>(s: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let bytes = s.as_bytes();
    let (mut depth, mut class, mut i) = (0usize, false, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' if !class => class = true,
            b']' if class => class = false,
            b'(' if !class => depth += 1,
            b')' if !class => depth = depth.saturating_sub(1),
            // Compared as bytes: `i` may be inside a multi-byte character (a tenant's regex
            // may hold any), where slicing the string would panic. The separators are ASCII,
            // so where one starts is a character boundary.
            _ if !class && depth == 0 && bytes[i..].starts_with(sep.as_bytes()) => {
                return Some((&s[..i], &s[i + sep.len()..]));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn has_top_alternation(s: &str) -> bool {
    split_top(s, "|").is_some()
}

/// The byte offset of a `(?flags)` group, which sets flags for the rest of its group.
fn flag_group(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' if s[i..].starts_with("(?") => {
                let flags = s[i + 2..]
                    .find(|c: char| !(c.is_ascii_alphabetic() || c == '-'))
                    .map(|n| &s[i + 2 + n..]);
                if flags.is_some_and(|r| r.starts_with(')')) {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn has_look(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Look(_) => true,
        HirKind::Repetition(r) => has_look(&r.sub),
        HirKind::Capture(c) => has_look(&c.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().any(has_look),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => false,
    }
}

/// Whether the pattern can match one of `chars` anywhere.
fn can_match_any(hir: &Hir, chars: &[char]) -> bool {
    match hir.kind() {
        HirKind::Literal(l) => chars
            .iter()
            .any(|c| c.is_ascii() && l.0.contains(&(*c as u8))),
        HirKind::Class(class) => chars.iter().any(|c| class_has(class, *c)),
        HirKind::Repetition(r) => r.max != Some(0) && can_match_any(&r.sub, chars),
        HirKind::Capture(c) => can_match_any(&c.sub, chars),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().any(|h| can_match_any(h, chars)),
        HirKind::Empty | HirKind::Look(_) => false,
    }
}

fn class_has(class: &Class, c: char) -> bool {
    match class {
        Class::Unicode(u) => u.ranges().iter().any(|r| r.start() <= c && c <= r.end()),
        Class::Bytes(b) => {
            c.is_ascii()
                && b.ranges()
                    .iter()
                    .any(|r| r.start() <= c as u8 && c as u8 <= r.end())
        }
    }
}

/// Whether the pattern (without anchors) matches all of `text` (ASCII).
fn matches(hir: &Hir, text: &str) -> bool {
    ends(hir, text.as_bytes(), &[0]).contains(&text.len())
}

/// The positions where a match of `hir` starting at one of `starts` can end (sorted, unique).
/// Bounded: at most `text.len() + 1` positions, each repetition reaching a fixpoint within as
/// many rounds.
fn ends(hir: &Hir, text: &[u8], starts: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => starts.to_vec(),
        HirKind::Literal(l) => starts
            .iter()
            .filter(|&&s| text[s..].starts_with(&l.0))
            .map(|s| s + l.0.len())
            .collect(),
        HirKind::Class(class) => starts
            .iter()
            .filter(|&&s| s < text.len() && class_has(class, char::from(text[s])))
            .map(|s| s + 1)
            .collect(),
        HirKind::Capture(c) => ends(&c.sub, text, starts),
        HirKind::Concat(v) => v.iter().fold(starts.to_vec(), |at, h| ends(h, text, &at)),
        HirKind::Alternation(v) => v.iter().flat_map(|h| ends(h, text, starts)).collect(),
        HirKind::Repetition(r) => {
            let mut reached: Vec<usize> = Vec::new();
            let mut frontier = starts.to_vec();
            let mut count = 0u32;
            loop {
                if count >= r.min {
                    reached.extend(&frontier);
                }
                if r.max.is_some_and(|m| count >= m) || frontier.is_empty() {
                    break;
                }
                let mut next = ends(&r.sub, text, &frontier);
                next.sort_unstable();
                next.dedup();
                // Past the minimum, positions already reached add nothing new.
                if count >= r.min {
                    next.retain(|p| !reached.contains(p));
                }
                frontier = next;
                count = count.saturating_add(1);
                if count > r.min && frontier.is_empty() {
                    break;
                }
                if count as usize > text.len() + 1 && count > r.min {
                    reached.extend(&frontier);
                    break;
                }
            }
            reached
        }
    };
    out.sort_unstable();
    out.dedup();
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(String),
    Group(usize),
}

/// A checked replacement URL.
struct Target {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: Vec<Token>,
}

impl Target {
    /// Reads `replacement`, whose path may name groups `1..=groups`.
    fn parse(replacement: &str, groups: usize) -> Result<Target, String> {
        let (scheme, rest) = replacement
            .split_once("://")
            .filter(|(s, _)| *s == "http" || *s == "https")
            .ok_or(
                "replacement: must start with http:// or https:// (Envoy's redirect sets a \
                 literal scheme)",
            )?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => {
                return Err("replacement: needs a path starting with / after the host".into());
            }
        };
        if authority.contains('$') {
            return Err(
                "replacement: the host cannot use the regex's groups (Envoy's redirect sets a \
                 literal host)"
                    .into(),
            );
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("replacement: port {p:?} is not a port number"))?;
                (h, Some(port))
            }
            None => (authority, None),
        };
        let default = if scheme == "https" { 443 } else { 80 };
        if port == Some(default) {
            return Err(format!(
                "replacement: the default port :{default} is dropped by Envoy's redirect, where \
                 Traefik keeps it; leave it out"
            ));
        }
        match crate::dag::checks::dns_name(host) {
            Ok(h) if h == host => {}
            _ => {
                return Err(format!(
                    "replacement: the host {host:?} must be a lower-case DNS name"
                ));
            }
        }
        Ok(Target {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            path: template(path, groups)?,
        })
    }

    /// Envoy's substitution: literals with `\` escaped, groups as `\N`.
    fn substitution(&self) -> String {
        let mut out = String::new();
        for t in &self.path {
            match t {
                Token::Literal(s) => out.push_str(&s.replace('\\', "\\\\")),
                Token::Group(n) => out.push_str(&format!("\\{n}")),
            }
        }
        out
    }
}

/// Go's template syntax (`$1`, `${1}`, `$$`; a `$` not followed by a name is literal), with
/// numbered groups `1..=groups` only (at most 9: Envoy's rewrite names groups by one digit).
fn template(path: &str, groups: usize) -> Result<Vec<Token>, String> {
    let mut tokens: Vec<Token> = Vec::new();
    let mut literal = String::new();
    let mut rest = path;
    while let Some(i) = rest.find('$') {
        literal.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, next) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => ("", after),
            }
        } else if let Some(more) = after.strip_prefix('$') {
            literal.push('$');
            rest = more;
            continue;
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            literal.push('$');
            rest = after;
            continue;
        }
        let n = name
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=groups.min(9)).contains(n))
            .ok_or_else(|| {
                format!(
                    "replacement: ${name} is not one of the path part's groups $1..${} (write \
                     ${{1}} before letters or digits; named groups, $0 and groups past 9 are not \
                     served)",
                    groups.min(9)
                )
            })?;
        if !literal.is_empty() {
            tokens.push(Token::Literal(std::mem::take(&mut literal)));
        }
        tokens.push(Token::Group(n));
        rest = next;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    Ok(tokens)
}

/// A `redirectRegex` middleware of a route, as written (planned per scheme by [`plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RegexRedirectSpec {
    /// `Middleware <key> (redirectRegex)`, for errors.
    pub label: String,
    pub regex: String,
    pub replacement: String,
    pub permanent: bool,
}

impl RegexRedirectSpec {
    /// Checks the middleware for both schemes, so that it is refused whichever it meets.
    pub(super) fn check(&self) -> Result<(), String> {
        for tls in [false, true] {
            plan(&self.regex, &self.replacement, self.permanent, tls)?;
        }
        Ok(())
    }
}

/// The redirect routes ahead of a route whose conditions are `extra`'s: GET answered with
/// 302 (301 when permanent), other methods with 307 (308), as Traefik does.
pub(super) fn routes(
    extra: &RouteExtra,
    r: &RegexRedirect,
    policy: Option<Box<RoutePolicy>>,
) -> Vec<RouteExtra> {
    let redirect = |status: u16| Redirect {
        scheme: r.scheme.clone(),
        port: r.port,
        status,
        host: Some(r.host.clone()),
        path: Some(r.path.clone()),
    };
    let mut get = extra.clone();
    get.headers.extend(r.conditions.iter().cloned());
    get.policy = policy.clone();
    let mut other = get.clone();
    get.headers.push(condition(
        ":method",
        ValueCondition::Exact("GET".to_owned()),
        false,
    ));
    get.redirect = Some(redirect(if r.permanent { 301 } else { 302 }));
    other.redirect = Some(redirect(if r.permanent { 308 } else { 307 }));
    vec![get, other]
}
