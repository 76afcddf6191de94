//! An in-memory Kubernetes API server for the operator's end-to-end tests. What it models of
//! kube-apiserver, and what it leaves out, is written in `MODEL.md` beside this file (shown
//! below).
#![doc = include_str!("MODEL.md")]

mod apply;
mod builtin;
mod error;
mod fault;
mod http;
mod lists;
mod managed;
mod meta;
mod rbac;
mod resources;
mod schema;
mod selector;
mod store;
mod structural;
mod tally;
mod validation;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

pub use error::ApiError;
pub use fault::Fault;
use resources::TypeKey;
use store::{DeleteOptions, PatchKind, Store, Target, present};
pub use tally::Tally;

/// The field manager of [`ApiServer::apply`] and [`ApiServer::apply_status`].
pub const TEST_FIELD_MANAGER: &str = "e2e-test";

/// Tunables; the defaults suit tests.
#[derive(Clone, Debug)]
pub struct ApiServerOptions {
    /// How many change events are kept for watches to resume from.
    pub history_limit: usize,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Watch duration when the request has no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// Accept loopback addresses (127.0.0.0/8, ::1) in Endpoints and EndpointSlices, which
    /// kube-apiserver refuses. Off by default; only for tests whose backends must listen on
    /// 127.0.0.1 and that skip those steps against a real cluster.
    pub allow_loopback_endpoints: bool,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            default_watch_timeout: Duration::from_secs(1800),
            allow_loopback_endpoints: false,
        }
    }
}

/// State shared by the HTTP tasks and the in-process accessors.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// The latest resourceVersion, for in-process waits to wake on.
    changes: watch::Sender<u64>,
    /// The latest resourceVersion that changed objects of a resource, for its watches to
    /// wake on (a write wakes only the watches of the resources it changed).
    kind_changes: Mutex<BTreeMap<TypeKey, watch::Sender<u64>>>,
    options: ApiServerOptions,
    address: String,
    /// Watch requests accepted so far.
    watches: watch::Sender<u64>,
    /// Every request served, in the order they were answered.
    requests: Mutex<Vec<RequestRecord>>,
    /// Requests received so far (the next one's [`RequestRecord::seq`]).
    arrivals: AtomicU64,
    /// Requests received and not answered yet, by `seq` (code 0); a request whose client went
    /// away before its answer moves to `dropped`.
    in_flight: Mutex<BTreeMap<u64, RequestRecord>>,
    /// Requests whose client went away before they were answered (they changed nothing).
    dropped: Mutex<Vec<RequestRecord>>,
    /// Injected faults in force (expired ones are dropped as requests come).
    faults: Mutex<Vec<fault::ActiveFault>>,
    next_fault: AtomicU64,
    /// Bumped when a fault is injected, for open watches to check whether it ends them.
    fault_epoch: watch::Sender<u64>,
}

/// One request the server answered, for tests that check who wrote what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The path, e.g. `/apis/contour.heptio.com/v1beta1/namespaces/a/ingressroutes/x/status`.
    pub path: String,
    /// The raw query string (empty without one).
    pub query: String,
    /// The bearer token of the request, taken as the user's name (see
    /// [`ApiServer::kubeconfig_yaml_for`]); empty without one.
    pub user: String,
    /// The user the request impersonated (`Impersonate-User`, as kube-rs sends for a
    /// kubeconfig user with `as:`); empty without impersonation.
    pub impersonated: String,
    /// The response status code (200 for a watch that started).
    pub code: u16,
    /// The order in which the request arrived (from 0), before any injected latency; the
    /// records themselves are in the order the requests were answered.
    pub seq: u64,
}

impl RequestRecord {
    /// Whether the request could change state (anything but GET, HEAD, OPTIONS).
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The number of the request arriving now.
    fn arrive(&self) -> u64 {
        self.arrivals.fetch_add(1, Ordering::SeqCst)
    }

    /// What the faults in force do to a request.
    fn fault_effect(&self, target: &fault::RequestTarget<'_>) -> fault::Effect {
        let mut faults = self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fault::effect(&mut faults, target)
    }

    fn record(&self, r: RequestRecord) {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(r);
    }

    /// Runs a write and wakes the watches of the resources it changed, if any.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.lock();
        let before = store.resource_version();
        let out = f(&mut store);
        let after = store.resource_version();
        let touched = store.take_touched();
        drop(store);
        if after != before {
            let kinds = self.kind_senders();
            for key in &touched {
                if let Some(tx) = kinds.get(key) {
                    tx.send_replace(after);
                }
            }
            drop(kinds);
            self.changes.send_replace(after);
        }
        out
    }

    fn kind_senders(&self) -> MutexGuard<'_, BTreeMap<TypeKey, watch::Sender<u64>>> {
        self.kind_changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes on every change to objects of resource `key`.
    fn kind_changes(&self, key: &TypeKey) -> watch::Receiver<u64> {
        self.kind_senders()
            .entry(key.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

/// A running in-memory API server; stops when dropped.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Starts a server with default options on `127.0.0.1:0`, on its own thread and runtime (so
    /// it works from sync tests and from any Tokio runtime).
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(ApiServerOptions::default())
    }

    pub fn start_with(options: ApiServerOptions) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut store = Store::new(options.history_limit);
        store.allow_loopback_endpoints = options.allow_loopback_endpoints;
        let (changes, _) = watch::channel(store.resource_version());
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            changes,
            kind_changes: Mutex::new(BTreeMap::new()),
            options,
            address: addr.to_string(),
            watches: watch::channel(0).0,
            requests: Mutex::new(Vec::new()),
            arrivals: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
            dropped: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            next_fault: AtomicU64::new(0),
            fault_epoch: watch::channel(0).0,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shutdown, stop) = oneshot::channel();
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("apiserver-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, serving, stop));
                // Dropping the runtime here ends every connection and watch task.
            })?;
        Ok(Self {
            shared,
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig for this server (context `sluice-e2e`, namespace `default`, no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_with_user("{}")
    }

    /// A kubeconfig whose requests carry `user` as their bearer token, so that
    /// [`ApiServer::requests`] tells several clients apart (the token is not checked). `user`
    /// must be a plain token (letters, digits, `-`, `_`, `.`).
    pub fn kubeconfig_yaml_for(&self, user: &str) -> String {
        self.kubeconfig_with_user(&format!("{{token: {user}}}"))
    }

    fn kubeconfig_with_user(&self, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sluice-e2e\n  cluster:\n    server: {}\ncontexts:\n- name: sluice-e2e\n  context:\n    cluster: sluice-e2e\n    user: sluice-e2e\n    namespace: default\ncurrent-context: sluice-e2e\nusers:\n- name: sluice-e2e\n  user: {user}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes `dir/kubeconfig` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml())?;
        Ok(path)
    }

    /// Writes `dir/kubeconfig-<user>` (see [`ApiServer::kubeconfig_yaml_for`]) and returns its
    /// path.
    pub fn write_kubeconfig_for(&self, dir: &Path, user: &str) -> std::io::Result<PathBuf> {
        let path = dir.join(format!("kubeconfig-{user}"));
        std::fs::write(&path, self.kubeconfig_yaml_for(user))?;
        Ok(path)
    }

    /// Writes `dir/kubeconfig-<user>-as` for bearer token `user` impersonating `as_user` (the
    /// kubeconfig's `as:`), so that its requests are authorized by RBAC, and returns its path.
    pub fn write_kubeconfig_as(
        &self,
        dir: &Path,
        user: &str,
        as_user: &str,
    ) -> std::io::Result<PathBuf> {
        let path = dir.join(format!("kubeconfig-{user}-as"));
        let yaml = self.kubeconfig_with_user(&format!("{{token: {user}, as: {as_user:?}}}"));
        std::fs::write(&path, yaml)?;
        Ok(path)
    }

    /// Every request served so far, oldest first (requests made in-process are not included).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Requests that arrived and are not answered yet (held by an injected latency, or being
    /// served), with code 0, in arrival order.
    pub fn requests_in_flight(&self) -> Vec<RequestRecord> {
        lock(&self.shared.in_flight).values().cloned().collect()
    }

    /// Requests whose client went away before the answer (an injected latency held them):
    /// they were never served, so they changed nothing. Code 0, in the order they were dropped.
    pub fn requests_dropped(&self) -> Vec<RequestRecord> {
        lock(&self.shared.dropped).clone()
    }

    /// How many requests have arrived so far: requests whose [`RequestRecord::seq`] is at least
    /// this number arrive after the call.
    pub fn requests_arrived(&self) -> u64 {
        self.shared.arrivals.load(Ordering::SeqCst)
    }

    /// Puts `fault` in force (see [`Fault`]) from now until it lasted its time or is cleared;
    /// returns its id for [`ApiServer::clear_fault`].
    pub fn inject(&self, fault: Fault) -> u64 {
        let id = self.shared.next_fault.fetch_add(1, Ordering::SeqCst);
        let until = fault.lasting.map(|d| std::time::Instant::now() + d);
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(fault::ActiveFault { id, fault, until });
        self.shared.fault_epoch.send_modify(|n| *n += 1);
        id
    }

    /// Ends one injected fault (requests already delayed by it still fail or wait).
    pub fn clear_fault(&self, id: u64) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|f| f.id != id);
    }

    /// Ends every injected fault.
    pub fn clear_faults(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version()
    }

    fn target(
        store: &Store,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Target, ApiError> {
        let (rt, version) = store.resolve_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no resource for apiVersion {api_version:?} kind {kind:?}"
            ))
        })?;
        let namespace = if rt.namespaced {
            namespace.unwrap_or("default").to_string()
        } else {
            String::new()
        };
        Ok(Target {
            key: rt.key(),
            version,
            namespace,
        })
    }

    fn target_of(store: &Store, obj: &Value) -> Result<(Target, String), ApiError> {
        let field = |f: &str| obj.get(f).and_then(Value::as_str).unwrap_or_default();
        let ns = meta::meta_str(obj, "namespace");
        let t = Self::target(
            store,
            field("apiVersion"),
            field("kind"),
            (!ns.is_empty()).then_some(ns),
        )?;
        Ok((t, meta::meta_str(obj, "name").to_string()))
    }

    fn show(store: &Store, t: &Target, obj: Value) -> Value {
        match store.types().find(|rt| rt.key() == t.key) {
            Some(rt) => present(rt, &t.version, obj),
            None => obj,
        }
    }

    /// How many watch requests the server has accepted (to see clients re-watch).
    pub fn watches_started(&self) -> u64 {
        *self.shared.watches.borrow()
    }

    /// One object, or `None` (also for an unknown kind). `namespace` defaults to `default` for
    /// namespaced kinds.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let store = self.shared.lock();
        let t = Self::target(&store, api_version, kind, namespace).ok()?;
        let obj = store.get(&t, name).ok()?;
        Some(Self::show(&store, &t, obj))
    }

    /// All objects of a kind, in one namespace or (`None`) across all namespaces.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let store = self.shared.lock();
        let Ok(mut t) = Self::target(&store, api_version, kind, namespace) else {
            return Vec::new();
        };
        if namespace.is_none() {
            t.namespace.clear();
        }
        store
            .all(&t.key)
            .into_iter()
            .filter(|o| t.namespace.is_empty() || meta::meta_str(o, "namespace") == t.namespace)
            .map(|o| Self::show(&store, &t, o))
            .collect()
    }

    /// How many objects of a kind (in every namespace) satisfy `f`, which sees their stored
    /// form; nothing is copied (the store is locked only to take pointers to the objects, and
    /// `f` runs after), so this is cheap enough to poll with thousands of objects while the
    /// server serves.
    pub fn count(&self, api_version: &str, kind: &str, f: impl Fn(&Value) -> bool) -> usize {
        let objects: Vec<Arc<Value>> = {
            let store = self.shared.lock();
            let Ok(t) = Self::target(&store, api_version, kind, None) else {
                return 0;
            };
            store.each(&t.key).cloned().collect()
        };
        objects.iter().filter(|o| f(o)).count()
    }

    /// Creates an object (its `apiVersion`, `kind`, `metadata.namespace` say where).
    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        self.shared.write(|store| {
            let (t, _) = Self::target_of(store, &obj)?;
            let created = store.create(&t, obj, Some(TEST_FIELD_MANAGER))?;
            Ok(Self::show(store, &t, created))
        })
    }

    fn apply_with(&self, obj: &Value, status: bool) -> Result<Value, ApiError> {
        let body = serde_json::to_vec(obj).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.shared.write(|store| {
            let (t, name) = Self::target_of(store, obj)?;
            let (applied, _) = store.patch(
                &t,
                &name,
                PatchKind::Apply,
                &body,
                status,
                Some(TEST_FIELD_MANAGER),
                true,
            )?;
            Ok(Self::show(store, &t, applied))
        })
    }

    /// Creates a CRD the way one created through `apiextensions.k8s.io/v1beta1` (served until
    /// Kubernetes 1.22; Contour up to 1.5 installed its CRDs so) is kept by a cluster upgraded
    /// since: `spec.preserveUnknownFields: true` is accepted, which a v1 create refuses.
    /// Everything else is checked as for [`ApiServer::create`], so a schema with `default:`
    /// is still refused.
    pub fn create_v1beta1_crd(&self, crd: Value) -> Result<Value, ApiError> {
        self.shared.write(|store| {
            let (t, _) = Self::target_of(store, &crd)?;
            store.v1beta1_crd_write = true;
            let created = store.create(&t, crd, Some(TEST_FIELD_MANAGER));
            store.v1beta1_crd_write = false;
            let created = created?;
            Ok(Self::show(store, &t, created))
        })
    }

    /// Server-side apply (field manager [`TEST_FIELD_MANAGER`], forced): creates or merges.
    pub fn apply(&self, obj: Value) -> Result<Value, ApiError> {
        self.apply_with(&obj, false)
    }

    /// Server-side apply to the `status` subresource.
    pub fn apply_status(&self, obj: Value) -> Result<Value, ApiError> {
        self.apply_with(&obj, true)
    }

    /// Applies every document of a multi-document YAML string (e.g. CRDs), in order.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        for doc in serde_norway::Deserializer::from_str(yaml) {
            let value = Value::deserialize(doc)
                .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")))?;
            if !value.is_null() {
                out.push(self.apply(value)?);
            }
        }
        Ok(out)
    }

    /// Deletes an object (background propagation); returns it as last stored, with
    /// `deletionTimestamp` when finalizers hold it back.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.shared.write(|store| {
            let t = Self::target(store, api_version, kind, namespace)?;
            let (obj, _) = store.delete(&t, name, &DeleteOptions::default())?;
            Ok(Self::show(store, &t, obj))
        })
    }

    /// Waits until `f` returns `Some`, re-checking after every change and every new watch; `None` after `timeout`.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> Option<T>,
    ) -> Option<T> {
        let mut changes = self.shared.changes.subscribe();
        let mut watches = self.shared.watches.subscribe();
        let wait = async {
            loop {
                changes.borrow_and_update();
                watches.borrow_and_update();
                if let Some(found) = f(self) {
                    return Some(found);
                }
                let woke = tokio::select! {
                    r = changes.changed() => r,
                    r = watches.changed() => r,
                };
                if woke.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| http::handle(shared.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// Locks one of the server's logs (a poisoned lock is used as it is: every change to them is
/// one insert or removal).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
