//! A Traefik IngressRoute refused while parsing (a matcher this version does not serve) still
//! claims the names its rule names: seen before another tenant's valid IngressRoute for the
//! same host, it holds the host unserved (404) and the younger one is refused; after a restart
//! with the claims file, the same; and once its rule is served (as a later version would serve
//! it), the old object serves the host, never the younger one. A start without the claims file
//! (lost, or the first start of this version) puts the refused route behind the valid one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sluice_e2e::backend::Backend;
use sluice_e2e::client::get;
use sluice_e2e::manifests::{Manifests, service, traefik};
use sluice_e2e::sluice::{InstancePorts, Standalone};
use sluice_e2e::{wait_for, wait_until};

const WAIT: Duration = Duration::from_secs(30);
const HOST: &str = "api.example.com";

/// A Traefik IngressRoute `ns/name` created at `created`, matching `rule`, to `ns/web:80`.
fn route(ns: &str, name: &str, created: &str, rule: &str) -> String {
    traefik(
        "IngressRoute",
        ns,
        name,
        Some(created),
        json!({"routes": [{"match": rule, "kind": "Rule",
                           "services": [{"name": "web", "port": 80}]}]}),
    )
}

/// Which backend answers `host` with 200, once one does.
async fn backend_of(ports: &InstancePorts, host: &str) -> String {
    wait_for(&format!("{host} answers"), WAIT, async || {
        get(ports.http, host, "/")
            .await
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| r.backend())
    })
    .await
    .unwrap()
}

/// Starts standalone on `dir`, with `claims` as its claims file or none; returns once the
/// sentinel host is served (the configuration is in Envoy).
async fn start(dir: &Path, claims: Option<&Path>) -> (Standalone, InstancePorts) {
    let mut builder = Standalone::builder(dir);
    if let Some(claims) = claims {
        builder = builder.arg("--claims-file").arg(claims);
    }
    let mut sluice = builder.start().unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    assert_eq!(backend_of(&ports, "ready.example.com").await, "ready");
    (sluice, ports)
}

/// `HOST` answers 404: held, served by nobody.
async fn held(ports: &InstancePorts) {
    let r = get(ports.http, HOST, "/").await.unwrap();
    assert_eq!(r.status, 404, "{HOST} must be held unserved: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_refused_route_holds_its_host_across_restarts_and_serves_it_once_served() {
    let old = Backend::start("old").await.unwrap();
    let young = Backend::start("young").await.unwrap();
    let ready = Backend::start("ready").await.unwrap();
    let dir = Manifests::new().unwrap();
    let kept = tempfile::tempdir().unwrap();
    let claims = kept.path().join("claims.json");
    dir.write(
        "services.yaml",
        &(service("old", "web", 80, &[old.port()])
            + &service("young", "web", 80, &[young.port()])
            + &service("ready", "web", 80, &[ready.port()])),
    )
    .unwrap();
    dir.write(
        "ready.yaml",
        &route(
            "ready",
            "r",
            "2023-01-01T00:00:00Z",
            "Host(`ready.example.com`)",
        ),
    )
    .unwrap();
    // Created in 2024, refused by this version, and seen first; tenant B's route for the host
    // (2025) comes while Sluice runs.
    dir.write(
        "old.yaml",
        &route(
            "old",
            "site",
            "2024-01-01T00:00:00Z",
            "Host(`api.example.com`) && SomeFutureMatcher(`x`)",
        ),
    )
    .unwrap();
    let (sluice, ports) = start(dir.path(), Some(&claims)).await;
    dir.write(
        "young.yaml",
        &(route(
            "young",
            "site",
            "2025-01-01T00:00:00Z",
            "Host(`api.example.com`)",
        ) + &route(
            "young",
            "probe",
            "2025-01-01T00:00:00Z",
            "Host(`probe.example.com`)",
        )),
    )
    .unwrap();
    assert_eq!(backend_of(&ports, "probe.example.com").await, "young");
    held(&ports).await;
    drop(sluice);

    // A restart with the claims file: the same holder.
    let (sluice, ports) = start(dir.path(), Some(&claims)).await;
    held(&ports).await;
    drop(sluice);
    // Without it, the refused route goes behind the one serving (review 4 F2.1: otherwise an
    // old object edited to a refused rule would take a name at the upgrade to this version).
    let (sluice, ports) = start(dir.path(), None).await;
    assert_eq!(backend_of(&ports, HOST).await, "young");
    drop(sluice);

    // The old object's rule served (what a version serving the matcher would parse, the same
    // host): it serves the host it held; the younger route never had it.
    let (_sluice, ports) = start(dir.path(), Some(&claims)).await;
    held(&ports).await;
    dir.write(
        "old.yaml",
        &route(
            "old",
            "site",
            "2024-01-01T00:00:00Z",
            "Host(`api.example.com`)",
        ),
    )
    .unwrap();
    wait_until("the old route serves its host", WAIT, async || {
        get(ports.http, HOST, "/")
            .await
            .is_ok_and(|r| r.status == 200 && r.backend().as_deref() == Some("old"))
    })
    .await
    .unwrap();
}
