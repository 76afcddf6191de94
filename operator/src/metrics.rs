//! Prometheus metrics of the operator. One registry per process; handles are cheap clones.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::provision::status::{CONDITION_AVAILABLE, CONDITION_DEGRADED, CONDITION_PROGRESSING};

/// Every metric Sluice exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Verdicts by gateway, kind, API group (`contour.heptio.com`, `traefik.io`,
    /// `traefik.containo.us`) and status (valid, invalid, orphaned).
    pub routes: IntGaugeVec,
    /// Verdicts on the other Traefik objects (Middleware, TraefikService, TLSOption, TLSStore,
    /// ServersTransport), by gateway, kind, API group and status.
    pub traefik_objects: IntGaugeVec,
    pub dag_build_seconds: HistogramVec,
    pub translate_seconds: HistogramVec,
    /// Root IngressRoutes (Contour's) whose virtual host a DAG update built again, by Gateway.
    pub roots_rebuilt: IntCounterVec,
    /// Reconcile durations by controller (gateway, routes).
    pub reconcile_seconds: HistogramVec,
    /// Reconcile errors by controller and error category.
    pub reconcile_errors: IntCounterVec,
    /// IngressRoute status writes.
    pub status_writes: IntCounterVec,
    /// What the served CRDs look like in the cluster: 1 per CRD, its shape in the labels.
    pub crd_info: IntGaugeVec,
    /// notAfter (Unix seconds) of the xDS certificates, by certificate (ca, server, client)
    /// and gateway (`<namespace>/<name>`, empty for ca and server).
    pub xds_certificate_expiry: GaugeVec,
    /// The conditions of each Gateway's status as the leader last computed them: 1 on the
    /// series of the condition's status (True, False, Unknown), 0 on the other two.
    pub gateway_conditions: IntGaugeVec,
    /// Secret watches running, by state: `needed` (the scope calls for them) or `grace` (left
    /// the scope, kept for a while); the cluster-wide watch counts one.
    pub secret_watches: IntGaugeVec,
    /// Objects each Gateway builds as invalid because an Envoy rejected their configuration
    /// (`dag::quarantine`): nonzero means a check Sluice lacks.
    pub quarantined: IntGaugeVec,
}

/// The condition types of a Gateway's status.
const GATEWAY_CONDITIONS: [&str; 3] = [
    CONDITION_AVAILABLE,
    CONDITION_PROGRESSING,
    CONDITION_DEGRADED,
];

/// The values a condition's status takes, each a series of `sluice_gateway_condition`.
const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let routes = IntGaugeVec::new(
            Opts::new(
                "sluice_ingressroutes",
                "IngressRoutes (Contour's and Traefik's) judged by each Gateway, by kind, API \
                 group and status",
            ),
            &["gateway", "kind", "group", "status"],
        )?;
        let traefik_objects = IntGaugeVec::new(
            Opts::new(
                "sluice_traefik_objects",
                "Traefik Middlewares, TraefikServices, TLSOptions, TLSStores and \
                 ServersTransports judged by each Gateway (each from its own fields, used by a \
                 route or not), by kind, API group and status",
            ),
            &["gateway", "kind", "group", "status"],
        )?;
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()),
                labels,
            )
        };
        let dag_build_seconds = histogram(
            "sluice_dag_build_duration_seconds",
            "Time to build one Gateway's DAG",
            &["gateway"],
        )?;
        let translate_seconds = histogram(
            "sluice_translate_duration_seconds",
            "Time to translate one Gateway's DAG into Envoy resources",
            &["gateway"],
        )?;
        let roots_rebuilt = IntCounterVec::new(
            Opts::new(
                "sluice_dag_roots_rebuilt_total",
                "Root IngressRoutes whose virtual host a DAG update built again, by Gateway",
            ),
            &["gateway"],
        )?;
        let reconcile_seconds = histogram(
            "sluice_reconcile_duration_seconds",
            "Reconcile duration",
            &["controller"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "sluice_reconcile_errors_total",
                "Reconcile errors by category",
            ),
            &["controller", "category"],
        )?;
        let status_writes = IntCounterVec::new(
            Opts::new("sluice_status_writes_total", "Status writes by kind"),
            &["kind"],
        )?;
        let crd_info = IntGaugeVec::new(
            Opts::new(
                "sluice_crd_info",
                "The CRDs Sluice serves as installed: served versions, whether the version Sluice \
                 uses has a status subresource, and spec.preserveUnknownFields",
            ),
            &[
                "crd",
                "served_versions",
                "status_subresource",
                "preserve_unknown_fields",
            ],
        )?;
        let xds_certificate_expiry = GaugeVec::new(
            Opts::new(
                "sluice_xds_certificate_expiry_timestamp_seconds",
                "When each xDS certificate expires (notAfter, Unix seconds), by certificate \
                 (ca, server, client) and gateway (client certificates only)",
            ),
            &["certificate", "gateway"],
        )?;
        let gateway_conditions = IntGaugeVec::new(
            Opts::new(
                "sluice_gateway_condition",
                "The conditions of each Gateway's status (written by the leader): 1 on the \
                 series of the condition's current status, 0 on the others",
            ),
            &["gateway", "type", "status"],
        )?;
        let secret_watches = IntGaugeVec::new(
            Opts::new(
                "sluice_secret_watches",
                "Secret watches running (one per namespace, or one cluster-wide), by state: \
                 needed, or grace (no longer needed, kept for a grace period)",
            ),
            &["state"],
        )?;
        let quarantined = IntGaugeVec::new(
            Opts::new(
                "sluice_quarantined_objects",
                "Objects a Gateway builds as invalid because an Envoy rejected the \
                 configuration made from them, until what they read changes",
            ),
            &["gateway"],
        )?;
        registry.register(Box::new(quarantined.clone()))?;
        registry.register(Box::new(routes.clone()))?;
        registry.register(Box::new(traefik_objects.clone()))?;
        registry.register(Box::new(secret_watches.clone()))?;
        registry.register(Box::new(gateway_conditions.clone()))?;
        registry.register(Box::new(crd_info.clone()))?;
        registry.register(Box::new(dag_build_seconds.clone()))?;
        registry.register(Box::new(translate_seconds.clone()))?;
        registry.register(Box::new(roots_rebuilt.clone()))?;
        registry.register(Box::new(reconcile_seconds.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(status_writes.clone()))?;
        registry.register(Box::new(xds_certificate_expiry.clone()))?;
        Ok(Self {
            registry,
            routes,
            traefik_objects,
            dag_build_seconds,
            translate_seconds,
            roots_rebuilt,
            reconcile_seconds,
            reconcile_errors,
            status_writes,
            crd_info,
            xds_certificate_expiry,
            gateway_conditions,
            secret_watches,
            quarantined,
        })
    }

    /// Records when an xDS certificate expires: `certificate` is `ca`, `server` or `client`;
    /// `gateway` is `<namespace>/<name>` for client certificates, empty otherwise.
    pub fn set_xds_certificate_expiry(
        &self,
        certificate: &str,
        gateway: &str,
        not_after: std::time::SystemTime,
    ) {
        let secs = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.xds_certificate_expiry
            .with_label_values(&[certificate, gateway])
            .set(secs);
    }

    /// Records the conditions of a Gateway's status; `gateway` is `<namespace>/<name>`.
    pub fn set_gateway_conditions<'a>(
        &self,
        gateway: &str,
        conditions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        for (type_, status) in conditions {
            for value in CONDITION_STATUSES {
                self.gateway_conditions
                    .with_label_values(&[gateway, type_, value])
                    .set(i64::from(status == value));
            }
        }
    }

    /// Drops the condition series of a Gateway (deleted, or no longer reported here).
    pub fn forget_gateway_conditions(&self, gateway: &str) {
        for type_ in GATEWAY_CONDITIONS {
            for value in CONDITION_STATUSES {
                let _ = self
                    .gateway_conditions
                    .remove_label_values(&[gateway, type_, value]);
            }
        }
    }

    /// Drops every client certificate series (`certificate="client"`), keeping the CA's and the
    /// server's. Only the leader renews client certificates and sets these series: a replica
    /// that stops leading forgets them, or their notAfter would go stale once the new leader
    /// renews and look like a certificate about to expire.
    pub fn forget_xds_client_certificates(&self) {
        use prometheus::core::Collector;
        let label = |m: &prometheus::proto::Metric, name: &str| {
            m.get_label()
                .iter()
                .find(|l| l.name() == name)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        let gateways: Vec<String> = self
            .xds_certificate_expiry
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|m| label(m, "certificate") == "client")
            .map(|m| label(m, "gateway"))
            .collect();
        for gateway in gateways {
            let _ = self
                .xds_certificate_expiry
                .remove_label_values(&["client", &gateway]);
        }
    }

    /// The text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gateway_conditions_mark_the_current_status_and_are_forgotten() {
        let m = Metrics::new().unwrap();
        m.set_gateway_conditions("ns/gw", [("Degraded", "True"), ("Available", "False")]);
        let get = |t: &str, s: &str| {
            m.gateway_conditions
                .with_label_values(&["ns/gw", t, s])
                .get()
        };
        assert_eq!(get("Degraded", "True"), 1);
        assert_eq!(get("Degraded", "False"), 0);
        assert_eq!(get("Available", "False"), 1);
        assert_eq!(get("Available", "Unknown"), 0);
        m.set_gateway_conditions("ns/gw", [("Degraded", "False")]);
        assert_eq!(get("Degraded", "True"), 0);
        assert_eq!(get("Degraded", "False"), 1);
        m.forget_gateway_conditions("ns/gw");
        assert!(!m.render().contains("sluice_gateway_condition{"));
    }

    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_replica_that_stops_leading_forgets_client_certificates_only()
    -> Result<(), prometheus::Error> {
        let m = Metrics::new()?;
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        m.set_xds_certificate_expiry("ca", "", at(3000));
        m.set_xds_certificate_expiry("server", "", at(2000));
        m.set_xds_certificate_expiry("client", "team-a/edge", at(1000));
        m.set_xds_certificate_expiry("client", "team-b/edge", at(1001));
        let name = "sluice_xds_certificate_expiry_timestamp_seconds";
        let text = m.render();
        assert!(
            text.contains(&format!(
                "{name}{{certificate=\"client\",gateway=\"team-b/edge\"}} 1001"
            )),
            "{text}"
        );
        m.forget_xds_client_certificates();
        let text = m.render();
        assert!(!text.contains("certificate=\"client\""), "{text}");
        assert!(
            text.contains(&format!("{name}{{certificate=\"ca\",gateway=\"\"}} 3000")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{name}{{certificate=\"server\",gateway=\"\"}} 2000"
            )),
            "{text}"
        );
        Ok(())
    }
}
