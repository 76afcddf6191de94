//! A hostile tenant claiming the catch-all and wildcards with Traefik rules (host-less rules,
//! `Host(`*`)`, `HostRegexp`, `Host(`*.name`)` over the victims' names, extreme priorities,
//! TLS), next to victims holding exact names in both dialects (one of them invalid). For each
//! random world: every Envoy virtual host answering a victim's name holds exactly the victim's
//! routes, the configuration passes the output checker and a real `envoy --mode validate`; and
//! a real Envoy, fed the worlds one after another as live edits, sends every request for a
//! victim's name (any case, port or trailing dot) to the victim, never to the attacker.
//! `SLUICE_TRAEFIK_SEED=<n>` replays a seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration};
use prost::Message;
use serde_json::{Value, json};
use sluice::dag::{build, instances};
use sluice::xds::translate::constraints::check_resources;
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::backend::Backend;
use sluice_e2e::client::Request;
use sluice_e2e::manifests::{Manifests, doc, service};
use sluice_e2e::rng::Rng;
use sluice_e2e::sluice::Standalone;
use sluice_e2e::try_wait_for;

const WORLDS: usize = 40;
const LIVE_WORLDS: usize = 8;
const WAIT: Duration = Duration::from_secs(30);
/// Names the victims hold: two served, one whose owner is invalid.
const VICTIM_NAMES: [&str; 3] = ["victim.example.com", "shop.example.com", "held.example.com"];

fn seed() -> u64 {
    sluice_e2e::rng::seed_from_env("SLUICE_TRAEFIK_SEED")
}

/// The victims: a Contour root and a Traefik IngressRoute serving their names, and a Contour
/// root whose Service does not exist (invalid, still holding its name), all older than any
/// tenant object created after them. `services`: the Services (with endpoints) to use.
fn victims(services: &str) -> String {
    let root = |name: &str, fqdn: &str, service: &str| {
        doc(&json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": name,
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"virtualhost": {"fqdn": fqdn},
                     "routes": [{"match": "/", "services": [{"name": service, "port": 80}]}]},
        }))
    };
    services.to_owned()
        + &root("site", "victim.example.com", "victim")
        + &root("held", "held.example.com", "missing")
        + &doc(&json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": "shop",
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"entryPoints": ["web"], "routes": [
                {"match": "Host(`shop.example.com`) && PathPrefix(`/`)",
                 "services": [{"name": "victim", "port": 80}]}]},
        }))
}

fn fake_services() -> String {
    let svc = |ns: &str, name: &str| {
        doc(&json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"namespace": ns, "name": name},
                    "spec": {"ports": [{"name": "http", "port": 80}]}}))
            + &doc(&json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"namespace": ns, "name": name},
                    "subsets": [{"addresses": [{"ip": "10.1.0.1"}],
                                 "ports": [{"name": "http", "port": 8080}]}]}))
    };
    svc("victim", "victim") + &svc("evil", "evil")
}

/// An attacker's IngressRoute: open-host rules aimed at the victims' names.
fn hostile_route(name: &str, rng: &mut Rng) -> String {
    let hosts = [
        "PathPrefix(`/`)",
        "Host(`*`)",
        "HostRegexp(`.+`)",
        "HostRegexp(`^victim\\.example\\.com$`)",
        "HostRegexp(`(?i)VICTIM`)",
        "Host(`*.example.com`)",
        "Host(`*.victim.example.com`)",
        "Host(`*.held.example.com`)",
        "Host(`*.com`)",
        "Host(`victim.example.com`)",
        "Host(`*.example.com`) && Host(`held.example.com`)",
        "Host(`*`) && Header(`Host`, `victim.example.com`)",
        "HostRegexp(`.+`) && ClientIP(`0.0.0.0/0`)",
        "!Host(`evil.example.com`)",
    ];
    let paths = [
        "",
        " && PathPrefix(`/`)",
        " && Path(`/x`)",
        " && Method(`GET`)",
    ];
    let mut routes = Vec::new();
    for _ in 0..1 + rng.next_u64() % 3 {
        let rule = format!("{}{}", rng.pick(&hosts), rng.pick(&paths));
        let mut route = json!({"match": rule, "services": [{"name": "evil", "port": 80}]});
        let priorities = [
            Value::Null,
            json!(i64::MAX - 1000),
            json!(i64::MIN),
            json!(1),
        ];
        let priority = rng.pick(&priorities);
        if !priority.is_null() {
            route["priority"] = priority.clone();
        }
        routes.push(route);
    }
    let mut spec = json!({"routes": routes});
    if rng.chance(20) {
        spec["tls"] = json!({"secretName": "evil-cert"});
    }
    if rng.chance(50) {
        spec["entryPoints"] = json!(["web"]);
    }
    let created = rng
        .pick(&[
            json!("2030-01-01T00:00:00Z"),
            // The API server sets creationTimestamp: never older than the victims' objects.
            json!("2020-01-02T00:00:00Z"),
            Value::Null,
        ])
        .clone();
    let mut metadata = json!({"namespace": "evil", "name": name});
    if !created.is_null() {
        metadata["creationTimestamp"] = created;
    }
    doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": metadata, "spec": spec,
    }))
}

fn world(services: &str, rng: &mut Rng) -> String {
    let mut text = victims(services);
    for i in 0..3 {
        text.push_str(&hostile_route(&format!("r{i}"), rng));
    }
    text
}

/// The routes of every Envoy virtual host answering `name` (by an exact domain) in any route
/// configuration of `routes`.
fn answering(routes: &[RouteConfiguration], name: &str) -> Vec<Vec<Route>> {
    routes
        .iter()
        .flat_map(|rc| &rc.virtual_hosts)
        .filter(|vh| vh.domains.iter().any(|d| d == name))
        .map(|vh| vh.routes.clone())
        .collect()
}

fn route_configs(resources: &sluice::xds::translate::Resources) -> Vec<RouteConfiguration> {
    resources
        .routes
        .iter()
        .map(|r| RouteConfiguration::decode(r.encode().as_slice()).unwrap())
        .collect()
}

#[tokio::test]
async fn open_hosts_never_take_a_victims_name_or_break_the_configuration() {
    let seed = seed();
    let mut rng = Rng(seed);
    let alone = sluice::source::load_sources([("v.yaml", victims(&fake_services()))]).snapshot;
    let sel = instances(&alone).remove(0).local();
    let opts = TranslateOptions::default();
    let expected_configs = route_configs(&translate(&build(&alone, &sel), &opts).unwrap());
    let expected = |name: &str| {
        let found = answering(&expected_configs, name);
        found.into_iter().next().unwrap_or_default()
    };
    let (mut open, mut refused) = (0, 0);
    for n in 0..WORLDS {
        let text = world(&fake_services(), &mut rng);
        let snapshot = sluice::source::load_sources([("w.yaml", text.as_str())]).snapshot;
        let dag = build(&snapshot, &sel);
        let open_world = dag.virtual_hosts.iter().any(|v| v.fqdn.starts_with('*'));
        open += usize::from(open_world);
        refused += dag
            .object_statuses
            .iter()
            .filter(|s| s.namespace == "evil" && s.current_status != sluice::dag::Validity::Valid)
            .count();
        for s in &dag.statuses {
            let want = if s.name == "held" { "invalid" } else { "valid" };
            assert_eq!(
                s.current_status.as_str(),
                want,
                "seed {seed} world {n}\n{text}"
            );
        }
        let resources = translate(&dag, &opts).unwrap();
        let configs = route_configs(&resources);
        for name in VICTIM_NAMES {
            let found = answering(&configs, name);
            // With an open host, even the invalid owner's name must be answered (by 404).
            assert!(
                !found.is_empty() || (!open_world && expected(name).is_empty()),
                "seed {seed} world {n}: nothing answers {name}\n{text}"
            );
            for routes in found {
                assert_eq!(
                    routes,
                    expected(name),
                    "seed {seed} world {n}: {name} answered by other routes\n{text}"
                );
            }
        }
        let violations = check_resources(&resources);
        assert!(
            violations.is_empty(),
            "seed {seed} world {n}: {violations:#?}\n{text}"
        );
        let bootstrap = inline_bootstrap(&resources, &opts).unwrap();
        let json = serde_json::to_string(&message_to_json(&bootstrap).unwrap()).unwrap();
        if let Err(e) = sluice_e2e::envoy::validate(&json).await {
            panic!("seed {seed} world {n}: Envoy rejected it: {e}\n{text}");
        }
    }
    println!("{open} of {WORLDS} worlds served an open host; {refused} hostile objects refused");
    assert!(open > WORLDS / 4, "too few worlds served an open host");
    assert!(refused > 0, "nothing hostile was refused");
}

/// The same worlds through a real Envoy, one after another as live edits: every request for a
/// victim's name reaches the victim (or, for the invalid owner's name, 404), never the attacker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_envoy_sends_the_victims_names_to_the_victims() {
    let seed = seed();
    let mut rng = Rng(seed);
    let victim = Backend::start("victim").await.unwrap();
    let evil = Backend::start("evil").await.unwrap();
    let services = service("victim", "victim", 80, &[victim.port()])
        + &service("evil", "evil", 80, &[evil.port()]);
    let dir = Manifests::new().unwrap();
    dir.write("world.yaml", &victims(&services)).unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let port = sluice.default_instance(WAIT).await.unwrap().http;
    let mut attacker_answers = 0;
    for n in 0..LIVE_WORLDS {
        // A name only this world serves, to know when Envoy has it.
        let sentinel = format!("w{n}.sentinel.test");
        let marker = doc(&json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": format!("sentinel{n}"),
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"virtualhost": {"fqdn": sentinel},
                     "routes": [{"match": "/", "services": [{"name": "victim", "port": 80}]}]},
        }));
        let text = world(&services, &mut rng) + &marker;
        dir.write("world.yaml", &text).unwrap();
        try_wait_for(&sentinel, WAIT, async || {
            sluice.check_running()?;
            let r = Request::get(&sentinel, "/").send(port).await;
            Ok(r.ok().filter(|r| r.backend().as_deref() == Some("victim")))
        })
        .await
        .unwrap();
        let variants = |name: &str| {
            [
                name.to_owned(),
                name.to_uppercase(),
                format!("{name}:8080"),
                format!("{name}."),
            ]
        };
        for name in ["victim.example.com", "shop.example.com"] {
            for host in variants(name) {
                for path in ["/", "/x", "/admin"] {
                    let r = Request::get(&host, path).send(port).await.unwrap();
                    let got = (r.status, r.backend());
                    let at = format!("seed {seed} world {n}: Host {host} {path}\n{text}");
                    if host.ends_with('.') && got.0 == 404 {
                        // Scoped routes (no open host in this world) key the name as sent.
                        continue;
                    }
                    assert_eq!(got, (200, Some("victim".to_owned())), "{at}");
                }
            }
        }
        for host in variants("held.example.com") {
            let r = Request::get(&host, "/").send(port).await.unwrap();
            assert_eq!(r.status, 404, "seed {seed} world {n}: Host {host}\n{text}");
        }
        // The attacker is served somewhere in most worlds: it answers names nobody holds.
        let r = Request::get("nobody.example.com", "/x")
            .send(port)
            .await
            .unwrap();
        attacker_answers += usize::from(r.backend().as_deref() == Some("evil"));
    }
    println!(
        "the attacker answered an unclaimed name in {attacker_answers} of {LIVE_WORLDS} worlds"
    );
    assert_eq!(
        victim
            .control()
            .received()
            .iter()
            .filter(|e| e.header("host").is_some_and(|h| h.contains("held")))
            .count(),
        0
    );
    sluice.check_running().unwrap();
}
