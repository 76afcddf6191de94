//! The shipped dashboard and alerts against real metrics: a real Prometheus server (Debian's
//! `prometheus` package, `make setup`) scrapes a running `sluice standalone` (its real Envoy,
//! with traffic to a real backend, 2xx and 5xx) and `sluice run` (against the in-memory API
//! server, with two Gateways, one of them blocked by an object it does not own, an xDS stream
//! that NACKs once and a refused stream). Then every expression of
//! `config/monitoring/sluice-dashboard.json` and every alert expression of
//! `config/monitoring/prometheusrule.yaml` must return data through Prometheus' HTTP API.
//!
//! Dashboard variables are substituted (`$__rate_interval` → `1m`, `$gateway` → `.*`). An alert
//! expression is evaluated without its threshold: the left-hand side of its top-level
//! comparison (`x > 0` → `x`), since a healthy system fires none of them. The Envoy target is
//! relabelled with the PodMonitor's own relabelings (read from podmonitor-envoy.yaml), from
//! the pod labels a provisioned Envoy pod has, so the `gateway` label is made as in a cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_e2e::apiserver::ApiServer;
use sluice_e2e::backend::Backend;
use sluice_e2e::client::{Request, get};
use sluice_e2e::manifests::{Manifests, service};
use sluice_e2e::process::ChildProcess;
use sluice_e2e::sluice::{OPERATOR_NAMESPACE, Operator, Standalone};
use sluice_e2e::{POLL_INTERVAL, TempDir, free_port, temp_dir};

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// What the dashboard's variables become here.
const VARIABLES: [(&str, &str); 2] = [("$__rate_interval", "1m"), ("$gateway", ".*")];

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/monitoring")
}

// ---------------------------------------------------------------------------------------------
// Expressions of the dashboard and the alerts.

fn dashboard_exprs() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(monitoring_dir().join("sluice-dashboard.json"))?;
    let dashboard: Value = serde_json::from_str(&text)?;
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().context("no panels")? {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let mut expr = target["expr"]
                .as_str()
                .context("a target without expr")?
                .to_owned();
            for (var, value) in VARIABLES {
                expr = expr.replace(var, value);
            }
            ensure!(!expr.contains('$'), "unknown variable in {expr}");
            exprs.push(expr);
        }
    }
    Ok(exprs)
}

/// (alert name, expression) of every alert.
fn alert_exprs() -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(monitoring_dir().join("prometheusrule.yaml"))?;
    let rule: Value = serde_norway::from_str(&text)?;
    let mut out = Vec::new();
    for group in rule["spec"]["groups"].as_array().context("no groups")? {
        for r in group["rules"].as_array().context("no rules")? {
            if let Some(alert) = r["alert"].as_str() {
                let expr = r["expr"].as_str().context("an alert without expr")?;
                out.push((alert.to_owned(), expr.to_owned()));
            }
        }
    }
    Ok(out)
}

/// The left-hand side of `expr`'s top-level comparison (outside parentheses, brackets, braces
/// and strings) when the right-hand side is a constant; `expr` itself when it has none.
fn without_threshold(expr: &str) -> String {
    let bytes = expr.as_bytes();
    let (mut depth, mut quoted) = (0i32, false);
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            _ if quoted => {}
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'>' | b'<' | b'=' | b'!' if depth == 0 => {
                let next = bytes.get(i + 1).copied();
                let op_len = if next == Some(b'=') { 2 } else { 1 };
                if (c == b'=' || c == b'!') && op_len == 1 {
                    continue;
                }
                let rhs = &expr[i + op_len..];
                if rhs
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || " .*+-/e".contains(ch))
                {
                    return expr[..i].trim().to_owned();
                }
            }
            _ => {}
        }
    }
    expr.trim().to_owned()
}

#[test]
fn thresholds_are_cut_at_the_top_level_only() {
    let cases = [
        (
            "sum by (a) (increase(x[10m])) > 0",
            "sum by (a) (increase(x[10m]))",
        ),
        ("min(x) - time() < 14 * 86400", "min(x) - time()"),
        (
            r#"up{job="sluice-envoy"} == 0"#,
            r#"up{job="sluice-envoy"}"#,
        ),
        (
            r#"max(c{type="a>b", s!="T"}) >= 1"#,
            r#"max(c{type="a>b", s!="T"})"#,
        ),
        ("rate(x[5m])", "rate(x[5m])"),
        ("a > b", "a > b"),
    ];
    for (expr, want) in cases {
        assert_eq!(without_threshold(expr), want, "{expr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus.

struct Prometheus {
    process: ChildProcess,
    port: u16,
    _dir: TempDir,
}

fn prometheus_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_PROMETHEUS") {
        return Ok(path.into());
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file())
        .context(
            "prometheus not found on PATH: run `make setup` (installs Debian's prometheus \
             package), or set SLUICE_PROMETHEUS",
        )
}

impl Prometheus {
    /// Starts Prometheus with `config` on a free port of 127.0.0.1. Prometheus cannot listen
    /// on port 0 and report it, so a port found free is tried, and another on a collision.
    async fn start(config: &Value) -> Result<Prometheus> {
        let binary = prometheus_binary()?;
        let dir = temp_dir()?;
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, serde_json::to_string_pretty(config)?)?;
        for attempt in 0..5 {
            let port = free_port()?;
            let mut command = std::process::Command::new(&binary);
            command
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .current_dir(dir.path());
            let log = dir.path().join(format!("prometheus-{attempt}.log"));
            let mut process = ChildProcess::spawn("prometheus", command, &log)?;
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                if !process.is_running() {
                    let tail = process.log_tail(20);
                    if tail.contains("address already in use") {
                        break;
                    }
                    bail!("prometheus exited:\n{tail}");
                }
                let ready = Request::get("127.0.0.1", "/-/ready").send(port).await;
                if ready.is_ok_and(|r| r.status == 200) {
                    return Ok(Prometheus {
                        process,
                        port,
                        _dir: dir,
                    });
                }
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "prometheus not ready:\n{}",
                    process.log_tail(20)
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        bail!("no free port for prometheus after 5 attempts")
    }

    /// The samples of an instant query.
    async fn query(&mut self, expr: &str) -> Result<Vec<Value>> {
        self.process.check_running()?;
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let resp = Request::get("127.0.0.1", &path).send(self.port).await?;
        let body: Value = resp.json()?;
        ensure!(body["status"] == "success", "{expr}: {body}");
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Polls until `expr` returns a sample with a number (not NaN), and returns the samples.
    async fn wait_data(&mut self, expr: &str) -> Result<Vec<Value>> {
        let mut last = Vec::new();
        let what = format!("data for {expr}");
        let found = sluice_e2e::eventually(&what, PATIENCE, async || {
            last = self.query(expr).await?;
            let numbers = last.iter().any(|s| {
                s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| !v.is_nan())
            });
            Ok(numbers.then(|| last.clone()))
        })
        .await;
        found.with_context(|| format!("last samples: {last:?}"))
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The PodMonitor's relabelings, in Prometheus' own configuration syntax.
fn pod_monitor_relabelings() -> Result<Value> {
    let text = std::fs::read_to_string(monitoring_dir().join("podmonitor-envoy.yaml"))?;
    let pm: Value = serde_norway::from_str(&text)?;
    let relabelings = pm["spec"]["podMetricsEndpoints"][0]["relabelings"]
        .as_array()
        .context("the PodMonitor has no relabelings")?;
    let snake = |key: &str| match key {
        "sourceLabels" => "source_labels".to_owned(),
        "targetLabel" => "target_label".to_owned(),
        other => other.to_owned(),
    };
    Ok(Value::Array(
        relabelings
            .iter()
            .map(|r| {
                let map = r.as_object().into_iter().flatten();
                Value::Object(map.map(|(k, v)| (snake(k), v.clone())).collect())
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------------------------------------
// The operator's side: in-memory API server, Gateways, xDS clients.

async fn apply(client: &kube::Client, obj: Value) -> Result<()> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let (resource, _) =
        kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, &kind))
            .await
            .with_context(|| format!("discovering {api_version} {kind}"))?;
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name,
        &PatchParams::apply("sluice-e2e").force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

fn ingress_route(ns: &str, name: &str, fqdn: &str) -> Value {
    json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"virtualhost": {"fqdn": fqdn},
                    "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]}})
}

/// A Gateway's xDS client credentials (PEM: CA, certificate, key), from the Secret the
/// operator issued.
async fn client_credentials(client: &kube::Client, ns: &str, gateway: &str) -> Result<[String; 3]> {
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let name = format!("{gateway}-xds-client");
    let what = format!("Secret {ns}/{name}");
    let data = sluice_e2e::eventually(&what, PATIENCE, async || {
        Ok(api.get_opt(&name).await?.and_then(|s| s.data))
    })
    .await?;
    let field = |key: &str| -> Result<String> {
        let bytes = data
            .get(key)
            .with_context(|| format!("{name} has no {key}"))?;
        Ok(String::from_utf8(bytes.0.clone())?)
    };
    Ok([field("ca.crt")?, field("tls.crt")?, field("tls.key")?])
}

type AdsSender =
    tokio::sync::mpsc::Sender<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>;
type AdsStream =
    tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>;

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const SCOPED_ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration";
/// The shared plain-HTTP route configuration, served when a Gateway's hosts cannot be scoped.
const HTTP_ROUTES: &str = "ingress_http";

/// Opens an ADS stream to `xds` as an Envoy of `instance`, asking for every Listener, every
/// plain-HTTP scope (a host's change of name reaches them) and the shared plain-HTTP route
/// configuration.
async fn ads(xds: &str, creds: &[String; 3], instance: &str) -> Result<(AdsSender, AdsStream)> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let [ca, cert, key] = creds;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .domain_name("sluice-xds");
    let channel = tonic::transport::Channel::from_shared(format!("https://{xds}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel(5);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "e2e-monitoring".into(),
            cluster: instance.into(),
            ..Node::default()
        }),
        type_url: LISTENER.into(),
        ..DiscoveryRequest::default()
    })
    .await?;
    tx.send(DiscoveryRequest {
        type_url: SCOPED_ROUTE.into(),
        ..DiscoveryRequest::default()
    })
    .await?;
    tx.send(DiscoveryRequest {
        type_url: ROUTE.into(),
        resource_names: vec![HTTP_ROUTES.into()],
        ..DiscoveryRequest::default()
    })
    .await?;
    let inbound = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, inbound))
}

/// Plays an Envoy that rejects the first configuration it gets and accepts every later one.
async fn nack_once_then_ack(tx: AdsSender, mut inbound: AdsStream) -> Result<()> {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    let mut first = true;
    while let Some(resp) = inbound.message().await? {
        let error_detail = first.then(|| envoy_types::pb::google::rpc::Status {
            code: 3,
            message: "e2e: rejected on purpose".into(),
            ..Default::default()
        });
        let version_info = if first {
            String::new()
        } else {
            resp.version_info
        };
        first = false;
        let resource_names = if resp.type_url == ROUTE {
            vec![HTTP_ROUTES.into()]
        } else {
            Vec::new()
        };
        tx.send(DiscoveryRequest {
            type_url: resp.type_url,
            resource_names,
            version_info,
            response_nonce: resp.nonce,
            error_detail,
            ..DiscoveryRequest::default()
        })
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_expression_returns_data() -> Result<()> {
    // sluice standalone, its Envoy routing to a real backend.
    let backend = Backend::start("web").await?;
    let manifests = Manifests::new()?;
    manifests.write(
        "services.yaml",
        &service("default", "web", 80, &[backend.port()]),
    )?;
    manifests.write(
        "routes.yaml",
        &serde_json::to_string(&ingress_route("default", "web", "web.example.com"))?,
    )?;
    let mut standalone = Standalone::start(manifests.path())?;
    let envoy = standalone.default_instance(PATIENCE).await?;

    // sluice run: Gateway shop/edge, and shop/blocked whose Service name is taken.
    let server = ApiServer::start()?;
    let dir = temp_dir()?;
    let kubeconfig = server.write_kubeconfig_for(dir.path(), "monitoring")?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?,
    )?;
    for ns in [OPERATOR_NAMESPACE, "shop"] {
        apply(
            &client,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    for doc in serde_norway::Deserializer::from_str(&sluice::api::crds_yaml()?) {
        apply(&client, serde::Deserialize::deserialize(doc)?).await?;
    }
    let svc = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "shop", "name": name},
               "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
    };
    apply(&client, svc("web")).await?;
    apply(&client, svc("blocked-envoy")).await?;
    let mut op = Operator::builder(&kubeconfig)
        .identity("solo")
        .arg("--debounce-ms")
        .arg("50")
        .start()?;
    op.wait_ready(PATIENCE).await?;
    for name in ["edge", "blocked"] {
        apply(
            &client,
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                              "metadata": {"namespace": "shop", "name": name}, "spec": {}}),
        )
        .await?;
    }
    apply(&client, ingress_route("shop", "shop", "shop.example.com")).await?;
    let creds = client_credentials(&client, "shop", "edge").await?;

    // Prometheus scrapes both; the Envoy target carries the pod labels a provisioned Envoy pod
    // of Gateway sluice-system/default would have, relabelled as the PodMonitor does.
    let config = json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "sluice-operator",
             "static_configs": [{"targets": [format!("127.0.0.1:{}", op.ports().http)]}]},
            {"job_name": "envoy-pods", "metrics_path": "/stats/prometheus",
             "static_configs": [{"targets": [format!("127.0.0.1:{}", envoy.stats)],
                                 "labels": {"__meta_kubernetes_namespace": "sluice-system",
                                            "__meta_kubernetes_pod_label_sluice_dev_gateway": "default",
                                            "namespace": "sluice-system", "pod": "default-envoy-e2e"}}],
             "relabel_configs": pod_monitor_relabelings()?}
        ]
    });
    let mut prometheus = Prometheus::start(&config).await?;
    for job in ["sluice-operator", "sluice-envoy"] {
        prometheus
            .wait_data(&format!(r#"up{{job="{job}"}} == 1"#))
            .await?;
    }
    let envoy_up = prometheus.query(r#"up{job="sluice-envoy"}"#).await?;
    assert_eq!(
        envoy_up[0]["metric"]["gateway"], "sluice-system/default",
        "{envoy_up:?}"
    );

    // Activity while Prometheus watches: an xDS stream that NACKs once, a refused stream, a
    // route change (rebuilds), requests answered 200 and 503.
    let (tx, inbound) = ads(&op.xds_address(), &creds, "shop/edge").await?;
    let envoy_task = tokio::spawn(nack_once_then_ack(tx, inbound));
    let refused = match ads(&op.xds_address(), &creds, "shop/blocked").await {
        Ok((_tx, mut inbound)) => inbound.message().await.err(),
        Err(e) => Some(tonic::Status::unknown(e.to_string())),
    };
    ensure!(refused.is_some(), "a stream as another Gateway was served");
    apply(&client, ingress_route("shop", "more", "more.example.com")).await?;
    // Pushes keep coming while the expressions are checked (a rate over a window needs an
    // increase inside it): the route's host changes every two seconds.
    let churn = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let host = format!("more-{}.example.com", i % 2);
                let _ = apply(&client, ingress_route("shop", "more", &host)).await;
            }
        })
    };
    for _ in 0..10 {
        let resp = sluice_e2e::wait_for("web.example.com answers", PATIENCE, async || {
            get(envoy.http, "web.example.com", "/")
                .await
                .ok()
                .filter(|r| r.status == 200)
        })
        .await?;
        assert_eq!(resp.backend().as_deref(), Some("web"));
    }
    backend.control().fail_next(3, 503);
    for _ in 0..3 {
        assert_eq!(get(envoy.http, "web.example.com", "/").await?.status, 503);
    }

    let mut checked = Vec::new();
    for expr in dashboard_exprs()? {
        prometheus.wait_data(&expr).await?;
        checked.push(expr);
    }
    for (alert, expr) in alert_exprs()? {
        let inner = without_threshold(&expr);
        ensure!(inner != expr, "{alert}: no threshold found in {expr}");
        prometheus
            .wait_data(&inner)
            .await
            .with_context(|| format!("alert {alert}"))?;
        checked.push(inner);
    }
    assert!(checked.len() > 20, "{checked:#?}");
    churn.abort();
    // The NACK and the blocked Gateway are there, by Gateway.
    let nacks = prometheus
        .wait_data(r#"sluice_xds_nacks_total{gateway="shop/edge"} > 0"#)
        .await?;
    assert_eq!(nacks.len(), 1, "{nacks:?}");
    prometheus
        .wait_data(r#"sluice_gateway_condition{gateway="shop/blocked", type="Degraded", status="True"} == 1"#)
        .await?;
    ensure!(
        !envoy_task.is_finished(),
        "the xDS stream ended: {:?}",
        envoy_task.await
    );
    envoy_task.abort();

    // A deleted Gateway's series go: its conditions and its client certificate's expiry.
    let series = [
        r#"sluice_gateway_condition{gateway="shop/edge""#,
        r#"sluice_xds_certificate_expiry_timestamp_seconds{certificate="client",gateway="shop/edge"}"#,
    ];
    let before = op.metrics().await?;
    for s in series {
        ensure!(before.contains(s), "{s} is not exported:\n{before}");
    }
    let gateways: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &kube::discovery::pinned_kind(
            &client,
            &GroupVersionKind::gvk("sluice.dev", "v1alpha1", "Gateway"),
        )
        .await?
        .0,
    );
    gateways.delete("edge", &Default::default()).await?;
    sluice_e2e::try_wait_for("shop/edge's series to go", PATIENCE, async || {
        op.check_running()?;
        let now = op.metrics().await?;
        Ok(series.iter().all(|s| !now.contains(s)).then_some(()))
    })
    .await?;
    op.check_running()?;
    standalone.check_running()?;
    Ok(())
}
