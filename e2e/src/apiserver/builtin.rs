//! Field rules of the built-in kinds the operator writes, as kube-apiserver enforces them
//! (`pkg/apis/core/validation/validation.go`, `pkg/apis/apps/validation/validation.go`,
//! `pkg/apis/coordination/validation/validation.go`). Each check returns `(field, reason)` pairs,
//! empty when the object is accepted; `old` is the stored object on updates.

use serde_json::{Map, Value};

use super::validation::{Cause, label_value, qualified_name};

/// ConfigMaps and Secrets hold at most 1 MiB (`core.MaxSecretSize`).
pub(crate) const MAX_DATA_BYTES: usize = 1024 * 1024;

const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// IANA_SVC_NAME: at most 15 characters of `[a-z0-9-]`, a letter among them, no leading,
/// trailing or doubled `-` (apimachinery IsValidPortName).
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn invalid(value: &Value, why: &str) -> String {
    format!("Invalid value: {value}: {why}")
}

fn unsupported(value: &Value, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "Unsupported value: {value}: supported values: {}",
        list.join(", ")
    )
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn items<'a>(v: Option<&'a Value>, key: &str) -> &'a [Value] {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A port number field: 1..=65535 (`required`), or absent.
fn port_number(out: &mut Vec<Cause>, field: String, value: Option<&Value>, required: bool) {
    match value {
        None if required => out.push((field, "Required value".into())),
        Some(v) if !v.as_i64().is_some_and(|p| (1..=65535).contains(&p)) => {
            out.push((field, invalid(v, "must be between 1 and 65535, inclusive")));
        }
        _ => {}
    }
}

/// A port given as a number or an IANA service name (probe and Service target ports).
fn int_or_port_name(out: &mut Vec<Cause>, field: String, value: Option<&Value>) {
    match value {
        Some(Value::String(name)) if !is_port_name(name) => out.push((
            field,
            invalid(&Value::String(name.clone()), "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), at most 15 characters, at least one letter, no leading, trailing or doubled hyphens"),
        )),
        Some(Value::String(_)) | None => {}
        n => port_number(out, field, n, false),
    }
}

fn protocol(out: &mut Vec<Cause>, field: String, value: Option<&Value>) {
    if let Some(p) = value
        && !matches!(p.as_str(), Some("TCP" | "UDP" | "SCTP"))
    {
        out.push((field, unsupported(p, &["SCTP", "TCP", "UDP"])));
    }
}

fn probe(out: &mut Vec<Cause>, path: &str, probe: &Value, liveness_or_startup: bool) {
    let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .filter(|h| probe.get(*h).is_some_and(|v| !v.is_null()))
        .collect();
    match handlers.as_slice() {
        [] => out.push((
            path.to_string(),
            "Required value: must specify a handler type".into(),
        )),
        [_, more @ ..] => {
            for h in more {
                out.push((
                    format!("{path}.{h}"),
                    "Forbidden: may not specify more than 1 handler type".into(),
                ));
            }
        }
    }
    for h in ["httpGet", "tcpSocket"] {
        if let Some(handler) = probe.get(h) {
            let port = handler.get("port");
            if port.is_none() {
                out.push((format!("{path}.{h}.port"), "Required value".into()));
            }
            int_or_port_name(out, format!("{path}.{h}.port"), port);
        }
    }
    for field in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(v) = probe.get(field)
            && v.as_i64().is_some_and(|n| n < 0)
        {
            out.push((
                format!("{path}.{field}"),
                invalid(v, "must be greater than or equal to 0"),
            ));
        }
    }
    if liveness_or_startup
        && let Some(v) = probe.get("successThreshold")
        && v.as_i64() != Some(1)
    {
        out.push((format!("{path}.successThreshold"), invalid(v, "must be 1")));
    }
}

/// A pod spec: containers (names, images, ports, probes), tolerations, restart policy.
pub(crate) fn pod_spec(spec: Option<&Value>, path: &str, template: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    if items(spec, "containers").is_empty() {
        out.push((format!("{path}.containers"), "Required value".into()));
    }
    let mut names: Vec<&str> = Vec::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in items(spec, list).iter().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            match str_at(c, "name") {
                None | Some("") => out.push((format!("{at}.name"), "Required value".into())),
                Some(name) if !is_dns1123_label(name) => {
                    out.push((format!("{at}.name"), invalid(&c["name"], DNS1123_LABEL_ERR)));
                }
                Some(name) if names.contains(&name) => {
                    out.push((format!("{at}.name"), format!("Duplicate value: {:?}", name)));
                }
                Some(name) => names.push(name),
            }
            if str_at(c, "image").is_none_or(str::is_empty) {
                out.push((format!("{at}.image"), "Required value".into()));
            }
            let mut port_names: Vec<&str> = Vec::new();
            for (j, p) in items(Some(c), "ports").iter().enumerate() {
                let pat = format!("{at}.ports[{j}]");
                port_number(
                    &mut out,
                    format!("{pat}.containerPort"),
                    p.get("containerPort"),
                    true,
                );
                if let Some(h) = p.get("hostPort")
                    && !h.as_i64().is_some_and(|n| (0..=65535).contains(&n))
                {
                    out.push((
                        format!("{pat}.hostPort"),
                        invalid(h, "must be between 1 and 65535, inclusive"),
                    ));
                }
                protocol(&mut out, format!("{pat}.protocol"), p.get("protocol"));
                if let Some(name) = str_at(p, "name") {
                    if !is_port_name(name) {
                        out.push((format!("{pat}.name"), invalid(&p["name"], "must be no more than 15 characters, contain only a-z, 0-9 and '-', at least one letter, no leading, trailing or doubled '-'")));
                    } else if port_names.contains(&name) {
                        out.push((format!("{pat}.name"), format!("Duplicate value: {name:?}")));
                    }
                    port_names.push(name);
                }
            }
            for (field, strict) in [
                ("livenessProbe", true),
                ("readinessProbe", false),
                ("startupProbe", true),
            ] {
                if let Some(p) = c.get(field).filter(|p| p.is_object()) {
                    probe(&mut out, &format!("{at}.{field}"), p, strict);
                }
            }
        }
    }
    for (i, t) in items(spec, "tolerations").iter().enumerate() {
        let at = format!("{path}.tolerations[{i}]");
        let key = str_at(t, "key").unwrap_or_default();
        let operator = str_at(t, "operator").unwrap_or_default();
        if !key.is_empty()
            && let Some(why) = qualified_name(key)
        {
            out.push((format!("{at}.key"), why));
        }
        if key.is_empty() && operator != "Exists" {
            out.push((format!("{at}.operator"), invalid(&Value::String(operator.into()), "operator must be Exists when `key` is empty, which means \"match all values and all keys\"")));
        }
        match operator {
            "" | "Equal" => {
                if let Some(why) = label_value(str_at(t, "value").unwrap_or_default()) {
                    out.push((format!("{at}.operator"), why));
                }
            }
            "Exists" => {
                if str_at(t, "value").is_some_and(|v| !v.is_empty()) {
                    out.push((
                        format!("{at}.operator"),
                        invalid(
                            &t["value"],
                            "value must be empty when `operator` is 'Exists'",
                        ),
                    ));
                }
            }
            _ => out.push((
                format!("{at}.operator"),
                unsupported(&t["operator"], &["Equal", "Exists"]),
            )),
        }
        let effect = str_at(t, "effect").unwrap_or_default();
        if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            out.push((
                format!("{at}.effect"),
                unsupported(
                    &t["effect"],
                    &["NoExecute", "NoSchedule", "PreferNoSchedule"],
                ),
            ));
        }
        if t.get("tolerationSeconds").is_some_and(|s| !s.is_null()) && effect != "NoExecute" {
            out.push((
                format!("{at}.effect"),
                invalid(
                    &t["effect"],
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                ),
            ));
        }
    }
    if let Some(policy) = spec.and_then(|s| s.get("restartPolicy")) {
        let allowed: &[&str] = if template {
            &["Always"]
        } else {
            &["Always", "OnFailure", "Never"]
        };
        if !policy.as_str().is_some_and(|p| allowed.contains(&p)) {
            out.push((
                format!("{path}.restartPolicy"),
                unsupported(policy, allowed),
            ));
        }
    }
    out
}

/// Services: type, ports (numbers, protocols, names), externalTrafficPolicy.
pub(crate) fn service(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = obj.get("spec");
    let kind = spec.and_then(|s| str_at(s, "type")).unwrap_or("ClusterIP");
    const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !TYPES.contains(&kind) {
        out.push((
            "spec.type".into(),
            unsupported(&Value::String(kind.into()), &TYPES),
        ));
    }
    let ports = items(spec, "ports");
    if ports.is_empty() && kind != "ExternalName" {
        out.push(("spec.ports".into(), "Required value".into()));
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        match str_at(p, "name").filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => out.push((format!("{at}.name"), "Required value".into())),
            None => {}
            Some(name) if !is_dns1123_label(name) => {
                out.push((format!("{at}.name"), invalid(&p["name"], DNS1123_LABEL_ERR)));
            }
            Some(name) if names.contains(&name) => {
                out.push((format!("{at}.name"), format!("Duplicate value: {name:?}")));
            }
            Some(name) => names.push(name),
        }
        port_number(&mut out, format!("{at}.port"), p.get("port"), true);
        protocol(&mut out, format!("{at}.protocol"), p.get("protocol"));
        int_or_port_name(&mut out, format!("{at}.targetPort"), p.get("targetPort"));
        if p.get("nodePort").is_some_and(|n| !n.is_null() && n != 0)
            && !matches!(kind, "NodePort" | "LoadBalancer")
        {
            out.push((
                format!("{at}.nodePort"),
                format!("Forbidden: may not be used when `type` is '{kind}'"),
            ));
        }
    }
    if let Some(policy) = spec
        .and_then(|s| s.get("externalTrafficPolicy"))
        .filter(|p| p.as_str().is_some_and(|p| !p.is_empty()))
    {
        if !matches!(kind, "NodePort" | "LoadBalancer") {
            out.push((
                "spec.externalTrafficPolicy".into(),
                invalid(
                    policy,
                    "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
                ),
            ));
        } else if !matches!(policy.as_str(), Some("Cluster" | "Local")) {
            out.push((
                "spec.externalTrafficPolicy".into(),
                unsupported(policy, &["Cluster", "Local"]),
            ));
        }
    }
    out
}

/// Whether `labels` match a LabelSelector (`matchLabels` and `matchExpressions`).
fn selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let by_expressions = items(Some(selector), "matchExpressions").iter().all(|e| {
        let key = str_at(e, "key").unwrap_or_default();
        let values: Vec<&str> = items(Some(e), "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        match str_at(e, "operator") {
            Some("In") => label(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") => label(key).is_some(),
            Some("DoesNotExist") => label(key).is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

fn selector_is_empty(selector: &Value) -> bool {
    selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && items(Some(selector), "matchExpressions").is_empty()
}

/// DaemonSets: a non-empty selector matching the template's labels, immutable; the template.
pub(crate) fn daemon_set(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = obj.get("spec");
    let template = spec.and_then(|s| s.get("template"));
    match spec
        .and_then(|s| s.get("selector"))
        .filter(|s| !s.is_null())
    {
        None => out.push(("spec.selector".into(), "Required value".into())),
        Some(selector) if selector_is_empty(selector) => out.push((
            "spec.selector".into(),
            invalid(selector, "empty selector is invalid for daemonset"),
        )),
        Some(selector) => {
            let empty = Map::new();
            let labels = template
                .and_then(|t| t.pointer("/metadata/labels"))
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if !selector_matches(selector, labels) {
                out.push((
                    "spec.template.metadata.labels".into(),
                    invalid(
                        &Value::Object(labels.clone()),
                        "`selector` does not match template `labels`",
                    ),
                ));
            }
            if let Some(before) = old.and_then(|o| o.pointer("/spec/selector"))
                && before != selector
            {
                out.push((
                    "spec.selector".into(),
                    invalid(selector, "field is immutable"),
                ));
            }
        }
    }
    out.extend(pod_spec(
        template.and_then(|t| t.get("spec")),
        "spec.template.spec",
        true,
    ));
    out
}

/// A valid ConfigMap or Secret key (IsConfigMapKey).
fn config_key(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && key != "."
        && key != ".."
        && !key.starts_with("..");
    (!ok).then(|| "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string())
}

fn data_keys(out: &mut Vec<Cause>, obj: &Value, field: &str) -> usize {
    let mut size = 0;
    for (k, v) in obj
        .get(field)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(why) = config_key(k) {
            out.push((
                format!("{field}[{k}]"),
                invalid(&Value::String(k.clone()), &why),
            ));
        }
        size += k.len() + v.as_str().map_or(0, str::len);
    }
    size
}

/// ConfigMaps: keys, no key in both `data` and `binaryData`, at most 1 MiB; immutable contents.
pub(crate) fn config_map(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let size = data_keys(&mut out, obj, "data") + data_keys(&mut out, obj, "binaryData");
    if let (Some(data), Some(binary)) = (
        obj.get("data").and_then(Value::as_object),
        obj.get("binaryData").and_then(Value::as_object),
    ) {
        for k in data.keys().filter(|k| binary.contains_key(*k)) {
            out.push((
                format!("data[{k}]"),
                invalid(
                    &Value::String(k.clone()),
                    "duplicate of key present in binaryData",
                ),
            ));
        }
    }
    if size > MAX_DATA_BYTES {
        out.push((
            String::new(),
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
        ));
    }
    immutable_contents(&mut out, obj, old, &["data", "binaryData"]);
    out
}

fn immutable_contents(out: &mut Vec<Cause>, obj: &Value, old: Option<&Value>, fields: &[&str]) {
    let Some(old) = old.filter(|o| o.get("immutable") == Some(&Value::Bool(true))) else {
        return;
    };
    for field in fields {
        if obj.get(*field) != old.get(*field) {
            out.push((
                (*field).to_string(),
                "Forbidden: field is immutable when `immutable` is set".into(),
            ));
        }
    }
    if obj.get("immutable") != Some(&Value::Bool(true)) {
        out.push((
            "immutable".into(),
            "Forbidden: field is immutable when `immutable` is set".into(),
        ));
    }
}

/// Secrets: keys, at most 1 MiB, `kubernetes.io/tls` needs both keys, `type` immutable.
pub(crate) fn secret(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let size = data_keys(&mut out, obj, "data");
    if size > MAX_DATA_BYTES {
        out.push((
            "data".into(),
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
        ));
    }
    let kind = str_at(obj, "type").unwrap_or("Opaque");
    if kind == "kubernetes.io/tls" {
        for key in ["tls.crt", "tls.key"] {
            // `stringData` is folded into `data` before validation.
            let present = [obj.get("data"), obj.get("stringData")]
                .into_iter()
                .flatten()
                .any(|d| d.get(key).is_some());
            if !present {
                out.push((format!("data[{key}]"), "Required value".into()));
            }
        }
    }
    if let Some(old) = old {
        let before = str_at(old, "type").unwrap_or("Opaque");
        if before != kind {
            out.push((
                "type".into(),
                invalid(&Value::String(kind.into()), "field is immutable"),
            ));
        }
    }
    immutable_contents(&mut out, obj, old, &["data"]);
    out
}

/// Leases: a positive `leaseDurationSeconds`, non-negative `leaseTransitions`.
pub(crate) fn lease(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = obj.get("spec");
    if let Some(d) = spec
        .and_then(|s| s.get("leaseDurationSeconds"))
        .filter(|d| !d.is_null())
        && d.as_i64().is_none_or(|n| n <= 0)
    {
        out.push((
            "spec.leaseDurationSeconds".into(),
            invalid(d, "must be greater than 0"),
        ));
    }
    if let Some(t) = spec
        .and_then(|s| s.get("leaseTransitions"))
        .filter(|t| !t.is_null())
        && t.as_i64().is_none_or(|n| n < 0)
    {
        out.push((
            "spec.leaseTransitions".into(),
            invalid(t, "must be greater than or equal to 0"),
        ));
    }
    out
}
