//! Fault injection: tests make matching requests fail (500, 429, ...) or slow for a while.

use std::time::{Duration, Instant};

use serde_json::json;

/// A fault the server injects into the requests it matches (see [`super::ApiServer::inject`]).
///
/// Built from [`Fault::writes`] or [`Fault::requests`], narrowed with [`Fault::by`], and given
/// an effect ([`Fault::failing_with`], [`Fault::delayed`]) and a lifetime ([`Fault::lasting`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The resource the fault applies to: a plural (`leases`, matching the resource and its
    /// subresources) or `plural/subresource` (`ingressroutes/status`, only that subresource).
    pub resource: String,
    /// Only writes (anything but GET, HEAD, OPTIONS: watches and reads still work), or every
    /// request.
    pub writes_only: bool,
    /// Only watch requests (`watch=true`; lists and gets still work).
    pub watches_only: bool,
    /// Only requests of this user (bearer token, see [`super::ApiServer::kubeconfig_yaml_for`]).
    pub user: Option<String>,
    /// Only requests addressing the object of this name (its path's name segment).
    pub name: Option<String>,
    /// Only requests in this namespace (its path's `namespaces/NS/...` segment).
    pub namespace: Option<String>,
    /// The error code the request fails with (`Status` reason `InternalError` for 500,
    /// `TooManyRequests` with `Retry-After: 1` for 429, `ServiceUnavailable` for 503, otherwise
    /// `InternalError`), without touching the store; `None` only delays.
    pub code: Option<u16>,
    /// How long the server waits before answering (or failing) a matching request.
    pub latency: Duration,
    /// How long the fault lasts from [`super::ApiServer::inject`]; `None` until cleared.
    pub lasting: Option<Duration>,
}

impl Fault {
    /// A fault on the writes to `resource` (see [`Fault::resource`]): no effect until given one.
    pub fn writes(resource: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            writes_only: true,
            watches_only: false,
            user: None,
            name: None,
            namespace: None,
            code: None,
            latency: Duration::ZERO,
            lasting: None,
        }
    }

    /// A fault on every request to `resource`, reads and watches included.
    pub fn requests(resource: &str) -> Self {
        Self {
            writes_only: false,
            ..Self::writes(resource)
        }
    }

    /// A fault on the watches of `resource` only. With [`Fault::failing_with`]`(410)` each
    /// matching watch is answered as kube-apiserver answers a watch from a compacted
    /// resourceVersion: HTTP 200 and one `ERROR` event carrying a 410 `Expired` Status, then the
    /// end of the stream (clients must re-list).
    pub fn watches(resource: &str) -> Self {
        Self {
            writes_only: false,
            watches_only: true,
            ..Self::writes(resource)
        }
    }

    /// Only the requests of `user`.
    #[must_use]
    pub fn by(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Only the requests addressing the object named `name` (in any namespace).
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Only the requests to resources in namespace `namespace` (a creation included).
    #[must_use]
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// Matching requests fail with `code` (e.g. 500 or 429).
    #[must_use]
    pub fn failing_with(mut self, code: u16) -> Self {
        self.code = Some(code);
        self
    }

    /// Matching requests are answered `latency` late.
    #[must_use]
    pub fn delayed(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The fault ends `duration` after it is injected.
    #[must_use]
    pub fn lasting(mut self, duration: Duration) -> Self {
        self.lasting = Some(duration);
        self
    }

    fn matches(&self, request: &RequestTarget<'_>) -> bool {
        let resource = match self.resource.split_once('/') {
            Some((plural, sub)) => {
                request.plural == Some(plural) && request.subresource == Some(sub)
            }
            None => request.plural == Some(self.resource.as_str()),
        };
        resource
            && (!self.writes_only || request.is_write)
            && (!self.watches_only || request.is_watch)
            && self.user.as_deref().is_none_or(|u| u == request.user)
            && self.name.as_deref().is_none_or(|n| request.name == Some(n))
            && (self.namespace.as_deref()).is_none_or(|n| request.namespace == Some(n))
    }
}

/// A fault in force: its rule and when it ends.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFault {
    pub(crate) id: u64,
    pub(crate) fault: Fault,
    pub(crate) until: Option<Instant>,
}

/// What a request addresses, as far as faults care.
pub(crate) struct RequestTarget<'a> {
    pub(crate) plural: Option<&'a str>,
    pub(crate) subresource: Option<&'a str>,
    /// The object's name, for a path that names one.
    pub(crate) name: Option<&'a str>,
    /// The namespace of a namespaced resource's path.
    pub(crate) namespace: Option<&'a str>,
    pub(crate) is_write: bool,
    /// A `watch=true` request.
    pub(crate) is_watch: bool,
    pub(crate) user: &'a str,
}

impl<'a> RequestTarget<'a> {
    /// The resource of a path: `/api/v1/[namespaces/NS/]PLURAL[/NAME[/SUB]]` or the same under
    /// `/apis/GROUP/VERSION`. Discovery paths address no resource.
    pub(crate) fn of(path: &'a str, is_write: bool, user: &'a str) -> Self {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let rest: &[&str] = match segs.as_slice() {
            ["api", "v1", rest @ ..] => rest,
            ["apis", _, _, rest @ ..] => rest,
            _ => &[],
        };
        // `namespaces/NS/PLURAL...` is a namespaced resource; `namespaces/NS[/status]` the
        // Namespace itself.
        let (namespace, rest) = match rest {
            ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
                let mut r = vec![*plural];
                r.extend(tail);
                (Some(*ns), r)
            }
            _ => (None, rest.to_vec()),
        };
        Self {
            plural: rest.first().copied(),
            name: rest.get(1).copied(),
            subresource: rest.get(2).copied(),
            namespace,
            is_write,
            is_watch: false,
            user,
        }
    }

    /// The same target, as a watch request or not.
    pub(crate) fn watching(mut self, is_watch: bool) -> Self {
        self.is_watch = is_watch;
        self
    }
}

/// The faults matching a request, merged: the longest latency, and the first error code.
pub(crate) fn effect(faults: &mut Vec<ActiveFault>, request: &RequestTarget<'_>) -> Effect {
    let now = Instant::now();
    faults.retain(|f| f.until.is_none_or(|u| now < u));
    let mut effect = Effect::default();
    for f in faults.iter().filter(|f| f.fault.matches(request)) {
        effect.latency = effect.latency.max(f.fault.latency);
        if effect.code.is_none() {
            effect.code = f.fault.code;
        }
    }
    effect
}

/// What the server does to one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effect {
    pub(crate) latency: Duration,
    pub(crate) code: Option<u16>,
}

/// The `Status` body of an injected failure, and its reason.
pub(crate) fn failure_status(code: u16) -> serde_json::Value {
    let reason = match code {
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("injected fault ({code})"),
        "reason": reason,
        "code": code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_resource_subresource_user_and_writes() {
        let lease = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l";
        let status = "/apis/contour.heptio.com/v1beta1/namespaces/a/ingressroutes/x/status";
        let t = |path, write, user| RequestTarget::of(path, write, user);
        let f = Fault::writes("leases").by("alpha").failing_with(500);
        assert!(f.matches(&t(lease, true, "alpha")));
        assert!(!f.matches(&t(lease, false, "alpha")));
        assert!(!f.matches(&t(lease, true, "beta")));
        assert!(!f.matches(&t(status, true, "alpha")));
        assert!(Fault::requests("leases").matches(&t(lease, false, "")));
        let w = Fault::watches("leases");
        assert!(!w.matches(&t(lease, false, "")));
        assert!(w.matches(&t(lease, false, "").watching(true)));
        assert!(Fault::writes("ingressroutes").matches(&t(status, true, "")));
        assert!(Fault::writes("ingressroutes/status").matches(&t(status, true, "")));
        let ir = "/apis/contour.heptio.com/v1beta1/namespaces/a/ingressroutes/x";
        assert!(!Fault::writes("ingressroutes/status").matches(&t(ir, true, "")));
        assert!(Fault::writes("namespaces").matches(&t("/api/v1/namespaces/a", true, "")));
        assert!(Fault::writes("namespaces").matches(&t("/api/v1/namespaces", true, "")));
        assert!(Fault::writes("leases").matches(&t(
            "/apis/coordination.k8s.io/v1/leases",
            true,
            ""
        )));
        assert!(!Fault::requests("leases").matches(&t("/apis", false, "")));
        let named = Fault::writes("ingressroutes/status").named("x");
        assert!(named.matches(&t(status, true, "")));
        let other = "/apis/contour.heptio.com/v1beta1/namespaces/a/ingressroutes/y/status";
        assert!(!named.matches(&t(other, true, "")));
        assert!(!named.matches(&t(
            "/apis/contour.heptio.com/v1beta1/namespaces/a/ingressroutes",
            true,
            ""
        )));
        let events = Fault::writes("events").in_namespace("a");
        assert!(events.matches(&t("/apis/events.k8s.io/v1/namespaces/a/events", true, "")));
        assert!(!events.matches(&t("/apis/events.k8s.io/v1/namespaces/b/events", true, "")));
        assert!(!events.matches(&t("/apis/events.k8s.io/v1/events", true, "")));
    }

    #[test]
    fn expired_faults_go_and_effects_merge() {
        let target = RequestTarget::of("/api/v1/namespaces/a/secrets/s", true, "u");
        let now = Instant::now();
        let mut faults = vec![
            ActiveFault {
                id: 1,
                fault: Fault::writes("secrets").failing_with(429),
                until: Some(now),
            },
            ActiveFault {
                id: 2,
                fault: Fault::writes("secrets").delayed(Duration::from_millis(5)),
                until: None,
            },
            ActiveFault {
                id: 3,
                fault: Fault::writes("secrets").failing_with(500),
                until: None,
            },
        ];
        let e = effect(&mut faults, &target);
        assert_eq!(
            e,
            Effect {
                latency: Duration::from_millis(5),
                code: Some(500)
            }
        );
        assert_eq!(faults.len(), 2);
    }
}
