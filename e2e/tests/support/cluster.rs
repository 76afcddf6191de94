//! The cluster the operator end-to-end tests run against: an in-memory API server
//! (`sluice_e2e::apiserver`), or, with `SLUICE_E2E_KUBECONFIG=FILE`, that real cluster (one test
//! at a time, objects in namespaces named `e2e-<run>-*` deleted afterwards). Shared by the
//! operator e2e tests (`tests/operator*.rs`, a `#[path]` module): operator
//! processes impersonate the operator's ServiceAccount, so `config/rbac` is what they may do.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::Scope;
use serde_json::{Value, json};
use sluice_e2e::apiserver::{ApiServer, ApiServerOptions};
use sluice_e2e::sluice::{OPERATOR_NAMESPACE, Operator};
use sluice_e2e::{TempDir, temp_dir};

/// Bound on one wait of this module: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// Field manager of everything the tests write.
pub(crate) const TEST_MANAGER: &str = "sluice-e2e";

/// Environment variable naming a kubeconfig of a real cluster to run against.
pub(crate) const KUBECONFIG_ENV: &str = "SLUICE_E2E_KUBECONFIG";

/// The user every operator process acts as: its ServiceAccount (`config/rbac`).
pub(crate) const OPERATOR_USER: &str = "system:serviceaccount:sluice-system:sluice";

/// Tests against a real cluster share it (each operator watches every namespace): one at a time.
pub(crate) static REAL_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// The cluster under test: an in-memory API server, or the one SLUICE_E2E_KUBECONFIG names.

pub(crate) enum Backing {
    Memory(ApiServer),
    Real(PathBuf),
}

pub(crate) struct Cluster {
    pub(crate) backing: Backing,
    pub(crate) client: kube::Client,
    /// Prefix of every namespace the test creates (empty in memory).
    pub(crate) prefix: String,
    pub(crate) namespaces: Mutex<Vec<String>>,
    pub(crate) dir: TempDir,
    pub(crate) _serial: Option<tokio::sync::MutexGuard<'static, ()>>,
}

pub(crate) async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

impl Cluster {
    /// The cluster, with the operator's namespace present and (unless `crds` is false) Sluice's
    /// CRDs installed.
    pub(crate) async fn start(crds: bool) -> Result<Cluster> {
        let dir = temp_dir()?;
        let cluster = match std::env::var_os(KUBECONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(path) => {
                let serial = REAL_CLUSTER.lock().await;
                let path = PathBuf::from(path);
                let client = client_for(&path)
                    .await
                    .with_context(|| format!("{KUBECONFIG_ENV}={}", path.display()))?;
                let run = format!(
                    "e2e-{}-{}-",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)?
                        .subsec_micros()
                );
                Cluster {
                    backing: Backing::Real(path),
                    client,
                    prefix: run,
                    namespaces: Mutex::new(Vec::new()),
                    dir,
                    _serial: Some(serial),
                }
            }
            None => {
                // The backends of the traffic checks listen on 127.0.0.1, an address
                // kube-apiserver refuses in Endpoints and EndpointSlices: the double accepts it
                // on request, and against a real cluster those checks are skipped.
                let server = ApiServer::start_with(ApiServerOptions {
                    allow_loopback_endpoints: true,
                    ..ApiServerOptions::default()
                })?;
                let path = server.write_kubeconfig_for(dir.path(), "test")?;
                let client = client_for(&path).await?;
                Cluster {
                    backing: Backing::Memory(server),
                    client,
                    prefix: String::new(),
                    namespaces: Mutex::new(Vec::new()),
                    dir,
                    _serial: None,
                }
            }
        };
        // Shared by every run; never deleted.
        cluster
            .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}))
            .await?;
        if crds {
            cluster.install_crds().await?;
        }
        cluster.install_rbac().await?;
        Ok(cluster)
    }

    /// The operator's ServiceAccount and RBAC from `config/rbac`, which every operator process
    /// is held to (it impersonates the ServiceAccount). The leader-election Role names this
    /// run's Lease.
    pub(crate) async fn install_rbac(&self) -> Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rbac");
        for file in [
            "service_account.yaml",
            "cluster_role.yaml",
            "cluster_role_binding.yaml",
            "leader_election_role.yaml",
            "leader_election_role_binding.yaml",
        ] {
            let text = std::fs::read_to_string(dir.join(file))
                .with_context(|| format!("reading config/rbac/{file}"))?;
            let mut obj: Value = serde_norway::from_str(&text)?;
            if obj["kind"] == "Role"
                && let Some(rules) = obj["rules"].as_array_mut()
            {
                for rule in rules {
                    if let Some(names) = rule["resourceNames"].as_array_mut() {
                        for n in names.iter_mut() {
                            if *n == "sluice-leader" {
                                *n = json!(format!("{}sluice-leader", self.prefix));
                            }
                        }
                    }
                }
            }
            self.apply(obj).await?;
        }
        Ok(())
    }

    pub(crate) fn memory(&self) -> Option<&ApiServer> {
        match &self.backing {
            Backing::Memory(s) => Some(s),
            Backing::Real(_) => None,
        }
    }

    pub(crate) fn is_real(&self) -> bool {
        self.memory().is_none()
    }

    /// A kubeconfig for an operator process, impersonating the operator's ServiceAccount
    /// ([`OPERATOR_USER`]) so that `config/rbac` is what it may do. In memory, its requests carry
    /// `user` so the server's request log tells processes apart; for a real cluster it is a copy
    /// of `SLUICE_E2E_KUBECONFIG` with `as:` on the current context's user.
    pub(crate) fn kubeconfig(&self, user: &str) -> Result<PathBuf> {
        Ok(match &self.backing {
            Backing::Memory(s) => s.write_kubeconfig_as(self.dir.path(), user, OPERATOR_USER)?,
            Backing::Real(path) => {
                let mut kc = kube::config::Kubeconfig::read_from(path)?;
                let context = kc.current_context.clone().unwrap_or_default();
                let auth = kc
                    .contexts
                    .iter()
                    .find(|c| c.name == context)
                    .and_then(|c| c.context.as_ref())
                    .map(|c| c.user.clone())
                    .with_context(|| format!("no current context in {}", path.display()))?;
                let info = kc
                    .auth_infos
                    .iter_mut()
                    .find(|a| Some(&a.name) == auth.as_ref())
                    .and_then(|a| a.auth_info.as_mut())
                    .with_context(|| format!("no user {auth:?} in {}", path.display()))?;
                info.impersonate = Some(OPERATOR_USER.to_owned());
                let copy = self.dir.path().join(format!("kubeconfig-{user}-as"));
                std::fs::write(&copy, serde_norway::to_string(&kc)?)?;
                copy
            }
        })
    }

    /// An operator for this cluster: leader election on a Lease of this run only.
    pub(crate) fn operator(&self, identity: &str) -> Result<sluice_e2e::sluice::OperatorBuilder> {
        Ok(Operator::builder(&self.kubeconfig(identity)?)
            .identity(identity)
            .arg("--lease-name")
            .arg(format!("{}sluice-leader", self.prefix))
            .arg("--debounce-ms")
            .arg("50"))
    }

    /// Creates namespace `name` (prefixed in a real cluster) and returns its full name.
    pub(crate) async fn namespace(&self, name: &str) -> Result<String> {
        let full = format!("{}{name}", self.prefix);
        self.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": full}}))
            .await?;
        self.namespaces.lock().unwrap().push(full.clone());
        Ok(full)
    }

    pub(crate) async fn install_crds(&self) -> Result<()> {
        let yaml = sluice::api::crds_yaml()?;
        let mut names = Vec::new();
        for doc in serde_norway::Deserializer::from_str(&yaml) {
            let crd: Value = serde::Deserialize::deserialize(doc)?;
            names.push(
                crd["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            self.apply(crd).await?;
        }
        // A real API server serves a CRD's resource only once it is established.
        for name in names {
            eventually(&format!("CRD {name} to be established"), async || {
                let crd = self
                    .get(
                        "apiextensions.k8s.io/v1",
                        "CustomResourceDefinition",
                        None,
                        &name,
                    )
                    .await?;
                Ok(crd.filter(|c| {
                    c["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    })
                }))
            })
            .await?;
        }
        Ok(())
    }

    /// Traefik's CRDs (group `traefik.io`): `sluice crds --traefik`, unless the cluster already
    /// has them (a real cluster with Traefik's chart keeps its own; they are never removed).
    pub(crate) async fn install_traefik_crds(&self) -> Result<()> {
        let yaml = sluice::api::traefik::crds_yaml()?;
        for doc in serde_norway::Deserializer::from_str(&yaml) {
            let crd: Value = serde::Deserialize::deserialize(doc)?;
            let name = crd["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let crd_api = ("apiextensions.k8s.io/v1", "CustomResourceDefinition");
            if self.is_real() && self.get(crd_api.0, crd_api.1, None, &name).await?.is_some() {
                continue;
            }
            self.apply(crd).await?;
            eventually(&format!("CRD {name} to be established"), async || {
                let crd = self.get(crd_api.0, crd_api.1, None, &name).await?;
                Ok(crd.filter(|c| {
                    c["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    })
                }))
            })
            .await?;
        }
        Ok(())
    }

    /// Every object of `kind` (in `namespace`, when given).
    pub(crate) async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>> {
        let api = self.api(api_version, kind, namespace).await?;
        let list = api.list(&Default::default()).await?;
        list.items
            .into_iter()
            .map(|o| Ok(serde_json::to_value(o)?))
            .collect()
    }

    pub(crate) async fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .with_context(|| format!("discovering {api_version} {kind}"))?;
        Ok(match (caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(self.client.clone(), ns, &resource)
            }
            _ => Api::all_with(self.client.clone(), &resource),
        })
    }

    /// Server-side apply (forced) of one object; returns it as stored.
    pub(crate) async fn apply(&self, obj: Value) -> Result<Value> {
        let field = |f: &str| obj[f].as_str().unwrap_or_default().to_owned();
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let api = self
            .api(&field("apiVersion"), &field("kind"), ns.as_deref())
            .await?;
        let stored = api
            .patch(
                &name,
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("applying {} {name}", field("kind")))?;
        Ok(serde_json::to_value(stored)?)
    }

    pub(crate) async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>> {
        let api = self.api(api_version, kind, namespace).await?;
        Ok(match api.get_opt(name).await? {
            Some(o) => Some(serde_json::to_value(o)?),
            None => None,
        })
    }

    pub(crate) async fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<()> {
        let api = self.api(api_version, kind, namespace).await?;
        api.delete(name, &DeleteParams::background()).await?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let Backing::Real(path) = &self.backing else {
            return;
        };
        // Deleting the namespaces deletes everything the test made. Drop cannot await, and the
        // test's runtime may be shutting down: use a runtime of our own on another thread.
        let (path, namespaces) = (
            path.clone(),
            std::mem::take(&mut *self.namespaces.lock().unwrap()),
        );
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = client_for(&path).await?;
                let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
                for ns in &namespaces {
                    let _ = api.delete(ns, &DeleteParams::background()).await;
                }
                // Wait until they are gone: a Gateway left terminating would be judged by the
                // next test's operator along with that test's own.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                for ns in &namespaces {
                    while api.get_opt(ns).await?.is_some() {
                        anyhow::ensure!(
                            tokio::time::Instant::now() < deadline,
                            "namespace {ns} is still terminating"
                        );
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                anyhow::Ok(())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("cleaning up test namespaces: {e:#}");
        }
    }
}

/// Polls `probe` until it returns `Some`, at most [`PATIENCE`]; an `Err` ends the wait at once.
async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

/// The bootstrap the operator provisioned for Gateway `ns/name`, once it exists.
pub(crate) async fn provisioned_bootstrap(
    cluster: &Cluster,
    op: &mut Operator,
    ns: &str,
    name: &str,
) -> Result<String> {
    let cm_name = format!("{name}-envoy-bootstrap");
    let bootstrap = eventually(&format!("ConfigMap {ns}/{cm_name}"), async || {
        op.check_running()?;
        let cm = cluster.get("v1", "ConfigMap", Some(ns), &cm_name).await?;
        Ok(cm.and_then(|cm| cm["data"]["bootstrap.json"].as_str().map(str::to_owned)))
    })
    .await?;
    if !bootstrap.contains(XDS_CERTS_DIR) {
        return Ok(bootstrap);
    }
    // The pod mounts the Gateway's xDS client Secret at XDS_CERTS_DIR; here, its files go to a
    // directory of the test, and only those paths in the bootstrap change.
    let creds = client_credentials(cluster, op, ns, name).await?;
    let dir = cluster.dir.path().join(format!("xds-{ns}-{name}"));
    std::fs::create_dir_all(&dir)?;
    for (file, pem) in [
        ("ca.crt", &creds.ca),
        ("tls.crt", &creds.cert),
        ("tls.key", &creds.key),
    ] {
        std::fs::write(dir.join(file), pem)?;
    }
    Ok(bootstrap.replace(XDS_CERTS_DIR, &dir.display().to_string()))
}

/// Where the Envoy pod mounts its xDS client credentials.
pub(crate) const XDS_CERTS_DIR: &str = "/certs/xds";

/// An instance's xDS client credentials (PEM), from the Secret the operator issued.
pub(crate) struct ClientCredentials {
    pub(crate) ca: String,
    pub(crate) cert: String,
    pub(crate) key: String,
}

pub(crate) async fn client_credentials(
    cluster: &Cluster,
    op: &mut Operator,
    ns: &str,
    gateway: &str,
) -> Result<ClientCredentials> {
    use base64::Engine;
    let name = format!("{gateway}-xds-client");
    let secret = eventually(&format!("Secret {ns}/{name}"), async || {
        op.check_running()?;
        cluster.get("v1", "Secret", Some(ns), &name).await
    })
    .await?;
    let field = |key: &str| -> Result<String> {
        let b64 = secret["data"][key]
            .as_str()
            .with_context(|| format!("{name} has no {key}"))?;
        Ok(String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(b64)?,
        )?)
    };
    Ok(ClientCredentials {
        ca: field("ca.crt")?,
        cert: field("tls.crt")?,
        key: field("tls.key")?,
    })
}

/// A Contour root IngressRoute `ns/name` for `fqdn`, routing `/` to Service `web` port 80.
pub fn contour_route(ns: &str, name: &str, fqdn: &str) -> Value {
    json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"virtualhost": {"fqdn": fqdn},
                    "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]}})
}

impl Cluster {
    /// The status description of the Contour IngressRoute `ns/name`, once it has one.
    pub async fn route_description(&self, ns: &str, name: &str) -> Result<Option<String>> {
        let r = self
            .get("contour.heptio.com/v1beta1", "IngressRoute", Some(ns), name)
            .await?;
        Ok(r.and_then(|r| r["status"]["description"].as_str().map(str::to_owned)))
    }
}
