//! A hostile tenant writing Traefik service options: random worlds of IngressRoutes whose
//! services carry `passHostHeader`, sticky cookies and health checks with values at and past
//! every bound (durations huge, negative, zero and tiny; cookie names, paths and domains with
//! separators and control bytes; header names that are not tokens; methods Envoy refuses;
//! statuses and ports out of range) next to a victim team's Contour root. For each world: the
//! victim's virtual host and clusters are what they are without the attacker, the translated
//! configuration passes the independent output checker and a real `envoy --mode validate`, and
//! values at the bounds reach Envoy. The seed is printed; `SLUICE_TRAEFIK_SEED=<n>` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use sluice::dag::{Validity, build, instances};
use sluice::xds::translate::constraints::check_resources;
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::manifests::{self, doc};
use sluice_e2e::rng::Rng;

const WORLDS: usize = 12;

fn pick(rng: &mut Rng, values: &[Value]) -> Value {
    rng.pick(values).clone()
}

fn duration(rng: &mut Rng) -> Value {
    pick(
        rng,
        &[
            json!("100ms"),
            json!("24h"),
            json!(1),
            json!(86400),
            json!(86401),
            json!("99ms"),
            json!(0),
            json!("0s"),
            json!(-1),
            json!("-5s"),
            json!("1000000h"),
            json!(i64::MAX),
            json!("1e9h"),
            json!("5s\u{0}"),
            json!(""),
        ],
    )
}

fn cookie(rng: &mut Rng) -> Value {
    let long = "c".repeat(256);
    let too_long = "c".repeat(257);
    let mut c = json!({});
    if rng.chance(70) {
        c["name"] = pick(
            rng,
            &[
                json!("pin"),
                json!(long),
                json!("a!#$%&'*+-.^_`|~z"),
                json!(too_long),
                json!("a b"),
                json!("a;b"),
                json!("a=b"),
                json!("a\u{1}"),
                json!("é"),
                json!(""),
            ],
        );
    }
    if rng.chance(40) {
        c["path"] = pick(
            rng,
            &[
                json!("/app"),
                json!("/a;Domain=evil"),
                json!("a"),
                json!("/\u{7f}"),
                json!("/%zz"),
            ],
        );
    }
    if rng.chance(40) {
        c["domain"] = pick(
            rng,
            &[
                json!("example.com"),
                json!(".example.com"),
                json!("a;b"),
                json!("a b"),
                json!("x".repeat(300)),
            ],
        );
    }
    if rng.chance(40) {
        c["maxAge"] = pick(
            rng,
            &[
                json!(0),
                json!(60),
                json!(2147483647),
                json!(2147483648_i64),
                json!(-1),
                json!(i64::MAX),
            ],
        );
    }
    if rng.chance(40) {
        c["sameSite"] = pick(
            rng,
            &[
                json!("none"),
                json!("lax"),
                json!("strict"),
                json!("Lax"),
                json!("x"),
            ],
        );
    }
    if rng.chance(40) {
        c["secure"] = json!(rng.chance(50));
        c["httpOnly"] = json!(rng.chance(50));
    }
    if rng.chance(10) {
        return json!({});
    }
    json!({"cookie": c})
}

fn health_check(rng: &mut Rng) -> Value {
    let mut h = json!({});
    if rng.chance(90) {
        h["path"] = pick(
            rng,
            &[
                json!("/health"),
                json!("/h?x=%00"),
                json!("/\u{0}"),
                json!("x"),
                json!(format!("/{}", "p".repeat(5000))),
                json!("/a b"),
            ],
        );
    }
    for field in ["interval", "unhealthyInterval", "timeout"] {
        if rng.chance(50) {
            h[field] = duration(rng);
        }
    }
    if rng.chance(30) {
        h["method"] = pick(
            rng,
            &[
                json!("head"),
                json!("PATCH"),
                json!("CONNECT"),
                json!("G T"),
                json!("FOO"),
            ],
        );
    }
    if rng.chance(30) {
        h["status"] = pick(
            rng,
            &[json!(204), json!(599), json!(600), json!(99), json!(-1)],
        );
    }
    if rng.chance(30) {
        h["port"] = pick(
            rng,
            &[json!(1), json!(65535), json!(65536), json!(-1), json!(0)],
        );
    }
    if rng.chance(30) {
        h["hostname"] = pick(
            rng,
            &[
                json!("check.internal"),
                json!("[::1]:80"),
                json!("a\r\nb"),
                json!("a b"),
                json!("x".repeat(300)),
            ],
        );
    }
    if rng.chance(30) {
        h["scheme"] = pick(rng, &[json!("http"), json!("https"), json!("ftp")]);
    }
    if rng.chance(20) {
        h["mode"] = pick(rng, &[json!("http"), json!("grpc"), json!("x")]);
    }
    if rng.chance(40) {
        let name = pick(
            rng,
            &[
                json!("X-Ok"),
                json!("x ok"),
                json!(":path"),
                json!("Host"),
                json!("a\u{0}"),
                json!("n".repeat(300)),
            ],
        );
        let value = pick(
            rng,
            &[
                json!("v"),
                json!("%ENVIRONMENT(HOME)%"),
                json!("%"),
                json!("a\r\nb"),
                json!("a\u{0}"),
            ],
        );
        h["headers"] = json!({name.as_str().unwrap(): value});
    }
    h
}

fn service(rng: &mut Rng) -> Value {
    let mut s = json!({"name": rng.pick(&["web", "web2"]), "port": 80});
    if rng.chance(40) {
        s["passHostHeader"] = json!(!rng.chance(70));
    }
    // Half the options are plain ones, so that routes next to hostile ones get served.
    if rng.chance(50) {
        s["sticky"] = if rng.chance(50) {
            cookie(rng)
        } else {
            json!({"cookie": {"name": "pin", "maxAge": 60}})
        };
    }
    if rng.chance(50) {
        s["healthCheck"] = if rng.chance(50) {
            health_check(rng)
        } else {
            json!({"path": "/health", "interval": "1s"})
        };
    }
    if rng.chance(15) {
        s["weight"] = json!(rng.pick(&[0, 1, 5]));
    }
    if rng.chance(10) {
        s["strategy"] = json!("p2c");
    }
    s
}

fn route(name: &str, rng: &mut Rng) -> String {
    let n = 1 + rng.next_u64() % 2;
    let services: Vec<Value> = (0..n).map(|_| service(rng)).collect();
    doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "evil", "name": name},
        "spec": {"routes": [{"match": format!("Host(`{name}.example.com`)"), "services": services}]},
    }))
}

/// `n` distinct host names of 253 bytes.
fn long_hosts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let label = format!("h{i:03}{}", "a".repeat(59));
            format!(
                "{label}.{}.{}.{}",
                "b".repeat(63),
                "c".repeat(63),
                "d".repeat(61)
            )
        })
        .collect()
}

fn middleware(name: &str, spec: Value) -> String {
    manifests::traefik("Middleware", "evil", name, None, spec)
}

/// Every option at its bound at once, which must be served: service options, and 64
/// `allowedHosts` of 253 bytes (and one list too many, refused).
fn at_the_limits() -> String {
    middleware(
        "hosts",
        json!({"headers": {"allowedHosts": long_hosts(64)}}),
    ) + &middleware(
        "too-many",
        json!({"headers": {"allowedHosts": long_hosts(65)}}),
    ) + &doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "evil", "name": "too-many"},
        "spec": {"routes": [{"match": "Host(`too-many.example.com`)",
                             "middlewares": [{"name": "too-many"}],
                             "services": [{"name": "web", "port": 80}]}]},
    })) + &doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "evil", "name": "limits"},
        "spec": {"routes": [{"match": "Host(`limits.example.com`)",
                             "middlewares": [{"name": "hosts"}], "services": [{
            "name": "web", "port": 80, "passHostHeader": false,
            "sticky": {"cookie": {"name": "c".repeat(256), "path": format!("/{}", "p".repeat(255)),
                                  "domain": "d".repeat(256), "maxAge": 2147483647,
                                  "secure": true, "sameSite": "none"}},
            "healthCheck": {"path": "/h", "interval": "24h", "unhealthyInterval": "100ms",
                            "timeout": "1ms", "method": "TRACE", "status": 599, "port": 65535,
                            "hostname": "[::1]:65535",
                            "headers": {"X-A": "%ENVIRONMENT(HOME)%", "X-B": "%"}},
        }]}]},
    }))
}

fn victim() -> String {
    let svc = |ns: &str, name: &str| {
        doc(&json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"namespace": ns, "name": name},
                    "spec": {"ports": [{"name": "http", "port": 80}]}}))
            + &doc(&json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"namespace": ns, "name": name},
                    "subsets": [{"addresses": [{"ip": "10.1.0.1"}, {"ip": "fd00::1"}],
                                 "ports": [{"name": "http", "port": 8080}]}]}))
    };
    svc("victim", "web")
        + &svc("evil", "web")
        + &svc("evil", "web2")
        + &doc(&json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": "site",
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"virtualhost": {"fqdn": "victim.example.com"},
                     "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]},
        }))
}

#[tokio::test]
async fn hostile_service_options_never_break_the_configuration_or_the_victim() {
    let seed = sluice_e2e::rng::seed_from_env("SLUICE_TRAEFIK_SEED");
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let alone = sluice::source::load_sources([("v.yaml", victim())]).snapshot;
    let sel = instances(&alone).remove(0).local();
    let victim_of = |dag: &sluice::dag::Dag| {
        let vhost = dag
            .virtual_hosts
            .iter()
            .find(|v| v.fqdn == "victim.example.com")
            .cloned();
        let clusters: Vec<_> = dag
            .clusters
            .iter()
            .filter(|c| c.service.starts_with("victim/"))
            .cloned()
            .collect();
        (vhost, clusters)
    };
    let expected = victim_of(&build(&alone, &sel));
    assert!(expected.0.is_some());
    let opts = TranslateOptions::default();
    let (mut served, mut refused, mut checked, mut sticky, mut host) = (0, 0, 0, 0, 0);
    for world in 0..WORLDS {
        let mut text = victim() + &at_the_limits();
        for i in 0..6 {
            text.push_str(&route(&format!("r{i}"), &mut rng));
        }
        let snapshot = sluice::source::load_sources([("w.yaml", text.as_str())]).snapshot;
        let dag = build(&snapshot, &sel);
        assert_eq!(
            victim_of(&dag),
            expected,
            "seed {seed} world {world}: the victim changed\n{text}"
        );
        for s in &dag.object_statuses {
            if s.current_status == Validity::Valid {
                served += 1;
            } else if s.name == "too-many" {
                assert!(
                    s.description.contains("allowedHosts: more than 64 names"),
                    "{}",
                    s.description
                );
            } else {
                refused += 1;
                assert!(
                    s.description.contains("spec.routes[0].services"),
                    "seed {seed} world {world}: {}",
                    s.description
                );
                if refused <= 10 {
                    println!("refused: {}", s.description);
                }
            }
        }
        let limits = dag
            .object_statuses
            .iter()
            .find(|s| s.name == "limits")
            .unwrap();
        assert_eq!(
            limits.current_status,
            Validity::Valid,
            "seed {seed} world {world}: {}",
            limits.description
        );
        let too_many = dag
            .object_statuses
            .iter()
            .find(|s| s.name == "too-many")
            .unwrap();
        assert_eq!(
            too_many.current_status,
            Validity::Invalid,
            "65 allowedHosts served"
        );
        checked += dag
            .clusters
            .iter()
            .filter(|c| c.active_health_check.is_some())
            .count();
        for r in dag.virtual_hosts.iter().flat_map(|v| &v.routes) {
            if let Some(o) = r.extra.as_ref().and_then(|e| e.service_options.as_ref()) {
                sticky += usize::from(o.sticky.is_some());
                host += usize::from(o.address_host);
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
    println!(
        "{served} IngressRoutes served ({checked} health-checked clusters, {sticky} sticky and \
         {host} address-Host routes), {refused} refused"
    );
    assert!(refused > WORLDS, "too little hostile was refused");
    assert!(
        served > 2 * WORLDS,
        "too few routes next to hostile ones were served"
    );
    assert!(checked > WORLDS && sticky > WORLDS && host > WORLDS);
}
