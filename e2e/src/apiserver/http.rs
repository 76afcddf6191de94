//! The HTTP side: routing Kubernetes API paths to the store, JSON responses, and watch streams
//! (newline-delimited JSON events over chunked transfer encoding, one chunk per event).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::error::ApiError;
use super::fault::{RequestTarget, failure_status};
use super::managed::manager_from_user_agent;
use super::rbac::Attributes;
use super::resources::{self, ResourceType};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{
    DeleteOptions, Event, EventType, ListOptions, PatchKind, Propagation, Target, metadata_only,
    present,
};
use super::{RequestRecord, Shared};

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

fn json_response(code: u16, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// Entry point for every request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let seq = shared.arrive();
    let user = bearer_user(&parts);
    let is_write = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let is_watch = truthy(&parse_query(parts.uri.query().unwrap_or_default()), "watch");
    let target = RequestTarget::of(parts.uri.path(), is_write, &user).watching(is_watch);
    let fault = shared.fault_effect(&target);
    if !fault.latency.is_zero() {
        tokio::time::sleep(fault.latency).await;
    }
    let response = match (fault.code, body.collect().await) {
        // A watch from a compacted resourceVersion: 200, then one ERROR event, then the end.
        (Some(410), _) if is_watch => {
            let gone = ApiError::expired("too old resource version (injected fault)");
            let mut resp = json_response(200, &Value::Null);
            *resp.body_mut() = Full::new(Watcher::line("ERROR", gone.to_status())).boxed_unsync();
            resp
        }
        (Some(code), _) => injected_failure(code),
        (None, Ok(c)) => {
            route(&shared, &parts, &c.to_bytes()).unwrap_or_else(|e| error_response(&e))
        }
        (None, Err(e)) => error_response(&ApiError::bad_request(format!("reading body: {e}"))),
    };
    shared.record(RequestRecord {
        impersonated: impersonated_user(&parts).unwrap_or_default(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        user,
        code: response.status().as_u16(),
        seq,
    });
    Ok(response)
}

/// The answer to a request an injected fault fails: a `Status`, with `Retry-After` for 429.
fn injected_failure(code: u16) -> Response<Body> {
    let mut resp = json_response(code, &failure_status(code));
    if code == 429 {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// The user a request impersonates (`Impersonate-User`), if any.
fn impersonated_user(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The groups a request impersonates (`Impersonate-Group`, repeated).
fn impersonated_groups(parts: &Parts) -> Vec<String> {
    parts
        .headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

/// The user a request comes from: its bearer token, taken as the user's name unchecked (there is
/// no authentication); empty without one.
fn bearer_user(parts: &Parts) -> String {
    parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn truthy(q: &BTreeMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// Whether the client asked for `PartialObjectMetadata(List)`.
fn wants_metadata(parts: &Parts) -> bool {
    parts
        .headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

fn wants_aggregated(parts: &Parts) -> bool {
    parts
        .headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=APIGroupDiscoveryList"))
}

fn route(shared: &Arc<Shared>, parts: &Parts, body: &Bytes) -> Result<Response<Body>, ApiError> {
    let path = parts.uri.path().to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = parse_query(parts.uri.query().unwrap_or_default());
    let discovery = |doc: Option<Value>| -> Result<Response<Body>, ApiError> {
        if parts.method != Method::GET {
            return Err(ApiError::method_not_allowed(
                "discovery documents are read-only",
            ));
        }
        doc.map(|d| json_response(200, &d))
            .ok_or_else(ApiError::no_such_path)
    };
    match segs.as_slice() {
        ["version"] => discovery(Some(resources::version_info())),
        ["healthz" | "livez" | "readyz"] => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")).boxed_unsync());
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(resp)
        }
        ["api"] => {
            let store = shared.lock();
            discovery(Some(if wants_aggregated(parts) {
                resources::aggregated(store.types(), true)
            } else {
                resources::core_versions(&shared.address)
            }))
        }
        ["apis"] => {
            let store = shared.lock();
            discovery(Some(if wants_aggregated(parts) {
                resources::aggregated(store.types(), false)
            } else {
                resources::group_list(store.types())
            }))
        }
        ["apis", group] => discovery(resources::group(shared.lock().types(), group)),
        ["api", "v1"] => discovery(resources::resource_list(shared.lock().types(), "", "v1")),
        ["apis", group, version] => discovery(resources::resource_list(
            shared.lock().types(),
            group,
            version,
        )),
        ["api", "v1", rest @ ..] => resource_request(shared, parts, &query, body, "", "v1", rest),
        ["apis", group, version, rest @ ..] => {
            resource_request(shared, parts, &query, body, group, version, rest)
        }
        _ => Err(ApiError::no_such_path()),
    }
}

/// A resource request's address.
struct Addressed {
    rt: ResourceType,
    target: Target,
    name: Option<String>,
    status: bool,
}

fn address(
    shared: &Shared,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Addressed, ApiError> {
    let store = shared.lock();
    let namespaced_at = |i: usize| {
        rest.get(i)
            .and_then(|p| store.resolve(group, version, p))
            .is_some_and(|t| t.namespaced)
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() && namespaced_at(2) => (*ns, tail),
        _ => ("", rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return Err(ApiError::no_such_path()),
    };
    let rt = store
        .resolve(group, version, plural)
        .cloned()
        .ok_or_else(ApiError::no_such_path)?;
    if (!rt.namespaced && !namespace.is_empty())
        || (rt.namespaced && namespace.is_empty() && name.is_some())
    {
        return Err(ApiError::no_such_path());
    }
    let status = match sub {
        None => false,
        Some("status") if rt.status => true,
        Some(_) => return Err(ApiError::no_such_path()),
    };
    let target = Target {
        key: rt.key(),
        version: version.to_string(),
        namespace: namespace.to_string(),
    };
    Ok(Addressed {
        rt,
        target,
        name: name.map(str::to_string),
        status,
    })
}

fn list_options(q: &BTreeMap<String, String>, rt: &ResourceType) -> Result<ListOptions, ApiError> {
    let label = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let field = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
    field
        .check_fields(&rt.selectable_fields)
        .map_err(ApiError::bad_request)?;
    let limit = match q.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request("invalid limit"))?,
        ),
        None => None,
    };
    Ok(ListOptions {
        label,
        field,
        limit,
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

fn delete_options(q: &BTreeMap<String, String>, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    if opts
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| !d.is_empty())
    {
        return Err(ApiError::bad_request(
            "dryRun is not supported by this test API server",
        ));
    }
    let policy = opts
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| q.get("propagationPolicy").map(String::as_str));
    let propagation = match policy {
        None | Some("" | "Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown propagationPolicy {other:?}"
            )));
        }
    };
    let orphan = opts.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    let pre = |f: &str| {
        opts.get("preconditions")
            .and_then(|p| p.get(f))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(DeleteOptions {
        propagation: if orphan {
            Propagation::Orphan
        } else {
            propagation
        },
        uid: pre("uid"),
        resource_version: pre("resourceVersion"),
    })
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding body: {e}")))
}

fn resource_request(
    shared: &Arc<Shared>,
    parts: &Parts,
    q: &BTreeMap<String, String>,
    body: &Bytes,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let a = address(shared, group, version, rest)?;
    if let Some(user) = impersonated_user(parts) {
        let groups = impersonated_groups(parts);
        let verb = match (&parts.method, a.name.is_some()) {
            (&Method::GET | &Method::HEAD, true) => "get",
            (&Method::GET | &Method::HEAD, false) if truthy(q, "watch") => "watch",
            (&Method::GET | &Method::HEAD, false) => "list",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            _ => "",
        };
        let attrs = Attributes {
            user: &user,
            groups: &groups,
            verb,
            group: &a.rt.group,
            resource: &a.rt.plural,
            subresource: a.status.then_some("status"),
            namespace: &a.target.namespace,
            name: a.name.as_deref().unwrap_or_default(),
        };
        if !attrs.allowed(&shared.lock()) {
            return Err(attrs.forbidden());
        }
    }
    if q.get("dryRun").is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::bad_request(
            "dryRun is not supported by this test API server",
        ));
    }
    let metadata = wants_metadata(parts);
    let show = |obj: &Value| {
        if metadata {
            metadata_only(obj)
        } else {
            present(&a.rt, version, obj)
        }
    };
    let manager = q.get("fieldManager").map(String::as_str);
    // Writes other than apply without `fieldManager` are the user agent's.
    let user_agent = parts
        .headers
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let updater = manager
        .map(str::to_string)
        .unwrap_or_else(|| manager_from_user_agent(user_agent));
    let updater = Some(updater.as_str());
    let t = &a.target;
    match (&parts.method, a.name.as_deref()) {
        (&Method::GET, None) if truthy(q, "watch") => {
            let origin = (parts.uri.path().to_owned(), bearer_user(parts));
            watch(shared, &a, q, metadata, origin)
        }
        (&Method::GET, None) => {
            let page = shared.lock().list(t, &list_options(q, &a.rt)?)?;
            let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
            if let (Some(c), Value::Object(m)) = (page.continue_token, &mut meta) {
                m.insert("continue".into(), Value::String(c));
            }
            let (api_version, kind) = if metadata {
                (
                    "meta.k8s.io/v1".to_string(),
                    "PartialObjectMetadataList".to_string(),
                )
            } else {
                (a.rt.api_version(version), a.rt.list_kind.clone())
            };
            let items: Vec<Value> = page.items.iter().map(show).collect();
            Ok(json_response(
                200,
                &json!({"apiVersion": api_version, "kind": kind, "metadata": meta, "items": items}),
            ))
        }
        (&Method::POST, None) => {
            if t.namespace.is_empty() && a.rt.namespaced {
                return Err(ApiError::no_such_path());
            }
            let obj = shared.write(|s| s.create(t, parse_json(body)?, updater))?;
            Ok(json_response(201, &show(&obj)))
        }
        (&Method::DELETE, None) => {
            let list = list_options(q, &a.rt)?;
            let opts = delete_options(q, body)?;
            let deleted = shared.write(|s| s.delete_collection(t, &list, &opts))?;
            let rv = shared.lock().resource_version();
            let items: Vec<Value> = deleted.iter().map(show).collect();
            Ok(json_response(
                200,
                &json!({"apiVersion": a.rt.api_version(version), "kind": a.rt.list_kind, "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            ))
        }
        (&Method::GET, Some(name)) => Ok(json_response(200, &show(&shared.lock().get(t, name)?))),
        (&Method::PUT, Some(name)) => {
            let obj = shared.write(|s| s.update(t, name, parse_json(body)?, a.status, updater))?;
            Ok(json_response(200, &show(&obj)))
        }
        (&Method::PATCH, Some(name)) => {
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = match content_type.split(';').next().unwrap_or_default().trim() {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::StrategicMerge,
                "application/apply-patch+yaml" => PatchKind::Apply,
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            let force = truthy(q, "force");
            if force && kind != PatchKind::Apply {
                return Err(ApiError::bad_request(
                    "force is only allowed for apply patches",
                ));
            }
            let who = if kind == PatchKind::Apply {
                manager
            } else {
                updater
            };
            let (obj, created) =
                shared.write(|s| s.patch(t, name, kind, body, a.status, who, force))?;
            Ok(json_response(if created { 201 } else { 200 }, &show(&obj)))
        }
        (&Method::DELETE, Some(name)) if !a.status => {
            let opts = delete_options(q, body)?;
            let (obj, gone) = shared.write(|s| s.delete(t, name, &opts))?;
            Ok(json_response(if gone { 200 } else { 202 }, &show(&obj)))
        }
        (method, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

/// How a watch request started.
struct WatchStart {
    label: LabelSelector,
    field: FieldSelector,
    since: Option<u64>,
    initial_events: bool,
    bookmarks: bool,
    timeout: Duration,
}

fn watch(
    shared: &Arc<Shared>,
    a: &Addressed,
    q: &BTreeMap<String, String>,
    metadata: bool,
    origin: (String, String),
) -> Result<Response<Body>, ApiError> {
    let list = list_options(q, &a.rt)?;
    let since = match q.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = match q.get("timeoutSeconds").filter(|t| !t.is_empty()) {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request("invalid timeoutSeconds"))?,
        ),
        None => shared.options.default_watch_timeout,
    };
    let start = WatchStart {
        label: list.label,
        field: list.field,
        since,
        initial_events: truthy(q, "sendInitialEvents"),
        bookmarks: truthy(q, "allowWatchBookmarks"),
        timeout,
    };
    shared.watches.send_modify(|n| *n += 1);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let watcher = Watcher {
        shared: shared.clone(),
        rt: a.rt.clone(),
        target: a.target.clone(),
        metadata,
        tx,
        origin,
    };
    tokio::spawn(watcher.run(start));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream.boxed()).boxed_unsync());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// One watch stream: replays history after the start resourceVersion, then follows changes.
struct Watcher {
    shared: Arc<Shared>,
    rt: ResourceType,
    target: Target,
    metadata: bool,
    tx: mpsc::Sender<Bytes>,
    /// The request's path and user, for the faults injected while it runs.
    origin: (String, String),
}

impl Watcher {
    fn line(event_type: &str, object: Value) -> Bytes {
        let mut line =
            serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn show(&self, obj: &Value) -> Value {
        if self.metadata {
            metadata_only(obj)
        } else {
            present(&self.rt, &self.target.version, obj)
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end && let Value::Object(m) = &mut meta {
            m.insert(
                "annotations".into(),
                json!({"k8s.io/initial-events-end": "true"}),
            );
        }
        Self::line(
            "BOOKMARK",
            json!({"apiVersion": self.rt.api_version(&self.target.version), "kind": self.rt.kind, "metadata": meta}),
        )
    }

    fn gone(rv: u64, floor: u64) -> Bytes {
        let e = ApiError::expired(format!("too old resource version: {rv} ({floor})"));
        Self::line("ERROR", e.to_status())
    }

    /// The event as this watch reports it, if at all (selector transitions become ADDED/DELETED).
    fn translate(&self, e: &Event, start: &WatchStart) -> Option<Bytes> {
        if e.key != self.target.key
            || (!self.target.namespace.is_empty() && e.namespace != self.target.namespace)
        {
            return None;
        }
        let matches = |o: &Value| start.label.matches(o) && start.field.matches(o);
        let now = matches(&e.object);
        let event_type = match e.kind {
            EventType::Added if now => "ADDED",
            EventType::Deleted if now => "DELETED",
            EventType::Modified => match (e.old.as_ref().is_some_and(matches), now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
            _ => return None,
        };
        Some(Self::line(event_type, self.show(&e.object)))
    }

    async fn send(&self, b: Bytes) -> bool {
        self.tx.send(b).await.is_ok()
    }

    async fn run(self, start: WatchStart) {
        let mut changes = self.shared.changes.subscribe();
        let mut faults = self.shared.fault_epoch.subscribe();
        let deadline = Instant::now() + start.timeout;
        let interval = self.shared.options.bookmark_interval;
        let mut next_bookmark = Instant::now() + interval;
        let (initial, mut cursor) = {
            let store = self.shared.lock();
            match start.since {
                Some(rv) if !start.initial_events => (Vec::new(), rv),
                _ => (
                    store.matching(&self.target, &start.label, &start.field),
                    store.resource_version(),
                ),
            }
        };
        for obj in &initial {
            if !self.send(Self::line("ADDED", self.show(obj))).await {
                return;
            }
        }
        if start.initial_events && !self.send(self.bookmark(cursor, true)).await {
            return;
        }
        loop {
            let events = self.shared.lock().events_since(cursor);
            let events = match events {
                Ok(events) => events,
                Err(floor) => {
                    let _ = self.send(Self::gone(cursor, floor)).await;
                    return;
                }
            };
            for e in &events {
                if let Some(line) = self.translate(e, &start)
                    && !self.send(line).await
                {
                    return;
                }
                cursor = e.rv;
            }
            // Mark the changes seen so far; a change after this point wakes the loop again.
            changes.borrow_and_update();
            if self.shared.lock().resource_version() > cursor {
                continue;
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = sleep_until(deadline) => {
                    if start.bookmarks {
                        let _ = self.send(self.bookmark(cursor, false)).await;
                    }
                    return;
                }
                () = sleep_until(next_bookmark), if start.bookmarks => {
                    next_bookmark = Instant::now() + interval;
                    if !self.send(self.bookmark(cursor, false)).await {
                        return;
                    }
                }
                () = self.tx.closed() => return,
                _ = faults.changed() => {
                    let (path, user) = &self.origin;
                    let target = RequestTarget::of(path, false, user).watching(true);
                    if self.shared.fault_effect(&target).code == Some(410) {
                        let gone = ApiError::expired("too old resource version (injected fault)");
                        let _ = self.send(Self::line("ERROR", gone.to_status())).await;
                        return;
                    }
                }
            }
        }
    }
}
