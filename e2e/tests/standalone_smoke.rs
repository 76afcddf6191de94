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

// ---------------------------------------------------------------------------------------------
// Fail closed: a Gateway that does not load is never replaced by the open default instance.

const EDGE: &str = "sluice-system/edge";

/// The `edge` Gateway (no class, roots in `default`), or with `rootNamespaces: 3`, a type
/// error, when `broken`.
fn edge_gateway(broken: bool) -> String {
    let roots = if broken { "3" } else { "[default]" };
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: edge, namespace: sluice-system}}\n\
         spec:\n  rootNamespaces: {roots}\n"
    )
}

/// A Service for `backend` and an IngressRoute `a.example.com` to it, without a class.
fn route_to(backend: &Backend) -> String {
    service("default", "svc-a", 80, &[backend.port()])
        + "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata: {name: a, namespace: default}\n\
           spec:\n  virtualhost: {fqdn: a.example.com}\n  routes:\n  - match: /\n    services: [{name: svc-a, port: 80}]\n"
}

fn sluice_log(sluice: &Standalone) -> String {
    std::fs::read_to_string(sluice.dir().join("sluice.log")).unwrap_or_default()
}

fn instance_names(sluice: &Standalone) -> Vec<String> {
    sluice.instances().into_iter().map(|i| i.gateway).collect()
}

async fn answers(port: u16) -> Option<String> {
    get(port, "a.example.com", "/")
        .await
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| r.backend())
}

/// At start, the only Gateway fails to load: no instance runs (in particular not the default
/// one, which would serve every unclassed route in every namespace). Once fixed, it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_does_not_load_at_start_is_not_replaced_by_the_default_instance() {
    use sluice_e2e::sluice::STATE_FILE;

    let backend = Backend::start("a").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write("routes.yaml", &route_to(&backend)).unwrap();
    dir.write("gateway.yaml", &edge_gateway(true)).unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();

    let state = sluice.dir().join(STATE_FILE);
    wait_until("sluice writes its state file", WAIT, async || {
        state.exists()
    })
    .await
    .unwrap();
    let log = sluice_log(&sluice);
    assert!(
        log.contains("(Gateway sluice-system/edge): is or may be a Gateway and did not load; the default instance does not replace it"),
        "{log}"
    );
    assert_eq!(instance_names(&sluice), Vec::<String>::new(), "{log}");

    dir.write("gateway.yaml", &edge_gateway(false)).unwrap();
    let ports = sluice.instance(EDGE, WAIT).await.unwrap();
    let answered = wait_for("a.example.com answers", WAIT, async || {
        answers(ports.http).await
    })
    .await
    .unwrap();
    assert_eq!(answered, "a");
    assert_eq!(instance_names(&sluice), vec![EDGE.to_owned()]);
    sluice.check_running().unwrap();
}

/// An edit that breaks the Gateway is reported and not applied: its instance keeps serving the
/// last good configuration, and no default instance appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_that_breaks_the_gateway_keeps_its_instance_serving() {
    let backend = Backend::start("a").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write("routes.yaml", &route_to(&backend)).unwrap();
    dir.write("gateway.yaml", &edge_gateway(false)).unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.instance(EDGE, WAIT).await.unwrap();
    wait_for("a.example.com answers", WAIT, async || {
        answers(ports.http).await
    })
    .await
    .unwrap();

    dir.write("gateway.yaml", &edge_gateway(true)).unwrap();
    wait_until("sluice reports the broken Gateway", WAIT, async || {
        let log = sluice_log(&sluice);
        log.contains("(Gateway sluice-system/edge): is or may be a Gateway and did not load")
            && log.contains("still serving the last good configuration")
    })
    .await
    .unwrap();
    for _ in 0..10 {
        assert_eq!(answers(ports.http).await.as_deref(), Some("a"));
    }
    assert_eq!(instance_names(&sluice), vec![EDGE.to_owned()]);
    sluice.check_running().unwrap();
}

/// `--listen-address ::` binds Envoy's listeners dual-stack (`ipv4_compat`): the same port
/// answers over IPv6 and IPv4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ipv6_wildcard_listens_on_both_families() {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    let a = Backend::start("a").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &service("default", "svc-a", 80, &[a.port()]),
    )
    .unwrap();
    dir.write(
        "routes.yaml",
        "apiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata: {name: a, namespace: default}\n\
         spec:\n  virtualhost: {fqdn: a.example.com}\n  routes:\n  - match: /\n    services: [{name: svc-a, port: 80}]\n",
    )
    .unwrap();
    let mut sluice = Standalone::builder(dir.path())
        .arg("--listen-address")
        .arg("::")
        .start()
        .unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    for addr in [
        SocketAddr::from((Ipv6Addr::LOCALHOST, ports.http)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, ports.http)),
    ] {
        let answered = wait_for(&format!("a.example.com over {addr}"), WAIT, async || {
            sluice_e2e::client::Request::get("a.example.com", "/")
                .send_to(addr)
                .await
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| r.backend())
        })
        .await
        .unwrap();
        assert_eq!(answered, "a", "{addr}");
    }
    let metrics = sluice_e2e::client::Request::get("localhost", "/stats/prometheus")
        .send_to(SocketAddr::from((Ipv6Addr::LOCALHOST, ports.stats)))
        .await
        .unwrap();
    assert_eq!(metrics.status, 200);
    // The drain counts connections by the `_PORT` suffix of these names (`[__]` is `[::]`).
    let http_listener = format!("envoy_listener_address=\"[__]_{}\"", ports.http);
    assert!(
        metrics.text().contains(&http_listener),
        "{}",
        metrics.text()
    );
}

/// Changes are seen through inotify, not a poll: a route file written in place inside a
/// subdirectory created after start, then edited, then removed, each reaches Envoy. (A poll is
/// only a fallback; the log says when Sluice fell back to it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_in_a_new_subdirectory_reach_envoy_through_the_watcher() {
    let backend = Backend::start("a").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &service("default", "svc-a", 80, &[backend.port()]),
    )
    .unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let route = |path: &str| {
        format!(
            "apiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata: {{name: a, namespace: default}}\n\
             spec:\n  virtualhost: {{fqdn: a.example.com}}\n  routes:\n  - match: {path}\n    services: [{{name: svc-a, port: 80}}]\n"
        )
    };
    let status = async |path: &str| {
        get(ports.http, "a.example.com", path)
            .await
            .ok()
            .map(|r| r.status)
    };

    // Written in place (not renamed into place), in a directory that did not exist at start.
    let file = dir.path().join("team/routes/a.yaml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, route("/old")).unwrap();
    wait_until("/old answers", WAIT, async || {
        status("/old").await == Some(200)
    })
    .await
    .unwrap();
    std::fs::write(&file, route("/new")).unwrap();
    wait_until("/new answers", WAIT, async || {
        status("/new").await == Some(200)
    })
    .await
    .unwrap();
    assert_eq!(status("/old").await, Some(404));
    std::fs::remove_file(&file).unwrap();
    wait_until("the route is gone", WAIT, async || {
        status("/new").await == Some(404)
    })
    .await
    .unwrap();

    let log = sluice_log(&sluice);
    assert!(!log.contains("cannot watch"), "{log}");
    sluice.check_running().unwrap();
}
