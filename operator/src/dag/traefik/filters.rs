//! A Traefik route's middlewares, resolved and turned into what an Envoy route does: a path
//! rewrite, a scheme redirect, header edits, and (through [`super::policy`]) per-route HTTP
//! filters and a retry policy. Kinds this slice does not serve make the route invalid, naming
//! the Middleware and its kind.

use std::collections::BTreeMap;

use crate::api::traefik::routes::ObjectRef;
use crate::dag::deps::Dep;
use crate::dag::model::RegexRewrite;
use crate::dag::select::Selection;
use crate::snapshot::{ClusterSnapshot, ObjKey, TraefikKind};
use crate::traefik::middleware::{self as mw, HeadersModel, Middleware};
use crate::traefik::regex;

use super::allowed_hosts::{self, AllowedHosts};
use super::policy::Policies;
use super::redirect_regex::{self, RegexRedirect, RegexRedirectSpec};

/// A `redirectScheme` middleware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SchemeRedirect {
    pub https: bool,
    pub port: Option<u16>,
    pub permanent: bool,
}

/// What a route's middlewares do, in list order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Filters {
    pub redirect: Option<SchemeRedirect>,
    pub path_rewrite: Option<RegexRewrite>,
    /// A path rewrite that may be prefixed by a later `addPrefix`.
    rewrite_composable: bool,
    pub request_set: BTreeMap<String, String>,
    pub request_remove: Vec<String>,
    pub response_set: BTreeMap<String, String>,
    pub response_remove: Vec<String>,
    /// `Strict-Transport-Security` from a `headers` middleware, sent over HTTPS only unless
    /// `forceSTSHeader`.
    pub sts: Option<(String, bool)>,
    pub host_rewrite: Option<String>,
    /// What HTTP filters and the retry policy do (see [`super::policy`]).
    pub policies: Policies,
    /// The hosts `headers.allowedHosts` allows (see [`super::allowed_hosts`]).
    pub allowed_hosts: Option<AllowedHosts>,
    /// A `compress` middleware is listed: the Gateway's compressor stays on.
    pub compress: bool,
    /// A `redirectRegex` middleware (see [`super::redirect_regex`]).
    pub redirect_regex: Option<RegexRedirectSpec>,
}

/// The kind name of a Middleware, as written in its spec.
fn kind_name(m: &Middleware) -> &'static str {
    match m {
        Middleware::StripPrefix { .. } => "stripPrefix",
        Middleware::StripPrefixRegex { .. } => "stripPrefixRegex",
        Middleware::AddPrefix { .. } => "addPrefix",
        Middleware::ReplacePath { .. } => "replacePath",
        Middleware::ReplacePathRegex { .. } => "replacePathRegex",
        Middleware::RedirectScheme { .. } => "redirectScheme",
        Middleware::RedirectRegex { .. } => "redirectRegex",
        Middleware::Headers(_) => "headers",
        Middleware::BasicAuth(_) => "basicAuth",
        Middleware::IpAllowList(_) => "ipAllowList",
        Middleware::RateLimit(_) => "rateLimit",
        Middleware::Retry(_) => "retry",
        Middleware::Compress(_) => "compress",
        Middleware::Buffering(_) => "buffering",
        Middleware::Chain(_) => "chain",
        Middleware::ForwardAuth(_) => "forwardAuth",
    }
}

/// Resolves the middlewares of a route of the IngressRoute `route` (`at` is the route's field
/// path) and combines them. References to other namespaces need `sel`'s `allowCrossNamespace`.
/// `read` records each Middleware and Secret looked up (the incremental DAG's dependencies).
pub(super) fn resolve(
    snap: &ClusterSnapshot,
    sel: &Selection,
    read: &dyn Fn(Dep),
    route: &ObjKey,
    refs: &[ObjectRef],
    at: &str,
) -> Result<Filters, String> {
    let mut filters = Filters::default();
    let mut expansion = Expansion {
        chain: Vec::new(),
        resolved: 0,
        sel,
        read,
    };
    for (i, r) in refs.iter().enumerate() {
        let field = format!("{at}.middlewares[{i}]");
        add(snap, route, r, &field, &mut expansion, &mut filters)?;
    }
    allowed_hosts::check_order(filters.allowed_hosts.as_ref(), &filters.policies.policy)
        .map_err(|e| format!("{at}.middlewares: {e}"))?;
    let bytes = filters.header_bytes();
    if bytes > MAX_HEADER_EDIT_BYTES {
        return Err(format!(
            "{at}.middlewares: the header edits add up to {bytes} bytes; at most \
             {MAX_HEADER_EDIT_BYTES} are served per route"
        ));
    }
    Ok(filters)
}

/// What a route would refuse of the Middleware `key` (`model`) alone, whatever the route: the
/// checks [`add`] makes from the Middleware's own fields and the Gateway's settings, on a route
/// listing nothing else (its own verdict, see `verdicts`). Not what reads another object (a
/// `basicAuth`'s users Secret) or depends on the route (order, a second one, chains; a
/// `forwardAuth`'s own fields are judged by `forward_auth::policy`).
pub(super) fn check_alone(
    snap: &ClusterSnapshot,
    sel: &Selection,
    key: &ObjKey,
    model: &Middleware,
) -> Result<(), String> {
    if matches!(
        model,
        Middleware::BasicAuth(_) | Middleware::ForwardAuth(_) | Middleware::Chain(_)
    ) {
        return Ok(());
    }
    let mut filters = Filters::default();
    if filters
        .policies
        .add(snap, key, model, sel.xff_trusted_hops)?
    {
        return Ok(());
    }
    if let Middleware::RedirectRegex {
        regex,
        replacement,
        permanent,
    } = model
    {
        let spec = RegexRedirectSpec {
            label: format!("Middleware {key} (redirectRegex)"),
            regex: regex.source.clone(),
            replacement: replacement.clone(),
            permanent: *permanent,
        };
        return spec.check();
    }
    filters.apply(model)?;
    let bytes = filters.header_bytes();
    if bytes > MAX_HEADER_EDIT_BYTES {
        return Err(format!(
            "the header edits add up to {bytes} bytes; at most {MAX_HEADER_EDIT_BYTES} are \
             served per route"
        ));
    }
    Ok(())
}

/// How deep chains may nest.
const MAX_CHAIN_DEPTH: usize = 8;

/// How many Middleware references one route may resolve, chains and what they list included:
/// without a bound, chains listing chains several times each grow exponentially with depth.
pub(super) const MAX_EXPANDED_MIDDLEWARES: usize = 64;

/// How many bytes of header names and values one route's middlewares may set (every DAG route
/// made from a Traefik route carries its own copy; Envoy refuses requests whose headers exceed
/// 60 KiB by default anyway).
pub(super) const MAX_HEADER_EDIT_BYTES: usize = 8 * 1024;

/// The state of one route's middleware expansion: the chains being expanded (to refuse
/// cycles) and how many references were resolved so far.
struct Expansion<'s> {
    chain: Vec<ObjKey>,
    resolved: usize,
    sel: &'s Selection,
    read: &'s dyn Fn(Dep),
}

/// Resolves one reference (from the IngressRoute or from a chain) and adds what it does.
fn add(
    snap: &ClusterSnapshot,
    route: &ObjKey,
    r: &ObjectRef,
    field: &str,
    expansion: &mut Expansion<'_>,
    filters: &mut Filters,
) -> Result<(), String> {
    expansion.resolved += 1;
    if expansion.resolved > MAX_EXPANDED_MIDDLEWARES {
        return Err(format!(
            "{field}: the route's middlewares, chains expanded, are more than \
             {MAX_EXPANDED_MIDDLEWARES}"
        ));
    }
    mw::reference(r).map_err(|e| format!("{field}{e}"))?;
    let namespace = r
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(&route.namespace);
    let key = ObjKey::new(namespace, r.name.clone());
    expansion
        .sel
        .cross_namespace(&route.namespace, "Middleware", &key)
        .map_err(|e| format!("{field}: {e}"))?;
    (expansion.read)(Dep::Traefik(TraefikKind::Middleware, key.clone()));
    let obj = snap
        .traefik_middlewares
        .get(&key)
        .ok_or_else(|| format!("{field}: Middleware {key} not found"))?;
    let spec = obj
        .decoded
        .as_ref()
        .map_err(|e| format!("{field}: Middleware {key} could not be read: {e}"))?;
    let model = mw::build(&spec.spec, &obj.ignored)
        .map_err(|e| format!("{field}: Middleware {key} is invalid: {e}"))?;
    if let Middleware::Chain(refs) = &model {
        if expansion.chain.contains(&key) {
            return Err(format!("{field}: Middleware {key}: chain cycle"));
        }
        if expansion.chain.len() >= MAX_CHAIN_DEPTH {
            return Err(format!(
                "{field}: Middleware {key}: chains nest deeper than {MAX_CHAIN_DEPTH}"
            ));
        }
        expansion.chain.push(key.clone());
        for (j, inner) in refs.iter().enumerate() {
            let field = format!("{field} (chain {key}, middlewares[{j}])");
            // A chain's references are relative to the chain's namespace, as in Traefik.
            add(snap, &key, inner, &field, expansion, filters)?;
        }
        expansion.chain.pop();
        return Ok(());
    }
    let at = |e: String| format!("{field}: Middleware {key} ({}): {e}", kind_name(&model));
    if let Middleware::BasicAuth(b) = &model {
        // Its users Secret, read by `policy`.
        (expansion.read)(Dep::Secret(ObjKey::new(
            key.namespace.clone(),
            b.secret.clone(),
        )));
    }
    if let Middleware::ForwardAuth(f) = &model {
        super::forward_auth::check_position(filters).map_err(at)?;
        let label = format!("{field}: Middleware {key} (forwardAuth)");
        let allow_insecure = expansion.sel.allow_insecure_skip_verify;
        return (filters.policies)
            .forward_auth(&key, label, f, allow_insecure)
            .map_err(at);
    }
    if filters
        .policies
        .add(snap, &key, &model, expansion.sel.xff_trusted_hops)
        .map_err(at)?
    {
        return Ok(());
    }
    if let Middleware::RedirectRegex {
        regex,
        replacement,
        permanent,
    } = &model
    {
        let spec = RegexRedirectSpec {
            label: format!("Middleware {key} (redirectRegex)"),
            regex: regex.source.clone(),
            replacement: replacement.clone(),
            permanent: *permanent,
        };
        spec.check().map_err(at)?;
        filters.redirect_regex_seen(spec).map_err(at)?;
        return Ok(());
    }
    filters.apply(&model).map_err(at)?;
    Ok(())
}

impl Filters {
    /// Bytes of the header names and values the route sets.
    fn header_bytes(&self) -> usize {
        let set = self.request_set.iter().chain(&self.response_set);
        let removed = self.request_remove.iter().chain(&self.response_remove);
        set.map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + removed.map(String::len).sum::<usize>()
            + self.sts.as_ref().map_or(0, |(v, _)| v.len())
    }

    fn apply(&mut self, m: &Middleware) -> Result<(), String> {
        match m {
            Middleware::StripPrefix { prefixes } => {
                let literal: Vec<String> =
                    prefixes.iter().map(|p| regex_syntax::escape(p)).collect();
                self.strip(&literal, 0)?;
                // One prefix: the header names it. Several: which one was stripped is known
                // only per request, and Envoy cannot set a header from a rewrite.
                if let [prefix] = prefixes.as_slice() {
                    self.request_set
                        .insert("x-forwarded-prefix".to_owned(), prefix.clone());
                }
            }
            Middleware::StripPrefixRegex { regexes } => {
                let sources: Vec<String> = regexes.iter().map(|r| r.source.clone()).collect();
                let groups = regexes
                    .iter()
                    .map(|r| {
                        regex::parse(&r.source)
                            .map_or(0, |h| h.properties().explicit_captures_len())
                    })
                    .sum();
                self.strip(&sources, groups)?;
            }
            Middleware::ReplacePathRegex { regex, replacement } => {
                if self.path_rewrite.is_some() {
                    return Err(self.second_rewrite());
                }
                // Go's ReplaceAllString and Envoy's (RE2's GlobalReplace) both replace every
                // leftmost-first match, and leave a path without one unchanged.
                self.path_rewrite = Some(checked(RegexRewrite {
                    pattern: regex.source.clone(),
                    substitution: replacement.clone(),
                })?);
                // A later addPrefix cannot be folded into a rewrite of every match.
                self.rewrite_composable = false;
            }
            Middleware::AddPrefix { prefix } => {
                let escaped = rewrite_literal(prefix);
                self.path_rewrite = match self.path_rewrite.take() {
                    None => Some(RegexRewrite {
                        pattern: "^(.*)$".to_owned(),
                        substitution: format!("{escaped}\\1"),
                    }),
                    Some(r) if self.rewrite_composable => Some(RegexRewrite {
                        pattern: r.pattern,
                        substitution: format!("{escaped}{}", r.substitution),
                    }),
                    Some(_) => return Err(self.second_rewrite()),
                };
                self.rewrite_composable = true;
            }
            Middleware::ReplacePath { path } => {
                // Whatever came before, the whole path is replaced.
                self.path_rewrite = Some(RegexRewrite {
                    pattern: "^.*$".to_owned(),
                    substitution: rewrite_literal(path),
                });
                self.rewrite_composable = true;
            }
            Middleware::RedirectScheme {
                https,
                port,
                permanent,
            } => {
                if self.redirect_regex.is_some() {
                    return Err(ONE_REDIRECT.into());
                }
                if self.redirect.is_none() {
                    self.policies.redirect_seen();
                    self.redirect = Some(SchemeRedirect {
                        https: *https,
                        port: *port,
                        permanent: *permanent,
                    });
                }
            }
            Middleware::Headers(h) => self.headers(h)?,
            Middleware::Compress(c) => {
                super::compress::check(c)?;
                self.compress = true;
            }
            other => return Err(format!("kind {} is not served yet", kind_name(other))),
        }
        Ok(())
    }

    /// Strips the first of `alternatives` (RE2, in order, `groups` capturing groups among
    /// them) that matches at the start of the path, and a `/` after it, keeping a leading `/`.
    fn strip(&mut self, alternatives: &[String], groups: usize) -> Result<(), String> {
        if self.path_rewrite.is_some() {
            return Err(self.second_rewrite());
        }
        // RE2 rewrites name groups 0 to 9 only: the rest of the path is group `groups + 1`.
        let rest = groups + 1;
        if rest > 9 {
            return Err(format!(
                "the regexes have {groups} capturing groups; Envoy's rewrite can keep the rest \
                 of the path only with at most 8 (use (?:...) groups)"
            ));
        }
        self.path_rewrite = Some(checked(RegexRewrite {
            pattern: match alternatives {
                [one] if groups == 0 && regex_syntax::escape(one) == *one => {
                    format!("^{one}/?(.*)$")
                }
                _ => {
                    let wrapped: Vec<String> =
                        alternatives.iter().map(|a| format!("(?:{a})")).collect();
                    format!("^(?:{})/?(.*)$", wrapped.join("|"))
                }
            },
            substitution: format!("/\\{rest}"),
        })?);
        self.rewrite_composable = true;
        Ok(())
    }

    /// Records a `redirectRegex`: the route's only redirect, seeing the URL as the client sent it.
    fn redirect_regex_seen(&mut self, spec: RegexRedirectSpec) -> Result<(), String> {
        if self.redirect.is_some() || self.redirect_regex.is_some() {
            return Err(ONE_REDIRECT.into());
        }
        if self.path_rewrite.is_some()
            || self.host_rewrite.is_some()
            || self.allowed_hosts.is_some()
        {
            return Err(
                "a redirectRegex after a path rewrite, a Host header or allowedHosts is not \
                 served: Traefik matches the changed URL, Envoy's redirect the request's"
                    .into(),
            );
        }
        self.policies.redirect_seen();
        self.redirect_regex = Some(spec);
        Ok(())
    }

    /// The route's `redirectRegex` on routes served over `tls` (or plain HTTP), planned.
    pub(super) fn regex_redirect(&self, tls: bool) -> Result<Option<RegexRedirect>, String> {
        let Some(s) = &self.redirect_regex else {
            return Ok(None);
        };
        redirect_regex::plan(&s.regex, &s.replacement, s.permanent, tls)
            .map_err(|e| format!("{}: {e}", s.label))
    }

    fn second_rewrite(&self) -> String {
        "this path change cannot follow the route's earlier one in a single Envoy rewrite (only \
         addPrefix or replacePath may follow another)"
            .to_owned()
    }

    fn headers(&mut self, h: &HeadersModel) -> Result<(), String> {
        if self.redirect_regex.is_some()
            && (!h.allowed_hosts.is_empty() || h.host_rewrite.is_some())
        {
            return Err("allowedHosts or a Host header after a redirectRegex is not served".into());
        }
        if !h.allowed_hosts.is_empty() {
            self.allowed_hosts = Some(allowed_hosts::add(
                self.allowed_hosts.take(),
                &h.allowed_hosts,
                &self.policies.policy,
                self.redirect.is_some(),
            )?);
        }
        for (name, value) in &h.request_set {
            self.request_remove.retain(|n| n != name);
            self.request_set.insert(name.clone(), value.clone());
        }
        for name in &h.request_remove {
            self.request_set.remove(name);
            if !self.request_remove.contains(name) {
                self.request_remove.push(name.clone());
            }
        }
        for (name, value) in h.response_set.iter().chain(&h.security) {
            if name == "strict-transport-security" {
                self.sts = Some((value.clone(), h.sts_on_plain_http));
                continue;
            }
            self.response_remove.retain(|n| n != name);
            self.response_set.insert(name.clone(), value.clone());
        }
        for name in &h.response_remove {
            self.response_set.remove(name);
            if !self.response_remove.contains(name) {
                self.response_remove.push(name.clone());
            }
        }
        if let Some(host) = &h.host_rewrite {
            self.host_rewrite = Some(host.clone());
        }
        Ok(())
    }
}

/// Why a second redirect middleware is refused.
const ONE_REDIRECT: &str = "a route serves one redirect middleware (redirectScheme or \
                            redirectRegex); Envoy answers with the first";

/// A literal as an RE2 rewrite string (`\` escapes).
fn rewrite_literal(s: &str) -> String {
    s.replace('\\', "\\\\")
}

/// A generated rewrite whose pattern stays within the regex bounds every pattern Sluice sends
/// to Envoy keeps.
fn checked(r: RegexRewrite) -> Result<RegexRewrite, String> {
    regex::parse(&r.pattern).map_err(|e| format!("the prefix makes a rewrite regex that {e}"))?;
    Ok(r)
}
