//! The Kubernetes objects one Gateway instance needs: a ServiceAccount, the Envoy bootstrap
//! ConfigMap, the Envoy DaemonSet (with a `shutdown-manager` sidecar for graceful drain) and the
//! Service publishing it. Pure: [`desired`] reads the Gateway and a [`ProvisionContext`] and
//! returns typed objects; applying them (server-side apply as [`FIELD_MANAGER`]) is the
//! controller's job, not this module's.
//!
//! # RBAC
//!
//! No Role or RoleBinding is provisioned, on purpose. Envoy receives all of its configuration
//! over xDS from the operator (authenticated by its client certificate), never from the
//! Kubernetes API; the `shutdown-manager` sidecar only talks to Envoy's admin interface over its
//! Unix socket. Neither needs a token, so the ServiceAccount has no bindings and its token is not
//! mounted. It still exists so that the pods do not run as the namespace's `default`
//! ServiceAccount, which other tools may have granted rights to.
//!
//! # Envoy's admin interface
//!
//! Envoy's admin binds a Unix domain socket ([`DEFAULT_ADMIN_SOCKET`], mode 0600) on an
//! `emptyDir` volume ([`ADMIN_SOCKET_VOLUME`]) mounted in the Envoy and `shutdown-manager`
//! containers only. It has no TCP port, so nothing outside the pod, and no route, endpoint or
//! ExternalName service, can reach it.
//!
//! # Graceful drain
//!
//! Nothing in the pod listens for drain requests on the network. Terminating an Envoy pod runs
//! the preStop hook of both containers at once. The sidecar's is an `exec` of `sluice
//! shutdown-manager drain` (the sidecar runs the operator image, so the binary is there): it
//! fails Envoy's health checks through admin `/healthcheck/fail`, then returns once active
//! downstream connections reach zero or the drain time has passed. The Envoy image need not hold
//! any tool, so the Envoy container's hook is a `sleep` of the drain time, which keeps Envoy
//! serving until the drain is over (at most that long); only then does the kubelet send it
//! SIGTERM. `terminationGracePeriodSeconds` is the drain time plus
//! [`TERMINATION_GRACE_MARGIN_SECONDS`].
//!
//! # Layout
//!
//! [`plan`] validates the Gateway against the [`ProvisionContext`] (`validate`);
//! [`Plan::objects`] builds the ServiceAccount and ConfigMap here, the DaemonSet in
//! `daemon_set` and the Service in `service`; names, labels and fixed paths are in `labels`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::bootstrap::AdsFlavour;
use super::images::DEFAULT_RUN_AS_USER;
use crate::api::Gateway;
use crate::api::gateway::DEFAULT_ENVOY_IMAGE;

mod daemon_set;
mod labels;
mod service;
#[cfg(test)]
mod tests;
mod validate;

pub use labels::*;
pub(crate) use validate::{GatewayRef, gateway_ref};
pub use validate::{Plan, ProvisionError, plan};

/// The ports Envoy uses inside its pods. They must be the ports of the listeners the xDS
/// translation generates (`TranslateOptions`): `sluice run` builds both from the same flags, so
/// the container ports, the readiness probe and the Service's target ports always agree with what
/// Envoy is told to bind. Envoy's admin has no port: it is a Unix socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvoyPorts {
    pub http: u16,
    pub https: u16,
    /// Health (`/ready`) and stats listener.
    pub stats: u16,
}

impl Default for EnvoyPorts {
    fn default() -> Self {
        Self {
            http: ENVOY_HTTP_PORT,
            https: ENVOY_HTTPS_PORT,
            stats: ENVOY_HEALTH_PORT,
        }
    }
}

/// What the operator knows about itself that the Gateway's objects depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisionContext {
    /// The operator's image; the `shutdown-manager` sidecar runs it. Its entrypoint must be the
    /// `sluice` binary (the sidecar gets only `args`), at [`SLUICE_BINARY`] (its preStop hook
    /// runs that path).
    pub operator_image: String,
    /// Host of the operator's xDS Service, e.g. `sluice-xds.sluice-system.svc`.
    pub xds_host: String,
    pub xds_port: u16,
    /// Connect to xDS with mutual TLS, using the Secret named by [`xds_client_secret_name`].
    pub xds_tls: bool,
    /// Name the xDS server certificate must carry; `None`: `xds_host`.
    pub xds_server_name: Option<String>,
    pub ads: AdsFlavour,
    pub envoy_ports: EnvoyPorts,
    /// Envoy image of Gateways that set no `spec.envoy.image`.
    pub default_envoy_image: String,
    /// Registry both images of Envoy pods are pulled from when the Gateway sets none
    /// (see [`images::with_registry`]); `None`: as named.
    pub image_registry: Option<String>,
    /// Pull secrets (names, in each Gateway's namespace) of Gateways that set none.
    pub envoy_image_pull_secrets: Vec<String>,
    /// User ID of Envoy pods whose Gateway sets none; `None`: no `runAsUser`, `runAsGroup` or
    /// `fsGroup` (the platform assigns them, as OpenShift does).
    pub envoy_run_as_user: Option<i64>,
}

impl ProvisionContext {
    /// Context with mutual TLS on, delta ADS and the default Envoy ports.
    pub fn new(
        operator_image: impl Into<String>,
        xds_host: impl Into<String>,
        xds_port: u16,
    ) -> Self {
        Self {
            operator_image: operator_image.into(),
            xds_host: xds_host.into(),
            xds_port,
            xds_tls: true,
            xds_server_name: None,
            ads: AdsFlavour::Delta,
            envoy_ports: EnvoyPorts::default(),
            default_envoy_image: DEFAULT_ENVOY_IMAGE.to_owned(),
            image_registry: None,
            envoy_image_pull_secrets: Vec::new(),
            envoy_run_as_user: Some(DEFAULT_RUN_AS_USER),
        }
    }
}

/// Everything [`desired`] produces for one Gateway, all in the Gateway's namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObjects {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub daemon_set: DaemonSet,
    pub service: Service,
    /// The Secret with the xDS client credentials the DaemonSet mounts (not created here);
    /// `None` when xDS TLS is off.
    pub xds_client_secret: Option<String>,
    /// SHA-256 (hex) of the bootstrap, also in the pod template's annotations.
    pub bootstrap_hash: String,
}

/// The objects Gateway `gw` needs. Deterministic: the same inputs give equal objects.
/// `xds_client_hash`: the hash of the Gateway's xDS client Secret as applied
/// (`xds_tls::xds_client_secret_hash`), put in the pod template so that new credentials roll
/// the pods; `None` when there is none (xDS TLS off, or rendering offline).
pub fn desired(
    gw: &Gateway,
    ctx: &ProvisionContext,
    xds_client_hash: Option<&str>,
) -> Result<DesiredObjects, ProvisionError> {
    Ok(plan(gw, ctx)?.objects(xds_client_hash))
}

impl Plan<'_> {
    /// The objects of the planned Gateway; see [`desired`].
    pub fn objects(&self, xds_client_hash: Option<&str>) -> DesiredObjects {
        let labels = gateway_labels(&self.name);
        let meta = |name: &str| ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.ns.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        };
        let service_account = ServiceAccount {
            metadata: meta(&self.envoy_name),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        };
        let config_map = ConfigMap {
            metadata: meta(&self.config_map_name),
            data: Some(BTreeMap::from([(
                BOOTSTRAP_KEY.to_owned(),
                self.bootstrap.clone(),
            )])),
            ..ConfigMap::default()
        };
        let daemon_set = daemon_set::daemon_set(
            self,
            meta(&self.envoy_name),
            labels.clone(),
            xds_client_hash,
        );
        let service = service::service(self, meta(&self.envoy_name));
        DesiredObjects {
            service_account,
            config_map,
            daemon_set,
            service,
            xds_client_secret: self.xds_client_secret.clone(),
            bootstrap_hash: self.bootstrap_hash.clone(),
        }
    }
}
