//! A Kubernetes Service named by a Traefik route or TraefikService, as an Envoy cluster: its
//! port (number or name), its scheme (http, h2c, https; Traefik's default https for port 443
//! and ports named `https*`), the balancing `strategy`, and the `serversTransport` that makes
//! upstream TLS verifiable (server name, root CAs). Options Envoy cannot give exactly are refused
//! with a message saying what differs.

use crate::snapshot::slim::{Service as KubeService, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::service_options;
use crate::api::traefik::objects::ServersTransportSpec;
use crate::api::traefik::routes as tr;
use crate::dag::build::Builder;
use crate::dag::checks;
use crate::dag::model::traefik_options::{EndpointVariant, StickyCookie};
use crate::dag::model::transport::TransportOptions;
use crate::dag::model::{
    Cluster, ClusterEndpoints, LbPolicy, Secret, SecretKind, Upstream, UpstreamProtocol,
    UpstreamValidation,
};
use crate::dag::upstream::{policy_hash, upstream_protocol};
use crate::snapshot::ObjKey;

/// Keys of a Secret holding a CA bundle, in the order Traefik reads them.
const CA_KEYS: [&str; 2] = ["tls.ca", "ca.crt"];

/// How many root CA sources one ServersTransport may list.
const MAX_ROOT_CAS: usize = 16;

/// A Service port a Traefik route or TraefikService names, found (see
/// [`Builder::traefik_service_port`]).
pub(super) struct TraefikServicePort<'s> {
    pub key: ObjKey,
    pub service: &'s KubeService,
    pub port: &'s ServicePort,
    pub number: u16,
}

impl<'s> Builder<'s> {
    /// The port `port` (number or name) of the Service `name`, of namespace `from` or, when the
    /// Gateway allows it, of `namespace`; recorded as read. Errors name the field (`context`).
    pub(super) fn traefik_service_port(
        &mut self,
        from: &str,
        name: &str,
        namespace: Option<&str>,
        port: Option<&IntOrString>,
        context: &str,
    ) -> Result<TraefikServicePort<'s>, String> {
        if name.is_empty() || name.contains('@') {
            return Err(format!(
                "{context}.name: {name:?} must name a Service (name@provider references do not \
                 exist in Sluice)"
            ));
        }
        let namespace = namespace.filter(|n| !n.is_empty()).unwrap_or(from);
        let key = ObjKey::new(namespace, name);
        self.sel
            .cross_namespace(from, "Service", &key)
            .map_err(|e| format!("{context}.namespace: {e}"))?;
        let port_text = match port {
            None => return Err(format!("{context}.port: required")),
            Some(IntOrString::Int(n)) => n.to_string(),
            Some(IntOrString::String(n)) => n.clone(),
        };
        let missing = || format!("{context}: Service {key} port {port_text} not found");
        self.read(crate::dag::Dep::Service(key.clone()));
        let snap = self.snap;
        let service = snap.services.get(&key).ok_or_else(missing)?;
        let found = service
            .spec
            .as_ref()
            .and_then(|sp| sp.ports.as_ref())
            .into_iter()
            .flatten()
            .find(|p| match port {
                Some(IntOrString::Int(n)) => *n != 0 && p.port == *n,
                Some(IntOrString::String(name)) => p.name.as_deref() == Some(name.as_str()),
                None => false,
            })
            .ok_or_else(missing)?;
        let number = u16::try_from(found.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(missing)?;
        Ok(TraefikServicePort {
            key,
            service,
            port: found,
            number,
        })
    }
}

impl Builder<'_> {
    /// A Kubernetes Service of namespace `from` (or, when the Gateway allows it, of the
    /// namespace `s` names) by port number or name, as a cluster (its endpoints recorded);
    /// `context` names the field in errors. A CA bundle it needs is pushed on `secrets`.
    pub(super) fn traefik_cluster(
        &mut self,
        from: &str,
        s: &tr::Service,
        context: &str,
        secrets: &mut Vec<Secret>,
    ) -> Result<(Cluster, Option<StickyCookie>), String> {
        refuse_unserved_fields(s).map_err(|e| format!("{context}.{e}"))?;
        let found = self.traefik_service_port(
            from,
            &s.name,
            s.namespace.as_deref(),
            s.port.as_ref(),
            context,
        )?;
        let TraefikServicePort {
            key: svc_key,
            service: svc,
            port: svc_port,
            number: port,
        } = found;
        let name = svc_port.name.as_deref().unwrap_or("");
        let scheme = match s.scheme.as_deref() {
            Some(scheme) => scheme,
            // Traefik's default: https on port 443 or a port named https*.
            None if port == 443 || name.starts_with("https") => "https",
            None => "http",
        };
        let transport = match s.servers_transport.as_deref() {
            None => None,
            Some(t) => Some(
                self.servers_transport(from, t)
                    .map_err(|e| format!("{context}.serversTransport: {e}"))?,
            ),
        };
        let protocol = match (scheme, upstream_protocol(svc, svc_port)) {
            ("http", UpstreamProtocol::Http1) => UpstreamProtocol::Http1,
            ("h2c", UpstreamProtocol::Http1 | UpstreamProtocol::H2c) => UpstreamProtocol::H2c,
            ("https", UpstreamProtocol::Http1 | UpstreamProtocol::Tls) => UpstreamProtocol::Tls,
            ("http" | "h2c" | "https", other) => {
                return Err(format!(
                    "{context}: Service {svc_key} port {port} is annotated as {other:?}, which \
                     contradicts scheme {scheme}"
                ));
            }
            (other, _) => {
                return Err(format!(
                    "{context}.scheme: {other:?} must be http, https or h2c"
                ));
            }
        };
        let mut transport_options = None;
        let validation = match (protocol, transport) {
            (
                UpstreamProtocol::Tls,
                Some(Transport {
                    tls,
                    mut options,
                    client_certificate,
                }),
            ) => {
                let check = tls.map_err(|e| format!("{context}.serversTransport: {e}"))?;
                secrets.extend(client_certificate);
                match check {
                    TransportCheck::Verify { ca, validation } => {
                        secrets.push(ca);
                        transport_options = Some(options);
                        Some(validation)
                    }
                    TransportCheck::Skip { sni } => {
                        options.unverified_sni = Some(sni);
                        transport_options = Some(options);
                        None
                    }
                }
            }
            (_, Some(Transport { mut options, .. })) => {
                // A client certificate means nothing to a plain-text backend (as in Traefik).
                options.client_certificate = None;
                transport_options = Some(options);
                None
            }
            (UpstreamProtocol::Tls, None) => {
                return Err(format!(
                    "{context}: scheme https (TLS to the backend; Traefik's default for port 443 \
                     and ports named https*) needs a serversTransport with serverName and rootCAs: \
                     without them Traefik checks the certificate against the pod's IP address \
                     and the system CAs, which Sluice does not do; set scheme: http if the \
                     backend speaks plain HTTP"
                ));
            }
            // The transport's TLS settings mean nothing to a plain-text backend (as in Traefik).
            _ => None,
        };
        let lb_policy = match s.strategy.as_deref() {
            None | Some("" | "RoundRobin" | "wrr") => LbPolicy::RoundRobin,
            // Power of two choices: the less loaded of two random servers, which is what
            // Envoy's least-request policy does with its default choice count of 2.
            Some("p2c") => LbPolicy::LeastRequest,
            Some(other) => {
                return Err(format!(
                    "{context}.strategy: {other:?} is not served: Sluice serves wrr (RoundRobin) \
                     and p2c"
                ));
            }
        };
        let mut upstream = self.build_upstream(&svc_key, svc, svc_port, context)?;
        let options = service_options::cluster_options(
            s,
            &svc_key.to_string(),
            port,
            &upstream,
            protocol,
            context,
        )?;
        self.endpoint_variant(&mut upstream, options.variant);
        let mut cluster = Cluster {
            name: String::new(),
            service: svc_key.to_string(),
            port,
            upstream,
            protocol,
            lb_policy: service_options::sticky_policy(options.sticky.is_some(), lb_policy),
            health_check: None,
            validation,
            proxy_protocol: None,
            active_health_check: options.health.map(Box::new),
            transport: transport_options.filter(|t| !t.is_empty()).map(Box::new),
        };
        let hash = policy_hash(&cluster)
            .map_err(|e| format!("{context}: cannot name its cluster: {e}"))?;
        cluster.name = format!("{svc_key}/{port}/{hash}");
        Ok((cluster, options.sticky))
    }

    /// Moves an EDS `upstream` to an assignment of its own whose endpoints carry `variant`'s
    /// settings (the same addresses as the shared one).
    fn endpoint_variant(&mut self, upstream: &mut Upstream, variant: EndpointVariant) {
        let Upstream::Eds { service_name } = upstream else {
            return;
        };
        let name = variant.name(service_name);
        if name == *service_name {
            return;
        }
        let addresses = self
            .endpoints
            .get(service_name.as_str())
            .map(|e| e.addresses.clone())
            .unwrap_or_default();
        self.endpoints.insert(
            name.clone(),
            ClusterEndpoints {
                service_name: name.clone(),
                addresses,
            },
        );
        *service_name = name;
    }

    /// The ServersTransport `name` of namespace `from`, checked, with its CA bundle.
    fn servers_transport(&mut self, from: &str, name: &str) -> Result<Transport, String> {
        if name.is_empty() || name.contains('@') || name.contains('/') {
            return Err(format!(
                "{name:?} must name a ServersTransport of the same namespace (name@provider \
                 references do not exist in Sluice)"
            ));
        }
        let key = ObjKey::new(from, name);
        self.read(crate::dag::Dep::Traefik(
            crate::snapshot::TraefikKind::ServersTransport,
            key.clone(),
        ));
        let obj = self
            .snap
            .traefik_transports
            .get(&key)
            .ok_or_else(|| format!("ServersTransport {key} not found"))?;
        let spec = &obj
            .decoded
            .as_ref()
            .map_err(|e| format!("ServersTransport {key} could not be read: {e}"))?
            .spec;
        if let Some(field) = obj.ignored.first() {
            return Err(format!(
                "ServersTransport {key}: {field}: field not supported by Sluice"
            ));
        }
        refuse_unserved_transport(spec, self.sel.allow_insecure_skip_verify)
            .map_err(|e| format!("ServersTransport {key}: {e}"))?;
        let (options, client_certificate) = self
            .transport_options(&key, spec)
            .map_err(|e| format!("ServersTransport {key}: {e}"))?;
        let tls = if spec.insecure_skip_verify == Some(true) {
            // As Go with InsecureSkipVerify: any certificate, `serverName` only sent as SNI, the
            // root CAs not read (so nothing they name is fetched).
            match spec.server_name.as_deref().map(str::trim) {
                None | Some("") => Ok(TransportCheck::Skip { sni: String::new() }),
                Some(name) => checks::subject_name(name)
                    .map(|()| TransportCheck::Skip {
                        sni: name.to_owned(),
                    })
                    .map_err(|e| format!("ServersTransport {key}: spec.serverName {e}")),
            }
        } else {
            self.transport_tls(from, &key, spec)
        };
        Ok(Transport {
            options,
            client_certificate,
            tls,
        })
    }

    /// The backend certificate check of the ServersTransport `key` of namespace `from`: its
    /// `serverName` and root CAs, both required. Only a TLS backend needs it; errors name the
    /// field.
    fn transport_tls(
        &mut self,
        from: &str,
        key: &ObjKey,
        spec: &ServersTransportSpec,
    ) -> Result<TransportCheck, String> {
        let server_name = spec
            .server_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                format!(
                    "ServersTransport {key}: spec.serverName is required: without it Traefik \
                     checks the backend's certificate against the pod's IP address, which \
                     Sluice does not do"
                )
            })?;
        checks::subject_name(server_name)
            .map_err(|e| format!("ServersTransport {key}: spec.serverName {e}"))?;
        let mut bundle = String::new();
        let sources =
            spec.root_cas
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        format!("spec.rootCAs[{i}]"),
                        r.secret.clone(),
                        &r.config_map,
                    )
                })
                .chain(
                    spec.root_cas_secrets.iter().enumerate().map(|(i, s)| {
                        (format!("spec.rootCAsSecrets[{i}]"), Some(s.clone()), &None)
                    }),
                );
        let mut count = 0;
        for (field, secret, config_map) in sources {
            count += 1;
            if count > MAX_ROOT_CAS {
                return Err(format!(
                    "ServersTransport {key}: more than {MAX_ROOT_CAS} root CA sources"
                ));
            }
            let secret = match (secret, config_map) {
                (Some(s), None) if !s.is_empty() && !s.contains('/') => s,
                (None, Some(_)) => {
                    return Err(format!(
                        "ServersTransport {key}: {field}.configMap: CA bundles from ConfigMaps \
                         are not served; put the bundle in a Secret (key tls.ca or ca.crt)"
                    ));
                }
                _ => {
                    return Err(format!(
                        "ServersTransport {key}: {field}: name exactly one Secret of the \
                         namespace"
                    ));
                }
            };
            let secret_key = ObjKey::new(from, secret);
            self.read(crate::dag::Dep::Secret(secret_key.clone()));
            let pem = CA_KEYS
                .iter()
                .find_map(|k| self.snap.secret_data(&secret_key, k))
                .ok_or_else(|| {
                    format!(
                        "ServersTransport {key}: {field}: Secret {secret_key} not found or \
                         without a tls.ca or ca.crt key"
                    )
                })?;
            checks::ca_bundle(pem).map_err(|e| {
                format!("ServersTransport {key}: {field}: Secret {secret_key}: {e}")
            })?;
            let pem = std::str::from_utf8(pem).map_err(|_| {
                format!("ServersTransport {key}: {field}: Secret {secret_key} is not PEM text")
            })?;
            bundle.push_str(pem.trim_end());
            bundle.push('\n');
        }
        if bundle.is_empty() {
            return Err(format!(
                "ServersTransport {key}: spec.rootCAs is required: Sluice does not trust the \
                 system CAs for backends"
            ));
        }
        // Named apart from the `namespace/secret/ca` bundles of Contour roots.
        let ca_secret = format!("traefik:{key}/ca");
        Ok(TransportCheck::Verify {
            ca: Secret {
                name: ca_secret.clone(),
                kind: SecretKind::Ca { ca: bundle },
            },
            validation: UpstreamValidation {
                ca_secret,
                subject_name: server_name.to_owned(),
            },
        })
    }
}

/// How a ServersTransport has the backend's certificate checked.
enum TransportCheck {
    /// Trust the root CAs (`ca`, concatenated); send and check `serverName`.
    Verify {
        ca: Secret,
        validation: UpstreamValidation,
    },
    /// `insecureSkipVerify`, where the Gateway allows it: any certificate; `sni` (the
    /// `serverName`, or empty for none) sent.
    Skip { sni: String },
}

/// A checked ServersTransport.
struct Transport {
    /// How the backend's certificate is checked; or why it cannot be, which refuses the
    /// transport for TLS backends only (a plain-text backend uses its timeouts and connection
    /// settings, as in Traefik).
    tls: Result<TransportCheck, String>,
    /// Timeouts, connection reuse, and the client certificate's name (see `transport.rs`).
    options: TransportOptions,
    /// The client certificate, recorded when the backend speaks TLS.
    client_certificate: Option<Secret>,
}

/// Fields of a ServersTransport that Sluice does not serve.
pub(super) fn refuse_unserved_transport(
    t: &ServersTransportSpec,
    allow_insecure: bool,
) -> Result<(), String> {
    if t.insecure_skip_verify == Some(true) && !allow_insecure {
        return Err(
            "spec.insecureSkipVerify: not served: Sluice verifies backends' certificates unless \
             the Gateway sets spec.allowInsecureSkipVerify"
                .into(),
        );
    }
    // The other fields are checked in `transport.rs`.
    match t.spiffe {
        Some(_) => Err("spec.spiffe: not served yet".into()),
        None => Ok(()),
    }
}

/// Fields of a service Sluice does not serve, with why; their defaults are accepted
/// (`passHostHeader`, `sticky` and `healthCheck` are checked in `service_options`).
fn refuse_unserved_fields(s: &tr::Service) -> Result<(), String> {
    let unserved = [
        ("nativeLB", s.native_lb == Some(true)),
        ("nodePortLB", s.node_port_lb == Some(true)),
    ];
    match unserved.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(format!("{field}: not served yet")),
        None => Ok(()),
    }
}
