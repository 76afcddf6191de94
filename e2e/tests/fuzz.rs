//! Structured fuzzing of loader → DAG → translate with hostile worlds: random namespaces,
//! Gateways, IngressRoutes (hostile strings, numbers at and past every limit, deep, wide and
//! cyclic delegation graphs), Services (ExternalName too), Endpoints, EndpointSlices and
//! Secrets (good, broken, mismatched, mistyped), written as JSON or YAML and sometimes mangled.
//!
//! Every input must load without a panic, build and translate within a hang guard, and produce
//! resources that pass the output constraint checker (`xds::translate::constraints`); a sample
//! of outputs also goes through a real `envoy --mode validate`.
//!
//! Knobs (environment): `SLUICE_FUZZ_ITERATIONS` (default 150, CI's smoke run),
//! `SLUICE_FUZZ_SEED` (default fixed, so CI is reproducible), `SLUICE_FUZZ_ENVOY_EVERY`
//! (validate every Nth input with Envoy, default 15). `make fuzz` runs a long, randomly seeded
//! campaign in release mode. A failing input is written to the system temp directory and its
//! seed and iteration printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::xds::translate::constraints::check_resources;
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::rng::Rng;
use sluice_e2e::tls::{CertKey, TestCa};

/// A hang, not a speed target: the slowest input of a long run is far below this.
const HANG_GUARD: Duration = Duration::from_secs(20);

const NAMESPACES: &[&str] = &["team-a", "team-b", "team-c", "default"];
const NAMES: &[&str] = &["a", "b", "c", "d", "e", "root", "web", "api"];
const HOSTS: &[&str] = &[
    "a.example.com",
    "A.Example.COM",
    "a.example.com.",
    "a.example.com:8080",
    "b.example.com",
    "*.example.com",
    "*",
    "127.0.0.1",
    "::1",
    "xn--bcher-kva.example",
    "bücher.example",
    "a b.example",
    "a\u{0}.example",
    "a\r\nx.example",
    "",
    "-a.example",
    "a..example",
    "localhost",
];
const STRINGS: &[&str] = &[
    "",
    "/",
    "/a",
    "/a/",
    "/api",
    "/api/v1",
    "a",
    "*",
    "\u{0}",
    "/\u{0}",
    "/\r\nX-Injected: 1",
    "/a b",
    "/é",
    "/%00",
    "../x",
    "${HOME}",
    "\u{202e}evil",
    "/\t",
    "x.example.com",
];
const DURATIONS: &[&str] = &[
    "1s",
    "0s",
    "0",
    "infinity",
    "150ms",
    "1m30s",
    "100000000h",
    "2562047h47m16.854775807s",
    "876000h",
    "876001h",
    "-1s",
    "1.5h",
    "abc",
    "",
    "1e9h",
    "9999999999999999999999h",
];
const NUMBERS: &[i64] = &[
    0,
    1,
    -1,
    2,
    80,
    443,
    65535,
    65536,
    100,
    i32::MAX as i64,
    u32::MAX as i64,
    u32::MAX as i64 + 1,
    i64::MAX,
    i64::MIN,
];
const IPS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "192.0.2.10",
    "2001:db8::1",
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "224.0.0.1",
    "fe80::1",
    "not-an-ip",
    "10.0.0.1\n",
    "",
    "::",
];

struct Pki {
    good: Vec<CertKey>,
    ca: String,
}

fn pki() -> Pki {
    let ca = TestCa::new("fuzz-ca").unwrap();
    Pki {
        good: vec![
            ca.issue(&["a.example.com"]).unwrap(),
            ca.issue(&["b.example.com"]).unwrap(),
        ],
        ca: ca.cert_pem(),
    }
}

fn hostile_string(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => "a".repeat(*rng.pick(&[63, 64, 253, 254, 256, 4096, 5000])),
        1 => format!("{}{}", rng.pick(STRINGS), rng.pick(STRINGS)),
        2 => (0..rng.below(12))
            .map(|_| char::from(rng.below(128) as u8))
            .collect(),
        _ => (*rng.pick(STRINGS)).to_owned(),
    }
}

fn path(rng: &mut Rng) -> String {
    if rng.chance(70) {
        (*rng.pick(&["/", "/a", "/a/b", "/api", "/api/v1", "/b"])).to_owned()
    } else {
        hostile_string(rng)
    }
}

fn number(rng: &mut Rng) -> i64 {
    if rng.chance(60) {
        *rng.pick(&[80, 443, 8080])
    } else {
        *rng.pick(NUMBERS)
    }
}

fn meta(rng: &mut Rng, ns: &str, name: &str) -> Value {
    let mut m = json!({"namespace": ns, "name": name});
    if rng.chance(60) {
        m["creationTimestamp"] = json!(format!("202{}-01-01T00:00:00Z", rng.below(6)));
    }
    if rng.chance(15) {
        m["annotations"] = json!({"kubernetes.io/ingress.class": rng.pick(&["x", "y", ""])});
    }
    m
}

fn service_ref(rng: &mut Rng) -> Value {
    let port = if rng.chance(75) { 80 } else { number(rng) };
    let name = if rng.chance(75) {
        "web"
    } else {
        *rng.pick(NAMES)
    };
    let mut s = json!({"name": name, "port": port});
    if rng.chance(30) {
        s["weight"] = json!(number(rng));
    }
    if rng.chance(20) {
        s["strategy"] =
            json!(rng.pick(&["RoundRobin", "WeightedLeastRequest", "Random", "Cookie"]));
    }
    if rng.chance(20) {
        let mut hc = json!({"path": path(rng)});
        if rng.chance(50) {
            hc["host"] = json!(hostile_string(rng));
        }
        if rng.chance(50) {
            hc["intervalSeconds"] = json!(number(rng));
            hc["timeoutSeconds"] = json!(number(rng));
            hc["unhealthyThresholdCount"] = json!(number(rng));
            hc["healthyThresholdCount"] = json!(number(rng));
        }
        s["healthCheck"] = hc;
    }
    if rng.chance(10) {
        let subject = if rng.chance(50) {
            "backend.example.com".to_owned()
        } else {
            hostile_string(rng)
        };
        s["validation"] = json!({"caSecret": rng.pick(&["ca", "bad-ca", "missing", "team-a/ca"]),
                                 "subjectName": subject});
    }
    s
}

fn route(rng: &mut Rng, ir_names: &[(String, String)]) -> Value {
    let mut r = json!({"match": path(rng)});
    if rng.chance(35) && !ir_names.is_empty() {
        let (ns, name) = rng.pick(ir_names).clone();
        let mut d = json!({"name": name});
        if rng.chance(50) {
            d["namespace"] = json!(ns);
        }
        r["delegate"] = d;
        if rng.chance(5) {
            r["services"] = json!([service_ref(rng)]);
        }
    } else {
        let n = rng.below(4);
        r["services"] = Value::Array((0..n).map(|_| service_ref(rng)).collect());
    }
    if rng.chance(15) {
        r["prefixRewrite"] = json!(path(rng));
    }
    if rng.chance(15) {
        r["timeoutPolicy"] = json!({"request": rng.pick(DURATIONS)});
    }
    if rng.chance(15) {
        r["retryPolicy"] = json!({"count": number(rng), "perTryTimeout": rng.pick(DURATIONS)});
    }
    if rng.chance(10) {
        r["enableWebsockets"] = json!(true);
    }
    if rng.chance(10) {
        r["permitInsecure"] = json!(true);
    }
    r
}

fn ingress_route(rng: &mut Rng, ns: &str, name: &str, ir_names: &[(String, String)]) -> Value {
    let mut spec = json!({});
    if rng.chance(45) {
        let fqdn = if rng.chance(50) {
            format!("h{}.example.com", rng.below(6))
        } else {
            (*rng.pick(HOSTS)).to_owned()
        };
        let mut vh = json!({"fqdn": fqdn});
        if rng.chance(40) {
            let mut tls = json!({"secretName": rng.pick(&["good0", "good1", "bad", "mismatched", "opaque", "missing", "team-a/good0"])});
            if rng.chance(20) {
                tls["passthrough"] = json!(true);
            }
            if rng.chance(20) {
                tls["minimumProtocolVersion"] = json!(rng.pick(&["1.1", "1.2", "1.3"]));
            }
            vh["tls"] = tls;
        }
        spec["virtualhost"] = vh;
        if rng.chance(15) {
            spec["tcpproxy"] = if rng.chance(50) && !ir_names.is_empty() {
                let (_, n) = rng.pick(ir_names).clone();
                json!({"delegate": {"name": n}})
            } else {
                json!({"services": [service_ref(rng)]})
            };
        }
    } else if rng.chance(10) {
        spec["tcpproxy"] = json!({"services": [service_ref(rng)]});
    }
    if rng.chance(10) {
        spec["healthCheck"] = json!({"path": path(rng)});
    }
    let n = rng.below(5);
    spec["routes"] = Value::Array((0..n).map(|_| route(rng, ir_names)).collect());
    json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
           "metadata": meta(rng, ns, name), "spec": spec})
}

/// A long or wide delegation graph: `depth` levels, each IngressRoute delegating `fanout`
/// times to the next, possibly closing a cycle.
fn deep_graph(rng: &mut Rng, ns: &str, depth: usize, fanout: usize) -> Vec<Value> {
    let mut out = vec![
        json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
        "metadata": {"namespace": ns, "name": "deep0"},
        "spec": {"virtualhost": {"fqdn": format!("deep{}.example.com", rng.below(3))},
                 "routes": [{"match": "/", "delegate": {"name": "deep1"}}]}}),
    ];
    let cycle = rng.chance(30);
    for i in 1..depth {
        let next = if cycle && i + 1 == depth {
            format!("deep{}", 1 + rng.below(i))
        } else {
            format!("deep{}", i + 1)
        };
        let mut routes: Vec<Value> = (0..fanout)
            .map(|k| json!({"match": if k % 2 == 0 { "/" } else { "/a" }, "delegate": {"name": next}}))
            .collect();
        routes.push(json!({"match": format!("/l{i}"), "services": [{"name": "web", "port": 80}]}));
        out.push(
            json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": ns, "name": format!("deep{i}")}, "spec": {"routes": routes}}),
        );
    }
    out
}

fn world(rng: &mut Rng, pki: &Pki) -> Vec<Value> {
    let namespaces: Vec<&str> = NAMESPACES[..1 + rng.below(NAMESPACES.len())].to_vec();
    let mut objects = Vec::new();
    for g in 0..rng.below(3) {
        let mut spec = json!({});
        if rng.chance(50) {
            spec["rootNamespaces"] = json!([rng.pick(NAMESPACES)]);
        }
        if rng.chance(30) {
            spec["ingressClassName"] = json!(rng.pick(&["x", "y"]));
        }
        if rng.chance(50) {
            spec["enableExternalNameServices"] = json!(true);
        }
        if rng.chance(20) {
            spec["tls"] = json!({"minimumProtocolVersion": rng.pick(&["1.2", "1.3"])});
        }
        objects.push(json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                            "metadata": {"namespace": "gw", "name": format!("g{g}")}, "spec": spec}));
    }
    let ir_names: Vec<(String, String)> = namespaces
        .iter()
        .flat_map(|ns| {
            NAMES
                .iter()
                .map(move |n| ((*ns).to_owned(), (*n).to_owned()))
        })
        .filter(|_| rng.chance(40))
        .collect();
    for (ns, name) in &ir_names {
        objects.push(ingress_route(rng, ns, name, &ir_names));
    }
    for ns in &namespaces {
        let mut names: Vec<&str> = NAMES.iter().copied().filter(|_| rng.chance(50)).collect();
        if !names.contains(&"web") && rng.chance(80) {
            names.push("web");
        }
        for name in names {
            let ports: Vec<Value> = (0..1 + rng.below(2))
                .map(|i| {
                    let port = if i == 0 && rng.chance(80) {
                        80
                    } else {
                        number(rng)
                    };
                    let mut p = json!({"port": port, "targetPort": 8080});
                    if i > 0 || rng.chance(50) {
                        p["name"] = json!(rng.pick(&["http", "https", "h2"]));
                    }
                    p
                })
                .collect();
            let mut svc = json!({"apiVersion": "v1", "kind": "Service",
                                 "metadata": {"namespace": ns, "name": name}, "spec": {"ports": ports}});
            if rng.chance(15) {
                svc["spec"]["type"] = json!("ExternalName");
                svc["spec"]["externalName"] = json!(if rng.chance(50) {
                    (*rng.pick(HOSTS)).to_owned()
                } else {
                    (*rng.pick(IPS)).to_owned()
                });
            }
            if rng.chance(20) {
                svc["metadata"]["annotations"] = json!({
                    "contour.heptio.com/upstream-protocol.tls": rng.pick(&["443", "https", "80,443"]),
                    "projectcontour.io/upstream-protocol.h2c": rng.pick(&["80", "h2"])});
            }
            objects.push(svc);
            let ips: Vec<&str> = (0..rng.below(4)).map(|_| *rng.pick(IPS)).collect();
            if rng.chance(60) {
                let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
                objects.push(json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"namespace": ns, "name": name},
                    "subsets": [{"addresses": addresses,
                                 "ports": [{"name": rng.pick(&["http", "https"]), "port": 8080}]}]}));
            } else {
                objects.push(
                    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"namespace": ns, "name": format!("{name}-s"),
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": rng.pick(&["IPv4", "IPv6", "FQDN"]),
                    "ports": [{"name": "http", "port": if rng.chance(80) { 8080 } else { number(rng) }}],
                    "endpoints": [{"addresses": ips, "conditions": {"ready": rng.chance(80)}}]}),
                );
            }
        }
        let secret = |name: &str, ty: &str, crt: &str, key: &str| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": ns, "name": name},
                   "type": ty, "stringData": {"tls.crt": crt, "tls.key": key}})
        };
        let tls = "kubernetes.io/tls";
        objects.push(secret(
            "good0",
            tls,
            &pki.good[0].cert_pem,
            &pki.good[0].key_pem,
        ));
        objects.push(secret(
            "good1",
            tls,
            &pki.good[1].cert_pem,
            &pki.good[1].key_pem,
        ));
        objects.push(secret(
            "mismatched",
            tls,
            &pki.good[0].cert_pem,
            &pki.good[1].key_pem,
        ));
        objects.push(secret(
            "opaque",
            "Opaque",
            &pki.good[0].cert_pem,
            &pki.good[0].key_pem,
        ));
        objects.push(secret(
            "bad",
            tls,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            &hostile_string(rng),
        ));
        objects.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": ns, "name": "ca"},
                            "stringData": {"ca.crt": pki.ca}}));
        objects.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": ns, "name": "bad-ca"},
                            "stringData": {"ca.crt": hostile_string(rng)}}));
        if rng.chance(30) {
            objects.push(json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "TLSCertificateDelegation",
                "metadata": {"namespace": ns, "name": "d"},
                "spec": {"delegations": [{"secretName": rng.pick(&["good0", "mismatched"]),
                                          "targetNamespaces": [rng.pick(&["*", "team-b"])]}]}}));
        }
    }
    if rng.chance(15) {
        let depth = *rng.pick(&[5, 31, 32, 33, 40, 200, 2000]);
        let fanout = *rng.pick(&[1, 2, 10]);
        let depth = if fanout > 2 { depth.min(40) } else { depth };
        objects.extend(deep_graph(rng, namespaces[0], depth, fanout));
    }
    objects
}

/// The world as manifest text: a JSON stream or YAML documents, sometimes mangled.
fn text(rng: &mut Rng, objects: &[Value]) -> (String, String) {
    let (name, mut text) = if rng.chance(50) {
        (
            "world.json".to_owned(),
            objects.iter().map(|o| format!("{o}\n")).collect::<String>(),
        )
    } else {
        (
            "world.yaml".to_owned(),
            objects
                .iter()
                .map(|o| format!("---\n{}", serde_norway::to_string(o).unwrap()))
                .collect(),
        )
    };
    if rng.chance(10) && !text.is_empty() {
        let mut cut = rng.below(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        match rng.below(3) {
            0 => text.truncate(cut),
            1 => {
                let junk = *rng.pick(&["[[[[", "{", "---\n", "\u{0}", ": :", "\t"]);
                text.insert_str(cut, junk);
            }
            _ => text.insert_str(cut, &"[".repeat(1000)),
        }
    }
    (name, text)
}

/// Outcome of one input: `Err` describes what broke.
fn run_one(name: &str, text: &str) -> Result<(usize, Vec<String>), String> {
    let report = sluice::source::load_sources([(name, text)]);
    let opts = TranslateOptions::default();
    let mut bootstraps = Vec::new();
    let mut vhosts = 0;
    for local in [false, true] {
        for sel in sluice::dag::instances(&report.snapshot) {
            let sel = if local { sel.local() } else { sel };
            let dag = sluice::dag::build(&report.snapshot, &sel);
            vhosts += dag.virtual_hosts.len();
            let resources = translate(&dag, &opts)
                .map_err(|e| format!("{}: translation failed: {e}", sel.gateway))?;
            let violations = check_resources(&resources);
            if !violations.is_empty() {
                let v: Vec<String> = violations.iter().map(ToString::to_string).collect();
                return Err(format!("{}: constraint violations: {v:#?}", sel.gateway));
            }
            if local {
                let bootstrap = inline_bootstrap(&resources, &opts).map_err(|e| e.to_string())?;
                let json = message_to_json(&bootstrap).map_err(|e| e.to_string())?;
                bootstraps.push(json.to_string());
            }
        }
    }
    Ok((vhosts, bootstraps))
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn hostile_worlds_never_break_the_pipeline() {
    let iterations = env_number("SLUICE_FUZZ_ITERATIONS", 150);
    let seed = env_number("SLUICE_FUZZ_SEED", 0x5eed_cafe);
    let envoy_every = env_number("SLUICE_FUZZ_ENVOY_EVERY", 15).max(1);
    let pki = pki();
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let (mut slowest, mut vhosts, mut validated) = (Duration::ZERO, 0, 0);
    for i in 0..iterations {
        let objects = world(&mut rng, &pki);
        let (name, text) = text(&mut rng, &objects);
        let t = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| run_one(&name, &text)));
        let took = t.elapsed();
        slowest = slowest.max(took);
        let failure = match result {
            Err(_) => Some("panicked".to_owned()),
            Ok(Err(e)) => Some(e),
            Ok(Ok(_)) if took > HANG_GUARD => Some(format!("took {took:?}")),
            Ok(Ok((n, bootstraps))) => {
                vhosts += n;
                if i % envoy_every == 0 {
                    for b in bootstraps {
                        validated += 1;
                        if let Err(e) = sluice_e2e::envoy::validate(&b).await {
                            return fail(seed, i, &name, &text, &format!("Envoy rejected: {e}"));
                        }
                    }
                }
                None
            }
        };
        if let Some(f) = failure {
            return fail(seed, i, &name, &text, &f);
        }
    }
    println!(
        "fuzz: seed {seed:#x}: {iterations} inputs in {:.1?}, slowest {slowest:.1?}, \
         {vhosts} virtual hosts built, {validated} configurations validated by Envoy",
        started.elapsed()
    );
}

fn fail(seed: u64, i: u64, name: &str, text: &str, what: &str) {
    let path = std::env::temp_dir().join(format!("sluice-fuzz-{seed:x}-{i}-{name}"));
    let _ = std::fs::write(&path, text);
    panic!(
        "fuzz input {i} of seed {seed:#x} ({}): {what}",
        path.display()
    );
}
