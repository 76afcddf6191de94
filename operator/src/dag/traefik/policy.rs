//! The middlewares of a route that Envoy serves with HTTP filters or a route retry policy:
//! `basicAuth`, `ipAllowList`/`ipWhiteList`, `rateLimit`, `buffering`, `retry` and the CORS part
//! of `headers`, collected into a [`RoutePolicy`].
//!
//! Envoy runs a listener's HTTP filters in one order on every route ([`Stage`]: CORS, IP allow
//! list, rate limit, basic auth, buffering), before the router. A route whose middlewares put
//! two of them in another order would behave differently (a 401 where Traefik answers 403, a
//! request counted against the rate before or after its credentials are checked), so it is
//! refused, naming both. A middleware listed after a `redirectScheme` is not applied to the
//! requests that redirect answers, as in Traefik.

use std::collections::BTreeMap;

use crate::dag::policy::{
    BasicAuthPolicy, BufferPolicy, CorsPolicy, IpAllowPolicy, RateKey, RateLimitPolicy,
    RetryPolicy, RoutePolicy, Stage,
};
use crate::snapshot::{ClusterSnapshot, ObjKey};
use crate::traefik::middleware::{
    self as mw, BasicAuth, Buffering, Cors, IpAllowList, IpStrategy, Middleware, RateLimit,
    RateSource,
};

/// Most networks one `ipAllowList` may list (each is one RBAC principal on every route).
pub(super) const MAX_SOURCE_RANGES: usize = 256;
/// Most users a basicAuth Secret may list, and most bytes of users it may hold.
pub(super) const MAX_USERS: usize = 1024;
pub(super) const MAX_USERS_BYTES: usize = 64 * 1024;
/// Largest request body a `buffering` middleware may hold in Envoy's memory: Envoy keeps the
/// whole body of every such request in memory, shared with every other tenant's traffic.
pub(super) const MAX_BUFFER_BYTES: u32 = 16 * 1024 * 1024;
/// Most entries of each CORS list (origins, methods, headers).
pub(super) const MAX_CORS_ENTRIES: usize = 64;
/// Envoy's shortest token-bucket refill.
const MIN_FILL_MS: u64 = 50;

/// The policy of one route, built in middleware order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Policies {
    pub policy: RoutePolicy,
    /// The last filter stage and the Middleware that set it.
    last: Option<(Stage, ObjKey)>,
    /// The policy as it was when the route's first `redirectScheme` came: what applies to the
    /// requests the redirect answers.
    pub at_redirect: Option<RoutePolicy>,
    /// A `forwardAuth` whose auth Service is still to be found (see `forward_auth`).
    pub forward_auth: Option<super::forward_auth::PendingAuth>,
}

impl Policies {
    /// The policy of the route's DAG routes; `redirected`: of those a redirect answers.
    pub fn route_policy(&self, redirected: bool) -> Option<Box<RoutePolicy>> {
        let p = match (&self.at_redirect, redirected) {
            (Some(p), true) => p,
            _ => &self.policy,
        };
        (!p.is_empty()).then(|| Box::new(p.clone()))
    }

    /// Records that a `redirectScheme` comes here in the list.
    pub fn redirect_seen(&mut self) {
        if self.at_redirect.is_none() {
            self.at_redirect = Some(self.policy.clone());
        }
    }

    /// Adds what `m` (the Middleware `key`) does if it is one of the kinds served here; says
    /// whether the kind is done (`headers` also goes on to its header edits).
    /// `xff_trusted_hops`: the Gateway's `xffTrustedHops` (0: none).
    pub fn add(
        &mut self,
        snap: &ClusterSnapshot,
        key: &ObjKey,
        m: &Middleware,
        xff_trusted_hops: u32,
    ) -> Result<bool, String> {
        match m {
            Middleware::Headers(h) => {
                if let Some(cors) = &h.cors {
                    self.stage(Stage::Cors, key)?;
                    self.policy.cors = Some(cors_policy(cors)?);
                }
                Ok(false)
            }
            Middleware::IpAllowList(a) => {
                self.stage(Stage::IpAllow, key)?;
                self.policy.ip_allow = Some(ip_allow(a, xff_trusted_hops)?);
                Ok(true)
            }
            Middleware::RateLimit(r) => {
                if let Some(limit) = rate_limit(r, xff_trusted_hops)? {
                    self.stage(Stage::RateLimit, key)?;
                    self.policy.rate_limit = Some(limit);
                }
                Ok(true)
            }
            Middleware::BasicAuth(b) => {
                self.stage(Stage::BasicAuth, key)?;
                self.policy.basic_auth = Some(basic_auth(snap, key, b)?);
                Ok(true)
            }
            Middleware::Buffering(b) => {
                self.stage(Stage::Buffer, key)?;
                self.policy.buffer = Some(buffer(b)?);
                Ok(true)
            }
            Middleware::Retry(r) => {
                if self.policy.retry.is_some() {
                    return Err(
                        "a second retry middleware on one route is not served (Traefik \
                                nests them; Envoy has one retry policy per route)"
                            .into(),
                    );
                }
                if r.attempts > 1 {
                    self.policy.retry = Some(RetryPolicy {
                        num_retries: r.attempts - 1,
                        // Envoy's smallest back-off: Traefik retries at once without one.
                        base_interval_ms: r.initial_interval_ms.unwrap_or(1),
                    });
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Checks that `stage` may come now: once per route, and in Envoy's filter order.
    pub(super) fn stage(&mut self, stage: Stage, key: &ObjKey) -> Result<(), String> {
        if let Some((last, last_key)) = &self.last {
            if *last == stage {
                return Err(format!(
                    "a second {} middleware on one route (after Middleware {last_key}) is not \
                     served: Envoy runs one per route",
                    stage.kind()
                ));
            }
            if *last > stage {
                return Err(format!(
                    "{} after {} (Middleware {last_key}) cannot be served in this order: Envoy \
                     runs {} before {} on every route; list them in that order",
                    stage.kind(),
                    last.kind(),
                    stage.kind(),
                    last.kind()
                ));
            }
        }
        self.last = Some((stage, key.clone()));
        Ok(())
    }
}

/// The `X-Forwarded-For` depth an `ipStrategy` (at `field`) selects, 0 for the TCP peer.
///
/// Envoy computes one client address per listener, from the Gateway's `xffTrustedHops`: with N
/// hops it is the N-th entry from the right of the header as received, which is what Traefik's
/// `depth: N` selects. Any other depth, and `excludedIPs` (the first entry from the right
/// outside some networks), would need another address than Envoy's, so they are refused, as
/// is every strategy on a Gateway that trusts no hop (a client could then write the address
/// it is judged by).
fn forwarded_depth(strategy: &IpStrategy, field: &str, hops: u32) -> Result<u32, String> {
    match strategy {
        IpStrategy::Peer => Ok(0),
        IpStrategy::Depth(_) | IpStrategy::Excluded(_) if hops == 0 => Err(format!(
            "{field} reads X-Forwarded-For, which this Gateway does not trust (its \
             spec.xffTrustedHops is not set): only the TCP peer's address is served"
        )),
        IpStrategy::Depth(d) if *d == hops => Ok(hops),
        IpStrategy::Depth(d) => Err(format!(
            "{field}.depth {d} is not served: the Gateway trusts {hops} X-Forwarded-For \
             hop(s) (spec.xffTrustedHops), so only depth {hops} selects Envoy's client address"
        )),
        IpStrategy::Excluded(_) => Err(format!(
            "{field}.excludedIPs is not served: Envoy finds the client address by counting the \
             Gateway's trusted hops (spec.xffTrustedHops: {hops}), not by excluding networks; \
             use depth {hops}"
        )),
    }
}

fn ip_allow(a: &IpAllowList, hops: u32) -> Result<IpAllowPolicy, String> {
    let forwarded_depth = forwarded_depth(&a.strategy, "ipStrategy", hops)?;
    if a.reject_status != 403 {
        return Err(format!(
            "rejectStatusCode {}: Envoy's RBAC filter answers 403 only",
            a.reject_status
        ));
    }
    if a.source_ranges.len() > MAX_SOURCE_RANGES {
        return Err(format!(
            "sourceRange lists {} networks; at most {MAX_SOURCE_RANGES} are served",
            a.source_ranges.len()
        ));
    }
    // Traefik unmaps an IPv4-mapped network and matches IPv4 clients with it; Envoy's RBAC
    // compares an IPv4 peer as IPv4, so such a network would answer every client 403.
    if let Some(c) = a
        .source_ranges
        .iter()
        .find(|c| super::tcp_match::ipv4_mapped(c))
    {
        return Err(format!(
            "sourceRange `{}/{}`: an IPv4-mapped IPv6 network is not served; write the IPv4 \
             network",
            c.addr, c.prefix_len
        ));
    }
    let mut ranges: Vec<(String, u8)> = a
        .source_ranges
        .iter()
        .map(|c| (c.addr.to_string(), c.prefix_len))
        .collect();
    ranges.sort();
    ranges.dedup();
    Ok(IpAllowPolicy {
        source_ranges: ranges,
        forwarded_depth,
    })
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Traefik's bucket refills continuously at `average` per `period`; Envoy's adds tokens in
/// steps of at least 50 ms. The rate is kept exact with the smallest step of at least 50 ms
/// that adds a whole number of tokens; a step adding more tokens than the bucket holds would
/// lower the rate, so it is refused. `average: 0` means no limit, as in Traefik.
fn rate_limit(r: &RateLimit, hops: u32) -> Result<Option<RateLimitPolicy>, String> {
    if r.average == 0 {
        return Ok(None);
    }
    let key = match &r.source {
        RateSource::Ip(s) => match forwarded_depth(s, "sourceCriterion.ipStrategy", hops)? {
            // Envoy's client address is the TCP peer only while the Gateway trusts no hop.
            0 if hops == 0 => RateKey::PeerIp,
            0 => RateKey::TcpPeer,
            depth => RateKey::ForwardedIp { depth },
        },
        RateSource::RequestHeader(h) => RateKey::Header(h.clone()),
        RateSource::RequestHost => RateKey::Host,
    };
    let average = u64::from(r.average);
    let g = gcd(average, r.period_ms).max(1);
    let (tokens, step) = (average / g, r.period_ms / g);
    let times = MIN_FILL_MS.div_ceil(step.max(1)).max(1);
    let tokens = tokens.saturating_mul(times);
    let fill_interval_ms = step.saturating_mul(times);
    let tokens_per_fill = u32::try_from(tokens)
        .ok()
        .filter(|t| *t <= r.burst)
        .ok_or_else(|| {
            format!(
                "average {} per {} ms adds {tokens} tokens every {fill_interval_ms} ms (Envoy \
                 refills at most every {MIN_FILL_MS} ms), more than burst {} holds: set burst \
                 to at least {tokens}",
                r.average, r.period_ms, r.burst
            )
        })?;
    Ok(Some(RateLimitPolicy {
        max_tokens: r.burst,
        tokens_per_fill,
        fill_interval_ms,
        key,
    }))
}

fn buffer(b: &Buffering) -> Result<BufferPolicy, String> {
    if b.max_request_body_bytes > MAX_BUFFER_BYTES {
        return Err(format!(
            "maxRequestBodyBytes {} is above {MAX_BUFFER_BYTES}: Envoy holds a buffered body \
             in memory shared with every other route",
            b.max_request_body_bytes
        ));
    }
    Ok(BufferPolicy {
        max_request_bytes: b.max_request_body_bytes,
    })
}

fn basic_auth(
    snap: &ClusterSnapshot,
    key: &ObjKey,
    b: &BasicAuth,
) -> Result<BasicAuthPolicy, String> {
    if b.header_field.is_some() {
        return Err(
            "headerField is not served: Envoy names the user header once per \
                    listener, not per route"
                .into(),
        );
    }
    let secret = ObjKey::new(key.namespace.clone(), b.secret.clone());
    let obj = snap
        .secrets
        .get(&secret)
        .ok_or_else(|| format!("users Secret {secret} not found"))?;
    let data: BTreeMap<String, Vec<u8>> = obj
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    let size: usize = data.values().map(Vec::len).sum();
    if size > MAX_USERS_BYTES {
        return Err(format!(
            "users Secret {secret} holds {size} bytes; at most {MAX_USERS_BYTES} are served"
        ));
    }
    let users = mw::basic_auth_users(obj.type_.as_deref(), &data)
        .map_err(|e| format!("users Secret {secret}: {e}"))?;
    if users.len() > MAX_USERS {
        return Err(format!(
            "users Secret {secret} lists {} users; at most {MAX_USERS} are served",
            users.len()
        ));
    }
    Ok(BasicAuthPolicy {
        secret: secret.to_string(),
        users,
        remove_header: b.remove_header,
    })
}

fn cors_policy(c: &Cors) -> Result<CorsPolicy, String> {
    for (field, n) in [
        (
            "accessControlAllowOriginList(Regex)",
            c.allow_origins.len() + c.allow_origin_regexes.len(),
        ),
        ("accessControlAllowMethods", c.allow_methods.len()),
        ("accessControlAllowHeaders", c.allow_headers.len()),
        ("accessControlExposeHeaders", c.expose_headers.len()),
    ] {
        if n > MAX_CORS_ENTRIES {
            return Err(format!(
                "{field} lists {n} entries; at most {MAX_CORS_ENTRIES} are served"
            ));
        }
    }
    let mut origins: Vec<String> = c
        .allow_origins
        .iter()
        .map(|o| {
            if o == "*" {
                "(?s:.*)".to_owned()
            } else {
                regex_syntax::escape(o)
            }
        })
        .collect();
    origins.extend(c.allow_origin_regexes.iter().map(|p| p.envoy_full_match()));
    Ok(CorsPolicy {
        allow_origin_regexes: origins,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        allow_credentials: c.allow_credentials,
        max_age_seconds: c.max_age_seconds,
    })
}
