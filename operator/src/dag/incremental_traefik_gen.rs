//! Random Traefik objects for the incremental DAG's property test (`incremental_tests.rs`):
//! every kind a Traefik root reads, with names drawn from small sets so that edits collide:
//! IngressRoutes `t0`..`t2` and IngressRouteTCPs `u0`, `u1` claim the Contour roots' hosts
//! `h0`..`h4.example.com` and `h5`..`h11` (one route several), the catch-all `*` and the wildcards
//! (IngressRouteTCPs too, with `HostSNI()`)
//! `*.example.com` (covering every `hN` name and `x.example.com`) and `*.x.example.com` (covering
//! `w0`..`w2.x.example.com`), Middlewares `m0`..`m3` (chains, basicAuth, forwardAuth),
//! TraefikServices `ts0`..`ts2` (nested, mirroring), TLSOptions `o0` and `default`, the TLSStore
//! `default`, the ServersTransport `st0`; references sometimes cross namespaces. The objects
//! routes use are sometimes invalid on their own or of another ingress class, so their own
//! verdicts (`traefik::verdicts`) come and go with them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

use crate::api::traefik::{Group, decode};
use crate::snapshot::{Kind, Object, TraefikKind};
use sluice_e2e::rng::Rng;

use super::incremental_tests::{NAMESPACES, SECRETS, SERVICES, meta};

pub const TRAEFIK_ROUTES: usize = 3;
pub const TCP_ROUTES: usize = 2;
const MIDDLEWARES: usize = 4;
const TRAEFIK_SERVICES: usize = 3;

/// Mostly one of `h0`..`h11` (the Contour roots claim `h0`..`h4`), sometimes a name under the
/// wildcard `*.x.example.com` or `x.example.com` itself.
fn host(rng: &mut Rng) -> String {
    match rng.below(14) {
        0 => format!("w{}.x.example.com", rng.below(3)),
        1 => "x.example.com".to_owned(),
        _ => format!("h{}.example.com", rng.below(12)),
    }
}

fn object(kind: &str, group: Group, metadata: Value, spec: Value) -> Value {
    json!({"apiVersion": group.api_version(), "kind": kind, "metadata": metadata, "spec": spec})
}

fn plain_meta(ns: &str, name: &str) -> Value {
    json!({"namespace": ns, "name": name})
}

/// A reference to `name`, sometimes in another namespace.
fn reference(name: String, rng: &mut Rng) -> Value {
    let mut r = json!({"name": name});
    if rng.chance(10) {
        r["namespace"] = json!(*rng.pick(&NAMESPACES));
    }
    r
}

fn service_ref(rng: &mut Rng) -> Value {
    if rng.chance(20) {
        let mut s = reference(format!("ts{}", rng.below(TRAEFIK_SERVICES)), rng);
        s["kind"] = json!("TraefikService");
        return s;
    }
    let mut s = reference(format!("svc{}", rng.below(SERVICES)), rng);
    s["port"] = match rng.below(4) {
        0 => json!(8080),
        1 => json!("alt"),
        _ => json!(80),
    };
    if rng.chance(10) {
        s["scheme"] = json!("https");
        s["serversTransport"] = json!("st0");
    }
    if rng.chance(15) {
        s["weight"] = json!(rng.below(3));
    }
    s
}

fn tls_block(rng: &mut Rng) -> Value {
    let mut tls = json!({});
    if rng.chance(70) {
        tls["secretName"] = json!(format!("s{}", rng.below(SECRETS)));
    }
    if rng.chance(50) {
        tls["options"] = json!({"name": *rng.pick(&["o0", "default"])});
    }
    tls
}

pub fn random_route(ns: &str, name: &str, group: Group, rng: &mut Rng) -> Object {
    if rng.chance(15) {
        // A plain contender for an open host, so that their claims move between tenants.
        let rule = *rng.pick(&[
            "PathPrefix(`/`)",
            "Host(`*.example.com`)",
            "Host(`*.x.example.com`)",
        ]);
        let spec = json!({"routes": [{"match": rule, "services": [{"name": "svc0", "port": 80}]}]});
        let v = object("IngressRoute", group, meta(ns, name, rng), spec);
        return Object::TraefikRoute(decode(v).unwrap());
    }
    let mut routes = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let h = host(rng);
        let rule = match rng.below(90) {
            // The catch-all, three ways.
            0 => "PathPrefix(`/`)".to_owned(),
            1 => "Host(`*`) && PathPrefix(`/c`)".to_owned(),
            2 => "HostRegexp(`.+`)".to_owned(),
            // Wildcards, alone or beside an exact name.
            3..=5 => "Host(`*.example.com`)".to_owned(),
            6 => "Host(`*.x.example.com`) && PathPrefix(`/x`)".to_owned(),
            7 => format!("Host(`*.example.com`) || Host(`{h}`)"),
            8..=15 => format!("Host(`{h}`) && PathPrefix(`/a`)"),
            16..=21 => format!("Host(`{h}`) && Header(`x-k`, `v`)"),
            22..=27 => format!("Host(`{h}`) || Host(`{}`)", host(rng)),
            // Refused while parsing (a matcher not served): still claims its host.
            28..=30 => format!("Host(`{h}`) && SomeFutureMatcher(`x`)"),
            _ => format!("Host(`{h}`)"),
        };
        let mut route = json!({"match": rule, "services": [service_ref(rng)]});
        if rng.chance(20) {
            route["services"]
                .as_array_mut()
                .unwrap()
                .push(service_ref(rng));
        }
        if rng.chance(40) {
            route["middlewares"] = json!([reference(format!("m{}", rng.below(MIDDLEWARES)), rng)]);
        }
        routes.push(route);
    }
    let mut spec = json!({"routes": routes});
    if rng.chance(45) {
        spec["tls"] = tls_block(rng);
    }
    let v = object("IngressRoute", group, meta(ns, name, rng), spec);
    Object::TraefikRoute(decode(v).unwrap())
}

pub fn random_tcp_route(ns: &str, name: &str, group: Group, rng: &mut Rng) -> Object {
    // Sometimes the catch-all or a wildcard (claimed against the IngressRoutes' open hosts).
    let sni = |rng: &mut Rng| {
        if rng.chance(20) {
            (*rng.pick(&["*", "*.example.com", "*.x.example.com"])).to_owned()
        } else {
            host(rng)
        }
    };
    let mut rule = format!("HostSNI(`{}`)", sni(rng));
    if rng.chance(30) {
        rule = format!("{rule} || HostSNI(`{}`)", sni(rng));
    }
    if rng.chance(8) {
        // Refused while parsing: still claims its names.
        rule = format!("({rule}) && SomeFutureTcpMatcher(`x`)");
    }
    let mut svc = json!({"name": format!("svc{}", rng.below(SERVICES)), "port": 80});
    if rng.chance(20) {
        svc["proxyProtocol"] = json!({"version": 1 + rng.below(2)});
    }
    let tls = if rng.chance(40) {
        json!({"passthrough": true})
    } else {
        tls_block(rng)
    };
    let spec = json!({"routes": [{"match": rule, "services": [svc]}], "tls": tls});
    let v = object("IngressRouteTCP", group, meta(ns, name, rng), spec);
    Object::TraefikTcpRoute(decode(v).unwrap())
}

pub fn random_middleware(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let spec = match rng.below(11) {
        // Invalid on its own: a kind Sluice does not serve, an empty prefix list.
        9 => json!({"plugin": {"x": {}}}),
        10 => json!({"stripPrefix": {"prefixes": []}}),
        7 => json!({"forwardAuth": {"address": format!("http://svc{}/auth", rng.below(SERVICES))}}),
        0 => json!({"addPrefix": {"prefix": "/p"}}),
        1 => json!({"headers": {"customRequestHeaders": {"x-a": "b"}}}),
        2 => json!({"rateLimit": {"average": 1}}),
        3 | 4 => {
            let inner = reference(format!("m{}", rng.below(MIDDLEWARES)), rng);
            json!({"chain": {"middlewares": [inner]}})
        }
        5 | 6 => json!({"basicAuth": {"secret": format!("s{}", rng.below(SECRETS))}}),
        _ => json!({"ipAllowList": {"sourceRange": ["10.0.0.0/8"]}}),
    };
    let v = object("Middleware", Group::TraefikIo, meta(ns, name, rng), spec);
    Object::TraefikMiddleware(decode(v).unwrap())
}

pub fn random_traefik_service(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let spec = if rng.chance(8) {
        // Invalid on its own: neither kind set.
        json!({})
    } else if rng.chance(25) {
        json!({"mirroring": {
            "name": format!("svc{}", rng.below(SERVICES)), "port": 80,
            "mirrors": [{"name": format!("svc{}", rng.below(SERVICES)), "port": 80, "percent": 10}],
        }})
    } else {
        let services: Vec<Value> = (0..1 + rng.below(2)).map(|_| service_ref(rng)).collect();
        json!({"weighted": {"services": services}})
    };
    let v = object(
        "TraefikService",
        Group::TraefikIo,
        meta(ns, name, rng),
        spec,
    );
    Object::TraefikService(decode(v).unwrap())
}

pub fn random_tls_option(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let mut spec =
        json!({"minVersion": *rng.pick(&["VersionTLS12", "VersionTLS13", "VersionTLS10"])});
    if rng.chance(50) {
        spec["clientAuth"] = json!({
            "secretNames": [format!("s{}", rng.below(SECRETS))],
            "clientAuthType": "RequireAndVerifyClientCert",
        });
    }
    let group = *rng.pick(&[Group::TraefikIo, Group::ContainoUs]);
    let v = object("TLSOption", group, plain_meta(ns, name), spec);
    Object::TraefikTlsOption(decode(v).unwrap())
}

pub fn random_tls_store(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let spec = if rng.chance(8) {
        // Invalid on its own (ACME).
        json!({"defaultGeneratedCert": {"resolver": "le"}})
    } else if rng.chance(80) {
        json!({"defaultCertificate": {"secretName": format!("s{}", rng.below(SECRETS))}})
    } else {
        json!({})
    };
    let v = object("TLSStore", Group::TraefikIo, plain_meta(ns, name), spec);
    Object::TraefikTlsStore(decode(v).unwrap())
}

pub fn random_transport(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let mut spec = json!({"serverName": "backend.internal",
                      "rootCAsSecrets": [format!("s{}", rng.below(SECRETS))]});
    if rng.chance(15) {
        // Served only where the Gateway allows it.
        spec["insecureSkipVerify"] = json!(true);
    }
    let v = object(
        "ServersTransport",
        Group::TraefikIo,
        meta(ns, name, rng),
        spec,
    );
    Object::TraefikTransport(decode(v).unwrap())
}

/// The kind and name of a random Traefik edit.
pub fn random_edit(rng: &mut Rng) -> (Kind, String) {
    let group = *rng.pick(&[Group::TraefikIo, Group::ContainoUs]);
    let t = |k| Kind::Traefik(k, Group::TraefikIo);
    match rng.below(10) {
        0..=2 => (
            Kind::Traefik(TraefikKind::IngressRoute, group),
            format!("t{}", rng.below(TRAEFIK_ROUTES)),
        ),
        3 => (
            Kind::Traefik(TraefikKind::IngressRouteTcp, group),
            format!("u{}", rng.below(TCP_ROUTES)),
        ),
        4 | 5 => (
            t(TraefikKind::Middleware),
            format!("m{}", rng.below(MIDDLEWARES)),
        ),
        6 => (
            t(TraefikKind::TraefikService),
            format!("ts{}", rng.below(TRAEFIK_SERVICES)),
        ),
        7 => (
            Kind::Traefik(TraefikKind::TlsOption, group),
            (*rng.pick(&["o0", "default"])).to_owned(),
        ),
        8 => (t(TraefikKind::TlsStore), "default".to_owned()),
        _ => (t(TraefikKind::ServersTransport), "st0".to_owned()),
    }
}

/// A random object of a Traefik `kind`.
pub fn random_object(kind: Kind, ns: &str, name: &str, rng: &mut Rng) -> Object {
    match kind {
        Kind::Traefik(TraefikKind::IngressRoute, g) => random_route(ns, name, g, rng),
        Kind::Traefik(TraefikKind::IngressRouteTcp, g) => random_tcp_route(ns, name, g, rng),
        Kind::Traefik(TraefikKind::Middleware, _) => random_middleware(ns, name, rng),
        Kind::Traefik(TraefikKind::TraefikService, _) => random_traefik_service(ns, name, rng),
        Kind::Traefik(TraefikKind::TlsOption, _) => random_tls_option(ns, name, rng),
        Kind::Traefik(TraefikKind::TlsStore, _) => random_tls_store(ns, name, rng),
        Kind::Traefik(TraefikKind::ServersTransport, _) => random_transport(ns, name, rng),
        other => panic!("not a Traefik kind: {other:?}"),
    }
}

/// Traefik objects of every kind in every namespace.
pub fn populate(snap: &mut crate::snapshot::ClusterSnapshot, rng: &mut Rng) {
    for ns in NAMESPACES {
        for i in 0..TRAEFIK_ROUTES {
            let group = *rng.pick(&[Group::TraefikIo, Group::ContainoUs]);
            snap.apply(random_route(ns, &format!("t{i}"), group, rng));
        }
        for i in 0..TCP_ROUTES {
            if rng.chance(50) {
                snap.apply(random_tcp_route(
                    ns,
                    &format!("u{i}"),
                    Group::TraefikIo,
                    rng,
                ));
            }
        }
        for i in 0..MIDDLEWARES {
            snap.apply(random_middleware(ns, &format!("m{i}"), rng));
        }
        for i in 0..TRAEFIK_SERVICES {
            snap.apply(random_traefik_service(ns, &format!("ts{i}"), rng));
        }
        snap.apply(random_tls_option(ns, "o0", rng));
        if rng.chance(50) {
            snap.apply(random_tls_option(ns, "default", rng));
        }
        if rng.chance(50) {
            snap.apply(random_tls_store(ns, "default", rng));
        }
        snap.apply(random_transport(ns, "st0", rng));
    }
}

/// What a DAG shows of the Traefik features the generator aims at (see [`FEATURES`]).
pub fn features_seen(dag: &crate::dag::Dag, seen: &mut std::collections::BTreeSet<&'static str>) {
    let traefik_hosts = dag
        .virtual_hosts
        .iter()
        .filter(|v| v.owner.starts_with("traefik"));
    for v in traefik_hosts {
        if v.owner.starts_with("traefik-tcp:") {
            seen.insert("IngressRouteTCP served");
            if v.fqdn.starts_with('*') {
                seen.insert("IngressRouteTCP catch-all or wildcard served");
            }
        }
        if let Some(o) = v.tls.as_ref().and_then(|t| t.options.as_ref()) {
            seen.insert("TLSOption applied");
            if o.client_validation.is_some() {
                seen.insert("client CA of a TLSOption");
            }
        }
        for extra in v.routes.iter().filter_map(|r| r.extra.as_ref()) {
            if !extra.mirrors.is_empty() {
                seen.insert("mirroring TraefikService served");
            }
            if extra
                .policy
                .as_ref()
                .is_some_and(|p| p.basic_auth.is_some())
            {
                seen.insert("basicAuth served");
            }
            if !extra.request_headers_set.is_empty() {
                seen.insert("headers Middleware served");
            }
            if extra.policy.as_ref().is_some_and(|p| p.ext_authz.is_some()) {
                seen.insert("forwardAuth served");
            }
        }
    }
    if dag.clusters.iter().any(|c| {
        c.validation
            .as_ref()
            .is_some_and(|v| v.ca_secret.starts_with("traefik:"))
    }) {
        seen.insert("ServersTransport served");
    }
    if dag
        .statuses
        .iter()
        .any(|s| s.description.contains("already used by the older Traefik"))
    {
        seen.insert("Contour root lost a host to a Traefik route");
    }
    if dag
        .statuses
        .iter()
        .any(|s| s.description.contains("is covered by the wildcard host"))
    {
        seen.insert("Contour root covered by an older wildcard");
    }
    let open = |v: &crate::dag::model::VirtualHost| v.fqdn.starts_with('*');
    for v in dag.virtual_hosts.iter().filter(|v| open(v)) {
        seen.insert(if v.fqdn == "*" {
            "catch-all served"
        } else {
            "wildcard served"
        });
    }
    let held = |v: &crate::dag::model::VirtualHost| v.routes.is_empty() && v.tcp_proxy.is_none();
    if dag.virtual_hosts.iter().any(open) && dag.virtual_hosts.iter().any(held) {
        seen.insert("a name held (404) beside an open host");
    }
    for s in &dag.object_statuses {
        let d = &s.description;
        let route = s.kind == "IngressRoute" || s.kind == "IngressRouteTCP";
        if !route {
            seen.insert(match (s.kind.as_str(), s.current_status) {
                ("Middleware", crate::dag::Validity::Valid) => "a Middleware's own verdict valid",
                ("Middleware", _) => "a Middleware's own verdict invalid",
                (_, crate::dag::Validity::Valid) => "another object's own verdict valid",
                _ => "another object's own verdict invalid",
            });
            continue;
        }
        let checks = [
            (
                "already used by the older IngressRoute ",
                "Traefik route lost a host to a Contour root",
            ),
            (
                "already used by the older Traefik",
                "Traefik route lost a host to a Traefik route",
            ),
            (
                ", which is invalid (the name is held",
                "a host held by a root refused while parsing",
            ),
            ("not found", "a referenced object missing"),
            ("chain ", "a Middleware chain"),
            ("TraefikService ", "a TraefikService read"),
            ("TLSStore", "a TLSStore read"),
            (
                "(the namespace's default)",
                "a namespace's default TLSOption read",
            ),
            (
                "cross-namespace references are refused",
                "a cross-namespace reference refused",
            ),
            (
                "is covered by the wildcard host",
                "Traefik route covered by an older wildcard",
            ),
            (
                "the catch-all host \"*\" (rules without Host()) is already used",
                "catch-all lost to an older claimant",
            ),
            (
                "host \"*.example.com\" is already used",
                "wildcard lost to an older claimant",
            ),
        ];
        for (text, feature) in checks {
            if d.contains(text) {
                seen.insert(feature);
            }
        }
    }
}

/// Seen by the property test itself: the owner of an open host changed between two steps.
pub const OPEN_HOST_MOVED: &str = "an open host changed hands";
/// Seen by the property test itself: an open host's owner was deleted and another claimant
/// took it.
pub const OLDEST_DELETED: &str = "an open host's owner deleted, a younger claimant took it";

/// The owner of every open virtual host of `dag`.
pub fn open_owners(dag: &crate::dag::Dag) -> std::collections::BTreeMap<String, String> {
    dag.virtual_hosts
        .iter()
        .filter(|v| v.fqdn.starts_with('*') && !v.routes.is_empty())
        .map(|v| (v.fqdn.clone(), v.owner.clone()))
        .collect()
}

/// Every feature [`features_seen`] and the property test look for.
pub const FEATURES: usize = 32;
