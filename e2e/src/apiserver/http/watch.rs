//! Watch streams: newline-delimited JSON events over chunked transfer encoding, one chunk per
//! event, with bookmarks, selector transitions and `410 Gone`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::{Bytes, Frame};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::super::Shared;
use super::super::error::ApiError;
use super::super::fault::RequestTarget;
use super::super::resources::ResourceType;
use super::super::selector::{FieldSelector, LabelSelector};
use super::super::store::{Event, EventType, Presented, Target, metadata_only};
use super::request::{list_options, truthy};
use super::{Addressed, Body};

/// How a watch request started.
struct WatchStart {
    label: LabelSelector,
    field: FieldSelector,
    since: Option<u64>,
    initial_events: bool,
    bookmarks: bool,
    timeout: Duration,
}

pub(super) fn watch(
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
pub(super) struct Watcher {
    shared: Arc<Shared>,
    rt: ResourceType,
    target: Target,
    metadata: bool,
    tx: mpsc::Sender<Bytes>,
    /// The request's path and user, for the faults injected while it runs.
    origin: (String, String),
}

impl Watcher {
    pub(super) fn line(event_type: &str, object: Value) -> Bytes {
        Self::line_of(event_type, &object)
    }

    fn line_of(event_type: &str, object: &impl serde::Serialize) -> Bytes {
        #[derive(serde::Serialize)]
        struct Line<'a, T> {
            #[serde(rename = "type")]
            event_type: &'a str,
            object: &'a T,
        }
        let mut line = serde_json::to_vec(&Line { event_type, object }).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// The event's object as this watch shows it, serialized without copying it.
    fn show(&self, event_type: &str, obj: &Value) -> Bytes {
        if self.metadata {
            Self::line(event_type, metadata_only(obj))
        } else {
            let api_version = self.rt.api_version(&self.target.version);
            let presented = Presented {
                api_version: &api_version,
                kind: &self.rt.kind,
                obj,
            };
            Self::line_of(event_type, &presented)
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
            EventType::Modified => match (e.old.as_deref().is_some_and(matches), now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
            _ => return None,
        };
        Some(self.show(event_type, &e.object))
    }

    async fn send(&self, b: Bytes) -> bool {
        self.tx.send(b).await.is_ok()
    }

    async fn run(self, start: WatchStart) {
        let mut changes = self.shared.kind_changes(&self.target.key);
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
            if !self.send(self.show("ADDED", obj)).await {
                return;
            }
        }
        if start.initial_events && !self.send(self.bookmark(cursor, true)).await {
            return;
        }
        // The first read is a watch starting from `cursor`; later ones continue the stream.
        let mut established = false;
        loop {
            let events = self
                .shared
                .lock()
                .events_since(cursor, &self.target.key, established);
            established = true;
            let (events, upto) = match events {
                Ok(read) => read,
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
            cursor = cursor.max(upto);
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
