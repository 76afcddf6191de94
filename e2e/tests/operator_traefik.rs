//! `sluice run` serving Traefik's CRDs, end to end: the real binary against the in-memory API
//! server (`sluice_e2e::apiserver`, held to `config/rbac` through impersonation as in
//! `tests/operator.rs`), and a real Envoy started from the bootstrap the operator provisioned.
//!
//! - With Traefik's CRDs installed (`sluice crds --traefik`), IngressRoutes and Middlewares of
//!   both groups are watched and served; live edits reach Envoy; an invalid IngressRoute gets an
//!   Event and is counted; host ownership spans both dialects; a tenant outside the Gateway's
//!   `rootNamespaces` is not served.
//! - Without them, the operator runs, says so once, and serves Contour's IngressRoutes; CRDs
//!   installed later are picked up by rediscovery, and removed ones stop being served.
//!
//! In memory only: the traffic checks need Endpoints at 127.0.0.1, which kube-apiserver refuses
//! (see `tests/operator.rs` for what its tests skip against a real cluster).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_e2e::apiserver::{ApiServer, ApiServerOptions};
use sluice_e2e::backend::Backend;
use sluice_e2e::client::get;
use sluice_e2e::envoy::Envoy;
use sluice_e2e::sluice::{OPERATOR_NAMESPACE, Operator, metric_value};
use sluice_e2e::{TempDir, temp_dir};

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(40);

/// The user every operator process acts as: its ServiceAccount (`config/rbac`).
const OPERATOR_USER: &str = "system:serviceaccount:sluice-system:sluice";

const TRAEFIK: &str = "traefik.io/v1alpha1";
const TRAEFIK_LEGACY: &str = "traefik.containo.us/v1alpha1";

/// The line the operator logs when no Traefik resource is served.
const ABSENT: &str = "Traefik's CRDs are not served";

struct World {
    server: ApiServer,
    dir: TempDir,
}

impl World {
    /// An API server with Sluice's CRDs, `config/rbac` and (if `traefik`) Traefik's CRDs.
    fn start(traefik: bool) -> Result<World> {
        let server = ApiServer::start_with(ApiServerOptions {
            allow_loopback_endpoints: true,
            ..ApiServerOptions::default()
        })?;
        let world = World {
            server,
            dir: temp_dir()?,
        };
        world.apply(json!({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": OPERATOR_NAMESPACE}}))?;
        world
            .server
            .apply_yaml(&sluice::api::crds_yaml()?)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if traefik {
            world.install_traefik_crds()?;
        }
        let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rbac");
        for file in [
            "service_account.yaml",
            "cluster_role.yaml",
            "cluster_role_binding.yaml",
            "leader_election_role.yaml",
            "leader_election_role_binding.yaml",
        ] {
            let text = std::fs::read_to_string(rbac.join(file))?;
            world.apply(serde_norway::from_str(&text)?)?;
        }
        Ok(world)
    }

    /// `sluice crds --traefik` (group `traefik.io`), and the same CRDs in the legacy group
    /// `traefik.containo.us`, as a cluster upgraded from Traefik 2.x keeps them.
    fn install_traefik_crds(&self) -> Result<()> {
        let yaml = sluice::api::traefik::crds_yaml()?;
        for doc in serde_norway::Deserializer::from_str(&yaml) {
            let crd: Value = serde::Deserialize::deserialize(doc)?;
            let mut legacy = crd.clone();
            let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
            legacy["metadata"]["name"] = json!(format!("{plural}.traefik.containo.us"));
            legacy["spec"]["group"] = json!("traefik.containo.us");
            for crd in [crd, legacy] {
                self.apply(crd)?;
            }
        }
        Ok(())
    }

    fn apply(&self, obj: Value) -> Result<Value> {
        let what = format!("{} {}", obj["kind"], obj["metadata"]["name"]);
        self.server
            .apply(obj)
            .map_err(|e| anyhow::anyhow!("applying {what}: {e:?}"))
    }

    fn namespace(&self, name: &str) -> Result<()> {
        self.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))?;
        Ok(())
    }

    /// An operator acting as its ServiceAccount, asking discovery about Traefik every second.
    fn operator(&self, identity: &str) -> Result<Operator> {
        let kubeconfig =
            self.server
                .write_kubeconfig_as(self.dir.path(), identity, OPERATOR_USER)?;
        Ok(Operator::builder(&kubeconfig)
            .identity(identity)
            .args(["--debounce-ms", "50"])
            .args(["--traefik-discovery-interval-seconds", "1"])
            .start()?)
    }

    /// The bootstrap the operator provisioned for Gateway `ns/name`, with the xDS client
    /// credentials written to files of the test.
    async fn bootstrap(&self, op: &mut Operator, ns: &str, name: &str) -> Result<String> {
        use base64::Engine;
        let cm = format!("{name}-envoy-bootstrap");
        let secret = format!("{name}-xds-client");
        let (bootstrap, creds) = eventually("the bootstrap and xDS credentials", async || {
            op.check_running()?;
            let b = self.server.get("v1", "ConfigMap", Some(ns), &cm);
            let s = self.server.get("v1", "Secret", Some(ns), &secret);
            Ok(b.zip(s))
        })
        .await?;
        let dir = self.dir.path().join(format!("xds-{ns}-{name}"));
        std::fs::create_dir_all(&dir)?;
        for key in ["ca.crt", "tls.crt", "tls.key"] {
            let b64 = creds["data"][key].as_str().context("credentials")?;
            let pem = base64::engine::general_purpose::STANDARD.decode(b64)?;
            std::fs::write(dir.join(key), pem)?;
        }
        let text = bootstrap["data"]["bootstrap.json"]
            .as_str()
            .context("bootstrap.json")?;
        Ok(text.replace("/certs/xds", &dir.display().to_string()))
    }

    /// Events on object `ns/name` of `kind`/`api_version`, oldest first: `(type, reason, note)`.
    fn events(&self, ns: &str, api_version: &str, name: &str) -> Vec<(String, String, String)> {
        self.kind_events(ns, api_version, "IngressRoute", name)
    }

    /// The events on the Traefik object `kind` `ns/name` of `api_version`.
    fn kind_events(
        &self,
        ns: &str,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Vec<(String, String, String)> {
        let mut events: Vec<Value> = self
            .server
            .list("events.k8s.io/v1", "Event", Some(ns))
            .into_iter()
            .filter(|e| {
                e["regarding"]["name"] == name
                    && e["regarding"]["apiVersion"] == api_version
                    && e["regarding"]["kind"] == kind
            })
            .collect();
        events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_owned());
        events
            .iter()
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                (f("type"), f("reason"), f("note"))
            })
            .collect()
    }
}

async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

fn gateway(ns: &str, name: &str, roots: &[&str]) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
           "metadata": {"namespace": ns, "name": name}, "spec": {"rootNamespaces": roots}})
}

fn service(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
           "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
}

fn endpoint_slice(ns: &str, service: &str, port: u16) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"namespace": ns, "name": format!("{service}-slice"),
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
           "ports": [{"name": "http", "protocol": "TCP", "port": port}]})
}

/// A Traefik IngressRoute with one route, `rule` to `service` (port by name), through
/// `middlewares`.
fn traefik_route(
    api_version: &str,
    ns: &str,
    name: &str,
    rule: &str,
    service: &str,
    middlewares: &[&str],
) -> Value {
    let mws: Vec<Value> = middlewares.iter().map(|m| json!({"name": m})).collect();
    json!({"apiVersion": api_version, "kind": "IngressRoute",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"entryPoints": ["web"], "routes": [{
               "match": rule, "kind": "Rule", "middlewares": mws,
               "services": [{"name": service, "port": "http"}]}]}})
}

fn contour_route(ns: &str, name: &str, fqdn: &str, service: &str) -> Value {
    json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"virtualhost": {"fqdn": fqdn},
                    "routes": [{"match": "/", "services": [{"name": service, "port": 80}]}]}})
}

/// Waits until `host/path` answers 200 from `backend`; returns the echo.
async fn reaches(
    op: &mut Operator,
    port: u16,
    host: &str,
    path: &str,
    backend: &str,
) -> Result<sluice_e2e::backend::Echo> {
    eventually(&format!("{host}{path} to reach {backend}"), async || {
        op.check_running()?;
        let resp = get(port, host, path).await;
        Ok(resp
            .ok()
            .filter(|r| r.status == 200 && r.backend().as_deref() == Some(backend))
            .and_then(|r| r.echo().ok()))
    })
    .await
}

/// Waits until `host` answers 404 (no virtual host).
async fn not_served(op: &mut Operator, port: u16, host: &str) -> Result<()> {
    eventually(&format!("{host} to answer 404"), async || {
        op.check_running()?;
        let resp = get(port, host, "/").await;
        Ok(resp.ok().filter(|r| r.status == 404).map(|_| ()))
    })
    .await
}

/// `sluice_ingressroutes` of one Gateway, group and status.
async fn verdicts(op: &Operator, gateway: &str, group: &str, status: &str) -> Result<Option<f64>> {
    let text = op.metrics().await?;
    Ok(metric_value(
        &text,
        "sluice_ingressroutes",
        &[
            ("gateway", gateway),
            ("kind", "IngressRoute"),
            ("group", group),
            ("status", status),
        ],
    ))
}

/// Waits until the events on a Traefik IngressRoute are `want` (as `(type, reason)`, the note
/// containing the third part).
async fn wait_events(
    world: &World,
    op: &mut Operator,
    ns: &str,
    api_version: &str,
    name: &str,
    want: &[(&str, &str, &str)],
) -> Result<Vec<(String, String, String)>> {
    let object = (api_version, "IngressRoute", name);
    wait_kind_events(world, op, ns, object, want).await
}

/// [`wait_events`] on the Traefik object `(apiVersion, kind, name)` of `ns`.
async fn wait_kind_events(
    world: &World,
    op: &mut Operator,
    ns: &str,
    (api_version, kind, name): (&str, &str, &str),
    want: &[(&str, &str, &str)],
) -> Result<Vec<(String, String, String)>> {
    let mut last = Vec::new();
    eventually(&format!("events {want:?} on {kind} {name}"), async || {
        op.check_running()?;
        let got = world.kind_events(ns, api_version, kind, name);
        let matches = got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|((t, r, n), (wt, wr, wn))| t == wt && r == wr && n.contains(wn));
        last = got.clone();
        Ok(matches.then_some(got))
    })
    .await
    .with_context(|| format!("last events: {last:?}"))
}

/// Traefik's CRDs installed: both groups' IngressRoutes and Middlewares are served beside
/// Contour's, live edits reach Envoy, verdicts are events and metrics, host ownership spans the
/// dialects, and a tenant outside `rootNamespaces` gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_objects_are_served_by_the_operator() -> Result<()> {
    let world = World::start(true)?;
    let (ns, outsider) = ("team-a", "team-x");
    world.namespace(ns)?;
    world.namespace(outsider)?;
    let web = Backend::start("web").await?;
    let api = Backend::start("api").await?;
    world.apply(gateway(ns, "edge", &[ns]))?;
    for (svc, backend) in [("web", &web), ("api", &api)] {
        world.apply(service(ns, svc))?;
        world.apply(endpoint_slice(ns, svc, backend.port()))?;
    }
    world.apply(service(outsider, "web"))?;
    world.apply(endpoint_slice(outsider, "web", api.port()))?;
    // A Middleware of each group; the route names the traefik.io one.
    world.apply(json!({"apiVersion": TRAEFIK, "kind": "Middleware",
                       "metadata": {"namespace": ns, "name": "prefix"},
                       "spec": {"addPrefix": {"prefix": "/v1"}}}))?;
    world.apply(json!({"apiVersion": TRAEFIK_LEGACY, "kind": "Middleware",
                       "metadata": {"namespace": ns, "name": "tag"},
                       "spec": {"headers": {"customRequestHeaders": {"X-Dialect": "traefik"}}}}))?;
    world.apply(traefik_route(
        TRAEFIK,
        ns,
        "shop",
        "Host(`shop.example.com`)",
        "web",
        &["prefix"],
    ))?;
    world.apply(traefik_route(
        TRAEFIK_LEGACY,
        ns,
        "legacy",
        "Host(`legacy.example.com`)",
        "web",
        &["tag"],
    ))?;
    // Ownership across dialects: a Contour root first, then a Traefik route for its host; a
    // Traefik route first, then (a second later, creationTimestamp counting seconds) a Contour
    // root for its host.
    world.apply(contour_route(ns, "blog", "blog.example.com", "web"))?;
    world.apply(traefik_route(
        TRAEFIK,
        ns,
        "blog-copy",
        "Host(`blog.example.com`)",
        "api",
        &[],
    ))?;
    world.apply(traefik_route(
        TRAEFIK,
        ns,
        "docs",
        "Host(`docs.example.com`)",
        "api",
        &[],
    ))?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    world.apply(contour_route(ns, "docs-copy", "docs.example.com", "web"))?;
    // A tenant outside rootNamespaces, with a host of its own and one of team-a's.
    world.apply(traefik_route(
        TRAEFIK,
        outsider,
        "evil",
        "Host(`evil.example.com`)",
        "web",
        &[],
    ))?;
    world.apply(traefik_route(
        TRAEFIK,
        outsider,
        "steal",
        "Host(`shop.example.com`) && PathPrefix(`/steal`)",
        "web",
        &[],
    ))?;

    let mut op = world.operator("solo")?;
    op.wait_ready(PATIENCE).await?;
    let port = op.ports().envoy_http;
    let bootstrap = world.bootstrap(&mut op, ns, "edge").await?;
    let _envoy = Envoy::builder(bootstrap)
        .local_admin_socket()
        .start()
        .await?;

    // Both groups, with their Middlewares.
    let echo = reaches(&mut op, port, "shop.example.com", "/cart", "web").await?;
    assert_eq!(echo.path, "/v1/cart");
    let echo = reaches(&mut op, port, "legacy.example.com", "/", "web").await?;
    assert_eq!(echo.header("x-dialect"), Some("traefik"));
    // basicAuth from a kubernetes.io/basic-auth Secret the operator watches (its username
    // and password keys must survive the operator's Secret filtering).
    world.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                       "metadata": {"namespace": ns, "name": "auth"},
                       "data": {"username": "YWxpY2U=", "password": "czNjcmV0"}}),
    )?;
    world.apply(json!({"apiVersion": TRAEFIK, "kind": "Middleware",
                       "metadata": {"namespace": ns, "name": "auth"},
                       "spec": {"basicAuth": {"secret": "auth"}}}))?;
    world.apply(traefik_route(
        TRAEFIK,
        ns,
        "private",
        "Host(`private.example.com`)",
        "web",
        &["auth"],
    ))?;
    eventually("private.example.com to ask for credentials", async || {
        op.check_running()?;
        let resp = get(port, "private.example.com", "/").await;
        Ok(resp.ok().filter(|r| r.status == 401).map(|_| ()))
    })
    .await?;
    let resp = sluice_e2e::client::Request::get("private.example.com", "/")
        .header("Authorization", "Basic YWxpY2U6czNjcmV0")
        .send(port)
        .await?;
    assert_eq!(
        (resp.status, resp.backend().as_deref()),
        (200, Some("web")),
        "{}",
        resp.text()
    );
    // Ownership: the older claimant serves, the younger is invalid naming it.
    reaches(&mut op, port, "blog.example.com", "/", "web").await?;
    reaches(&mut op, port, "docs.example.com", "/", "api").await?;
    wait_events(
        &world,
        &mut op,
        ns,
        TRAEFIK,
        "blog-copy",
        &[(
            "Warning",
            "Invalid",
            "is already used by the older IngressRoute team-a/blog",
        )],
    )
    .await?;
    let docs_copy = eventually("docs-copy to be invalid", async || {
        let ir = world.server.get(
            "contour.heptio.com/v1beta1",
            "IngressRoute",
            Some(ns),
            "docs-copy",
        );
        Ok(ir.and_then(|ir| {
            (ir["status"]["currentStatus"] == "invalid")
                .then(|| ir["status"]["description"].as_str().map(str::to_owned))
                .flatten()
        }))
    })
    .await?;
    assert!(
        docs_copy.contains("Traefik IngressRoute team-a/docs"),
        "{docs_copy}"
    );
    // The tenant outside rootNamespaces: not served, no hijack, and told why (as a Contour
    // root there would be in its status).
    not_served(&mut op, port, "evil.example.com").await?;
    reaches(&mut op, port, "shop.example.com", "/steal", "web").await?;
    for name in ["evil", "steal"] {
        wait_events(
            &world,
            &mut op,
            outsider,
            TRAEFIK,
            name,
            &[("Warning", "Invalid", "cannot be defined in this namespace")],
        )
        .await?;
    }

    // Verdicts: valid ones announced once, counted per group.
    wait_events(
        &world,
        &mut op,
        ns,
        TRAEFIK,
        "shop",
        &[("Normal", "Valid", "")],
    )
    .await?;
    let gw = format!("{ns}/edge");
    eventually("the verdict gauges", async || {
        let got = (
            verdicts(&op, &gw, "traefik.io", "valid").await?,
            verdicts(&op, &gw, "traefik.io", "invalid").await?,
            verdicts(&op, &gw, "traefik.containo.us", "valid").await?,
            verdicts(&op, &gw, "contour.heptio.com", "valid").await?,
            verdicts(&op, &gw, "contour.heptio.com", "invalid").await?,
        );
        // traefik.io: shop, docs and private valid; blog-copy, evil and steal invalid.
        Ok((got == (Some(3.0), Some(3.0), Some(1.0), Some(1.0), Some(1.0))).then_some(()))
    })
    .await?;

    // A broken Middleware no route names: its own verdict, as an Event on it and in the
    // objects' gauge, beside the valid ones; never in the route counts (checked below with
    // the Gateway's status).
    world.apply(json!({"apiVersion": TRAEFIK, "kind": "Middleware",
                       "metadata": {"namespace": ns, "name": "typo"},
                       "spec": {"stripPrefix": {"prefixes": []}}}))?;
    wait_kind_events(
        &world,
        &mut op,
        ns,
        (TRAEFIK, "Middleware", "typo"),
        &[("Warning", "Invalid", "spec.stripPrefix")],
    )
    .await?;
    // The Middleware a route uses: its own verdict, valid.
    wait_kind_events(
        &world,
        &mut op,
        ns,
        (TRAEFIK, "Middleware", "prefix"),
        &[("Normal", "Valid", "valid Middleware")],
    )
    .await?;
    eventually("the Middleware gauge", async || {
        let text = op.metrics().await?;
        let series = |group: &str, status: &str| {
            metric_value(
                &text,
                "sluice_traefik_objects",
                &[
                    ("gateway", gw.as_str()),
                    ("kind", "Middleware"),
                    ("group", group),
                    ("status", status),
                ],
            )
        };
        let got = (
            series("traefik.io", "valid"),
            series("traefik.io", "invalid"),
            series("traefik.containo.us", "valid"),
        );
        // traefik.io: prefix and auth valid, typo invalid; the legacy group: tag.
        Ok((got == (Some(2.0), Some(1.0), Some(1.0))).then_some(()))
    })
    .await?;

    // An invalid IngressRoute: an event naming the problem, counted, and in the Gateway's status.
    world.apply(traefik_route(
        TRAEFIK,
        ns,
        "broken",
        "Host(`broken.example.com`)",
        "nope",
        &[],
    ))?;
    wait_events(
        &world,
        &mut op,
        ns,
        TRAEFIK,
        "broken",
        &[("Warning", "Invalid", "nope")],
    )
    .await?;
    eventually("broken to be counted", async || {
        let invalid = verdicts(&op, &gw, "traefik.io", "invalid").await?;
        let status = world
            .server
            .get("sluice.dev/v1alpha1", "Gateway", Some(ns), "edge")
            .map(|g| g["status"]["routes"].clone());
        // Valid: shop, docs, legacy, blog, private; invalid: blog-copy, evil, steal, broken,
        // docs-copy.
        let want = json!({"valid": 5, "invalid": 5, "orphaned": 0});
        Ok((invalid == Some(4.0) && status.as_ref() == Some(&want)).then_some(()))
    })
    .await?;

    // Live edits: the route moves to api; the broken one is fixed and announced valid.
    world.apply(traefik_route(
        TRAEFIK,
        ns,
        "shop",
        "Host(`shop.example.com`)",
        "api",
        &["prefix"],
    ))?;
    let echo = reaches(&mut op, port, "shop.example.com", "/cart", "api").await?;
    assert_eq!(echo.path, "/v1/cart");
    world.apply(traefik_route(
        TRAEFIK,
        ns,
        "broken",
        "Host(`broken.example.com`)",
        "web",
        &[],
    ))?;
    reaches(&mut op, port, "broken.example.com", "/", "web").await?;
    wait_events(
        &world,
        &mut op,
        ns,
        TRAEFIK,
        "broken",
        &[("Warning", "Invalid", "nope"), ("Normal", "Valid", "")],
    )
    .await?;
    // Passes that find nothing new announce nothing: shop kept one event through its edit.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.events(ns, TRAEFIK, "shop").len(), 1);
    assert_eq!(world.events(ns, TRAEFIK, "broken").len(), 2);
    // The operator never wrote a Traefik object (it may not: config/rbac grants reads only).
    let writes: Vec<_> = world
        .server
        .requests()
        .into_iter()
        .filter(|r| r.is_write() && r.path.contains("/apis/traefik."))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    op.check_running()?;
    Ok(())
}

/// How many lines of the operator's log contain `text`.
fn log_lines(op: &Operator, text: &str) -> usize {
    op.log().lines().filter(|l| l.contains(text)).count()
}

/// Without Traefik's CRDs the operator watches nothing Traefik, says so once and serves
/// Contour's IngressRoutes; Traefik's CRDs installed later are picked up by rediscovery, and
/// their objects served; removed again, they stop being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_crds_absent_then_installed_then_removed() -> Result<()> {
    let world = World::start(false)?;
    let ns = "team-b";
    world.namespace(ns)?;
    let web = Backend::start("web").await?;
    world.apply(gateway(ns, "edge", &[]))?;
    world.apply(service(ns, "web"))?;
    world.apply(endpoint_slice(ns, "web", web.port()))?;
    world.apply(contour_route(ns, "site", "site.example.com", "web"))?;

    let mut op = world.operator("solo")?;
    op.wait_ready(PATIENCE).await?;
    let port = op.ports().envoy_http;
    let bootstrap = world.bootstrap(&mut op, ns, "edge").await?;
    let _envoy = Envoy::builder(bootstrap)
        .local_admin_socket()
        .start()
        .await?;
    reaches(&mut op, port, "site.example.com", "/", "web").await?;
    // Several rediscoveries later, still said once, and nothing Traefik was listed or watched.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(log_lines(&op, ABSENT), 1, "{}", op.log());
    let reads: Vec<_> = world
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/ingressroutes") && r.path.contains("traefik"))
        .collect();
    assert!(reads.is_empty(), "{reads:?}");
    assert!(
        world
            .server
            .requests()
            .iter()
            .any(|r| r.path == "/apis/traefik.io/v1alpha1"),
        "discovery was not asked"
    );

    // Installed later: picked up, served, said once.
    world.install_traefik_crds()?;
    world.apply(traefik_route(
        TRAEFIK,
        ns,
        "late",
        "Host(`late.example.com`)",
        "web",
        &[],
    ))?;
    reaches(&mut op, port, "late.example.com", "/", "web").await?;
    reaches(&mut op, port, "site.example.com", "/", "web").await?;
    eventually("the watch to be logged", async || {
        Ok(
            (log_lines(&op, "watching Traefik objects: ingressroutes.traefik.io") >= 1)
                .then_some(()),
        )
    })
    .await?;

    // Removed: the route goes (a CRD's deletion deletes its objects), the rest stays.
    // Every Traefik kind Sluice reads, in the order the log names them (the operator's kinds).
    const PLURALS: [&str; 7] = [
        "ingressroutes",
        "middlewares",
        "ingressroutetcps",
        "tlsoptions",
        "tlsstores",
        "traefikservices",
        "serverstransports",
    ];
    for crd in PLURALS.map(|p| format!("{p}.traefik.io")) {
        world
            .server
            .delete(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                &crd,
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    not_served(&mut op, port, "late.example.com").await?;
    reaches(&mut op, port, "site.example.com", "/", "web").await?;
    eventually("the legacy group alone to be watched", async || {
        let legacy = PLURALS
            .map(|p| format!("{p}.traefik.containo.us"))
            .join(", ");
        Ok(op
            .log()
            .contains(&format!("watching Traefik objects: {legacy}; not served"))
            .then_some(()))
    })
    .await?;
    assert_eq!(log_lines(&op, ABSENT), 1);
    op.check_running()?;
    Ok(())
}
