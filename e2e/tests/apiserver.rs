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
}

impl Http {
    fn new(server: &ApiServer) -> Self {
        Self {
            addr: server.addr(),
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
            .header("accept", "application/json")
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
            .post(path, &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"generateName": "gen-"}}))
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

    #[test]
    fn usable_without_an_async_runtime() -> Result<()> {
        let server = ApiServer::start()?;
        let dir =
            std::env::temp_dir().join(format!("apiserver-kubeconfig-{}", server.addr().port()));
        std::fs::create_dir_all(&dir)?;
        let path = server.write_kubeconfig(&dir)?;
        let text = std::fs::read_to_string(&path)?;
        assert!(text.contains(&format!("server: {}", server.url())));
        std::fs::remove_dir_all(&dir)?;
        server.apply(service("svc"))?;
        let applied = server.apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "labels": {"x": "y"}}}))?;
        assert_eq!(applied["metadata"]["labels"]["x"], "y");
        assert_eq!(
            applied["spec"],
            json!({}),
            "the test manager stopped applying spec"
        );
        let err = server.create(service("svc")).unwrap_err();
        assert_eq!(err.code, 409);
        let url = server.url();
        drop(server);
        // Stopped: the port no longer answers.
        let addr = url.trim_start_matches("http://").to_string();
        assert!(std::net::TcpStream::connect(addr).is_err());
        Ok(())
    }
}
