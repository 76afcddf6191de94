//! A hostile tenant writing TraefikServices, ServersTransports and service options: random
//! worlds where weights overflow when multiplied through nesting, TraefikServices nest deep,
//! cycle and fan out, mirrors ask for impossible percentages, transports name hostile server
//! names and CA Secrets that hold garbage, and sticky cookies and health checks carry bytes
//! Envoy refuses — next to a victim team's Contour root. For each world: the translated
//! configuration passes the independent output checker and a real `envoy --mode validate`, and
//! the victim's virtual host is what it is without the attacker. The seed is printed;
//! `SLUICE_TRAEFIK_SEED=<n>` replays one.
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
use sluice_e2e::tls::TestCa;

const WORLDS: usize = 16;

fn traefik(kind: &str, name: &str, spec: Value) -> String {
    manifests::traefik(kind, "evil", name, None, spec)
}

fn weight(rng: &mut Rng) -> Value {
    if rng.chance(60) {
        return rng.pick(&[Value::Null, json!(1), json!(3)]).clone();
    }
    rng.pick(&[
        json!(u32::MAX),
        json!(u32::MAX - 1),
        json!(65536),
        json!(0),
        json!(1),
        json!(-1),
        json!(i64::MAX),
        Value::Null,
        Value::Null,
    ])
    .clone()
}

/// A reference to a Kubernetes Service (or a broken one) with hostile options.
fn leaf(rng: &mut Rng) -> Value {
    let mut s = if rng.chance(80) {
        json!({"name": "web", "port": rng.pick(&[json!(80), json!("http")]).clone()})
    } else {
        json!({"name": rng.pick(&["tls", "../web", "web@k8s"]),
               "port": rng.pick(&[json!(80), json!(443), json!("http"), json!(0)]).clone()})
    };
    let w = weight(rng);
    if !w.is_null() {
        s["weight"] = w;
    }
    if rng.chance(10) {
        s["serversTransport"] = json!(rng.pick(&["t0", "t1", "t2", "missing", "a@b"]));
    }
    if rng.chance(5) {
        s["scheme"] = json!(rng.pick(&["https", "h2c", "ftp", "HTTP"]));
    }
    if rng.chance(4) {
        s["sticky"] = json!({"cookie": {
            "name": rng.pick(&["a b", "x;y", "\u{1}", "ok", &"c".repeat(5000)]),
            "sameSite": rng.pick(&["lax", "bogus"]), "maxAge": rng.pick(&[-1, 0, i64::MAX]),
        }});
    }
    if rng.chance(4) {
        s["healthCheck"] = json!({"path": rng.pick(&["/\u{0}", "/ok", "x"]),
                                  "interval": rng.pick(&[json!(0), json!("0s"), json!("-1s")])});
    }
    if rng.chance(4) {
        s["strategy"] = json!(rng.pick(&["p2c", "wrr", "leastconn", ""]));
    }
    if rng.chance(3) {
        s["passHostHeader"] = json!(false);
    }
    if rng.chance(3) {
        s["namespace"] = json!("victim");
    }
    s
}

/// A reference from a TraefikService at `from` (routes: 0) to a later one, or now and then to
/// any of them (cycles).
fn node(rng: &mut Rng, from: u64, count: u64) -> Value {
    let to = if rng.chance(10) || from + 1 >= count {
        rng.next_u64() % count
    } else {
        from + 1 + rng.next_u64() % (count - from - 1)
    };
    let mut s = json!({"name": format!("t{to}"), "kind": "TraefikService"});
    let w = weight(rng);
    if !w.is_null() {
        s["weight"] = w;
    }
    if rng.chance(3) {
        s["port"] = json!(80);
    }
    s
}

fn entry(rng: &mut Rng, from: u64, count: u64) -> Value {
    if rng.chance(40) {
        node(rng, from, count)
    } else {
        leaf(rng)
    }
}

fn traefik_service(index: u64, count: u64, rng: &mut Rng) -> String {
    let name = format!("t{index}");
    let spec = match rng.next_u64() % 10 {
        0 | 1 => {
            let mut mirrors = Vec::new();
            for _ in 0..rng.next_u64() % 4 {
                let mut m = entry(rng, index, count);
                m["percent"] = rng
                    .pick(&[
                        json!(0),
                        json!(50),
                        json!(100),
                        json!(10),
                        json!(101),
                        json!(-5),
                    ])
                    .clone();
                mirrors.push(m);
            }
            let mut main = entry(rng, index, count);
            main["mirrors"] = json!(mirrors);
            if rng.chance(5) {
                main["mirrorBody"] = json!(false);
            }
            json!({"mirroring": main})
        }
        2 => json!({"highestRandomWeight": {"services": [leaf(rng)]}}),
        _ => {
            // Wide fan-outs: each entry may list the same TraefikService again.
            let n = 1 + rng.next_u64() % if rng.chance(20) { 40 } else { 4 };
            let services: Vec<Value> = (0..n).map(|_| entry(rng, index, count)).collect();
            let mut w = json!({"services": services});
            if rng.chance(3) {
                // A good cookie, half the time with one hostile field.
                let mut cookie = json!({"name": rng.pick(&["s".to_owned(), format!("s{index}")]),
                                        "sameSite": rng.pick(&["lax", "none"]), "path": "/",
                                        "maxAge": 60, "httpOnly": rng.chance(2)});
                if rng.chance(2) {
                    let (field, bad) = rng
                        .pick(&[
                            ("name", json!("a b")),
                            ("name", json!("x;y")),
                            ("name", json!("\u{1}")),
                            ("name", json!("é")),
                            ("name", json!("c".repeat(65))),
                            ("sameSite", json!("bogus")),
                            ("sameSite", json!("lax\r\nx: y")),
                            ("path", json!("/;x")),
                            ("path", json!("/\u{0}")),
                            ("domain", json!("a b")),
                            ("domain", json!("x;Secure")),
                            ("maxAge", json!(-1)),
                            ("maxAge", json!(i64::MAX)),
                        ])
                        .clone();
                    cookie[field] = bad;
                }
                w["sticky"] = json!({"cookie": cookie});
            }
            json!({"weighted": w})
        }
    };
    traefik("TraefikService", &name, spec)
}

fn transport(name: &str, rng: &mut Rng) -> String {
    let mut spec = json!({
        "serverName": rng.pick(&["backend.internal", "backend.internal", "a b", "x\u{1}",
                                  &"n".repeat(300), ""]),
        "rootCAs": [{"secret": rng.pick(&["ca", "ca", "garbage", "missing"])}],
    });
    if rng.chance(10) {
        spec["insecureSkipVerify"] = json!(true);
    }
    if rng.chance(10) {
        spec["rootCAs"] = json!([{"configMap": "ca"}]);
    }
    traefik("ServersTransport", name, spec)
}

fn route(name: &str, count: u64, rng: &mut Rng) -> String {
    let n = 1 + rng.next_u64() % 3;
    let services: Vec<Value> = (0..n).map(|_| entry(rng, 0, count)).collect();
    traefik(
        "IngressRoute",
        name,
        json!({"routes": [{"match": format!("Host(`{name}.example.com`)"), "services": services}]}),
    )
}

/// Values at the limits that must still be served: TraefikServices nested 8 deep, each with
/// the largest weight, ending in a mirroring service with a 100 % and a 50 % mirror.
fn at_the_limits() -> String {
    let mut text = String::new();
    for i in 1..8 {
        text.push_str(&traefik(
            "TraefikService",
            &format!("limit{i}"),
            json!({"weighted": {"services": [
                {"name": format!("limit{}", i + 1), "kind": "TraefikService", "weight": u32::MAX},
                {"name": "web", "port": 80, "weight": 0},
            ]}}),
        ));
    }
    text.push_str(&traefik(
        "TraefikService",
        "limit8",
        json!({"mirroring": {"name": "web", "port": 80, "mirrors": [
            {"name": "web2", "port": 80, "percent": 100},
            {"name": "web", "port": "http", "percent": 50},
        ]}}),
    ));
    // Sticky levels at their limits: the longest cookie name (64 bytes, `%` in it, which Envoy
    // must read literally) with every attribute, over two
    // references to one Service port (one cluster, listed once per cookie value) and a nested
    // sticky level of its own: 8 Envoy routes.
    text.push_str(&traefik(
        "TraefikService",
        "sticky-outer",
        json!({"weighted": {
            "services": [
                {"name": "web", "port": 80, "weight": 1000},
                {"name": "web", "port": "http"},
                {"name": "sticky-inner", "kind": "TraefikService"},
            ],
            "sticky": {"cookie": {"name": "n%".repeat(32), "secure": true, "httpOnly": true,
                                  "sameSite": "none", "maxAge": i32::MAX, "path": "/p",
                                  "domain": "example.com"}},
        }}),
    ));
    text.push_str(&traefik(
        "TraefikService",
        "sticky-inner",
        json!({"weighted": {
            "services": [{"name": "web2", "port": 80}, {"name": "web2", "port": "http"}],
            "sticky": {"cookie": {}},
        }}),
    ));
    text + &traefik(
        "IngressRoute",
        "limits",
        json!({"routes": [
            {"match": "Host(`limits.example.com`)",
             "services": [{"name": "limit1", "kind": "TraefikService"}]},
            {"match": "Host(`limits.example.com`) && PathPrefix(`/sticky`)",
             "services": [{"name": "sticky-outer", "kind": "TraefikService"}]},
        ]}),
    )
}

fn victim(ca_pem: &str) -> String {
    let svc = |ns: &str, name: &str, port: u16| {
        doc(&json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"namespace": ns, "name": name},
                    "spec": {"ports": [{"name": "http", "port": port}]}}))
            + &doc(&json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"namespace": ns, "name": name},
                    "subsets": [{"addresses": [{"ip": "10.1.0.1"}],
                                 "ports": [{"name": "http", "port": 8080}]}]}))
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    svc("victim", "web", 80)
        + &svc("evil", "web", 80)
        + &svc("evil", "web2", 80)
        + &svc("evil", "tls", 443)
        + &doc(&json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"namespace": "evil", "name": "ca"},
                       "data": {"ca.crt": b64(ca_pem)}}))
        + &doc(&json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"namespace": "evil", "name": "garbage"},
                       "data": {"tls.ca": b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}}))
        + &doc(&json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": "site",
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"virtualhost": {"fqdn": "victim.example.com"},
                     "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]},
        }))
}

#[tokio::test]
async fn hostile_traefik_services_never_break_the_configuration_or_the_victim() {
    let seed = sluice_e2e::rng::seed_from_env("SLUICE_TRAEFIK_SEED");
    let mut rng = Rng(seed);
    let ca = TestCa::new("hostile CA").unwrap().cert_pem();
    let alone = sluice::source::load_sources([("v.yaml", victim(&ca))]).snapshot;
    let sel = instances(&alone).remove(0).local();
    let victim_vhost = |dag: &sluice::dag::Dag| {
        dag.virtual_hosts
            .iter()
            .find(|v| v.fqdn == "victim.example.com")
            .cloned()
    };
    let expected = victim_vhost(&build(&alone, &sel)).unwrap();
    let opts = TranslateOptions::default();
    let (mut served, mut refused, mut mirrored, mut pinned) = (0, 0, 0, 0);
    for world in 0..WORLDS {
        let mut text = victim(&ca) + &at_the_limits();
        let count = 3 + rng.next_u64() % 10;
        for i in 0..count {
            text.push_str(&traefik_service(i, count, &mut rng));
        }
        for i in 0..3 {
            text.push_str(&transport(&format!("t{i}"), &mut rng));
        }
        for i in 0..4 {
            text.push_str(&route(&format!("r{i}"), count, &mut rng));
        }
        // TLS to a backend through one of the (hostile) transports.
        text.push_str(&traefik(
            "IngressRoute",
            "https",
            json!({"routes": [{"match": "Host(`https.example.com`)", "services": [
                {"name": "tls", "port": 443, "serversTransport": format!("t{}", rng.next_u64() % 3)},
            ]}]}),
        ));
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
                if refused <= 12 {
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
            sluice::dag::Validity::Valid,
            "seed {seed} world {world}: {}",
            limits.description
        );
        // The sticky levels at the limits make 8 Envoy routes under `/sticky`, 4 of which set
        // cookies; hostile sticky TraefikServices are seldom served whole (their worlds are
        // hostile all over), but those that are count too.
        let limits_host = dag
            .virtual_hosts
            .iter()
            .find(|v| v.fqdn == "limits.example.com")
            .unwrap();
        assert_eq!(
            limits_host
                .routes
                .iter()
                .filter(|r| r.prefix == "/sticky")
                .count(),
            8,
            "seed {seed} world {world}"
        );
        // The fresh pick lists `web` twice (`80` and `http`, one cluster, two cookie values).
        let fresh = limits_host
            .routes
            .iter()
            .rfind(|r| r.prefix == "/sticky")
            .unwrap();
        let names: std::collections::BTreeSet<&str> =
            fresh.clusters.iter().map(|c| c.cluster.as_str()).collect();
        assert!(names.len() < fresh.clusters.len(), "{:?}", fresh.clusters);
        pinned += dag
            .virtual_hosts
            .iter()
            .flat_map(|v| &v.routes)
            .filter(|r| r.clusters.iter().any(|c| !c.set_cookie.is_empty()))
            .count();
        mirrored += dag
            .virtual_hosts
            .iter()
            .flat_map(|v| &v.routes)
            .filter(|r| r.extra.as_ref().is_some_and(|e| !e.mirrors.is_empty()))
            .count();
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
        "{served} hostile IngressRoutes served ({mirrored} mirrored routes, {pinned} routes \
         setting sticky cookies), {refused} refused"
    );
    assert!(refused > 0, "nothing hostile was refused");
    assert!(served > WORLDS, "no hostile value reached Envoy");
    assert!(mirrored >= WORLDS, "no mirror reached Envoy");
    assert!(
        pinned >= 4 * WORLDS,
        "no sticky weighted service reached Envoy"
    );
}
