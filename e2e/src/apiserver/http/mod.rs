//! The HTTP side: routing Kubernetes API paths to the store and JSON responses. What a request
//! asks for (query, impersonation, list and delete options) is read in [`request`]; watch
//! streams (newline-delimited JSON events over chunked transfer encoding, one chunk per event)
//! are in [`watch`].

mod request;
mod watch;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::error::ApiError;
use super::fault::{RequestTarget, failure_status};
use super::managed::manager_from_user_agent;
use super::rbac::Attributes;
use super::resources::{self, ResourceType};
use super::store::{PatchKind, Target, metadata_only, present};
use super::{RequestRecord, Shared};
use request::{
    bearer_user, delete_options, impersonated_groups, impersonated_user, list_options, parse_query,
    percent_decode, truthy, wants_aggregated, wants_metadata,
};
use watch::{Watcher, watch};

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
    let record = |code: u16| RequestRecord {
        impersonated: impersonated_user(&parts).unwrap_or_default(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        user: user.clone(),
        code,
        seq,
    };
    // Known in flight until answered; if the client goes away first, hyper drops this future
    // and the guard moves the request to the dropped ones.
    let in_flight = InFlight::start(&shared, record(0));
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
    in_flight.answered();
    shared.record(record(response.status().as_u16()));
    Ok(response)
}

/// A request being served (see [`super::ApiServer::requests_in_flight`]).
struct InFlight<'a> {
    shared: &'a Shared,
    seq: u64,
    answered: bool,
}

impl<'a> InFlight<'a> {
    fn start(shared: &'a Shared, record: RequestRecord) -> Self {
        let seq = record.seq;
        super::lock(&shared.in_flight).insert(seq, record);
        Self {
            shared,
            seq,
            answered: false,
        }
    }

    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let gone = super::lock(&self.shared.in_flight).remove(&self.seq);
        if let Some(record) = gone.filter(|_| !self.answered) {
            super::lock(&self.shared.dropped).push(record);
        }
    }
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
pub(super) struct Addressed {
    pub(super) rt: ResourceType,
    pub(super) target: Target,
    pub(super) name: Option<String>,
    pub(super) status: bool,
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
    let show = |obj: Value| {
        if metadata {
            metadata_only(&obj)
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
            let items: Vec<Value> = page.items.into_iter().map(show).collect();
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
            Ok(json_response(201, &show(obj)))
        }
        (&Method::DELETE, None) => {
            let list = list_options(q, &a.rt)?;
            let opts = delete_options(q, body)?;
            let deleted = shared.write(|s| s.delete_collection(t, &list, &opts))?;
            let rv = shared.lock().resource_version();
            let items: Vec<Value> = deleted.into_iter().map(show).collect();
            Ok(json_response(
                200,
                &json!({"apiVersion": a.rt.api_version(version), "kind": a.rt.list_kind, "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            ))
        }
        (&Method::GET, Some(name)) => {
            let obj = shared.lock().get(t, name)?;
            Ok(json_response(200, &show(obj)))
        }
        (&Method::PUT, Some(name)) => {
            let obj = shared.write(|s| s.update(t, name, parse_json(body)?, a.status, updater))?;
            Ok(json_response(200, &show(obj)))
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
            Ok(json_response(if created { 201 } else { 200 }, &show(obj)))
        }
        (&Method::DELETE, Some(name)) if !a.status => {
            let opts = delete_options(q, body)?;
            let (obj, gone) = shared.write(|s| s.delete(t, name, &opts))?;
            Ok(json_response(if gone { 200 } else { 202 }, &show(obj)))
        }
        (method, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}
