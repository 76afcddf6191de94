//! Own verdicts of the Traefik objects routes use (`verdicts`): given whether a route uses the
//! object or not, under the Gateway's selection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::dag::model::{Dag, Validity};
use crate::dag::{Selection, build};
use crate::snapshot::ClusterSnapshot;

fn snapshot(yaml: &str) -> ClusterSnapshot {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.snapshot
}

fn object(group: &str, kind: &str, ns: &str, name: &str, extra_meta: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: {group}/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  \
         namespace: {ns}\n{extra_meta}spec:\n{spec}"
    )
}

fn io(kind: &str, ns: &str, name: &str, spec: &str) -> String {
    object("traefik.io", kind, ns, name, "", spec)
}

/// `(kind, namespace/name, status, description)` of every verdict of `dag` but the routes'.
fn verdicts(dag: &Dag) -> Vec<(String, String, Validity, String)> {
    dag.object_statuses
        .iter()
        .filter(|s| s.kind != "IngressRoute" && s.kind != "IngressRouteTCP")
        .map(|s| {
            (
                s.kind.clone(),
                format!("{}/{}", s.namespace, s.name),
                s.current_status,
                s.description.clone(),
            )
        })
        .collect()
}

fn one(dag: &Dag, kind: &str, key: &str) -> (Validity, String) {
    let found = verdicts(dag)
        .into_iter()
        .find(|(k, n, _, _)| k == kind && n == key)
        .unwrap_or_else(|| panic!("no verdict on {kind} {key}: {:#?}", verdicts(dag)));
    (found.2, found.3)
}

fn invalid(dag: &Dag, kind: &str, key: &str, want: &str) {
    let (v, d) = one(dag, kind, key);
    assert_eq!(v, Validity::Invalid, "{kind} {key}: {d}");
    assert!(d.contains(want), "{kind} {key}: {d:?} lacks {want:?}");
}

#[test]
fn unused_objects_get_a_verdict_from_their_own_fields() {
    let yaml = [
        io("Middleware", "a", "good", "  addPrefix: {prefix: /p}\n"),
        io("Middleware", "a", "plugin", "  plugin: {x: {}}\n"),
        io(
            "Middleware",
            "a",
            "chain",
            "  chain: {middlewares: [{name: good, namespace: b}]}\n",
        ),
        io(
            "TraefikService",
            "a",
            "ts",
            "  weighted: {services: [{name: s, port: 80}]}\n",
        ),
        io(
            "TraefikService",
            "a",
            "hrw",
            "  highestRandomWeight: {services: []}\n",
        ),
        io("TLSOption", "a", "old", "  minVersion: VersionTLS10\n"),
        io("TLSOption", "a", "bad", "  cipherSuites: [NOPE]\n"),
        io(
            "TLSStore",
            "a",
            "default",
            "  defaultGeneratedCert: {resolver: le}\n",
        ),
        io(
            "ServersTransport",
            "a",
            "skip",
            "  insecureSkipVerify: true\n",
        ),
        io(
            "ServersTransport",
            "a",
            "plain",
            "  forwardingTimeouts: {dialTimeout: 5s}\n",
        ),
    ]
    .concat();
    let snap = snapshot(&yaml);
    let dag = build(&snap, &Selection::default_instance());
    assert_eq!(
        one(&dag, "Middleware", "a/good"),
        (Validity::Valid, "valid Middleware".into())
    );
    invalid(
        &dag,
        "Middleware",
        "a/plugin",
        "middleware kind \"plugin\" is not supported",
    );
    invalid(&dag, "Middleware", "a/chain", "spec.allowCrossNamespace");
    assert_eq!(one(&dag, "TraefikService", "a/ts").0, Validity::Valid);
    invalid(&dag, "TraefikService", "a/hrw", "spec.highestRandomWeight");
    invalid(&dag, "TLSOption", "a/old", "TLS 1.0 is not served");
    invalid(&dag, "TLSOption", "a/bad", "NOPE");
    invalid(&dag, "TLSStore", "a/default", "spec.defaultGeneratedCert");
    invalid(
        &dag,
        "ServersTransport",
        "a/skip",
        "spec.allowInsecureSkipVerify",
    );
    assert_eq!(one(&dag, "ServersTransport", "a/plain").0, Validity::Valid);
    // Listed in kind order, then by key: after every route.
    let kinds: Vec<String> = verdicts(&dag).into_iter().map(|v| v.0).collect();
    let order = [
        "Middleware",
        "TraefikService",
        "TLSOption",
        "TLSStore",
        "ServersTransport",
    ];
    let mut sorted = kinds.clone();
    sorted.sort_by_key(|k| order.iter().position(|o| o == k));
    assert_eq!(kinds, sorted);
    // The Gateway's settings count: what it allows is valid.
    let mut sel = Selection::default_instance();
    sel.allow_cross_namespace = true;
    sel.allow_insecure_skip_verify = true;
    let dag = build(&snap, &sel);
    assert_eq!(one(&dag, "Middleware", "a/chain").0, Validity::Valid);
    assert_eq!(one(&dag, "ServersTransport", "a/skip").0, Validity::Valid);
}

#[test]
fn a_used_object_gets_its_own_verdict_beside_the_routes() {
    let yaml = [
        io(
            "Middleware",
            "a",
            "broken",
            "  stripPrefix: {prefixes: []}\n",
        ),
        io(
            "IngressRoute",
            "a",
            "r",
            "  routes:\n  - match: Host(`a.example.com`)\n    middlewares: [{name: broken}]\n    \
             services: [{name: s, port: 80}]\n",
        ),
    ]
    .concat();
    let dag = build(&snapshot(&yaml), &Selection::default_instance());
    invalid(&dag, "Middleware", "a/broken", "spec.stripPrefix");
    let route = dag
        .object_statuses
        .iter()
        .find(|s| s.kind == "IngressRoute");
    let route = route.unwrap();
    assert_eq!(route.current_status, Validity::Invalid);
    assert!(route.description.contains("Middleware a/broken is invalid"));
}

#[test]
fn selection_judges_by_root_namespaces_and_a_class_annotation_if_any() {
    let class = |c: &str| format!("  annotations: {{kubernetes.io/ingress.class: {c}}}\n");
    let yaml = [
        io("Middleware", "a", "plain", "  addPrefix: {prefix: /p}\n"),
        io(
            "Middleware",
            "b",
            "elsewhere",
            "  addPrefix: {prefix: /p}\n",
        ),
        object(
            "traefik.io",
            "Middleware",
            "a",
            "mine",
            &class("team"),
            "  addPrefix: {prefix: /p}\n",
        ),
        object(
            "traefik.io",
            "Middleware",
            "a",
            "theirs",
            &class("other"),
            "  addPrefix: {prefix: /p}\n",
        ),
    ]
    .concat();
    let snap = snapshot(&yaml);
    let names = |sel: &Selection| -> Vec<String> {
        verdicts(&build(&snap, sel))
            .into_iter()
            .map(|v| v.1)
            .collect()
    };
    let mut sel = Selection::default_instance();
    // No class: objects without the annotation, in any namespace.
    assert_eq!(names(&sel), ["a/plain", "b/elsewhere"]);
    // A class: also those without the annotation (Traefik filters none of these kinds by
    // class), and those of its class.
    sel.ingress_class = Some("team".into());
    assert_eq!(names(&sel), ["a/mine", "a/plain", "b/elsewhere"]);
    // Root namespaces: only there.
    sel.root_namespaces = vec!["a".into()];
    assert_eq!(names(&sel), ["a/mine", "a/plain"]);
}

#[test]
fn the_traefik_io_object_wins_a_clash_and_an_undecodable_one_says_why() {
    let yaml = [
        object(
            "traefik.containo.us",
            "Middleware",
            "a",
            "m",
            "",
            "  plugin: {x: {}}\n",
        ),
        io("Middleware", "a", "m", "  addPrefix: {prefix: /p}\n"),
        io("TraefikService", "a", "odd", "  weighted: {services: 3}\n"),
    ]
    .concat();
    let report = crate::source::load_sources([("fixture.yaml", yaml.as_str())]);
    let dag = build(&report.snapshot, &Selection::default_instance());
    let m: Vec<_> = dag
        .object_statuses
        .iter()
        .filter(|s| s.kind == "Middleware")
        .collect();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].api_version, "traefik.io/v1alpha1");
    assert_eq!(m[0].current_status, Validity::Valid);
    invalid(
        &dag,
        "TraefikService",
        "a/odd",
        "this TraefikService could not be read",
    );
}

/// A Middleware that every route would refuse for its own fields is invalid on its own (review
/// 10 F1: the route path's policy and redirect checks were missing from the own verdict), and
/// one every route serves is valid: for each spec, a route listing only it and the Middleware
/// agree, and the Middleware's description is the route's reason.
#[test]
fn a_middleware_refused_by_every_route_is_invalid_on_its_own() {
    let specs = [
        // Refused by the route path after `middleware::build` accepted them.
        (
            "reject404",
            "  ipAllowList: {sourceRange: [10.0.0.0/8], rejectStatusCode: 404}\n",
            Some("rejectStatusCode"),
        ),
        (
            "depth",
            "  ipAllowList: {sourceRange: [10.0.0.0/8], ipStrategy: {depth: 1}}\n",
            Some("xffTrustedHops"),
        ),
        (
            "bigbuffer",
            "  buffering: {maxRequestBodyBytes: 100000000}\n",
            Some("maxRequestBodyBytes"),
        ),
        (
            "burst",
            "  rateLimit: {average: 1000, period: 1s, burst: 1}\n",
            Some("burst"),
        ),
        (
            "mapped",
            "  ipAllowList: {sourceRange: ['::ffff:10.0.0.0/104']}\n",
            Some("IPv4-mapped"),
        ),
        (
            "redirect",
            "  redirectRegex: {regex: '^(.*)$', replacement: 'https://x/$1'}\n",
            Some("no :// after the scheme"),
        ),
        (
            "auth-elsewhere",
            "  forwardAuth: {address: 'http://auth.other.svc/check'}\n",
            Some("Service other/auth is in another namespace"),
        ),
        // Served.
        (
            "auth-here",
            "  forwardAuth: {address: 'http://auth/check'}\n",
            None,
        ),
        (
            "allow",
            "  ipAllowList: {sourceRange: [10.0.0.0/8]}\n",
            None,
        ),
        ("limit", "  rateLimit: {average: 100, burst: 10}\n", None),
        ("buffer", "  buffering: {maxRequestBodyBytes: 1000}\n", None),
        ("strip", "  stripPrefix: {prefixes: [/api]}\n", None),
    ];
    let mut yaml = Vec::new();
    for (i, (name, spec, _)) in specs.iter().enumerate() {
        yaml.push(io("Middleware", "a", name, spec));
        yaml.push(io(
            "IngressRoute",
            "a",
            &format!("r-{name}"),
            &format!(
                "  routes:\n  - match: Host(`h{i}.example.com`)\n    middlewares: [{{name: \
                 {name}}}]\n    services: [{{name: s, port: 80}}]\n"
            ),
        ));
    }
    let dag = build(&snapshot(&yaml.concat()), &Selection::default_instance());
    for (name, _, want) in specs {
        let route = dag
            .object_statuses
            .iter()
            .find(|s| s.kind == "IngressRoute" && s.name == format!("r-{name}"))
            .unwrap();
        let (validity, description) = one(&dag, "Middleware", &format!("a/{name}"));
        match want {
            Some(want) => {
                assert_eq!(validity, Validity::Invalid, "{name}: {description}");
                assert!(
                    description.contains(want),
                    "{name}: {description:?} lacks {want:?}"
                );
                assert_eq!(route.current_status, Validity::Invalid, "{name}");
                assert!(
                    route.description.contains(&description),
                    "{name}: the route says {:?}, the Middleware {description:?}",
                    route.description
                );
            }
            None => {
                assert_eq!(validity, Validity::Valid, "{name}: {description}");
                // The route's only problem, if any, is a missing Service (none in this world),
                // not the Middleware's fields.
                assert!(
                    !route.description.contains("Middleware")
                        || route.description.ends_with("not found"),
                    "{name}: {}",
                    route.description
                );
            }
        }
    }
}
