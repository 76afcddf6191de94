//! The Events announcing IngressRoute statuses and Traefik verdicts: `events.k8s.io/v1` Events
//! with the same fields as kube's `Recorder` writes, created directly.
//!
//! kube's `Recorder` keeps every event it published for six minutes, to turn a repeat into a
//! series, and sweeps that whole cache on every publish: O(events) each, so announcing 10,000
//! new statuses cost O(n²) (most of the operator's CPU during a settle of 10,000 routes, measured
//! with perf). These Events never repeat: each regards one object at one resourceVersion, and
//! what was announced is remembered per object by the caller, so there is no series to make
//! and nothing to remember here.
//!
//! Each creation is bounded in time (`--status-call-timeout-seconds`): the client has no read
//! timeout of its own, and one Event the API server never answers must not hold the status
//! round (every tenant's statuses and Events) any longer than that.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};

/// Creates Events as `reporter`.
#[derive(Clone)]
pub struct EventSink {
    client: kube::Client,
    reporter: Reporter,
    /// How long one creation may take before it counts as failed.
    timeout: Duration,
}

/// Why an Event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("the API server did not answer within {0:?}")]
    TimedOut(Duration),
}

impl EventSink {
    pub fn new(client: kube::Client, reporter: Reporter, timeout: Duration) -> Self {
        Self {
            client,
            reporter,
            timeout,
        }
    }

    /// Creates one Event about `regarding`, in its namespace, within the sink's timeout.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), EventError> {
        tokio::time::timeout(self.timeout, self.create(event, regarding))
            .await
            .map_err(|_| EventError::TimedOut(self.timeout))?
            .map_err(EventError::Api)
    }

    async fn create(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let event = k8s_event(&self.reporter, event, regarding, Timestamp::now());
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        // The Event created is not read back: its answer is checked for an error and skipped.
        let body = serde_json::to_vec(&event).map_err(kube::Error::SerdeError)?;
        let request = kube::core::Request::new(api.resource_url())
            .create(&PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        self.client
            .request::<serde::de::IgnoredAny>(request)
            .await
            .map(|_| ())
    }
}

/// The Event as stored: named after the object and the time, as kube's `Recorder` names it.
/// Pure.
fn k8s_event(
    reporter: &Reporter,
    event: &Event,
    regarding: &ObjectReference,
    now: Timestamp,
) -> K8sEvent {
    let name = regarding.name.as_deref().unwrap_or(&reporter.controller);
    K8sEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        note: event.note.clone(),
        metadata: ObjectMeta {
            namespace: regarding.namespace.clone(),
            name: Some(event_name(name, now)),
            ..ObjectMeta::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_owned(),
        ),
        ..K8sEvent::default()
    }
}

/// Longest name the API server takes for an Event (a DNS subdomain).
const MAX_NAME: usize = 253;

/// `<object>.<nanoseconds in hex>`, the object's name cut so the whole stays a valid name: an
/// object may be named up to 253 characters, and the API server refuses a longer Event name
/// every time (the Event would be retried forever).
fn event_name(object: &str, now: Timestamp) -> String {
    let suffix = format!(".{:x}", now.as_nanosecond());
    let room = MAX_NAME.saturating_sub(suffix.len());
    let mut cut = object.get(..room.min(object.len())).unwrap_or("event");
    // A subdomain ends with a letter or digit; the suffix's dot follows.
    cut = cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if cut.is_empty() {
        cut = "event";
    }
    format!("{cut}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_about_a_long_named_object_gets_a_valid_name() {
        let now = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let suffix = format!(".{:x}", now.as_nanosecond());
        // Objects named up to 253 characters, cut where a dot or dash would end the prefix.
        for object in [
            "a".repeat(253),
            format!("{}-{}", "a".repeat(235), "b".repeat(17)),
            format!("{}.x", "a".repeat(236 - suffix.len() + 16)),
            "web".to_owned(),
        ] {
            let name = event_name(&object, now);
            assert!(name.len() <= MAX_NAME, "{} characters", name.len());
            assert!(name.ends_with(&suffix), "{name}");
            let prefix = &name[..name.len() - suffix.len()];
            assert!(object.starts_with(prefix), "{name}");
            assert!(
                prefix.ends_with(|c: char| c.is_ascii_alphanumeric()),
                "{name}"
            );
        }
        assert_eq!(event_name("web", now), format!("web{suffix}"));
    }

    #[test]
    fn an_event_carries_the_reporter_the_object_and_the_verdict() {
        let reporter = Reporter {
            controller: "sluice.dev/route-controller".into(),
            instance: Some("pod-1".into()),
        };
        let regarding = ObjectReference {
            namespace: Some("ns".into()),
            name: Some("web".into()),
            resource_version: Some("42".into()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "Invalid".into(),
            note: Some("Service s is missing".into()),
            action: "Validate".into(),
            secondary: None,
        };
        let now = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let e = k8s_event(&reporter, &event, &regarding, now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            e.metadata.name,
            Some(format!("web.{:x}", now.as_nanosecond()))
        );
        assert_eq!(e.regarding.as_ref(), Some(&regarding));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("Invalid"));
        assert_eq!(e.action.as_deref(), Some("Validate"));
        assert_eq!(e.note.as_deref(), Some("Service s is missing"));
        assert_eq!(
            e.reporting_controller.as_deref(),
            Some("sluice.dev/route-controller")
        );
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-1"));
        assert_eq!(e.event_time, Some(MicroTime(now)));
        assert!(e.series.is_none());
    }
}
