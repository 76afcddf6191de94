//! Every manifest under `examples/traefik/` decodes with Sluice's Traefik types (nothing
//! ignored), every route's rule parses and translates, and every Middleware builds. One
//! directory per feature; each must hold at least one Traefik object.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice::api::traefik::{self as api, Decoded};
use sluice::traefik::matcher::Syntax;
use sluice::traefik::{matches, middleware, tcp};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/traefik")
}

fn decoded<K: DeserializeOwned>(doc: &Value, at: &str) -> K {
    let d: Decoded<K> = api::decode(doc.clone()).unwrap_or_else(|| panic!("{at}: not Traefik"));
    assert!(d.ignored.is_empty(), "{at}: ignored {:?}", d.ignored);
    d.decoded.unwrap_or_else(|e| panic!("{at}: {e}"))
}

/// Checks one Traefik document; returns its kind.
fn check(doc: &Value, at: &str) -> String {
    let kind = doc["kind"].as_str().unwrap().to_owned();
    match kind.as_str() {
        "IngressRoute" => {
            let ir: api::IngressRoute = decoded(doc, at);
            for (i, r) in ir.spec.routes.iter().enumerate() {
                let (syntax, unknown) = Syntax::select(r.syntax.as_deref(), Syntax::V3);
                assert!(!unknown, "{at}: routes[{i}].syntax");
                let rule = matches::http_rule(&r.match_, syntax, r.priority)
                    .unwrap_or_else(|e| panic!("{at}: routes[{i}].match: {e}"));
                assert!(!rule.matches.is_empty());
            }
        }
        "IngressRouteTCP" => {
            let ir: api::IngressRouteTCP = decoded(doc, at);
            for (i, r) in ir.spec.routes.iter().enumerate() {
                let (syntax, _) = Syntax::select(r.syntax.as_deref(), Syntax::V3);
                tcp::tcp_rule(&r.match_, syntax, r.priority)
                    .unwrap_or_else(|e| panic!("{at}: routes[{i}].match: {e}"));
            }
        }
        "Middleware" => {
            let d: Decoded<api::Middleware> = api::decode(doc.clone()).unwrap();
            let mw = d.decoded.as_ref().unwrap();
            middleware::build(&mw.spec, &d.ignored).unwrap_or_else(|e| panic!("{at}: {e}"));
        }
        "TraefikService" => {
            let ts: api::TraefikService = decoded(doc, at);
            assert!(ts.spec.other.is_empty(), "{at}");
            assert!(
                ts.spec.weighted.is_some() != ts.spec.mirroring.is_some(),
                "{at}"
            );
        }
        "TLSOption" => drop(decoded::<api::TLSOption>(doc, at)),
        "TLSStore" => drop(decoded::<api::TLSStore>(doc, at)),
        "ServersTransport" => drop(decoded::<api::ServersTransport>(doc, at)),
        other => panic!("{at}: unexpected Traefik kind {other}"),
    }
    kind
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn every_traefik_example_decodes_parses_and_builds() {
    let mut kinds = std::collections::BTreeSet::new();
    let mut groups = 0;
    for group in std::fs::read_dir(dir()).unwrap() {
        let group = group.unwrap().path();
        assert!(
            group.is_dir(),
            "{}: one directory per feature",
            group.display()
        );
        groups += 1;
        let mut traefik_docs = 0;
        for file in std::fs::read_dir(&group).unwrap() {
            let file = file.unwrap().path();
            for (i, doc) in documents(&file).iter().enumerate() {
                let at = format!("{}: document {}", file.display(), i + 1);
                let api_version = doc["apiVersion"].as_str().unwrap_or_default();
                if api::Group::of_api_version(api_version).is_some() {
                    kinds.insert(check(doc, &at));
                    traefik_docs += 1;
                }
            }
        }
        assert!(traefik_docs > 0, "{}: no Traefik object", group.display());
    }
    assert!(groups >= 7, "{groups} groups");
    assert_eq!(kinds.len(), 7, "every kind has an example: {kinds:?}");
}
