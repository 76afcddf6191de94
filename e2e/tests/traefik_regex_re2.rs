//! Regexes where Sluice's checker (`traefik::regex`) and Envoy's RE2 could disagree (review 7
//! R7.1 found four kinds the checker accepted and RE2 refused, which froze a listener or route
//! configuration every tenant shares). Each pattern is put, on its own, in an IngressRouteTCP
//! `HostSNIRegexp()` (the shared HTTPS listener's RBAC filter) and in an IngressRoute
//! `PathRegexp()` (a route configuration), next to a victim's Contour root: a pattern must be
//! refused by Sluice or accepted by a real Envoy, never valid and then rejected; and the close
//! neighbours RE2 does accept must stay served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use sluice::dag::{Validity, build, instances};
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::manifests::{doc, service, traefik};

/// Refused by Envoy 1.40's RE2 (once accepted by the checker):
const RE2_REFUSES: &[&str] = &[
    // lower-case one-letter Unicode classes (regex-syntax matches names loosely, RE2 exactly)
    "\\pl",
    "\\p{n}",
    "[^\\pz]",
    "\\Pc",
    // repetition of a repetition (RE2: "bad repetition operator")
    "x**",
    "x*+",
    "x+*",
    "x{2}{3}",
    // nested counted repetitions whose product is above 1000 (RE2: "invalid repetition size")
    "(?:a{2}){501}",
    "(?:(?:a{10}){10}){11}",
    // capture names RE2 does not allow
    "(?P<a.b>x)",
    "(?P<a[0]>x)",
    "(?P<a\u{e9}>x)",
];

/// Their neighbours RE2 accepts: Sluice must serve them.
const RE2_ACCEPTS: &[&str] = &[
    "^\\pL+$",
    "\\p{N}\\PZ[^\\pC]",
    "(?:x*)*",
    "(x+)+",
    "(?:a{2}){500}",
    "(?:(?:a{10}){10}){10}",
    "(?P<sub_1>x)",
    "x{2}",
    "a{0}b{10}c{0,1}",
];

fn world(pattern: &str, tcp: bool) -> String {
    let (kind, spec) = if tcp {
        (
            "IngressRouteTCP",
            json!({"entryPoints": ["websecure"], "tls": {"passthrough": true},
                   "routes": [{"match": format!("HostSNIRegexp(`{pattern}`)"),
                               "services": [{"name": "web", "port": 80}]}]}),
        )
    } else {
        (
            "IngressRoute",
            json!({"entryPoints": ["web"],
                   "routes": [{"match": format!("Host(`evil.example.com`) && PathRegexp(`{pattern}`)"),
                               "services": [{"name": "web", "port": 80}]}]}),
        )
    };
    service("victim", "web", 80, &[8080])
        + &service("evil", "web", 80, &[8080])
        + &doc(&json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": "site",
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"virtualhost": {"fqdn": "victim.example.com"},
                     "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]},
        }))
        + &traefik(kind, "evil", "rx", Some("2025-01-01T00:00:00Z"), spec)
}

#[tokio::test]
async fn a_regex_is_refused_by_sluice_or_accepted_by_envoy() {
    let opts = TranslateOptions::default();
    let mut nacked = Vec::new();
    let mut refused = Vec::new();
    for &pattern in RE2_REFUSES.iter().chain(RE2_ACCEPTS) {
        for tcp in [true, false] {
            let text = world(pattern, tcp);
            let snapshot = sluice::source::load_sources([("w.yaml", text.as_str())]).snapshot;
            let sel = instances(&snapshot).remove(0).local();
            let dag = build(&snapshot, &sel);
            let verdict = dag
                .object_statuses
                .iter()
                .find(|s| s.namespace == "evil" && s.name == "rx")
                .map(|s| (s.current_status, s.description.clone()))
                .unwrap();
            if verdict.0 != Validity::Valid {
                if RE2_ACCEPTS.contains(&pattern) {
                    refused.push(format!("tcp={tcp} {pattern}: {}", verdict.1));
                }
                continue;
            }
            let resources = translate(&dag, &opts).unwrap();
            let bootstrap = inline_bootstrap(&resources, &opts).unwrap();
            let json = serde_json::to_string(&message_to_json(&bootstrap).unwrap()).unwrap();
            if let Err(e) = sluice_e2e::envoy::validate(&json).await {
                let why = e.to_string();
                let line = why
                    .lines()
                    .find(|l| l.contains("error initializing") || l.contains("regex"))
                    .unwrap_or("")
                    .to_owned();
                println!("NACK tcp={tcp} {pattern}: {line}");
                nacked.push(format!("tcp={tcp} {pattern}"));
            }
        }
    }
    assert!(
        nacked.is_empty(),
        "valid objects whose configuration Envoy rejects:\n{}",
        nacked.join("\n")
    );
    assert!(
        refused.is_empty(),
        "patterns RE2 accepts, refused:\n{}",
        refused.join("\n")
    );
}
