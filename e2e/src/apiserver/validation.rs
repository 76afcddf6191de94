//! The field rules kube-apiserver enforces that this server enforces too (see the module docs of
//! `mod.rs` for the list and where each comes from in Kubernetes' source). Each check returns the
//! reasons a value is refused, empty when it is accepted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};

/// Kubernetes' limit on the total size of an object's annotations (keys and values), in bytes.
pub(crate) const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Longest `generateName` prefix kept: 63 minus the 5 random characters.
pub(crate) const MAX_GENERATE_NAME_PREFIX: usize = 58;

/// A refused field: its path and why.
pub(crate) type Cause = (String, String);

/// A DNS-1123 subdomain: at most 253 characters, dot-separated non-empty parts of `[a-z0-9-]`
/// starting and ending alphanumeric (Kubernetes does not limit the parts to 63 here).
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}

/// The name part of a qualified name (a label key without prefix, or a label value when not
/// empty): at most 63 characters of `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Why `key` is not a qualified name (`[prefix/]name`, the prefix a DNS-1123 subdomain).
pub(crate) fn qualified_name(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return Some(format!(
            "Invalid value: {key:?}: a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
    }
    if let Some(p) = prefix
        && (p.is_empty() || !is_dns1123_subdomain(p))
    {
        return Some(format!(
            "Invalid value: {key:?}: prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ));
    }
    if !is_qualified_name_part(name) {
        return Some(format!(
            "Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)"
        ));
    }
    None
}

/// Why `value` is not a label value (empty, or a qualified name part).
pub(crate) fn label_value(value: &str) -> Option<String> {
    (!value.is_empty() && !is_qualified_name_part(value)).then(|| {
        format!(
            "Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)"
        )
    })
}

/// `metadata.labels`: qualified-name keys, label values.
pub(crate) fn labels(labels: &Map<String, Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    for (k, v) in labels {
        if let Some(why) = qualified_name(k) {
            out.push(("metadata.labels".to_string(), why));
        }
        if let Some(why) = label_value(v.as_str().unwrap_or_default()) {
            out.push((format!("metadata.labels[{k}]"), why));
        }
    }
    out
}

/// `metadata.annotations`: qualified-name keys (checked lowercased, as Kubernetes does) and a
/// total size of at most [`MAX_ANNOTATIONS_BYTES`].
pub(crate) fn annotations(annotations: &Map<String, Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut size = 0usize;
    for (k, v) in annotations {
        if let Some(why) = qualified_name(&k.to_ascii_lowercase()) {
            out.push(("metadata.annotations".to_string(), why));
        }
        size += k.len() + v.as_str().map_or(0, str::len);
    }
    if size > MAX_ANNOTATIONS_BYTES {
        out.push((
            "metadata.annotations".to_string(),
            format!("Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"),
        ));
    }
    out
}

/// Why an IP cannot be an endpoint address: unparsable, unspecified, loopback, link-local
/// unicast or link-local multicast (IPv4-mapped IPv6 addresses are judged as IPv4). Loopback
/// passes with `allow_loopback` (a deliberate deviation, see `ApiServerOptions`).
pub(crate) fn endpoint_ip(ip: &IpAddr, allow_loopback: bool) -> Vec<String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
        v4 => *v4,
    };
    let mut out = Vec::new();
    let (unspecified, loopback, link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => (
            v4.is_unspecified(),
            v4.is_loopback(),
            v4.is_link_local(),
            v4.octets()[..3] == [224, 0, 0],
        ),
        IpAddr::V6(v6) => (
            v6.is_unspecified(),
            v6.is_loopback(),
            v6.segments()[0] & 0xffc0 == 0xfe80,
            v6.octets()[0] == 0xff && v6.octets()[1] & 0x0f == 0x02,
        ),
    };
    if unspecified {
        out.push(format!("may not be unspecified ({ip})"));
    }
    if loopback && !allow_loopback {
        out.push("may not be in the loopback range (127.0.0.0/8, ::1/128)".to_string());
    }
    if link_local {
        out.push("may not be in the link-local range (169.254.0.0/16, fe80::/10)".to_string());
    }
    if link_local_multicast {
        out.push(
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)".to_string(),
        );
    }
    out
}

fn invalid_value(value: &str, why: &str) -> String {
    format!("Invalid value: {value:?}: {why}")
}

/// core/v1 Endpoints: every `subsets[*].addresses[*].ip` and `notReadyAddresses[*].ip`.
pub(crate) fn endpoints(obj: &Value, allow_loopback: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    let subsets = obj.get("subsets").and_then(Value::as_array);
    for (i, subset) in subsets.into_iter().flatten().enumerate() {
        for list in ["addresses", "notReadyAddresses"] {
            let addresses = subset.get(list).and_then(Value::as_array);
            for (j, address) in addresses.into_iter().flatten().enumerate() {
                let field = format!("subsets[{i}].{list}[{j}].ip");
                let ip = address
                    .get("ip")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match ip.parse::<IpAddr>() {
                    Ok(parsed) => out.extend(
                        endpoint_ip(&parsed, allow_loopback)
                            .into_iter()
                            .map(|why| (field.clone(), invalid_value(ip, &why))),
                    ),
                    Err(_) => out.push((field, invalid_value(ip, "must be a valid IP address"))),
                }
            }
        }
    }
    out
}

/// discovery/v1 EndpointSlice: `addressType` one of IPv4, IPv6, FQDN; addresses of the IP types
/// parse as that family and pass [`endpoint_ip`]. FQDN addresses are not checked.
pub(crate) fn endpoint_slice(obj: &Value, allow_loopback: bool) -> Vec<Cause> {
    let address_type = obj
        .get("addressType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let family = match address_type {
        "IPv4" => 4,
        "IPv6" => 6,
        "FQDN" => return Vec::new(),
        "" => return vec![("addressType".to_string(), "Required value".to_string())],
        other => {
            return vec![(
                "addressType".to_string(),
                format!(
                    "Unsupported value: {other:?}: supported values: \"FQDN\", \"IPv4\", \"IPv6\""
                ),
            )];
        }
    };
    let mut out = Vec::new();
    let endpoints = obj.get("endpoints").and_then(Value::as_array);
    for (i, endpoint) in endpoints.into_iter().flatten().enumerate() {
        let addresses = endpoint.get("addresses").and_then(Value::as_array);
        for (j, address) in addresses.into_iter().flatten().enumerate() {
            let field = format!("endpoints[{i}].addresses[{j}]");
            let text = address.as_str().unwrap_or_default();
            let parsed: Option<IpAddr> = if family == 4 {
                text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
            } else {
                text.parse::<Ipv6Addr>()
                    .ok()
                    .filter(|v6| v6.to_ipv4_mapped().is_none())
                    .map(IpAddr::V6)
            };
            match parsed {
                Some(ip) => out.extend(
                    endpoint_ip(&ip, allow_loopback)
                        .into_iter()
                        .map(|why| (field.clone(), invalid_value(text, &why))),
                ),
                None => out.push((
                    field,
                    invalid_value(text, &format!("must be a valid IPv{family} address")),
                )),
            }
        }
    }
    out
}

/// The fields kube-apiserver accepts in a `fieldSelector` for a built-in resource, besides
/// `metadata.name` and `metadata.namespace` (which every resource accepts).
pub(crate) fn builtin_selectable_fields(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("apps", "replicasets") => &["status.replicas"],
        _ => &[],
    }
}

/// A resource quantity (`pkg/api/resource` Quantity: `1.5`, `250m`, `2Gi`, `1e3`) in billionths,
/// or `None` when it is not one this server understands (then it is not judged).
pub(crate) fn quantity_nanos(q: &str) -> Option<i128> {
    let (sign, rest) = match q.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, q.strip_prefix('+').unwrap_or(q)),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 9 {
        return None;
    }
    let digits = |s: &str| -> Option<i128> {
        if s.is_empty() {
            Some(0)
        } else {
            s.parse().ok()
        }
    };
    let nanos_of_fraction = digits(fraction)? * 10i128.pow(9 - u32::try_from(fraction.len()).ok()?);
    let base = digits(whole)?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos_of_fraction)?;
    let binary = |power: u32| base.checked_mul(1i128 << power);
    let decimal = |exp: i32| -> Option<i128> {
        if exp >= 0 {
            base.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)
        } else {
            Some(base / 10i128.checked_pow(exp.unsigned_abs())?)
        }
    };
    let value = match suffix {
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        exp => {
            let e = exp.strip_prefix(['e', 'E'])?;
            let e: i32 = e.parse().ok().filter(|e: &i32| e.abs() <= 27)?;
            decimal(e)
        }
    }?;
    Some(sign * value)
}

/// Container resources in a pod spec at `path` (`spec` of a Pod, `spec.template.spec` of a
/// DaemonSet): a request above the limit of the same resource is refused at
/// `<path>.containers[i].resources.requests` (`pkg/apis/core/validation/validation.go`
/// ValidateResourceRequirements: "must be less than or equal to <resource> limit of <limit>").
/// Quantities this server does not parse are not judged.
pub(crate) fn pod_spec_resources(pod_spec: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers"] {
        let containers = pod_spec.and_then(|s| s.get(list)).and_then(Value::as_array);
        for (i, c) in containers.into_iter().flatten().enumerate() {
            let resources = c.get("resources");
            let map = |k| resources.and_then(|r| r.get(k)).and_then(Value::as_object);
            let (Some(requests), Some(limits)) = (map("requests"), map("limits")) else {
                continue;
            };
            for (name, request) in requests {
                let (Some(request), Some(limit)) =
                    (request.as_str(), limits.get(name).and_then(Value::as_str))
                else {
                    continue;
                };
                if let (Some(r), Some(l)) = (quantity_nanos(request), quantity_nanos(limit))
                    && r > l
                {
                    out.push((
                        format!("{path}.{list}[{i}].resources.requests"),
                        invalid_value(
                            request,
                            &format!("must be less than or equal to {name} limit of {limit}"),
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// `spec.preserveUnknownFields` of an apiextensions v1 CRD (absent is false).
pub(crate) fn preserves_unknown_fields(crd: &Value) -> bool {
    crd.pointer("/spec/preserveUnknownFields")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Whether any version's schema sets `default` somewhere (a property *named* `default` is not
/// one). Iterative, so a deep schema cannot exhaust the stack.
pub(crate) fn crd_has_defaults(crd: &Value) -> bool {
    let mut schemas: Vec<&Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/schema/openAPIV3Schema"))
        .collect();
    while let Some(schema) = schemas.pop() {
        let Some(map) = schema.as_object() else {
            continue;
        };
        if map.contains_key("default") {
            return true;
        }
        for key in ["properties", "patternProperties", "definitions"] {
            if let Some(children) = map.get(key).and_then(Value::as_object) {
                schemas.extend(children.values());
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(children) = map.get(key).and_then(Value::as_array) {
                schemas.extend(children);
            }
        }
        for key in ["items", "additionalProperties", "additionalItems", "not"] {
            match map.get(key) {
                Some(Value::Array(children)) => schemas.extend(children),
                Some(child @ Value::Object(_)) => schemas.push(child),
                _ => {}
            }
        }
    }
    false
}

/// The `spec.preserveUnknownFields` rules of apiextensions v1 (`apiextensions/validation`
/// `validatePreserveUnknownFields` and `validateCustomResourceDefinitionSpec`):
/// - it cannot be set to true, unless the stored CRD already had it (a CRD created through
///   apiextensions v1beta1, which defaulted it to true) or `legacy` says this write stands in for
///   such a v1beta1 create;
/// - while it is true, no schema may set `default`.
///
/// Setting it from true to false is accepted (the schema must then be structural, which this
/// server does not check).
pub(crate) fn crd_preserve_unknown_fields(
    crd: &Value,
    old: Option<&Value>,
    legacy: bool,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !preserves_unknown_fields(crd) {
        return causes;
    }
    let field = "spec.preserveUnknownFields".to_string();
    if !legacy && !old.is_some_and(preserves_unknown_fields) {
        causes.push((
            field.clone(),
            "Invalid value: true: cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead".into(),
        ));
    }
    if crd_has_defaults(crd) {
        causes.push((
            field,
            "Invalid value: true: must be false in order to use defaults in the schema".into(),
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        for ok in [
            "a",
            "A_b.c-1",
            "example.com/Name",
            "1.2.3.4/5678",
            "sluice.dev/gateway",
        ] {
            assert_eq!(qualified_name(ok), None, "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a/b/c",
            "/a",
            "a/",
            "Example.com/a",
            "a b",
            &"a".repeat(64),
            &format!("{}/a", "a".repeat(254)),
        ] {
            assert!(qualified_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "A.b_c-1", &"a".repeat(63)] {
            assert_eq!(label_value(ok), None, "{ok}");
        }
        for bad in ["ns/name", "-a", "a-", "a b", &"a".repeat(64)] {
            assert!(label_value(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn special_ips() {
        for (ip, special) in [
            ("127.0.0.1", true),
            ("127.255.0.9", true),
            ("::1", true),
            ("0.0.0.0", true),
            ("::", true),
            ("169.254.169.254", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("224.0.0.251", true),
            ("ff02::1", true),
            ("::ffff:127.0.0.1", true),
            ("10.0.0.1", false),
            ("192.0.2.1", false),
            ("224.0.1.1", false),
            ("fec0::1", false),
            ("2001:db8::1", false),
        ] {
            let judged = ip
                .parse::<IpAddr>()
                .map(|p| !endpoint_ip(&p, false).is_empty());
            assert_eq!(judged, Ok(special), "{ip}");
        }
        for ip in ["127.0.0.1", "::1"] {
            let judged = ip.parse::<IpAddr>().map(|p| endpoint_ip(&p, true));
            assert_eq!(judged, Ok(Vec::new()), "{ip}");
        }
    }

    #[test]
    fn quantities() {
        for (q, nanos) in [
            ("1", 1_000_000_000),
            ("1.5", 1_500_000_000),
            ("250m", 250_000_000),
            (".5", 500_000_000),
            ("2Gi", 2 * (1i128 << 30) * 1_000_000_000),
            ("1k", 1_000_000_000_000),
            ("1e3", 1_000_000_000_000),
            ("100n", 100),
            ("-1", -1_000_000_000),
        ] {
            assert_eq!(quantity_nanos(q), Some(nanos), "{q}");
        }
        for bad in ["", "m", "1.2.3", "1x", "1Qi", "e3"] {
            assert_eq!(quantity_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn requests_above_limits() {
        let spec = serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                        "limits": {"cpu": "1", "memory": "1024Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "2", "memory": "x"},
                                        "limits": {"cpu": "1500m", "memory": "1Mi"}}},
            {"name": "c", "resources": {"requests": {"cpu": "2"}}},
        ]});
        assert_eq!(
            pod_spec_resources(Some(&spec), "spec.template.spec"),
            [(
                "spec.template.spec.containers[1].resources.requests".to_string(),
                "Invalid value: \"2\": must be less than or equal to cpu limit of 1500m"
                    .to_string()
            )]
        );
        assert!(pod_spec_resources(None, "spec").is_empty());
    }
}
