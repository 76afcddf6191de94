//! `headers.allowedHosts`: Traefik answers a request whose Host is in none of the listed names
//! (compared case-insensitively with the Host as sent, port included) with `500 Bad Host`, the
//! default of the library its `headers` middleware uses. Served as an Envoy route placed before
//! each of the route's own, with the same conditions plus "`:authority` is none of the names",
//! answering that 500 directly.
//!
//! Envoy runs the listener's HTTP filters (CORS, IP allow list, rate limit, basic auth,
//! buffering) before any route answers, so `allowedHosts` listed before one of those
//! middlewares would answer later than in Traefik: refused, naming the order. Several
//! `allowedHosts` lists all apply (a Host must be in each).

use crate::dag::model::{DirectResponse, HeaderCondition, RouteExtra, ValueCondition};
use crate::dag::policy::RoutePolicy;

/// Most names one route's `allowedHosts` may list (each is one alternative of a regex).
pub const MAX_ALLOWED_HOSTS: usize = 64;

/// Traefik's answer to a Host it does not allow (Go's `http.Error` adds the newline).
pub const BAD_HOST_STATUS: u16 = 500;
pub const BAD_HOST_BODY: &str = "Bad Host\n";

/// The names a route allows, and what came before them in its middleware list.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct AllowedHosts {
    /// Lower-case; empty: no Host is allowed (the lists had nothing in common).
    pub hosts: Vec<String>,
    /// The filter policies set when the first list came (later ones would run too early).
    policy_before: RoutePolicy,
    /// A `redirectScheme` came before: the requests it redirects are never checked.
    pub after_redirect: bool,
}

/// Adds one `allowedHosts` list (`hosts`, lower-case) to what the route allows so far.
pub(super) fn add(
    known: Option<AllowedHosts>,
    hosts: &[String],
    policy: &RoutePolicy,
    redirect_before: bool,
) -> Result<AllowedHosts, String> {
    if hosts.len() > MAX_ALLOWED_HOSTS {
        return Err(format!("allowedHosts: more than {MAX_ALLOWED_HOSTS} names"));
    }
    Ok(match known {
        None => AllowedHosts {
            hosts: hosts.to_vec(),
            policy_before: without_retry(policy),
            after_redirect: redirect_before,
        },
        Some(mut a) => {
            a.hosts.retain(|h| hosts.contains(h));
            a
        }
    })
}

/// Refuses a route whose filter middlewares come after its first `allowedHosts`.
pub(super) fn check_order(a: Option<&AllowedHosts>, policy: &RoutePolicy) -> Result<(), String> {
    match a {
        Some(a) if a.policy_before != without_retry(policy) => Err(
            "a headers middleware with allowedHosts is listed before a CORS, ipAllowList, \
             rateLimit, basicAuth or buffering middleware: Envoy runs those first, so a request \
             for another host would get their answer where Traefik answers 500 Bad Host; list \
             allowedHosts after them"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// `retry` only acts on a backend's failures, so its place in the list changes nothing.
fn without_retry(p: &RoutePolicy) -> RoutePolicy {
    RoutePolicy {
        retry: None,
        ..p.clone()
    }
}

/// The route that answers requests of `extra`'s route whose Host is not allowed.
pub(super) fn bad_host_route(extra: &RouteExtra, a: &AllowedHosts) -> RouteExtra {
    let mut bad = extra.clone();
    if !a.hosts.is_empty() {
        let names: Vec<String> = a.hosts.iter().map(|h| regex_syntax::escape(h)).collect();
        bad.headers.push(HeaderCondition {
            name: ":authority".to_owned(),
            value: ValueCondition::Regex(format!("(?i:{})", names.join("|"))),
            invert: true,
        });
    }
    bad.redirect = None;
    bad.path_rewrite = None;
    bad.host_rewrite = None;
    bad.request_headers_set.clear();
    bad.request_headers_remove.clear();
    bad.mirrors.clear();
    bad.service_options = None;
    // As Go's `http.Error` writes it.
    for (name, value) in [
        ("content-type", "text/plain; charset=utf-8"),
        ("x-content-type-options", "nosniff"),
    ] {
        bad.response_headers_set.retain(|(n, _)| n != name);
        bad.response_headers_remove.retain(|n| n != name);
        bad.response_headers_set
            .push((name.to_owned(), value.to_owned()));
    }
    bad.response_headers_set.sort();
    bad.direct_response = Some(DirectResponse {
        status: BAD_HOST_STATUS,
        body: BAD_HOST_BODY.to_owned(),
    });
    bad
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use crate::dag::model::{Dag, Route, ValueCondition};
    use crate::dag::{Selection, build};

    fn dag_of(yaml: &str) -> Dag {
        let report = crate::source::load_sources([("fixture.yaml", yaml)]);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        build(&report.snapshot, &Selection::default_instance())
    }

    fn middleware(name: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: {name}, \
             namespace: apps}}\nspec: {spec}\n"
        )
    }

    fn ir(middlewares: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: apps}}\n\
             spec: {{ports: [{{port: 80}}]}}\n---\napiVersion: traefik.io/v1alpha1\nkind: \
             IngressRoute\nmetadata: {{name: r, namespace: apps}}\nspec:\n  routes:\n  - match: \
             Host(`a.example.com`) || Host(`b.example.com`)\n    middlewares: {middlewares}\n    \
             services: [{{name: web, port: 80}}]\n"
        )
    }

    fn status(dag: &Dag) -> (&'static str, String) {
        let s = dag.object_statuses.iter().find(|s| s.name == "r").unwrap();
        (s.current_status.as_str(), s.description.clone())
    }

    fn routes<'a>(dag: &'a Dag, fqdn: &str) -> &'a [Route] {
        &dag.virtual_hosts
            .iter()
            .find(|v| v.fqdn == fqdn)
            .unwrap()
            .routes
    }

    #[test]
    fn other_hosts_get_500_before_the_route_and_lists_intersect() {
        let yaml = middleware(
            "h1",
            "{headers: {allowedHosts: [a.example.com, C.example.com]}}",
        ) + &middleware(
            "h2",
            "{headers: {allowedHosts: [a.example.com, b.example.com]}}",
        ) + &ir("[{name: h1}, {name: h2}]");
        let dag = dag_of(&yaml);
        assert_eq!(status(&dag).0, "valid", "{}", status(&dag).1);
        for fqdn in ["a.example.com", "b.example.com"] {
            let rs = routes(&dag, fqdn);
            assert_eq!(rs.len(), 2, "{fqdn}");
            let bad = rs[0].extra.as_deref().unwrap();
            let direct = bad.direct_response.as_ref().unwrap();
            assert_eq!((direct.status, direct.body.as_str()), (500, "Bad Host\n"));
            let host = bad.headers.iter().find(|h| h.name == ":authority").unwrap();
            assert!(host.invert);
            assert_eq!(
                host.value,
                ValueCondition::Regex("(?i:a\\.example\\.com)".into()),
                "only the names both lists allow"
            );
            assert!(rs[1].extra.as_deref().unwrap().direct_response.is_none());
        }
    }

    #[test]
    fn allowed_hosts_before_a_filter_middleware_is_refused() {
        let mws = middleware("h", "{headers: {allowedHosts: [a.example.com]}}")
            + &middleware("ip", "{ipAllowList: {sourceRange: [10.0.0.0/8]}}")
            + &middleware("retry", "{retry: {attempts: 2}}");
        let dag = dag_of(&(mws.clone() + &ir("[{name: h}, {name: ip}]")));
        let (verdict, description) = status(&dag);
        assert_eq!(verdict, "invalid");
        assert!(
            description
                .contains("spec.routes[0].middlewares: a headers middleware with allowedHosts"),
            "{description}"
        );
        for order in ["[{name: ip}, {name: h}]", "[{name: h}, {name: retry}]"] {
            let dag = dag_of(&(mws.clone() + &ir(order)));
            assert_eq!(status(&dag).0, "valid", "{order}: {}", status(&dag).1);
        }
    }

    #[test]
    fn a_redirect_listed_first_answers_before_the_host_check() {
        let mws = middleware("h", "{headers: {allowedHosts: [a.example.com]}}")
            + &middleware("https", "{redirectScheme: {scheme: https}}");
        let first = dag_of(&(mws.clone() + &ir("[{name: https}, {name: h}]")));
        assert!(
            routes(&first, "a.example.com").iter().all(|r| r
                .extra
                .as_deref()
                .unwrap()
                .direct_response
                .is_none())
        );
        let after = dag_of(&(mws + &ir("[{name: h}, {name: https}]")));
        let rs = routes(&after, "a.example.com");
        assert_eq!(rs.len(), 3);
        assert!(rs[0].extra.as_deref().unwrap().direct_response.is_some());
    }
}
