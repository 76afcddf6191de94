//! An independent check of translated resources against the Envoy rules tenant values can
//! reach, applied to the output rather than the input: the second line behind the DAG's checks
//! (`dag::checks`), used by the adversarial suite and the fuzz target to prove that whatever a
//! tenant writes, what Sluice sends is something Envoy accepts.
//!
//! It reads each resource in Envoy's JSON form (field names as in the protos), so it covers
//! every field without knowing where each value came from:
//!
//! - no string holds NUL, CR or LF (Envoy's HTTP_HEADER_VALUE rule on paths, rewrites, hosts,
//!   and everything else that ends up in a header or a log), inline certificates excepted;
//! - durations lie in 0 to 9,223,372,036 s (Envoy refuses longer ones);
//! - `sni` is at most 255 bytes; health-check paths are not empty;
//! - domains are unique within a route configuration and server names within a listener;
//! - scope keys are unique among the scoped route configurations (Envoy refuses an SRDS update
//!   where two scopes share a key), and each scope names a route configuration of the set;
//! - weighted clusters weigh more than 0 and at most 2^32-1 in total;
//! - endpoint addresses are IP literals with a port in 1-65535;
//! - TLS certificates parse and match their key; CA bundles parse.

use std::collections::BTreeMap;

use serde_json::Value;

use envoy_types::pb::envoy::config::route::v3::scoped_route_configuration;

use super::Resources;
use super::json::message_to_json;
use crate::dag::checks;

/// Envoy's largest duration, in seconds (nanoseconds must fit in 64 bits).
pub const MAX_ENVOY_DURATION_SECONDS: u64 = 9_223_372_036;

/// One broken rule, naming the resource and where in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub resource: String,
    pub at: String,
    pub rule: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: {}", self.resource, self.at, self.rule)
    }
}

/// Every violation in `resources`; empty when Envoy would accept all of them as far as these
/// rules go.
pub fn check_resources(resources: &Resources) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut each = |kind: &str, name: &str, json: Result<Value, String>| {
        let resource = format!("{kind} {name:?}");
        match json {
            Ok(v) => check_value(&resource, &v, &mut out),
            Err(e) => out.push(Violation {
                resource,
                at: String::new(),
                rule: format!("does not render as Envoy JSON: {e}"),
            }),
        }
    };
    let j = |m: Result<Value, super::json::JsonError>| m.map_err(|e| e.to_string());
    for r in &resources.listeners {
        each("listener", &r.name, j(message_to_json(&r.message)));
    }
    for r in &resources.routes {
        each(
            "route configuration",
            &r.name,
            j(message_to_json(&r.message)),
        );
    }
    for r in &resources.scoped_routes {
        each(
            "scoped route configuration",
            &r.name,
            j(message_to_json(&r.message)),
        );
    }
    for r in &resources.clusters {
        each("cluster", &r.name, j(message_to_json(&r.message)));
    }
    for r in &resources.endpoints {
        each("endpoints", &r.name, j(message_to_json(&r.message)));
    }
    for r in &resources.secrets {
        each("secret", &r.name, j(message_to_json(&r.message)));
    }
    check_scopes(resources, &mut out);
    out
}

/// Scope keys unique, and each scope's route configuration present.
fn check_scopes(resources: &Resources, out: &mut Vec<Violation>) {
    let mut keys: BTreeMap<Vec<String>, &str> = BTreeMap::new();
    for r in &resources.scoped_routes {
        let resource = format!("scoped route configuration {:?}", r.name);
        let key: Vec<String> = r
            .message
            .key
            .iter()
            .flat_map(|k| &k.fragments)
            .map(|f| match &f.r#type {
                Some(scoped_route_configuration::key::fragment::Type::StringKey(s)) => s.clone(),
                None => String::new(),
            })
            .collect();
        if let Some(first) = keys.insert(key.clone(), &r.name) {
            out.push(Violation {
                resource: resource.clone(),
                at: ".key".to_owned(),
                rule: format!("key {key:?} also used by scope {first:?}"),
            });
        }
        let route = &r.message.route_configuration_name;
        if !resources.routes.iter().any(|rc| &rc.name == route) {
            out.push(Violation {
                resource,
                at: ".route_configuration_name".to_owned(),
                rule: format!("route configuration {route:?} is not in the set"),
            });
        }
    }
}

fn check_value(resource: &str, root: &Value, out: &mut Vec<Violation>) {
    let mut v = Walker {
        resource,
        out,
        domains: BTreeMap::new(),
        server_names: BTreeMap::new(),
    };
    v.walk("", root);
}

struct Walker<'a> {
    resource: &'a str,
    out: &'a mut Vec<Violation>,
    /// Domain -> first path where it appeared, in this resource.
    domains: BTreeMap<String, String>,
    server_names: BTreeMap<String, String>,
}

impl Walker<'_> {
    fn violation(&mut self, at: &str, rule: impl Into<String>) {
        self.out.push(Violation {
            resource: self.resource.to_owned(),
            at: at.to_owned(),
            rule: rule.into(),
        });
    }

    fn walk(&mut self, at: &str, value: &Value) {
        match value {
            Value::Object(map) => {
                self.object_rules(at, map);
                for (k, v) in map {
                    // Inline certificates, keys and CA bundles are PEM, newlines included;
                    // they are checked as certificates in `object_rules`.
                    if k == "inline_string" || k == "inline_bytes" {
                        continue;
                    }
                    self.walk(&format!("{at}.{k}"), v);
                    self.field_rules(&format!("{at}.{k}"), k, v);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.walk(&format!("{at}[{i}]"), v);
                }
            }
            Value::String(s) => {
                if let Some(b) = s.bytes().find(|b| matches!(b, 0 | b'\r' | b'\n')) {
                    self.violation(at, format!("string holds byte 0x{b:02x}"));
                }
                if let Some(secs) = duration_seconds(s)
                    && !(0.0..=MAX_ENVOY_DURATION_SECONDS as f64).contains(&secs)
                {
                    self.violation(at, format!("duration {s} out of Envoy's range"));
                }
            }
            _ => {}
        }
    }

    fn field_rules(&mut self, at: &str, key: &str, value: &Value) {
        match (key, value) {
            ("sni", Value::String(s)) if s.len() > checks::MAX_SNI => {
                self.violation(at, "sni longer than 255 bytes");
            }
            ("domains", Value::Array(items)) => {
                for d in items.iter().filter_map(Value::as_str) {
                    if let Some(first) = self.domains.insert(d.to_owned(), at.to_owned()) {
                        self.violation(at, format!("domain {d:?} also at {first}"));
                    }
                }
            }
            ("server_names", Value::Array(items)) => {
                for d in items.iter().filter_map(Value::as_str) {
                    if let Some(first) = self.server_names.insert(d.to_owned(), at.to_owned()) {
                        self.violation(at, format!("server name {d:?} also at {first}"));
                    }
                }
            }
            _ => {}
        }
    }

    fn object_rules(&mut self, at: &str, map: &serde_json::Map<String, Value>) {
        if let Some(hc) = map.get("http_health_check") {
            let path = hc.get("path").and_then(Value::as_str).unwrap_or("");
            if path.is_empty() {
                self.violation(at, "health check path is empty");
            }
        }
        if let Some(Value::Array(clusters)) = map.get("clusters")
            && at.ends_with("weighted_clusters")
        {
            let sum: u64 = clusters
                .iter()
                .filter_map(|c| c.get("weight"))
                .filter_map(Value::as_u64)
                .sum();
            if sum == 0 || sum > u64::from(u32::MAX) {
                self.violation(at, format!("weights add up to {sum}"));
            }
        }
        // EDS load assignments only: an ExternalName cluster's inline one names a host to resolve.
        if let Some(Value::Object(sa)) = map.get("socket_address")
            && at.contains("lb_endpoints")
            && self.resource.starts_with("endpoints ")
        {
            let address = sa.get("address").and_then(Value::as_str).unwrap_or("");
            if address.parse::<std::net::IpAddr>().is_err() {
                self.violation(at, format!("endpoint address {address:?} is not an IP"));
            }
            let port = sa.get("port_value").and_then(Value::as_u64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                self.violation(at, format!("endpoint port {port}"));
            }
        }
        if let Some(tls) = map.get("tls_certificate") {
            let inline = |k: &str| {
                tls.get(k)
                    .and_then(|v| v.get("inline_string"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .as_bytes()
                    .to_vec()
            };
            if let Err(e) =
                checks::tls_key_pair(&inline("certificate_chain"), &inline("private_key"))
            {
                self.violation(at, format!("TLS certificate: {e}"));
            }
        }
        if let Some(ca) = map
            .get("validation_context")
            .and_then(|v| v.get("trusted_ca"))
            .and_then(|v| v.get("inline_string"))
            .and_then(Value::as_str)
            && let Err(e) = checks::ca_bundle(ca.as_bytes())
        {
            self.violation(at, format!("CA bundle: {e}"));
        }
    }
}

/// Seconds of a proto3 JSON duration (`"1.500s"`), or `None` for other strings.
fn duration_seconds(s: &str) -> Option<f64> {
    let number = s.strip_suffix('s')?;
    if number.is_empty()
        || !number
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return None;
    }
    number.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn violations(v: Value) -> Vec<String> {
        let mut out = Vec::new();
        check_value("endpoints \"r\"", &v, &mut out);
        out.into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn rules() {
        assert!(violations(json!({"a": "fine", "timeout": "1.5s"})).is_empty());
        assert_eq!(violations(json!({"prefix": "/a\r\n"})).len(), 1);
        assert_eq!(violations(json!({"timeout": "315576000000s"})).len(), 1);
        assert_eq!(violations(json!({"sni": "a".repeat(256)})).len(), 1);
        assert_eq!(
            violations(json!({"virtual_hosts": [{"domains": ["a", "b"]}, {"domains": ["a"]}]}))
                .len(),
            1
        );
        assert_eq!(
            violations(json!({"weighted_clusters": {"clusters": [
                {"name": "a", "weight": 4_294_967_295_u64}, {"name": "b", "weight": 1}]}}))
            .len(),
            1
        );
        assert_eq!(
            violations(json!({"http_health_check": {"path": ""}})).len(),
            1
        );
        assert_eq!(
            violations(
                json!({"lb_endpoints": [{"endpoint": {"address": {"socket_address":
                {"address": "evil.example.com", "port_value": 80}}}}]})
            )
            .len(),
            1
        );
        assert_eq!(
            violations(json!({"tls_certificate": {
                "certificate_chain": {"inline_string": "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n"},
                "private_key": {"inline_string": "x"}}}))
            .len(),
            1
        );
    }
}
