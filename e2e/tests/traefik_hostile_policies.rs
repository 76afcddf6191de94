//! A hostile tenant writing the Traefik middlewares Envoy serves with HTTP filters (basicAuth
//! with hostile users Secrets, ipAllowList, rateLimit, retry, buffering, CORS), in random
//! orders, next to a victim team's Traefik IngressRoute that uses none of them. For each world:
//! the victim's virtual host is exactly what it is without the attacker (so no filter is
//! enabled on its routes), the listeners are the same as without the attacker (no Middleware
//! changes the shared filter chain), and the configuration passes the output checker and a real
//! `envoy --mode validate`. The seed is printed; `SLUICE_TRAEFIK_SEED=<n>` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use serde_json::{Value, json};
use sluice::dag::{build, instances};
use sluice::xds::translate::constraints::check_resources;
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::manifests::{self, doc};
use sluice_e2e::rng::Rng;

const WORLDS: usize = 16;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const SHA: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

/// Every users Secret `evil/users` tried: valid, at a limit, or hostile to Envoy's htpasswd
/// reader.
fn all_users() -> Vec<String> {
    let many: String = (0..1100).map(|i| format!("u{i}:{SHA}\n")).collect();
    let htpasswd: Vec<Vec<u8>> = vec![
        format!("alice:{SHA}\n").into_bytes(),
        format!("alice:{SHA}\r\nbob:{SHA}\r\n").into_bytes(),
        format!("alice:{SHA}\nalice:{SHA}\n").into_bytes(),
        format!("#alice:{SHA}\n").into_bytes(),
        b"alice:{SHA}short\n".to_vec(),
        b"alice:$apr1$abc$def\n".to_vec(),
        b"alice:$2y$05$abcdefghijklmnopqrstuu\n".to_vec(),
        b"alice\n".to_vec(),
        b":{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n".to_vec(),
        b"al ice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n".to_vec(),
        b"\xff\xfe:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n".to_vec(),
        b"\n\n\n".to_vec(),
        many.into_bytes(),
        vec![b'a'; 70_000],
    ];
    let secret = |type_: &str, data: Value| {
        doc(&json!({"apiVersion": "v1", "kind": "Secret", "type": type_,
                    "metadata": {"namespace": "evil", "name": "users"}, "data": data}))
    };
    let mut out: Vec<String> = htpasswd
        .iter()
        .map(|text| secret("Opaque", json!({"users": b64(text)})))
        .collect();
    out.push(secret("Opaque", json!({"a": b64(b"x:y"), "b": b64(b"z")})));
    for user in ["alice", "al:ice", "", "#x", "bob\u{e9}"] {
        for password in ["s3cret", "", "p\u{0}w", "%ENVIRONMENT(HOME)%"] {
            out.push(secret(
                "kubernetes.io/basic-auth",
                json!({"username": b64(user.as_bytes()), "password": b64(password.as_bytes())}),
            ));
        }
    }
    out
}

/// Every Middleware spec tried.
fn all_specs() -> Vec<Value> {
    let ranges: Vec<String> = (0..300).map(|i| format!("10.{}.0.0/16", i % 256)).collect();
    let specs = [
        json!({"basicAuth": {"secret": "users"}}),
        json!({"basicAuth": {"secret": "users", "removeHeader": true, "realm": "r\"x"}}),
        json!({"basicAuth": {"secret": "../victim/users"}}),
        json!({"basicAuth": {"secret": "missing"}}),
        json!({"basicAuth": {"secret": "users", "headerField": "X-User"}}),
        json!({"ipAllowList": {"sourceRange": ["0.0.0.0/0", "::/0"]}}),
        json!({"ipAllowList": {"sourceRange": ["::ffff:127.0.0.1/128", "10.0.0.1/33"]}}),
        json!({"ipAllowList": {"sourceRange": ["192.0.2.1/24", "2001:db8::1/129"]}}),
        json!({"ipAllowList": {"sourceRange": []}}),
        json!({"ipAllowList": {"sourceRange": ranges}}),
        json!({"ipWhiteList": {"sourceRange": ["127.0.0.1"], "ipStrategy": {"depth": 3}}}),
        json!({"ipWhiteList": {"sourceRange": ranges, "ipStrategy": {"depth": 2}}}),
        json!({"ipAllowList": {"sourceRange": ["0.0.0.0/0", "::/0"], "ipStrategy": {"depth": 2}}}),
        json!({"ipAllowList": {"sourceRange": ["10.0.0.0/8"],
                               "ipStrategy": {"depth": 2, "excludedIPs": ["x", "::/129"]}}}),
        json!({"ipAllowList": {"sourceRange": ["10.0.0.0/8"],
                               "ipStrategy": {"excludedIPs": ["0.0.0.0/0", "::/0"]}}}),
        json!({"ipAllowList": {"sourceRange": ["10.0.0.0/8"],
                               "ipStrategy": {"depth": i64::MAX, "ipv6Subnet": -1}}}),
        json!({"rateLimit": {"average": 3, "burst": 3,
                             "sourceCriterion": {"ipStrategy": {"depth": 2}}}}),
        json!({"rateLimit": {"average": 3, "burst": 3,
                             "sourceCriterion": {"ipStrategy": {"depth": 64}}}}),
        json!({"rateLimit": {"average": 3, "burst": 3,
                             "sourceCriterion": {"ipStrategy": {"depth": 0}}}}),
        json!({"rateLimit": {"average": 3, "burst": 3,
                             "sourceCriterion": {"ipStrategy": {"depth": 2},
                                                 "requestHost": true}}}),
        json!({"ipWhiteList": {"sourceRange": ["127.0.0.1"], "rejectStatusCode": 999}}),
        json!({"rateLimit": {"average": 4_294_967_295_u64, "burst": 4_294_967_295_u64}}),
        json!({"rateLimit": {"average": 1, "period": "1ms", "burst": 1}}),
        json!({"rateLimit": {"average": 7, "period": "999h", "burst": 1}}),
        json!({"rateLimit": {"average": i64::MAX, "burst": -1}}),
        json!({"rateLimit": {"average": 3, "burst": 3,
                             "sourceCriterion": {"requestHeaderName": "X-A\r\n"}}}),
        json!({"rateLimit": {"average": 3, "burst": 3,
                             "sourceCriterion": {"requestHeaderName": "X-Tenant"}}}),
        json!({"rateLimit": {"average": 3, "burst": 3, "sourceCriterion": {"requestHost": true}}}),
        json!({"retry": {"attempts": 10, "initialInterval": "876000h"}}),
        json!({"retry": {"attempts": 1_000_000}}),
        json!({"retry": {"attempts": 2, "initialInterval": "-1s"}}),
        json!({"buffering": {"maxRequestBodyBytes": 4_294_967_295_u64}}),
        json!({"buffering": {"maxRequestBodyBytes": 1}}),
        json!({"buffering": {"maxRequestBodyBytes": 16_777_216}}),
        json!({"headers": {"accessControlAllowOriginList": ["*", "https://a.example.com:99999"]}}),
        json!({"headers": {"accessControlAllowOriginListRegex": ["(a+)+$", "^[0-9]{1,1000}$"],
                           "accessControlAllowHeaders": ["*", "X-A"],
                           "accessControlAllowMethods": ["GET", "P OST"]}}),
        json!({"headers": {"accessControlAllowOriginList": ["https://%ENVIRONMENT(HOME)%"],
                           "accessControlAllowCredentials": true, "accessControlMaxAge": -5}}),
        json!({"headers": {"accessControlAllowOriginList": ["https://a.example.com"],
                           "accessControlExposeHeaders": vec!["X-A"; 65]}}),
        json!({"redirectScheme": {"scheme": "https"}}),
        // Path rewrites with several prefixes and regexes.
        json!({"stripPrefix": {"prefixes": ["/a", "/(", "/\\1", "/%41", "/a|b"]}}),
        json!({"stripPrefixRegex": {"regex": ["(a)(b)(c)(d)(e)(f)(g)(h)", "/x$", "^"]}}),
        json!({"stripPrefixRegex": {"regex": ["(a)(b)(c)(d)(e)(f)(g)(h)(i)"]}}),
        json!({"stripPrefixRegex": {"regex": ["(?P<n>x)", "\\Q/a\\E"]}}),
        json!({"replacePathRegex": {"regex": "x*", "replacement": "/$1"}}),
        json!({"replacePathRegex": {"regex": "(a)", "replacement": "/${1}$$\\9%"}}),
        json!({"replacePathRegex": {"regex": "^/(.*)", "replacement": "/\r\n$1"}}),
        json!({"replacePathRegex": {"regex": "(a+)+$", "replacement": ""}}),
    ];
    specs.to_vec()
}

fn middleware(name: &str, spec: &Value) -> String {
    manifests::traefik("Middleware", "evil", name, None, spec.clone())
}

fn hostile_route(name: &str, rng: &mut Rng) -> String {
    let mut routes = Vec::new();
    for i in 0..1 + rng.next_u64() % 3 {
        let mws: Vec<Value> = (0..rng.next_u64() % 3)
            .map(|_| json!({"name": format!("m{}", rng.next_u64() % 5)}))
            .collect();
        let host = if rng.chance(90) {
            format!("{name}.example.com")
        } else {
            "victim.example.com".to_owned()
        };
        routes.push(json!({
            "match": format!("Host(`{host}`) && PathPrefix(`/{i}`)"),
            "middlewares": mws,
            "services": [{"name": "web", "port": 80}],
        }));
    }
    doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "evil", "name": name,
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"routes": routes},
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
        + &doc(
            &json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "metadata": {"namespace": "victim", "name": "users"},
                       "data": {"users": b64(format!("v:{SHA}\n").as_bytes())}}),
        )
        + &doc(&json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": "site",
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"routes": [{"match": "Host(`victim.example.com`)",
                                 "services": [{"name": "web", "port": 80}]}]},
        }))
}

/// What every world is checked against: the victim alone.
struct Judge {
    sel: sluice::dag::Selection,
    expected: sluice::dag::model::VirtualHost,
    listeners: Vec<
        sluice::xds::translate::Resource<envoy_types::pb::envoy::config::listener::v3::Listener>,
    >,
    opts: TranslateOptions,
}

impl Judge {
    fn new() -> Judge {
        Judge::trusting(0)
    }

    /// On a Gateway trusting `hops` X-Forwarded-For hops.
    fn trusting(hops: u32) -> Judge {
        let alone = sluice::source::load_sources([("v.yaml", victim())]).snapshot;
        let mut sel = instances(&alone).remove(0).local();
        sel.xff_trusted_hops = hops;
        let dag = build(&alone, &sel);
        let opts = TranslateOptions::default().with_selection(&sel);
        Judge {
            expected: victim_vhost(&dag).unwrap(),
            listeners: translate(&dag, &opts).unwrap().listeners,
            sel,
            opts,
        }
    }

    /// Checks one world; returns how many of the attacker's IngressRoutes are valid and how
    /// many invalid.
    async fn check(&self, text: &str, what: &str) -> (usize, usize) {
        let snapshot = sluice::source::load_sources([("w.yaml", text)]).snapshot;
        let dag = build(&snapshot, &self.sel);
        assert_eq!(
            victim_vhost(&dag).as_ref(),
            Some(&self.expected),
            "{what}: the victim's host changed\n{text}"
        );
        let (mut served, mut refused) = (0, 0);
        for s in dag.object_statuses.iter().filter(|s| s.namespace == "evil") {
            if s.current_status == sluice::dag::Validity::Valid {
                served += 1;
            } else {
                refused += 1;
            }
        }
        let resources = translate(&dag, &self.opts).unwrap();
        assert_eq!(
            resources.listeners, self.listeners,
            "{what}: a Middleware changed the listeners"
        );
        let violations = check_resources(&resources);
        assert!(violations.is_empty(), "{what}: {violations:#?}\n{text}");
        let bootstrap = inline_bootstrap(&resources, &self.opts).unwrap();
        let json = serde_json::to_string(&message_to_json(&bootstrap).unwrap()).unwrap();
        if let Err(e) = sluice_e2e::envoy::validate(&json).await {
            panic!("{what}: Envoy rejected it: {e}\n{text}");
        }
        (served, refused)
    }
}

fn victim_vhost(dag: &sluice::dag::Dag) -> Option<sluice::dag::model::VirtualHost> {
    dag.virtual_hosts
        .iter()
        .find(|v| v.fqdn == "victim.example.com")
        .cloned()
}

/// One route using `m0` (and basicAuth `auth` first when `with_auth`).
fn single(with_auth: bool) -> String {
    let mws = if with_auth {
        json!([{"name": "auth"}])
    } else {
        json!([{"name": "m0"}])
    };
    doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "evil", "name": "one",
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"routes": [{"match": "Host(`one.example.com`)", "middlewares": mws,
                             "services": [{"name": "web", "port": 80}]}]},
    }))
}

/// Each hostile value alone, so that every one is seen by Envoy or refused: each users Secret
/// behind a basicAuth, each Middleware spec on a route.
#[tokio::test]
async fn each_hostile_value_is_refused_or_accepted_by_envoy() {
    let judge = Judge::new();
    let (mut served, mut refused) = (0, 0);
    let auth = middleware("auth", &json!({"basicAuth": {"secret": "users"}}));
    for (i, users) in all_users().iter().enumerate() {
        let text = victim() + users + &auth + &single(true);
        let (s, r) = judge.check(&text, &format!("users Secret {i}")).await;
        served += s;
        refused += r;
    }
    let (s, r) = judge_every_spec(&judge).await;
    served += s;
    refused += r;
    println!("{served} served, {refused} refused");
    assert!(
        served >= 10 && refused >= 20,
        "{served} served, {refused} refused"
    );
}

/// Every hostile Middleware spec on one route: how many were served and refused.
async fn judge_every_spec(judge: &Judge) -> (usize, usize) {
    let users = all_users().remove(0);
    let (mut served, mut refused) = (0, 0);
    for (i, spec) in all_specs().iter().enumerate() {
        let text = victim() + &users + &middleware("m0", spec) + &single(false);
        let (s, r) = judge
            .check(&text, &format!("Middleware spec {i}: {spec}"))
            .await;
        served += s;
        refused += r;
    }
    (served, refused)
}

/// Each Middleware spec on a Gateway trusting 2 X-Forwarded-For hops, where a strategy of
/// depth 2 is served: refused or accepted by Envoy, never touching the victim or the listeners.
#[tokio::test]
async fn each_hostile_value_on_a_gateway_trusting_hops() {
    let judge = Judge::trusting(2);
    let (served, refused) = judge_every_spec(&judge).await;
    println!("{served} served, {refused} refused");
    assert!(
        served >= 10 && refused >= 20,
        "{served} served, {refused} refused"
    );
}

/// Random worlds: several hostile Middlewares in random orders on several routes.
#[tokio::test]
async fn hostile_filter_middlewares_never_reach_the_victim_or_break_envoy() {
    let seed = sluice_e2e::rng::seed_from_env("SLUICE_TRAEFIK_SEED");
    let mut rng = Rng(seed);
    let judge = Judge::new();
    let (users, specs) = (all_users(), all_specs());
    let (mut served, mut refused) = (0, 0);
    for world in 0..WORLDS {
        let mut text = victim() + rng.pick::<String>(&users);
        for i in 0..5 {
            text.push_str(&middleware(&format!("m{i}"), rng.pick(&specs)));
        }
        for i in 0..3 {
            text.push_str(&hostile_route(&format!("r{i}"), &mut rng));
        }
        let (s, r) = judge
            .check(&text, &format!("seed {seed} world {world}"))
            .await;
        served += s;
        refused += r;
    }
    println!("{served} hostile IngressRoutes served, {refused} refused");
    assert!(refused > 0, "nothing hostile was refused");
    assert!(served > 0, "no hostile value reached Envoy");
}
