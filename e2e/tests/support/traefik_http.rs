//! Worlds of Traefik HTTP objects for the `sluice standalone` end-to-end tests (a `#[path]`
//! module): Middlewares and IngressRoutes of namespace `apps` on the `web` entry point, the
//! Services of test backends, a standalone (with its real Envoy) serving a manifest directory,
//! and what `sluice render` says of the IngressRoutes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::backend::Backend;
use sluice_e2e::manifests::{self, Manifests, doc, service};
use sluice_e2e::sluice::{InstancePorts, Standalone};

/// Namespace of every object these builders write.
pub const NAMESPACE: &str = "apps";

/// Bound on waiting for standalone's instance to start (only bounds a broken test).
pub const START_WAIT: Duration = Duration::from_secs(30);

/// A Middleware `apps/<name>` with `spec` (one kind).
pub fn middleware(name: &str, spec: Value) -> String {
    manifests::traefik("Middleware", NAMESPACE, name, None, spec)
}

/// One route of an IngressRoute: `rule` through the Middlewares `middlewares` (by name, in
/// order) to Service `service` port 80. Add `priority` or `syntax` to the value as needed.
pub fn route(rule: &str, middlewares: &[&str], service: &str) -> Value {
    let mws: Vec<Value> = middlewares.iter().map(|m| json!({"name": m})).collect();
    json!({"match": rule, "middlewares": mws, "services": [{"name": service, "port": 80}]})
}

/// An IngressRoute `apps/<name>` on `web` with `routes` (see [`route`]), created at a fixed
/// time.
pub fn ingress_route_of(name: &str, routes: Vec<Value>) -> String {
    doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": NAMESPACE, "name": name,
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"entryPoints": ["web"], "routes": routes},
    }))
}

/// An IngressRoute `apps/<name>` on `web`, one route per `(rule, middlewares, service)`.
pub fn ingress_route(name: &str, routes: &[(&str, &[&str], &str)]) -> String {
    ingress_route_of(
        name,
        routes
            .iter()
            .map(|(rule, mws, svc)| route(rule, mws, svc))
            .collect(),
    )
}

/// Services `apps/<backend name>` on port 80, each with its backend as the one endpoint.
pub fn services(backends: &[&Backend]) -> String {
    backends
        .iter()
        .map(|b| service(NAMESPACE, b.name(), 80, &[b.port()]))
        .collect()
}

/// `sluice standalone` on `dir`, once its default instance (and Envoy) runs.
pub async fn start(dir: &Manifests) -> (Standalone, InstancePorts) {
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(START_WAIT).await.unwrap();
    (sluice, ports)
}

/// What `sluice render` says of every IngressRoute (Contour or Traefik) and IngressRouteTCP in `dir`: `namespace/name` to its status and
/// description.
pub async fn verdicts(dir: &Manifests) -> BTreeMap<String, (String, String)> {
    let path = dir.path().display().to_string();
    let out = sluice_e2e::sluice::run(&["render", "--manifests", &path])
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&out).unwrap();
    let mut all = BTreeMap::new();
    for g in report["gateways"].as_array().unwrap() {
        for e in g["ingressRoutes"].as_array().unwrap() {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            // Routes only: a Middleware or ServersTransport may share a route's name.
            if !["", "IngressRoute", "IngressRouteTCP"].contains(&f("kind").as_str()) {
                continue;
            }
            all.insert(
                format!("{}/{}", f("namespace"), f("name")),
                (f("currentStatus"), f("description")),
            );
        }
    }
    all
}
