#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::api::traefik::{Middleware as Mw, decode};

fn model(spec: serde_json::Value) -> Result<Middleware, String> {
    let d = decode::<Mw>(json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
        "metadata": {"name": "m", "namespace": "ns"}, "spec": spec
    }))
    .unwrap();
    build(&d.decoded.unwrap().spec, &d.ignored)
}

fn refused(spec: serde_json::Value, want: &str) {
    let e = model(spec.clone()).expect_err(&spec.to_string());
    assert!(e.contains(want), "{spec}: {e}");
}

#[test]
fn kinds_are_refused_by_name_and_one_is_required() {
    refused(
        json!({"digestAuth": {"secret": "s"}}),
        "spec.digestAuth: middleware kind \"digestAuth\"",
    );
    refused(json!({"plugin": {"x": {}}}), "\"plugin\" is not supported");
    refused(json!({}), "sets no middleware kind");
    refused(
        json!({"addPrefix": {"prefix": "/a"}, "retry": {"attempts": 2}}),
        "several middleware kinds (addPrefix, retry)",
    );
    refused(
        json!({"retry": {"attempts": 2, "status": ["500"]}}),
        "spec.retry.status: field not supported",
    );
}

#[test]
fn path_middlewares() {
    assert_eq!(
        model(json!({"stripPrefix": {"prefixes": ["/api", "/v1"]}})),
        Ok(Middleware::StripPrefix {
            prefixes: vec!["/api".into(), "/v1".into()]
        })
    );
    refused(
        json!({"stripPrefix": {"prefixes": []}}),
        "spec.stripPrefix.prefixes",
    );
    refused(
        json!({"stripPrefix": {"prefixes": ["/a", "b"]}}),
        "spec.stripPrefix.prefixes[1]",
    );
    refused(
        json!({"addPrefix": {"prefix": "/a b"}}),
        "spec.addPrefix.prefix",
    );
    refused(
        json!({"stripPrefixRegex": {"regex": ["[a-z&&b]"]}}),
        "spec.stripPrefixRegex.regex[0]",
    );
    let Ok(Middleware::ReplacePathRegex { replacement, .. }) = model(
        json!({"replacePathRegex": {"regex": "^/foo/(.*)/(x)", "replacement": "/bar/$1/${2}$$\\"}}),
    ) else {
        panic!()
    };
    assert_eq!(replacement, "/bar/\\1/\\2$\\\\");
    refused(
        json!({"replacePathRegex": {"regex": "^/(.*)", "replacement": "/$2"}}),
        "1 capturing groups",
    );
    refused(
        json!({"replacePathRegex": {"regex": "^/(?P<n>.*)", "replacement": "/${n}"}}),
        "numbered groups",
    );
}

#[test]
fn redirects() {
    assert_eq!(
        model(json!({"redirectScheme": {"scheme": "https", "port": "443", "permanent": true}})),
        Ok(Middleware::RedirectScheme {
            https: true,
            port: None,
            permanent: true
        })
    );
    assert_eq!(
        model(json!({"redirectScheme": {"scheme": "https", "port": "8443"}})),
        Ok(Middleware::RedirectScheme {
            https: true,
            port: Some(8443),
            permanent: false
        })
    );
    refused(
        json!({"redirectScheme": {"scheme": "ftp"}}),
        "must be http or https",
    );
    refused(
        json!({"redirectScheme": {"scheme": "https", "port": "99999"}}),
        ".port",
    );
    refused(
        json!({"redirectRegex": {"regex": "(", "replacement": "x"}}),
        "spec.redirectRegex.regex",
    );
}

#[test]
fn headers_cors_and_security() {
    let Ok(Middleware::Headers(h)) = model(json!({"headers": {
        "customRequestHeaders": {"X-Script-Name": "test", "X-Remove": "", "Host": "internal.example"},
        "customResponseHeaders": {"X-Server": ""},
        "accessControlAllowMethods": ["get", "OPTIONS"],
        "accessControlAllowOriginList": ["https://a.example.com", "*"],
        "accessControlMaxAge": 100,
        "stsSeconds": 60, "stsIncludeSubdomains": true, "frameDeny": true,
        "contentTypeNosniff": true
    }})) else {
        panic!()
    };
    assert_eq!(h.request_set, vec![("x-script-name".into(), "test".into())]);
    assert_eq!(h.request_remove, vec!["x-remove".to_owned()]);
    assert_eq!(h.host_rewrite.as_deref(), Some("internal.example"));
    assert_eq!(h.response_remove, vec!["x-server".to_owned()]);
    let cors = h.cors.unwrap();
    assert_eq!(cors.allow_methods, ["GET", "OPTIONS"]);
    assert_eq!(cors.max_age_seconds, Some(100));
    assert_eq!(
        h.security,
        vec![
            (
                "strict-transport-security".into(),
                "max-age=60; includeSubDomains".into()
            ),
            ("x-content-type-options".into(), "nosniff".into()),
            ("x-frame-options".into(), "DENY".into()),
        ]
    );
    refused(
        json!({"headers": {"customRequestHeaders": {"X-A": "a\r\nb"}}}),
        "customRequestHeaders.X-A",
    );
    refused(
        json!({"headers": {"customRequestHeaders": {"Bad Name": "x"}}}),
        "not a header name",
    );
    refused(
        json!({"headers": {"customResponseHeaders": {"Connection": "x"}}}),
        "Envoy does not let",
    );
    refused(
        json!({"headers": {"accessControlAllowOriginList": ["https://a.com/path"]}}),
        "no path",
    );
    refused(json!({"headers": {"accessControlMaxAge": -1}}), "negative");
    refused(
        json!({"headers": {"sslProxyHeaders": {"X-Forwarded-Proto": "https"}}}),
        "sslProxyHeaders",
    );
}

/// `isDevelopment: true`, as Traefik's (unrolled/secure's `IsDevelopment`): `allowedHosts`
/// and the STS options (`stsSeconds`, `forceSTSHeader`, ...) are ignored, even a name
/// `allowedHosts` would refuse; every other security header and custom header is kept.
#[test]
fn is_development_ignores_allowed_hosts_and_sts_only() {
    let headers = |dev: bool, hosts: serde_json::Value| {
        json!({"headers": {
            "isDevelopment": dev,
            "allowedHosts": hosts,
            "stsSeconds": 60, "stsIncludeSubdomains": true, "stsPreload": true,
            "forceSTSHeader": true,
            "frameDeny": true, "contentSecurityPolicy": "default-src 'self'",
            "customResponseHeaders": {"X-Dev": "yes"},
        }})
    };
    let Ok(Middleware::Headers(prod)) = model(headers(false, json!(["A.example.com"]))) else {
        panic!()
    };
    assert_eq!(prod.allowed_hosts, ["a.example.com"]);
    assert!(prod.sts_on_plain_http);
    assert!(
        prod.security
            .iter()
            .any(|(k, v)| k == "strict-transport-security"
                && v == "max-age=60; includeSubDomains; preload"),
        "{:?}",
        prod.security
    );
    let Ok(Middleware::Headers(dev)) =
        model(headers(true, json!(["A.example.com", "not a host!"])))
    else {
        panic!()
    };
    assert!(dev.allowed_hosts.is_empty());
    assert!(!dev.sts_on_plain_http);
    assert_eq!(
        dev.security,
        [
            (
                "content-security-policy".to_owned(),
                "default-src 'self'".to_owned()
            ),
            ("x-frame-options".to_owned(), "DENY".to_owned()),
        ]
    );
    assert_eq!(dev.response_set, [("x-dev".to_owned(), "yes".to_owned())]);
    // Without it, that name is refused.
    refused(headers(false, json!(["not a host!"])), "allowedHosts[0]");
}

#[test]
fn ip_allow_list_and_rate_limit() {
    let Ok(Middleware::IpAllowList(a)) = model(json!({"ipWhiteList": {
        "sourceRange": ["10.0.0.0/8", "2001:db8::1"], "ipStrategy": {"depth": 2, "excludedIPs": ["1.2.3.4"]}
    }})) else {
        panic!()
    };
    assert_eq!(a.source_ranges.len(), 2);
    assert_eq!(
        a.strategy,
        IpStrategy::Depth(2),
        "depth wins over excludedIPs"
    );
    assert_eq!(a.reject_status, 403);
    refused(
        json!({"ipAllowList": {"sourceRange": []}}),
        "spec.ipAllowList.sourceRange",
    );
    refused(
        json!({"ipAllowList": {"sourceRange": ["10.0.0.0/33"]}}),
        "sourceRange[0]",
    );
    refused(
        json!({"ipAllowList": {"sourceRange": ["x"]}}),
        "sourceRange[0]",
    );
    let Ok(Middleware::RateLimit(r)) =
        model(json!({"rateLimit": {"average": 100, "period": "1m", "burst": 0}}))
    else {
        panic!()
    };
    assert_eq!((r.average, r.period_ms, r.burst), (100, 60_000, 1));
    assert_eq!(r.source, RateSource::Ip(IpStrategy::Peer));
    let Ok(Middleware::RateLimit(r)) = model(
        json!({"rateLimit": {"average": 5, "period": 2, "sourceCriterion": {"requestHeaderName": "X-User"}}}),
    ) else {
        panic!()
    };
    assert_eq!(
        (r.period_ms, r.source),
        (2000, RateSource::RequestHeader("x-user".into()))
    );
    refused(
        json!({"rateLimit": {"average": 1, "period": "10ms"}}),
        "at least 50ms",
    );
    refused(json!({"rateLimit": {"average": -1}}), ".average");
    refused(
        json!({"rateLimit": {"sourceCriterion": {"requestHost": true, "requestHeaderName": "a"}}}),
        "only one of",
    );
}

#[test]
fn retry_compress_buffering_chain_forward_auth() {
    assert_eq!(
        model(json!({"retry": {"attempts": 3, "initialInterval": "100ms"}})),
        Ok(Middleware::Retry(Retry {
            attempts: 3,
            initial_interval_ms: Some(100)
        }))
    );
    refused(json!({"retry": {"attempts": 0}}), "spec.retry.attempts");
    let Ok(Middleware::Compress(c)) =
        model(json!({"compress": {"excludedContentTypes": ["text/event-stream"]}}))
    else {
        panic!()
    };
    assert_eq!((c.encodings.len(), c.min_response_body_bytes), (3, 1024));
    refused(
        json!({"compress": {"encodings": ["deflate"]}}),
        "encodings[0]",
    );
    refused(
        json!({"compress": {"excludedContentTypes": ["a/b"], "includedContentTypes": ["c/d"]}}),
        "cannot be used with",
    );
    assert_eq!(
        model(json!({"buffering": {"maxRequestBodyBytes": 2000000}})),
        Ok(Middleware::Buffering(Buffering {
            max_request_body_bytes: 2_000_000
        }))
    );
    refused(
        json!({"buffering": {"maxRequestBodyBytes": 10, "retryExpression": "IsNetworkError()"}}),
        "retryExpression",
    );
    refused(json!({"buffering": {}}), "set one");
    refused(
        json!({"chain": {"middlewares": [{"name": "a@file"}]}}),
        "name@provider",
    );
    let Ok(Middleware::ForwardAuth(f)) = model(json!({"forwardAuth": {
        "address": "https://auth.example.com:8443/verify?x=1",
        "authResponseHeaders": ["X-User"], "trustForwardHeader": true
    }})) else {
        panic!()
    };
    assert_eq!(
        (f.https, f.host.as_str(), f.port, f.path.as_str()),
        (true, "auth.example.com", 8443, "/verify?x=1")
    );
    assert_eq!(f.auth_response_headers, ["x-user"]);
    refused(
        json!({"forwardAuth": {"address": "auth:80"}}),
        "http:// or https://",
    );
    refused(
        json!({"forwardAuth": {"address": "http://a b/"}}),
        ".address",
    );
}

#[test]
fn basic_auth_users_in_both_secret_formats() {
    let mut data = BTreeMap::new();
    data.insert("username".to_owned(), b"alice".to_vec());
    data.insert("password".to_owned(), b"password".to_vec());
    // SHA-1 of "password", base64: the {SHA} form htpasswd -s writes.
    assert_eq!(
        basic_auth_users(Some("kubernetes.io/basic-auth"), &data),
        Ok(vec!["alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".to_owned()])
    );
    let users = |text: &str| {
        let mut d = BTreeMap::new();
        d.insert("users".to_owned(), text.as_bytes().to_vec());
        basic_auth_users(None, &d)
    };
    assert_eq!(
        users("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\n"),
        Ok(vec!["bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".to_owned()])
    );
    let e = users("a:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbob:$apr1$abc$def").unwrap_err();
    assert!(e.contains("line 2") && e.contains("Apr1"), "{e}");
    assert!(users("bob:$2y$05$abc").unwrap_err().contains("Bcrypt"));
    assert!(basic_auth_users(None, &BTreeMap::new()).is_err());
    assert!(model(json!({"basicAuth": {"secret": ""}})).is_err());
    assert_eq!(
        model(json!({"basicAuth": {"secret": "users", "headerField": "X-User"}})),
        Ok(Middleware::BasicAuth(BasicAuth {
            secret: "users".into(),
            realm: "traefik".into(),
            remove_header: false,
            header_field: Some("x-user".into()),
        }))
    );
}
