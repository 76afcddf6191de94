//! `sluice run`, the in-cluster operator, end to end: the real binary against a Kubernetes API
//! server through a kubeconfig.
//!
//! By default each test starts its own in-memory API server (`sluice_e2e::apiserver`). With
//! `SLUICE_E2E_KUBECONFIG=FILE` the same tests run against that cluster instead (see the README,
//! "Operator end-to-end tests"); then they run one at a time, put their objects in namespaces
//! named `e2e-<run>-*` that are deleted afterwards, and skip what cannot work there (each skip
//! says why where it happens).
//!
//! The operator runs on this machine in both modes, so its xDS server and the Envoys the tests
//! start from its generated bootstraps talk over 127.0.0.1. Nothing runs the provisioned
//! DaemonSet here (no kubelet in memory; in a real cluster its pods do not reach an xDS server
//! on the test machine), so Gateway statuses report no ready Envoys, which is expected; except
//! in `gateway_status_counts_ready_envoys`, where a kubelet stand-in (`sluice_e2e::kubelet`,
//! in memory only) makes the DaemonSet's pod and status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::POLL_INTERVAL;
use sluice_e2e::backend::Backend;
use sluice_e2e::client::{Request, get};
use sluice_e2e::envoy::{AdminAddress, Envoy};
use sluice_e2e::sluice::{OPERATOR_NAMESPACE, Operator, metric_value};
use sluice_e2e::tls::TlsClient;

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{
    Backing, ClientCredentials, Cluster, OPERATOR_USER, client_credentials, provisioned_bootstrap,
};

/// Polls `probe` until it returns `Some`, at most [`PATIENCE`]; an `Err` ends the wait at once.
async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

// ---------------------------------------------------------------------------------------------
// Objects.

fn gateway(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
           "metadata": {"namespace": ns, "name": name}, "spec": spec})
}

/// An IngressRoute; `class` sets `kubernetes.io/ingress.class`.
fn ingress_route(ns: &str, name: &str, class: Option<&str>, spec: Value) -> Value {
    let mut ir = json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
                        "metadata": {"namespace": ns, "name": name}, "spec": spec});
    if let Some(class) = class {
        ir["metadata"]["annotations"] = json!({"kubernetes.io/ingress.class": class});
    }
    ir
}

/// A route spec: `fqdn` (root) or none (delegated to), `/` to `service:80`.
fn route_spec(fqdn: Option<&str>, service: &str) -> Value {
    let mut spec = json!({"routes": [{"match": "/", "services": [{"name": service, "port": 80}]}]});
    if let Some(fqdn) = fqdn {
        spec["virtualhost"] = json!({"fqdn": fqdn});
    }
    spec
}

/// A Service `ns/name` with port 80 named `http`.
fn service(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
           "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
}

/// Endpoints at 127.0.0.1:`backend_port`. kube-apiserver refuses loopback addresses (the double
/// accepts them only with `allow_loopback_endpoints`): callers skip them in a real cluster.
fn endpoints(ns: &str, name: &str, backend_port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"namespace": ns, "name": name},
           "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                        "ports": [{"name": "http", "protocol": "TCP", "port": backend_port}]}]})
}

/// An IPv4 EndpointSlice at 127.0.0.1:`backend_port`, refused by kube-apiserver like
/// [`endpoints`].
fn endpoint_slice(ns: &str, service: &str, backend_port: u16) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"namespace": ns, "name": format!("{service}-slice"),
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
           "ports": [{"name": "http", "protocol": "TCP", "port": backend_port}]})
}

fn tls_secret(ns: &str, name: &str, cert: &sluice_e2e::tls::CertKey) -> Result<Value> {
    Ok(serde_json::from_str(&sluice_e2e::manifests::tls_secret(
        ns, name, cert,
    ))?)
}

fn owned_by(obj: &Value, owner: &Value) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r["uid"] == owner["metadata"]["uid"]
                    && r["kind"] == owner["kind"]
                    && r["name"] == owner["metadata"]["name"]
                    && r["controller"] == true
            })
        })
}

/// `(currentStatus, description)` of an IngressRoute, once it has a status.
async fn route_status(cluster: &Cluster, ns: &str, name: &str) -> Result<Option<(String, String)>> {
    let ir = cluster
        .get("contour.heptio.com/v1beta1", "IngressRoute", Some(ns), name)
        .await?;
    Ok(ir.and_then(|ir| {
        let s = &ir["status"];
        Some((
            s["currentStatus"].as_str()?.to_owned(),
            s["description"].as_str().unwrap_or_default().to_owned(),
        ))
    }))
}

/// Waits until IngressRoute `ns/name` has status `want`; returns its description.
async fn wait_status(
    cluster: &Cluster,
    op: &mut Operator,
    ns: &str,
    name: &str,
    want: &str,
) -> Result<String> {
    let mut last = None;
    eventually(
        &format!("IngressRoute {ns}/{name} to be {want}"),
        async || {
            op.check_running()?;
            let now = route_status(cluster, ns, name).await?;
            let done = now
                .as_ref()
                .filter(|(s, _)| s == want)
                .map(|(_, d)| d.clone());
            last = now;
            Ok(done)
        },
    )
    .await
    .with_context(|| format!("last status: {last:?}"))
}

/// The value of `sluice_ingressroutes{gateway, kind, group, status}` for Contour's IngressRoutes
/// on the operator's `/metrics`.
async fn route_metric(op: &Operator, gateway: &str, status: &str) -> Result<Option<f64>> {
    let text = op.metrics().await?;
    Ok(metric_value(
        &text,
        "sluice_ingressroutes",
        &[
            ("gateway", gateway),
            ("kind", "IngressRoute"),
            ("group", "contour.heptio.com"),
            ("status", status),
        ],
    ))
}

/// Waits until the operator's route gauges for `gateway` are `(valid, invalid, orphaned)`.
async fn wait_route_metrics(op: &mut Operator, gateway: &str, want: (f64, f64, f64)) -> Result<()> {
    eventually(
        &format!("route metrics of {gateway} to be {want:?}"),
        async || {
            op.check_running()?;
            let got = (
                route_metric(op, gateway, "valid").await?,
                route_metric(op, gateway, "invalid").await?,
                route_metric(op, gateway, "orphaned").await?,
            );
            Ok((got == (Some(want.0), Some(want.1), Some(want.2))).then_some(()))
        },
    )
    .await
}

/// Names of the secrets Envoy holds, from its admin `/config_dump`.
async fn envoy_secret_names(envoy: &Envoy) -> Result<Vec<String>> {
    let dump: Value = envoy.admin_get("/config_dump").await?.json()?;
    let mut names: Vec<String> = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("SecretsConfigDump"))
        })
        .flat_map(|c| {
            c["dynamic_active_secrets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// The HTTP endpoint, and starting before the CRDs exist.

/// The last line of `log` reporting missing CRDs.
fn last_missing_crds_line(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.contains("required CRDs are not installed"))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_missing_crds_then_becomes_ready() -> Result<()> {
    // In a real cluster the CRDs cannot be removed for this test (that would delete every
    // IngressRoute in it): they are installed, and only the endpoint checks after the sync run.
    let cluster = Cluster::start(false).await?;
    if cluster.is_real() {
        cluster.install_crds().await?;
    }
    let mut op = cluster.operator("solo")?.start()?;

    // /healthz answers as soon as the process listens, whatever the API holds.
    eventually("/healthz to answer 200", async || {
        op.check_running()?;
        Ok(op.get("/healthz").await.ok().filter(|r| r.status == 200))
    })
    .await?;

    if !cluster.is_real() {
        let all = [
            "ingressroutes.contour.heptio.com",
            "tlscertificatedelegations.contour.heptio.com",
            "gateways.sluice.dev",
        ];
        let line = eventually("the operator to report the missing CRDs", async || {
            op.check_running()?;
            Ok(last_missing_crds_line(&op.log()))
        })
        .await?;
        for crd in all {
            assert!(line.contains(crd), "{line}");
        }
        // Not ready while it cannot watch anything.
        let ready = op.get("/readyz").await?;
        assert_eq!(ready.status, 503, "{}", ready.text());

        // With one CRD installed, the report names only the other two.
        let yaml = sluice::api::crds_yaml()?;
        for doc in serde_norway::Deserializer::from_str(&yaml) {
            let crd: Value = serde::Deserialize::deserialize(doc)?;
            if crd["metadata"]["name"] == all[0] {
                cluster.apply(crd).await?;
            }
        }
        let line = eventually("the report to drop the installed CRD", async || {
            op.check_running()?;
            Ok(last_missing_crds_line(&op.log()).filter(|l| !l.contains(all[0])))
        })
        .await?;
        assert!(line.contains(all[1]) && line.contains(all[2]), "{line}");
        assert_eq!(op.get("/readyz").await?.status, 503);

        cluster.install_crds().await?;
    }
    op.wait_ready(PATIENCE).await?;
    assert_eq!(op.get("/healthz").await?.status, 200);
    op.metrics().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Provisioning a Gateway's Envoy fleet.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_children_follow_the_gateway() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-a").await?;
    let mut op = cluster.operator("solo")?.start()?;
    let ports = op.ports();
    op.wait_ready(PATIENCE).await?;

    let gw = cluster
        .apply(gateway(
            &ns,
            "edge",
            json!({
                "envoy": {"image": "envoyproxy/envoy:v1.40.0"},
                "rollout": {"maxUnavailable": "25%"},
                "publishing": {"type": "NodePort"},
                "ports": {"http": 8000, "https": 8443}
            }),
        ))
        .await?;
    let ds = eventually("the Envoy DaemonSet", async || {
        op.check_running()?;
        cluster
            .get("apps/v1", "DaemonSet", Some(&ns), "edge-envoy")
            .await
    })
    .await?;
    let get = async |kind: &str, name: &str| -> Result<Value> {
        cluster
            .get("v1", kind, Some(&ns), name)
            .await?
            .with_context(|| format!("{kind} {name}"))
    };
    let sa = get("ServiceAccount", "edge-envoy").await?;
    let cm = get("ConfigMap", "edge-envoy-bootstrap").await?;
    let svc = get("Service", "edge-envoy").await?;
    for child in [&ds, &sa, &cm, &svc] {
        assert!(owned_by(child, &gw), "not owned by the Gateway: {child:#}");
    }

    // The DaemonSet: image, rollout, probe and ports as configured.
    let spec = &ds["spec"];
    assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(
        spec["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        "25%"
    );
    let envoy = spec["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "envoy"))
        .context("envoy container")?
        .clone();
    assert_eq!(envoy["image"], "envoyproxy/envoy:v1.40.0");
    assert_eq!(envoy["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(
        envoy["readinessProbe"]["httpGet"]["port"],
        ports.envoy_stats
    );
    let container_ports: Vec<(String, u64)> = envoy["ports"]
        .as_array()
        .context("container ports")?
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        container_ports,
        [
            ("http".to_owned(), u64::from(ports.envoy_http)),
            ("https".to_owned(), u64::from(ports.envoy_https)),
            ("metrics".to_owned(), u64::from(ports.envoy_stats)),
        ]
    );
    assert_eq!(spec["template"]["spec"]["serviceAccountName"], "edge-envoy");

    // The Service publishes the Gateway's ports onto Envoy's, as a NodePort, selecting the pods.
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["selector"], spec["selector"]["matchLabels"]);
    let svc_ports: Vec<(u64, u64)> = svc["spec"]["ports"]
        .as_array()
        .context("service ports")?
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap(),
                p["targetPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        svc_ports,
        [
            (8000, u64::from(ports.envoy_http)),
            (8443, u64::from(ports.envoy_https))
        ]
    );

    // The bootstrap names the instance and points at this operator's xDS server.
    let bootstrap: Value =
        serde_json::from_str(cm["data"]["bootstrap.json"].as_str().context("bootstrap")?)?;
    assert_eq!(bootstrap["node"]["cluster"], format!("{ns}/edge"));
    // Envoy's admin is a Unix socket on the pod's shared volume, never a TCP port.
    assert_eq!(
        bootstrap["admin"]["address"],
        json!({"pipe": {"path": "/var/run/sluice/admin.sock", "mode": 0o600}})
    );
    let xds = &bootstrap["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        [0]["endpoint"]["address"]["socket_address"];
    assert_eq!(xds["address"], "127.0.0.1");
    assert_eq!(xds["port_value"], ports.xds);

    // The Gateway's status follows (no kubelet in memory: no Envoy pods, none ready).
    let status = eventually("the Gateway status", async || {
        op.check_running()?;
        let gw = cluster
            .get("sluice.dev/v1alpha1", "Gateway", Some(&ns), "edge")
            .await?;
        Ok(gw
            .map(|g| g["status"].clone())
            .filter(|s| s["observedGeneration"] == 1))
    })
    .await?;
    // (What the status counts and which pods it reads is checked where pods exist:
    // `gateway_status_counts_ready_envoys` and `gateway_status_names_its_own_stuck_pods`.)
    assert!(status["envoys"].is_object(), "{status:#}");

    // A new image rolls the DaemonSet's template and keeps the rollout settings; the bootstrap
    // does not depend on the image and is left alone.
    let cm_version = cm["metadata"]["resourceVersion"].clone();
    cluster
        .apply(gateway(
            &ns,
            "edge",
            json!({
                "envoy": {"image": "envoyproxy/envoy:v1.40.1"},
                "rollout": {"maxUnavailable": "25%"},
                "publishing": {"type": "NodePort"},
                "ports": {"http": 8000, "https": 8443}
            }),
        ))
        .await?;
    let ds = eventually("the DaemonSet to carry the new image", async || {
        op.check_running()?;
        let ds = cluster
            .get("apps/v1", "DaemonSet", Some(&ns), "edge-envoy")
            .await?;
        Ok(ds.filter(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] == "envoyproxy/envoy:v1.40.1"
        }))
    })
    .await?;
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        "25%"
    );
    assert_eq!(
        get("ConfigMap", "edge-envoy-bootstrap").await?["metadata"]["resourceVersion"],
        cm_version
    );

    // A provisioned object deleted by hand comes back.
    cluster
        .delete("v1", "ConfigMap", Some(&ns), "edge-envoy-bootstrap")
        .await?;
    eventually("the ConfigMap to be recreated", async || {
        op.check_running()?;
        cluster
            .get("v1", "ConfigMap", Some(&ns), "edge-envoy-bootstrap")
            .await
    })
    .await?;

    // Deleting the Gateway deletes its children (garbage collection by owner reference).
    cluster
        .delete("sluice.dev/v1alpha1", "Gateway", Some(&ns), "edge")
        .await?;
    eventually("the Gateway's children to be gone", async || {
        op.check_running()?;
        let mut left = Vec::new();
        for (api, kind, name) in [
            ("apps/v1", "DaemonSet", "edge-envoy"),
            ("v1", "Service", "edge-envoy"),
            ("v1", "ServiceAccount", "edge-envoy"),
            ("v1", "ConfigMap", "edge-envoy-bootstrap"),
        ] {
            if cluster.get(api, kind, Some(&ns), name).await?.is_some() {
                left.push(kind);
            }
        }
        Ok(left.is_empty().then_some(()))
    })
    .await?;
    op.check_running()?;
    Ok(())
}

/// The operator's Envoy pod defaults (pull secrets, registry, user ID) reach the provisioned
/// DaemonSet; a Gateway's own values replace them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_pods_get_pull_secrets_registry_and_user_id() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-a").await?;
    let mut op = cluster
        .operator("solo")?
        .args([
            "--image-registry=mirror.example.com",
            "--envoy-image-pull-secrets=mirror-a,mirror-b",
            "--envoy-run-as-user=auto",
        ])
        .start()?;
    op.wait_ready(PATIENCE).await?;

    cluster.apply(gateway(&ns, "plain", json!({}))).await?;
    cluster
        .apply(gateway(
            &ns,
            "own",
            json!({"envoy": {
                "image": "envoyproxy/envoy:v1.40.1",
                "imageRegistry": "registry.team-a.example",
                "imagePullSecrets": [{"name": "team-a-pull"}],
                "runAsUser": 1000
            }}),
        ))
        .await?;
    let mut pods = Vec::new();
    for name in ["plain-envoy", "own-envoy"] {
        let ds = eventually(&format!("the DaemonSet {name}"), async || {
            op.check_running()?;
            cluster.get("apps/v1", "DaemonSet", Some(&ns), name).await
        })
        .await?;
        pods.push(ds["spec"]["template"]["spec"].clone());
    }
    let images = |pod: &Value| -> Vec<String> {
        pod["containers"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| c["image"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    // Operator defaults: both images from the mirror, its pull secrets, no user ID.
    let plain = &pods[0];
    assert_eq!(
        plain["imagePullSecrets"],
        json!([{"name": "mirror-a"}, {"name": "mirror-b"}])
    );
    let plain_images = images(plain);
    assert_eq!(
        plain_images[0],
        "mirror.example.com/envoyproxy/envoy:v1.40.0"
    );
    assert!(
        plain_images[1].starts_with("mirror.example.com/"),
        "{plain_images:?}"
    );
    let psc = &plain["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{psc:#}");
    for field in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert!(psc.get(field).is_none(), "{field}: {psc:#}");
    }

    // The Gateway's values win.
    let own = &pods[1];
    assert_eq!(own["imagePullSecrets"], json!([{"name": "team-a-pull"}]));
    let own_images = images(own);
    assert_eq!(
        own_images[0],
        "registry.team-a.example/envoyproxy/envoy:v1.40.1"
    );
    assert!(
        own_images[1].starts_with("registry.team-a.example/"),
        "{own_images:?}"
    );
    assert_eq!(own["securityContext"]["runAsUser"], 1000);
    op.check_running()?;
    Ok(())
}

/// The Gateway's status follows its Envoy pods. In memory a kubelet stand-in
/// (`sluice_e2e::kubelet`) gives the DaemonSet one ready pod and writes the DaemonSet's status;
/// in a real cluster its own kubelets run the pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_status_counts_ready_envoys() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-s").await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;

    let condition = |gw: &Value, type_: &str| -> Option<(String, String)> {
        let cs = gw["status"]["conditions"].as_array()?;
        let c = cs.iter().find(|c| c["type"] == type_)?;
        Some((
            c["status"].as_str()?.to_owned(),
            c["reason"].as_str()?.to_owned(),
        ))
    };
    // The status agrees with the DaemonSet's status (written by the DaemonSet controller).
    let mut in_line = async || -> Result<Option<(Value, Value)>> {
        op.check_running()?;
        let Some(ds) = cluster
            .get("apps/v1", "DaemonSet", Some(&ns), "edge-envoy")
            .await?
        else {
            return Ok(None);
        };
        let Some(gw) = cluster
            .get("sluice.dev/v1alpha1", "Gateway", Some(&ns), "edge")
            .await?
        else {
            return Ok(None);
        };
        let ready = ds["status"]["numberReady"].as_i64().unwrap_or(0);
        let want = json!({
            "desired": ds["status"]["desiredNumberScheduled"].as_i64().unwrap_or(0),
            "updated": ds["status"]["updatedNumberScheduled"].as_i64().unwrap_or(0),
            "ready": ready,
        });
        let available = condition(&gw, "Available").map(|(s, _)| s);
        let agrees = ds["status"]["observedGeneration"].is_number()
            && gw["status"]["envoys"] == want
            && available.as_deref() == Some(if ready > 0 { "True" } else { "False" });
        Ok(agrees.then_some((gw, ds)))
    };
    let (gw, _) = match cluster.memory() {
        Some(server) => {
            let kubelet = sluice_e2e::kubelet::run_daemon_sets(server, &ns);
            let ready = async || -> Result<Option<(Value, Value)>> {
                Ok(in_line()
                    .await?
                    .filter(|(gw, _)| gw["status"]["envoys"]["ready"] == 1))
            };
            tokio::select! {
                () = kubelet => bail!("the kubelet stand-in stopped"),
                found = eventually("the Gateway status to count the ready Envoy", ready) => found?,
            }
        }
        None => {
            eprintln!(
                "a real cluster's Envoy pods cannot reach this machine's xDS server: checking \
                 only that the Gateway status agrees with its DaemonSet"
            );
            eventually("the Gateway status to agree with its DaemonSet", in_line).await?
        }
    };
    if cluster.is_real() {
        return Ok(());
    }
    assert_eq!(
        gw["status"]["envoys"],
        json!({"desired": 1, "updated": 1, "ready": 1})
    );
    assert_eq!(
        condition(&gw, "Available"),
        Some(("True".to_owned(), "EnvoyReady".to_owned()))
    );
    assert_eq!(
        condition(&gw, "Progressing"),
        Some(("False".to_owned(), "RolloutComplete".to_owned()))
    );
    assert_eq!(
        condition(&gw, "Degraded"),
        Some(("False".to_owned(), "AsExpected".to_owned()))
    );
    assert_eq!(gw["status"]["validRoutes"], "0/0");
    // Provisioning and the rollout are told once each, whatever the number of reconciles.
    let reasons = async || -> Result<Vec<(String, String)>> {
        let mut events = gateway_events(&cluster, &ns, "edge").await?;
        events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_owned());
        Ok(events
            .iter()
            .map(|e| {
                let field = |f: &str| e[f].as_str().unwrap_or_default().to_owned();
                (field("type"), field("reason"))
            })
            .collect())
    };
    let normal = |r: &str| ("Normal".to_owned(), r.to_owned());
    let want = vec![
        normal("Provisioned"),
        normal("RolloutStarted"),
        normal("RolloutFinished"),
    ];
    let mut seen = Vec::new();
    eventually(
        "the Gateway's provisioning and rollout events",
        async || {
            seen = reasons().await?;
            Ok((seen.len() >= want.len()).then_some(()))
        },
    )
    .await
    .with_context(|| format!("events: {seen:?}"))?;
    assert_eq!(seen, want);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reasons().await?, want);
    // The pod the controller listed is the DaemonSet's own.
    let pod = cluster
        .get(
            "v1",
            "Pod",
            Some(&ns),
            &sluice_e2e::kubelet::pod_name("edge-envoy"),
        )
        .await?
        .context("the Envoy pod")?;
    assert_eq!(pod["metadata"]["labels"]["sluice.dev/gateway"], "edge");
    let pod_lists: Vec<_> = cluster
        .memory()
        .map(|s| s.requests())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == format!("/api/v1/namespaces/{ns}/pods"))
        .collect();
    assert!(
        !pod_lists.is_empty() && pod_lists.iter().all(|r| r.code == 200),
        "{pod_lists:?}"
    );
    Ok(())
}

/// The Gateway's status reads its Envoy pods through the DaemonSet's selector: a pod of its own
/// that cannot pull its image degrades it and is named; a stuck pod of another Gateway in the
/// same namespace is not. In memory only (the pods and DaemonSet statuses are written by hand,
/// as a kubelet and the DaemonSet controller would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_status_names_its_own_stuck_pods() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("skipped against a real cluster: its kubelets own pod statuses");
        return Ok(());
    };
    let ns = cluster.namespace("team-p").await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(gateway(&ns, "other", json!({}))).await?;
    let mut daemon_sets = Vec::new();
    for gw in ["edge", "other"] {
        let ds = eventually(&format!("the DaemonSet of {gw}"), async || {
            op.check_running()?;
            cluster
                .get("apps/v1", "DaemonSet", Some(&ns), &format!("{gw}-envoy"))
                .await
        })
        .await?;
        daemon_sets.push(ds);
    }
    for ds in &daemon_sets {
        let name = ds["metadata"]["name"].as_str().context("DaemonSet name")?;
        let pod = format!("{name}-stuck");
        server.apply(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "namespace": ns,
                "name": pod,
                "labels": ds["spec"]["template"]["metadata"]["labels"],
            },
            "spec": {"containers": [{"name": "envoy", "image": "example.invalid/envoy"}]},
        }))?;
        server.apply_status(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"namespace": ns, "name": pod},
            "status": {
                "phase": "Pending",
                "containerStatuses": [{
                    "name": "envoy",
                    "image": "example.invalid/envoy",
                    "imageID": "",
                    "ready": false,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
                }],
            },
        }))?;
        server.apply_status(json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"namespace": ns, "name": name},
            "status": {
                "observedGeneration": ds["metadata"]["generation"],
                "desiredNumberScheduled": 1,
                "currentNumberScheduled": 1,
                "updatedNumberScheduled": 1,
                "numberReady": 0,
                "numberAvailable": 0,
                "numberUnavailable": 1,
                "numberMisscheduled": 0,
            },
        }))?;
    }
    let (status, reason, message) = eventually("edge to be degraded by its pod", async || {
        op.check_running()?;
        let gw = cluster
            .get("sluice.dev/v1alpha1", "Gateway", Some(&ns), "edge")
            .await?;
        Ok(gw
            .and_then(|g| gateway_condition(&g, "Degraded"))
            .filter(|(status, _, _)| status == "True"))
    })
    .await?;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "EnvoyPodsFailing")
    );
    assert!(
        message.contains("pod edge-envoy-stuck container envoy: ImagePullBackOff"),
        "{message}"
    );
    assert!(!message.contains("other-envoy"), "{message}");
    Ok(())
}

/// `(status, reason, message)` of the Gateway's condition `type_`.
fn gateway_condition(gw: &Value, type_: &str) -> Option<(String, String, String)> {
    let cs = gw["status"]["conditions"].as_array()?;
    let c = cs.iter().find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
        c["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Waits until Gateway `ns/name`'s `Degraded` condition satisfies `want`; returns it.
async fn wait_degraded(
    cluster: &Cluster,
    op: &mut Operator,
    ns: &str,
    name: &str,
    what: &str,
    want: impl Fn(&(String, String, String)) -> bool,
) -> Result<(String, String, String)> {
    let mut last = None;
    eventually(&format!("Gateway {ns}/{name} to be {what}"), async || {
        op.check_running()?;
        let gw = cluster
            .get("sluice.dev/v1alpha1", "Gateway", Some(ns), name)
            .await?;
        let now = gw.and_then(|g| gateway_condition(&g, "Degraded"));
        let done = now.clone().filter(|c| want(c));
        last = now;
        Ok(done)
    })
    .await
    .with_context(|| format!("last Degraded condition: {last:?}"))
}

/// The `events.k8s.io` Events regarding Gateway `ns/name`.
async fn gateway_events(cluster: &Cluster, ns: &str, name: &str) -> Result<Vec<Value>> {
    let api = cluster.api("events.k8s.io/v1", "Event", Some(ns)).await?;
    let list = api.list(&Default::default()).await?;
    Ok(list
        .items
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == "Gateway" && e["regarding"]["name"] == name)
        .collect())
}

/// The Warning events recorded on Gateway `ns/name` (the failures; Normal events tell of
/// provisioning and rollouts).
async fn gateway_warnings(cluster: &Cluster, ns: &str, name: &str) -> Result<Vec<Value>> {
    Ok(gateway_events(cluster, ns, name)
        .await?
        .into_iter()
        .filter(|e| e["type"] == "Warning")
        .collect())
}

/// A Gateway this version cannot decode stops no other: the good Gateway beside it is
/// provisioned and gets its status, and the unreadable one gets a Warning event saying why. In
/// memory the unreadable Gateway is stored under a newer CRD whose schema allows
/// `publishing.type: Teleport`, then the current CRD is applied back (a real server keeps
/// stored objects when the schema changes, as after a downgrade). A real cluster's shared CRDs
/// must not be replaced by a test, so there only the good Gateway is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_gateway_stops_no_other() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-u").await?;
    cluster.apply(gateway(&ns, "good", json!({}))).await?;
    let future = gateway(&ns, "future", json!({"publishing": {"type": "Teleport"}}));
    match cluster.memory() {
        Some(server) => {
            let current = serde_json::to_value(
                sluice::api::crds()
                    .into_iter()
                    .find(|c| c.metadata.name.as_deref() == Some("gateways.sluice.dev"))
                    .context("no Gateway CRD")?,
            )?;
            let mut newer = current.clone();
            let types = newer
                .pointer_mut(
                    "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/publishing/properties/type/enum",
                )
                .and_then(Value::as_array_mut)
                .context("no publishing.type enum in the Gateway CRD")?;
            types.push(json!("Teleport"));
            // The current CRD refuses it; the newer one stores it; the current one comes back.
            ensure!(
                server.create(future.clone()).is_err(),
                "stored under the current CRD"
            );
            server.apply(newer)?;
            server.create(future)?;
            server.apply(current)?;
        }
        None => println!("real cluster: its CRD schema refuses the unknown enum value"),
    }
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    eventually("the good Gateway's DaemonSet and status", async || {
        op.check_running()?;
        let ds = cluster
            .get("apps/v1", "DaemonSet", Some(&ns), "good-envoy")
            .await?;
        let gw = cluster
            .get("sluice.dev/v1alpha1", "Gateway", Some(&ns), "good")
            .await?;
        Ok((ds.is_some() && gw.is_some_and(|g| !g["status"].is_null())).then_some(()))
    })
    .await?;
    if cluster.memory().is_some() {
        let events = eventually("an event on the unreadable Gateway", async || {
            let events = gateway_events(&cluster, &ns, "future").await?;
            Ok((!events.is_empty()).then_some(events))
        })
        .await?;
        assert_eq!(events[0]["reason"], "Undecodable", "{events:#?}");
        let note = events[0]["note"].as_str().unwrap_or_default();
        assert!(note.contains("spec.publishing.type"), "{note}");
    }
    Ok(())
}

/// Sluice never changes an object it did not create: a ConfigMap and a Service that already
/// have the names it would provision stay as they are (no owner reference, same data), the
/// Gateway is `Degraded` naming them (and nothing of it is applied), and deleting the Gateway
/// leaves them in place. Once they are gone, the Gateway is provisioned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_sluice_did_not_create_are_left_alone() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-f").await?;
    let foreign_cm = cluster
        .apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"namespace": ns, "name": "edge-envoy-bootstrap"},
                      "data": {"bootstrap.json": "somebody else's"}}))
        .await?;
    let foreign_svc = cluster.apply(service(&ns, "edge-envoy")).await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    let gw = cluster.apply(gateway(&ns, "edge", json!({}))).await?;

    let (_, reason, message) = wait_degraded(
        &cluster,
        &mut op,
        &ns,
        "edge",
        "Degraded by objects it does not own",
        |(s, _, m)| s == "True" && m.contains("not owned"),
    )
    .await?;
    assert_eq!(reason, "ObjectNotOwned");
    for named in [
        format!("ConfigMap {ns}/edge-envoy-bootstrap exists and is not owned by this Gateway"),
        format!("Service {ns}/edge-envoy exists and is not owned by this Gateway"),
    ] {
        assert!(message.contains(&named), "{message}");
    }
    // Untouched, and nothing of the Gateway was applied next to them.
    let untouched = async |api: &str, kind: &str, name: &str, before: &Value| -> Result<()> {
        let now = cluster
            .get(api, kind, Some(&ns), name)
            .await?
            .with_context(|| format!("{kind} {name} is gone"))?;
        ensure!(!owned_by(&now, &gw), "{kind} {name} was adopted: {now:#}");
        ensure!(
            now["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"],
            "{kind} {name} was changed: {now:#}"
        );
        Ok(())
    };
    untouched("v1", "ConfigMap", "edge-envoy-bootstrap", &foreign_cm).await?;
    untouched("v1", "Service", "edge-envoy", &foreign_svc).await?;
    for (api, kind) in [("apps/v1", "DaemonSet"), ("v1", "ServiceAccount")] {
        assert!(
            cluster
                .get(api, kind, Some(&ns), "edge-envoy")
                .await?
                .is_none(),
            "{kind} applied next to objects the Gateway does not own"
        );
    }
    // A Warning event on the Gateway says it too.
    let events = eventually("an event on the Gateway", async || {
        let events = gateway_warnings(&cluster, &ns, "edge").await?;
        Ok((!events.is_empty()).then_some(events))
    })
    .await?;
    assert_eq!(events[0]["type"], "Warning", "{events:#?}");
    assert_eq!(events[0]["reason"], "ObjectNotOwned", "{events:#?}");

    // Deleting the Gateway leaves them in place.
    cluster
        .delete("sluice.dev/v1alpha1", "Gateway", Some(&ns), "edge")
        .await?;
    eventually("the Gateway to be gone", async || {
        op.check_running()?;
        let gw = cluster
            .get("sluice.dev/v1alpha1", "Gateway", Some(&ns), "edge")
            .await?;
        Ok(gw.is_none().then_some(()))
    })
    .await?;
    // Garbage collection in a real cluster is not instant: give it time to (wrongly) act.
    tokio::time::sleep(if cluster.is_real() {
        Duration::from_secs(5)
    } else {
        POLL_INTERVAL * 4
    })
    .await;
    untouched("v1", "ConfigMap", "edge-envoy-bootstrap", &foreign_cm).await?;
    untouched("v1", "Service", "edge-envoy", &foreign_svc).await?;

    // A new Gateway of that name, once the names are free, is provisioned.
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    wait_degraded(&cluster, &mut op, &ns, "edge", "Degraded", |(s, _, _)| {
        s == "True"
    })
    .await?;
    cluster
        .delete("v1", "ConfigMap", Some(&ns), "edge-envoy-bootstrap")
        .await?;
    cluster
        .delete("v1", "Service", Some(&ns), "edge-envoy")
        .await?;
    wait_degraded(
        &cluster,
        &mut op,
        &ns,
        "edge",
        "not Degraded",
        |(s, _, _)| s == "False",
    )
    .await?;
    let gw = cluster
        .get("sluice.dev/v1alpha1", "Gateway", Some(&ns), "edge")
        .await?
        .context("the Gateway")?;
    for (api, kind, name) in [
        ("apps/v1", "DaemonSet", "edge-envoy"),
        ("v1", "Service", "edge-envoy"),
        ("v1", "ConfigMap", "edge-envoy-bootstrap"),
    ] {
        let obj = cluster
            .get(api, kind, Some(&ns), name)
            .await?
            .with_context(|| format!("{kind} {name}"))?;
        assert!(owned_by(&obj, &gw), "{kind} {name}: {obj:#}");
    }
    op.check_running()?;
    Ok(())
}

/// An object the API refuses (here the Service, for an annotation key Kubernetes does not
/// accept) makes the Gateway `Degraded` with the API's message, naming the object, and records
/// one Warning event on the Gateway, not one per reconcile. The rest is still applied, and
/// fixing the spec clears the condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_error_reaches_the_gateway_status_and_an_event() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-e").await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    let bad_key = "not a valid key!";
    cluster
        .apply(gateway(
            &ns,
            "edge",
            json!({"publishing": {"type": "ClusterIP", "annotations": {bad_key: "x"}}}),
        ))
        .await?;

    let (_, reason, message) = wait_degraded(
        &cluster,
        &mut op,
        &ns,
        "edge",
        "Degraded by the refused Service",
        |(s, _, _)| s == "True",
    )
    .await?;
    assert_eq!(reason, "ApplyFailed");
    let prefix = format!("applying Service {ns}/edge-envoy: ");
    assert!(message.starts_with(&prefix), "{message}");
    // The API's own message follows.
    assert!(
        message.contains("is invalid") && message.contains("metadata.annotations"),
        "{message}"
    );
    // What does not depend on the Service is applied.
    assert!(
        cluster
            .get("apps/v1", "DaemonSet", Some(&ns), "edge-envoy")
            .await?
            .is_some()
    );

    let events = eventually("an event on the Gateway", async || {
        let events = gateway_warnings(&cluster, &ns, "edge").await?;
        Ok((!events.is_empty()).then_some(events))
    })
    .await?;
    let event = &events[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "ApplyFailed");
    assert_eq!(event["note"], message.as_str());
    assert_eq!(event["related"]["kind"], "Service");
    assert_eq!(event["related"]["name"], "edge-envoy");

    // More reconciles (the Service applied again) record no more events.
    let service_path = format!("/api/v1/namespaces/{ns}/services/edge-envoy");
    match cluster.memory() {
        Some(server) => {
            eventually("the Service to be applied again", async || {
                op.check_running()?;
                let applies = server
                    .requests()
                    .iter()
                    .filter(|r| r.method == "PATCH" && r.path == service_path)
                    .count();
                Ok((applies >= 3).then_some(()))
            })
            .await?;
        }
        None => tokio::time::sleep(Duration::from_secs(20)).await,
    }
    let events = gateway_warnings(&cluster, &ns, "edge").await?;
    assert_eq!(events.len(), 1, "{events:#?}");

    // Another refusal, another message, another event: a CPU request above its limit refuses
    // the DaemonSet (kube-apiserver's ValidateResourceRequirements).
    cluster
        .apply(gateway(
            &ns,
            "edge",
            json!({"publishing": {"type": "ClusterIP"},
                   "envoy": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}}),
        ))
        .await?;
    let (_, reason, message) = wait_degraded(
        &cluster,
        &mut op,
        &ns,
        "edge",
        "Degraded by the refused DaemonSet",
        |(s, _, m)| s == "True" && m.contains("DaemonSet"),
    )
    .await?;
    assert_eq!(reason, "ApplyFailed");
    assert!(
        message.starts_with(&format!("applying DaemonSet {ns}/edge-envoy: ")),
        "{message}"
    );
    assert!(
        message.contains("resources.requests")
            && message.contains("must be less than or equal to cpu limit of 1"),
        "{message}"
    );
    let events = eventually("a second event on the Gateway", async || {
        let events = gateway_warnings(&cluster, &ns, "edge").await?;
        Ok((events.len() >= 2).then_some(events))
    })
    .await?;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["note"] == message.as_str() && e["related"]["kind"] == "DaemonSet"),
        "{events:#?}"
    );

    // Fixing the spec clears the condition.
    cluster
        .apply(gateway(
            &ns,
            "edge",
            json!({"publishing": {"type": "ClusterIP"}}),
        ))
        .await?;
    wait_degraded(
        &cluster,
        &mut op,
        &ns,
        "edge",
        "not Degraded",
        |(s, _, _)| s == "False",
    )
    .await?;
    assert!(
        cluster
            .get("v1", "Service", Some(&ns), "edge-envoy")
            .await?
            .is_some()
    );
    op.check_running()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. IngressRoute statuses.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingressroute_statuses_follow_changes() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-a").await?;
    let instance = format!("{ns}/edge");
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    let mut root = route_spec(Some("app.example.com"), "web");
    root["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"match": "/child", "delegate": {"name": "child"}}));
    cluster
        .apply(ingress_route(&ns, "root", None, root))
        .await?;
    cluster
        .apply(ingress_route(
            &ns,
            "child",
            None,
            json!({
                "routes": [{"match": "/child", "services": [{"name": "web", "port": 80}]}]
            }),
        ))
        .await?;
    cluster
        .apply(ingress_route(&ns, "stray", None, route_spec(None, "web")))
        .await?;
    cluster
        .apply(ingress_route(
            &ns,
            "broken",
            None,
            route_spec(Some("broken.example.com"), "missing"),
        ))
        .await?;

    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    assert_eq!(
        wait_status(&cluster, &mut op, &ns, "root", "valid").await?,
        "valid IngressRoute"
    );
    assert_eq!(
        wait_status(&cluster, &mut op, &ns, "child", "valid").await?,
        "valid IngressRoute"
    );
    assert_eq!(
        wait_status(&cluster, &mut op, &ns, "stray", "orphaned").await?,
        "this IngressRoute is not part of a delegation chain from a root IngressRoute"
    );
    let why = wait_status(&cluster, &mut op, &ns, "broken", "invalid").await?;
    assert!(why.contains("missing") && why.contains("80"), "{why}");
    wait_route_metrics(&mut op, &instance, (2.0, 1.0, 1.0)).await?;
    eventually("the Gateway status to count the routes", async || {
        let gw = cluster
            .get("sluice.dev/v1alpha1", "Gateway", Some(&ns), "edge")
            .await?;
        Ok(gw.filter(|g| {
            g["status"]["routes"] == json!({"valid": 2, "invalid": 1, "orphaned": 1})
                && g["status"]["validRoutes"] == "2/4"
        }))
    })
    .await?;

    // Fixing the invalid route makes it valid.
    cluster.apply(service(&ns, "missing")).await?;
    wait_status(&cluster, &mut op, &ns, "broken", "valid").await?;
    // Deleting the root orphans its delegate.
    cluster
        .delete(
            "contour.heptio.com/v1beta1",
            "IngressRoute",
            Some(&ns),
            "root",
        )
        .await?;
    wait_status(&cluster, &mut op, &ns, "child", "orphaned").await?;
    wait_route_metrics(&mut op, &instance, (1.0, 0.0, 2.0)).await?;
    // Routes of another ingress class are not this Gateway's: no status is written for them.
    cluster
        .apply(ingress_route(
            &ns,
            "foreign",
            Some("other"),
            route_spec(Some("x.example.com"), "web"),
        ))
        .await?;
    // Once a later change is judged, the foreign route has still not been touched.
    cluster
        .apply(ingress_route(
            &ns,
            "stray",
            None,
            route_spec(Some("stray.example.com"), "web"),
        ))
        .await?;
    wait_status(&cluster, &mut op, &ns, "stray", "valid").await?;
    assert_eq!(route_status(&cluster, &ns, "foreign").await?, None);
    Ok(())
}

/// Root IngressRoutes the operator's DAG updates built again (`sluice_dag_roots_rebuilt_total`).
async fn roots_rebuilt(op: &Operator, gateway: &str) -> Result<f64> {
    let text = op.metrics().await?;
    metric_value(
        &text,
        "sluice_dag_roots_rebuilt_total",
        &[("gateway", gateway)],
    )
    .context("no sluice_dag_roots_rebuilt_total for the Gateway")
}

/// A status written back (the operator's own, or someone else's) changes nothing the DAG reads:
/// no root is built again for it, and a status someone else wrote is written over with the
/// verdict. Counted, not timed: every root is built once per change of its own (the first
/// build, then the marker's creation), and the status writes add nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_written_back_rebuild_no_root() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-a").await?;
    let instance = format!("{ns}/edge");
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    cluster
        .apply(ingress_route(
            &ns,
            "root",
            None,
            route_spec(Some("app.example.com"), "web"),
        ))
        .await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    wait_status(&cluster, &mut op, &ns, "root", "valid").await?;

    // Someone else writes another status: it is written over.
    let api = cluster
        .api("contour.heptio.com/v1beta1", "IngressRoute", Some(&ns))
        .await?;
    let forged = json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
                        "status": {"currentStatus": "invalid", "description": "forged"}});
    api.patch_status(
        "root",
        &PatchParams::apply("someone-else").force(),
        &Patch::Apply(&forged),
    )
    .await?;
    eventually("the forged status to be written over", async || {
        op.check_running()?;
        let now = route_status(&cluster, &ns, "root").await?;
        Ok(now.filter(|(s, d)| s == "valid" && d == "valid IngressRoute"))
    })
    .await?;

    // A second root, created after every status above came back: once its status is written,
    // the operator has taken in those (the watch delivers them in order).
    cluster
        .apply(ingress_route(
            &ns,
            "marker",
            None,
            route_spec(Some("marker.example.com"), "web"),
        ))
        .await?;
    wait_status(&cluster, &mut op, &ns, "marker", "valid").await?;
    // Two roots, each built once: the three statuses written back and the forged one built
    // nothing (each would build its root again).
    assert_eq!(roots_rebuilt(&op, &instance).await?, 2.0);
    Ok(())
}

/// Status writes go beside the passes: while a round of status writes is slow (here the API
/// server holds every status write), later changes are still judged and published (the route
/// gauges count a route created meanwhile before the slow status has been written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_status_writes_hold_back_no_later_change() -> Result<()> {
    use sluice_e2e::apiserver::Fault;
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        // Needs fault injection: only against the in-memory API server.
        return Ok(());
    };
    let ns = cluster.namespace("team-a").await?;
    let instance = format!("{ns}/edge");
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    cluster
        .apply(ingress_route(
            &ns,
            "first",
            None,
            route_spec(Some("first.example.com"), "web"),
        ))
        .await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    wait_status(&cluster, &mut op, &ns, "first", "valid").await?;
    wait_route_metrics(&mut op, &instance, (1.0, 0.0, 0.0)).await?;

    // Every status write now waits far longer than the test does.
    server.inject(Fault::writes("ingressroutes/status").delayed(Duration::from_secs(120)));
    cluster
        .apply(ingress_route(
            &ns,
            "broken",
            None,
            route_spec(Some("broken.example.com"), "missing"),
        ))
        .await?;
    wait_route_metrics(&mut op, &instance, (1.0, 1.0, 0.0)).await?;
    // The round writing `broken`'s status is stuck; a later route is judged all the same.
    cluster
        .apply(ingress_route(
            &ns,
            "second",
            None,
            route_spec(Some("second.example.com"), "web"),
        ))
        .await?;
    wait_route_metrics(&mut op, &instance, (2.0, 1.0, 0.0)).await?;
    assert_eq!(
        route_status(&cluster, &ns, "broken").await?,
        None,
        "the slow status write finished first"
    );
    Ok(())
}

/// The events recorded on IngressRoute `ns/name`, oldest first, as `(type, reason, note)`.
async fn route_events(
    cluster: &Cluster,
    ns: &str,
    name: &str,
) -> Result<Vec<(String, String, String)>> {
    let api = cluster.api("events.k8s.io/v1", "Event", Some(ns)).await?;
    let list = api.list(&Default::default()).await?;
    let mut events: Vec<Value> = list
        .items
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == "IngressRoute" && e["regarding"]["name"] == name)
        .collect();
    events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_owned());
    Ok(events
        .iter()
        .map(|e| {
            let field = |f: &str| e[f].as_str().unwrap_or_default().to_owned();
            (field("type"), field("reason"), field("note"))
        })
        .collect())
}

/// An IngressRoute's verdicts are announced with events: one per change of its status, with the
/// description as the note (Normal `Valid`, Warning `Invalid`), and none when reconciles find
/// nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingressroute_verdict_changes_are_events() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-ev").await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    cluster
        .apply(ingress_route(
            &ns,
            "app",
            None,
            route_spec(Some("app.example.com"), "web"),
        ))
        .await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    let valid = wait_status(&cluster, &mut op, &ns, "app", "valid").await?;
    let want_valid = ("Normal".to_owned(), "Valid".to_owned(), valid.clone());
    let wait_events = async |n: usize| {
        eventually(&format!("{n} events on IngressRoute app"), async || {
            let events = route_events(&cluster, &ns, "app").await?;
            Ok((events.len() >= n).then_some(events))
        })
        .await
    };
    assert_eq!(wait_events(1).await?, vec![want_valid.clone()]);

    // Its Service gone, the route is invalid.
    cluster.delete("v1", "Service", Some(&ns), "web").await?;
    let invalid = wait_status(&cluster, &mut op, &ns, "app", "invalid").await?;
    let want_invalid = ("Warning".to_owned(), "Invalid".to_owned(), invalid);
    assert_eq!(
        wait_events(2).await?,
        vec![want_valid.clone(), want_invalid.clone()]
    );

    // Back, valid again: a second Valid event, not merged into the first.
    cluster.apply(service(&ns, "web")).await?;
    wait_status(&cluster, &mut op, &ns, "app", "valid").await?;
    let want = vec![want_valid.clone(), want_invalid, want_valid];
    assert_eq!(wait_events(3).await?, want);

    // Reconciles that change nothing of it add no event: another route judged twice.
    cluster
        .apply(ingress_route(
            &ns,
            "other",
            None,
            route_spec(Some("other.example.com"), "web"),
        ))
        .await?;
    wait_status(&cluster, &mut op, &ns, "other", "valid").await?;
    cluster
        .apply(ingress_route(
            &ns,
            "other",
            None,
            route_spec(Some("other.example.com"), "gone"),
        ))
        .await?;
    wait_status(&cluster, &mut op, &ns, "other", "invalid").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(route_events(&cluster, &ns, "app").await?, want);
    assert_eq!(route_events(&cluster, &ns, "other").await?.len(), 2);
    op.check_running()?;
    Ok(())
}

/// An Event that could not be recorded when its status was written is owed, not lost: while
/// Event writes fail, an IngressRoute turns invalid (its status is written, its Event refused);
/// once they work again, a later round records it, although the status is already in step.
/// In memory only (faults are injected by the API server double).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingressroute_event_refused_once_is_recorded_later() -> Result<()> {
    use sluice_e2e::apiserver::Fault;
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("skipped against a real cluster: it takes faults injected by the API server");
        return Ok(());
    };
    let ns = cluster.namespace("team-owed").await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    let route = |service: &str| {
        ingress_route(
            &ns,
            "app",
            None,
            route_spec(Some("app.example.com"), service),
        )
    };
    cluster.apply(route("web")).await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    wait_status(&cluster, &mut op, &ns, "app", "valid").await?;
    eventually("the Valid event", async || {
        Ok((route_events(&cluster, &ns, "app").await?.len() == 1).then_some(()))
    })
    .await?;

    // Event writes fail while the route turns invalid: the status is written all the same.
    let fault = server.inject(Fault::writes("events").failing_with(500));
    let mark = server.requests_arrived();
    cluster.apply(route("gone")).await?;
    let invalid = wait_status(&cluster, &mut op, &ns, "app", "invalid").await?;
    eventually("a refused Event write", async || {
        op.check_running()?;
        let refused = server
            .requests()
            .into_iter()
            .any(|r| r.seq >= mark && r.is_write() && r.path.contains("/events") && r.code == 500);
        Ok(refused.then_some(()))
    })
    .await?;
    assert_eq!(route_events(&cluster, &ns, "app").await?.len(), 1);

    // Writes work again: with no change to the route, its Invalid event comes.
    server.clear_fault(fault);
    let events = eventually("the owed Invalid event", async || {
        op.check_running()?;
        let events = route_events(&cluster, &ns, "app").await?;
        Ok((events.len() >= 2).then_some(events))
    })
    .await?;
    let want = ("Warning".to_owned(), "Invalid".to_owned(), invalid);
    assert_eq!(events[1], want, "{events:?}");
    // Once: no more after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(route_events(&cluster, &ns, "app").await?.len(), 2);
    op.check_running()?;
    Ok(())
}

/// An IngressRoute stored under an older, schema-less CRD (Contour <= 1.5) with a field of the
/// wrong type is `invalid` with the decoder's message; the operator becomes ready and every
/// other IngressRoute is judged as usual. In memory the route is created under Contour's legacy
/// CRD, then Sluice's CRDs are applied over it (a real server keeps stored objects when the
/// schema changes). A real cluster's CRDs cannot be made schema-less (apiextensions v1beta1 is
/// gone), and with Sluice's CRD it refuses such an object, so there only the good route is
/// checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_ingressroute_stops_nothing() -> Result<()> {
    let cluster = Cluster::start(false).await?;
    let ns = cluster.namespace("team-a").await?;
    let mut old = ingress_route(&ns, "old", None, route_spec(Some("old.example.com"), "web"));
    old["spec"]["routes"][0]["services"][0]["port"] = json!("80");
    old["spec"]["strategy"] = json!("RingHash");
    match cluster.memory() {
        Some(server) => {
            server.create_v1beta1_crd(contour_legacy_crd("ingressroutes", "IngressRoute"))?;
            server.create(old)?;
        }
        None => println!(
            "real cluster: its CRD schema refuses port: \"80\"; checking the good route only"
        ),
    }
    cluster.install_crds().await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    cluster
        .apply(ingress_route(
            &ns,
            "good",
            None,
            route_spec(Some("good.example.com"), "web"),
        ))
        .await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    assert_eq!(
        wait_status(&cluster, &mut op, &ns, "good", "valid").await?,
        "valid IngressRoute"
    );
    if cluster.memory().is_some() {
        let why = wait_status(&cluster, &mut op, &ns, "old", "invalid").await?;
        assert!(
            why.starts_with("this IngressRoute could not be read: spec.routes[0].services[0].port: invalid type: string \"80\""),
            "{why}"
        );
        // Edits of good IngressRoutes keep being judged.
        cluster
            .apply(ingress_route(
                &ns,
                "good",
                None,
                route_spec(Some("good.example.com"), "missing"),
            ))
            .await?;
        wait_status(&cluster, &mut op, &ns, "good", "invalid").await?;
    }
    Ok(())
}

/// Contour's CRDs as a cluster that ran Contour (up to 1.5) keeps them: created through
/// apiextensions v1beta1, so `preserveUnknownFields: true`, no subresources, and a schema that
/// keeps everything.
fn contour_legacy_crd(plural: &str, kind: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": format!("{plural}.contour.heptio.com")},
           "spec": {"group": "contour.heptio.com", "scope": "Namespaced",
                    "preserveUnknownFields": true,
                    "names": {"kind": kind, "plural": plural,
                              "singular": kind.to_ascii_lowercase(), "listKind": format!("{kind}List")},
                    "versions": [{"name": "v1beta1", "served": true, "storage": true,
                                  "schema": {"openAPIV3Schema": {
                                      "type": "object",
                                      "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

/// `sluice_crd_info` of the IngressRoute CRD with these labels, if exported.
async fn ingressroute_crd_info(
    op: &Operator,
    status_subresource: &str,
    preserve_unknown_fields: &str,
) -> Result<Option<f64>> {
    Ok(metric_value(
        &op.metrics().await?,
        "sluice_crd_info",
        &[
            ("crd", "ingressroutes.contour.heptio.com"),
            ("served_versions", "v1beta1"),
            ("status_subresource", status_subresource),
            ("preserve_unknown_fields", preserve_unknown_fields),
        ],
    ))
}

/// A cluster that ran Contour: its CRDs have no status subresource, so Sluice writes statuses
/// through the main resource (as Contour did) and says the subresource is missing; then
/// Sluice's CRDs are applied over Contour's (as `kubectl apply --server-side` does), which
/// turns `preserveUnknownFields` off and adds the subresource, and the operator follows.
/// In memory only: a real cluster cannot create a CRD with `preserveUnknownFields: true`
/// any more (apiextensions v1beta1 is gone since Kubernetes 1.22), and its shared CRDs must not
/// be replaced by a test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contour_legacy_crds_then_sluice_crds_applied_over_them() -> Result<()> {
    let cluster = Cluster::start(false).await?;
    let Some(server) = cluster.memory() else {
        println!("real cluster: cannot make apiextensions v1beta1 CRDs; skipped");
        return Ok(());
    };
    server.create_v1beta1_crd(contour_legacy_crd("ingressroutes", "IngressRoute"))?;
    server.create_v1beta1_crd(contour_legacy_crd(
        "tlscertificatedelegations",
        "TLSCertificateDelegation",
    ))?;
    let gateway_crd = sluice::api::crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("gateways.sluice.dev"))
        .context("no Gateway CRD")?;
    cluster.apply(serde_json::to_value(gateway_crd)?).await?;

    let ns = cluster.namespace("team-a").await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    cluster
        .apply(ingress_route(
            &ns,
            "web",
            None,
            route_spec(Some("web.example.com"), "web"),
        ))
        .await?;
    cluster
        .apply(ingress_route(&ns, "stray", None, route_spec(None, "web")))
        .await?;

    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    assert_eq!(
        wait_status(&cluster, &mut op, &ns, "web", "valid").await?,
        "valid IngressRoute"
    );
    wait_status(&cluster, &mut op, &ns, "stray", "orphaned").await?;
    // Written through the main resource; `/status` is not even tried once the CRD is known.
    let ir_path = format!("/apis/contour.heptio.com/v1beta1/namespaces/{ns}/ingressroutes");
    let status_writes = |suffix: &str| -> Vec<String> {
        server
            .requests()
            .into_iter()
            .filter(|r| {
                r.user == "solo"
                    && r.is_write()
                    && r.path.starts_with(&ir_path)
                    && r.path.ends_with(suffix)
            })
            .map(|r| format!("{} {} -> {}", r.method, r.path, r.code))
            .collect()
    };
    let main_writes = status_writes("web");
    assert!(
        !main_writes.is_empty() && main_writes.iter().all(|w| w.ends_with("200")),
        "{main_writes:?}"
    );
    assert_eq!(status_writes("/status"), Vec::<String>::new());
    // And says why.
    assert_eq!(
        ingressroute_crd_info(&op, "false", "true").await?,
        Some(1.0)
    );
    let log = op.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ingressroutes.contour.heptio.com")
                && l.contains("no status subresource")),
        "{log}"
    );

    // Sluice's CRDs over Contour's, then a change that needs a status write.
    cluster.install_crds().await?;
    let crd = cluster
        .get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "ingressroutes.contour.heptio.com",
        )
        .await?
        .context("IngressRoute CRD gone")?;
    assert_eq!(crd["spec"]["preserveUnknownFields"], false);
    assert!(
        crd["spec"]["versions"][0]["subresources"]["status"].is_object(),
        "{crd}"
    );
    cluster
        .apply(ingress_route(
            &ns,
            "stray",
            None,
            route_spec(Some("stray.example.com"), "web"),
        ))
        .await?;
    wait_status(&cluster, &mut op, &ns, "stray", "valid").await?;
    assert!(
        status_writes("stray/status")
            .iter()
            .any(|w| w.ends_with("200")),
        "{:?}",
        status_writes("stray/status")
    );
    eventually("sluice_crd_info to show Sluice's CRD", async || {
        op.check_running()?;
        ingressroute_crd_info(&op, "true", "false").await
    })
    .await?;
    assert_eq!(ingressroute_crd_info(&op, "false", "true").await?, None);
    // Statuses written before the switch stay.
    assert_eq!(
        route_status(&cluster, &ns, "web").await?,
        Some(("valid".into(), "valid IngressRoute".into()))
    );
    // And later changes keep being written.
    cluster
        .apply(ingress_route(
            &ns,
            "web",
            None,
            route_spec(Some("web.example.com"), "gone"),
        ))
        .await?;
    wait_status(&cluster, &mut op, &ns, "web", "invalid").await?;

    // Rolling back (README): the subresource removed again, `/status` answers 404 for objects
    // that exist, and the operator goes back to the main resource.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(cluster.client.clone());
    let remove: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/spec/versions/0/subresources"}]))?;
    crds.patch(
        "ingressroutes.contour.heptio.com",
        &PatchParams::default(),
        &Patch::Json::<()>(remove),
    )
    .await?;
    cluster
        .apply(ingress_route(
            &ns,
            "web",
            None,
            route_spec(Some("web.example.com"), "web"),
        ))
        .await?;
    wait_status(&cluster, &mut op, &ns, "web", "valid").await?;
    assert_eq!(
        ingressroute_crd_info(&op, "false", "false").await?,
        Some(1.0)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Two teams, two instances: each serves only its own roots and secrets.

/// Asks the xDS server, as an Envoy of `instance`, for the secrets `names` (state of the world)
/// and returns the names of those it sends, once it sends `expect`.
async fn ads_secrets(
    xds: &str,
    creds: &ClientCredentials,
    instance: &str,
    names: &[&str],
    expect: &str,
) -> Result<Vec<String>> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use prost::Message;

    const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&creds.ca))
        .identity(tonic::transport::Identity::from_pem(
            &creds.cert,
            &creds.key,
        ))
        .domain_name("sluice-xds");
    let channel = tonic::transport::Channel::from_shared(format!("https://{xds}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "e2e-probe".into(),
            cluster: instance.into(),
            ..Node::default()
        }),
        type_url: SECRET.into(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..DiscoveryRequest::default()
    })
    .await?;
    let mut inbound = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut sent = Vec::new();
    // Every response is checked: the first ones may come before the instance is published.
    while !sent.iter().any(|n| n == expect) {
        let resp = tokio::time::timeout(PATIENCE, inbound.message())
            .await
            .context("waiting for an xDS response")??
            .context("the xDS stream ended")?;
        sent = resp
            .resources
            .iter()
            .map(|any| Secret::decode(any.value.as_slice()).map(|s| s.name))
            .collect::<Result<_, _>>()?;
        sent.sort();
        ensure!(
            sent.iter().all(|n| names.contains(&n.as_str())),
            "sent unrequested secrets {sent:?}"
        );
        // ACK, so the stream goes on.
        tx.send(DiscoveryRequest {
            type_url: SECRET.into(),
            resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
            version_info: resp.version_info.clone(),
            response_nonce: resp.nonce.clone(),
            ..DiscoveryRequest::default()
        })
        .await?;
        if !sent.iter().any(|n| n == expect) {
            // Not published yet: only an empty answer is acceptable meanwhile.
            ensure!(
                sent.is_empty(),
                "{instance} was sent {sent:?} but not {expect}"
            );
        }
    }
    Ok(sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_see_only_their_own_routes_and_secrets() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let a = cluster.namespace("team-a").await?;
    let b = cluster.namespace("team-b").await?;
    let ca = sluice_e2e::tls::TestCa::new("e2e CA")?;
    let web_a = Backend::start("web-a").await?;
    let web_b = Backend::start("web-b").await?;

    for (ns, team, backend) in [(&a, "team-a", &web_a), (&b, "team-b", &web_b)] {
        cluster
            .apply(gateway(
                ns,
                "edge",
                json!({"ingressClassName": team, "rootNamespaces": [ns]}),
            ))
            .await?;
        cluster.apply(service(ns, "web")).await?;
        if !cluster.is_real() {
            cluster.apply(endpoints(ns, "web", backend.port())).await?;
        }
        let fqdn = format!("{team}.example.com");
        cluster
            .apply(tls_secret(ns, "tls", &ca.issue(&[&fqdn])?)?)
            .await?;
        let mut spec = route_spec(Some(&fqdn), "web");
        spec["virtualhost"]["tls"] = json!({"secretName": "tls"});
        cluster
            .apply(ingress_route(ns, "app", Some(team), spec))
            .await?;
    }
    // Team A's class in team B's namespace: a root where team A's instance allows none.
    cluster
        .apply(ingress_route(
            &b,
            "squatter",
            Some("team-a"),
            route_spec(Some("squat.example.com"), "web"),
        ))
        .await?;

    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    wait_status(&cluster, &mut op, &a, "app", "valid").await?;
    wait_status(&cluster, &mut op, &b, "app", "valid").await?;
    let why = wait_status(&cluster, &mut op, &b, "squatter", "invalid").await?;
    assert_eq!(why, "root IngressRoute cannot be defined in this namespace");
    // Each instance judges only its class: B's route is not A's, A's not B's.
    wait_route_metrics(&mut op, &format!("{a}/edge"), (1.0, 1.0, 0.0)).await?;
    wait_route_metrics(&mut op, &format!("{b}/edge"), (1.0, 0.0, 0.0)).await?;

    // Every Gateway restricts its roots, so Secrets are read only in the root namespaces (and
    // the operator's own namespace, for its xDS certificates): the operator never lists or
    // watches Secrets cluster-wide, nor in other namespaces.
    if let Backing::Memory(server) = &cluster.backing {
        let secret_paths: std::collections::BTreeSet<String> = server
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/secrets"))
            .map(|r| r.path)
            .collect();
        let allowed: std::collections::BTreeSet<String> = [&a, &b, OPERATOR_NAMESPACE]
            .iter()
            .map(|ns| format!("/api/v1/namespaces/{ns}/secrets"))
            .collect();
        assert!(
            !secret_paths.is_empty() && secret_paths.is_subset(&allowed),
            "Secret reads outside the root namespaces: {secret_paths:?}"
        );
    }

    // Asked for both teams' secrets, each instance gets only its own; with team A's client
    // certificate, asking as team B's instance is refused.
    let xds = op.xds_address();
    let (secret_a, secret_b) = (format!("{a}/tls"), format!("{b}/tls"));
    let names = [secret_a.as_str(), secret_b.as_str()];
    let creds_a = client_credentials(&cluster, &mut op, &a, "edge").await?;
    let creds_b = client_credentials(&cluster, &mut op, &b, "edge").await?;
    assert_eq!(
        ads_secrets(&xds, &creds_a, &format!("{a}/edge"), &names, &secret_a).await?,
        std::slice::from_ref(&secret_a)
    );
    assert_eq!(
        ads_secrets(&xds, &creds_b, &format!("{b}/edge"), &names, &secret_b).await?,
        std::slice::from_ref(&secret_b)
    );
    let refused = ads_secrets(&xds, &creds_a, &format!("{b}/edge"), &names, &secret_b).await;
    let status = refused
        .err()
        .and_then(|e| e.downcast::<tonic::Status>().ok())
        .context("team A's certificate must not fetch as team B")?;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");

    // A real Envoy per instance, from the provisioned bootstrap. They share the operator's Envoy
    // ports (one DaemonSet pod per node in a cluster), so they run one after the other.
    let port = op.ports().envoy_https;
    let client = TlsClient::trusting(&ca.cert_pem())?;
    for (ns, team, mine, theirs) in [
        (&a, "team-a", &secret_a, "team-b"),
        (&b, "team-b", &secret_b, "team-a"),
    ] {
        let bootstrap = provisioned_bootstrap(&cluster, &mut op, ns, "edge").await?;
        // The pod's admin socket path, moved into the Envoy's temporary directory.
        let envoy = Envoy::builder(bootstrap)
            .local_admin_socket()
            .start()
            .await?;
        let held = eventually(&format!("{team}'s Envoy to hold its secret"), async || {
            let names = envoy_secret_names(&envoy).await?;
            Ok(names.contains(mine).then_some(names))
        })
        .await?;
        assert_eq!(held, std::slice::from_ref(mine));
        if cluster.is_real() {
            eprintln!(
                "skipping {team}'s traffic check: kube-apiserver refuses Endpoints at 127.0.0.1"
            );
            continue;
        }
        let host = format!("{team}.example.com");
        let answer = eventually(
            &format!("https://{host} through {team}'s Envoy"),
            async || {
                let resp = Request::get(&host, "/").send_tls(port, &client).await;
                Ok(resp
                    .ok()
                    .filter(|r| r.status == 200)
                    .and_then(|r| r.backend()))
            },
        )
        .await?;
        assert_eq!(answer, format!("web-{}", &team[5..]));
        // The other team's host is unknown here: no certificate for it, no route.
        let other = format!("{theirs}.example.com");
        let refused = Request::get(&other, "/").send_tls(port, &client).await;
        assert!(
            refused.is_err(),
            "{other} answered through {team}'s Envoy: {refused:?}"
        );
    }
    op.check_running()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. The provisioned bootstrap drives a real Envoy.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_bootstrap_runs_a_real_envoy() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("shop").await?;
    let web = Backend::start("web").await?;
    let api = Backend::start("api").await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    cluster.apply(service(&ns, "api")).await?;
    if !cluster.is_real() {
        // Endpoints for one Service, an EndpointSlice for the other.
        cluster.apply(endpoints(&ns, "web", web.port())).await?;
        cluster
            .apply(endpoint_slice(&ns, "api", api.port()))
            .await?;
    }
    let mut spec = route_spec(Some("shop.example.com"), "web");
    spec["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"match": "/api", "services": [{"name": "api", "port": 80}]}));
    cluster
        .apply(ingress_route(&ns, "shop", None, spec))
        .await?;

    let mut op = cluster.operator("solo")?.start()?;
    let ports = op.ports();
    op.wait_ready(PATIENCE).await?;
    // Used as provisioned: its ports came from the operator's --envoy-*-port flags.
    let bootstrap = provisioned_bootstrap(&cluster, &mut op, &ns, "edge").await?;
    // The pod's admin socket path, moved into the Envoy's temporary directory.
    let envoy = Envoy::builder(bootstrap)
        .local_admin_socket()
        .start()
        .await?;
    assert!(
        matches!(envoy.admin_address(), AdminAddress::Unix(_)),
        "{:?}",
        envoy.admin_address()
    );

    // The readiness probe's target (the stats listener's /ready) answers once configured.
    eventually("Envoy's /ready on the stats port", async || {
        op.check_running()?;
        let resp = Request::get("127.0.0.1", "/ready")
            .send(ports.envoy_stats)
            .await;
        Ok(resp.ok().filter(|r| r.status == 200))
    })
    .await?;
    if cluster.is_real() {
        eprintln!(
            "skipping the traffic checks: kube-apiserver refuses Endpoints and EndpointSlices at \
             127.0.0.1; checking Envoy's configuration only"
        );
        eventually("the route in Envoy's configuration", async || {
            let dump = envoy.admin_get("/config_dump").await?.text();
            Ok(dump.contains("shop.example.com").then_some(()))
        })
        .await?;
        return Ok(());
    }
    for (path, backend) in [("/", "web"), ("/api/items", "api")] {
        let answer = eventually(&format!("{path} to reach {backend}"), async || {
            op.check_running()?;
            let resp = get(ports.envoy_http, "shop.example.com", path).await;
            Ok(resp
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| r.backend()))
        })
        .await?;
        assert_eq!(answer, backend, "{path}");
    }
    // Endpoint changes reach the running Envoy: move the slice to the web backend.
    cluster
        .apply(endpoint_slice(&ns, "api", web.port()))
        .await?;
    eventually(
        "/api to reach web after the EndpointSlice moved",
        async || {
            op.check_running()?;
            let resp = get(ports.envoy_http, "shop.example.com", "/api").await;
            Ok(resp.ok().and_then(|r| r.backend()).filter(|b| b == "web"))
        },
    )
    .await?;
    assert_eq!(
        get(ports.envoy_http, "elsewhere.example.com", "/")
            .await?
            .status,
        404
    );
    // The operator's metrics name the Gateway: its one Envoy's (Delta) stream, and the push of
    // the moved endpoints (a snapshot the stream had not seen), timed.
    let text = op.metrics().await?;
    let gw = format!("{ns}/edge");
    assert_eq!(
        metric_value(
            &text,
            "sluice_xds_streams",
            &[("gateway", &gw), ("protocol", "delta")]
        ),
        Some(1.0),
        "{text}"
    );
    let pushes = metric_value(
        &text,
        "sluice_xds_push_duration_seconds_count",
        &[("gateway", &gw)],
    )
    .context("no push latency of the Gateway")?;
    assert!(pushes >= 1.0, "{pushes}");
    Ok(())
}

/// notAfter of the certificate (`tls.crt`) of Secret `ns/name`, if it is there.
async fn secret_not_after(
    cluster: &Cluster,
    ns: &str,
    name: &str,
) -> Result<Option<std::time::SystemTime>> {
    use base64::Engine;
    let Some(secret) = cluster.get("v1", "Secret", Some(ns), name).await? else {
        return Ok(None);
    };
    let Some(b64) = secret["data"]["tls.crt"].as_str() else {
        return Ok(None);
    };
    let pem = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64)?)?;
    Ok(Some(
        sluice::pki::identity::CertificateInfo::from_pem(&pem)?.not_after,
    ))
}

/// The xDS client hash annotation of Gateway `ns/edge`'s DaemonSet pod template.
async fn xds_client_hash(cluster: &Cluster, ns: &str) -> Result<Option<String>> {
    Ok(cluster
        .get("apps/v1", "DaemonSet", Some(ns), "edge-envoy")
        .await?
        .and_then(|ds| {
            ds["spec"]["template"]["metadata"]["annotations"]["sluice.dev/xds-client-hash"]
                .as_str()
                .map(str::to_owned)
        }))
}

/// Opens an ADS stream to `xds` with `creds` (verifying the server's certificate, expiry
/// included) as `instance`, and waits for its first response.
async fn ads_answers(xds: &str, creds: &ClientCredentials, instance: &str) -> Result<()> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&creds.ca))
        .identity(tonic::transport::Identity::from_pem(
            &creds.cert,
            &creds.key,
        ))
        .domain_name("sluice-xds");
    let channel = tonic::transport::Channel::from_shared(format!("https://{xds}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "e2e-probe".into(),
            cluster: instance.into(),
            ..Node::default()
        }),
        type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
        ..DiscoveryRequest::default()
    })
    .await?;
    let mut inbound = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    tokio::time::timeout(PATIENCE, inbound.message())
        .await
        .context("waiting for an xDS response")??
        .context("the xDS stream ended")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_certificates_renew_themselves_without_a_restart() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("renew").await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    // Certificates for 12 s: renewed about 8 s after they are issued.
    let mut op = cluster
        .operator("solo")?
        .args(["--xds-cert-validity-seconds", "12"])
        .start()?;
    op.wait_ready(PATIENCE).await?;
    let server_expiry = eventually("the xDS server certificate", async || {
        secret_not_after(&cluster, OPERATOR_NAMESPACE, "sluice-xds-server").await
    })
    .await?;
    let client_secret = "edge-xds-client";
    let client_expiry = eventually("the xDS client certificate", async || {
        op.check_running()?;
        secret_not_after(&cluster, &ns, client_secret).await
    })
    .await?;
    let hash = eventually("the DaemonSet's xDS client hash", async || {
        xds_client_hash(&cluster, &ns).await
    })
    .await?;

    // Past the first server certificate's expiry: both certificates were renewed, and the
    // client's renewal rolled the pods (a new hash in the pod template).
    let left = server_expiry
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(left + Duration::from_secs(1)).await;
    op.check_running()?;
    let renewed_server = secret_not_after(&cluster, OPERATOR_NAMESPACE, "sluice-xds-server")
        .await?
        .context("the server Secret is gone")?;
    assert!(
        renewed_server > server_expiry,
        "server certificate not renewed: notAfter {renewed_server:?}, was {server_expiry:?}"
    );
    eventually("the client certificate's renewal", async || {
        op.check_running()?;
        Ok(secret_not_after(&cluster, &ns, client_secret)
            .await?
            .filter(|t| *t > client_expiry))
    })
    .await?;
    eventually("a new xDS client hash on the DaemonSet", async || {
        Ok(xds_client_hash(&cluster, &ns).await?.filter(|h| *h != hash))
    })
    .await?;

    // A client connecting now, after the first server certificate expired, is served the
    // renewed one by the same operator process (it verifies the server certificate's dates).
    let creds = client_credentials(&cluster, &mut op, &ns, "edge").await?;
    ads_answers(&op.xds_address(), &creds, &format!("{ns}/edge")).await?;

    // The expiry metrics follow the Secrets.
    let text = op.metrics().await?;
    let metric = "sluice_xds_certificate_expiry_timestamp_seconds";
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let server_metric = metric_value(&text, metric, &[("certificate", "server"), ("gateway", "")])
        .context("no server certificate expiry metric")?;
    assert!(server_metric > unix(server_expiry), "{server_metric}");
    let gw = format!("{ns}/edge");
    let client_metric = metric_value(
        &text,
        metric,
        &[("certificate", "client"), ("gateway", &gw)],
    )
    .context("no client certificate expiry metric")?;
    assert!(client_metric > unix(client_expiry), "{client_metric}");
    let ca_metric = metric_value(&text, metric, &[("certificate", "ca"), ("gateway", "")])
        .context("no CA expiry metric")?;
    assert!(ca_metric > unix(renewed_server), "{ca_metric}");
    op.check_running()?;
    Ok(())
}

/// With the operator on its default wildcard `[::]` and Envoys given `[::1]` for xDS, as in an
/// IPv6-only cluster: `/readyz` and `/metrics` answer over IPv6 and IPv4, Envoy fetches its
/// configuration (mutual TLS against the IP SAN `::1`), and its listeners (a Gateway's default
/// `ipFamily: DualStack`) take the probe and traffic over both families.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_envoy_serve_over_ipv6() -> Result<()> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    let v6 = |port: u16| SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let v4 = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("six").await?;
    let web = Backend::start("web").await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    if !cluster.is_real() {
        cluster.apply(endpoints(&ns, "web", web.port())).await?;
    }
    cluster
        .apply(ingress_route(
            &ns,
            "six",
            None,
            route_spec(Some("six.example.com"), "web"),
        ))
        .await?;

    let mut op = cluster.operator("six")?.ipv6().start()?;
    let ports = op.ports();
    op.wait_ready(PATIENCE).await?;
    for addr in [v6(ports.http), v4(ports.http)] {
        let ready = Request::get("localhost", "/readyz").send_to(addr).await?;
        assert_eq!(ready.status, 200, "/readyz over {addr}");
        let metrics = Request::get("localhost", "/metrics").send_to(addr).await?;
        assert_eq!(metrics.status, 200, "/metrics over {addr}");
    }

    let bootstrap = provisioned_bootstrap(&cluster, &mut op, &ns, "edge").await?;
    let b: Value = serde_json::from_str(&bootstrap)?;
    let xds = &b["static_resources"]["clusters"][0];
    assert_eq!(xds["type"], "STATIC", "{xds}");
    assert_eq!(
        xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
            ["address"],
        "::1",
        "{xds}"
    );
    let envoy = Envoy::builder(bootstrap)
        .local_admin_socket()
        .start()
        .await?;
    // The readiness probe targets the pod IP, whichever its family.
    for addr in [v6(ports.envoy_stats), v4(ports.envoy_stats)] {
        eventually(&format!("Envoy's /ready over {addr}"), async || {
            op.check_running()?;
            let resp = Request::get("localhost", "/ready").send_to(addr).await;
            Ok(resp.ok().filter(|r| r.status == 200))
        })
        .await?;
    }
    if cluster.is_real() {
        eprintln!("skipping the traffic checks: kube-apiserver refuses Endpoints at 127.0.0.1");
        return Ok(());
    }
    for addr in [v6(ports.envoy_http), v4(ports.envoy_http)] {
        let answer = eventually(&format!("six.example.com over {addr}"), async || {
            op.check_running()?;
            let resp = Request::get("six.example.com", "/").send_to(addr).await;
            Ok(resp
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| r.backend()))
        })
        .await?;
        assert_eq!(answer, "web", "{addr}");
    }
    drop(envoy);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Leader election.

async fn lease_holder(cluster: &Cluster) -> Result<Option<(String, i64)>> {
    let lease = cluster
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some(OPERATOR_NAMESPACE),
            &format!("{}sluice-leader", cluster.prefix),
        )
        .await?;
    Ok(lease.and_then(|l| {
        Some((
            l["spec"]["holderIdentity"].as_str()?.to_owned(),
            l["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
        ))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_when_the_leader_dies() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-a").await?;
    let instance = format!("{ns}/edge");
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    cluster
        .apply(ingress_route(
            &ns,
            "app",
            None,
            route_spec(Some("app.example.com"), "web"),
        ))
        .await?;

    let start = |identity: &str| -> Result<Operator> {
        Ok(cluster
            .operator(identity)?
            .args([
                "--lease-duration-seconds",
                "3",
                "--lease-renew-seconds",
                "1",
            ])
            .start()?)
    };
    let mut alpha = start("alpha")?;
    eventually("alpha to hold the lease", async || {
        alpha.check_running()?;
        Ok(lease_holder(&cluster).await?.filter(|(h, _)| h == "alpha"))
    })
    .await?;
    wait_status(&cluster, &mut alpha, &ns, "app", "valid").await?;

    let mut beta = start("beta")?;
    beta.wait_ready(PATIENCE).await?;
    // Beta serves (it has built the instance) but does not lead.
    wait_route_metrics(&mut beta, &instance, (1.0, 0.0, 0.0)).await?;
    // A change: the leader writes the new status; the follower sees it but writes nothing.
    cluster
        .apply(ingress_route(
            &ns,
            "app",
            None,
            route_spec(Some("app.example.com"), "gone"),
        ))
        .await?;
    wait_status(&cluster, &mut alpha, &ns, "app", "invalid").await?;
    wait_route_metrics(&mut beta, &instance, (0.0, 1.0, 0.0)).await?;
    // Beta handles changes one at a time (build, then write if leading): once it has built the
    // next change, it is done with that one.
    cluster
        .apply(ingress_route(&ns, "spare", None, route_spec(None, "web")))
        .await?;
    wait_route_metrics(&mut beta, &instance, (0.0, 1.0, 1.0)).await?;
    assert_eq!(
        lease_holder(&cluster).await?.map(|(h, _)| h),
        Some("alpha".to_owned())
    );
    if let Some(server) = cluster.memory() {
        let requests = server.requests();
        let writes = |user: &str| -> Vec<String> {
            requests
                .iter()
                .filter(|r| r.user == user && r.is_write())
                .map(|r| format!("{} {} -> {}", r.method, r.path, r.code))
                .collect()
        };
        assert_eq!(writes("beta"), Vec::<String>::new(), "the follower wrote");
        // Alpha took the lease before writing anything else but the xDS certificates every
        // replica shares (the first replica to start creates them, leader or not).
        let alpha_writes = writes("alpha");
        let pki = format!("/namespaces/{OPERATOR_NAMESPACE}/secrets");
        let first = alpha_writes.iter().find(|w| !w.contains(&pki));
        assert!(
            first.is_some_and(|w| w.starts_with("POST") && w.contains("/leases")),
            "{alpha_writes:#?}"
        );
        assert!(
            alpha_writes
                .iter()
                .any(|w| w.starts_with("PATCH") && w.contains("/ingressroutes/app/status")),
            "{alpha_writes:#?}"
        );
    } else {
        // A real cluster cannot tell the two processes' requests apart (one kubeconfig): the
        // lease holder and the statuses are what is checked there.
    }

    // The leader dies without releasing the lease; the follower takes over once it expires.
    alpha.kill();
    let (_, transitions) = eventually("beta to take the lease over", async || {
        beta.check_running()?;
        Ok(lease_holder(&cluster).await?.filter(|(h, _)| h == "beta"))
    })
    .await?;
    assert!(transitions >= 1, "leaseTransitions {transitions}");
    // The survivor writes statuses: fix the route.
    cluster.apply(service(&ns, "gone")).await?;
    wait_status(&cluster, &mut beta, &ns, "app", "valid").await?;
    if let Some(server) = cluster.memory() {
        let beta_writes: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.user == "beta" && r.is_write())
            .collect();
        // Its first write took the lease over (a replace of alpha's expired lease).
        assert_eq!(
            (beta_writes[0].method.as_str(), beta_writes[0].code),
            ("PUT", 200),
            "{beta_writes:#?}"
        );
        assert!(beta_writes[0].path.contains("/leases/"), "{beta_writes:#?}");
        assert!(
            server.requests().iter().any(|r| r.user == "beta"
                && r.method == "PATCH"
                && r.path.ends_with("/ingressroutes/app/status")
                && r.code == 200),
            "beta did not write the status"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5b. A graceful stop hands the lease over at once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_the_lease_over() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    // An hour-long lease: without the hand-over, the follower could not lead during this test.
    let start = |identity: &str| -> Result<Operator> {
        Ok(cluster
            .operator(identity)?
            .args([
                "--lease-duration-seconds",
                "3600",
                "--lease-renew-seconds",
                "1",
            ])
            .start()?)
    };
    let mut alpha = start("alpha")?;
    eventually("alpha to hold the lease", async || {
        alpha.check_running()?;
        Ok(lease_holder(&cluster).await?.filter(|(h, _)| h == "alpha"))
    })
    .await?;
    let mut beta = start("beta")?;
    beta.wait_ready(PATIENCE).await?;
    alpha.process().stop(); // SIGTERM, then (only if it hangs) SIGKILL.
    eventually("beta to take the released lease", async || {
        beta.check_running()?;
        Ok(lease_holder(&cluster).await?.filter(|(h, _)| h == "beta"))
    })
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5c. Lease renewals that fail: transient errors are ridden out, lasting ones end the leadership
// within the renew deadline, and the old leader writes nothing after it stepped down.

/// Whether `log` (text format) says the replica stopped leading.
fn stepped_down(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("leadership changed") && l.contains("leader=false"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_writes_fail_steps_down_and_stops_writing() -> Result<()> {
    use sluice_e2e::apiserver::Fault;
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("skipped: fault injection needs the in-memory API server");
        return Ok(());
    };
    let ns = cluster.namespace("team-a").await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    // Four rounds of the operator's concurrent status writes, each slowed to 3 s below: the
    // batch outlasts the 6 s renew deadline.
    const ROUTES: usize = 4 * sluice::controller::routes::STATUS_WRITES_IN_FLIGHT;
    let route = |i: usize| format!("r{i}");
    for i in 0..ROUTES {
        cluster
            .apply(ingress_route(
                &ns,
                &route(i),
                None,
                route_spec(Some(&format!("r{i}.example.com")), "web"),
            ))
            .await?;
    }
    // A 9 s lease renewed every second; the renew deadline defaults to two thirds of the lease
    // (6 s): the leader steps down 6 s after its last successful renewal, 3 s before a follower
    // may take over.
    let start = |identity: &str| -> Result<Operator> {
        Ok(cluster
            .operator(identity)?
            .args([
                "--lease-duration-seconds",
                "9",
                "--lease-renew-seconds",
                "1",
            ])
            .start()?)
    };
    let mut alpha = start("alpha")?;
    eventually("alpha to hold the lease", async || {
        alpha.check_running()?;
        Ok(lease_holder(&cluster).await?.filter(|(h, _)| h == "alpha"))
    })
    .await?;
    for i in 0..ROUTES {
        wait_status(&cluster, &mut alpha, &ns, &route(i), "valid").await?;
    }
    // The leader reports when the Gateway's xDS client certificate expires.
    let gw = format!("{ns}/edge");
    let client_expiry = async |op: &Operator| -> Result<Option<f64>> {
        Ok(metric_value(
            &op.metrics().await?,
            "sluice_xds_certificate_expiry_timestamp_seconds",
            &[("certificate", "client"), ("gateway", &gw)],
        ))
    };
    eventually("alpha's client certificate expiry metric", async || {
        alpha.check_running()?;
        client_expiry(&alpha).await
    })
    .await?;
    let mut beta = start("beta")?;
    beta.wait_ready(PATIENCE).await?;

    let lease_writes = |user: &str, since: u64| -> Vec<(u64, u16)> {
        server
            .requests()
            .into_iter()
            .filter(|r| r.user == user && r.is_write() && r.path.contains("/leases/"))
            .filter(|r| r.seq >= since)
            .map(|r| (r.seq, r.code))
            .collect()
    };

    // 1. Alpha's lease writes fail for 2 s, well within the renew deadline: it keeps leading.
    let mark = server.requests_arrived();
    server.inject(
        Fault::writes("leases")
            .by("alpha")
            .failing_with(500)
            .lasting(Duration::from_secs(2)),
    );
    eventually("alpha to renew again after failed renewals", async || {
        alpha.check_running()?;
        let writes = lease_writes("alpha", mark);
        let failed = writes.iter().position(|(_, c)| *c == 500);
        Ok(failed.and_then(|f| writes[f..].iter().find(|(_, c)| *c == 200).copied()))
    })
    .await?;
    assert!(
        !stepped_down(&alpha.log()),
        "alpha stepped down on a transient error:\n{}",
        alpha.log()
    );
    assert_eq!(
        lease_holder(&cluster).await?.map(|(h, _)| h),
        Some("alpha".to_owned())
    );

    // 2. Alpha's status writes get slow, so that writing a batch of statuses takes longer than
    // the renew deadline; while it writes one, its lease writes start failing for good.
    server.inject(
        Fault::writes("ingressroutes/status")
            .by("alpha")
            .delayed(Duration::from_secs(3)),
    );
    let mark = server.requests_arrived();
    cluster.delete("v1", "Service", Some(&ns), "web").await?;
    let alpha_status_writes = |since: u64| -> Vec<String> {
        server
            .requests()
            .into_iter()
            .filter(|r| r.user == "alpha" && r.is_write() && r.seq >= since)
            .filter(|r| !r.path.contains("/leases/"))
            .map(|r| format!("#{} {} {} -> {}", r.seq, r.method, r.path, r.code))
            .collect()
    };
    eventually("alpha to start writing the new statuses", async || {
        alpha.check_running()?;
        Ok(alpha_status_writes(mark)
            .iter()
            .any(|w| w.contains("/ingressroutes/"))
            .then_some(()))
    })
    .await?;
    server.inject(Fault::writes("leases").by("alpha").failing_with(500));
    // Alpha steps down before the lease can expire for beta; from then on it writes nothing.
    eventually("alpha to step down", async || {
        alpha.check_running()?;
        Ok(stepped_down(&alpha.log()).then_some(()))
    })
    .await?;
    let stepped = server.requests_arrived();
    assert_eq!(
        lease_holder(&cluster).await?.map(|(h, _)| h),
        Some("alpha".to_owned()),
        "beta took over before alpha stepped down"
    );
    let (_, transitions) = eventually("beta to take the lease over", async || {
        beta.check_running()?;
        Ok(lease_holder(&cluster).await?.filter(|(h, _)| h == "beta"))
    })
    .await?;
    assert!(transitions >= 1, "leaseTransitions {transitions}");
    // Beta writes the statuses alpha did not get to.
    for i in 0..ROUTES {
        wait_status(&cluster, &mut beta, &ns, &route(i), "invalid").await?;
    }
    alpha.check_running()?;
    // Alpha stopped in the middle of the batch: beta wrote some of its statuses.
    assert!(
        server.requests().iter().any(|r| r.user == "beta"
            && r.method == "PATCH"
            && r.path.contains("/ingressroutes/")
            && r.code == 200),
        "beta wrote no status (alpha's writes: {:#?})",
        alpha_status_writes(mark)
    );
    assert_eq!(
        alpha_status_writes(stepped),
        Vec::<String>::new(),
        "alpha wrote after it stepped down (all its writes since the change: {:#?})",
        alpha_status_writes(mark)
    );
    // The client certificate's expiry is reported by the new leader only: alpha, which no
    // longer renews it, dropped its series rather than keep a notAfter that goes stale.
    eventually("beta's client certificate expiry metric", async || {
        beta.check_running()?;
        client_expiry(&beta).await
    })
    .await?;
    let alpha_metrics = alpha.metrics().await?;
    assert!(
        !alpha_metrics.contains("certificate=\"client\""),
        "alpha still reports client certificates after stepping down:\n{alpha_metrics}"
    );
    assert!(
        alpha_metrics.contains("certificate=\"ca\""),
        "{alpha_metrics}"
    );
    Ok(())
}

/// Watches answered 410 Gone while IngressRoutes and Endpoints change without pause: the operator
/// re-lists, and once the storm is over every route's status, the route gauges and the running
/// Envoy's routing are what the final objects say, with nothing created lost and nothing deleted
/// kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_gone_under_load_lose_nothing() -> Result<()> {
    use sluice_e2e::apiserver::Fault;
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("skipped: fault injection needs the in-memory API server");
        return Ok(());
    };
    const SERVICES: usize = 4;
    const ROUTES: usize = 18;
    let ns = cluster.namespace("storm").await?;
    let web = Backend::start("web").await?;
    let api = Backend::start("api").await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    // Which backend each Service's Endpoints point at, as the test last wrote it.
    let mut backend_of = ["web"; SERVICES];
    for s in 0..SERVICES {
        cluster.apply(service(&ns, &format!("s{s}"))).await?;
        cluster
            .apply(endpoints(&ns, &format!("s{s}"), web.port()))
            .await?;
    }
    let route = |i: usize, service: usize| {
        ingress_route(
            &ns,
            &format!("r{i}"),
            None,
            route_spec(Some(&format!("r{i}.example.com")), &format!("s{service}")),
        )
    };
    cluster.apply(route(0, 0)).await?;
    let mut op = cluster.operator("solo")?.start()?;
    let ports = op.ports();
    op.wait_ready(PATIENCE).await?;
    wait_status(&cluster, &mut op, &ns, "r0", "valid").await?;
    let bootstrap = provisioned_bootstrap(&cluster, &mut op, &ns, "edge").await?;
    let _envoy = Envoy::builder(bootstrap)
        .local_admin_socket()
        .start()
        .await?;

    // The storm: every watch of what the routes depend on ends at once with 410 Expired.
    let mark = server.requests_arrived();
    for resource in [
        "ingressroutes",
        "endpoints",
        "endpointslices",
        "services",
        "gateways",
    ] {
        server.inject(Fault::watches(resource).failing_with(410));
    }
    // Route i goes to Service i % SERVICES; every third route deletes the one before it, every
    // other one moves its Service's Endpoints to the other backend, and route 4 is re-pointed.
    let mut live = vec![0usize];
    let mut service_of = [0usize; ROUTES + 1];
    for i in 1..=ROUTES {
        service_of[i] = i % SERVICES;
        cluster.apply(route(i, service_of[i])).await?;
        live.push(i);
        if i % 3 == 0 {
            cluster
                .delete(
                    "contour.heptio.com/v1beta1",
                    "IngressRoute",
                    Some(&ns),
                    &format!("r{}", i - 1),
                )
                .await?;
            live.retain(|r| *r != i - 1);
        }
        if i % 2 == 0 {
            let s = i % SERVICES;
            let (name, port) = if backend_of[s] == "web" {
                ("api", api.port())
            } else {
                ("web", web.port())
            };
            backend_of[s] = name;
            cluster
                .apply(endpoints(&ns, &format!("s{s}"), port))
                .await?;
        }
        if i == 7 {
            service_of[4] = 3;
            cluster.apply(route(4, 3)).await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster
        .apply(ingress_route(
            &ns,
            "broken",
            None,
            route_spec(Some("broken.example.com"), "missing"),
        ))
        .await?;
    // The operator did re-list during the storm (the scenario happened), then the storm ends.
    eventually("re-lists of IngressRoutes during the storm", async || {
        let relists = server
            .requests()
            .iter()
            .filter(|r| {
                r.seq >= mark
                    && r.method == "GET"
                    && r.path.ends_with("/ingressroutes")
                    && !r.query.contains("watch=true")
            })
            .count();
        Ok((relists >= 2).then_some(()))
    })
    .await?;
    server.clear_faults();

    for i in &live {
        wait_status(&cluster, &mut op, &ns, &format!("r{i}"), "valid").await?;
    }
    wait_status(&cluster, &mut op, &ns, "broken", "invalid").await?;
    wait_route_metrics(
        &mut op,
        &format!("{ns}/edge"),
        (live.len() as f64, 1.0, 0.0),
    )
    .await?;
    for i in 0..=ROUTES {
        let host = format!("r{i}.example.com");
        if live.contains(&i) {
            let want = backend_of[service_of[i]];
            eventually(&format!("{host} to reach {want}"), async || {
                op.check_running()?;
                let resp = get(ports.envoy_http, &host, "/").await;
                Ok(resp.ok().and_then(|r| r.backend()).filter(|b| b == want))
            })
            .await?;
        } else {
            eventually(
                &format!("{host} (deleted) to be unknown to Envoy"),
                async || {
                    op.check_running()?;
                    let resp = get(ports.envoy_http, &host, "/").await;
                    Ok(resp.ok().filter(|r| r.status == 404))
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// The operator acts as its ServiceAccount, held to `config/rbac`: every request it makes
/// impersonates it and none is refused; a rule taken out of the ClusterRole shows as 403s on
/// exactly what it granted, and the operator keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_as_its_service_account_under_config_rbac() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-a").await?;
    cluster.apply(gateway(&ns, "edge", json!({}))).await?;
    cluster.apply(service(&ns, "web")).await?;
    cluster
        .apply(ingress_route(
            &ns,
            "app",
            None,
            route_spec(Some("app.example.com"), "web"),
        ))
        .await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    wait_status(&cluster, &mut op, &ns, "app", "valid").await?;
    let Some(server) = cluster.memory() else {
        eprintln!(
            "the request log needs the in-memory API server: RBAC was exercised, not inspected"
        );
        return Ok(());
    };
    let ours: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.user == "solo")
        .collect();
    ensure!(!ours.is_empty(), "no request from the operator");
    for r in &ours {
        ensure!(r.impersonated == OPERATOR_USER, "not impersonated: {r:?}");
        ensure!(r.code != 403, "refused by config/rbac: {r:?}");
    }

    // Without the rule for IngressRoute statuses, their writes are refused.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rbac/cluster_role.yaml"),
    )?;
    let mut role: Value = serde_norway::from_str(&text)?;
    role["rules"]
        .as_array_mut()
        .context("rules")?
        .retain(|r| r["resources"] != json!(["ingressroutes/status"]));
    cluster.apply(role).await?;
    let mark = server.requests_arrived();
    cluster
        .apply(ingress_route(&ns, "app", None, route_spec(None, "web")))
        .await?;
    eventually("a refused IngressRoute status write", async || {
        op.check_running()?;
        Ok(server.requests().into_iter().find(|r| {
            r.seq >= mark && r.code == 403 && r.path.ends_with("/ingressroutes/app/status")
        }))
    })
    .await?;
    assert_eq!(
        route_status(&cluster, &ns, "app").await?.map(|s| s.0),
        Some("valid".to_owned()),
        "the refused write changed nothing"
    );
    op.check_running()?;
    Ok(())
}

/// Whether every field of `want` is in `got` with the same value (objects: `got` may have more
/// keys, the API server's; arrays: same length, element by element).
fn contained_in(want: &Value, got: &Value, path: &str, diffs: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                match g.get(k) {
                    Some(gv) => contained_in(v, gv, &format!("{path}.{k}"), diffs),
                    None => diffs.push(format!("{path}.{k}: missing")),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                contained_in(wv, gv, &format!("{path}[{i}]"), diffs);
            }
        }
        _ if want == got => {}
        _ => diffs.push(format!("{path}: printed {want}, applied {got}")),
    }
}

/// `sluice render --provision`, run offline on the Gateway's manifest with the operator's flags,
/// prints the objects the operator applied: every printed field is in the applied object with
/// the same value, and the only object the operator made beyond them is the one the output
/// says is left out (the xDS client Secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_provision_prints_what_the_operator_applies() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let ns = cluster.namespace("team-a").await?;
    let flags = [
        "--image-registry=mirror.example.com",
        "--envoy-image-pull-secrets=mirror-a",
    ];
    let mut op = cluster.operator("solo")?.args(flags).start()?;
    op.wait_ready(PATIENCE).await?;
    let spec = json!({"envoy": {"logLevel": "debug"}, "rollout": {"drainSeconds": 30}});
    let gw = cluster.apply(gateway(&ns, "edge", spec)).await?;
    eventually("the DaemonSet edge-envoy", async || {
        op.check_running()?;
        let ds = cluster
            .get("apps/v1", "DaemonSet", Some(&ns), "edge-envoy")
            .await?;
        // Complete once the client-credentials hash is there (the last thing applied).
        Ok(ds.filter(|d| {
            d["spec"]["template"]["metadata"]["annotations"]["sluice.dev/xds-client-hash"]
                .is_string()
        }))
    })
    .await?;

    // The manifest a GitOps repository would hold: the Gateway with the uid it got here, so the
    // owner references compare too.
    let dir = cluster.dir.path().join("render-provision");
    std::fs::create_dir_all(&dir)?;
    let manifest = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": ns, "uid": gw["metadata"]["uid"]},
        "spec": gw["spec"],
    });
    std::fs::write(
        dir.join("gateway.yaml"),
        serde_norway::to_string(&manifest)?,
    )?;
    let ports = op.ports();
    let out = tokio::process::Command::new(sluice_e2e::sluice::sluice_binary()?)
        .args(["render", "--provision", "--manifests"])
        .arg(&dir)
        .args(flags)
        .arg(format!("--xds-service-address=127.0.0.1:{}", ports.xds))
        .arg(format!("--envoy-http-port={}", ports.envoy_http))
        .arg(format!("--envoy-https-port={}", ports.envoy_https))
        .arg(format!("--envoy-stats-port={}", ports.envoy_stats))
        .output()
        .await?;
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(
        out.status.success(),
        "render --provision: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<Value> = serde_norway::Deserializer::from_str(&stdout)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).map_err(anyhow::Error::from))
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect::<Result<_>>()?;
    let kinds: Vec<&str> = printed
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "ConfigMap", "DaemonSet", "Service"]
    );
    let secret = format!("Left out: Secret {ns}/edge-xds-client");
    assert!(stdout.contains(&secret), "{stdout}");

    let mut diffs = Vec::new();
    for obj in &printed {
        let (api_version, kind) = (
            obj["apiVersion"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
        );
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let applied = cluster
            .get(api_version, kind, Some(&ns), name)
            .await?
            .with_context(|| format!("the operator made no {kind} {name}"))?;
        contained_in(obj, &applied, &format!("{kind} {name}"), &mut diffs);
    }
    assert!(diffs.is_empty(), "{diffs:#?}");

    // Nothing else carries the Gateway's label but the Secret the output names.
    if let Some(server) = cluster.memory() {
        let mut made: Vec<String> = Vec::new();
        for (api_version, kind) in [
            ("v1", "ServiceAccount"),
            ("v1", "ConfigMap"),
            ("apps/v1", "DaemonSet"),
            ("v1", "Service"),
            ("v1", "Secret"),
        ] {
            for o in server.list(api_version, kind, Some(&ns)) {
                if o["metadata"]["labels"]["sluice.dev/gateway"] == "edge" {
                    made.push(format!(
                        "{kind} {}",
                        o["metadata"]["name"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        made.sort();
        assert_eq!(
            made,
            [
                "ConfigMap edge-envoy-bootstrap",
                "DaemonSet edge-envoy",
                "Secret edge-xds-client",
                "Service edge-envoy",
                "ServiceAccount edge-envoy"
            ]
        );
    }
    op.check_running()?;
    Ok(())
}

/// With `--watch-namespaces`, nothing outside the listed namespaces is read: the operator's
/// requests name only them and its own namespace (and the CRDs it checks by name), a Gateway
/// and an IngressRoute elsewhere are left alone, and a Gateway whose roots reach outside is
/// reported in the log and in its `Degraded` condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespaces_reads_nothing_elsewhere() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let (a, b, c) = (
        cluster.namespace("watched-a").await?,
        cluster.namespace("watched-b").await?,
        cluster.namespace("outside-c").await?,
    );
    // Objects in every namespace, the unwatched one included, before the operator starts.
    let roots = json!({"rootNamespaces": [&a, &c]});
    cluster.apply(gateway(&a, "edge", roots)).await?;
    cluster.apply(gateway(&c, "hidden", json!({}))).await?;
    for ns in [&a, &c] {
        cluster.apply(service(ns, "web")).await?;
        cluster
            .apply(ingress_route(
                ns,
                "app",
                None,
                route_spec(Some(&format!("{ns}.example.com")), "web"),
            ))
            .await?;
        cluster
            .apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "namespace": ns},
                "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}))
            .await?;
    }
    let mut op = cluster
        .operator("solo")?
        .arg(format!("--watch-namespaces={a},{b}"))
        .start()?;
    op.wait_ready(PATIENCE).await?;

    // Watched: the Gateway is provisioned and its IngressRoute judged.
    eventually("the DaemonSet edge-envoy", async || {
        op.check_running()?;
        cluster
            .get("apps/v1", "DaemonSet", Some(&a), "edge-envoy")
            .await
    })
    .await?;
    wait_status(&cluster, &mut op, &a, "app", "valid").await?;
    let warning = eventually("the warning about roots outside", async || {
        op.check_running()?;
        Ok(op
            .log()
            .lines()
            .find(|l| l.contains("rootNamespaces reach namespaces the operator does not watch"))
            .map(str::to_owned))
    })
    .await?;
    assert!(
        warning.contains(&c) && warning.contains(&format!("{a}/edge")),
        "{warning}"
    );
    // ...and on the Gateway's status, until its roots are all watched.
    let (_, _, message) = wait_degraded(
        &cluster,
        &mut op,
        &a,
        "edge",
        "Degraded for its unwatched roots",
        |(s, r, _)| s == "True" && r == "RootNamespacesNotWatched",
    )
    .await?;
    assert!(message.contains(&c) && !message.contains(&b), "{message}");
    cluster
        .apply(gateway(&a, "edge", json!({"rootNamespaces": [&a, &b]})))
        .await?;
    wait_degraded(
        &cluster,
        &mut op,
        &a,
        "edge",
        "no longer Degraded for its roots",
        |(_, r, _)| r != "RootNamespacesNotWatched",
    )
    .await?;

    // Not watched: left alone (checked after the watched side settled).
    assert!(
        cluster
            .get("apps/v1", "DaemonSet", Some(&c), "hidden-envoy")
            .await?
            .is_none(),
        "a Gateway outside the watched namespaces was provisioned"
    );
    assert_eq!(route_status(&cluster, &c, "app").await?, None);

    let Some(server) = cluster.memory() else {
        return Ok(());
    };
    let allowed = [a.as_str(), b.as_str(), OPERATOR_NAMESPACE];
    let mut outside: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.user == op.identity())
        .filter(|r| {
            match r.path.split_once("/namespaces/") {
                Some((_, rest)) => !allowed.contains(&rest.split('/').next().unwrap_or_default()),
                // Cluster-scoped: only the CRDs it checks by name, and discovery (of a group
                // version too: Traefik's, `/apis/traefik.io/v1alpha1`).
                None => {
                    let discovery = r.path.strip_prefix("/apis/").is_some_and(|gv| {
                        gv.split('/').count() == 2 && !gv.contains("/namespaces")
                    });
                    !(r.path.contains("/customresourcedefinitions/")
                        || r.path == "/api"
                        || r.path == "/apis"
                        || discovery)
                }
            }
        })
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect();
    outside.sort();
    outside.dedup();
    assert!(
        outside.is_empty(),
        "requests outside the watched namespaces: {outside:#?}"
    );
    op.check_running()?;
    Ok(())
}
