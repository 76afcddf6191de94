//! Which IngressRoutes a Gateway instance judges, and where its roots may live.

use crate::api::gateway::{MAX_XFF_TRUSTED_HOPS, TraefikEntryPoint};
use crate::api::ingressroute::TlsVersion;
use crate::api::{Gateway, INGRESS_CLASS_ANNOTATIONS, IngressRoute};
use crate::snapshot::{ClusterSnapshot, ObjKey};

/// Namespace and name of the instance used when no Gateway is given.
pub const DEFAULT_INSTANCE: (&str, &str) = ("sluice-system", "default");

/// One Gateway's selection rules and the settings the translation reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub gateway: ObjKey,
    pub ingress_class: Option<String>,
    /// Empty: roots are valid in every namespace.
    pub root_namespaces: Vec<String>,
    pub enable_external_name_services: bool,
    /// Traefik objects may reference objects of other namespaces (the Gateway's
    /// `allowCrossNamespace`); see [`Selection::cross_namespace`].
    pub allow_cross_namespace: bool,
    /// The Gateway's `traefikEntryPoints`, without `web` and `websecure`; see
    /// [`Selection::entry_point`].
    pub traefik_entry_points: Vec<(String, TraefikEntryPoint)>,
    /// A ServersTransport may set `insecureSkipVerify` (the Gateway's
    /// `allowInsecureSkipVerify`).
    pub allow_insecure_skip_verify: bool,
    pub minimum_tls_version: Option<TlsVersion>,
    /// How many proxies in front of Envoy are trusted to append `X-Forwarded-For` (the Gateway's
    /// `xffTrustedHops`, at most [`MAX_XFF_TRUSTED_HOPS`]); 0: the header is not trusted.
    pub xff_trusted_hops: u32,
    /// Route to loopback endpoint addresses: only for a local `sluice standalone` (and `render`,
    /// which shows what standalone serves), whose Envoy has no admin port on TCP. In a cluster a
    /// loopback endpoint can only mean the proxy itself.
    pub allow_loopback_endpoints: bool,
}

impl Selection {
    /// The default instance: no class, all namespaces.
    pub fn default_instance() -> Self {
        Self {
            gateway: ObjKey::new(DEFAULT_INSTANCE.0, DEFAULT_INSTANCE.1),
            ingress_class: None,
            root_namespaces: Vec::new(),
            enable_external_name_services: false,
            allow_cross_namespace: false,
            traefik_entry_points: Vec::new(),
            allow_insecure_skip_verify: false,
            minimum_tls_version: None,
            xff_trusted_hops: 0,
            allow_loopback_endpoints: false,
        }
    }

    pub fn from_gateway(gw: &Gateway) -> Self {
        let mut root_namespaces = gw.spec.root_namespaces.clone();
        root_namespaces.sort();
        root_namespaces.dedup();
        Self {
            gateway: ObjKey::of(gw),
            ingress_class: gw.spec.ingress_class_name.clone().filter(|c| !c.is_empty()),
            root_namespaces,
            enable_external_name_services: gw.spec.enable_external_name_services,
            allow_cross_namespace: gw.spec.allow_cross_namespace,
            traefik_entry_points: gw
                .spec
                .traefik_entry_points
                .iter()
                .filter(|(name, _)| !matches!(name.as_str(), "web" | "websecure"))
                .map(|(name, to)| (name.clone(), *to))
                .collect(),
            allow_insecure_skip_verify: gw.spec.allow_insecure_skip_verify,
            minimum_tls_version: gw
                .spec
                .tls
                .as_ref()
                .and_then(|t| t.minimum_protocol_version),
            // The schema bounds it; past the bound (a manifest read without the schema, in
            // standalone) nothing is trusted.
            xff_trusted_hops: gw
                .spec
                .xff_trusted_hops
                .filter(|h| *h <= MAX_XFF_TRUSTED_HOPS)
                .unwrap_or(0),
            allow_loopback_endpoints: false,
        }
    }

    /// Whether an object of `from` (a Traefik route or TraefikService) may reference `what`
    /// (`"Service"`, `"Middleware"`, `"TLSOption"`, …) in namespace `to`: always in its own
    /// namespace, in another only when the Gateway sets `allowCrossNamespace`. The message names
    /// the reference and the setting.
    pub fn cross_namespace(&self, from: &str, what: &str, to: &ObjKey) -> Result<(), String> {
        if *to.namespace == *from || self.allow_cross_namespace {
            return Ok(());
        }
        Err(format!(
            "{what} {to} is in another namespace: cross-namespace references are refused unless \
             the Gateway sets spec.allowCrossNamespace"
        ))
    }

    /// The listener a Traefik entry point `name` means: `web` and `websecure` their own, other
    /// names as the Gateway's `traefikEntryPoints` map them; `None` when it maps nothing.
    pub fn entry_point(&self, name: &str) -> Option<TraefikEntryPoint> {
        match name {
            "web" => Some(TraefikEntryPoint::Web),
            "websecure" => Some(TraefikEntryPoint::WebSecure),
            other => self
                .traefik_entry_points
                .iter()
                .find(|(n, _)| n == other)
                .map(|(_, to)| *to),
        }
    }

    /// The same selection for a local `sluice standalone`: loopback endpoints are routed.
    pub fn local(mut self) -> Self {
        self.allow_loopback_endpoints = true;
        self
    }

    /// True when this instance judges `ir`: its class annotation equals the instance's class, or
    /// neither has a class.
    pub fn selects(&self, ir: &IngressRoute) -> bool {
        self.selects_meta(&ir.metadata)
    }

    /// [`Self::selects`] on an IngressRoute's metadata alone.
    pub fn selects_meta(&self, metadata: &kube::api::ObjectMeta) -> bool {
        let class = metadata.annotations.as_ref().and_then(|a| {
            INGRESS_CLASS_ANNOTATIONS
                .iter()
                .find_map(|k| a.get(*k))
                .filter(|c| !c.is_empty())
        });
        class.map(String::as_str) == self.ingress_class.as_deref()
    }

    /// True when this instance gives a verdict on a Traefik object that routes use
    /// (Middleware, TraefikService, TLSOption, TLSStore, ServersTransport) of `namespace`: one
    /// of the namespaces where its roots may live, and a class annotation, if the object has
    /// one, equal to the instance's class. Traefik filters none of these kinds by class, so one
    /// without the annotation is judged by every instance whose roots may share its namespace.
    pub fn selects_helper(&self, metadata: &kube::api::ObjectMeta, namespace: &str) -> bool {
        let class = metadata.annotations.as_ref().and_then(|a| {
            INGRESS_CLASS_ANNOTATIONS
                .iter()
                .find_map(|k| a.get(*k))
                .filter(|c| !c.is_empty())
        });
        let class_ok = class.is_none_or(|c| self.ingress_class.as_deref() == Some(c.as_str()));
        class_ok && self.root_allowed(namespace)
    }

    /// True when a root IngressRoute may live in `namespace`.
    pub fn root_allowed(&self, namespace: &str) -> bool {
        self.root_namespaces.is_empty() || self.root_namespaces.iter().any(|n| n == namespace)
    }
}

/// The instances a snapshot defines: one per Gateway, or the default instance when there is
/// none. A Gateway that failed to load ([`ClusterSnapshot::unloaded_gateways`]) still counts:
/// it has no instance, and the default instance does not take its place (fail closed).
pub fn instances(snapshot: &ClusterSnapshot) -> Vec<Selection> {
    if snapshot.gateways.is_empty() && snapshot.unloaded_gateways.is_empty() {
        return vec![Selection::default_instance()];
    }
    snapshot
        .gateways
        .values()
        .map(|g| Selection::from_gateway(g))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::source::load_sources;

    const GATEWAY: &str = "apiVersion: sluice.dev/v1alpha1
kind: Gateway
metadata:
  name: NAME
  namespace: sluice-system
spec:
  rootNamespaces: [team]
";

    fn names(snapshot: &ClusterSnapshot) -> Vec<String> {
        instances(snapshot)
            .iter()
            .map(|s| s.gateway.to_string())
            .collect()
    }

    /// The Gateway's trusted hops as the schema bounds them; past the bound (a manifest read
    /// without the schema) nothing is trusted rather than some other number.
    #[test]
    fn xff_trusted_hops_are_read_within_their_bound() {
        for (written, read) in [
            ("", 0),
            ("xffTrustedHops: 0\n", 0),
            ("xffTrustedHops: 2\n", 2),
        ]
        .into_iter()
        .chain([("xffTrustedHops: 16\n", 16), ("xffTrustedHops: 17\n", 0)])
        {
            let text = GATEWAY.replace("NAME", "gw") + "  " + written;
            let report = load_sources([("gw.yaml", text.as_str())]);
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            assert_eq!(
                instances(&report.snapshot)[0].xff_trusted_hops,
                read,
                "{written}"
            );
        }
    }

    #[test]
    fn without_gateways_the_default_instance_serves() {
        assert_eq!(
            names(&ClusterSnapshot::default()),
            vec!["sluice-system/default"]
        );
    }

    #[test]
    fn a_gateway_that_did_not_load_never_falls_back_to_the_default_instance() {
        let broken = GATEWAY.replace("NAME", "broken").replace("[team]", "3");
        let report = load_sources([("gw.yaml", broken.as_str())]);
        assert_eq!(report.errors.len(), 1);
        assert!(report.snapshot.gateways.is_empty());
        assert_eq!(names(&report.snapshot), Vec::<String>::new());

        // Next to a Gateway that loads: only that one.
        let good = GATEWAY.replace("NAME", "good");
        let text = format!("{good}---\n{broken}");
        let report = load_sources([("gw.yaml", text.as_str())]);
        assert_eq!(names(&report.snapshot), vec!["sluice-system/good"]);

        // Any source that records an unloaded Gateway gets the same.
        let mut snapshot = ClusterSnapshot::default();
        snapshot.unloaded_gateways = vec!["x.yaml: document 1".to_owned()];
        assert!(instances(&snapshot).is_empty());
    }
}
