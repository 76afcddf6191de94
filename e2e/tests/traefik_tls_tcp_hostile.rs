//! A hostile tenant writing Traefik TLS and TCP objects: random worlds of TLSOptions (every
//! version, cipher, curve, ALPN and client-auth value at or past a limit, `default` ones
//! included), TLSStores, HTTPS IngressRoutes using them and IngressRouteTCPs (every HostSNI form,
//! weights, ports and PROXY protocol versions), next to victims: a Contour TLS root and a
//! Traefik HTTPS IngressRoute of another namespace, older than anything the attacker writes.
//! For each world the translated configuration passes the output checker and a real
//! `envoy --mode validate`, and each victim's virtual host (its TLS included: no `default`
//! object of the attacker's applies to it) is exactly what it is without the attacker. The seed
//! is printed; `SLUICE_TRAEFIK_TLS_SEED=<n>` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use sluice::dag::model::VirtualHost;
use sluice::dag::{Dag, build, instances};
use sluice::xds::translate::constraints::check_resources;
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::manifests::{self, ca_secret, doc, tls_secret};
use sluice_e2e::rng::Rng;
use sluice_e2e::tls::TestCa;

const WORLDS: usize = 24;
const VICTIM_HOSTS: [&str; 2] = ["victim.example.com", "traefik-victim.example.com"];
/// Creation times of the attacker's objects: never before the victims' (the API server sets them).
const CREATED: [&str; 2] = ["2030-01-01T00:00:00Z", "2020-01-02T00:00:00Z"];

fn traefik(kind: &str, name: &str, created: &str, spec: Value) -> String {
    manifests::traefik(kind, "evil", name, Some(created), spec)
}

/// A value for each TLSOption field: mostly one that is valid but at an edge (so that it
/// reaches Envoy), sometimes one that must be refused.
fn hostile_tls_option(name: &str, rng: &mut Rng) -> String {
    let v = |a: &[&str]| json!(a);
    #[allow(clippy::type_complexity)]
    let fields: [(&str, Vec<Value>, Vec<Value>); 6] = [
        (
            "minVersion",
            vec![
                json!("VersionTLS11"),
                json!("VersionTLS12"),
                json!("VersionTLS13"),
                json!(""),
            ],
            vec![
                json!("VersionTLS10"),
                json!("VersionTLS14"),
                json!("TLSv1.2"),
            ],
        ),
        (
            "maxVersion",
            vec![
                json!("VersionTLS12"),
                json!("VersionTLS13"),
                json!("VersionTLS11"),
            ],
            vec![json!("VersionTLS10"), json!("1.3")],
        ),
        (
            "cipherSuites",
            vec![
                v(&[
                    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                    "TLS_AES_128_GCM_SHA256",
                ]),
                v(&["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]),
                v(&["TLS_AES_256_GCM_SHA384"]),
                v(&[
                    "TLS_RSA_WITH_AES_128_CBC_SHA",
                    "TLS_RSA_WITH_AES_128_CBC_SHA",
                ]),
                v(&[]),
            ],
            vec![
                v(&["TLS_RSA_WITH_RC4_128_SHA"]),
                v(&["ECDHE-RSA-AES128-GCM-SHA256"]),
                v(&["ALL:!aNULL"]),
                v(&[""]),
            ],
        ),
        (
            "curvePreferences",
            vec![
                v(&["CurveP521", "X25519MLKEM768"]),
                v(&["secp256r1", "CurveP256"]),
                v(&[]),
            ],
            vec![v(&["P-256"]), v(&["X448"])],
        ),
        (
            "alpnProtocols",
            vec![
                v(&["h2"]),
                v(&["acme-tls/1"]),
                v(&["http/1.1", "acme-tls/1"]),
                v(&["h3", "spdy/3"]),
                json!(["x".repeat(255)]),
            ],
            vec![v(&[""]), v(&["a b\u{7f}"]), json!(["x".repeat(300)])],
        ),
        (
            "clientAuth",
            vec![
                json!({"secretNames": ["evil-ca"], "clientAuthType": "RequireAndVerifyClientCert"}),
                json!({"secretNames": ["evil-ca", "evil-ca"]}),
                json!({"secretNames": ["evil-ca"], "clientAuthType": "RequestClientCert"}),
                json!({"secretNames": ["evil-ca"], "clientAuthType": "RequireAnyClientCert"}),
                json!({"secretNames": ["evil-ca"], "clientAuthType": "NoClientCert"}),
            ],
            vec![
                json!({"secretNames": ["evil-cert"], "clientAuthType": "VerifyClientCertIfGiven"}),
                json!({"secretNames": ["../victim/victim-ca"]}),
                json!({"secretNames": ["victim-ca"]}),
                json!({"secretNames": [""]}),
                json!({"clientAuthType": "RequireAnyClientCert"}),
                json!({"clientAuthType": "Sometimes"}),
            ],
        ),
    ];
    let mut spec = json!({});
    for (field, accepted, refused) in &fields {
        if rng.chance(50) {
            let list = if rng.chance(85) { accepted } else { refused };
            spec[*field] = rng.pick(list).clone();
        }
    }
    for field in [
        "sniStrict",
        "disableSessionTickets",
        "preferServerCipherSuites",
    ] {
        if rng.chance(30) {
            spec[field] = json!(rng.chance(50));
        }
    }
    if rng.chance(3) {
        spec["unknown"] = json!(1);
    }
    traefik("TLSOption", name, "2020-01-02T00:00:00Z", spec)
}

fn hostile_store(rng: &mut Rng) -> String {
    let specs = [
        json!({"defaultCertificate": {"secretName": "evil-cert"}}),
        json!({"defaultCertificate": {"secretName": "victim/victim-cert"}}),
        json!({"defaultCertificate": {"secretName": "evil-ca"}}),
        json!({"certificates": [{"secretName": "evil-cert"}]}),
        json!({"defaultGeneratedCert": {"resolver": "le"}}),
        json!({}),
    ];
    traefik(
        "TLSStore",
        "default",
        "2020-01-02T00:00:00Z",
        rng.pick(&specs).clone(),
    )
}

fn hostile_tls(rng: &mut Rng) -> Value {
    let mut tls = json!({});
    if rng.chance(85) {
        tls["secretName"] = json!(rng.pick(&[
            "evil-cert",
            "evil-cert",
            "evil-cert",
            "evil-cert",
            "evil-cert",
            "evil-ca",
            "../victim/victim-cert",
            "victim-cert",
            ""
        ]));
    }
    if rng.chance(60) {
        let valid = [
            json!({"name": "o0"}),
            json!({"name": "o1"}),
            json!({"name": "default"}),
        ];
        let hostile = [
            json!({"name": "o0", "namespace": "victim"}),
            json!({"name": "o0@file"}),
            json!({"name": "missing"}),
        ];
        let list = if rng.chance(85) { &valid } else { &hostile };
        tls["options"] = rng.pick(list).clone();
    }
    if rng.chance(5) {
        tls["store"] = json!({"name": rng.pick(&["default", "mine"])});
    }
    tls
}

fn hostile_https_route(name: &str, rng: &mut Rng) -> String {
    let host = if rng.chance(85) {
        format!("{name}.evil.example.com")
    } else {
        (*rng.pick(&VICTIM_HOSTS)).to_owned()
    };
    traefik(
        "IngressRoute",
        name,
        rng.pick::<&str>(&CREATED),
        json!({
            "entryPoints": ["websecure"],
            "routes": [{"match": format!("Host(`{host}`)"),
                        "services": [{"name": "web", "port": 80}]}],
            "tls": hostile_tls(rng),
        }),
    )
}

fn hostile_tcp_route(name: &str, rng: &mut Rng) -> String {
    let own = format!("{name}.evil.example.com");
    let rules = [
        format!("HostSNI(`{own}`)"),
        format!("HostSNI(`{own}`)"),
        format!("HostSNI(`{own}`)"),
        format!("HostSNI(`{own}`)"),
        format!("HostSNI(`{own}`)"),
        format!("HostSNI(`{}`) || HostSNI(`{own}`)", own.to_uppercase()),
        format!("HostSNI(`{own}.`)"),
        "HostSNI(`victim.example.com`)".to_owned(),
        "HostSNI(`traefik-victim.example.com`)".to_owned(),
        "HostSNI(`*`)".to_owned(),
        "HostSNI(`*.example.com`)".to_owned(),
        "HostSNIRegexp(`.+`)".to_owned(),
        "HostSNIRegexp(`(a*)*b`) && ClientIP(`10.0.0.0/8`)".to_owned(),
        "HostSNIRegexp(`(?i)VICTIM\\.example`)".to_owned(),
        "HostSNIRegexp(`victim\\.example\\.com`) || HostSNIRegexp(`^$`)".to_owned(),
        "HostSNIRegexp(`^[a-z-]+\\.example\\.com$`)".to_owned(),
        "HostSNIRegexp(`^[a-z-]+\\.evil\\.example\\.com$`) && ALPN(`h2`)".to_owned(),
        "HostSNIRegexp(`[\\x{80}-\\x{FF}]+|\\pL{2}\\p{Greek}`)".to_owned(),
        "HostSNIRegexp(`\\x{100}`)".to_owned(),
        format!("HostSNIRegexp(`{}b`)", "a|".repeat(400)),
        format!("HostSNI(`{own}`) && HostSNIRegexp(`^[a-z]`)"),
        format!("HostSNI(`{own}`) && ClientIP(`0.0.0.0/0`)"),
        format!("HostSNI(`{own}`) && ALPN(`h2`)"),
        format!(
            "HostSNI(`{own}`) && (ClientIP(`::/0`) || ClientIP(`0.0.0.0/0`) || ClientIP(`::1`))"
        ),
        format!("HostSNI(`{own}`) && ClientIP(`::ffff:1.2.3.4`)"),
        format!(
            "HostSNI(`{own}`) && ClientIP(`10.0.0.0/8`) && ClientIP(`10.1.0.0/16`) && ALPN(`x`)"
        ),
        format!("(HostSNI(`{own}`) && ALPN(`a`)) || (HostSNI(`{own}`) && ALPN(`b`))"),
        format!("HostSNI(`{own}`) && ClientIP(`1.2.3.4/33`)"),
        "HostSNI(`victim.example.com`) && ClientIP(`127.0.0.1`)".to_owned(),
        "HostSNI(`127.0.0.1`)".to_owned(),
        format!("HostSNI(`{}.example.com`)", "b".repeat(64)),
    ];
    let mut services = Vec::new();
    for _ in 0..1 + rng.next_u64() % 3 {
        let mut s = json!({
            "name": rng.pick(&["web", "web", "web", "web", "web", "web@k8s", "../web"]),
            "port": rng
                .pick(&[json!(80), json!(80), json!(80), json!("http"), json!(0), json!(70000)])
                .clone(),
        });
        if rng.chance(50) {
            s["weight"] = rng
                .pick(&[
                    json!(0),
                    json!(1),
                    json!(u32::MAX),
                    json!(-1),
                    json!(i64::MAX),
                ])
                .clone();
        }
        if rng.chance(40) {
            s["proxyProtocol"] = rng
                .pick(&[
                    json!({}),
                    json!({"version": 1}),
                    json!({"version": 2}),
                    json!({"version": 3}),
                ])
                .clone();
        }
        if rng.chance(5) {
            s["namespace"] = json!("victim");
        }
        services.push(s);
    }
    let rule = if rng.chance(60) {
        &rules[0]
    } else {
        rng.pick(&rules)
    };
    let mut route = json!({"match": rule, "services": services});
    if rng.chance(20) {
        route["priority"] = rng
            .pick(&[json!(i64::MAX), json!(i64::MIN), json!(-1)])
            .clone();
    }
    let mut tls = hostile_tls(rng);
    if rng.chance(50) {
        tls = json!({"passthrough": true});
    }
    let mut spec = json!({"routes": [route], "tls": tls});
    if rng.chance(10) {
        spec["entryPoints"] =
            json!(rng.pick(&[json!(["web"]), json!(["websecure"]), json!(["x"])]));
    }
    if rng.chance(5) {
        spec["tls"] = Value::Null;
    }
    traefik("IngressRouteTCP", name, rng.pick::<&str>(&CREATED), spec)
}

/// The victims' objects and Secrets, and the attacker's Service and Secrets.
fn world_base(ca: &TestCa) -> String {
    let svc = |ns: &str| {
        doc(&json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"namespace": ns, "name": "web"},
                    "spec": {"ports": [{"name": "http", "port": 80}]}}))
            + &doc(&json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"namespace": ns, "name": "web"},
                    "subsets": [{"addresses": [{"ip": "10.1.0.1"}],
                                 "ports": [{"name": "http", "port": 8080}]}]}))
    };
    let cert = ca.issue(&["victim.example.com"]).unwrap();
    let secrets = [
        tls_secret("victim", "victim-cert", &cert),
        ca_secret("victim", "victim-ca", &ca.cert_pem()),
        tls_secret("evil", "evil-cert", &cert),
        ca_secret("evil", "evil-ca", &ca.cert_pem()),
    ];
    svc("victim")
        + &svc("evil")
        + &secrets
            .iter()
            .map(|s| format!("---\n{s}"))
            .collect::<String>()
        + &doc(&json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": "site",
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"virtualhost": {"fqdn": "victim.example.com",
                                     "tls": {"secretName": "victim-cert"}},
                     "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]},
        }))
        + &doc(&json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": "traefik-site",
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"entryPoints": ["websecure"],
                     "routes": [{"match": "Host(`traefik-victim.example.com`)",
                                 "services": [{"name": "web", "port": 80}]}],
                     "tls": {"secretName": "victim-cert"}},
        }))
}

fn victim_vhosts(dag: &Dag) -> Vec<VirtualHost> {
    dag.virtual_hosts
        .iter()
        .filter(|v| VICTIM_HOSTS.contains(&v.fqdn.as_str()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn hostile_tls_options_stores_and_tcp_routes_never_break_the_configuration_or_the_victims() {
    let seed = sluice_e2e::rng::seed_from_env("SLUICE_TRAEFIK_TLS_SEED");
    let mut rng = Rng(seed);
    let ca = TestCa::new("hostile ca").unwrap();
    let base = world_base(&ca);
    let alone = sluice::source::load_sources([("v.yaml", base.as_str())]).snapshot;
    let sel = instances(&alone).remove(0).local();
    let expected = victim_vhosts(&build(&alone, &sel));
    assert_eq!(expected.len(), 2, "{expected:#?}");
    let opts = TranslateOptions::default();
    let (mut served, mut refused) = (0, 0);
    for world in 0..WORLDS {
        let mut text = base.clone();
        for i in 0..2 {
            text.push_str(&hostile_tls_option(&format!("o{i}"), &mut rng));
        }
        if rng.chance(60) {
            text.push_str(&hostile_tls_option("default", &mut rng));
        }
        if rng.chance(50) {
            text.push_str(&hostile_store(&mut rng));
        }
        for i in 0..3 {
            text.push_str(&hostile_https_route(&format!("r{i}"), &mut rng));
            text.push_str(&hostile_tcp_route(&format!("t{i}"), &mut rng));
        }
        let snapshot = sluice::source::load_sources([("w.yaml", text.as_str())]).snapshot;
        let dag = build(&snapshot, &sel);
        assert_eq!(
            victim_vhosts(&dag),
            expected,
            "seed {seed} world {world}: a victim's host changed\n{text}"
        );
        for s in dag.object_statuses.iter().filter(|s| s.namespace == "evil") {
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
    println!("{served} hostile Traefik objects served, {refused} refused");
    assert!(refused > 0, "nothing hostile was refused");
    assert!(served > 0, "no hostile value reached Envoy");
}
