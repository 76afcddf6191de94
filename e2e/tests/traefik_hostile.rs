//! A hostile tenant writing Traefik objects: random worlds of IngressRoutes and Middlewares
//! whose every value is at or past a limit, next to a victim team's Contour root. For each
//! world: the translated configuration passes the independent output checker
//! (`xds::translate::constraints`) and a real `envoy --mode validate`, and the victim's virtual
//! host is exactly what it is without the attacker. The seed is printed;
//! `SLUICE_TRAEFIK_SEED=<n>` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use sluice::dag::{build, instances};
use sluice::xds::translate::constraints::check_resources;
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::manifests::doc;
use sluice_e2e::rng::Rng;

const WORLDS: usize = 24;

/// Rule parts at or past every limit the parser, the checks and Envoy have.
fn hostile_rule(owner: &str, rng: &mut Rng) -> String {
    let long = "a".repeat(5000);
    let hosts = [
        "victim.example.com".to_owned(),
        "VICTIM.Example.COM".to_owned(),
        "victim.example.com.".to_owned(),
        "victim.example.com:8080".to_owned(),
        "127.0.0.1".to_owned(),
        "*.example.com".to_owned(),
        "xn--bcher-kva.example".to_owned(),
        format!("{}.example.com", "b".repeat(64)),
        "evil.example.com".to_owned(),
    ];
    // Values at a limit that are still valid: these reach Envoy.
    let accepted = [
        "PathRegexp(`(a+)+$`)".to_owned(),
        format!("PathPrefix(`/{}`)", "p".repeat(1000)),
        "PathPrefix(`/%00/..;/`)".to_owned(),
        "PathRegexp(`^/[a-z]+\\.(png|jpg)$`)".to_owned(),
        "Path(`/x\\y`)".to_owned(),
        "Header(`X-K`, `v w \\ \"`)".to_owned(),
        "HeaderRegexp(`x-k`, `.*`)".to_owned(),
        "Query(`k`, `v`)".to_owned(),
        "QueryRegexp(`k`, `^[0-9]{1,1000}$`)".to_owned(),
        "Method(`PATCH`)".to_owned(),
        "!Header(`x-no`, `1`)".to_owned(),
    ];
    // Values past a limit: refused with a message.
    let refused = [
        format!("PathPrefix(`/{long}`)"),
        "PathPrefix(`/a b`)".to_owned(),
        "PathPrefix(\"/\\u0000\")".to_owned(),
        "PathRegexp(`^/(?P<n>x)`)".to_owned(),
        format!("PathRegexp(`{}`)", "(a|b)".repeat(300)),
        "Header(`x-a b`, `v`)".to_owned(),
        "Header(`:authority`, `v`)".to_owned(),
        "Header(`x-k`, \"a\\r\\nb\")".to_owned(),
        "Query(`k`, `%00`)".to_owned(),
        "Query(`k\\u0000`, `v`)".to_owned(),
        "Method(`GET\\n`)".to_owned(),
        "ClientIP(`10.0.0.0/8`)".to_owned(),
    ];
    // Mostly a host of the attacker's own, so that the values below reach Envoy.
    let host = if rng.chance(85) {
        format!("{owner}-{}.example.com", rng.next_u64() % 2)
    } else {
        rng.pick(&hosts).clone()
    };
    let mut rule = format!("Host(`{host}`)");
    for _ in 0..(rng.next_u64() % 3) {
        rule.push_str(" && ");
        let list = if rng.chance(85) {
            &accepted[..]
        } else {
            &refused[..]
        };
        rule.push_str(rng.pick(list).as_str());
    }
    if rng.chance(10) {
        rule = format!(
            "({rule}) || Host(`other{}.example.com`)",
            rng.next_u64() % 3
        );
    }
    rule
}

fn hostile_middleware(name: &str, rng: &mut Rng) -> String {
    let specs = [
        json!({"stripPrefix": {"prefixes": ["/("]}}),
        json!({"stripPrefix": {"prefixes": [format!("/{}", "x".repeat(2000))]}}),
        json!({"stripPrefix": {"prefixes": ["/\\1$"]}}),
        json!({"addPrefix": {"prefix": "/\\"}}),
        json!({"addPrefix": {"prefix": "/a\\1"}}),
        json!({"replacePath": {"path": "/$1\\2"}}),
        json!({"replacePath": {"path": "/a\r\nb"}}),
        json!({"redirectScheme": {"scheme": "https", "port": "99999"}}),
        json!({"redirectScheme": {"scheme": "ftp"}}),
        json!({"redirectScheme": {"scheme": "http", "port": "8080"}}),
        json!({"headers": {"customRequestHeaders": {"Host": "evil.example.com:1"}}}),
        json!({"headers": {"customRequestHeaders": {":authority": "x"}}}),
        json!({"headers": {"customRequestHeaders": {"X-A": "a\r\nInjected: 1"}}}),
        json!({"headers": {"customRequestHeaders": {"Content-Length": "5"}}}),
        json!({"headers": {"customResponseHeaders": {"X-A\u{0}": "v"}}}),
        json!({"headers": {"customResponseHeaders": {"Transfer-Encoding": "chunked"}}}),
        json!({"headers": {"stsSeconds": 9_223_372_036_854_775_807_i64}}),
        // Envoy reads `%` in header values as substitution commands: a lone one is refused,
        // `%ENVIRONMENT(…)%` would leak Envoy's environment.
        json!({"headers": {"customRequestHeaders": {"X-A": "100%"}}}),
        json!({"headers": {"customResponseHeaders": {"X-A": "%ENVIRONMENT(HOME)% %REQ(:path)%"}}}),
        json!({"stripPrefix": {"prefixes": ["/%7Ejoe"]}}),
        // Names Envoy refuses past its limits, and more header bytes than a route may carry.
        json!({"headers": {"customResponseHeaders": {"x".repeat(20_000): "v"}}}),
        json!({"headers": {"customRequestHeaders": {
            "X-A": "v".repeat(3000), "X-B": "v".repeat(3000), "X-C": "v".repeat(3000),
        }}}),
        json!({"chain": {"middlewares": [{"name": "m0"}, {"name": "m1"}]}}),
        // redirectRegex: non-ASCII (once a panic in the build), unbounded and odd patterns.
        json!({"redirectRegex": {"regex": "^https://a.example/é(.*)", "replacement": "https://b.example/$1"}}),
        json!({"redirectRegex": {"regex": "^https?://é.example/\\é(.*)", "replacement": "https://💡.example/$1"}}),
        json!({"redirectRegex": {"regex": format!("^https?://victim.example.com/{}", "(a*)*".repeat(500)), "replacement": "https://evil.example.com/$1"}}),
        json!({"redirectRegex": {"regex": "^http://x.example/(?i)A(.*)", "replacement": "http://y.example/${1}x%ENVIRONMENT(HOME)%"}}),
        // forwardAuth (every value in traefik_forwardauth_hostile.rs): formatter commands in
        // the path are literal; another namespace's or an outside server is refused.
        json!({"forwardAuth": {"address": "http://web/%ENVIRONMENT(HOME)%", "authResponseHeadersRegex": "(a*)*"}}),
        json!({"forwardAuth": {"address": "http://web.victim/", "authResponseHeaders": ["Content-Length"]}}),
        json!({"forwardAuth": {"address": "http://169.254.169.254/"}}),
    ];
    doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
        "metadata": {"namespace": "evil", "name": name},
        "spec": rng.pick(&specs).clone(),
    }))
}

fn hostile_route(name: &str, rng: &mut Rng) -> String {
    let mut routes = Vec::new();
    for _ in 0..1 + rng.next_u64() % 3 {
        let weights = [
            json!(u32::MAX),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            json!(0),
            json!(-1),
            json!(i64::MAX),
            json!(0),
            Value::Null,
        ];
        let port = rng
            .pick(&[
                json!(80),
                json!(80),
                json!(80),
                json!("http"),
                json!("http"),
                json!(0),
                json!(70000),
                json!(""),
            ])
            .clone();
        let svc_name = rng.pick(&["web", "../web", "web@k8s"]);
        let mut svc = if rng.chance(75) {
            json!({"name": "web", "port": rng.pick(&[json!(80), json!("http")]).clone()})
        } else {
            json!({"name": svc_name, "port": port})
        };
        let w = if rng.chance(50) {
            Value::Null
        } else {
            rng.pick(&weights).clone()
        };
        if !w.is_null() {
            svc["weight"] = w;
        }
        let priority = rng
            .pick(&[
                json!(i64::MIN),
                Value::Null,
                Value::Null,
                json!(i64::MAX),
                json!(i64::MIN),
                json!(i64::MAX - 1000),
                json!(-1),
                Value::Null,
            ])
            .clone();
        let mut route = json!({
            "match": hostile_rule(name, rng),
            "services": [svc.clone(), svc],
        });
        if !priority.is_null() {
            route["priority"] = priority;
        }
        if rng.chance(40) {
            route["middlewares"] = json!([{"name": format!("m{}", rng.next_u64() % 3)}]);
        }
        routes.push(route);
    }
    let mut spec = json!({"routes": routes});
    if rng.chance(15) {
        spec["tls"] =
            json!({"secretName": rng.pick(&["victim-cert", "../victim/victim-cert", "evil-cert"])});
    }
    if rng.chance(10) {
        spec["entryPoints"] =
            json!(rng.pick(&[json!(["websecure"]), json!(["traefik"]), json!(["web"])]));
    }
    let created = rng
        .pick(&[
            json!("2030-01-01T00:00:00Z"),
            // The API server sets creationTimestamp: a tenant's object is never older than the
            // victim's that already exists.
            json!("2020-01-02T00:00:00Z"),
            Value::Null,
        ])
        .clone();
    let mut metadata = json!({"namespace": "evil", "name": name});
    if !created.is_null() {
        metadata["creationTimestamp"] = created;
    }
    doc(&json!({
        "apiVersion": rng.pick(&["traefik.io/v1alpha1", "traefik.containo.us/v1alpha1"]),
        "kind": "IngressRoute", "metadata": metadata, "spec": spec,
    }))
}

fn victim() -> String {
    let svc = |ns: &str| {
        doc(&json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"namespace": ns, "name": "web"},
                    "spec": {"ports": [{"name": "http", "port": 80}]}}))
            + &doc(&json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"namespace": ns, "name": "web"},
                    "subsets": [{"addresses": [{"ip": "10.1.0.1"}],
                                 "ports": [{"name": "http", "port": 8080}]}]}))
    };
    svc("victim")
        + &svc("evil")
        + &doc(&json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": "site",
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"virtualhost": {"fqdn": "victim.example.com"},
                     "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]},
        }))
}

#[tokio::test]
async fn hostile_traefik_objects_never_break_the_configuration_or_the_victim() {
    let seed = sluice_e2e::rng::seed_from_env("SLUICE_TRAEFIK_SEED");
    let mut rng = Rng(seed);
    let alone = sluice::source::load_sources([("v.yaml", victim())]).snapshot;
    let sel = instances(&alone).remove(0).local();
    let victim_vhost = |dag: &sluice::dag::Dag| {
        dag.virtual_hosts
            .iter()
            .find(|v| v.fqdn == "victim.example.com")
            .cloned()
    };
    let expected = victim_vhost(&build(&alone, &sel)).unwrap();
    let opts = TranslateOptions::default();
    let (mut served, mut refused) = (0, 0);
    for world in 0..WORLDS {
        let mut text = victim();
        for i in 0..3 {
            text.push_str(&hostile_route(&format!("r{i}"), &mut rng));
            text.push_str(&hostile_middleware(&format!("m{i}"), &mut rng));
        }
        let snapshot = sluice::source::load_sources([("w.yaml", text.as_str())]).snapshot;
        let dag = build(&snapshot, &sel);
        assert_eq!(
            victim_vhost(&dag).as_ref(),
            Some(&expected),
            "seed {seed} world {world}: the victim's host changed\n{text}"
        );
        for s in &dag.object_statuses {
            if s.current_status == sluice::dag::Validity::Valid {
                served += 1;
            } else {
                refused += 1;
            }
        }
        let resources = translate(&dag, &opts).unwrap();
        let violations = check_resources(&resources);
        assert!(
            violations.is_empty(),
            "seed {seed} world {world}: {violations:#?}\n{text}"
        );
        let bootstrap = inline_bootstrap(&resources, &opts).unwrap();
        let json = serde_json::to_string(&message_to_json(&bootstrap).unwrap()).unwrap();
        if let Err(e) = sluice_e2e::envoy::validate(&json).await {
            panic!("seed {seed} world {world}: Envoy rejected it: {e}\n{text}");
        }
    }
    println!("{served} hostile IngressRoutes served, {refused} refused");
    assert!(refused > 0, "nothing hostile was refused");
    assert!(served > 0, "no hostile value reached Envoy");
}
