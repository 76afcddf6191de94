//! API errors and their Kubernetes `Status` form.

use serde_json::{Value, json};

/// A failed API call, as the server reports it: HTTP code, `Status.reason` and message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`.
    pub reason: &'static str,
    /// Human readable message, shaped like the real API server's.
    pub message: String,
    /// `Status.details`, when there is an object to name.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": group, "kind": kind}));
        self
    }

    /// 403 Forbidden: RBAC refuses the request.
    pub fn forbidden(group: &str, plural: &str, name: &str, message: String) -> Self {
        Self::new(403, "Forbidden", message).with_details(group, plural, name)
    }

    /// 404 for a named object (`qualified` is `plural` or `plural.group`).
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 404 for a path the server does not serve.
    pub fn no_such_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 409 Conflict for a stale resourceVersion or a failed precondition.
    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(group, plural)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 409 Conflict from server-side apply field ownership.
    pub fn apply_conflict(group: &str, plural: &str, name: &str, message: String) -> Self {
        Self::new(409, "Conflict", message).with_details(group, plural, name)
    }

    /// 422 Invalid: the object is well-formed but not acceptable.
    pub fn invalid(group: &str, kind: &str, name: &str, field: &str, why: &str) -> Self {
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {field}: {why}"),
        )
        .with_details(group, kind, name);
        if let Some(Value::Object(d)) = &mut e.details {
            d.insert(
                "causes".into(),
                json!([{"reason": "FieldValueInvalid", "message": why, "field": field}]),
            );
        }
        e
    }

    /// 422 Invalid with one cause per refused field, as kube-apiserver reports several errors:
    /// the message lists them in brackets when there are more than one.
    pub fn invalid_causes(
        group: &str,
        kind: &str,
        name: &str,
        causes: &[(String, String)],
    ) -> Self {
        Self::invalid_as(kind, group, kind, name, causes)
    }

    /// 422 Invalid for a custom object refused by its CRD's schema: kube names the kind with
    /// its group in the message (`IngressRoute.contour.heptio.com "x" is invalid: ...`).
    pub fn invalid_custom(
        group: &str,
        kind: &str,
        name: &str,
        causes: &[(String, String)],
    ) -> Self {
        Self::invalid_as(&format!("{kind}.{group}"), group, kind, name, causes)
    }

    fn invalid_as(
        shown_kind: &str,
        group: &str,
        kind: &str,
        name: &str,
        causes: &[(String, String)],
    ) -> Self {
        let listed: Vec<String> = causes
            .iter()
            .map(|(f, why)| format!("{f}: {why}"))
            .collect();
        let message = match listed.as_slice() {
            [one] => format!("{shown_kind} \"{name}\" is invalid: {one}"),
            many => format!("{shown_kind} \"{name}\" is invalid: [{}]", many.join(", ")),
        };
        let mut e = Self::new(422, "Invalid", message).with_details(group, kind, name);
        if let Some(Value::Object(d)) = &mut e.details {
            let causes: Vec<Value> = causes
                .iter()
                .map(|(f, why)| json!({"reason": cause_reason(why), "message": why, "field": f}))
                .collect();
            d.insert("causes".into(), Value::Array(causes));
        }
        e
    }

    /// 400 BadRequest: malformed request or body.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 410 Expired: a resourceVersion older than the kept history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(details), Value::Object(map)) = (&self.details, &mut status) {
            map.insert("details".into(), details.clone());
        }
        status
    }
}

/// The `Status` cause reason of a field error, from the words it starts with (apimachinery
/// `pkg/util/validation/field/errors.go` ErrorType).
fn cause_reason(why: &str) -> &'static str {
    [
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Too long", "FieldValueTooLong"),
        ("Forbidden", "FieldValueForbidden"),
        ("Duplicate value", "FieldValueDuplicate"),
    ]
    .iter()
    .find(|(prefix, _)| why.starts_with(prefix))
    .map_or("FieldValueInvalid", |(_, reason)| reason)
}

/// `plural` for the core group, `plural.group` otherwise, as in API server messages.
pub(crate) fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}
