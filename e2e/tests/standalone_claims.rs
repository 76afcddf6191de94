//! `sluice standalone --claims-file`: an old object edited to claim a name another holds is
//! refused, and stays refused after a restart (the claim dates are read back from the file);
//! without the file, the restarted process orders the claims by creation time and the old
//! object takes the name.
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
const OLD: &str = "2020-01-01T00:00:00Z";

/// The victim's Contour root for `h.example.com`, created after the evil route.
fn victim_route() -> String {
    "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\n\
     metadata: {name: site, namespace: victim, creationTimestamp: '2025-06-01T00:00:00Z'}\n\
     spec:\n  virtualhost: {fqdn: h.example.com}\n  routes:\n  - match: /\n    services: [{name: web, port: 80}]\n"
        .to_owned()
}

/// Evil's year-older Traefik IngressRoute matching `rule`.
fn evil_route(rule: &str) -> String {
    traefik(
        "IngressRoute",
        "evil",
        "old",
        Some(OLD),
        json!({"routes": [{"match": rule, "kind": "Rule",
                           "services": [{"name": "web", "port": 80}]}]}),
    )
}

/// Which backend answers `host`, once it answers 200.
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

/// Starts standalone on `dir`, with `claims` as its claims file or none.
async fn start(dir: &Path, claims: Option<&Path>) -> (Standalone, InstancePorts) {
    let mut builder = Standalone::builder(dir);
    if let Some(claims) = claims {
        builder = builder.arg("--claims-file").arg(claims);
    }
    let mut sluice = builder.start().unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    (sluice, ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_claim_stays_refused_across_a_restart_with_the_claims_file() {
    let victim = Backend::start("victim").await.unwrap();
    let evil = Backend::start("evil").await.unwrap();
    let dir = Manifests::new().unwrap();
    let kept = tempfile::tempdir().unwrap();
    let claims = kept.path().join("claims.json");
    dir.write(
        "services.yaml",
        &(service("victim", "web", 80, &[victim.port()])
            + &service("evil", "web", 80, &[evil.port()])),
    )
    .unwrap();
    dir.write("victim.yaml", &victim_route()).unwrap();
    dir.write("evil.yaml", &evil_route("Host(`mine.example.com`)"))
        .unwrap();

    let (sluice, ports) = start(dir.path(), Some(&claims)).await;
    assert_eq!(backend_of(&ports, "h.example.com").await, "victim");
    assert_eq!(backend_of(&ports, "mine.example.com").await, "evil");
    // Nothing contested yet: nothing to keep.
    assert!(
        !claims.exists()
            || !std::fs::read_to_string(&claims)
                .unwrap()
                .contains("h.example")
    );

    // The old route is edited to claim the victim's name too: refused whole.
    dir.write(
        "evil.yaml",
        &evil_route("Host(`h.example.com`) || Host(`mine.example.com`)"),
    )
    .unwrap();
    wait_until("the evil route is refused", WAIT, async || {
        get(ports.http, "mine.example.com", "/")
            .await
            .is_ok_and(|r| r.status == 404)
    })
    .await
    .unwrap();
    assert_eq!(backend_of(&ports, "h.example.com").await, "victim");
    wait_until("the claims file records the contest", WAIT, async || {
        std::fs::read_to_string(&claims).is_ok_and(|t| t.contains("\"h.example.com\""))
    })
    .await
    .unwrap();
    drop(sluice);

    // Restarted with the file: the victim keeps its name, the old route stays refused.
    let (sluice, ports) = start(dir.path(), Some(&claims)).await;
    assert_eq!(backend_of(&ports, "h.example.com").await, "victim");
    let mine = get(ports.http, "mine.example.com", "/").await.unwrap();
    assert_eq!(mine.status, 404, "{}", mine.text());
    drop(sluice);

    // Restarted without it: claims are ordered by creation, and the old route takes the name.
    let (_sluice, ports) = start(dir.path(), None).await;
    assert_eq!(backend_of(&ports, "h.example.com").await, "evil");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_claims_file_is_reported_and_left_alone() {
    let dir = Manifests::new().unwrap();
    let backend = Backend::start("a").await.unwrap();
    dir.write(
        "services.yaml",
        &service("victim", "web", 80, &[backend.port()]),
    )
    .unwrap();
    dir.write("victim.yaml", &victim_route()).unwrap();
    let kept = tempfile::tempdir().unwrap();
    let claims = kept.path().join("notes.txt");
    std::fs::write(&claims, "my notes, not a claims file\n").unwrap();
    let (mut sluice, ports) = start(dir.path(), Some(&claims)).await;
    assert_eq!(backend_of(&ports, "h.example.com").await, "a");
    let log = sluice.process().log_tail(40);
    assert!(log.contains("not a Sluice claims file"), "{log}");
    assert_eq!(
        std::fs::read_to_string(&claims).unwrap(),
        "my notes, not a claims file\n"
    );
}
