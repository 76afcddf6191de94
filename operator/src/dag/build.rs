//! The builder: selects the instance's IngressRoutes, resolves FQDN ownership, walks delegations
//! from every root and validates each IngressRoute on the way. Pure: reads the snapshot only.
//!
//! Rules (see the IngressRoute reference and contour-behaviour.md):
//! - the first problem found in an IngressRoute is its status; an invalid IngressRoute
//!   contributes nothing, and IngressRoutes only reachable through it stay orphaned;
//! - an IngressRoute reached from several roots (aliases) is invalid if any path finds a problem;
//! - a delegation to an IngressRoute that does not exist (or that another instance selects) is
//!   skipped, as Contour did: the parent stays valid and the path is not served.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Service as KubeService, ServicePort};

use super::checks::{self, MAX_DELEGATION_DEPTH};
use super::durations::{RequestTimeout, parse_request_timeout, parse_timeout};
use super::model::{
    self, Cluster, ClusterEndpoints, Dag, HealthCheck, LbPolicy, Retry, RouteStatus, Secret,
    SecretKind, SocketAddress, Upstream, UpstreamProtocol, Validity, VirtualHost, VirtualHostTls,
    WeightedCluster, msg,
};
use super::select::Selection;
use crate::api::IngressRoute;
use crate::api::ingressroute::{self as ir, LbStrategy, TlsVersion};
use crate::snapshot::{ClusterSnapshot, ObjKey};

/// Host header Envoy sends with health checks unless the service says otherwise.
pub const DEFAULT_HEALTH_CHECK_HOST: &str = "contour-envoy-healthcheck";
const DEFAULT_HEALTH_CHECK_INTERVAL: u32 = 5;
const DEFAULT_HEALTH_CHECK_TIMEOUT: u32 = 2;
const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;

/// Service annotation prefixes naming ports spoken as TLS, HTTP/2 or cleartext HTTP/2.
const UPSTREAM_PROTOCOL_PREFIXES: [&str; 2] = [
    "contour.heptio.com/upstream-protocol.",
    "projectcontour.io/upstream-protocol.",
];

/// Secret keys.
const TLS_CERT_KEY: &str = "tls.crt";
const TLS_PRIVATE_KEY: &str = "tls.key";
const CA_CERT_KEY: &str = "ca.crt";
/// The only Secret type whose certificates terminate TLS, as in Contour.
const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// Builds what `sel`'s instance serves from `snapshot`. Pure and deterministic.
pub fn build(snapshot: &ClusterSnapshot, sel: &Selection) -> Dag {
    let mut b = Builder::new(snapshot, sel);
    b.build_roots();
    b.finish()
}

struct Builder<'a> {
    snap: &'a ClusterSnapshot,
    sel: &'a Selection,
    /// IngressRoutes this instance judges.
    selected: BTreeMap<&'a ObjKey, &'a IngressRoute>,
    statuses: BTreeMap<ObjKey, (Validity, String)>,
    vhosts: BTreeMap<String, VirtualHost>,
    clusters: BTreeMap<String, Cluster>,
    endpoints: BTreeMap<String, ClusterEndpoints>,
    secrets: BTreeMap<String, Secret>,
    /// Each (parent prefix, child, depth of the parent) already walked, and what came of it.
    expanded: BTreeMap<(String, ObjKey, usize), Result<Vec<model::Route>, WalkError>>,
}

impl<'a> Builder<'a> {
    fn new(snap: &'a ClusterSnapshot, sel: &'a Selection) -> Self {
        let selected = snap
            .ingress_routes
            .iter()
            .filter(|(_, r)| sel.selects(r))
            .collect();
        Self {
            snap,
            sel,
            selected,
            statuses: BTreeMap::new(),
            vhosts: BTreeMap::new(),
            clusters: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            secrets: BTreeMap::new(),
            expanded: BTreeMap::new(),
        }
    }

    /// Records a status; the first problem found wins over anything found later.
    fn set_status(&mut self, key: &ObjKey, validity: Validity, description: impl Into<String>) {
        match self.statuses.get(key) {
            Some((Validity::Invalid, _)) => {}
            Some((Validity::Valid, _)) if validity == Validity::Valid => {}
            _ => {
                self.statuses
                    .insert(key.clone(), (validity, description.into()));
            }
        }
    }

    fn invalid(&mut self, key: &ObjKey, description: impl Into<String>) {
        self.set_status(key, Validity::Invalid, description);
    }

    fn build_roots(&mut self) {
        let roots: Vec<(&'a ObjKey, &'a IngressRoute, &'a ir::VirtualHost)> = self
            .selected
            .iter()
            .filter_map(|(k, r)| r.spec.virtualhost.as_ref().map(|vh| (*k, *r, vh)))
            .collect();

        // Roots that may claim their fqdn, grouped by fqdn.
        let mut claims: BTreeMap<String, Vec<(&'a ObjKey, &'a IngressRoute, &'a ir::VirtualHost)>> =
            BTreeMap::new();
        for (key, route, vh) in roots {
            if !self.sel.root_allowed(&key.namespace) {
                self.invalid(key, msg::ROOT_NAMESPACE);
                continue;
            }
            let fqdn = vh.fqdn.trim();
            if fqdn.is_empty() {
                self.invalid(key, msg::FQDN_REQUIRED);
                continue;
            }
            if fqdn.contains('*') {
                self.invalid(
                    key,
                    format!("Spec.VirtualHost.Fqdn {fqdn:?} cannot use wildcards"),
                );
                continue;
            }
            let fqdn = match checks::dns_name(fqdn) {
                Ok(name) => name,
                Err(e) => {
                    self.invalid(key, format!("Spec.VirtualHost.Fqdn {fqdn:?}: {e}"));
                    continue;
                }
            };
            claims.entry(fqdn).or_default().push((key, route, vh));
        }

        for (fqdn, mut claimants) in claims {
            // The oldest root keeps the host: creationTimestamp (unknown counts as newest),
            // then namespace/name.
            claimants.sort_by(|a, b| {
                let ta = a.1.metadata.creation_timestamp.as_ref();
                let tb = b.1.metadata.creation_timestamp.as_ref();
                (ta.is_none(), ta.map(|t| &t.0), a.0).cmp(&(tb.is_none(), tb.map(|t| &t.0), b.0))
            });
            let (owner, route, vh) = claimants[0];
            for (other, _, _) in &claimants[1..] {
                self.invalid(
                    other,
                    format!("fqdn {fqdn:?} is already used by the older IngressRoute {owner}"),
                );
            }
            self.build_root(owner, route, vh, &fqdn);
        }
    }

    fn build_root(
        &mut self,
        key: &ObjKey,
        root: &'a IngressRoute,
        vh: &ir::VirtualHost,
        fqdn: &str,
    ) {
        let (tls, tls_secret) = match vh.tls.as_ref().map(|t| self.build_vhost_tls(key, t)) {
            None => (None, None),
            Some(Ok((tls, secret))) => (Some(tls), secret),
            Some(Err(e)) => return self.invalid(key, e),
        };

        let tcp_proxy = match &root.spec.tcpproxy {
            None => None,
            Some(_) if tls.is_none() => {
                return self.invalid(key, "tcpproxy: missing tls.passthrough or tls.secretName");
            }
            Some(tcp) => {
                let mut chain = vec![key.clone()];
                match self.walk_tcpproxy(key, tcp, &mut chain) {
                    Ok(p) => Some(p),
                    Err(e) => return self.invalid(key, e.to_string()),
                }
            }
        };
        if tcp_proxy.is_none() && tls.as_ref().is_some_and(|t| t.passthrough) {
            return self.invalid(
                key,
                "Spec.VirtualHost.TLS.Passthrough requires Spec.TCPProxy",
            );
        }

        let mut chain = vec![key.clone()];
        let mut routes = match self.walk_routes(key, root, "/", &mut chain) {
            Ok(routes) => routes,
            Err(e) => return self.invalid(key, e.to_string()),
        };
        self.set_status(key, Validity::Valid, msg::VALID);

        routes.sort_by(|a, b| {
            (b.prefix.len(), &a.prefix, &a.owner).cmp(&(a.prefix.len(), &b.prefix, &b.owner))
        });
        if let Some(secret) = tls_secret {
            self.secrets.insert(secret.name.clone(), secret);
        }
        self.vhosts.insert(
            fqdn.to_owned(),
            VirtualHost {
                fqdn: fqdn.to_owned(),
                owner: key.to_string(),
                tls,
                routes,
                tcp_proxy,
            },
        );
    }

    /// Checks the virtual host's TLS block and resolves its secret, returned for the caller to
    /// record once the whole root is valid.
    fn build_vhost_tls(
        &self,
        key: &ObjKey,
        tls: &ir::Tls,
    ) -> Result<(VirtualHostTls, Option<Secret>), String> {
        let requested = tls.minimum_protocol_version.unwrap_or(TlsVersion::V1_1);
        let minimum_protocol_version = match self.sel.minimum_tls_version {
            Some(floor) if floor > requested => floor,
            _ => requested,
        };
        let secret = match tls
            .secret_name
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None if tls.passthrough => None,
            None => {
                return Err("Spec.VirtualHost.TLS must specify secretName or passthrough".into());
            }
            Some(name) => {
                let secret_key = match name.split_once('/') {
                    Some((ns, n)) => ObjKey::new(ns, n),
                    None => ObjKey::new(key.namespace.clone(), name),
                };
                if secret_key.namespace != key.namespace
                    && !self.delegation_permits(&secret_key, &key.namespace)
                {
                    return Err(format!(
                        "{secret_key}: certificate delegation not permitted"
                    ));
                }
                let (cert_chain, private_key) = self.tls_secret_pem(&secret_key)?;
                Some(Secret {
                    name: secret_key.to_string(),
                    kind: SecretKind::Tls {
                        cert_chain,
                        private_key,
                    },
                })
            }
        };
        let vhost_tls = VirtualHostTls {
            secret: secret.as_ref().map(|s| s.name.clone()),
            minimum_protocol_version,
            passthrough: tls.passthrough,
        };
        Ok((vhost_tls, secret))
    }

    /// True when a TLSCertificateDelegation in the secret's namespace lets `target_ns` use it.
    fn delegation_permits(&self, secret: &ObjKey, target_ns: &str) -> bool {
        self.snap
            .delegations
            .range(ObjKey::new(secret.namespace.clone(), String::new())..)
            .take_while(|(k, _)| k.namespace == secret.namespace)
            .flat_map(|(_, d)| &d.spec.delegations)
            .any(|d| {
                d.secret_name == secret.name
                    && d.target_namespaces
                        .iter()
                        .any(|t| t == "*" || t == target_ns)
            })
    }

    /// The certificate chain and key of a `kubernetes.io/tls` Secret, checked as Envoy will load
    /// them (every certificate parses, the key matches the first one).
    fn tls_secret_pem(&self, secret: &ObjKey) -> Result<(String, String), String> {
        let not_found = || format!("TLS Secret [{secret}] not found or is malformed");
        let obj = self.snap.secrets.get(secret).ok_or_else(not_found)?;
        let type_ = obj.type_.as_deref().unwrap_or("Opaque");
        if type_ != TLS_SECRET_TYPE {
            return Err(format!(
                "{}: its type is {type_:?}, not {TLS_SECRET_TYPE:?}",
                not_found()
            ));
        }
        let cert = self
            .snap
            .secret_data(secret, TLS_CERT_KEY)
            .ok_or_else(not_found)?;
        let key = self
            .snap
            .secret_data(secret, TLS_PRIVATE_KEY)
            .ok_or_else(not_found)?;
        checks::tls_key_pair(cert, key).map_err(|e| format!("{}: {e}", not_found()))?;
        let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| not_found());
        Ok((utf8(cert)?, utf8(key)?))
    }

    /// Validates `route`'s own routes, then follows its delegations. Returns the routes it
    /// contributes (its own and those of valid descendants), or its status description.
    fn walk_routes(
        &mut self,
        key: &ObjKey,
        route: &'a IngressRoute,
        parent_prefix: &str,
        chain: &mut Vec<ObjKey>,
    ) -> Result<Vec<model::Route>, WalkError> {
        // Pass 1: everything about this IngressRoute itself, in route order.
        let mut own = Vec::new();
        let mut delegations = Vec::new();
        for r in &route.spec.routes {
            let prefix = r.match_.as_str();
            if !r.services.is_empty() && r.delegate.is_some() {
                return Err(WalkError::Own(format!(
                    "route {prefix:?}: cannot specify services and delegate in the same route"
                )));
            }
            if !prefix.starts_with('/') {
                return Err(WalkError::Own(format!(
                    "route {prefix:?}: match must start with \"/\""
                )));
            }
            checks::path(prefix)
                .map_err(|e| WalkError::Own(format!("route {prefix:?}: match {e}")))?;
            if let Some(rewrite) = &r.prefix_rewrite {
                checks::path(rewrite)
                    .map_err(|e| WalkError::Own(format!("route {prefix:?}: prefixRewrite {e}")))?;
            }
            if !prefix.starts_with(parent_prefix) {
                return Err(WalkError::Path(format!(
                    "the path prefix {prefix:?} does not match the parent's path prefix \
                     {parent_prefix:?}"
                )));
            }
            if let Some(d) = &r.delegate {
                let target = delegate_key(key, d);
                if let Some(cycle) = cycle_description(chain, &target) {
                    return Err(WalkError::Path(format!(
                        "route creates a delegation cycle: {cycle}"
                    )));
                }
                match self.selected.get(&target) {
                    Some(t) if t.spec.virtualhost.is_some() => {
                        return Err(WalkError::Own(msg::ROOT_TO_ROOT.into()));
                    }
                    Some(t) => delegations.push((prefix.to_owned(), target, *t)),
                    None => {} // Not (yet) present: the path is not served.
                }
                continue;
            }
            if r.enable_websockets && r.services.len() > 1 {
                return Err(WalkError::Own(format!(
                    "route {prefix:?}: cannot specify multiple services and enable websockets"
                )));
            }
            own.push(self.build_route(key, route, r).map_err(WalkError::Own)?);
        }
        if !delegations.is_empty() && chain.len() >= MAX_DELEGATION_DEPTH {
            return Err(WalkError::Path(too_deep(chain)));
        }

        // Pass 2: descend. A child's problem is the child's status, not ours. Each (prefix,
        // child, depth) is expanded once per build, and recursion stops at the depth limit, so the
        // work is bounded by the routes produced whatever the delegation graph looks like. The
        // depth is part of the key: a child reached deep down someone else's chain is judged
        // for that path only, never for its own team's shallower one.
        for (prefix, target, child) in delegations {
            let target_ref = self.selected.get_key_value(&target).map(|(k, _)| *k);
            let Some(target_key) = target_ref else {
                continue;
            };
            let memo_key = (prefix, target_key.clone(), chain.len());
            let result = match self.expanded.get(&memo_key) {
                Some(done) => done.clone(),
                None => {
                    chain.push(target_key.clone());
                    let result = self.walk_routes(target_key, child, &memo_key.0, chain);
                    chain.pop();
                    self.expanded.insert(memo_key, result.clone());
                    result
                }
            };
            match result {
                Ok(routes) => {
                    self.set_status(target_key, Validity::Valid, msg::VALID);
                    own.extend(routes);
                }
                Err(WalkError::Own(e)) => self.invalid(target_key, e),
                // A problem of this path alone (prefix, cycle, depth): the child's own team
                // hears of it only from their own IngressRoutes; another team's delegation
                // just goes unserved, so nobody can make a team's IngressRoute invalid by
                // delegating to it.
                Err(WalkError::Path(e)) if target_key.namespace == key.namespace => {
                    self.invalid(target_key, e);
                }
                Err(WalkError::Path(_)) => {}
            }
        }
        // The same child reached under several prefixes contributes its routes once.
        let mut seen = BTreeSet::new();
        own.retain(|r| seen.insert((r.prefix.clone(), r.owner.clone())));
        Ok(own)
    }

    fn build_route(
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
        })
    }

    /// Resolves one upstream service of `owner` to a cluster (recording its endpoints and CA
    /// secret); the cluster itself is recorded by the caller once the whole route is valid.
    fn build_cluster(
        &mut self,
        key: &ObjKey,
        owner: &IngressRoute,
        s: &ir::Service,
        port: u16,
        context: &str,
    ) -> Result<Cluster, String> {
        let svc_key = ObjKey::new(key.namespace.clone(), s.name.clone());
        let missing = || format!("Service [{svc_key}:{port}] is invalid or missing");
        let svc = self.snap.services.get(&svc_key).ok_or_else(missing)?;
        let svc_port = service_port(svc, port).ok_or_else(missing)?;
        let protocol = upstream_protocol(svc, svc_port);

        let upstream = self.build_upstream(&svc_key, svc, svc_port, context)?;

        let validation = match &s.validation {
            None => None,
            Some(v) => {
                let ca_key = ObjKey::new(key.namespace.clone(), v.ca_secret.clone());
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
        };
        let hash = policy_hash(&cluster)
            .map_err(|e| format!("{context}: cannot name its cluster: {e}"))?;
        cluster.name = format!("{svc_key}/{port}/{hash}");
        Ok(cluster)
    }

    fn build_upstream(
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
    fn ready_addresses(
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
    fn endpoint_ip(&self, address: &str) -> Option<String> {
        let ip: std::net::IpAddr = address.trim().parse().ok()?;
        checks::routable_ip(ip, self.sel.allow_loopback_endpoints).then(|| ip.to_string())
    }

    /// Validates a root's tcpproxy, following its delegation. Returns the proxy or the root's
    /// (or delegating IngressRoute's) status description.
    fn walk_tcpproxy(
        &mut self,
        key: &ObjKey,
        tcp: &ir::TcpProxy,
        chain: &mut Vec<ObjKey>,
    ) -> Result<model::TcpProxy, WalkError> {
        if !tcp.services.is_empty() && tcp.delegate.is_some() {
            return Err(WalkError::Own(
                "tcpproxy: cannot specify services and delegate in the same tcpproxy".into(),
            ));
        }
        if tcp.services.is_empty() && tcp.delegate.is_none() {
            return Err(WalkError::Own(
                "tcpproxy: must specify services or delegate".into(),
            ));
        }
        if let Some(d) = &tcp.delegate {
            let target = delegate_key(key, d);
            if let Some(cycle) = cycle_description(chain, &target) {
                return Err(WalkError::Path(format!(
                    "tcpproxy creates a delegation cycle: {cycle}"
                )));
            }
            let Some((target_key, child)) = self.selected.get_key_value(&target) else {
                return Err(WalkError::Own(format!(
                    "tcpproxy: delegate {target}: not found"
                )));
            };
            let (target_key, child) = (*target_key, *child);
            if child.spec.virtualhost.is_some() {
                return Err(WalkError::Own(msg::ROOT_TO_ROOT.into()));
            }
            let Some(child_tcp) = &child.spec.tcpproxy else {
                return Err(WalkError::Own(format!(
                    "tcpproxy: delegate {target}: it has no tcpproxy"
                )));
            };
            if chain.len() >= MAX_DELEGATION_DEPTH {
                return Err(WalkError::Path(too_deep(chain)));
            }
            chain.push(target_key.clone());
            let result = self.walk_tcpproxy(target_key, child_tcp, chain);
            chain.pop();
            let invalid_delegate =
                || WalkError::Own(format!("tcpproxy: delegate {target} is invalid"));
            return match result {
                Ok(p) => {
                    self.set_status(target_key, Validity::Valid, msg::VALID);
                    Ok(p)
                }
                Err(WalkError::Own(e)) => {
                    self.invalid(target_key, e);
                    Err(invalid_delegate())
                }
                // As for routes: another team's delegation does not make it invalid.
                Err(WalkError::Path(e)) if target_key.namespace == key.namespace => {
                    self.invalid(target_key, e);
                    Err(invalid_delegate())
                }
                Err(WalkError::Path(_)) => Err(invalid_delegate()),
            };
        }
        let owner = self.selected.get(key).copied();
        let mut built = Vec::with_capacity(tcp.services.len());
        for s in &tcp.services {
            let context = format!("tcpproxy: service {:?}", s.name);
            let port = check_port_and_weight(&context, s).map_err(WalkError::Own)?;
            let svc_key = ObjKey::new(key.namespace.clone(), s.name.clone());
            let found = self
                .snap
                .services
                .get(&svc_key)
                .and_then(|svc| service_port(svc, port));
            if found.is_none() {
                return Err(WalkError::Own(format!(
                    "tcpproxy: service {svc_key}/{port}: not found"
                )));
            }
            let Some(owner) = owner else { continue };
            let cluster = self
                .build_cluster(key, owner, s, port, &context)
                .map_err(WalkError::Own)?;
            // Contour treated a zero weight in a tcpproxy as one.
            built.push((cluster, Some(s.weight.unwrap_or(1).max(1))));
        }
        let clusters = weigh(built.iter().map(|(c, w)| (c.name.clone(), *w)), true);
        check_weight_sum("tcpproxy", &clusters).map_err(WalkError::Own)?;
        for (c, _) in built {
            self.clusters.insert(c.name.clone(), c);
        }
        Ok(model::TcpProxy {
            owner: key.to_string(),
            clusters,
        })
    }

    fn finish(mut self) -> Dag {
        for (key, u) in &self.snap.undecodable_routes {
            if self.sel.selects_meta(&u.metadata) {
                self.statuses.insert(
                    key.clone(),
                    (
                        Validity::Invalid,
                        format!("this IngressRoute could not be read: {}", u.error),
                    ),
                );
            }
        }
        let unreached: Vec<ObjKey> = self
            .selected
            .keys()
            .filter(|k| !self.statuses.contains_key(**k))
            .map(|k| (*k).clone())
            .collect();
        for k in unreached {
            self.set_status(&k, Validity::Orphaned, msg::ORPHANED);
        }
        // Only what valid routes use is served: drop endpoints and secrets of clusters that
        // ended up unused because their IngressRoute was found invalid later.
        let used_clusters: BTreeSet<&str> = self
            .vhosts
            .values()
            .flat_map(|v| {
                v.routes
                    .iter()
                    .flat_map(|r| &r.clusters)
                    .chain(v.tcp_proxy.iter().flat_map(|t| &t.clusters))
            })
            .map(|c| c.cluster.as_str())
            .collect();
        self.clusters
            .retain(|name, _| used_clusters.contains(name.as_str()));
        let used_eds: BTreeSet<&str> = self
            .clusters
            .values()
            .filter_map(|c| match &c.upstream {
                Upstream::Eds { service_name } => Some(service_name.as_str()),
                Upstream::Dns { .. } => None,
            })
            .collect();
        self.endpoints
            .retain(|name, _| used_eds.contains(name.as_str()));
        let used_secrets: BTreeSet<&str> = self
            .vhosts
            .values()
            .filter_map(|v| v.tls.as_ref().and_then(|t| t.secret.as_deref()))
            .chain(
                self.clusters
                    .values()
                    .filter_map(|c| c.validation.as_ref())
                    .map(|v| v.ca_secret.as_str()),
            )
            .collect();
        self.secrets
            .retain(|name, _| used_secrets.contains(name.as_str()));

        Dag {
            gateway: self.sel.gateway.to_string(),
            virtual_hosts: self.vhosts.into_values().collect(),
            clusters: self.clusters.into_values().collect(),
            endpoints: self.endpoints.into_values().collect(),
            secrets: self.secrets.into_values().collect(),
            statuses: self
                .statuses
                .into_iter()
                .map(|(k, (current_status, description))| RouteStatus {
                    namespace: k.namespace,
                    name: k.name,
                    current_status,
                    description,
                })
                .collect(),
        }
    }
}

/// The IngressRoute a delegation names: its namespace defaults to the delegating one's.
fn delegate_key(from: &ObjKey, d: &ir::Delegate) -> ObjKey {
    let namespace = d.namespace.clone().filter(|n| !n.is_empty());
    ObjKey::new(
        namespace.unwrap_or_else(|| from.namespace.clone()),
        d.name.clone(),
    )
}

/// The walk from the root, `r -> a -> b -> a`, when following an edge to `target` closes a cycle.
fn cycle_description(chain: &[ObjKey], target: &ObjKey) -> Option<String> {
    chain.contains(target).then(|| {
        let names: Vec<String> = chain
            .iter()
            .chain([target])
            .map(ToString::to_string)
            .collect();
        names.join(" -> ")
    })
}

/// Why an IngressRoute at the depth limit may not delegate further: `root -> … -> it`.
fn too_deep(chain: &[ObjKey]) -> String {
    let path = match (chain.first(), chain.last()) {
        (Some(root), Some(last)) => format!("{root} -> … -> {last}"),
        _ => String::new(),
    };
    format!(
        "delegation chain is deeper than {MAX_DELEGATION_DEPTH} IngressRoutes ({path}): it may \
         not delegate further"
    )
}

/// Why a walk failed: a problem of the IngressRoute itself, or only of the path that reached
/// it (a prefix that does not fit the parent's, a cycle, the depth limit).
#[derive(Clone, Debug, PartialEq)]
enum WalkError {
    Own(String),
    Path(String),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Own(e) | Self::Path(e) => f.write_str(e),
        }
    }
}

/// Checks the port range and weight sign of an upstream service; returns the port.
fn check_port_and_weight(context: &str, s: &ir::Service) -> Result<u16, String> {
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
fn check_weight_sum(context: &str, clusters: &[WeightedCluster]) -> Result<(), String> {
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
fn weigh(services: impl Iterator<Item = (String, Option<i64>)>, tcp: bool) -> Vec<WeightedCluster> {
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
            None => out.push(WeightedCluster { cluster, weight }),
        }
    }
    out
}

/// The Service port with this number.
fn service_port(svc: &KubeService, port: u16) -> Option<&ServicePort> {
    svc.spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.port == i32::from(port))
}

/// The port's name, or its number when unnamed (port names always contain a letter, so the two
/// never collide).
fn port_identity(p: &ServicePort) -> String {
    match p.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => p.port.to_string(),
    }
}

/// The protocol the Service's upstream-protocol annotations give this port.
fn upstream_protocol(svc: &KubeService, port: &ServicePort) -> UpstreamProtocol {
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
fn build_health_check(hc: &ir::HealthCheck) -> Result<HealthCheck, String> {
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

/// Short stable hash of everything but the name, so that one Service port used with different
/// policies gives different clusters.
/// Errs only if the policy does not serialise, which plain data never fails to; a failure is
/// reported rather than hashed as empty, since equal names would merge different clusters.
fn policy_hash(c: &Cluster) -> Result<String, serde_json::Error> {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::to_vec(&(
        &c.upstream,
        c.protocol,
        c.lb_policy,
        &c.health_check,
        &c.validation,
    ))?;
    let digest = Sha256::digest(&canonical);
    Ok(digest.iter().take(5).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

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

    #[test]
    fn cycles_name_the_chain() {
        let a = ObjKey::new("ns", "a");
        let b = ObjKey::new("ns", "b");
        assert_eq!(
            cycle_description(&[a.clone(), b.clone()], &a).as_deref(),
            Some("ns/a -> ns/b -> ns/a")
        );
        assert_eq!(cycle_description(std::slice::from_ref(&a), &b), None);
        assert_eq!(
            cycle_description(std::slice::from_ref(&a), &a).as_deref(),
            Some("ns/a -> ns/a")
        );
    }
}
