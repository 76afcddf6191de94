//! Routes with conditions and filters beyond a path prefix ([`RouteExtra`], Traefik's): their
//! Envoy match (exact, prefix or regex path; headers; query parameters) and what they add to
//! the route (a redirect instead of forwarding, a path rewrite, header edits, a host rewrite).

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, data_source, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction,
    Route as EnvoyRoute, RouteMatch, header_matcher, query_parameter_matcher, redirect_action,
    route, route_action, route_match,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher,
};

use crate::dag::model::{PathKind, Redirect, Route, RouteExtra, ValueCondition};

/// The Envoy match of `r` at `prefix` (the route's own path, or a variant of it).
pub(super) fn route_match(r: &Route, prefix: &str) -> RouteMatch {
    let Some(extra) = r.extra.as_deref() else {
        return RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(prefix.to_owned())),
            ..Default::default()
        };
    };
    let path = match extra.path {
        PathKind::Prefix => route_match::PathSpecifier::Prefix(prefix.to_owned()),
        PathKind::Exact => route_match::PathSpecifier::Path(prefix.to_owned()),
        PathKind::Regex => route_match::PathSpecifier::SafeRegex(regex(prefix)),
    };
    RouteMatch {
        path_specifier: Some(path),
        headers: extra
            .headers
            .iter()
            .map(|h| HeaderMatcher {
                name: h.name.clone(),
                invert_match: h.invert,
                // Traefik's `!Header()` holds where the header is missing (no value matches);
                // Envoy's inverted value match is false there unless the header counts as
                // empty (see `traefik::matches::HeaderMatch`). Pseudo-headers (`:authority`,
                // `:method`, `:path`) are never missing.
                treat_missing_header_as_empty: h.invert
                    && !h.name.starts_with(':')
                    && !matches!(h.value, ValueCondition::Present),
                header_match_specifier: Some(match &h.value {
                    ValueCondition::Present => {
                        header_matcher::HeaderMatchSpecifier::PresentMatch(true)
                    }
                    v => header_matcher::HeaderMatchSpecifier::StringMatch(string_matcher(v)),
                }),
            })
            .collect(),
        query_parameters: extra
            .query
            .iter()
            .map(|q| QueryParameterMatcher {
                name: q.name.clone(),
                query_parameter_match_specifier: Some(match &q.value {
                    ValueCondition::Present => {
                        query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)
                    }
                    v => query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                        string_matcher(v),
                    ),
                }),
            })
            .collect(),
        filter_state: super::client_ip::matchers(&extra.sources),
        ..Default::default()
    }
}

/// Adds `r`'s filters to a forwarding route: a redirect replaces the action; a path or host
/// rewrite goes into it; header edits go on the route.
pub(super) fn decorate(r: &Route, envoy: &mut EnvoyRoute) {
    let Some(extra) = r.extra.as_deref() else {
        return;
    };
    if let Some(direct) = &extra.direct_response {
        envoy.action = Some(route::Action::DirectResponse(DirectResponseAction {
            status: u32::from(direct.status),
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(direct.body.clone())),
                ..Default::default()
            }),
            ..Default::default()
        }));
        edit_headers(extra, envoy);
        super::policies::apply(extra, envoy);
        return;
    }
    if let Some(redirect) = &extra.redirect {
        envoy.action = Some(route::Action::Redirect(redirect_action_of(redirect)));
        super::policies::apply(extra, envoy);
        return;
    }
    if let Some(route::Action::Route(action)) = &mut envoy.action {
        if let Some(rw) = &extra.path_rewrite {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex(&rw.pattern)),
                substitution: rw.substitution.clone(),
            });
        }
        if let Some(host) = &extra.host_rewrite {
            action.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewriteLiteral(host.clone()),
            );
        }
        action.request_mirror_policies = super::mirrors::policies(&extra.mirrors);
        if let Some(options) = &extra.service_options {
            super::service_options::route(options, action);
        }
    }
    edit_headers(extra, envoy);
    super::policies::apply(extra, envoy);
    super::service_options::compression(extra, envoy);
}

fn edit_headers(extra: &RouteExtra, envoy: &mut EnvoyRoute) {
    envoy.request_headers_to_add = set_headers(&extra.request_headers_set);
    envoy.request_headers_to_remove = extra.request_headers_remove.clone();
    envoy.response_headers_to_add = set_headers(&extra.response_headers_set);
    envoy.response_headers_to_remove = extra.response_headers_remove.clone();
}

/// Header edits, each value literal: Envoy reads `%…%` in a header value as a substitution
/// command (`%ENVIRONMENT(X)%` would copy Envoy's environment into responses, a lone `%` makes
/// it refuse the route configuration), so every `%` a tenant wrote is escaped as `%%`.
fn set_headers(list: &[(String, String)]) -> Vec<HeaderValueOption> {
    list.iter()
        .map(|(key, value)| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.clone(),
                value: literal_header_value(value),
                ..Default::default()
            }),
            append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        })
        .collect()
}

/// `value` as Envoy's header formatter reads it literally.
pub(super) fn literal_header_value(value: &str) -> String {
    value.replace('%', "%%")
}

fn redirect_action_of(r: &Redirect) -> RedirectAction {
    use redirect_action::RedirectResponseCode as Code;
    let code = match r.status {
        302 => Code::Found,
        307 => Code::TemporaryRedirect,
        308 => Code::PermanentRedirect,
        _ => Code::MovedPermanently,
    };
    RedirectAction {
        response_code: code as i32,
        port_redirect: r.port.map_or(0, u32::from),
        host_redirect: r.host.clone().unwrap_or_default(),
        // A Traefik redirectRegex's path; Envoy keeps the query after it.
        path_rewrite_specifier: r.path.as_ref().map(|rw| {
            redirect_action::PathRewriteSpecifier::RegexRewrite(RegexMatchAndSubstitute {
                pattern: Some(regex(&rw.pattern)),
                substitution: rw.substitution.clone(),
            })
        }),
        scheme_rewrite_specifier: Some(if r.scheme == "https" {
            redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true)
        } else {
            redirect_action::SchemeRewriteSpecifier::SchemeRedirect(r.scheme.clone())
        }),
        ..Default::default()
    }
}

fn regex(source: &str) -> RegexMatcher {
    RegexMatcher {
        regex: source.to_owned(),
        ..Default::default()
    }
}

fn string_matcher(v: &ValueCondition) -> StringMatcher {
    let pattern = match v {
        ValueCondition::Exact(s) => string_matcher::MatchPattern::Exact(s.clone()),
        ValueCondition::Regex(r) => string_matcher::MatchPattern::SafeRegex(regex(r)),
        ValueCondition::Present => string_matcher::MatchPattern::SafeRegex(regex("(?s:.*)")),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dag::model::HeaderCondition;

    fn with_headers(headers: Vec<HeaderCondition>) -> Route {
        Route {
            prefix: "/".into(),
            owner: "apps/x".into(),
            clusters: Vec::new(),
            permit_insecure: false,
            websocket: false,
            prefix_rewrite: None,
            timeout: None,
            retry: None,
            session_affinity: false,
            extra: Some(Box::new(RouteExtra {
                headers,
                ..RouteExtra::default()
            })),
        }
    }

    fn condition(name: &str, value: ValueCondition, invert: bool) -> HeaderCondition {
        HeaderCondition {
            name: name.into(),
            value,
            invert,
        }
    }

    /// Traefik's `!Header(`X-Block`, `yes`)` holds for a request without X-Block; Envoy's
    /// inverted match is false on a missing header unless it counts as empty. A presence match
    /// keeps Envoy's own reading (inverted: the header is absent), and so do plain matches and
    /// pseudo-headers, which are never missing.
    #[test]
    fn an_inverted_value_match_holds_where_the_header_is_missing() {
        let r = with_headers(vec![
            condition("x-block", ValueCondition::Exact("yes".into()), true),
            condition(
                "x-agent",
                ValueCondition::Regex("(?s:.*)bot(?s:.*)".into()),
                true,
            ),
            condition("x-flag", ValueCondition::Present, true),
            condition("x-env", ValueCondition::Exact("prod".into()), false),
            condition(":authority", ValueCondition::Exact("a.com".into()), true),
        ]);
        let m = route_match(&r, "/");
        let missing_as_empty: Vec<(&str, bool)> = m
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.treat_missing_header_as_empty))
            .collect();
        assert_eq!(
            missing_as_empty,
            [
                ("x-block", true),
                ("x-agent", true),
                ("x-flag", false),
                ("x-env", false),
                (":authority", false)
            ]
        );
    }
}
