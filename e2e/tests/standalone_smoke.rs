//! `sluice standalone` end to end: manifests in, a real Envoy routing by Host to a real backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use sluice_e2e::backend::Backend;
use sluice_e2e::client::get;
use sluice_e2e::manifests::{Manifests, service};
use sluice_e2e::process::listening_tcp_ports;
use sluice_e2e::sluice::Standalone;
use sluice_e2e::{wait_for, wait_until};

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

    // Envoy's admin is a Unix socket for its owner only, in standalone's private directory; the
    // stats listener reaches it for /stats/prometheus (and /ready), nothing else.
    let metrics = get(ports.stats, "localhost", "/stats/prometheus")
        .await
        .unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("envoy_server_live"),
        "{}",
        metrics.text()
    );
    let dump = get(ports.stats, "localhost", "/config_dump").await.unwrap();
    assert_eq!(dump.status, 404);
    let meta = std::fs::metadata(&ports.admin_socket).unwrap();
    assert!(
        meta.file_type().is_socket(),
        "{}",
        ports.admin_socket.display()
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // No TCP port but the listeners' (no TLS route here: no HTTPS listener either).
    let pid = ports.envoy_pid.unwrap();
    assert_eq!(listening_tcp_ports(pid), {
        let mut expected = vec![ports.http, ports.stats];
        expected.sort_unstable();
        expected
    });
    sluice.check_running().unwrap();
}

/// xDS is mutual TLS by default: an Envoy presenting the default instance's client certificate
/// (as `sluice standalone` wrote it) but claiming another instance gets no configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_only_fetches_its_own_instance() {
    use sluice_e2e::envoy::Envoy;
    use sluice_e2e::sluice::STATE_FILE;

    let backend = Backend::start("a").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "all.yaml",
        &(service("default", "svc-a", 80, &[backend.port()])
            + "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata: {name: a, namespace: default}\n\
               spec:\n  virtualhost: {fqdn: a.example.com}\n  routes:\n  - match: /\n    services: [{name: svc-a, port: 80}]\n"),
    )
    .unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    // The instance's own Envoy, with its certificate, is served.
    wait_for("a.example.com answers", WAIT, async || {
        get(ports.http, "a.example.com", "/")
            .await
            .ok()
            .filter(|r| r.status == 200)
    })
    .await
    .unwrap();

    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sluice.dir().join(STATE_FILE)).unwrap())
            .unwrap();
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    let ca = text(&state["xdsTls"]["ca"]);
    let gateway = &state["gateways"][0];
    assert_eq!(gateway["gateway"], "sluice-system/default");
    let bootstrap = sluice_e2e::sluice::run(&[
        "bootstrap",
        "--gateway",
        "team-b/other",
        "--xds-address",
        state["xds"].as_str().unwrap(),
        "--admin-socket",
        &sluice
            .dir()
            .join("intruder-admin.sock")
            .display()
            .to_string(),
        "--xds-ca",
        &ca,
        "--xds-cert",
        &text(&gateway["xdsClientCert"]),
        "--xds-key",
        &text(&gateway["xdsClientKey"]),
    ])
    .await
    .unwrap();
    let intruder = Envoy::builder(bootstrap)
        .admin_only()
        .start()
        .await
        .unwrap();
    let log = sluice.dir().join("sluice.log");
    wait_until("sluice refused the stream", WAIT, async || {
        std::fs::read_to_string(&log).unwrap_or_default().contains(
            "the client certificate is for Gateway sluice-system/default, not team-b/other",
        )
    })
    .await
    .unwrap();
    // Nothing accepted, not even an empty update, and no listener.
    for stat in [
        "cluster_manager.cds.update_success",
        "listener_manager.lds.update_success",
        "listener_manager.total_listeners_active",
    ] {
        assert_eq!(intruder.stat(stat).await.unwrap(), Some(0), "{stat}");
    }
    sluice.check_running().unwrap();
}
