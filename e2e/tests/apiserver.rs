//! The in-memory API server, first over raw HTTP, then through kube-rs clients and kube-runtime
//! watchers, reflectors and controllers as the operator uses them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sluice_e2e::apiserver::{ApiServer, ApiServerOptions};

/// Upper bound on any single wait: a hang guard, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(20);

/// A tiny HTTP/1.1 client: one connection per request.
struct Http {
    addr: SocketAddr,
    accept: &'static str,
}

impl Http {
    fn new(server: &ApiServer) -> Self {
        Self {
            addr: server.addr(),
            accept: "application/json",
        }
    }

    fn accepting(server: &ApiServer, accept: &'static str) -> Self {
        Self {
            addr: server.addr(),
            accept,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", content_type)
            .header("accept", self.accept)
            .body(Full::new(Bytes::from(body)))?;
        Ok(sender.send_request(req).await?)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Value)> {
        let resp = self.send(method, path, content_type, body).await?;
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {path}: {bytes:?}"))?;
        Ok((code, value))
    }

    async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.call("GET", path, "application/json", Vec::new()).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.call(
            "POST",
            path,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn put(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.call(
            "PUT",
            path,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn patch(&self, path: &str, content_type: &str, body: &str) -> Result<(u16, Value)> {
        self.call("PATCH", path, content_type, body.as_bytes().to_vec())
            .await
    }

    async fn merge(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.patch(path, "application/merge-patch+json", &body.to_string())
            .await
    }

    async fn delete(&self, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.call("DELETE", path, "application/json", body).await
    }

    async fn watch(&self, path: &str) -> Result<Lines> {
        let resp = self
            .send("GET", path, "application/json", Vec::new())
            .await?;
        if resp.status() != 200 {
            bail!("watch {path}: {}", resp.status());
        }
        Ok(Lines {
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }
}

/// Newline-delimited JSON events from a watch response.
struct Lines {
    body: Incoming,
    buf: Vec<u8>,
}

impl Lines {
    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Result<Option<Value>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(Some(serde_json::from_slice(&line)?));
            }
            let frame = tokio::time::timeout(PATIENCE, self.body.frame())
                .await
                .context("no watch event in time")?;
            match frame {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event as `(type, metadata.name, metadata.resourceVersion)`.
    async fn next_brief(&mut self) -> Result<(String, String, String)> {
        let e = self.next().await?.context("watch ended")?;
        let field = |p: &str| {
            e.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok((
            field("/type"),
            field("/object/metadata/name"),
            field("/object/metadata/resourceVersion"),
        ))
    }
}

fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": name}},
    })
}

fn rv(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            i.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

mod raw {
    use super::*;

    #[tokio::test]
    async fn injected_faults_fail_or_delay_matching_requests() -> Result<()> {
        use sluice_e2e::apiserver::Fault;
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
        let lease = |holder: &str| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": "l"}, "spec": {"holderIdentity": holder}})
        };
        let (code, _) = http.post(LEASES, &lease("a")).await?;
        assert_eq!(code, 201);
        let rv_before = server.resource_version();

        // Writes to leases fail with 500; reads, and writes to other resources, still work.
        let id = server.inject(Fault::writes("leases").failing_with(500));
        let (code, status) = http.put(&format!("{LEASES}/l"), &lease("b")).await?;
        assert_eq!(code, 500, "{status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "InternalError");
        assert_eq!(
            server.resource_version(),
            rv_before,
            "a failed write changed the store"
        );
        let (code, got) = http.get(&format!("{LEASES}/l")).await?;
        assert_eq!(
            (code, got["spec"]["holderIdentity"].as_str()),
            (200, Some("a"))
        );
        let (code, _) = http
            .post(
                "/api/v1/namespaces/default/configmaps",
                &configmap("c", json!({})),
            )
            .await?;
        assert_eq!(code, 201);
        // A fault for another user leaves these (anonymous) requests alone.
        server.clear_fault(id);
        server.inject(Fault::writes("leases").by("someone").failing_with(500));
        let (code, _) = http.put(&format!("{LEASES}/l"), &lease("b")).await?;
        assert_eq!(code, 200);
        server.clear_faults();

        // 429 says when to come back, and a fault that lasts a while ends by itself.
        server.inject(
            Fault::writes("leases")
                .failing_with(429)
                .lasting(Duration::from_millis(300)),
        );
        let resp = http
            .send(
                "PUT",
                &format!("{LEASES}/l"),
                "application/json",
                serde_json::to_vec(&lease("c"))?,
            )
            .await?;
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (code, _) = http.put(&format!("{LEASES}/l"), &lease("c")).await?;
        assert_eq!(code, 200);

        // Latency: the request arrives, waits, then is served; `seq` keeps the arrival order.
        let slow = server.inject(Fault::requests("leases").delayed(Duration::from_millis(300)));
        let mark = server.requests_arrived();
        let started = std::time::Instant::now();
        let (code, _) = http.get(&format!("{LEASES}/l")).await?;
        assert_eq!(code, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));
        server.clear_fault(slow);
        let last = server.requests().pop().context("no request recorded")?;
        assert_eq!(
            (last.method.as_str(), last.code, last.seq),
            ("GET", 200, mark)
        );
        Ok(())
    }

    #[tokio::test]
    async fn discovery_documents() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let (code, version) = http.get("/version").await?;
        assert_eq!(code, 200);
        assert_eq!(version["major"], "1");
        let (_, api) = http.get("/api").await?;
        assert_eq!(api["versions"], json!(["v1"]));
        let (_, core) = http.get("/api/v1").await?;
        let resources: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for r in [
            "namespaces",
            "services",
            "services/status",
            "endpoints",
            "secrets",
            "configmaps",
            "serviceaccounts",
            "pods",
        ] {
            assert!(resources.contains(&r), "{r} missing from {resources:?}");
        }
        let (_, groups) = http.get("/apis").await?;
        let group_names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        for g in [
            "apps",
            "discovery.k8s.io",
            "coordination.k8s.io",
            "rbac.authorization.k8s.io",
            "apiextensions.k8s.io",
        ] {
            assert!(group_names.contains(&g), "{g} missing");
        }
        assert!(!group_names.contains(&"contour.heptio.com"));
        assert_eq!(http.get("/apis/contour.heptio.com/v1beta1").await?.0, 404);

        server.apply_yaml(&sluice::api::crds_yaml()?)?;
        let (_, groups) = http.get("/apis").await?;
        let group_names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert!(group_names.contains(&"contour.heptio.com") && group_names.contains(&"sluice.dev"));
        let (code, contour) = http.get("/apis/contour.heptio.com/v1beta1").await?;
        assert_eq!(code, 200);
        let ingressroutes = contour["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "ingressroutes")
            .unwrap();
        assert_eq!(ingressroutes["kind"], "IngressRoute");
        assert_eq!(ingressroutes["namespaced"], true);
        assert!(
            contour["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "ingressroutes/status")
        );
        let (code, group) = http.get("/apis/sluice.dev").await?;
        assert_eq!(code, 200);
        assert_eq!(
            group["preferredVersion"]["groupVersion"],
            "sluice.dev/v1alpha1"
        );
        Ok(())
    }

    #[tokio::test]
    async fn create_get_update_patch_and_errors() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let path = "/api/v1/namespaces/default/services";

        let (code, created) = http.post(path, &service("web")).await?;
        assert_eq!(code, 201, "{created}");
        assert_eq!(created["metadata"]["generation"], 1);
        assert_eq!(created["metadata"]["namespace"], "default");
        assert_eq!(created["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(
            created["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        let first_rv = rv(&created);

        let (code, status) = http.post(path, &service("web")).await?;
        assert_eq!(
            (code, status["reason"].as_str()),
            (409, Some("AlreadyExists")),
            "{status}"
        );
        assert_eq!(status["kind"], "Status");

        let (code, got) = http.get(&format!("{path}/web")).await?;
        assert_eq!(code, 200);
        assert_eq!(got, created);
        let (code, status) = http.get(&format!("{path}/nope")).await?;
        assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
        assert_eq!(status["message"], "services \"nope\" not found");

        let (code, status) = http
            .post("/api/v1/namespaces/absent/services", &service("web"))
            .await?;
        assert_eq!(
            (code, status["message"].as_str()),
            (404, Some("namespaces \"absent\" not found"))
        );
        let (code, status) = http.post(path, &service("Not_Valid")).await?;
        assert_eq!(
            (code, status["reason"].as_str()),
            (422, Some("Invalid")),
            "{status}"
        );
        let (code, _) = http
            .post(
                path,
                &json!({"apiVersion": "apps/v1", "kind": "Service", "metadata": {"name": "x"}}),
            )
            .await?;
        assert_eq!(code, 400);
        let (code, _) = http
            .call("POST", path, "application/json", b"{not json".to_vec())
            .await?;
        assert_eq!(code, 400);

        // generateName
        let (code, generated) = http
            .post(path, &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"generateName": "gen-"}, "spec": {"ports": [{"port": 80}]}}))
            .await?;
        assert_eq!(code, 201);
        let generated_name = generated["metadata"]["name"].as_str().unwrap();
        assert!(
            generated_name.starts_with("gen-") && generated_name.len() == 9,
            "{generated_name}"
        );

        // PUT: stale resourceVersion conflicts; a label change keeps the generation; a spec change bumps it.
        let mut stale = created.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        let (code, status) = http.put(&format!("{path}/web"), &stale).await?;
        assert_eq!(
            (code, status["reason"].as_str()),
            (409, Some("Conflict")),
            "{status}"
        );
        let mut relabeled = created.clone();
        relabeled["metadata"]["labels"] = json!({"tier": "front"});
        let (code, updated) = http.put(&format!("{path}/web"), &relabeled).await?;
        assert_eq!(code, 200, "{updated}");
        assert!(rv(&updated) > first_rv);
        assert_eq!(updated["metadata"]["generation"], 1);
        assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
        let mut respec = updated.clone();
        respec["spec"]["ports"][0]["port"] = json!(81);
        let (_, updated) = http.put(&format!("{path}/web"), &respec).await?;
        assert_eq!(updated["metadata"]["generation"], 2);
        let (code, _) = http.put(&format!("{path}/web"), &service("other")).await?;
        assert_eq!(code, 400, "name mismatch");
        let (code, _) = http
            .put(&format!("{path}/absent"), &service("absent"))
            .await?;
        assert_eq!(code, 404);

        // Merge patch, JSON patch, a no-op patch, and a merge patch carrying a stale resourceVersion.
        let (code, merged) = http
            .merge(
                &format!("{path}/web"),
                &json!({"metadata": {"annotations": {"a": "b"}}, "spec": {"type": "NodePort"}}),
            )
            .await?;
        assert_eq!(code, 200);
        assert_eq!(merged["metadata"]["annotations"]["a"], "b");
        assert_eq!(merged["spec"]["type"], "NodePort");
        assert_eq!(merged["spec"]["ports"][0]["port"], 81);
        assert_eq!(merged["metadata"]["generation"], 3);
        let (code, noop) = http
            .merge(
                &format!("{path}/web"),
                &json!({"spec": {"type": "NodePort"}}),
            )
            .await?;
        assert_eq!(code, 200);
        assert_eq!(
            rv(&noop),
            rv(&merged),
            "a no-op write keeps the resourceVersion"
        );
        let ops = json!([
            {"op": "test", "path": "/spec/type", "value": "NodePort"},
            {"op": "replace", "path": "/spec/type", "value": "ClusterIP"},
            {"op": "add", "path": "/metadata/labels/extra", "value": "yes"},
        ]);
        let (code, patched) = http
            .patch(
                &format!("{path}/web"),
                "application/json-patch+json",
                &ops.to_string(),
            )
            .await?;
        assert_eq!(code, 200, "{patched}");
        assert_eq!(patched["spec"]["type"], "ClusterIP");
        assert_eq!(patched["metadata"]["labels"]["extra"], "yes");
        let failing = json!([{"op": "test", "path": "/spec/type", "value": "NodePort"}]);
        let (code, _) = http
            .patch(
                &format!("{path}/web"),
                "application/json-patch+json",
                &failing.to_string(),
            )
            .await?;
        assert_eq!(code, 422);
        let (code, _) = http.merge(&format!("{path}/web"), &json!({"metadata": {"resourceVersion": first_rv.to_string()}, "spec": {"type": "NodePort"}})).await?;
        assert_eq!(code, 409);

        // Verbs and media types the server does not take.
        let (code, status) = http.post(&format!("{path}/web"), &service("web")).await?;
        assert_eq!(
            (code, status["reason"].as_str()),
            (405, Some("MethodNotAllowed"))
        );
        let (code, _) = http
            .patch(&format!("{path}/web"), "application/xml", "<x/>")
            .await?;
        assert_eq!(code, 415);
        let (code, status) = http
            .patch(
                &format!("{path}/web"),
                "application/apply-patch+yaml",
                &service("web").to_string(),
            )
            .await?;
        assert_eq!(
            (code, status["reason"].as_str()),
            (422, Some("Invalid")),
            "apply needs a fieldManager"
        );
        assert_eq!(http.get("/api/v1/namespaces/default/widgets").await?.0, 404);
        assert_eq!(
            http.get("/api/v1/services/web").await?.0,
            404,
            "namespaced object without a namespace"
        );

        let (code, deleted) = http.delete(&format!("{path}/web"), None).await?;
        assert_eq!(code, 200);
        assert!(rv(&deleted) > rv(&patched));
        assert_eq!(http.get(&format!("{path}/web")).await?.0, 404);
        assert_eq!(http.delete(&format!("{path}/web"), None).await?.0, 404);
        Ok(())
    }

    #[tokio::test]
    async fn list_with_selectors_and_pages() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        server.create(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
        )?;
        for (ns, name, labels) in [
            ("default", "a", json!({"app": "web", "tier": "front"})),
            ("default", "b", json!({"app": "web", "tier": "back"})),
            ("default", "c", json!({"app": "db"})),
            ("other", "d", json!({"app": "web", "tier": "front"})),
        ] {
            let (code, _) = http
                .post(
                    &format!("/api/v1/namespaces/{ns}/configmaps"),
                    &configmap(name, labels),
                )
                .await?;
            assert_eq!(code, 201);
        }
        let (code, all) = http.get("/api/v1/configmaps").await?;
        assert_eq!(code, 200);
        assert_eq!(all["kind"], "ConfigMapList");
        assert_eq!(names(&all), ["a", "b", "c", "d"]);
        assert_eq!(
            all["metadata"]["resourceVersion"],
            server.resource_version().to_string()
        );
        let (_, default) = http.get("/api/v1/namespaces/default/configmaps").await?;
        assert_eq!(names(&default), ["a", "b", "c"]);

        for (selector, want) in [
            ("app%3Dweb", vec!["a", "b", "d"]),
            ("app%3D%3Dweb%2Ctier%3Dfront", vec!["a", "d"]),
            ("app%21%3Dweb", vec!["c"]),
            ("tier", vec!["a", "b", "d"]),
            ("%21tier", vec!["c"]),
            ("tier+in+%28back%2Cmiddle%29", vec!["b"]),
            ("tier+notin+%28back%29", vec!["a", "c", "d"]),
        ] {
            let (code, list) = http
                .get(&format!("/api/v1/configmaps?labelSelector={selector}"))
                .await?;
            assert_eq!(code, 200, "{selector}: {list}");
            assert_eq!(names(&list), want, "{selector}");
        }
        let (code, _) = http
            .get("/api/v1/configmaps?labelSelector=tier+in+%28back")
            .await?;
        assert_eq!(code, 400);
        let (_, one) = http
            .get("/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Db")
            .await?;
        assert_eq!(names(&one), ["b"]);
        let (_, others) = http
            .get("/api/v1/configmaps?fieldSelector=metadata.namespace%21%3Ddefault")
            .await?;
        assert_eq!(names(&others), ["d"]);

        // Pages of two: the continue token carries the first page's resourceVersion.
        let (_, page1) = http.get("/api/v1/configmaps?limit=2").await?;
        assert_eq!(names(&page1), ["a", "b"]);
        let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
        server.create(configmap("e", json!({})))?;
        let (_, page2) = http
            .get(&format!("/api/v1/configmaps?limit=2&continue={token}"))
            .await?;
        assert_eq!(names(&page2), ["c", "e"]);
        assert_eq!(
            page2["metadata"]["resourceVersion"],
            page1["metadata"]["resourceVersion"]
        );
        let token = page2["metadata"]["continue"].as_str().unwrap().to_string();
        let (_, page3) = http
            .get(&format!("/api/v1/configmaps?limit=2&continue={token}"))
            .await?;
        assert_eq!(names(&page3), ["d"]);
        assert!(page3["metadata"].get("continue").is_none());

        // Cluster-scoped resources list without a namespace and refuse one.
        let (_, namespaces) = http.get("/api/v1/namespaces").await?;
        assert_eq!(
            names(&namespaces),
            [
                "default",
                "kube-node-lease",
                "kube-public",
                "kube-system",
                "other"
            ]
        );
        assert_eq!(namespaces["items"][0]["status"]["phase"], "Active");
        assert_eq!(
            http.get("/apis/rbac.authorization.k8s.io/v1/namespaces/default/clusterroles")
                .await?
                .0,
            404
        );
        Ok(())
    }

    #[tokio::test]
    async fn status_subresource_separates_spec_and_status() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        server.apply_yaml(&sluice::api::crds_yaml()?)?;
        let path = "/apis/contour.heptio.com/v1beta1/namespaces/default/ingressroutes";
        let route = json!({
            "apiVersion": "contour.heptio.com/v1beta1",
            "kind": "IngressRoute",
            "metadata": {"name": "r"},
            "spec": {"virtualhost": {"fqdn": "a.example.com"}, "routes": []},
            "status": {"currentStatus": "ignored"},
        });
        let (code, created) = http.post(path, &route).await?;
        assert_eq!(code, 201, "{created}");
        assert!(
            created.get("status").is_none(),
            "create drops status: {created}"
        );

        let (code, st) = http.merge(&format!("{path}/r/status"), &json!({"status": {"currentStatus": "valid", "description": "ok"}, "spec": {"virtualhost": {"fqdn": "changed.example.com"}}})).await?;
        assert_eq!(code, 200, "{st}");
        assert_eq!(st["status"]["currentStatus"], "valid");
        assert_eq!(
            st["spec"]["virtualhost"]["fqdn"], "a.example.com",
            "status writes ignore spec"
        );
        assert_eq!(
            st["metadata"]["generation"], 1,
            "status writes keep the generation"
        );

        let mut main = st.clone();
        main["status"] = json!({"currentStatus": "overwritten"});
        main["spec"]["virtualhost"]["fqdn"] = json!("b.example.com");
        let (code, put) = http.put(&format!("{path}/r"), &main).await?;
        assert_eq!(code, 200);
        assert_eq!(
            put["status"]["currentStatus"], "valid",
            "main writes ignore status"
        );
        assert_eq!(put["spec"]["virtualhost"]["fqdn"], "b.example.com");
        assert_eq!(put["metadata"]["generation"], 2);

        let mut status_put = put.clone();
        status_put["status"] = json!({"currentStatus": "invalid", "description": "bad"});
        let (code, put2) = http.put(&format!("{path}/r/status"), &status_put).await?;
        assert_eq!(code, 200);
        assert_eq!(put2["status"]["currentStatus"], "invalid");
        let (_, got) = http.get(&format!("{path}/r/status")).await?;
        assert_eq!(got, put2);

        let applied = json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute", "metadata": {"name": "r"}, "status": {"currentStatus": "valid"}});
        let (code, ap) = http
            .patch(
                &format!("{path}/r/status?fieldManager=sluice&force=true"),
                "application/apply-patch+yaml",
                &applied.to_string(),
            )
            .await?;
        assert_eq!(code, 200, "{ap}");
        assert_eq!(
            ap["status"],
            json!({"currentStatus": "valid", "description": "bad"})
        );
        assert_eq!(ap["metadata"]["generation"], 2);

        // Resources without a status subresource have no /status path.
        server.create(configmap("cm", json!({})))?;
        assert_eq!(
            http.get("/api/v1/namespaces/default/configmaps/cm/status")
                .await?
                .0,
            404
        );
        // Deleting the CRD removes its objects and stops serving the resource.
        let (code, _) = http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ingressroutes.contour.heptio.com", None).await?;
        assert_eq!(code, 200);
        assert_eq!(http.get(path).await?.0, 404);
        assert!(
            server
                .list("contour.heptio.com/v1beta1", "IngressRoute", None)
                .is_empty()
        );
        Ok(())
    }

    #[tokio::test]
    async fn server_side_apply_merges_releases_and_conflicts() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let path = "/api/v1/namespaces/default/services/web";
        let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n    a: '1'\n    b: '2'\nspec:\n  ports:\n  - port: 80\n  selector:\n    app: web\n";
        let (code, created) = http
            .patch(
                &format!("{path}?fieldManager=one"),
                "application/apply-patch+yaml",
                yaml,
            )
            .await?;
        assert_eq!(code, 201, "{created}");
        assert_eq!(created["metadata"]["labels"], json!({"a": "1", "b": "2"}));

        // Another manager sets a label and a selector key; the first manager drops label b.
        let other = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"c": "3"}}, "spec": {"selector": {"extra": "x"}}});
        let (code, second) = http
            .patch(
                &format!("{path}?fieldManager=two"),
                "application/apply-patch+yaml",
                &other.to_string(),
            )
            .await?;
        assert_eq!(code, 200);
        assert_eq!(second["metadata"]["generation"], 2, "the selector is spec");
        let yaml2 = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n    a: '1'\nspec:\n  ports:\n  - port: 80\n  selector:\n    app: web\n";
        let (_, reapplied) = http
            .patch(
                &format!("{path}?fieldManager=one"),
                "application/apply-patch+yaml",
                yaml2,
            )
            .await?;
        assert_eq!(reapplied["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        assert_eq!(
            reapplied["spec"]["selector"],
            json!({"app": "web", "extra": "x"})
        );
        assert_eq!(
            reapplied["metadata"]["generation"], 2,
            "labels are not spec"
        );

        // Manager two claiming manager one's selector value conflicts unless forced.
        let claim = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "other"}}});
        let (code, status) = http
            .patch(
                &format!("{path}?fieldManager=two"),
                "application/apply-patch+yaml",
                &claim.to_string(),
            )
            .await?;
        assert_eq!(code, 409, "{status}");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("conflict with \"one\": .spec.selector.app"),
            "{status}"
        );
        let (code, forced) = http
            .patch(
                &format!("{path}?fieldManager=two&force=true"),
                "application/apply-patch+yaml",
                &claim.to_string(),
            )
            .await?;
        assert_eq!(code, 200);
        assert_eq!(forced["spec"]["selector"]["app"], "other");
        assert_eq!(forced["metadata"]["generation"], 3);
        // Manager two no longer applies "extra", manager one never did: it goes.
        assert_eq!(forced["spec"]["selector"], json!({"app": "other"}));
        // Forcing took .spec.selector.app from manager one: one may re-apply without conflict,
        // and once two lets go of it, the field goes.
        let (code, _) = http
            .patch(
                &format!("{path}?fieldManager=one"),
                "application/apply-patch+yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n    a: '1'\nspec:\n  ports:\n  - port: 80\n",
            )
            .await?;
        assert_eq!(code, 200);
        let release = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        let (_, released) = http
            .patch(
                &format!("{path}?fieldManager=two"),
                "application/apply-patch+yaml",
                &release.to_string(),
            )
            .await?;
        assert!(released["spec"].get("selector").is_none(), "{released}");
        assert_eq!(released["spec"]["ports"], json!([{"port": 80}]));

        // apiVersion and kind are required; the body name must match the URL.
        let (code, _) = http
            .patch(
                &format!("{path}?fieldManager=one"),
                "application/apply-patch+yaml",
                "metadata:\n  name: web\n",
            )
            .await?;
        assert_eq!(code, 400);
        let (code, _) = http
            .patch(
                &format!("{path}?fieldManager=one"),
                "application/apply-patch+yaml",
                &service("other").to_string(),
            )
            .await?;
        assert_eq!(code, 400);
        Ok(())
    }

    #[tokio::test]
    async fn delete_cascades_through_owner_references_and_waits_for_finalizers() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let owner_ref = |obj: &Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"], "controller": true});
        let root = server.create(configmap("root", json!({})))?;
        let mut child = configmap("child", json!({}));
        child["metadata"]["ownerReferences"] = json!([owner_ref(&root)]);
        let child = server.create(child)?;
        let mut grandchild = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "grandchild", "ownerReferences": [owner_ref(&child)]}});
        grandchild["type"] = json!("Opaque");
        server.create(grandchild)?;
        let other_owner = server.create(configmap("other-owner", json!({})))?;
        let mut shared_child = configmap("shared", json!({}));
        shared_child["metadata"]["ownerReferences"] =
            json!([owner_ref(&root), owner_ref(&other_owner)]);
        server.create(shared_child)?;

        let (code, _) = http
            .delete("/api/v1/namespaces/default/configmaps/root", None)
            .await?;
        assert_eq!(code, 200);
        assert!(server.get("v1", "ConfigMap", None, "child").is_none());
        assert!(
            server.get("v1", "Secret", None, "grandchild").is_none(),
            "recursive"
        );
        let shared = server
            .get("v1", "ConfigMap", None, "shared")
            .expect("other owner alive");
        assert_eq!(
            shared["metadata"]["ownerReferences"],
            json!([owner_ref(&other_owner)])
        );

        // A dependent written after its owner went away (a controller with a stale cache) is
        // collected too; with another live owner it only loses the dangling reference.
        let mut late = configmap("late", json!({}));
        late["metadata"]["ownerReferences"] = json!([owner_ref(&root)]);
        let (code, created) = http
            .post("/api/v1/namespaces/default/configmaps", &late)
            .await?;
        assert_eq!(code, 201, "{created}");
        assert!(server.get("v1", "ConfigMap", None, "late").is_none());
        late["metadata"]["ownerReferences"] = json!([owner_ref(&root), owner_ref(&other_owner)]);
        server.create(late)?;
        let late = server
            .get("v1", "ConfigMap", None, "late")
            .expect("a live owner keeps it");
        assert_eq!(
            late["metadata"]["ownerReferences"],
            json!([owner_ref(&other_owner)])
        );
        server.delete("v1", "ConfigMap", None, "late")?;

        // Orphan: the dependent stays and loses the reference.
        let mut orphan = configmap("orphan", json!({}));
        orphan["metadata"]["ownerReferences"] = json!([owner_ref(&other_owner)]);
        server.create(orphan)?;
        let (code, _) = http
            .delete(
                "/api/v1/namespaces/default/configmaps/other-owner",
                Some(&json!({"propagationPolicy": "Orphan"})),
            )
            .await?;
        assert_eq!(code, 200);
        let orphan = server
            .get("v1", "ConfigMap", None, "orphan")
            .expect("orphaned, not deleted");
        assert!(
            orphan["metadata"].get("ownerReferences").is_none(),
            "{orphan}"
        );
        let shared = server
            .get("v1", "ConfigMap", None, "shared")
            .expect("orphaned too");
        assert!(
            shared["metadata"].get("ownerReferences").is_none(),
            "{shared}"
        );

        // Finalizers hold the object back until removed; preconditions guard the delete.
        let mut held = configmap("held", json!({}));
        held["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
        let held = server.create(held)?;
        let (code, _) = http
            .delete(
                "/api/v1/namespaces/default/configmaps/held",
                Some(&json!({"preconditions": {"uid": "not-the-uid"}})),
            )
            .await?;
        assert_eq!(code, 409);
        let (code, deleting) = http
            .delete(
                "/api/v1/namespaces/default/configmaps/held",
                Some(&json!({"preconditions": {"uid": held["metadata"]["uid"]}})),
            )
            .await?;
        assert_eq!(code, 202);
        assert!(deleting["metadata"]["deletionTimestamp"].is_string());
        assert!(server.get("v1", "ConfigMap", None, "held").is_some());
        let (code, gone) = http
            .merge(
                "/api/v1/namespaces/default/configmaps/held",
                &json!({"metadata": {"finalizers": null}}),
            )
            .await?;
        assert_eq!(code, 200, "{gone}");
        assert!(server.get("v1", "ConfigMap", None, "held").is_none());

        // Deleting a namespace deletes its contents; deletecollection honours selectors.
        server.create(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        )?;
        for (name, app) in [("x", "one"), ("y", "two")] {
            let mut cm = configmap(name, json!({"app": app}));
            cm["metadata"]["namespace"] = json!("team");
            server.create(cm)?;
        }
        let (code, deleted) = http
            .delete(
                "/api/v1/namespaces/team/configmaps?labelSelector=app%3Done",
                None,
            )
            .await?;
        assert_eq!(code, 200);
        assert_eq!(names(&deleted), ["x"]);
        assert_eq!(server.list("v1", "ConfigMap", Some("team")).len(), 1);
        http.delete("/api/v1/namespaces/team", None).await?;
        assert!(server.list("v1", "ConfigMap", Some("team")).is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn watch_replays_from_a_resource_version_then_streams() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let path = "/api/v1/namespaces/default/configmaps";
        server.create(configmap("before", json!({})))?;
        let start = server.resource_version();
        let a = server.create(configmap("a", json!({"app": "web"})))?;
        let (_, a2) = http
            .merge(&format!("{path}/a"), &json!({"data": {"k": "changed"}}))
            .await?;
        let (_, a3) = http.delete(&format!("{path}/a"), None).await?;

        let mut w = http
            .watch(&format!("{path}?watch=true&resourceVersion={start}"))
            .await?;
        assert_eq!(
            w.next_brief().await?,
            ("ADDED".into(), "a".into(), rv(&a).to_string())
        );
        assert_eq!(
            w.next_brief().await?,
            ("MODIFIED".into(), "a".into(), rv(&a2).to_string())
        );
        assert_eq!(
            w.next_brief().await?,
            ("DELETED".into(), "a".into(), rv(&a3).to_string())
        );
        // Live: the event arrives while the stream stays open.
        let b = server.create(configmap("b", json!({})))?;
        assert_eq!(
            w.next_brief().await?,
            ("ADDED".into(), "b".into(), rv(&b).to_string())
        );
        // Events of other kinds are not in this watch; the next one is b's deletion.
        server.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}))?;
        server.delete("v1", "ConfigMap", None, "b")?;
        assert_eq!(w.next_brief().await?.0, "DELETED");

        // No resourceVersion: the current objects first, as ADDED.
        let mut w2 = http.watch(&format!("{path}?watch=1")).await?;
        assert_eq!(w2.next_brief().await?.1, "before");
        server.create(configmap("c", json!({})))?;
        assert_eq!(w2.next_brief().await?.1, "c");

        // A single-object watch by field selector, as kube-runtime does for one object.
        let mut single = http
            .watch(&format!(
                "{path}?watch=true&fieldSelector=metadata.name%3Dc&resourceVersion={}",
                server.resource_version()
            ))
            .await?;
        server.create(configmap("d", json!({})))?;
        http.merge(&format!("{path}/c"), &json!({"data": {"x": "y"}}))
            .await?;
        assert_eq!(
            single.next_brief().await?,
            (
                "MODIFIED".into(),
                "c".into(),
                server
                    .get("v1", "ConfigMap", None, "c")
                    .map(|c| rv(&c).to_string())
                    .unwrap()
            )
        );
        Ok(())
    }

    /// A watch already streaming is not expired by writes of other resources, however many:
    /// kube-apiserver keeps a watch cache per resource.
    #[tokio::test]
    async fn a_quiet_watch_outlives_other_resources_writes() -> Result<()> {
        let server = ApiServer::start_with(ApiServerOptions {
            history_limit: 4,
            ..ApiServerOptions::default()
        })?;
        let http = Http::new(&server);
        let path = "/api/v1/namespaces/default/configmaps";
        server.create(configmap("quiet", json!({})))?;
        let start = server.resource_version();
        let mut w = http
            .watch(&format!("{path}?watch=true&resourceVersion={start}"))
            .await?;
        // Let the watch take its first read before the history moves past `start`.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 0..10 {
            server.create(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("filler-{i}"), "namespace": "default"},
            }))?;
        }
        http.merge(
            &format!("{path}/quiet"),
            &json!({"metadata": {"labels": {"app": "web"}}}),
        )
        .await?;
        assert_eq!(
            w.next_brief().await?,
            (
                "MODIFIED".into(),
                "quiet".into(),
                server.resource_version().to_string()
            )
        );
        // A new watch from before those writes is still too old.
        let mut old = http
            .watch(&format!("{path}?watch=true&resourceVersion={start}"))
            .await?;
        let error = old.next().await?.context("error event")?;
        assert_eq!(error["object"]["code"], 410);
        Ok(())
    }

    #[tokio::test]
    async fn watch_selector_transitions_bookmarks_timeout_and_gone() -> Result<()> {
        let server = ApiServer::start_with(ApiServerOptions {
            history_limit: 8,
            ..ApiServerOptions::default()
        })?;
        let http = Http::new(&server);
        let path = "/api/v1/namespaces/default/configmaps";
        server.create(configmap("m", json!({"app": "web"})))?;
        let start = server.resource_version();
        let mut w = http.watch(&format!("{path}?watch=true&labelSelector=app%3Dweb&resourceVersion={start}&allowWatchBookmarks=true&timeoutSeconds=2")).await?;
        http.merge(
            &format!("{path}/m"),
            &json!({"metadata": {"labels": {"app": "db"}}}),
        )
        .await?;
        assert_eq!(
            w.next_brief().await?,
            (
                "DELETED".into(),
                "m".into(),
                server.resource_version().to_string()
            )
        );
        http.merge(
            &format!("{path}/m"),
            &json!({"metadata": {"labels": {"app": "web"}}}),
        )
        .await?;
        assert_eq!(w.next_brief().await?.0, "ADDED");
        // Then the timeout: a last bookmark at the latest resourceVersion, and the end of the stream.
        server.create(configmap("unrelated", json!({})))?;
        let last = server.resource_version();
        let bookmark = w.next().await?.context("bookmark")?;
        assert_eq!(bookmark["type"], "BOOKMARK");
        assert_eq!(
            bookmark["object"]["metadata"]["resourceVersion"],
            last.to_string()
        );
        assert_eq!(bookmark["object"]["kind"], "ConfigMap");
        assert!(w.next().await?.is_none(), "stream ends at timeoutSeconds");

        // More changes than the history keeps: resuming from before them is 410 Gone.
        for i in 0..10 {
            server.create(configmap(&format!("filler-{i}"), json!({})))?;
        }
        let mut old = http
            .watch(&format!("{path}?watch=true&resourceVersion={start}"))
            .await?;
        let error = old.next().await?.context("error event")?;
        assert_eq!(error["type"], "ERROR");
        assert_eq!(error["object"]["code"], 410);
        assert_eq!(error["object"]["reason"], "Expired");
        assert!(old.next().await?.is_none());

        // Streaming lists: initial objects, then the initial-events-end bookmark.
        let mut streaming = http.watch(&format!("{path}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=app")).await?;
        assert_eq!(
            streaming.next_brief().await?,
            (
                "ADDED".into(),
                "m".into(),
                server
                    .get("v1", "ConfigMap", None, "m")
                    .map(|m| rv(&m).to_string())
                    .unwrap()
            )
        );
        let end = streaming.next().await?.unwrap();
        assert_eq!(end["type"], "BOOKMARK");
        assert_eq!(
            end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
        Ok(())
    }

    #[tokio::test]
    async fn metadata_only_and_aggregated_discovery() -> Result<()> {
        let server = ApiServer::start()?;
        server.create(service("web"))?;
        let meta = Http::accepting(
            &server,
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        );
        let (code, list) = meta.get("/api/v1/namespaces/default/services").await?;
        assert_eq!(code, 200);
        assert_eq!(list["kind"], "PartialObjectMetadataList");
        assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
        assert_eq!(list["items"][0]["metadata"]["name"], "web");
        assert!(list["items"][0].get("spec").is_none());
        let mut w = meta
            .watch("/api/v1/namespaces/default/services?watch=true")
            .await?;
        let added = w.next().await?.context("event")?;
        assert_eq!(added["object"]["kind"], "PartialObjectMetadata");

        let aggregated = Http::accepting(
            &server,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        );
        let (_, core) = aggregated.get("/api").await?;
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        let resources = &core["items"][0]["versions"][0]["resources"];
        let services = resources
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "services")
            .unwrap();
        assert_eq!(services["scope"], "Namespaced");
        assert_eq!(services["subresources"][0]["subresource"], "status");
        let (_, apis) = aggregated.get("/apis").await?;
        assert!(
            apis["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["metadata"]["name"] == "coordination.k8s.io")
        );
        Ok(())
    }

    #[test]
    fn usable_without_an_async_runtime() -> Result<()> {
        let server = ApiServer::start()?;
        let dir = sluice_e2e::temp_dir()?;
        let path = server.write_kubeconfig(dir.path())?;
        let text = std::fs::read_to_string(&path)?;
        assert!(text.contains(&format!("server: {}", server.url())));
        server.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}))?;
        let applied = server.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"x": "y"}}}))?;
        assert_eq!(applied["metadata"]["labels"]["x"], "y");
        assert_eq!(
            applied["data"],
            json!({}),
            "the test manager stopped applying data"
        );
        let err = server.create(configmap("cm", json!({}))).unwrap_err();
        assert_eq!(err.code, 409);
        let url = server.url();
        drop(server);
        // Stopped: the port no longer answers.
        let addr = url.trim_start_matches("http://").to_string();
        assert!(std::net::TcpStream::connect(addr).is_err());
        Ok(())
    }
}

mod kube_rs {
    use std::sync::Arc;

    use futures::StreamExt;
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kube::core::PartialObjectMeta;
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{self, finalizer};
    use kube::runtime::wait::{await_condition, conditions};
    use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
    use kube::{Client, Config, Resource, ResourceExt};
    use serde::Deserialize;
    use sluice::api::ingressroute::VirtualHost;
    use sluice::api::{IngressRoute, IngressRouteSpec};

    use super::*;

    /// A kube client built the way the operator builds one: from a kubeconfig file.
    async fn client(server: &ApiServer) -> Result<Client> {
        let dir = sluice_e2e::temp_dir()?;
        let path = server.write_kubeconfig(dir.path())?;
        let kubeconfig = Kubeconfig::read_from(&path)?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    fn api_code<T: std::fmt::Debug>(result: kube::Result<T>) -> u16 {
        match result {
            Err(kube::Error::Api(status)) => status.code,
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    /// Polls `f` until it holds; a hang guard, not a timing assertion.
    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        sluice_e2e::wait_until(what, PATIENCE, async || f())
            .await
            .unwrap();
    }

    async fn next_event<S, K>(stream: &mut S) -> Result<watcher::Event<K>>
    where
        S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
    {
        let item = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .context("no watcher event in time")?;
        Ok(item.context("watcher ended")??)
    }

    #[tokio::test]
    async fn services_crud_apply_and_status() -> Result<()> {
        let server = ApiServer::start()?;
        let client = client(&server).await?;
        let info = client.apiserver_version().await?;
        assert_eq!(info.major, "1");
        let services: Api<Service> = Api::namespaced(client.clone(), "default");

        let svc: Service = serde_json::from_value(service("web"))?;
        let created = services.create(&PostParams::default(), &svc).await?;
        assert!(created.metadata.uid.is_some());
        assert_eq!(created.metadata.generation, Some(1));
        assert_eq!(
            api_code(services.create(&PostParams::default(), &svc).await),
            409
        );
        assert_eq!(
            services.get("web").await?.metadata.uid,
            created.metadata.uid
        );
        assert!(services.get_opt("missing").await?.is_none());
        assert_eq!(api_code(services.get("missing").await), 404);

        let applied = services
            .patch(
                "web",
                &PatchParams::apply("sluice").force(),
                &Patch::Apply(json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "web", "labels": {"app.kubernetes.io/managed-by": "sluice"}},
                    "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 8080, "name": "alt"}]},
                })),
            )
            .await?;
        assert_eq!(
            applied
                .labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("sluice")
        );
        // Service ports merge by port and protocol: the creator's port 80 stays, owned by it
        // (and, with two ports, each needs a name).
        let ports: Vec<i32> = applied
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, vec![80, 8080]);
        assert_eq!(applied.metadata.generation, Some(2));

        let with_status = services
            .patch_status(
                "web",
                &PatchParams::apply("sluice").force(),
                &Patch::Apply(json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "web"},
                    "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
                })),
            )
            .await?;
        let ingress = with_status
            .status
            .unwrap()
            .load_balancer
            .unwrap()
            .ingress
            .unwrap();
        assert_eq!(ingress[0].ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(with_status.metadata.generation, Some(2));
        let merged = services
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"note": "x"}}})),
            )
            .await?;
        assert_eq!(
            merged.annotations().get("note").map(String::as_str),
            Some("x")
        );

        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(service("db"))?,
            )
            .await?;
        let listed = services
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=sluice"))
            .await?;
        assert_eq!(
            listed
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect::<Vec<_>>(),
            ["web"]
        );
        assert!(listed.metadata.resource_version.is_some());
        let everywhere: Api<Service> = Api::all(client.clone());
        assert_eq!(
            everywhere.list(&ListParams::default()).await?.items.len(),
            2
        );
        let paged = everywhere.list(&ListParams::default().limit(1)).await?;
        assert_eq!(paged.items.len(), 1);
        assert!(paged.metadata.continue_.is_some());
        let meta_list = services.list_metadata(&ListParams::default()).await?;
        assert_eq!(meta_list.items.len(), 2);

        services.delete("web", &DeleteParams::default()).await?;
        assert!(services.get_opt("web").await?.is_none());
        assert_eq!(
            api_code(services.delete("web", &DeleteParams::default()).await),
            404
        );
        Ok(())
    }

    #[tokio::test]
    async fn crds_from_the_operator_and_ingressroute_crud() -> Result<()> {
        let server = ApiServer::start()?;
        let client = client(&server).await?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for doc in serde_norway::Deserializer::from_str(&sluice::api::crds_yaml()?) {
            let crd = CustomResourceDefinition::deserialize(doc)?;
            crds.patch(
                &crd.name_any(),
                &PatchParams::apply("sluice").force(),
                &Patch::Apply(&crd),
            )
            .await?;
        }
        for name in [
            "ingressroutes.contour.heptio.com",
            "tlscertificatedelegations.contour.heptio.com",
            "gateways.sluice.dev",
        ] {
            let established = tokio::time::timeout(
                PATIENCE,
                await_condition(crds.clone(), name, conditions::is_crd_established()),
            )
            .await??;
            assert!(established.is_some(), "{name}");
        }
        let discovery = kube::discovery::Discovery::new(client.clone())
            .run()
            .await?;
        assert!(discovery.has_group("contour.heptio.com") && discovery.has_group("sluice.dev"));
        let aggregated = kube::discovery::Discovery::new(client.clone())
            .run_aggregated()
            .await?;
        let (resource, caps) = aggregated
            .groups()
            .find(|g| g.name() == "contour.heptio.com")
            .and_then(|g| g.recommended_kind("IngressRoute"))
            .context("IngressRoute in aggregated discovery")?;
        assert_eq!(resource.plural, "ingressroutes");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

        let routes: Api<IngressRoute> = Api::namespaced(client.clone(), "default");
        let route = IngressRoute::new(
            "root",
            IngressRouteSpec {
                virtualhost: Some(VirtualHost {
                    fqdn: "a.example.com".into(),
                    tls: None,
                }),
                ..IngressRouteSpec::default()
            },
        );
        let created = routes.create(&PostParams::default(), &route).await?;
        assert_eq!(created.spec, route.spec);
        assert_eq!(created.metadata.generation, Some(1));
        let mut changed = routes.get("root").await?;
        if let Some(vh) = changed.spec.virtualhost.as_mut() {
            vh.fqdn = "b.example.com".into();
        }
        let replaced = routes
            .replace("root", &PostParams::default(), &changed)
            .await?;
        assert_eq!(replaced.metadata.generation, Some(2));
        assert_eq!(
            api_code(
                routes
                    .replace("root", &PostParams::default(), &changed)
                    .await
            ),
            409,
            "stale resourceVersion"
        );

        let status = routes
            .patch_status(
                "root",
                &PatchParams::apply("sluice").force(),
                &Patch::Apply(json!({
                    "apiVersion": "contour.heptio.com/v1beta1",
                    "kind": "IngressRoute",
                    "metadata": {"name": "root"},
                    "status": {"currentStatus": "valid", "description": "valid IngressRoute"},
                })),
            )
            .await?;
        let st = status.status.context("status")?;
        assert_eq!(
            (st.current_status.as_str(), st.description.as_str()),
            ("valid", "valid IngressRoute")
        );
        assert_eq!(
            status.metadata.generation,
            Some(2),
            "status writes keep the generation"
        );
        assert_eq!(routes.list(&ListParams::default()).await?.items.len(), 1);
        routes.delete("root", &DeleteParams::default()).await?;
        assert!(routes.get_opt("root").await?.is_none());

        crds.delete("ingressroutes.contour.heptio.com", &DeleteParams::default())
            .await?;
        assert_eq!(api_code(routes.list(&ListParams::default()).await), 404);
        Ok(())
    }

    #[tokio::test]
    async fn watcher_sees_changes_in_order() -> Result<()> {
        let server = ApiServer::start()?;
        let client = client(&server).await?;
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(service("existing"))?,
            )
            .await?;

        let mut stream = watcher(services.clone(), watcher::Config::default()).boxed();
        assert!(matches!(
            next_event(&mut stream).await?,
            watcher::Event::Init
        ));
        match next_event(&mut stream).await? {
            watcher::Event::InitApply(s) => assert_eq!(s.name_any(), "existing"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            next_event(&mut stream).await?,
            watcher::Event::InitDone
        ));

        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(service("new"))?,
            )
            .await?;
        services
            .patch(
                "new",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}})),
            )
            .await?;
        services.delete("new", &DeleteParams::default()).await?;
        match next_event(&mut stream).await? {
            watcher::Event::Apply(s) => assert!(s.name_any() == "new" && s.labels().is_empty()),
            other => panic!("{other:?}"),
        }
        match next_event(&mut stream).await? {
            watcher::Event::Apply(s) => {
                assert_eq!(s.labels().get("v").map(String::as_str), Some("2"))
            }
            other => panic!("{other:?}"),
        }
        match next_event(&mut stream).await? {
            watcher::Event::Delete(s) => assert_eq!(s.name_any(), "new"),
            other => panic!("{other:?}"),
        }

        // Metadata-only watches get PartialObjectMetadata.
        let metadata: Api<PartialObjectMeta<Service>> = Api::namespaced(client.clone(), "default");
        let mut meta = watcher(metadata, watcher::Config::default()).boxed();
        assert!(matches!(next_event(&mut meta).await?, watcher::Event::Init));
        match next_event(&mut meta).await? {
            watcher::Event::InitApply(m) => assert_eq!(m.name_any(), "existing"),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[tokio::test]
    async fn reflector_survives_watch_timeouts() -> Result<()> {
        let server = ApiServer::start()?;
        let client = client(&server).await?;
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let (reader, writer) = reflector::store::<Service>();
        let stream = reflector(
            writer,
            watcher(services.clone(), watcher::Config::default().timeout(1)),
        );
        let task = tokio::spawn(stream.applied_objects().for_each(|_| async {}));
        tokio::time::timeout(PATIENCE, reader.wait_until_ready()).await??;

        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(service("a"))?,
            )
            .await?;
        eventually("a in the store", || reader.state().len() == 1).await;
        // Let the server end the watch (timeoutSeconds=1) twice over; the reflector re-watches.
        let watches = server.watches_started();
        server
            .wait_for(PATIENCE, |s| {
                (s.watches_started() >= watches + 2).then_some(())
            })
            .await
            .context("re-watch")?;
        services
            .create(
                &PostParams::default(),
                &serde_json::from_value(service("b"))?,
            )
            .await?;
        services.delete("a", &DeleteParams::default()).await?;
        eventually("only b in the store", || {
            reader
                .state()
                .iter()
                .map(|s| s.name_any())
                .collect::<Vec<_>>()
                == ["b"]
        })
        .await;
        task.abort();
        Ok(())
    }

    #[tokio::test]
    async fn watcher_relists_after_gone() -> Result<()> {
        let server = ApiServer::start_with(ApiServerOptions {
            history_limit: 4,
            ..ApiServerOptions::default()
        })?;
        let client = client(&server).await?;
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let config = watcher::Config::default()
            .labels("app=x")
            .disable_bookmarks()
            .timeout(1);
        let mut stream = watcher(services.clone(), config).boxed();
        assert!(matches!(
            next_event(&mut stream).await?,
            watcher::Event::Init
        ));
        assert!(matches!(
            next_event(&mut stream).await?,
            watcher::Event::InitDone
        ));
        // Unrelated writes push the watcher's resourceVersion out of the history; its next watch
        // (after the 1 s timeout) gets 410 and it lists again.
        for i in 0..10 {
            server.create(configmap(&format!("filler-{i}"), json!({})))?;
        }
        let error = tokio::time::timeout(PATIENCE, stream.next())
            .await?
            .context("ended")?;
        match error {
            Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
            other => panic!("expected 410, got {other:?}"),
        }
        assert!(matches!(
            next_event(&mut stream).await?,
            watcher::Event::Init
        ));
        assert!(matches!(
            next_event(&mut stream).await?,
            watcher::Event::InitDone
        ));
        let mut labeled = service("x");
        labeled["metadata"]["labels"] = json!({"app": "x"});
        services
            .create(&PostParams::default(), &serde_json::from_value(labeled)?)
            .await?;
        match next_event(&mut stream).await? {
            watcher::Event::Apply(s) => assert_eq!(s.name_any(), "x"),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct ReconcileError(#[from] kube::Error);

    async fn reconcile(cm: Arc<ConfigMap>, client: Arc<Client>) -> Result<Action, ReconcileError> {
        let ns = cm.namespace().unwrap_or_else(|| "default".into());
        let secrets: Api<Secret> = Api::namespaced((*client).clone(), &ns);
        let name = format!("{}-secret", cm.name_any());
        let owner = cm.controller_owner_ref(&());
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "ownerReferences": [owner]},
            "data": {"from": "Y29uZmlnbWFw"},
        });
        secrets
            .patch(
                &name,
                &PatchParams::apply("controller").force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(Action::await_change())
    }

    fn error_policy(_: Arc<ConfigMap>, _: &ReconcileError, _: Arc<Client>) -> Action {
        Action::requeue(Duration::from_millis(200))
    }

    #[tokio::test]
    async fn controller_owns_children_and_cascade_deletes_them() -> Result<()> {
        let server = ApiServer::start()?;
        let client = client(&server).await?;
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
        let wc = watcher::Config::default().timeout(1);
        let controller = Controller::new(configmaps.clone(), wc.clone())
            .owns(secrets.clone(), wc)
            .run(reconcile, error_policy, Arc::new(client.clone()))
            .for_each(|_| async {});
        let task = tokio::spawn(controller);

        let secret = |s: &ApiServer, name: &str| s.get("v1", "Secret", Some("default"), name);
        configmaps
            .create(
                &PostParams::default(),
                &serde_json::from_value(configmap("one", json!({})))?,
            )
            .await?;
        let made = server
            .wait_for(PATIENCE, |s| secret(s, "one-secret"))
            .await
            .context("secret made")?;
        let cm = server
            .get("v1", "ConfigMap", None, "one")
            .context("configmap")?;
        assert_eq!(
            made["metadata"]["ownerReferences"][0]["uid"],
            cm["metadata"]["uid"]
        );

        // The controller watches what it owns: a deleted child comes back.
        server.delete("v1", "Secret", None, "one-secret")?;
        server
            .wait_for(PATIENCE, |s| secret(s, "one-secret"))
            .await
            .context("secret remade")?;

        // Past a few watch timeouts, it still reacts.
        let watches = server.watches_started();
        server
            .wait_for(PATIENCE, |s| {
                (s.watches_started() >= watches + 4).then_some(())
            })
            .await
            .context("re-watch")?;
        configmaps
            .create(
                &PostParams::default(),
                &serde_json::from_value(configmap("two", json!({})))?,
            )
            .await?;
        server
            .wait_for(PATIENCE, |s| secret(s, "two-secret"))
            .await
            .context("second secret")?;

        // Deleting the owner garbage-collects the child.
        configmaps
            .delete("one", &DeleteParams::background())
            .await?;
        assert!(secret(&server, "one-secret").is_none());
        assert!(secret(&server, "two-secret").is_some());
        task.abort();
        Ok(())
    }

    #[tokio::test]
    async fn finalizer_helper_holds_deletion_until_cleanup() -> Result<()> {
        let server = ApiServer::start()?;
        let client = client(&server).await?;
        let configmaps: Api<ConfigMap> = Api::namespaced(client, "default");
        configmaps
            .create(
                &PostParams::default(),
                &serde_json::from_value(configmap("f", json!({})))?,
            )
            .await?;
        const FINALIZER: &str = "sluice.dev/cleanup";
        let handled = |event: finalizer::Event<ConfigMap>| async move {
            Ok::<_, ReconcileError>(match event {
                finalizer::Event::Apply(_) => Action::await_change(),
                finalizer::Event::Cleanup(_) => Action::requeue(Duration::from_secs(3600)),
            })
        };
        // First pass adds the finalizer (JSON patch: test null, add).
        finalizer(
            &configmaps,
            FINALIZER,
            Arc::new(configmaps.get("f").await?),
            handled,
        )
        .await?;
        assert_eq!(configmaps.get("f").await?.finalizers(), [FINALIZER]);
        // A second pass sees it and reconciles; deletion then waits for the cleanup.
        let action = finalizer(
            &configmaps,
            FINALIZER,
            Arc::new(configmaps.get("f").await?),
            handled,
        )
        .await?;
        assert_eq!(action, Action::await_change());
        configmaps.delete("f", &DeleteParams::default()).await?;
        let deleting = configmaps.get("f").await?;
        assert!(deleting.metadata.deletion_timestamp.is_some());
        let action = finalizer(&configmaps, FINALIZER, Arc::new(deleting), handled).await?;
        assert_eq!(
            action,
            Action::requeue(Duration::from_secs(3600)),
            "cleanup ran"
        );
        assert!(configmaps.get_opt("f").await?.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn lease_create_and_replace_with_conflicts() -> Result<()> {
        let server = ApiServer::start()?;
        let client = client(&server).await?;
        let leases: Api<Lease> = Api::namespaced(client, "default");
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some("sluice-leader".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("pod-a".into()),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            }),
        };
        let created = leases.create(&PostParams::default(), &lease).await?;
        assert_eq!(
            api_code(leases.create(&PostParams::default(), &lease).await),
            409
        );

        let mut taken = created.clone();
        if let Some(spec) = taken.spec.as_mut() {
            spec.holder_identity = Some("pod-b".into());
            spec.lease_transitions = Some(1);
        }
        let replaced = leases
            .replace("sluice-leader", &PostParams::default(), &taken)
            .await?;
        assert_eq!(
            replaced
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref()),
            Some("pod-b")
        );
        assert_ne!(replaced.resource_version(), created.resource_version());

        // Pod A, still holding the old resourceVersion, loses the race.
        let mut renew = created.clone();
        if let Some(spec) = renew.spec.as_mut() {
            spec.lease_duration_seconds = Some(30);
        }
        assert_eq!(
            api_code(
                leases
                    .replace("sluice-leader", &PostParams::default(), &renew)
                    .await
            ),
            409
        );
        let current = leases.get("sluice-leader").await?;
        assert_eq!(
            current.spec.and_then(|s| s.holder_identity).as_deref(),
            Some("pod-b")
        );
        assert_eq!(current.metadata.uid, created.metadata.uid);
        Ok(())
    }

    /// A kubeconfig user with `as:` makes kube-rs send `Impersonate-User`; the server records it
    /// and authorizes the request against the stored RBAC objects: what no bound rule grants is
    /// 403 Forbidden, as kube-apiserver words it.
    #[tokio::test]
    async fn impersonated_requests_are_authorized_by_rbac() -> Result<()> {
        let server = ApiServer::start()?;
        for ns in ["a", "b"] {
            server.create(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )?;
        }
        let sa = "system:serviceaccount:a:op";
        let dir = sluice_e2e::temp_dir()?;
        let path = server.write_kubeconfig_as(dir.path(), "tok", sa)?;
        let kubeconfig = Kubeconfig::read_from(&path)?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let client = Client::try_from(config)?;
        let cms_a: Api<ConfigMap> = Api::namespaced(client.clone(), "a");
        let cms_b: Api<ConfigMap> = Api::namespaced(client.clone(), "b");

        // Nothing is granted yet.
        let denied = cms_a.list(&ListParams::default()).await;
        let Err(kube::Error::Api(status)) = denied else {
            panic!("expected 403, got {denied:?}");
        };
        assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            status.message,
            r#"configmaps is forbidden: User "system:serviceaccount:a:op" cannot list resource "configmaps" in API group "" in the namespace "a""#
        );
        let last = server.requests().pop().expect("a request");
        assert_eq!(
            (last.user.as_str(), last.impersonated.as_str(), last.code),
            ("tok", sa, 403)
        );

        // A ClusterRole bound cluster-wide to the service account: read everywhere.
        for obj in [
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "read"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
                          {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "read"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "read"},
                "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "a"}]}),
            // In namespace b only, and only the ConfigMap named "mine": update.
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "write", "namespace": "b"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
                          {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["mine"], "verbs": ["patch"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "write", "namespace": "b"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "write"},
                "subjects": [{"kind": "Group", "name": "system:serviceaccounts:a"}]}),
        ] {
            server.create(obj)?;
        }
        assert!(cms_a.list(&ListParams::default()).await?.items.is_empty());
        assert!(cms_b.list(&ListParams::default()).await?.items.is_empty());
        let cm = |name: &str| -> ConfigMap {
            serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
        };
        assert_eq!(
            api_code(cms_a.create(&PostParams::default(), &cm("mine")).await),
            403
        );
        cms_b.create(&PostParams::default(), &cm("mine")).await?;
        cms_b.create(&PostParams::default(), &cm("other")).await?;
        let patch = Patch::Merge(json!({"data": {"k": "w"}}));
        cms_b.patch("mine", &PatchParams::default(), &patch).await?;
        let denied = cms_b.patch("other", &PatchParams::default(), &patch).await;
        let Err(kube::Error::Api(status)) = denied else {
            panic!("expected 403, got {denied:?}");
        };
        assert_eq!(
            status.message,
            r#"configmaps "other" is forbidden: User "system:serviceaccount:a:op" cannot patch resource "configmaps" in API group "" in the namespace "b""#
        );
        assert_eq!(
            api_code(cms_b.delete("mine", &DeleteParams::default()).await),
            403
        );
        // A subresource is its own resource: services/status, not services.
        server.create(service("web"))?;
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        assert_eq!(api_code(services.get("web").await), 403);
        services
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {}}})),
            )
            .await?;
        // Discovery needs no grant.
        client.apiserver_version().await?;
        Ok(())
    }
}

/// Rules kube-apiserver enforces, enforced the same way (code, reason, field) by the double.
mod strict {
    use super::*;

    /// Asserts a 422 Invalid naming `field` among its causes.
    fn assert_invalid(code: u16, status: &Value, field: &str, what: &str) {
        assert_eq!(code, 422, "{what}: {status}");
        assert_eq!(status["kind"], "Status", "{what}");
        assert_eq!(status["reason"], "Invalid", "{what}: {status}");
        let causes = status["details"]["causes"].as_array().cloned();
        let fields: Vec<String> = causes
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["field"].as_str().map(str::to_owned))
            .collect();
        assert!(
            fields.iter().any(|f| f == field),
            "{what}: want {field} in {fields:?}: {status}"
        );
    }

    fn assert_bad_request(code: u16, status: &Value, what: &str) {
        assert_eq!(code, 400, "{what}: {status}");
        assert_eq!(status["reason"], "BadRequest", "{what}: {status}");
    }

    const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

    #[tokio::test]
    async fn names_and_generate_names() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let (code, _) = http
            .post(CONFIGMAPS, &configmap("a.b-c", json!({})))
            .await?;
        assert_eq!(code, 201);
        for bad in ["Web", "a_b", "-a", "a..b"] {
            let (code, status) = http.post(CONFIGMAPS, &configmap(bad, json!({}))).await?;
            assert_invalid(code, &status, "metadata.name", bad);
        }
        // Namespaces are DNS-1123 labels, Services DNS-1035 labels.
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}});
        let (code, status) = http.post("/api/v1/namespaces", &ns).await?;
        assert_invalid(code, &status, "metadata.name", "namespace a.b");
        let (code, status) = http
            .post("/api/v1/namespaces/default/services", &service("1web"))
            .await?;
        assert_invalid(code, &status, "metadata.name", "service 1web");

        // generateName: a prefix (trailing '-' allowed), checked like a name, kept to 58
        // characters so that the generated name fits in 63.
        let generated = |prefix: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": prefix}});
        let (code, made) = http.post(CONFIGMAPS, &generated("web-")).await?;
        assert_eq!(code, 201, "{made}");
        let name = made["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        for bad in ["Web-", "web_", "-web"] {
            let (code, status) = http.post(CONFIGMAPS, &generated(bad)).await?;
            assert_invalid(code, &status, "metadata.generateName", bad);
        }
        let long = "g".repeat(70);
        let (code, made) = http.post(CONFIGMAPS, &generated(&long)).await?;
        assert_eq!(code, 201, "{made}");
        let name = made["metadata"]["name"].as_str().unwrap();
        assert_eq!(name.len(), 63, "{name}");
        assert!(name.starts_with(&"g".repeat(58)), "{name}");
        Ok(())
    }

    #[tokio::test]
    async fn label_and_annotation_rules() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let good = json!({
            "app": "web",
            "sluice.dev/gateway": "edge",
            "example.com/Mixed_Case.name-1": "A.b_c-1",
            "empty": "",
        });
        let (code, created) = http.post(CONFIGMAPS, &configmap("good", good)).await?;
        assert_eq!(code, 201, "{created}");

        for (labels, field) in [
            (
                json!({"sluice.dev/gateway": "ns/name"}),
                "metadata.labels[sluice.dev/gateway]",
            ),
            (json!({"a": "-x"}), "metadata.labels[a]"),
            (json!({"a": "x".repeat(64)}), "metadata.labels[a]"),
            (json!({"a/b/c": "x"}), "metadata.labels"),
            (json!({"Example.com/a": "x"}), "metadata.labels"),
            (json!({"a_": "x"}), "metadata.labels"),
            (json!({"x".repeat(64): "x"}), "metadata.labels"),
        ] {
            let (code, status) = http
                .post(CONFIGMAPS, &configmap("bad", labels.clone()))
                .await?;
            assert_invalid(code, &status, field, &labels.to_string());
        }
        // The same rules on update, merge patch and server-side apply.
        let (code, status) = http
            .merge(
                &format!("{CONFIGMAPS}/good"),
                &json!({"metadata": {"labels": {"app": "a/b"}}}),
            )
            .await?;
        assert_invalid(code, &status, "metadata.labels[app]", "merge patch");
        let mut replaced = created.clone();
        replaced["metadata"]["labels"] = json!({"app": "a b"});
        let (code, status) = http.put(&format!("{CONFIGMAPS}/good"), &replaced).await?;
        assert_invalid(code, &status, "metadata.labels[app]", "update");
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "applied", "labels": {"k": "v/w"}}});
        let (code, status) = http
            .patch(
                &format!("{CONFIGMAPS}/applied?fieldManager=t"),
                "application/apply-patch+yaml",
                &applied.to_string(),
            )
            .await?;
        assert_invalid(code, &status, "metadata.labels[k]", "apply");
        assert!(server.get("v1", "ConfigMap", None, "applied").is_none());

        // Annotation keys follow the same rules, checked lowercased; values are free, but all
        // keys and values together may take at most 256 KiB.
        let annotated = |name: &str, annotations: Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "annotations": annotations}})
        };
        let (code, made) = http
            .post(
                CONFIGMAPS,
                &annotated("ann", json!({"Example.COM/Any": "a/b: anything", "k": "v"})),
            )
            .await?;
        assert_eq!(code, 201, "{made}");
        for key in ["a/b/c", "-a", "example.com/"] {
            let (code, status) = http
                .post(CONFIGMAPS, &annotated("bad", json!({key: "v"})))
                .await?;
            assert_invalid(code, &status, "metadata.annotations", key);
        }
        let limit = 256 * 1024;
        let (code, made) = http
            .post(
                CONFIGMAPS,
                &annotated("full", json!({"k": "v".repeat(limit - 1)})),
            )
            .await?;
        assert_eq!(code, 201, "{}", made["message"]);
        let (code, status) = http
            .post(
                CONFIGMAPS,
                &annotated("over", json!({"k": "v".repeat(limit)})),
            )
            .await?;
        assert_invalid(code, &status, "metadata.annotations", "over 256 KiB");
        Ok(())
    }

    #[tokio::test]
    async fn label_and_field_selector_rules() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        server.create(configmap("a", json!({"sluice.dev/gateway": "edge"})))?;
        for (selector, want) in [
            ("sluice.dev%2Fgateway%3Dedge", 1),
            ("sluice.dev%2Fgateway+in+%28edge%2Cother%29", 1),
            ("sluice.dev%2Fgateway%3D", 0),
        ] {
            let (code, list) = http
                .get(&format!("{CONFIGMAPS}?labelSelector={selector}"))
                .await?;
            assert_eq!(code, 200, "{selector}: {list}");
            assert_eq!(names(&list).len(), want, "{selector}");
        }
        for selector in [
            // A value with '/', as a namespace/name would be.
            "sluice.dev%2Fgateway%3Ddefault%2Fedge",
            "sluice.dev%2Fgateway%21%3Da%2Fb",
            "sluice.dev%2Fgateway+in+%28edge%2Cdefault%2Fedge%29",
            "a%2Fb%2Fc%3Dx",
            "-a",
            "a+in+%28%29",
        ] {
            for path in [
                format!("{CONFIGMAPS}?labelSelector={selector}"),
                format!("{CONFIGMAPS}?watch=true&labelSelector={selector}"),
            ] {
                let (code, status) = http.get(&path).await?;
                assert_bad_request(code, &status, &path);
            }
        }

        // Field selectors: metadata.name and metadata.namespace everywhere, a few more per kind.
        for path in [
            format!("{CONFIGMAPS}?fieldSelector=metadata.name%3Da"),
            "/api/v1/secrets?fieldSelector=type%21%3Dhelm.sh%2Frelease.v1".to_string(),
            "/api/v1/pods?fieldSelector=status.phase%3DRunning%2Cspec.nodeName%3Dn".to_string(),
            "/api/v1/services?fieldSelector=spec.type%3DClusterIP".to_string(),
            "/api/v1/events?fieldSelector=involvedObject.name%3Da".to_string(),
        ] {
            let (code, list) = http.get(&path).await?;
            assert_eq!(code, 200, "{path}: {list}");
        }
        for path in [
            format!("{CONFIGMAPS}?fieldSelector=data.k%3Dv"),
            format!("{CONFIGMAPS}?watch=true&fieldSelector=data.k%3Dv"),
            "/api/v1/secrets?fieldSelector=data.x%3Dy".to_string(),
            "/apis/apps/v1/daemonsets?fieldSelector=spec.template.metadata.name%3Dx".to_string(),
        ] {
            let (code, status) = http.get(&path).await?;
            assert_bad_request(code, &status, &path);
            assert!(
                status["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("field label not supported"),
                "{status}"
            );
        }
        Ok(())
    }

    fn endpoints(name: &str, ip: &str, list: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name},
               "subsets": [{list: [{"ip": ip}], "ports": [{"port": 80, "protocol": "TCP"}]}]})
    }

    fn slice(name: &str, address_type: &str, address: &str) -> Value {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": address_type,
               "endpoints": [{"addresses": [address]}],
               "ports": [{"port": 80, "protocol": "TCP"}]})
    }

    const SPECIAL: [&str; 11] = [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "0.0.0.0",
        "::",
        "169.254.169.254",
        "fe80::1",
        "224.0.0.251",
        "ff02::1",
        "::ffff:127.0.0.1",
        "not-an-ip",
    ];

    #[tokio::test]
    async fn endpoints_refuse_special_addresses() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let path = "/api/v1/namespaces/default/endpoints";
        for ip in ["10.0.0.1", "192.0.2.7", "2001:db8::1", "224.0.1.1"] {
            let (code, made) = http.post(path, &endpoints("ok", ip, "addresses")).await?;
            assert_eq!(code, 201, "{ip}: {made}");
            server.delete("v1", "Endpoints", None, "ok")?;
        }
        for ip in SPECIAL {
            for list in ["addresses", "notReadyAddresses"] {
                let (code, status) = http.post(path, &endpoints("bad", ip, list)).await?;
                assert_invalid(code, &status, &format!("subsets[0].{list}[0].ip"), ip);
            }
        }
        // Through server-side apply and from in-process seeding too.
        let (code, status) = http
            .patch(
                &format!("{path}/web?fieldManager=t"),
                "application/apply-patch+yaml",
                &endpoints("web", "127.0.0.1", "addresses").to_string(),
            )
            .await?;
        assert_invalid(code, &status, "subsets[0].addresses[0].ip", "apply");
        let err = server
            .apply(endpoints("web", "127.0.0.1", "addresses"))
            .unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        Ok(())
    }

    #[tokio::test]
    async fn endpoint_slices_refuse_special_addresses() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
        for (address_type, address) in [
            ("IPv4", "10.0.0.1"),
            ("IPv6", "2001:db8::1"),
            ("FQDN", "web.example.com"),
        ] {
            let (code, made) = http.post(path, &slice("ok", address_type, address)).await?;
            assert_eq!(code, 201, "{address}: {made}");
            server.delete("discovery.k8s.io/v1", "EndpointSlice", None, "ok")?;
        }
        for ip in SPECIAL {
            let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
            let (code, status) = http.post(path, &slice("bad", family, ip)).await?;
            assert_invalid(code, &status, "endpoints[0].addresses[0]", ip);
        }
        // The address must be of the slice's family; the type must be a known one.
        for (address_type, address) in [("IPv4", "2001:db8::1"), ("IPv6", "10.0.0.1")] {
            let (code, status) = http
                .post(path, &slice("bad", address_type, address))
                .await?;
            assert_invalid(code, &status, "endpoints[0].addresses[0]", address);
        }
        let (code, status) = http.post(path, &slice("bad", "IP", "10.0.0.1")).await?;
        assert_invalid(code, &status, "addressType", "addressType IP");
        Ok(())
    }

    #[tokio::test]
    async fn loopback_endpoints_only_when_allowed() -> Result<()> {
        let server = ApiServer::start_with(ApiServerOptions {
            allow_loopback_endpoints: true,
            ..ApiServerOptions::default()
        })?;
        server.create(endpoints("web", "127.0.0.1", "addresses"))?;
        server.create(slice("web-v4", "IPv4", "127.0.0.1"))?;
        server.create(slice("web-v6", "IPv6", "::1"))?;
        // Only loopback: link-local and unspecified addresses stay refused.
        for ip in ["169.254.169.254", "0.0.0.0"] {
            let err = server
                .create(endpoints("bad", ip, "addresses"))
                .unwrap_err();
            assert_eq!((err.code, err.reason), (422, "Invalid"), "{ip}");
        }
        Ok(())
    }

    /// `ingressroutes.contour.heptio.com` as Contour (up to 1.5) installed it through
    /// apiextensions v1beta1, seen through v1: `preserveUnknownFields: true`, no subresources, a
    /// schema that keeps everything.
    fn legacy_ingressroute_crd() -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "ingressroutes.contour.heptio.com"},
               "spec": {"group": "contour.heptio.com", "scope": "Namespaced",
                        "preserveUnknownFields": true,
                        "names": {"kind": "IngressRoute", "plural": "ingressroutes",
                                  "singular": "ingressroute", "listKind": "IngressRouteList"},
                        "versions": [{"name": "v1beta1", "served": true, "storage": true,
                                      "schema": {"openAPIV3Schema": {
                                          "type": "object",
                                          "x-kubernetes-preserve-unknown-fields": true}}}]}})
    }

    /// apiextensions v1's `preserveUnknownFields` rules, and a CRD without a status
    /// subresource: `/status` is not served, and `status` is an ordinary field of the object.
    #[tokio::test]
    async fn legacy_crds_preserve_unknown_fields_and_status_without_subresource() -> Result<()> {
        const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        const CRD: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ingressroutes.contour.heptio.com";
        const IRS: &str = "/apis/contour.heptio.com/v1beta1/namespaces/default/ingressroutes";
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let apply = async |path: &str, body: &Value| {
            http.patch(
                &format!("{path}?fieldManager=e2e&force=true"),
                "application/apply-patch+yaml",
                &body.to_string(),
            )
            .await
        };

        // A v1 create cannot set it to true; a CRD created through v1beta1 keeps it.
        let (code, status) = http.post(CRDS, &legacy_ingressroute_crd()).await?;
        assert_invalid(code, &status, "spec.preserveUnknownFields", "v1 create");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("cannot set to true"),
            "{status}"
        );
        let mut with_defaults = legacy_ingressroute_crd();
        with_defaults["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "virtualhost": {"type": "object", "properties": {
                    "fqdn": {"type": "string", "default": ""}}}}}}});
        let err = server
            .create_v1beta1_crd(with_defaults.clone())
            .unwrap_err();
        assert_eq!(
            err.message,
            "CustomResourceDefinition \"ingressroutes.contour.heptio.com\" is invalid: \
             spec.preserveUnknownFields: Invalid value: true: must be false in order to use defaults in the schema"
        );
        server.create_v1beta1_crd(legacy_ingressroute_crd())?;

        // No status subresource: /status is 404 whatever the verb, and `status` written
        // through the main resource is kept, as any other field.
        let ir = json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
                        "metadata": {"name": "web"},
                        "spec": {"virtualhost": {"fqdn": "web.example.com"}}});
        let (code, created) = http.post(IRS, &ir).await?;
        assert_eq!(code, 201, "{created}");
        let status =
            json!({"status": {"currentStatus": "valid", "description": "valid IngressRoute"}});
        assert_eq!(http.get(&format!("{IRS}/web/status")).await?.0, 404);
        assert_eq!(
            http.merge(&format!("{IRS}/web/status"), &status).await?.0,
            404
        );
        let (code, patched) = http.merge(&format!("{IRS}/web"), &status).await?;
        assert_eq!(code, 200, "{patched}");
        assert_eq!(patched["status"], status["status"]);
        assert_eq!(
            http.get(&format!("{IRS}/web")).await?.1["status"],
            status["status"]
        );

        // Applying a CRD with defaults over it leaves `true` in place (the applier never set
        // it): refused. Sluice's CRDs say `false` and carry no defaults: accepted.
        let (code, refused) = apply(CRD, &with_defaults).await?;
        assert_invalid(
            code,
            &refused,
            "spec.preserveUnknownFields",
            "defaults over legacy",
        );
        let ours = sluice::api::crds()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some("ingressroutes.contour.heptio.com"))
            .unwrap();
        let (code, applied) = apply(CRD, &serde_json::to_value(&ours)?).await?;
        assert_eq!(code, 200, "{applied}");
        assert_eq!(applied["spec"]["preserveUnknownFields"], false);

        // Now the subresource serves status, and main writes leave it alone.
        let (code, got) = http.get(&format!("{IRS}/web/status")).await?;
        assert_eq!((code, &got["status"]), (200, &status["status"]));
        let orphaned = json!({"status": {"currentStatus": "orphaned", "description": "x"}});
        let (_, patched) = http.merge(&format!("{IRS}/web"), &orphaned).await?;
        assert_eq!(patched["status"], status["status"]);
        let (code, patched) = http.merge(&format!("{IRS}/web/status"), &orphaned).await?;
        assert_eq!((code, &patched["status"]), (200, &orphaned["status"]));

        // Once false, it cannot go back to true.
        let (code, refused) = apply(CRD, &legacy_ingressroute_crd()).await?;
        assert_invalid(code, &refused, "spec.preserveUnknownFields", "back to true");
        Ok(())
    }

    fn cause(status: &Value, field: &str) -> Value {
        status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["field"] == field)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Custom objects are pruned and validated against their CRD's schema on every write, with
    /// kube's messages; unchanged values are not judged again (ratcheting), so an object stored
    /// under Contour's schema-less CRD keeps getting statuses once Sluice's CRD replaces it.
    #[tokio::test]
    async fn custom_objects_follow_their_crd_schema() -> Result<()> {
        const IRS: &str = "/apis/contour.heptio.com/v1beta1/namespaces/default/ingressroutes";
        const GWS: &str = "/apis/sluice.dev/v1alpha1/namespaces/default/gateways";
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let route = |name: &str, port: Value| {
            json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
                   "metadata": {"name": name},
                   "spec": {"virtualhost": {"fqdn": "web.example.com"},
                            "routes": [{"match": "/", "services": [{"name": "web", "port": port}]}]}})
        };
        // Schema-less legacy CRD: anything is stored.
        server.create_v1beta1_crd(legacy_ingressroute_crd())?;
        let (code, old) = http.post(IRS, &route("old", json!("80"))).await?;
        assert_eq!(code, 201, "{old}");
        let mut extra = route("extra", json!(80));
        extra["spec"]["bogus"] = json!(true);
        let (code, kept) = http.post(IRS, &extra).await?;
        assert_eq!(
            (code, &kept["spec"]["bogus"]),
            (201, &json!(true)),
            "{kept}"
        );

        server.apply_yaml(&sluice::api::crds_yaml()?)?;

        // Wrong type: refused, with the path and kube's message.
        let (code, refused) = http.post(IRS, &route("bad", json!("80"))).await?;
        let port = "spec.routes[0].services[0].port";
        assert_invalid(code, &refused, port, "string port");
        let why = "Invalid value: \"string\": spec.routes[0].services[0].port in body must be of type integer: \"string\"";
        assert_eq!(
            refused["message"],
            format!("IngressRoute.contour.heptio.com \"bad\" is invalid: {port}: {why}")
        );
        assert_eq!(cause(&refused, port)["message"], why);
        assert_eq!(cause(&refused, port)["reason"], "FieldValueInvalid");
        // Required fields.
        let mut nameless = route("nameless", json!(80));
        nameless["spec"]["routes"][0]["services"][0]
            .as_object_mut()
            .unwrap()
            .remove("name");
        let (code, refused) = http.post(IRS, &nameless).await?;
        assert_invalid(
            code,
            &refused,
            "spec.routes[0].services[0].name",
            "missing name",
        );
        assert_eq!(
            cause(&refused, "spec.routes[0].services[0].name")["reason"],
            "FieldValueRequired"
        );

        // Unknown fields are pruned on create and on patch; a patch adding only unknown
        // fields changes nothing.
        let mut unknown = route("pruned", json!(80));
        unknown["spec"]["bogus"] = json!(true);
        unknown["spec"]["routes"][0]["junk"] = json!(1);
        unknown["toplevel"] = json!(1);
        let (code, created) = http.post(IRS, &unknown).await?;
        assert_eq!(code, 201, "{created}");
        assert_eq!(created["spec"], route("pruned", json!(80))["spec"]);
        assert!(created.get("toplevel").is_none(), "{created}");
        let (code, patched) = http
            .merge(&format!("{IRS}/pruned"), &json!({"spec": {"bogus": 1}}))
            .await?;
        assert_eq!(code, 200, "{patched}");
        assert_eq!(
            patched["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        // Wrong types through update, patch and apply too.
        let mut put = created.clone();
        put["spec"]["routes"][0]["services"][0]["port"] = json!(true);
        let (code, refused) = http.put(&format!("{IRS}/pruned"), &put).await?;
        assert_invalid(code, &refused, port, "update");
        let bad_patch = json!({"spec": {"virtualhost": {"fqdn": 7}}});
        let (code, refused) = http.merge(&format!("{IRS}/pruned"), &bad_patch).await?;
        assert_invalid(code, &refused, "spec.virtualhost.fqdn", "merge patch");
        let err = server.apply(route("pruned", json!([]))).unwrap_err();
        assert_eq!(err.code, 422, "{err}");

        // Enums, and status through the subresource.
        let gw = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                        "metadata": {"name": "future"},
                        "spec": {"publishing": {"type": "Teleport"}}});
        let (code, refused) = http.post(GWS, &gw).await?;
        assert_invalid(code, &refused, "spec.publishing.type", "enum");
        assert_eq!(
            cause(&refused, "spec.publishing.type")["message"],
            "Unsupported value: \"Teleport\": supported values: \"LoadBalancer\", \"NodePort\", \"ClusterIP\""
        );
        assert_eq!(
            cause(&refused, "spec.publishing.type")["reason"],
            "FieldValueNotSupported"
        );
        let status = json!({"status": {"currentStatus": 5}});
        let (code, refused) = http.merge(&format!("{IRS}/pruned/status"), &status).await?;
        assert_invalid(code, &refused, "status.currentStatus", "status");

        // Stored under the old CRD: kept as it is, its status can be written (the bad port is
        // unchanged), other spec fields can change, the bad port cannot be changed to another
        // bad value.
        let (code, got) = http.get(&format!("{IRS}/old")).await?;
        assert_eq!(
            (code, &got["spec"]["routes"][0]["services"][0]["port"]),
            (200, &json!("80"))
        );
        let status = json!({"status": {"currentStatus": "invalid", "description": "x"}});
        let (code, written) = http.merge(&format!("{IRS}/old/status"), &status).await?;
        assert_eq!(
            (code, &written["status"]),
            (200, &status["status"]),
            "{written}"
        );
        let (code, patched) = http
            .merge(
                &format!("{IRS}/old"),
                &json!({"spec": {"virtualhost": {"fqdn": "x.example.com"}}}),
            )
            .await?;
        assert_eq!(code, 200, "{patched}");
        // Unknown fields stored under the old CRD stay through status writes (kube copies the
        // rest of the stored object) and go with the next write of the main resource.
        let (code, written) = http.merge(&format!("{IRS}/extra/status"), &status).await?;
        assert_eq!(
            (code, &written["spec"]["bogus"]),
            (200, &json!(true)),
            "{written}"
        );
        assert_eq!(
            written["metadata"]["generation"],
            kept["metadata"]["generation"]
        );
        let relabel = json!({"metadata": {"labels": {"a": "b"}}});
        let (code, written) = http.merge(&format!("{IRS}/extra"), &relabel).await?;
        assert_eq!(code, 200, "{written}");
        assert!(written["spec"].get("bogus").is_none(), "{written}");
        let bad = json!({"spec": {"routes": [{"services": [{"name": "web", "port": "81"}]}]}});
        let (code, refused) = http.merge(&format!("{IRS}/old"), &bad).await?;
        assert_invalid(code, &refused, port, "changed bad value");
        Ok(())
    }

    /// `(manager, operation, subresource, fieldsV1)` of each managed fields entry.
    fn managed(obj: &Value) -> Vec<(String, String, String, Value)> {
        obj["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                assert_eq!(e["fieldsType"], "FieldsV1", "{e}");
                assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
                let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (
                    text("manager"),
                    text("operation"),
                    text("subresource"),
                    e["fieldsV1"].clone(),
                )
            })
            .collect()
    }

    /// `metadata.managedFields`: per manager and operation, the fields it wrote, in kube's
    /// `FieldsV1` form; an update takes fields from other updaters; an applier's entry is
    /// replaced on its next apply; status writes are recorded apart; no-op writes change nothing.
    #[tokio::test]
    async fn managed_fields_record_who_wrote_what() -> Result<()> {
        const CMS: &str = "/api/v1/namespaces/default/configmaps";
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "c", "labels": {"l": "x"}}, "data": {"a": "1"}});
        let (code, created) = http
            .post(&format!("{CMS}?fieldManager=creator"), &cm)
            .await?;
        assert_eq!(code, 201, "{created}");
        let entry = &created["metadata"]["managedFields"][0];
        assert_eq!(entry["apiVersion"], "v1", "{entry}");
        assert_eq!(
            managed(&created),
            vec![(
                "creator".into(),
                "Update".into(),
                String::new(),
                json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:l": {}}}})
            )]
        );

        // Another manager's patch takes the field it changes.
        let (_, patched) = http
            .merge(
                &format!("{CMS}/c?fieldManager=editor"),
                &json!({"data": {"a": "2"}}),
            )
            .await?;
        assert_eq!(
            managed(&patched),
            vec![
                (
                    "creator".into(),
                    "Update".into(),
                    String::new(),
                    json!({"f:metadata": {"f:labels": {"f:l": {}}}})
                ),
                (
                    "editor".into(),
                    "Update".into(),
                    String::new(),
                    json!({"f:data": {"f:a": {}}})
                ),
            ]
        );
        // A write that changes nothing changes nothing, managed fields included.
        let (_, same) = http
            .merge(
                &format!("{CMS}/c?fieldManager=other"),
                &json!({"data": {"a": "2"}}),
            )
            .await?;
        assert_eq!(
            same["metadata"]["resourceVersion"],
            patched["metadata"]["resourceVersion"]
        );
        assert_eq!(
            same["metadata"]["managedFields"],
            patched["metadata"]["managedFields"]
        );

        // Apply: one entry per applier, replaced on its next apply.
        let apply = async |data: Value| {
            let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "c"}, "data": data});
            http.patch(
                &format!("{CMS}/c?fieldManager=ssa"),
                "application/apply-patch+yaml",
                &cfg.to_string(),
            )
            .await
        };
        let (code, applied) = apply(json!({"b": "1"})).await?;
        assert_eq!(code, 200, "{applied}");
        let ssa = |fields: Value| {
            (
                "ssa".to_string(),
                "Apply".to_string(),
                String::new(),
                fields,
            )
        };
        assert!(
            managed(&applied).contains(&ssa(json!({"f:data": {"f:b": {}}}))),
            "{applied}"
        );
        let (_, applied) = apply(json!({"c": "1"})).await?;
        let entries = managed(&applied);
        assert_eq!(
            entries.iter().filter(|e| e.0 == "ssa").count(),
            1,
            "{entries:?}"
        );
        assert!(
            entries.contains(&ssa(json!({"f:data": {"f:c": {}}}))),
            "{entries:?}"
        );
        assert_eq!(applied["data"], json!({"a": "2", "c": "1"}));

        // Status writes are recorded with their subresource.
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                         "spec": {"ports": [{"port": 80}]}});
        let (code, _) = http
            .post("/api/v1/namespaces/default/services?fieldManager=me", &svc)
            .await?;
        assert_eq!(code, 201);
        let lb = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
        let (code, written) = http
            .merge(
                "/api/v1/namespaces/default/services/s/status?fieldManager=lb",
                &lb,
            )
            .await?;
        assert_eq!(code, 200, "{written}");
        assert_eq!(
            managed(&written),
            vec![
                (
                    "lb".into(),
                    "Update".into(),
                    "status".into(),
                    json!({"f:status": {"f:loadBalancer": {"f:ingress": {}}}})
                ),
                (
                    "me".into(),
                    "Update".into(),
                    String::new(),
                    json!({"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}})
                ),
            ]
        );
        Ok(())
    }

    /// Server-side apply merges the lists Kubernetes merges by key (containers, env, ports,
    /// volumes, volumeMounts, conditions, ownerReferences; finalizers as a set), owns their items
    /// as `k:{...}` in managedFields, conflicts on items' fields other managers own (appliers and
    /// updaters alike), and keeps atomic lists (tolerations) whole.
    #[tokio::test]
    async fn server_side_apply_merges_lists_by_key() -> Result<()> {
        const DS: &str = "/apis/apps/v1/namespaces/default/daemonsets/envoy";
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let apply = |manager: &'static str, force: bool, cfg: Value| {
            let http = &http;
            async move {
                let force = if force { "&force=true" } else { "" };
                http.patch(
                    &format!("{DS}?fieldManager={manager}{force}"),
                    "application/apply-patch+yaml",
                    &cfg.to_string(),
                )
                .await
            }
        };
        let ds = |containers: Value, volumes: Value, tolerations: Value| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "envoy"},
                "spec": {"selector": {"matchLabels": {"app": "envoy"}}, "template": {
                    "metadata": {"labels": {"app": "envoy"}},
                    "spec": {"containers": containers, "volumes": volumes, "tolerations": tolerations}}}})
        };
        let envoy = |image: &str, env: Value| {
            json!({"name": "envoy", "image": image, "env": env,
                "ports": [{"containerPort": 8080}],
                "volumeMounts": [{"name": "config", "mountPath": "/config"}]})
        };
        let (code, first) = apply(
            "sluice",
            false,
            ds(
                json!([envoy("e:1", json!([{"name": "A", "value": "1"}])),
                       {"name": "shutdown-manager", "image": "s:1"}]),
                json!([{"name": "config", "emptyDir": {}}]),
                json!([{"key": "a", "operator": "Exists"}]),
            ),
        )
        .await?;
        assert_eq!(code, 201, "{first}");

        // Another manager adds a container, an env var to envoy, a port, a mount and a volume.
        let mut other_envoy = json!({"name": "envoy", "env": [{"name": "B", "value": "2"}],
            "ports": [{"containerPort": 8080, "protocol": "UDP"}],
            "volumeMounts": [{"name": "extra", "mountPath": "/extra"}]});
        let (code, merged) = apply(
            "other",
            false,
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "envoy"},
                "spec": {"template": {"spec": {
                    "containers": [{"name": "sidecar", "image": "c:1"}, other_envoy.clone()],
                    "volumes": [{"name": "extra", "emptyDir": {}}]}}}}),
        )
        .await?;
        assert_eq!(code, 200, "{merged}");
        let pod = &merged["spec"]["template"]["spec"];
        let names = |list: &Value, key: &str| -> Vec<String> {
            list.as_array()
                .into_iter()
                .flatten()
                .map(|i| i[key].to_string())
                .collect()
        };
        assert_eq!(
            names(&pod["containers"], "name"),
            [r#""envoy""#, r#""shutdown-manager""#, r#""sidecar""#]
        );
        let envoy_now = &pod["containers"][0];
        assert_eq!(envoy_now["image"], "e:1");
        assert_eq!(names(&envoy_now["env"], "name"), [r#""A""#, r#""B""#]);
        assert_eq!(names(&envoy_now["ports"], "protocol"), ["null", r#""UDP""#]);
        assert_eq!(
            names(&envoy_now["volumeMounts"], "mountPath"),
            [r#""/config""#, r#""/extra""#]
        );
        assert_eq!(
            names(&pod["volumes"], "name"),
            [r#""config""#, r#""extra""#]
        );
        let entry = managed(&merged)
            .into_iter()
            .find(|e| e.0 == "other")
            .expect("an entry for other");
        let containers = &entry.3["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert_eq!(
            containers[r#"k:{"name":"sidecar"}"#],
            json!({".": {}, "f:name": {}, "f:image": {}}),
            "{entry:?}"
        );
        assert_eq!(
            containers[r#"k:{"name":"envoy"}"#]["f:env"][r#"k:{"name":"B"}"#],
            json!({".": {}, "f:name": {}, "f:value": {}}),
            "{entry:?}"
        );
        assert!(
            containers[r#"k:{"name":"envoy"}"#]["f:ports"]
                .get(r#"k:{"containerPort":8080,"protocol":"UDP"}"#)
                .is_some(),
            "{entry:?}"
        );
        assert!(
            containers[r#"k:{"name":"envoy"}"#].get("f:image").is_none(),
            "{entry:?}"
        );

        // A field of an item another manager applied conflicts, named by the item's key; so does
        // an atomic list as a whole.
        other_envoy["image"] = json!("e:2");
        let conflicting = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "envoy"},
            "spec": {"template": {"spec": {"containers": [other_envoy],
                "tolerations": [{"key": "b", "operator": "Exists"}]}}}});
        let (code, status) = apply("other", false, conflicting.clone()).await?;
        assert_eq!(code, 409, "{status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(
                r#"conflict with "sluice": .spec.template.spec.containers[name="envoy"].image"#
            ),
            "{message}"
        );
        assert!(
            message.contains(r#"conflict with "sluice": .spec.template.spec.tolerations"#),
            "{message}"
        );
        assert!(
            message.starts_with("Apply failed with 2 conflicts"),
            "{message}"
        );

        // The first manager drops its shutdown-manager container and env A: they go; what the
        // other manager owns (sidecar, env B, its port and mount) stays.
        let (code, released) = apply(
            "sluice",
            false,
            ds(
                json!([envoy("e:1", json!([]))]),
                json!([{"name": "config", "emptyDir": {}}]),
                json!([{"key": "a", "operator": "Exists"}]),
            ),
        )
        .await?;
        assert_eq!(code, 200, "{released}");
        let pod = &released["spec"]["template"]["spec"];
        assert_eq!(
            names(&pod["containers"], "name"),
            [r#""envoy""#, r#""sidecar""#]
        );
        assert_eq!(names(&pod["containers"][0]["env"], "name"), [r#""B""#]);

        // An update takes the field it changes: re-applying the old value then conflicts with
        // the updater, and forcing takes it back.
        let mut edited = released.clone();
        edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("e:edited");
        let (code, edited) = http
            .put(&format!("{DS}?fieldManager=editor"), &edited)
            .await?;
        assert_eq!(code, 200, "{edited}");
        let reapply = ds(
            json!([envoy("e:1", json!([]))]),
            json!([{"name": "config", "emptyDir": {}}]),
            json!([{"key": "a", "operator": "Exists"}]),
        );
        let (code, status) = apply("sluice", false, reapply.clone()).await?;
        assert_eq!(code, 409, "{status}");
        assert!(
            status["message"].as_str().unwrap_or_default().contains(
                r#"conflict with "editor": .spec.template.spec.containers[name="envoy"].image"#
            ),
            "{status}"
        );
        let (code, forced) = apply("sluice", true, reapply).await?;
        assert_eq!(code, 200, "{forced}");
        assert_eq!(
            forced["spec"]["template"]["spec"]["containers"][0]["image"],
            "e:1"
        );
        assert!(
            managed(&forced).iter().all(|e| e.0 != "editor"),
            "the editor's only field was taken: {forced}"
        );

        // Service ports by port and protocol (TCP when left out).
        const SVC: &str = "/api/v1/namespaces/default/services/dns";
        let svc = |ports: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"}, "spec": {"ports": ports}})
                .to_string()
        };
        let (code, _) = http
            .patch(
                &format!("{SVC}?fieldManager=a"),
                "application/apply-patch+yaml",
                &svc(json!([{"port": 53, "name": "tcp"}])),
            )
            .await?;
        assert_eq!(code, 201);
        let (code, both) = http
            .patch(
                &format!("{SVC}?fieldManager=b"),
                "application/apply-patch+yaml",
                &svc(json!([{"port": 53, "protocol": "UDP", "name": "udp"}])),
            )
            .await?;
        assert_eq!(code, 200, "{both}");
        assert_eq!(
            names(&both["spec"]["ports"], "name"),
            [r#""tcp""#, r#""udp""#]
        );
        let (code, status) = http
            .patch(
                &format!("{SVC}?fieldManager=b"),
                "application/apply-patch+yaml",
                &svc(json!([{"port": 53, "name": "mine"}])),
            )
            .await?;
        assert_eq!(code, 409, "{status}");
        assert!(
            status["message"]
                .as_str()
                .unwrap_or_default()
                .contains(r#"conflict with "a": .spec.ports[port=53,protocol="TCP"].name"#),
            "{status}"
        );

        // Owner references by uid, finalizers as a set, on any kind.
        let mut uids = Vec::new();
        for owner in ["o1", "o2"] {
            let (code, cm) = http.post(CONFIGMAPS, &configmap(owner, json!({}))).await?;
            assert_eq!(code, 201, "{cm}");
            uids.push(cm["metadata"]["uid"].clone());
        }
        let meta = |uid: &Value, finalizer: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "child",
                "finalizers": [finalizer],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": uid}]}})
            .to_string()
        };
        let child = format!("{CONFIGMAPS}/child");
        for (manager, uid, finalizer) in [("a", &uids[0], "x.dev/a"), ("b", &uids[1], "x.dev/b")] {
            let (code, cm) = http
                .patch(
                    &format!("{child}?fieldManager={manager}"),
                    "application/apply-patch+yaml",
                    &meta(uid, finalizer),
                )
                .await?;
            assert!(code == 200 || code == 201, "{cm}");
        }
        let (_, cm) = http.get(&child).await?;
        assert_eq!(
            names(&cm["metadata"]["ownerReferences"], "uid").len(),
            2,
            "{cm}"
        );
        assert_eq!(cm["metadata"]["finalizers"], json!(["x.dev/a", "x.dev/b"]));

        // Conditions by type, through /status.
        const PODS: &str = "/api/v1/namespaces/default/pods";
        let (code, _) = http
            .post(
                PODS,
                &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            )
            .await?;
        assert_eq!(code, 201);
        for (manager, type_) in [("kubelet", "Ready"), ("scheduler", "PodScheduled")] {
            let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "status": {"conditions": [{"type": type_, "status": "True"}]}});
            let (code, pod) = http
                .patch(
                    &format!("{PODS}/p/status?fieldManager={manager}"),
                    "application/apply-patch+yaml",
                    &body.to_string(),
                )
                .await?;
            assert_eq!(code, 200, "{pod}");
        }
        let (_, pod) = http.get(&format!("{PODS}/p")).await?;
        assert_eq!(
            names(&pod["status"]["conditions"], "type"),
            [r#""Ready""#, r#""PodScheduled""#]
        );
        Ok(())
    }

    /// What kube-apiserver refuses in the built-in kinds the operator writes: pod template
    /// essentials (container names, images, ports, probes, tolerations), Services (types, ports
    /// and their names, externalTrafficPolicy), DaemonSets (selector matching the template,
    /// immutable), Secrets (type immutable, TLS keys, size), ConfigMaps (keys, size) and Leases.
    #[tokio::test]
    async fn built_in_kinds_the_operator_writes_are_validated() -> Result<()> {
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let container = json!({"name": "envoy", "image": "envoy:1",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8002}},
            "livenessProbe": {"tcpSocket": {"port": "http"}}});
        let ds = |containers: Value, tolerations: Value, labels: Value| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "envoy"},
                "spec": {"selector": {"matchLabels": {"app": "envoy"}},
                    "template": {"metadata": {"labels": labels},
                        "spec": {"containers": containers, "tolerations": tolerations}}}})
        };
        const DSS: &str = "/apis/apps/v1/namespaces/default/daemonsets";
        let good_tolerations = json!([{"operator": "Exists"},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
            {"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]);
        let refused = [
            (
                json!([{"name": "Envoy", "image": "e"}]),
                "spec.template.spec.containers[0].name",
            ),
            (
                json!([{"name": "envoy"}]),
                "spec.template.spec.containers[0].image",
            ),
            (
                json!([{"name": "a", "image": "e"}, {"name": "a", "image": "e"}]),
                "spec.template.spec.containers[1].name",
            ),
            (
                json!([{"name": "a", "image": "e", "ports": [{"containerPort": 70000}]}]),
                "spec.template.spec.containers[0].ports[0].containerPort",
            ),
            (
                json!([{"name": "a", "image": "e", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}]),
                "spec.template.spec.containers[0].ports[0].protocol",
            ),
            (
                json!([{"name": "a", "image": "e", "ports": [{"containerPort": 80, "name": "way-too-long-port-name"}]}]),
                "spec.template.spec.containers[0].ports[0].name",
            ),
            (
                json!([{"name": "a", "image": "e", "readinessProbe": {"periodSeconds": 1}}]),
                "spec.template.spec.containers[0].readinessProbe",
            ),
            (
                json!([{"name": "a", "image": "e", "livenessProbe": {"exec": {"command": ["x"]}, "tcpSocket": {"port": 1}}}]),
                "spec.template.spec.containers[0].livenessProbe.tcpSocket",
            ),
            (
                json!([{"name": "a", "image": "e", "livenessProbe": {"exec": {"command": ["x"]}, "successThreshold": 2}}]),
                "spec.template.spec.containers[0].livenessProbe.successThreshold",
            ),
            (json!([]), "spec.template.spec.containers"),
        ];
        for (containers, field) in refused {
            let (code, status) = http
                .post(DSS, &ds(containers, json!([]), json!({"app": "envoy"})))
                .await?;
            assert_invalid(code, &status, field, field);
        }
        for (toleration, field) in [
            (
                json!({"key": "a", "operator": "Exists", "value": "x"}),
                "operator",
            ),
            (json!({"key": "a", "operator": "Maybe"}), "operator"),
            (json!({"value": "x"}), "operator"),
            (json!({"key": "a", "effect": "NoWay"}), "effect"),
            (
                json!({"key": "a", "effect": "NoSchedule", "tolerationSeconds": 5}),
                "effect",
            ),
            (json!({"key": "bad key", "operator": "Exists"}), "key"),
        ] {
            let (code, status) = http
                .post(
                    DSS,
                    &ds(
                        json!([container]),
                        json!([toleration]),
                        json!({"app": "envoy"}),
                    ),
                )
                .await?;
            assert_invalid(
                code,
                &status,
                &format!("spec.template.spec.tolerations[0].{field}"),
                &toleration.to_string(),
            );
        }
        let (code, status) = http
            .post(
                DSS,
                &ds(json!([container]), json!([]), json!({"app": "other"})),
            )
            .await?;
        assert_invalid(
            code,
            &status,
            "spec.template.metadata.labels",
            "selector mismatch",
        );
        assert!(
            status["message"]
                .as_str()
                .unwrap_or_default()
                .contains("`selector` does not match template `labels`"),
            "{status}"
        );
        let (code, created) = http
            .post(
                DSS,
                &ds(
                    json!([container]),
                    good_tolerations,
                    json!({"app": "envoy"}),
                ),
            )
            .await?;
        assert_eq!(code, 201, "{created}");
        let mut changed = created.clone();
        changed["spec"]["selector"] = json!({"matchLabels": {"app": "envoy", "tier": "edge"}});
        changed["spec"]["template"]["metadata"]["labels"]["tier"] = json!("edge");
        let (code, status) = http.put(&format!("{DSS}/envoy"), &changed).await?;
        assert_invalid(code, &status, "spec.selector", "selector immutable");

        // Services.
        const SVCS: &str = "/api/v1/namespaces/default/services";
        let svc = |name: &str, spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec});
        for (spec, field) in [
            (
                json!({"type": "Internal", "ports": [{"port": 80}]}),
                "spec.type",
            ),
            (json!({"ports": []}), "spec.ports"),
            (
                json!({"ports": [{"port": 80}, {"port": 81, "name": "b"}]}),
                "spec.ports[0].name",
            ),
            (
                json!({"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]}),
                "spec.ports[1].name",
            ),
            (
                json!({"ports": [{"port": 80, "name": "Web"}]}),
                "spec.ports[0].name",
            ),
            (json!({"ports": [{"port": 0}]}), "spec.ports[0].port"),
            (
                json!({"ports": [{"port": 80, "targetPort": 70000}]}),
                "spec.ports[0].targetPort",
            ),
            (
                json!({"ports": [{"port": 80, "nodePort": 30080}]}),
                "spec.ports[0].nodePort",
            ),
            (
                json!({"ports": [{"port": 80}], "externalTrafficPolicy": "Local"}),
                "spec.externalTrafficPolicy",
            ),
            (
                json!({"type": "LoadBalancer", "ports": [{"port": 80}], "externalTrafficPolicy": "Nearest"}),
                "spec.externalTrafficPolicy",
            ),
        ] {
            let (code, status) = http.post(SVCS, &svc("web", spec.clone())).await?;
            assert_invalid(code, &status, field, &spec.to_string());
        }
        let (code, status) = http
            .post(SVCS, &svc("lb", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                "ports": [{"port": 80, "name": "http", "targetPort": "http"}, {"port": 443, "name": "https"}]})))
            .await?;
        assert_eq!(code, 201, "{status}");

        // Secrets and ConfigMaps.
        const SECRETS: &str = "/api/v1/namespaces/default/secrets";
        let (code, status) = http
            .post(
                SECRETS,
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"},
                "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA=="}}),
            )
            .await?;
        assert_invalid(code, &status, "data[tls.key]", "TLS secret without its key");
        let (code, opaque) = http
            .post(SECRETS, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "YQ=="}}))
            .await?;
        assert_eq!(code, 201, "{opaque}");
        let (code, status) = http
            .merge(&format!("{SECRETS}/s"), &json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "YQ==", "tls.key": "YQ=="}}))
            .await?;
        assert_invalid(code, &status, "type", "Secret type immutable");
        let big = "x".repeat(1024 * 1024);
        let (code, status) = http
            .post(SECRETS, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "big"}, "data": {"a": big}}))
            .await?;
        assert_invalid(code, &status, "data", "Secret over 1 MiB");
        let (code, status) = http
            .post(CONFIGMAPS, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"a": big}}))
            .await?;
        assert_invalid(code, &status, "", "ConfigMap over 1 MiB");
        let (code, status) = http
            .post(CONFIGMAPS, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keys"}, "data": {"a/b": "x"}}))
            .await?;
        assert_invalid(code, &status, "data[a/b]", "ConfigMap key");
        let (code, _) = http
            .post(CONFIGMAPS, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fixed"}, "data": {"a": "1"}, "immutable": true}))
            .await?;
        assert_eq!(code, 201);
        let (code, status) = http
            .merge(&format!("{CONFIGMAPS}/fixed"), &json!({"data": {"a": "2"}}))
            .await?;
        assert_invalid(code, &status, "data", "immutable ConfigMap");

        // Leases.
        const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
        for (spec, field) in [
            (
                json!({"leaseDurationSeconds": 0}),
                "spec.leaseDurationSeconds",
            ),
            (
                json!({"leaseDurationSeconds": 15, "leaseTransitions": -1}),
                "spec.leaseTransitions",
            ),
        ] {
            let (code, status) = http
                .post(LEASES, &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": spec}))
                .await?;
            assert_invalid(code, &status, field, field);
        }
        Ok(())
    }

    /// `Fault::watches(..).failing_with(410)`: a watch open when the fault is injected ends with
    /// an `ERROR` event carrying 410 Expired, so does every new one, while lists and writes work;
    /// once cleared, watches work again.
    #[tokio::test]
    async fn injected_watch_faults_end_watches_with_410() -> Result<()> {
        use sluice_e2e::apiserver::Fault;
        let server = ApiServer::start()?;
        let http = Http::new(&server);
        let path = "/api/v1/namespaces/default/configmaps";
        server.create(configmap("a", json!({})))?;
        let start = server.resource_version();
        let mut open = http
            .watch(&format!("{path}?watch=true&resourceVersion={start}"))
            .await?;
        let mut other = http
            .watch(&format!(
                "/api/v1/namespaces/default/secrets?watch=true&resourceVersion={start}"
            ))
            .await?;
        let id = server.inject(Fault::watches("configmaps").failing_with(410));
        let gone = open.next().await?.context("an event")?;
        assert_eq!(gone["type"], "ERROR", "{gone}");
        assert_eq!(
            (&gone["object"]["code"], &gone["object"]["reason"]),
            (&json!(410), &json!("Expired"))
        );
        assert!(open.next().await?.is_none(), "the stream ends");
        let mut fresh = http.watch(&format!("{path}?watch=true")).await?;
        let gone = fresh.next().await?.context("an event")?;
        assert_eq!(gone["object"]["code"], 410, "{gone}");
        assert!(fresh.next().await?.is_none());
        // Lists, writes and other resources' watches are untouched.
        let (code, list) = http.get(path).await?;
        assert_eq!(code, 200, "{list}");
        let (code, _) = http.post(path, &configmap("b", json!({}))).await?;
        assert_eq!(code, 201);
        server.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}))?;
        assert_eq!(other.next_brief().await?.1, "s");
        server.clear_fault(id);
        let mut again = http
            .watch(&format!("{path}?watch=true&resourceVersion={start}"))
            .await?;
        assert_eq!(again.next_brief().await?.1, "b");
        Ok(())
    }
}
