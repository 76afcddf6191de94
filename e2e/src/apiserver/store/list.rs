//! Lists: selectors, pages and continue tokens.

use serde_json::Value;

use super::super::error::ApiError;
use super::super::meta::meta_str;
use super::super::selector::{FieldSelector, LabelSelector};
use super::{ListOptions, Page, Store, Target};

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl Store {
    /// Objects matching the selectors, in `(namespace, name)` order.
    pub fn matching(&self, t: &Target, label: &LabelSelector, field: &FieldSelector) -> Vec<Value> {
        self.objects
            .get(&t.key)
            .into_iter()
            .flatten()
            .filter(|((ns, _), _)| t.namespace.is_empty() || *ns == t.namespace)
            .map(|(_, s)| &*s.obj)
            .filter(|o| label.matches(o) && field.matches(o))
            .cloned()
            .collect()
    }

    pub fn list(&self, t: &Target, opts: &ListOptions) -> Result<Page, ApiError> {
        self.type_of(&t.key)?;
        // Continue tokens carry the first page's resourceVersion and the last key returned.
        let (rv, after) = match &opts.continue_token {
            None => (self.rv, None),
            Some(token) => {
                let decoded =
                    unhex(token).ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                let mut parts = decoded.splitn(3, '\0');
                let rv = parts.next().and_then(|r| r.parse::<u64>().ok());
                let (Some(rv), Some(ns), Some(name)) = (rv, parts.next(), parts.next()) else {
                    return Err(ApiError::bad_request("invalid continue token"));
                };
                if rv < self.history_floor {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some((ns.to_string(), name.to_string())))
            }
        };
        let mut items = Vec::new();
        let mut continue_token = None;
        let candidates = self
            .objects
            .get(&t.key)
            .into_iter()
            .flatten()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
            .filter(|((ns, _), _)| t.namespace.is_empty() || *ns == t.namespace)
            .filter(|(_, s)| opts.label.matches(&s.obj) && opts.field.matches(&s.obj));
        for ((ns, name), s) in candidates {
            if opts.limit.is_some_and(|l| l > 0 && items.len() >= l) {
                let last = items
                    .last()
                    .map_or((ns.as_str(), name.as_str()), |o: &Value| {
                        (meta_str(o, "namespace"), meta_str(o, "name"))
                    });
                continue_token = Some(hex(&format!("{rv}\0{}\0{}", last.0, last.1)));
                break;
            }
            items.push(Value::clone(&s.obj));
        }
        Ok(Page {
            items,
            resource_version: rv,
            continue_token,
        })
    }
}
