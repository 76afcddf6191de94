//! `sluice standalone` end to end: manifests in, a real Envoy routing by Host to a real backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sluice_e2e::backend::Backend;
use sluice_e2e::client::get;
use sluice_e2e::manifests::{Manifests, service};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::wait_for;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_selects_the_virtual_host() {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &(service("default", "svc-a", 80, &[a.port()])
            + &service("default", "svc-b", 80, &[b.port()])),
    )
    .unwrap();
    let route = |name: &str, fqdn: &str, svc: &str| {
        format!(
            "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  virtualhost: {{fqdn: {fqdn}}}\n  routes:\n  - match: /\n    services: [{{name: {svc}, port: 80}}]\n"
        )
    };
    dir.write(
        "routes.yaml",
        &(route("a", "a.example.com", "svc-a") + &route("b", "b.example.com", "svc-b")),
    )
    .unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    for (host, backend) in [("a.example.com", "a"), ("b.example.com", "b")] {
        let answered = wait_for(&format!("{host} answers"), WAIT, async || {
            get(ports.http, host, "/")
                .await
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| r.backend())
        })
        .await
        .unwrap();
        assert_eq!(answered, backend);
    }
    let unknown = get(ports.http, "c.example.com", "/").await.unwrap();
    assert_eq!(unknown.status, 404);
    sluice.check_running().unwrap();
}
