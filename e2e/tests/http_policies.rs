//! Route and upstream policies through `sluice standalone` and a real Envoy, observed the way a
//! user would: request timeouts, retries, load-balancing strategies (including cookie session
//! affinity), active health checks, and live edits that must not fail a single request nor
//! restart Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use sluice_e2e::backend::Backend;
use sluice_e2e::client::{Connection, Request, Response, get};
use sluice_e2e::manifests::{Manifests, service};
use sluice_e2e::sluice::{InstancePorts, Standalone};
use sluice_e2e::{try_wait_for, wait_until};
use tokio::task::JoinHandle;

/// Bound on each wait for configuration to reach Envoy; only a broken test waits this long.
const WAIT: Duration = Duration::from_secs(30);

/// The cookie Envoy generates for `strategy: Cookie`.
const AFFINITY_COOKIE: &str = "X-Contour-Session-Affinity";

/// An IngressRoute `default/name` for `fqdn` with `routes` (YAML list items, indented by two).
fn ingress_route(name: &str, fqdn: &str, routes: &str) -> String {
    format!(
        "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  virtualhost: {{fqdn: {fqdn}}}\n  routes:\n{routes}"
    )
}

/// A manifest directory served by `sluice standalone` with the default instance's Envoy.
struct Stack {
    // Dropped first: sluice stops its Envoy before the manifests go away.
    sluice: Standalone,
    ports: InstancePorts,
    dir: Manifests,
}

impl Stack {
    async fn start(files: &[(&str, String)]) -> Stack {
        Stack::start_with(files, &[]).await
    }

    /// Like [`Stack::start`], with extra `sluice standalone` arguments.
    async fn start_with(files: &[(&str, String)], args: &[&str]) -> Stack {
        let dir = Manifests::new().unwrap();
        for (name, yaml) in files {
            dir.write(name, yaml).unwrap();
        }
        let mut builder = Standalone::builder(dir.path());
        for arg in args {
            builder = builder.arg(arg);
        }
        let mut sluice = builder.start().unwrap();
        let ports = sluice.default_instance(WAIT).await.unwrap();
        Stack { sluice, ports, dir }
    }

    /// Polls `GET http://host/path` until `accept` takes the response, and returns it. A crash
    /// of sluice ends the wait at once with its log.
    async fn wait_response(
        &mut self,
        host: &str,
        path: &str,
        what: &str,
        accept: impl Fn(&Response) -> bool,
    ) -> Response {
        let port = self.ports.http;
        let sluice = &mut self.sluice;
        try_wait_for(&format!("{host}{path}: {what}"), WAIT, async || {
            sluice.check_running()?;
            Ok(get(port, host, path).await.ok().filter(|r| accept(r)))
        })
        .await
        .unwrap()
    }

    /// Waits until `host/path` answers 200 from backend `backend`.
    async fn wait_backend(&mut self, host: &str, path: &str, backend: &str) {
        let what = format!("200 from {backend}");
        self.wait_response(host, path, &what, |r| {
            r.status == 200 && r.backend().as_deref() == Some(backend)
        })
        .await;
    }

    /// GET `path` on Envoy's admin interface, as JSON.
    async fn admin_json(&self, path: &str) -> Value {
        let resp = Request::get("localhost", path)
            .send_unix(&self.ports.admin_socket)
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "admin {path}: {}", resp.text());
        resp.json().unwrap()
    }

    /// `sluice render` on the same manifests, as JSON.
    async fn render(&self) -> Value {
        let dir = self.dir.path().to_str().unwrap();
        let out = sluice_e2e::sluice::run(&["render", "--manifests", dir, "-o", "json"])
            .await
            .unwrap();
        serde_json::from_str(&out).unwrap()
    }
}

/// The routes (Envoy JSON) of virtual host `fqdn` on plain HTTP (route configuration
/// `http/<fqdn>`, or the shared `ingress_http`), by prefix, from `routes` (a list of route
/// configurations).
fn routes_of(route_configs: &[Value], fqdn: &str) -> BTreeMap<String, Value> {
    let scoped = format!("http/{fqdn}");
    let config = route_configs
        .iter()
        .find(|c| c["name"] == scoped.as_str() || c["name"] == "ingress_http")
        .unwrap_or_else(|| panic!("no {scoped} nor ingress_http in {route_configs:?}"));
    let vhost = config["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == fqdn)
        .unwrap_or_else(|| panic!("no virtual host {fqdn} in {config}"));
    vhost["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["match"]["prefix"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// Sends `n` requests, each over a fresh connection, and counts answers by backend.
async fn spread(port: u16, host: &str, path: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let resp = get(port, host, path).await.unwrap();
        assert_eq!(resp.status, 200, "{host}{path}: {}", resp.text());
        *seen.entry(resp.backend().unwrap()).or_default() += 1;
    }
    seen
}

/// Sends fresh-connection requests until every backend in `expected` has answered, at most
/// `limit` of them; returns the counts. With two equally likely endpoints the chance that 200
/// requests all reach one is 2^-199.
async fn reaches_all(
    port: u16,
    host: &str,
    path: &str,
    expected: &[&str],
    limit: usize,
) -> BTreeMap<String, usize> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..limit {
        let resp = get(port, host, path).await.unwrap();
        assert_eq!(resp.status, 200, "{host}{path}: {}", resp.text());
        *seen.entry(resp.backend().unwrap()).or_default() += 1;
        if expected.iter().all(|b| seen.contains_key(*b)) {
            return seen;
        }
    }
    panic!("{host}{path}: {limit} requests did not reach all of {expected:?}: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_answers_504_and_infinity_or_zero_disable_it() {
    let slow = Backend::start("slow").await.unwrap();
    let routes = "
  - match: /limited
    timeoutPolicy: {request: 1s}
    services: [{name: slow, port: 80}]
  - match: /infinity
    timeoutPolicy: {request: infinity}
    services: [{name: slow, port: 80}]
  - match: /zero
    timeoutPolicy: {request: 0s}
    services: [{name: slow, port: 80}]
  - match: /default
    services: [{name: slow, port: 80}]
";
    let mut stack = Stack::start(&[
        ("svc.yaml", service("default", "slow", 80, &[slow.port()])),
        (
            "route.yaml",
            ingress_route("timeouts", "timeout.example.com", routes),
        ),
    ])
    .await;
    for path in ["/limited", "/infinity", "/zero", "/default"] {
        stack
            .wait_backend("timeout.example.com", path, "slow")
            .await;
    }

    // Every answer now takes 2 s: more than the 1 s limit, less than Envoy's 15 s default.
    slow.control().set_delay(Duration::from_secs(2));
    let port = stack.ports.http;
    let send = |path: &'static str| {
        tokio::spawn(async move {
            get(port, "timeout.example.com", path)
                .await
                .map(|r| (r.status, r.backend(), r.text()))
                .unwrap()
        })
    };
    let pending: Vec<_> = ["/limited", "/infinity", "/zero", "/default"]
        .into_iter()
        .map(|p| (p, send(p)))
        .collect();
    let mut answers = BTreeMap::new();
    for (path, task) in pending {
        answers.insert(path, task.await.unwrap());
    }
    let (status, backend, body) = &answers["/limited"];
    assert_eq!(
        (*status, backend.as_deref()),
        (504, None),
        "Envoy, not the backend, ends the request: {body}"
    );
    assert!(body.contains("upstream request timeout"), "{body}");
    for path in ["/infinity", "/zero", "/default"] {
        let (status, backend, body) = &answers[path];
        assert_eq!(
            (*status, backend.as_deref()),
            (200, Some("slow")),
            "{path}: {body}"
        );
    }

    // What `sluice render` prints for these manifests is what Envoy enforced.
    let rendered = stack.render().await;
    let gateway = &rendered["gateways"][0];
    assert_eq!(gateway["ingressRoutes"][0]["currentStatus"], "valid");
    let routes = routes_of(
        gateway["xds"]["routes"].as_array().unwrap(),
        "timeout.example.com",
    );
    let timeout = |p: &str| routes[p]["route"]["timeout"].clone();
    assert_eq!(timeout("/limited"), "1s");
    assert_eq!(timeout("/infinity"), "0s");
    assert_eq!(timeout("/zero"), "0s");
    assert_eq!(timeout("/default"), Value::Null);
    stack.sluice.check_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_policy_hides_one_failure() {
    let retried = Backend::start("retried").await.unwrap();
    let plain = Backend::start("plain").await.unwrap();
    let routes = "
  - match: /retry
    retryPolicy: {count: 1}
    services: [{name: retried, port: 80}]
  - match: /plain
    services: [{name: plain, port: 80}]
";
    let mut stack = Stack::start(&[
        (
            "svc.yaml",
            service("default", "retried", 80, &[retried.port()])
                + &service("default", "plain", 80, &[plain.port()]),
        ),
        (
            "route.yaml",
            ingress_route("retries", "retry.example.com", routes),
        ),
    ])
    .await;
    stack
        .wait_backend("retry.example.com", "/retry", "retried")
        .await;
    stack
        .wait_backend("retry.example.com", "/plain", "plain")
        .await;
    let port = stack.ports.http;

    retried.control().reset_counts();
    retried.control().fail_next(1, 503);
    let resp = get(port, "retry.example.com", "/retry").await.unwrap();
    assert_eq!(
        (resp.status, resp.backend().as_deref()),
        (200, Some("retried")),
        "{}",
        resp.text()
    );
    assert_eq!(
        retried.control().request_count(),
        2,
        "the failed try and the retry"
    );

    plain.control().reset_counts();
    plain.control().fail_next(1, 503);
    let resp = get(port, "retry.example.com", "/plain").await.unwrap();
    assert_eq!(
        (resp.status, resp.backend().as_deref()),
        (503, Some("plain")),
        "without a retry policy the backend's failure reaches the client"
    );
    assert_eq!(plain.control().request_count(), 1);
    let resp = get(port, "retry.example.com", "/plain").await.unwrap();
    assert_eq!(resp.status, 200);
    stack.sluice.check_running().unwrap();
}

/// The value to send back for the session-affinity cookie set by `resp` (`name=value`).
fn affinity_cookie(resp: &Response) -> Option<String> {
    resp.header_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(&format!("{AFFINITY_COOKIE}=")))
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancing_strategies_spread_or_stick() {
    let one = Backend::start("one").await.unwrap();
    let two = Backend::start("two").await.unwrap();
    let both = ["one", "two"];
    let routes = "
  - match: /rr
    services: [{name: pool, port: 80}]
  - match: /wlr
    services: [{name: pool, port: 80, strategy: WeightedLeastRequest}]
  - match: /random
    services: [{name: pool, port: 80, strategy: Random}]
  - match: /cookie
    services: [{name: pool, port: 80, strategy: Cookie}]
";
    let host = "lb.example.com";
    let mut stack = Stack::start(&[
        (
            "svc.yaml",
            service("default", "pool", 80, &[one.port(), two.port()]),
        ),
        ("route.yaml", ingress_route("strategies", host, routes)),
    ])
    .await;
    for path in ["/rr", "/wlr", "/random", "/cookie"] {
        stack
            .wait_response(host, path, "200 from the pool", |r| r.status == 200)
            .await;
    }
    let port = stack.ports.http;

    // Each route's cluster carries its strategy in Envoy (round robin is the default, unset).
    let clusters = stack
        .admin_json("/config_dump?resource=dynamic_active_clusters")
        .await;
    let policy_of: BTreeMap<String, String> = clusters["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let c = &c["cluster"];
            let policy = c["lb_policy"].as_str().unwrap_or("ROUND_ROBIN");
            (c["name"].as_str().unwrap().to_owned(), policy.to_owned())
        })
        .collect();
    let route_dump = stack
        .admin_json("/config_dump?resource=dynamic_route_configs")
        .await;
    let served: Vec<Value> = route_dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["route_config"].clone())
        .collect();
    let routes = routes_of(&served, host);
    for (path, policy) in [
        ("/rr", "ROUND_ROBIN"),
        ("/wlr", "LEAST_REQUEST"),
        ("/random", "RANDOM"),
        ("/cookie", "RING_HASH"),
    ] {
        let cluster = routes[path]["route"]["cluster"].as_str().unwrap();
        assert_eq!(policy_of[cluster], policy, "{path} -> {cluster}");
    }

    // Round robin: on one connection (one Envoy worker) the two endpoints strictly alternate.
    let mut conn = Connection::open(port).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..10 {
        let resp = conn.send(&Request::get(host, "/rr")).await.unwrap();
        assert_eq!(resp.status, 200);
        order.push(resp.backend().unwrap());
    }
    assert!(
        order.windows(2).all(|w| w[0] != w[1]),
        "round robin alternates: {order:?}"
    );
    // Over fresh connections, every strategy reaches both endpoints.
    for path in ["/rr", "/wlr", "/random", "/cookie"] {
        reaches_all(port, host, path, &both, 200).await;
    }

    // Cookie: the first answer sets the affinity cookie; with it, every request sticks to the
    // endpoint that answered first. Find one cookie per endpoint so both stickinesses show.
    let mut sticky: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..200 {
        if sticky.len() == 2 {
            break;
        }
        let resp = get(port, host, "/cookie").await.unwrap();
        assert_eq!(resp.status, 200);
        let cookie = affinity_cookie(&resp).unwrap_or_else(|| {
            panic!(
                "no {AFFINITY_COOKIE} cookie set: {:?}",
                resp.header_all("set-cookie")
            )
        });
        sticky.entry(resp.backend().unwrap()).or_insert(cookie);
    }
    assert_eq!(sticky.len(), 2, "fresh sessions land on both: {sticky:?}");
    for (backend, cookie) in &sticky {
        for _ in 0..25 {
            let resp = Request::get(host, "/cookie")
                .cookie(cookie)
                .send(port)
                .await
                .unwrap();
            assert_eq!(resp.status, 200);
            assert_eq!(
                resp.backend().as_deref(),
                Some(backend.as_str()),
                "{cookie} sticks"
            );
            assert_eq!(
                affinity_cookie(&resp),
                None,
                "a request carrying the cookie gets no new one"
            );
        }
    }
    stack.sluice.check_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_check_takes_a_failing_endpoint_out_and_back() {
    let sick = Backend::start("sick").await.unwrap();
    let well = Backend::start("well").await.unwrap();
    let host = "health.example.com";
    let routes = "
  - match: /
    services:
    - name: checked
      port: 80
      healthCheck:
        path: /healthz
        intervalSeconds: 1
        timeoutSeconds: 1
        unhealthyThresholdCount: 1
        healthyThresholdCount: 1
";
    let mut stack = Stack::start(&[
        (
            "svc.yaml",
            service("default", "checked", 80, &[sick.port(), well.port()]),
        ),
        ("route.yaml", ingress_route("health", host, routes)),
    ])
    .await;
    stack
        .wait_response(host, "/", "200", |r| r.status == 200)
        .await;
    let port = stack.ports.http;
    reaches_all(port, host, "/", &["sick", "well"], 200).await;
    assert!(
        sick.control().health_check_count() > 0,
        "Envoy checks /healthz"
    );

    // Unhealthy: once Envoy has seen a failed check, nothing reaches it any more.
    sick.control().set_healthy(false);
    let checks = sick.control().health_check_count();
    // Two more checks: the first failing one has been answered and judged.
    wait_until("Envoy checks the sick endpoint twice", WAIT, async || {
        sick.control().health_check_count() >= checks + 2
    })
    .await
    .unwrap();
    let seen = spread(port, host, "/", 20).await;
    assert_eq!(
        seen,
        BTreeMap::from([("well".to_owned(), 20)]),
        "only the healthy endpoint serves"
    );

    // Healthy again: it gets traffic again.
    sick.control().set_healthy(true);
    let seen = try_wait_for("the recovered endpoint to serve again", WAIT, async || {
        stack.sluice.check_running()?;
        let r = get(port, host, "/").await?;
        Ok((r.status == 200 && r.backend().as_deref() == Some("sick")).then_some(()))
    })
    .await;
    seen.unwrap();
    reaches_all(port, host, "/", &["sick", "well"], 200).await;
    stack.sluice.check_running().unwrap();
}

/// What a test is doing now, shared with its looping clients for their failure messages.
#[derive(Clone, Default)]
struct Step(Arc<std::sync::Mutex<&'static str>>);

impl Step {
    fn set(&self, step: &'static str) {
        *self.0.lock().unwrap() = step;
    }

    fn get(&self) -> &'static str {
        *self.0.lock().unwrap()
    }
}

/// A client sending requests to one route in a loop until stopped, recording every outcome.
struct Looper {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: JoinHandle<Vec<String>>,
}

impl Looper {
    /// Loops `GET http://host/path` on 127.0.0.1:`port`, over one kept-alive connection
    /// (reopened only when Envoy announced it closes it) or a fresh connection each time.
    /// Failures name the `step` the test was at.
    fn spawn(
        port: u16,
        host: &'static str,
        path: &'static str,
        keep_alive: bool,
        step: &Step,
    ) -> Looper {
        let step = step.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut conn: Option<Connection> = None;
            let request = Request::get(host, path);
            while !stop2.load(Ordering::SeqCst) {
                let outcome = if keep_alive {
                    let c = match conn.take() {
                        Some(c) => c,
                        None => match Connection::open(port).await {
                            Ok(c) => c,
                            Err(e) => {
                                failures.push(format!("{}: connect: {e}", step.get()));
                                continue;
                            }
                        },
                    };
                    let mut c = c;
                    let outcome = c.send(&request).await;
                    if outcome.is_ok() {
                        conn = Some(c);
                    }
                    outcome
                } else {
                    request.send(port).await
                };
                match outcome {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures.push(format!(
                        "{}: {host}{path} answered {} {:?} {:?}",
                        step.get(),
                        r.status,
                        r.headers,
                        r.text()
                    )),
                    Err(e) => failures.push(format!("{}: {host}{path}: {e}", step.get())),
                }
                sent2.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        });
        Looper { stop, sent, task }
    }

    /// Waits until a few more requests have completed, so the loop provably ran past now.
    async fn ran_past_now(&self) {
        let now = self.sent.load(Ordering::SeqCst);
        wait_until("the looping client to send more", WAIT, async || {
            self.sent.load(Ordering::SeqCst) >= now + 3
        })
        .await
        .unwrap();
    }

    /// Stops the loop; returns how many requests it sent and every failure.
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.task.await.unwrap();
        (self.sent.load(Ordering::SeqCst), failures)
    }
}

/// Envoy's identity: pid from the state file, and its restart epoch from `/server_info`.
async fn envoy_identity(stack: &Stack) -> (Option<u32>, Value, u64) {
    let pid = stack
        .sluice
        .instances()
        .into_iter()
        .find(|i| i.gateway == stack.ports.gateway)
        .and_then(|i| i.envoy_pid);
    let info = stack.admin_json("/server_info").await;
    let epoch = info["command_line_options"]["restart_epoch"].clone();
    let uptime: u64 = info["uptime_current_epoch"]
        .as_str()
        .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
        .map(|s| s as u64)
        .unwrap_or_else(|| panic!("no uptime in {info}"));
    (pid, epoch, uptime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_edits_over_delta_xds_fail_no_request_and_keep_envoy_running() {
    live_edits("delta").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_edits_over_sotw_xds_fail_no_request_and_keep_envoy_running() {
    live_edits("sotw").await;
}

/// Clients loop on routes that stay served while the manifests change under them (`ads`: the
/// xDS flavour Envoy uses): every one of their requests must succeed, and the Envoy must be the
/// same process throughout.
async fn live_edits(ads: &str) {
    let main = Backend::start("main").await.unwrap();
    let blue = Backend::start("blue").await.unwrap();
    let green = Backend::start("green").await.unwrap();
    let fresh = Backend::start("fresh").await.unwrap();
    let teal = Backend::start("teal").await.unwrap();
    let stable = "stable.example.com";
    let edited = "edit.example.com";
    let weighted = |blue_weight: u32, green_weight: u32| {
        format!(
            "
  - match: /w
    services:
    - {{name: blue, port: 80, weight: {blue_weight}}}
    - {{name: green, port: 80, weight: {green_weight}}}
"
        )
    };
    let gone = "  - match: /gone\n    services: [{name: main, port: 80}]\n";
    let new = "  - match: /new\n    services: [{name: fresh, port: 80}]\n";
    let mut stack = Stack::start_with(
        &[
            (
                "svc.yaml",
                service("default", "main", 80, &[main.port()])
                    + &service("default", "blue", 80, &[blue.port()])
                    + &service("default", "green", 80, &[green.port()]),
            ),
            (
                "stable.yaml",
                ingress_route(
                    "stable",
                    stable,
                    "  - match: /\n    services: [{name: main, port: 80}]\n",
                ),
            ),
            (
                "edit.yaml",
                ingress_route("edit", edited, &(weighted(100, 0) + gone)),
            ),
        ],
        &["--ads", ads],
    )
    .await;
    stack.wait_backend(stable, "/", "main").await;
    stack.wait_backend(edited, "/w", "blue").await;
    stack.wait_backend(edited, "/gone", "main").await;
    let port = stack.ports.http;
    let before = envoy_identity(&stack).await;
    assert!(before.0.is_some(), "the state file names Envoy's pid");
    let listeners_modified = |stack: &Stack| {
        let admin = stack.ports.admin_socket.clone();
        async move {
            let stats = Request::get("localhost", "/stats?filter=^listener_manager\\.")
                .send_unix(&admin)
                .await
                .unwrap()
                .text();
            stats
                .lines()
                .filter_map(|l| l.split_once(": "))
                .filter(|(k, _)| {
                    [
                        "listener_manager.listener_modified",
                        "listener_manager.listener_removed",
                    ]
                    .contains(k)
                })
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
        }
    };
    let listeners_before = listeners_modified(&stack).await;
    assert_eq!(listeners_before.len(), 2, "{listeners_before:?}");

    let step = Step::default();
    step.set("before any edit");
    let loops = [
        Looper::spawn(port, stable, "/", false, &step),
        Looper::spawn(port, stable, "/", true, &step),
        Looper::spawn(port, edited, "/w", false, &step),
    ];
    for l in &loops {
        l.ran_past_now().await;
    }

    // (a) Shift all traffic of /w from blue to green.
    step.set("(a) weights 100/0 -> 0/100");
    stack
        .dir
        .write(
            "edit.yaml",
            &ingress_route("edit", edited, &(weighted(0, 100) + gone)),
        )
        .unwrap();
    stack.wait_backend(edited, "/w", "green").await;
    let seen = spread(port, edited, "/w", 10).await;
    assert_eq!(seen, BTreeMap::from([("green".to_owned(), 10)]));
    for l in &loops {
        l.ran_past_now().await;
    }

    // (b) A new route to a new Service.
    step.set("(b) adding /new");
    stack
        .dir
        .write(
            "fresh.yaml",
            &service("default", "fresh", 80, &[fresh.port()]),
        )
        .unwrap();
    stack
        .dir
        .write(
            "edit.yaml",
            &ingress_route("edit", edited, &(weighted(0, 100) + gone + new)),
        )
        .unwrap();
    stack.wait_backend(edited, "/new", "fresh").await;
    for l in &loops {
        l.ran_past_now().await;
    }

    // (c) Delete a route: its path is no longer routed.
    step.set("(c) deleting /gone");
    stack
        .dir
        .write(
            "edit.yaml",
            &ingress_route("edit", edited, &(weighted(0, 100) + new)),
        )
        .unwrap();
    stack
        .wait_response(edited, "/gone", "404", |r| r.status == 404)
        .await;
    for l in &loops {
        l.ran_past_now().await;
    }

    // (d) Move /w to a Service Envoy has no cluster for yet; blue's and green's clusters go
    // away. The new cluster must be ready before the route uses it, and the old ones must
    // outlive the route that used them.
    step.set("(d) moving /w to a new Service");
    stack
        .dir
        .write("teal.yaml", &service("default", "teal", 80, &[teal.port()]))
        .unwrap();
    let moved = "  - match: /w\n    services: [{name: teal, port: 80}]\n";
    stack
        .dir
        .write(
            "edit.yaml",
            &ingress_route("edit", edited, &(moved.to_owned() + new)),
        )
        .unwrap();
    stack.wait_backend(edited, "/w", "teal").await;
    for l in &loops {
        l.ran_past_now().await;
    }

    let mut total = 0;
    for (i, l) in loops.into_iter().enumerate() {
        let (sent, failures) = l.finish().await;
        assert!(
            failures.is_empty(),
            "looping client {i}: {} of {sent} requests failed: {failures:?}",
            failures.len()
        );
        total += sent;
    }
    assert!(total > 0);

    // The same Envoy served throughout: same pid, never hot-restarted, listeners untouched.
    let after = envoy_identity(&stack).await;
    assert_eq!(after.0, before.0, "Envoy's pid");
    assert_eq!(after.1, before.1, "hot-restart epoch");
    assert_eq!(after.1, Value::from(0));
    assert!(
        after.2 >= before.2,
        "uptime went on: {before:?} -> {after:?}"
    );
    assert_eq!(listeners_modified(&stack).await, listeners_before);
    stack.sluice.check_running().unwrap();
}
