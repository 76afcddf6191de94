//! Upstreams: a route's services resolved to clusters (protocol, load balancing, health check,
//! upstream TLS validation) and their ready endpoints, from Endpoints and EndpointSlices.

use std::collections::BTreeSet;

use crate::snapshot::slim::{Service as KubeService, ServicePort, UPSTREAM_PROTOCOL_PREFIXES};

use super::build::Builder;
use super::checks;
use super::deps::Dep;
use super::durations::{RequestTimeout, parse_request_timeout, parse_timeout};
use super::model::{
    self, Cluster, ClusterEndpoints, HealthCheck, LbPolicy, Retry, Secret, SecretKind,
    SocketAddress, Upstream, UpstreamProtocol, WeightedCluster,
};
use crate::api::IngressRoute;
use crate::api::ingressroute::{self as ir, LbStrategy};
use crate::snapshot::ObjKey;

/// Host header Envoy sends with health checks unless the service says otherwise.
pub const DEFAULT_HEALTH_CHECK_HOST: &str = "contour-envoy-healthcheck";
const DEFAULT_HEALTH_CHECK_INTERVAL: u32 = 5;
const DEFAULT_HEALTH_CHECK_TIMEOUT: u32 = 2;
const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;

/// The key of a CA bundle in a Secret.
const CA_CERT_KEY: &str = "ca.crt";

impl Builder<'_> {
    pub(super) fn build_route(
        &mut self,
        key: &ObjKey,
        owner: &IngressRoute,
        r: &ir::Route,
    ) -> Result<model::Route, String> {
        let prefix = r.match_.as_str();
        let timeout = match r.timeout_policy.as_ref().and_then(|t| t.request.as_deref()) {
            None => None,
            Some(t) => Some(match parse_request_timeout(t) {
                RequestTimeout::Disabled => model::Timeout::Disabled,
                RequestTimeout::Millis(ms) => model::Timeout::Millis(
                    checks::duration_ms(ms)
                        .map_err(|e| format!("route {prefix:?}: timeoutPolicy.request {e}"))?,
                ),
            }),
        };
        let retry = match &r.retry_policy {
            None => None,
            Some(p) => Some(Retry {
                count: p.count.unwrap_or(1).clamp(1, i64::from(u32::MAX)) as u32,
                per_try_timeout_ms: p
                    .per_try_timeout
                    .as_deref()
                    .and_then(parse_timeout)
                    .map(checks::duration_ms)
                    .transpose()
                    .map_err(|e| format!("route {prefix:?}: retryPolicy.perTryTimeout {e}"))?,
            }),
        };
        let mut built = Vec::with_capacity(r.services.len());
        for s in &r.services {
            let context = format!("route {prefix:?}: service {:?}", s.name);
            let port = check_port_and_weight(&context, s)?;
            built.push((self.build_cluster(key, owner, s, port, &context)?, s.weight));
        }
        let clusters = weigh(built.iter().map(|(c, w)| (c.name.clone(), *w)), false);
        check_weight_sum(&format!("route {prefix:?}"), &clusters)?;
        let session_affinity = r
            .services
            .iter()
            .any(|s| s.strategy == Some(LbStrategy::Cookie));
        for (c, _) in built {
            self.clusters.insert(c.name.clone(), c);
        }
        Ok(model::Route {
            prefix: prefix.to_owned(),
            owner: key.to_string(),
            clusters,
            permit_insecure: r.permit_insecure,
            websocket: r.enable_websockets,
            prefix_rewrite: r.prefix_rewrite.clone(),
            timeout,
            retry,
            session_affinity,
            extra: None,
        })
    }

    /// Resolves one upstream service of `owner` to a cluster (recording its endpoints and CA
    /// secret); the cluster itself is recorded by the caller once the whole route is valid.
    pub(super) fn build_cluster(
        &mut self,
        key: &ObjKey,
        owner: &IngressRoute,
        s: &ir::Service,
        port: u16,
        context: &str,
    ) -> Result<Cluster, String> {
        let svc_key = ObjKey::new(key.namespace.clone(), s.name.clone());
        let missing = || format!("Service [{svc_key}:{port}] is invalid or missing");
        self.read(Dep::Service(svc_key.clone()));
        let svc = self.snap.services.get(&svc_key).ok_or_else(missing)?;
        let svc_port = service_port(svc, port).ok_or_else(missing)?;
        let protocol = upstream_protocol(svc, svc_port);

        let upstream = self.build_upstream(&svc_key, svc, svc_port, context)?;

        let validation = match &s.validation {
            None => None,
            Some(v) => {
                let ca_key = ObjKey::new(key.namespace.clone(), v.ca_secret.clone());
                self.read(Dep::Secret(ca_key.clone()));
                let misconfigured = || {
                    format!(
                        "{context}: upstreamValidation requested but secret not found or \
                         misconfigured"
                    )
                };
                let ca_bytes = self
                    .snap
                    .secret_data(&ca_key, CA_CERT_KEY)
                    .filter(|_| !v.ca_secret.is_empty())
                    .ok_or_else(misconfigured)?;
                checks::ca_bundle(ca_bytes).map_err(|e| format!("{}: {e}", misconfigured()))?;
                let ca = String::from_utf8(ca_bytes.to_vec()).map_err(|_| misconfigured())?;
                if v.subject_name.trim().is_empty() {
                    return Err(format!(
                        "{context}: upstreamValidation requested but subject alt name not found or misconfigured"
                    ));
                }
                checks::subject_name(v.subject_name.trim())
                    .map_err(|e| format!("{context}: validation.subjectName {e}"))?;
                if protocol != UpstreamProtocol::Tls {
                    return Err(format!(
                        "{context}: upstreamValidation requires port {port} of Service \
                         {svc_key} to be listed in its upstream-protocol.tls annotation"
                    ));
                }
                let name = format!("{ca_key}/ca");
                self.secrets.insert(
                    name.clone(),
                    Secret {
                        name: name.clone(),
                        kind: SecretKind::Ca { ca },
                    },
                );
                Some(model::UpstreamValidation {
                    ca_secret: name,
                    subject_name: v.subject_name.trim().to_owned(),
                })
            }
        };

        let lb_policy = match s.strategy.unwrap_or(LbStrategy::RoundRobin) {
            LbStrategy::RoundRobin => LbPolicy::RoundRobin,
            LbStrategy::WeightedLeastRequest => LbPolicy::LeastRequest,
            LbStrategy::Random => LbPolicy::Random,
            LbStrategy::Cookie => LbPolicy::RingHash,
        };
        let health_check = match (&s.health_check, &owner.spec.health_check) {
            (Some(hc), _) => {
                Some(build_health_check(hc).map_err(|e| format!("{context}: healthCheck.{e}"))?)
            }
            (None, Some(hc)) => Some(
                build_health_check(hc).map_err(|e| format!("{context}: spec.healthCheck.{e}"))?,
            ),
            (None, None) => None,
        };

        let mut cluster = Cluster {
            name: String::new(),
            service: svc_key.to_string(),
            port,
            upstream,
            protocol,
            lb_policy,
            health_check,
            validation,
            proxy_protocol: None,
            active_health_check: None,
            transport: None,
        };
        let hash = policy_hash(&cluster)
            .map_err(|e| format!("{context}: cannot name its cluster: {e}"))?;
        cluster.name = format!("{svc_key}/{port}/{hash}");
        Ok(cluster)
    }

    pub(super) fn build_upstream(
        &mut self,
        svc_key: &ObjKey,
        svc: &KubeService,
        svc_port: &ServicePort,
        context: &str,
    ) -> Result<Upstream, String> {
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            let host = spec
                .and_then(|s| s.external_name.as_deref())
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .unwrap_or_default();
            if !self.sel.enable_external_name_services {
                return Err(format!(
                    "{context}: Service {svc_key} is of type ExternalName, which this Gateway does \
                     not allow (spec.enableExternalNameServices)"
                ));
            }
            if host.is_empty() {
                return Err(format!(
                    "{context}: Service {svc_key} is of type ExternalName but names no host"
                ));
            }
            checks::external_name(&host).map_err(|e| {
                format!("{context}: ExternalName {host:?} of Service {svc_key} is not allowed: {e}")
            })?;
            let port = u16::try_from(svc_port.port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    format!(
                        "{context}: port {} of Service {svc_key} is not in the range 1-65535",
                        svc_port.port
                    )
                })?;
            return Ok(Upstream::Dns { host, port });
        }
        let port_id = port_identity(svc_port);
        let service_name = format!("{svc_key}/{port_id}");
        let addresses = self.ready_addresses(svc_key, svc, svc_port);
        self.endpoints.insert(
            service_name.clone(),
            ClusterEndpoints {
                service_name: service_name.clone(),
                addresses,
            },
        );
        Ok(Upstream::Eds { service_name })
    }

    /// Ready addresses of a service port, from Endpoints and EndpointSlices together.
    pub(super) fn ready_addresses(
        &self,
        svc_key: &ObjKey,
        svc: &KubeService,
        svc_port: &ServicePort,
    ) -> Vec<SocketAddress> {
        let single_port = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .map_or(0, Vec::len)
            == 1;
        let wanted = svc_port.name.as_deref().unwrap_or("");
        let matches = |name: Option<&str>| name.unwrap_or("") == wanted || single_port;
        let mut out = BTreeSet::new();
        // Its Endpoints and EndpointSlices (one dependency with the Service).
        self.read(Dep::Service(svc_key.clone()));
        #[allow(deprecated)]
        if let Some(ep) = self.snap.endpoints.get(svc_key) {
            for subset in ep.subsets.iter().flatten() {
                for p in subset
                    .ports
                    .iter()
                    .flatten()
                    .filter(|p| matches(p.name.as_deref()))
                {
                    let Some(port) = u16::try_from(p.port).ok().filter(|p| *p > 0) else {
                        continue;
                    };
                    for a in subset.addresses.iter().flatten() {
                        if let Some(ip) = self.endpoint_ip(&a.ip) {
                            out.insert(SocketAddress { ip, port });
                        }
                    }
                }
            }
        }
        for slice in self.snap.slices_of(svc_key) {
            for p in slice
                .ports
                .iter()
                .flatten()
                .filter(|p| matches(p.name.as_deref()))
            {
                let Some(port) = p
                    .port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                else {
                    continue;
                };
                for e in &slice.endpoints {
                    if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                        continue;
                    }
                    for ip in &e.addresses {
                        if let Some(ip) = self.endpoint_ip(ip) {
                            out.insert(SocketAddress { ip, port });
                        }
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    /// An endpoint address Envoy may be given: an IP literal (EndpointSlices of `addressType:
    /// FQDN` hold names, which EDS refuses) that [`checks::routable_ip`] allows, in canonical
    /// form. Anything else is left out of the load assignment.
    pub(super) fn endpoint_ip(&self, address: &str) -> Option<String> {
        let ip: std::net::IpAddr = address.trim().parse().ok()?;
        checks::routable_ip(ip, self.sel.allow_loopback_endpoints).then(|| ip.to_string())
    }
}

/// Checks the port range and weight sign of an upstream service; returns the port.
pub(super) fn check_port_and_weight(context: &str, s: &ir::Service) -> Result<u16, String> {
    let port = u16::try_from(s.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{context}: port must be in the range 1-65535"))?;
    if s.weight.is_some_and(|w| w < 0) {
        return Err(format!(
            "{context}: weight must be greater than or equal to zero"
        ));
    }
    if s.weight.is_some_and(|w| w > i64::from(u32::MAX)) {
        return Err(format!("{context}: weight must be at most {}", u32::MAX));
    }
    Ok(port)
}

/// Envoy refuses weighted clusters whose weights add up to more than 2^32-1.
pub(super) fn check_weight_sum(context: &str, clusters: &[WeightedCluster]) -> Result<(), String> {
    let sum: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if sum > u64::from(u32::MAX) {
        return Err(format!(
            "{context}: the weights of its services add up to {sum}, more than {}",
            u32::MAX
        ));
    }
    Ok(())
}

/// Applies the reference's weight rules: no weight set means every service gets 1; some set
/// means unset ones get 0. Several services may share a cluster: their weights add up.
pub(super) fn weigh(
    services: impl Iterator<Item = (String, Option<i64>)>,
    tcp: bool,
) -> Vec<WeightedCluster> {
    let services: Vec<(String, Option<i64>)> = services.collect();
    let any_set = !tcp && services.iter().any(|(_, w)| w.is_some());
    let mut out: Vec<WeightedCluster> = Vec::with_capacity(services.len());
    for (cluster, w) in services {
        let weight = match w {
            Some(w) => u32::try_from(w.max(0)).unwrap_or(u32::MAX),
            None if any_set => 0,
            None => 1,
        };
        match out.iter_mut().find(|c| c.cluster == cluster) {
            Some(existing) => existing.weight = existing.weight.saturating_add(weight),
            None => out.push(WeightedCluster {
                cluster,
                weight,
                set_cookie: Vec::new(),
            }),
        }
    }
    out
}

/// The Service port with this number.
pub(super) fn service_port(svc: &KubeService, port: u16) -> Option<&ServicePort> {
    svc.spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.port == i32::from(port))
}

/// The port's name, or its number when unnamed (port names always contain a letter, so the two
/// never collide).
pub(super) fn port_identity(p: &ServicePort) -> String {
    match p.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => p.port.to_string(),
    }
}

/// The protocol the Service's upstream-protocol annotations give this port.
pub(super) fn upstream_protocol(svc: &KubeService, port: &ServicePort) -> UpstreamProtocol {
    let Some(annotations) = svc.metadata.annotations.as_ref() else {
        return UpstreamProtocol::Http1;
    };
    let number = port.port.to_string();
    let name = port.name.as_deref().unwrap_or("");
    let lists = |proto: &str| {
        UPSTREAM_PROTOCOL_PREFIXES.iter().any(|prefix| {
            annotations
                .get(&format!("{prefix}{proto}"))
                .is_some_and(|v| {
                    v.split(',')
                        .map(str::trim)
                        .any(|p| p == number || (!name.is_empty() && p == name))
                })
        })
    };
    if lists("tls") {
        UpstreamProtocol::Tls
    } else if lists("h2") {
        UpstreamProtocol::H2
    } else if lists("h2c") {
        UpstreamProtocol::H2c
    } else {
        UpstreamProtocol::Http1
    }
}

/// A health check with the reference's defaults; `Err` names the offending field.
pub(super) fn build_health_check(hc: &ir::HealthCheck) -> Result<HealthCheck, String> {
    if hc.path.is_empty() {
        return Err("path must not be empty".into());
    }
    checks::path(&hc.path).map_err(|e| format!("path {e}"))?;
    if let Some(host) = &hc.host {
        checks::header_value(host).map_err(|e| format!("host {e}"))?;
    }
    let positive = |v: Option<i64>, default: u32| {
        v.and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    Ok(HealthCheck {
        path: hc.path.clone(),
        host: hc
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_HEALTH_CHECK_HOST.to_owned()),
        interval_seconds: positive(hc.interval_seconds, DEFAULT_HEALTH_CHECK_INTERVAL),
        timeout_seconds: positive(hc.timeout_seconds, DEFAULT_HEALTH_CHECK_TIMEOUT),
        unhealthy_threshold: positive(hc.unhealthy_threshold_count, DEFAULT_UNHEALTHY_THRESHOLD),
        healthy_threshold: positive(hc.healthy_threshold_count, DEFAULT_HEALTHY_THRESHOLD),
    })
}

/// Stable hash of everything but the name (128 bits of SHA-256 of the cluster's JSON, its name
/// left empty), so that one Service port used with different policies gives different clusters.
/// A cluster's name stands for its content, so the hash covers every field, present and future:
/// a tenant allowed to reference another tenant's Service must not find a value of its own
/// route (a health-check path, a cookie name) that gives its cluster the other's name (a
/// second preimage on the 40 bits used before took about 2⁴⁰ hashes).
/// Errs only if the cluster does not serialise, which plain data never fails to; a failure is
/// reported rather than hashed as empty, since equal names would merge different clusters.
pub(super) fn policy_hash(c: &Cluster) -> Result<String, serde_json::Error> {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::to_vec(&Cluster {
        name: String::new(),
        ..c.clone()
    })?;
    let digest = Sha256::digest(&canonical);
    Ok(digest.iter().take(16).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod unit_tests {
    use super::*;

    /// 128 bits, over every field but the name: a field that differs (here the PROXY protocol
    /// version, which the 40-bit hash of a few fields left out) gives another name.
    #[test]
    fn cluster_names_hash_every_field_in_128_bits() {
        let base = Cluster {
            name: "ignored".into(),
            service: "team/web".into(),
            port: 80,
            upstream: Upstream::Eds {
                service_name: "team/web/http".into(),
            },
            protocol: UpstreamProtocol::Http1,
            lb_policy: LbPolicy::RoundRobin,
            health_check: None,
            validation: None,
            proxy_protocol: None,
            active_health_check: None,
            transport: None,
        };
        let hash = policy_hash(&base).unwrap();
        assert_eq!(hash.len(), 32, "{hash}");
        let renamed = Cluster {
            name: "other".into(),
            ..base.clone()
        };
        assert_eq!(policy_hash(&renamed).unwrap(), hash);
        let proxied = Cluster {
            proxy_protocol: Some(2),
            ..base.clone()
        };
        assert_ne!(policy_hash(&proxied).unwrap(), hash);
        let other_port = Cluster { port: 81, ..base };
        assert_ne!(policy_hash(&other_port).unwrap(), hash);
    }

    #[test]
    fn weights_follow_the_reference() {
        let w = |v: &[(&str, Option<i64>)], tcp| {
            weigh(v.iter().map(|(c, w)| ((*c).to_owned(), *w)), tcp)
                .into_iter()
                .map(|c| c.weight)
                .collect::<Vec<_>>()
        };
        assert_eq!(w(&[("a", None), ("b", None)], false), [1, 1]);
        assert_eq!(w(&[("a", Some(10)), ("b", None)], false), [10, 0]);
        assert_eq!(
            w(&[("a", Some(20)), ("b", Some(30)), ("c", Some(20))], false),
            [20, 30, 20]
        );
        assert_eq!(w(&[("a", Some(5)), ("a", Some(5))], false), [10]);
    }
}
