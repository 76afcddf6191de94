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

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler,
    LocalObjectReference, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::bootstrap::{
    ADMIN_SOCKET_DIR, AdsFlavour, BootstrapOptions, DEFAULT_ADMIN_SOCKET, XdsClientTls,
    build_bootstrap,
};
use super::images::{self, DEFAULT_RUN_AS_USER};
use super::names::{label_value, object_name, sha256_hex};
use crate::api::Gateway;
use crate::api::gateway::{DEFAULT_ENVOY_IMAGE, ExternalTrafficPolicy, PublishingType};
use crate::snapshot::ObjKey;

/// Field manager for every server-side apply Sluice makes.
pub const FIELD_MANAGER: &str = "sluice";

/// `app.kubernetes.io/name`; always [`APP_NAME_ENVOY`] on provisioned objects.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the Gateway's name (see [`label_value`]).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by`; always [`MANAGED_BY`].
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The Gateway an object belongs to (see [`label_value`]).
pub const LABEL_GATEWAY: &str = "sluice.dev/gateway";
pub const APP_NAME_ENVOY: &str = "envoy";
pub const MANAGED_BY: &str = "sluice";
/// Pod-template annotation holding the SHA-256 of the bootstrap, so a change rolls the pods.
pub const ANNOTATION_BOOTSTRAP_HASH: &str = "sluice.dev/bootstrap-hash";

/// Default ports of Envoy's listeners inside the pod (`ingress_http`, `ingress_https`,
/// health/stats); see [`EnvoyPorts`].
pub const ENVOY_HTTP_PORT: u16 = 8080;
pub const ENVOY_HTTPS_PORT: u16 = 8443;
pub const ENVOY_HEALTH_PORT: u16 = 8002;
/// Readiness path on the health/stats port.
pub const ENVOY_READY_PATH: &str = "/ready";
/// The `sluice` binary in the operator image (the Dockerfile's), run by the sidecar's preStop.
pub const SLUICE_BINARY: &str = "/usr/local/bin/sluice";
/// The `emptyDir` holding Envoy's admin socket, mounted at [`ADMIN_SOCKET_DIR`].
pub const ADMIN_SOCKET_VOLUME: &str = "envoy-admin";

/// Default drain time when `spec.rollout.drainSeconds` is unset.
pub const DEFAULT_DRAIN_SECONDS: i64 = 60;
/// Upper bound accepted for `spec.rollout.drainSeconds` (one day).
pub const MAX_DRAIN_SECONDS: i64 = 86_400;
/// Time left after the drain for Envoy and the sidecar to exit on SIGTERM.
pub const TERMINATION_GRACE_MARGIN_SECONDS: i64 = 10;
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Log levels Envoy's `--log-level` accepts.
pub const ENVOY_LOG_LEVELS: [&str; 8] = [
    "trace", "debug", "info", "warn", "warning", "error", "critical", "off",
];

/// Name suffixes of provisioned objects.
pub const ENVOY_SUFFIX: &str = "envoy";
pub const BOOTSTRAP_SUFFIX: &str = "envoy-bootstrap";
pub const XDS_CLIENT_SUFFIX: &str = "xds-client";

/// Key of the bootstrap in the ConfigMap, and where it is mounted.
pub const BOOTSTRAP_KEY: &str = "bootstrap.json";
pub const BOOTSTRAP_DIR: &str = "/config";
/// Keys of the xDS client Secret (created elsewhere) and where it is mounted.
pub const XDS_CA_KEY: &str = "ca.crt";
pub const XDS_CERT_KEY: &str = "tls.crt";
pub const XDS_KEY_KEY: &str = "tls.key";
pub const XDS_CERTS_DIR: &str = "/certs/xds";

/// Container names.
pub const ENVOY_CONTAINER: &str = "envoy";
pub const SHUTDOWN_MANAGER_CONTAINER: &str = "shutdown-manager";

/// Unprivileged user and group the containers run as by default (`nobody`).
pub const RUN_AS_ID: i64 = DEFAULT_RUN_AS_USER;

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

/// Why a Gateway cannot be provisioned. Invalid specs wait for a change to the Gateway.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    #[error("Gateway {gateway}: {field}: {message}")]
    InvalidSpec {
        gateway: String,
        field: &'static str,
        message: String,
    },
    #[error("Gateway {gateway}: {field} is missing")]
    MissingMetadata {
        gateway: String,
        field: &'static str,
    },
    #[error("provisioning context: {field}: {message}")]
    InvalidContext {
        field: &'static str,
        message: String,
    },
}

impl ProvisionError {
    /// Stable short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidSpec { .. } => "invalid_spec",
            Self::MissingMetadata { .. } => "missing_metadata",
            Self::InvalidContext { .. } => "invalid_context",
        }
    }
}

/// Name of the Secret holding the xDS client CA, certificate and key of a Gateway's Envoys.
pub fn xds_client_secret_name(gateway: &str) -> String {
    object_name(gateway, XDS_CLIENT_SUFFIX)
}

/// Labels every object of a Gateway carries.
pub fn gateway_labels(gateway: &str) -> BTreeMap<String, String> {
    let value = label_value(gateway);
    BTreeMap::from([
        (LABEL_NAME.to_owned(), APP_NAME_ENVOY.to_owned()),
        (LABEL_INSTANCE.to_owned(), value.clone()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_GATEWAY.to_owned(), value),
    ])
}

/// Labels selecting a Gateway's Envoy pods (immutable once a DaemonSet exists: never change).
pub fn pod_selector(gateway: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), APP_NAME_ENVOY.to_owned()),
        (LABEL_GATEWAY.to_owned(), label_value(gateway)),
    ])
}

/// The validated inputs [`desired`] builds from.
struct Plan<'a> {
    ns: String,
    name: String,
    owner: OwnerReference,
    /// Envoy's image and the sidecar's, registry override applied.
    image: String,
    sidecar_image: String,
    image_pull_secrets: Vec<String>,
    run_as_user: Option<i64>,
    log_level: &'a str,
    drain_seconds: i64,
    max_unavailable: IntOrString,
    http_port: i32,
    https_port: i32,
}

/// The objects Gateway `gw` needs. Deterministic: the same inputs give equal objects.
pub fn desired(gw: &Gateway, ctx: &ProvisionContext) -> Result<DesiredObjects, ProvisionError> {
    let plan = validate(gw, ctx)?;
    let labels = gateway_labels(&plan.name);
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(plan.ns.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![plan.owner.clone()]),
        ..ObjectMeta::default()
    };
    let envoy_name = object_name(&plan.name, ENVOY_SUFFIX);

    let service_account = ServiceAccount {
        metadata: meta(envoy_name.clone()),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };

    let xds_client_secret = ctx.xds_tls.then(|| xds_client_secret_name(&plan.name));
    let mut opts = BootstrapOptions::new(
        ObjKey::new(plan.ns.clone(), plan.name.clone()),
        ctx.xds_host.clone(),
        ctx.xds_port,
    );
    opts.ads = ctx.ads;
    opts.admin_socket = DEFAULT_ADMIN_SOCKET.to_owned();
    opts.stats = gw.spec.envoy.stats.unwrap_or_default();
    if ctx.xds_tls {
        opts.tls = Some(XdsClientTls {
            ca_file: format!("{XDS_CERTS_DIR}/{XDS_CA_KEY}"),
            cert_file: format!("{XDS_CERTS_DIR}/{XDS_CERT_KEY}"),
            key_file: format!("{XDS_CERTS_DIR}/{XDS_KEY_KEY}"),
            server_name: ctx
                .xds_server_name
                .clone()
                .unwrap_or_else(|| ctx.xds_host.clone()),
        });
    }
    // serde_json's maps are sorted, so equal bootstraps give equal text and hashes.
    let bootstrap = serde_json::to_string_pretty(&build_bootstrap(&opts)).map_err(|e| {
        ProvisionError::InvalidContext {
            field: "bootstrap",
            message: e.to_string(),
        }
    })? + "\n";
    let bootstrap_hash = sha256_hex(bootstrap.as_bytes());
    let config_map_name = object_name(&plan.name, BOOTSTRAP_SUFFIX);
    let config_map = ConfigMap {
        metadata: meta(config_map_name.clone()),
        data: Some(BTreeMap::from([(BOOTSTRAP_KEY.to_owned(), bootstrap)])),
        ..ConfigMap::default()
    };

    let daemon_set = DaemonSet {
        metadata: meta(envoy_name.clone()),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(pod_selector(&plan.name)),
                ..LabelSelector::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(plan.max_unavailable.clone()),
                    ..RollingUpdateDaemonSet::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        ANNOTATION_BOOTSTRAP_HASH.to_owned(),
                        bootstrap_hash.clone(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(
                    gw,
                    ctx,
                    &plan,
                    &envoy_name,
                    &config_map_name,
                    xds_client_secret.as_deref(),
                )),
            },
            ..DaemonSetSpec::default()
        }),
        status: None,
    };

    let service = service(gw, &plan, ctx.envoy_ports, meta(envoy_name));

    Ok(DesiredObjects {
        service_account,
        config_map,
        daemon_set,
        service,
        xds_client_secret,
        bootstrap_hash,
    })
}

/// What every object provisioned for a Gateway needs from it.
pub(crate) struct GatewayRef {
    pub name: String,
    pub namespace: String,
    /// Controller owner reference to the Gateway (deleting it collects the object).
    pub owner: OwnerReference,
}

/// The Gateway's name, namespace and owner reference; `Err((namespace/name, field))` names the
/// missing metadata field.
pub(crate) fn gateway_ref(gw: &Gateway) -> Result<GatewayRef, (String, &'static str)> {
    let name = gw.metadata.name.clone().unwrap_or_default();
    let namespace = gw.metadata.namespace.clone().unwrap_or_default();
    let missing = |field| (format!("{namespace}/{name}"), field);
    if name.is_empty() {
        return Err(missing("metadata.name"));
    }
    if namespace.is_empty() {
        return Err(missing("metadata.namespace"));
    }
    let uid = gw
        .metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("metadata.uid"))?;
    let owner = OwnerReference {
        api_version: "sluice.dev/v1alpha1".to_owned(),
        kind: "Gateway".to_owned(),
        name: name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Ok(GatewayRef {
        name,
        namespace,
        owner,
    })
}

fn validate<'a>(gw: &'a Gateway, ctx: &ProvisionContext) -> Result<Plan<'a>, ProvisionError> {
    let GatewayRef {
        name,
        namespace: ns,
        owner,
    } = gateway_ref(gw)
        .map_err(|(gateway, field)| ProvisionError::MissingMetadata { gateway, field })?;
    let key = format!("{ns}/{name}");
    let invalid = |field, message: String| ProvisionError::InvalidSpec {
        gateway: key.clone(),
        field,
        message,
    };

    let context = |field, message: &str| ProvisionError::InvalidContext {
        field,
        message: message.to_owned(),
    };
    if !is_image_reference(&ctx.operator_image) {
        return Err(context("operatorImage", "not an image reference"));
    }
    if ctx.xds_host.is_empty() {
        return Err(context("xdsHost", "empty"));
    }
    if ctx.xds_port == 0 {
        return Err(context("xdsPort", "must be 1-65535"));
    }
    let p = ctx.envoy_ports;
    let mut in_pod = [p.http, p.https, p.stats];
    in_pod.sort_unstable();
    if in_pod.contains(&0) || in_pod.windows(2).any(|w| w[0] == w[1]) {
        return Err(context(
            "envoyPorts",
            "the HTTP, HTTPS and stats ports must be 1-65535 and distinct",
        ));
    }

    if !is_image_reference(&ctx.default_envoy_image) {
        return Err(context("defaultEnvoyImage", "not an image reference"));
    }
    if ctx
        .image_registry
        .as_deref()
        .is_some_and(|r| !images::is_registry(r))
    {
        return Err(context("imageRegistry", "not a registry host"));
    }
    if let Some(bad) = ctx
        .envoy_image_pull_secrets
        .iter()
        .find(|n| !images::is_secret_name(n))
    {
        return Err(ProvisionError::InvalidContext {
            field: "envoyImagePullSecrets",
            message: format!("{bad:?} is not a Secret name"),
        });
    }

    let spec = &gw.spec;
    let image = spec
        .envoy
        .image
        .as_deref()
        .unwrap_or(&ctx.default_envoy_image);
    if !is_image_reference(image) {
        return Err(invalid(
            "spec.envoy.image",
            format!("{image:?} is not an image reference"),
        ));
    }
    if let Some(r) = spec.envoy.image_registry.as_deref()
        && !images::is_registry(r)
    {
        return Err(invalid(
            "spec.envoy.imageRegistry",
            format!("{r:?} is not a registry host (HOST[:PORT][/PATH])"),
        ));
    }
    // The Gateway's registry and pull secrets replace the operator's.
    let (image, sidecar_image) = match spec
        .envoy
        .image_registry
        .as_deref()
        .or(ctx.image_registry.as_deref())
    {
        Some(r) => (
            images::with_registry(image, r),
            images::with_registry(&ctx.operator_image, r),
        ),
        None => (image.to_owned(), ctx.operator_image.clone()),
    };
    let image_pull_secrets = match &spec.envoy.image_pull_secrets {
        Some(refs) => refs.iter().map(|r| r.name.clone()).collect(),
        None => ctx.envoy_image_pull_secrets.clone(),
    };
    if let Some(bad) = image_pull_secrets
        .iter()
        .find(|n| !images::is_secret_name(n))
    {
        return Err(invalid(
            "spec.envoy.imagePullSecrets",
            format!("{bad:?} is not a Secret name"),
        ));
    }
    let run_as_user = spec.envoy.run_as_user.or(ctx.envoy_run_as_user);
    if let Some(id) = run_as_user
        && !(1..=images::MAX_USER_ID).contains(&id)
    {
        return Err(invalid(
            "spec.envoy.runAsUser",
            format!("{id} is not between 1 and {}", images::MAX_USER_ID),
        ));
    }
    let log_level = spec.envoy.log_level.as_deref().unwrap_or(DEFAULT_LOG_LEVEL);
    if !ENVOY_LOG_LEVELS.contains(&log_level) {
        return Err(invalid(
            "spec.envoy.logLevel",
            format!(
                "{log_level:?} is not one of {}",
                ENVOY_LOG_LEVELS.join(", ")
            ),
        ));
    }
    let drain_seconds = spec.rollout.drain_seconds.unwrap_or(DEFAULT_DRAIN_SECONDS);
    if !(0..=MAX_DRAIN_SECONDS).contains(&drain_seconds) {
        return Err(invalid(
            "spec.rollout.drainSeconds",
            format!("{drain_seconds} is not between 0 and {MAX_DRAIN_SECONDS}"),
        ));
    }
    let max_unavailable = spec
        .rollout
        .max_unavailable
        .clone()
        .unwrap_or(IntOrString::Int(1));
    let max_unavailable_ok = match &max_unavailable {
        IntOrString::Int(n) => *n >= 1,
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<u8>().ok())
            .is_some_and(|p| (1..=100).contains(&p)),
    };
    if !max_unavailable_ok {
        // 0 is only valid with maxSurge, which Sluice does not set.
        return Err(invalid(
            "spec.rollout.maxUnavailable",
            format!(
                "{} must be a positive integer or a percentage from 1% to 100%",
                int_or_string(&max_unavailable)
            ),
        ));
    }
    for (field, port) in [
        ("spec.ports.http", spec.ports.http),
        ("spec.ports.https", spec.ports.https),
    ] {
        if !(1..=65_535).contains(&port) {
            return Err(invalid(field, format!("{port} is not between 1 and 65535")));
        }
    }
    if spec.ports.http == spec.ports.https {
        return Err(invalid(
            "spec.ports.https",
            format!("{} is also the HTTP port", spec.ports.https),
        ));
    }
    Ok(Plan {
        owner,
        ns,
        name,
        image,
        sidecar_image,
        image_pull_secrets,
        run_as_user,
        log_level,
        drain_seconds,
        max_unavailable,
        http_port: spec.ports.http,
        https_port: spec.ports.https,
    })
}

fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => format!("{s:?}"),
    }
}

/// A plausible container image reference: non-empty, no whitespace or control characters, not
/// starting with `-` or `/`. The registry decides the rest.
fn is_image_reference(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['-', '/', ':', '@'])
        && !s.ends_with([':', '@', '/'])
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn pod_spec(
    gw: &Gateway,
    ctx: &ProvisionContext,
    plan: &Plan<'_>,
    service_account: &str,
    config_map: &str,
    xds_secret: Option<&str>,
) -> PodSpec {
    let ports = ctx.envoy_ports;
    // The drain runs inside the pod, in the sidecar (which holds the binary); nothing listens for
    // it on the network.
    let drain_hook = Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    SLUICE_BINARY.to_owned(),
                    "shutdown-manager".to_owned(),
                    "drain".to_owned(),
                    format!("--admin-socket={DEFAULT_ADMIN_SOCKET}"),
                    format!("--stats-port={}", ports.stats),
                    format!("--drain-seconds={}", plan.drain_seconds),
                ]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    };
    // Envoy exits at once on SIGTERM: its container waits out the drain (the Envoy image need
    // not hold a shell or any tool). A zero drain time needs no wait.
    let envoy_hook = (plan.drain_seconds > 0).then(|| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: plan.drain_seconds,
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    });
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let port = |name: &str, port: u16| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(port),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };

    // Envoy binds its admin socket here; the sidecar connects to it.
    let admin_mount = VolumeMount {
        name: ADMIN_SOCKET_VOLUME.to_owned(),
        mount_path: ADMIN_SOCKET_DIR.to_owned(),
        ..VolumeMount::default()
    };
    let mut envoy_mounts = vec![mount("bootstrap", BOOTSTRAP_DIR), admin_mount.clone()];
    let mut volumes = vec![
        Volume {
            name: "bootstrap".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.to_owned(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: ADMIN_SOCKET_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if let Some(secret) = xds_secret {
        envoy_mounts.push(mount("xds-client", XDS_CERTS_DIR));
        volumes.push(Volume {
            name: "xds-client".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                // Readable by the pod's fsGroup only: it holds a private key.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }

    let envoy = Container {
        name: ENVOY_CONTAINER.to_owned(),
        image: Some(plan.image.clone()),
        args: Some(vec![
            "-c".to_owned(),
            format!("{BOOTSTRAP_DIR}/{BOOTSTRAP_KEY}"),
            // A distinct node id per pod, for the operator's logs; the kubelet expands $(POD_NAME).
            "--service-node".to_owned(),
            "$(POD_NAME)".to_owned(),
            "--log-level".to_owned(),
            plan.log_level.to_owned(),
        ]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![
            port("http", ports.http),
            port("https", ports.https),
            port("metrics", ports.stats),
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(ENVOY_READY_PATH.to_owned()),
                port: IntOrString::Int(i32::from(ports.stats)),
                scheme: Some("HTTP".to_owned()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: gw.spec.envoy.resources.clone(),
        lifecycle: envoy_hook,
        security_context: Some(container_security_context()),
        volume_mounts: Some(envoy_mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };

    let shutdown_manager = Container {
        name: SHUTDOWN_MANAGER_CONTAINER.to_owned(),
        image: Some(plan.sidecar_image.clone()),
        // Waits for SIGTERM; it exists so that the preStop `exec` has a container to run in.
        args: Some(vec!["shutdown-manager".to_owned()]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".to_owned())),
                ("memory".to_owned(), Quantity("16Mi".to_owned())),
            ])),
            ..ResourceRequirements::default()
        }),
        lifecycle: Some(drain_hook),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![admin_mount]),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };

    PodSpec {
        containers: vec![envoy, shutdown_manager],
        image_pull_secrets: (!plan.image_pull_secrets.is_empty()).then(|| {
            let secret = |name: &String| LocalObjectReference { name: name.clone() };
            plan.image_pull_secrets.iter().map(secret).collect()
        }),
        service_account_name: Some(service_account.to_owned()),
        automount_service_account_token: Some(false),
        // Envoy needs no Service environment variables; large namespaces would flood it.
        enable_service_links: Some(false),
        node_selector: (!gw.spec.envoy.node_selector.is_empty())
            .then(|| gw.spec.envoy.node_selector.clone()),
        tolerations: (!gw.spec.envoy.tolerations.is_empty())
            .then(|| gw.spec.envoy.tolerations.clone()),
        termination_grace_period_seconds: Some(
            plan.drain_seconds + TERMINATION_GRACE_MARGIN_SECONDS,
        ),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            // Unset (`auto`): the platform picks them, as OpenShift's restricted-v2 SCC does.
            run_as_user: plan.run_as_user,
            run_as_group: plan.run_as_user,
            fs_group: plan.run_as_user,
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

/// Both containers: unprivileged, no capabilities (all ports are above 1024), read-only root.
fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn service(
    gw: &Gateway,
    plan: &Plan<'_>,
    envoy_ports: EnvoyPorts,
    mut metadata: ObjectMeta,
) -> Service {
    let publishing = &gw.spec.publishing;
    let type_ = match publishing.type_ {
        PublishingType::LoadBalancer => "LoadBalancer",
        PublishingType::NodePort => "NodePort",
        PublishingType::ClusterIP => "ClusterIP",
    };
    // The API rejects externalTrafficPolicy on ClusterIP Services; it is ignored there.
    let external_traffic_policy = match publishing.type_ {
        PublishingType::ClusterIP => None,
        PublishingType::LoadBalancer | PublishingType::NodePort => {
            publishing.external_traffic_policy.map(|p| {
                match p {
                    ExternalTrafficPolicy::Cluster => "Cluster",
                    ExternalTrafficPolicy::Local => "Local",
                }
                .to_owned()
            })
        }
    };
    if !publishing.annotations.is_empty() {
        metadata.annotations = Some(publishing.annotations.clone());
    }
    let port = |name: &str, port: i32, target: u16| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(i32::from(target))),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            selector: Some(pod_selector(&plan.name)),
            ports: Some(vec![
                port("http", plan.http_port, envoy_ports.http),
                port("https", plan.https_port, envoy_ports.https),
            ]),
            external_traffic_policy,
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::api::gateway::PublishingType;
    use crate::provision::fixtures::{ctx, gateway};
    use k8s_openapi::api::core::v1::Toleration;
    use pretty_assertions::assert_eq;
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    fn objects(gw: &Gateway) -> DesiredObjects {
        desired(gw, &ctx()).unwrap()
    }

    fn pod(d: &DesiredObjects) -> &PodSpec {
        d.daemon_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
    }

    fn container<'a>(d: &'a DesiredObjects, name: &str) -> &'a Container {
        pod(d).containers.iter().find(|c| c.name == name).unwrap()
    }

    fn bootstrap(d: &DesiredObjects) -> Value {
        serde_json::from_str(&d.config_map.data.as_ref().unwrap()[BOOTSTRAP_KEY]).unwrap()
    }

    fn metas(d: &DesiredObjects) -> [&ObjectMeta; 4] {
        [
            &d.service_account.metadata,
            &d.config_map.metadata,
            &d.daemon_set.metadata,
            &d.service.metadata,
        ]
    }

    fn svc_spec(d: &DesiredObjects) -> &ServiceSpec {
        d.service.spec.as_ref().unwrap()
    }

    #[test]
    fn every_object_is_namespaced_labelled_and_owned_by_the_gateway() {
        let d = objects(&gateway("team-a", "gw"));
        let expected_labels = BTreeMap::from([
            ("app.kubernetes.io/instance".to_owned(), "gw".to_owned()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "sluice".to_owned(),
            ),
            ("app.kubernetes.io/name".to_owned(), "envoy".to_owned()),
            ("sluice.dev/gateway".to_owned(), "gw".to_owned()),
        ]);
        for m in metas(&d) {
            assert_eq!(m.namespace.as_deref(), Some("team-a"));
            assert_eq!(m.labels.as_ref(), Some(&expected_labels));
            assert_eq!(
                m.owner_references.as_deref(),
                Some(
                    &[OwnerReference {
                        api_version: "sluice.dev/v1alpha1".into(),
                        kind: "Gateway".into(),
                        name: "gw".into(),
                        uid: "uid-team-a-gw".into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }][..]
                )
            );
        }
        assert_eq!(d.service_account.metadata.name.as_deref(), Some("gw-envoy"));
        assert_eq!(d.daemon_set.metadata.name.as_deref(), Some("gw-envoy"));
        assert_eq!(d.service.metadata.name.as_deref(), Some("gw-envoy"));
        assert_eq!(
            d.config_map.metadata.name.as_deref(),
            Some("gw-envoy-bootstrap")
        );
    }

    #[test]
    fn service_account_has_no_token() {
        let d = objects(&gateway("team-a", "gw"));
        assert_eq!(
            d.service_account.automount_service_account_token,
            Some(false)
        );
        let p = pod(&d);
        assert_eq!(p.service_account_name.as_deref(), Some("gw-envoy"));
        assert_eq!(p.automount_service_account_token, Some(false));
    }

    #[test]
    fn bootstrap_points_at_the_operator_and_names_the_instance() {
        let d = objects(&gateway("team-a", "gw"));
        let b = bootstrap(&d);
        assert_eq!(b["node"]["cluster"], "team-a/gw");
        assert_eq!(
            b["admin"]["address"]["pipe"]["path"],
            "/var/run/sluice/admin.sock"
        );
        let addr = &b["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
            [0]["endpoint"]["address"]["socket_address"];
        assert_eq!(addr["address"], "sluice-xds.sluice-system.svc");
        assert_eq!(addr["port_value"], 8001);
        assert_eq!(d.xds_client_secret, None);
        assert!(
            pod(&d)
                .volumes
                .as_ref()
                .unwrap()
                .iter()
                .all(|v| v.secret.is_none())
        );
    }

    #[test]
    fn xds_tls_mounts_the_client_secret_and_the_bootstrap_uses_it() {
        let mut c = ctx();
        c.xds_tls = true;
        let d = desired(&gateway("team-a", "gw"), &c).unwrap();
        assert_eq!(d.xds_client_secret.as_deref(), Some("gw-xds-client"));
        let vol = pod(&d)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.secret.is_some())
            .unwrap();
        assert_eq!(
            vol.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("gw-xds-client")
        );
        let mount = container(&d, ENVOY_CONTAINER)
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == vol.name)
            .unwrap();
        assert_eq!(mount.mount_path, "/certs/xds");
        assert_eq!(mount.read_only, Some(true));
        let ts =
            &bootstrap(&d)["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert_eq!(ts["sni"], "sluice-xds.sluice-system.svc");
        let tls = &ts["common_tls_context"];
        assert_eq!(
            tls["tls_certificates"][0]["certificate_chain"]["filename"],
            "/certs/xds/tls.crt"
        );
        assert_eq!(
            tls["tls_certificates"][0]["private_key"]["filename"],
            "/certs/xds/tls.key"
        );
        assert_eq!(
            tls["validation_context"]["trusted_ca"]["filename"],
            "/certs/xds/ca.crt"
        );
        // The sidecar never sees the key: it mounts the admin socket's directory only.
        let sidecar_mounts = container(&d, SHUTDOWN_MANAGER_CONTAINER)
            .volume_mounts
            .as_ref();
        let names: Vec<&str> = sidecar_mounts
            .unwrap()
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, [ADMIN_SOCKET_VOLUME]);
    }

    #[test]
    fn daemon_set_defaults() {
        let d = objects(&gateway("team-a", "gw"));
        let spec = d.daemon_set.spec.as_ref().unwrap();
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
            assert_eq!(
                template_labels.get(k),
                Some(v),
                "selector {k} matches the pods"
            );
        }
        assert_eq!(
            template_labels,
            d.daemon_set.metadata.labels.as_ref().unwrap()
        );
        let strategy = spec.update_strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(
            strategy.rolling_update.as_ref().unwrap().max_unavailable,
            Some(IntOrString::Int(1))
        );

        let envoy = container(&d, ENVOY_CONTAINER);
        assert_eq!(envoy.image.as_deref(), Some(DEFAULT_ENVOY_IMAGE));
        assert_eq!(
            envoy.args.as_ref().unwrap(),
            &[
                "-c",
                "/config/bootstrap.json",
                "--service-node",
                "$(POD_NAME)",
                "--log-level",
                "info"
            ]
        );
        let ports: Vec<(Option<&str>, i32)> = envoy
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.as_deref(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("http"), 8080),
                (Some("https"), 8443),
                (Some("metrics"), 8002)
            ]
        );
        let probe = envoy
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some("/ready"));
        assert_eq!(probe.port, IntOrString::Int(8002));
        let mounts = |c: &Container| -> Vec<(String, String, Option<bool>)> {
            c.volume_mounts
                .iter()
                .flatten()
                .map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only))
                .collect()
        };
        let admin_mount = ("envoy-admin".to_owned(), "/var/run/sluice".to_owned(), None);
        assert_eq!(
            mounts(envoy),
            [
                ("bootstrap".to_owned(), "/config".to_owned(), Some(true)),
                admin_mount.clone(),
            ]
        );
        assert_eq!(envoy.resources, None);

        // Envoy's admin is a Unix socket on a volume only the two containers share.
        assert_eq!(
            bootstrap(&d)["admin"]["address"],
            serde_json::json!({"pipe": {"path": "/var/run/sluice/admin.sock", "mode": 0o600}})
        );
        let admin_volume = pod(&d)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "envoy-admin")
            .unwrap();
        assert_eq!(
            admin_volume.empty_dir,
            Some(EmptyDirVolumeSource::default())
        );

        // Graceful drain, with nothing listening on the network: the sidecar's preStop runs the
        // drain in the sidecar (the operator image holds the binary); Envoy's waits it out.
        let sidecar = container(&d, SHUTDOWN_MANAGER_CONTAINER);
        assert_eq!(sidecar.image.as_deref(), Some("ghcr.io/sluice/sluice:test"));
        assert_eq!(sidecar.args.as_ref().unwrap(), &["shutdown-manager"]);
        assert_eq!(sidecar.ports, None);
        assert_eq!(mounts(sidecar), [admin_mount]);
        let pre_stop = |c: &Container| c.lifecycle.as_ref().unwrap().pre_stop.clone().unwrap();
        assert_eq!(
            pre_stop(sidecar),
            LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(
                        [
                            "/usr/local/bin/sluice",
                            "shutdown-manager",
                            "drain",
                            "--admin-socket=/var/run/sluice/admin.sock",
                            "--stats-port=8002",
                            "--drain-seconds=60",
                        ]
                        .map(str::to_owned)
                        .to_vec()
                    ),
                }),
                ..LifecycleHandler::default()
            }
        );
        assert_eq!(
            pre_stop(envoy),
            LifecycleHandler {
                sleep: Some(SleepAction { seconds: 60 }),
                ..LifecycleHandler::default()
            }
        );
        for c in [envoy, sidecar] {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.run_as_non_root, Some(true));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
        }
        let p = pod(&d);
        assert_eq!(p.termination_grace_period_seconds, Some(70));
        let psc = p.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(65_534));
        assert_eq!(p.node_selector, None);
        assert_eq!(p.tolerations, None);

        // The bootstrap hash annotation is the hash of the ConfigMap's content.
        let annotations = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        let data = &d.config_map.data.as_ref().unwrap()[BOOTSTRAP_KEY];
        assert_eq!(
            annotations[ANNOTATION_BOOTSTRAP_HASH],
            sha256_hex(data.as_bytes())
        );
        assert_eq!(annotations[ANNOTATION_BOOTSTRAP_HASH], d.bootstrap_hash);
    }

    #[test]
    fn spec_fields_reach_the_pods() {
        let mut gw = gateway("team-a", "gw")
            .with_image("registry.local/envoy:v1.40.0")
            .with_log_level("debug")
            .with_drain_seconds(120)
            .with_node_selector("kubernetes.io/os", "linux")
            .with_max_unavailable(IntOrString::String("25%".into()));
        gw.spec.envoy.tolerations = vec![Toleration {
            key: Some("edge".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }];
        gw.spec.envoy.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
            ..ResourceRequirements::default()
        });
        let d = objects(&gw);
        let envoy = container(&d, ENVOY_CONTAINER);
        assert_eq!(envoy.image.as_deref(), Some("registry.local/envoy:v1.40.0"));
        assert_eq!(
            envoy.args.as_ref().unwrap().last().map(String::as_str),
            Some("debug")
        );
        assert_eq!(envoy.resources, gw.spec.envoy.resources);
        let p = pod(&d);
        assert_eq!(p.termination_grace_period_seconds, Some(130));
        assert_eq!(
            p.node_selector.as_ref().unwrap()["kubernetes.io/os"],
            "linux"
        );
        assert_eq!(p.tolerations.as_ref(), Some(&gw.spec.envoy.tolerations));
        let sidecar = container(&d, SHUTDOWN_MANAGER_CONTAINER);
        let hook = sidecar.lifecycle.as_ref().unwrap().pre_stop.as_ref();
        let command = hook.unwrap().exec.as_ref().unwrap().command.as_ref();
        assert!(command.unwrap().contains(&"--drain-seconds=120".to_owned()));
        let hook = envoy.lifecycle.as_ref().unwrap().pre_stop.as_ref();
        assert_eq!(hook.unwrap().sleep, Some(SleepAction { seconds: 120 }));
        let ru = d
            .daemon_set
            .spec
            .as_ref()
            .unwrap()
            .update_strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::String("25%".into())));
        assert_eq!(ru.max_surge, None);

        let d = objects(&gateway("team-a", "gw").with_max_unavailable(IntOrString::Int(3)));
        let ru = d
            .daemon_set
            .spec
            .unwrap()
            .update_strategy
            .unwrap()
            .rolling_update
            .unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(3)));

        let d = objects(&gateway("team-a", "gw").with_drain_seconds(0));
        assert_eq!(pod(&d).termination_grace_period_seconds, Some(10));
        // A zero drain time: Envoy has nothing to wait for (a 0 s sleep is not valid everywhere).
        assert_eq!(container(&d, ENVOY_CONTAINER).lifecycle, None);
    }

    #[test]
    fn service_follows_publishing() {
        let d = objects(&gateway("team-a", "gw"));
        let s = svc_spec(&d);
        assert_eq!(s.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(s.external_traffic_policy, None);
        assert_eq!(
            s.selector,
            d.daemon_set.spec.as_ref().unwrap().selector.match_labels
        );
        let ports: Vec<_> = s
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap(),
                    p.port,
                    p.target_port.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                ("http".to_owned(), 80, IntOrString::Int(8080)),
                ("https".to_owned(), 443, IntOrString::Int(8443))
            ]
        );
        assert_eq!(d.service.metadata.annotations, None);

        let d = objects(
            &gateway("team-a", "gw")
                .with_external_traffic_policy(ExternalTrafficPolicy::Local)
                .with_service_annotation("service.beta.kubernetes.io/aws-load-balancer-type", "nlb")
                .with_ports(8000, 8443),
        );
        let s = svc_spec(&d);
        assert_eq!(s.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(s.ports.as_ref().unwrap()[0].port, 8000);
        assert_eq!(
            d.service.metadata.annotations.as_ref().unwrap()["service.beta.kubernetes.io/aws-load-balancer-type"],
            "nlb"
        );

        let d = objects(
            &gateway("team-a", "gw")
                .with_publishing(PublishingType::NodePort)
                .with_external_traffic_policy(ExternalTrafficPolicy::Cluster),
        );
        assert_eq!(svc_spec(&d).type_.as_deref(), Some("NodePort"));
        assert_eq!(
            svc_spec(&d).external_traffic_policy.as_deref(),
            Some("Cluster")
        );

        let d = objects(
            &gateway("team-a", "gw")
                .with_publishing(PublishingType::ClusterIP)
                .with_external_traffic_policy(ExternalTrafficPolicy::Local),
        );
        assert_eq!(svc_spec(&d).type_.as_deref(), Some("ClusterIP"));
        assert_eq!(svc_spec(&d).external_traffic_policy, None);
    }

    /// JSON of every object, for whole-output comparisons.
    fn as_json(d: &DesiredObjects) -> Value {
        serde_json::json!({
            "sa": d.service_account, "cm": d.config_map, "ds": d.daemon_set, "svc": d.service
        })
    }

    #[test]
    fn output_is_deterministic() {
        let gw = gateway("team-a", "gw")
            .with_service_annotation("b", "2")
            .with_service_annotation("a", "1")
            .with_node_selector("z", "1")
            .with_node_selector("y", "2");
        let a = serde_json::to_string(&as_json(&objects(&gw))).unwrap();
        let b = serde_json::to_string(&as_json(&objects(&gw.clone()))).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn changing_the_image_changes_only_the_envoy_image() {
        let before = objects(&gateway("team-a", "gw"));
        let after = objects(&gateway("team-a", "gw").with_image("envoyproxy/envoy:v1.40.0"));
        assert_eq!(
            container(&after, ENVOY_CONTAINER).image.as_deref(),
            Some("envoyproxy/envoy:v1.40.0")
        );
        // The bootstrap does not depend on the image: same ConfigMap, same hash annotation.
        assert_eq!(before.bootstrap_hash, after.bootstrap_hash);
        let mut patched = as_json(&after);
        patched["ds"]["spec"]["template"]["spec"]["containers"][0]["image"] =
            DEFAULT_ENVOY_IMAGE.into();
        assert_eq!(patched, as_json(&before));
    }

    #[test]
    fn the_gateway_chooses_envoy_statistics() {
        let mut gw = gateway("team-a", "gw");
        let minimal = objects(&gw);
        assert!(bootstrap(&minimal)["stats_config"]["stats_matcher"].is_object());
        gw.spec.envoy.stats = Some(crate::api::gateway::EnvoyStats::Full);
        let full = objects(&gw);
        assert!(bootstrap(&full).get("stats_config").is_none());
        assert_ne!(minimal.bootstrap_hash, full.bootstrap_hash);
    }

    #[test]
    fn changing_the_bootstrap_changes_the_hash_annotation() {
        let gw = gateway("team-a", "gw");
        let before = objects(&gw);
        let mut c = ctx();
        c.xds_port = 18_000;
        let after = desired(&gw, &c).unwrap();
        assert_ne!(before.bootstrap_hash, after.bootstrap_hash);
        let mut patched = as_json(&after);
        patched["ds"]["spec"]["template"]["metadata"]["annotations"][ANNOTATION_BOOTSTRAP_HASH] =
            before.bootstrap_hash.clone().into();
        patched["cm"] = as_json(&before)["cm"].clone();
        assert_eq!(patched, as_json(&before));
    }

    #[test]
    fn envoy_ports_from_the_context_reach_pods_service_and_bootstrap() {
        let mut c = ctx();
        c.envoy_ports = EnvoyPorts {
            http: 18_080,
            https: 18_443,
            stats: 18_002,
        };
        let d = desired(&gateway("team-a", "gw"), &c).unwrap();
        let envoy = container(&d, ENVOY_CONTAINER);
        let ports: Vec<i32> = envoy
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.container_port)
            .collect();
        assert_eq!(ports, [18_080, 18_443, 18_002]);
        let probe = envoy.readiness_probe.as_ref().unwrap().http_get.as_ref();
        assert_eq!(probe.unwrap().port, IntOrString::Int(18_002));
        let targets: Vec<_> = svc_spec(&d)
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.port, p.target_port.clone().unwrap()))
            .collect();
        assert_eq!(
            targets,
            [
                (80, IntOrString::Int(18_080)),
                (443, IntOrString::Int(18_443))
            ]
        );
        // The drain skips the stats listener's connections (probes).
        let sidecar = container(&d, SHUTDOWN_MANAGER_CONTAINER);
        let hook = sidecar.lifecycle.as_ref().unwrap().pre_stop.as_ref();
        let command = hook.unwrap().exec.as_ref().unwrap().command.as_ref();
        assert!(command.unwrap().contains(&"--stats-port=18002".to_owned()));

        for clash in [
            EnvoyPorts {
                https: 18_080,
                ..c.envoy_ports
            },
            EnvoyPorts {
                stats: 18_443,
                ..c.envoy_ports
            },
            EnvoyPorts {
                stats: 0,
                ..c.envoy_ports
            },
        ] {
            let mut bad = c.clone();
            bad.envoy_ports = clash;
            let err = desired(&gateway("team-a", "gw"), &bad).unwrap_err();
            assert_eq!(err.label(), "invalid_context", "{clash:?}");
            assert!(err.to_string().contains("envoyPorts"), "{err}");
        }
    }

    #[test]
    fn long_gateway_names_are_truncated_with_a_hash() {
        let name = format!("{}.team-a.example.com", "edge".repeat(20));
        let gw = gateway("team-a", &name);
        let d = objects(&gw);
        for m in metas(&d) {
            let n = m.name.as_deref().unwrap();
            assert!(n.len() <= 63, "{n}");
            for v in m.labels.as_ref().unwrap().values() {
                assert!(v.len() <= 63, "{v}");
            }
            assert_eq!(m.owner_references.as_ref().unwrap()[0].name, name);
        }
        let envoy = d.daemon_set.metadata.name.clone().unwrap();
        assert!(envoy.ends_with("-envoy"), "{envoy}");
        assert_eq!(d.service.metadata.name.as_ref(), Some(&envoy));
        assert_eq!(pod(&d).service_account_name.as_ref(), Some(&envoy));
        assert!(
            d.config_map
                .metadata
                .name
                .as_deref()
                .unwrap()
                .ends_with("-envoy-bootstrap")
        );
        // The bootstrap still names the full Gateway.
        assert_eq!(bootstrap(&d)["node"]["cluster"], format!("team-a/{name}"));
        // Another long name with the same prefix gets other names.
        let other = objects(&gateway("team-a", &format!("{name}x")));
        assert_ne!(other.daemon_set.metadata.name, d.daemon_set.metadata.name);
    }

    fn invalid(gw: &Gateway) -> String {
        let err = desired(gw, &ctx()).unwrap_err();
        assert_eq!(err.label(), "invalid_spec", "{err}");
        err.to_string()
    }

    #[test]
    fn invalid_specs_name_the_gateway_and_field() {
        let gw = || gateway("team-a", "gw");
        for (g, field) in [
            (gw().with_image(""), "spec.envoy.image"),
            (gw().with_image("envoy proxy"), "spec.envoy.image"),
            (gw().with_log_level("loud"), "spec.envoy.logLevel"),
            (gw().with_drain_seconds(-1), "spec.rollout.drainSeconds"),
            (
                gw().with_drain_seconds(MAX_DRAIN_SECONDS + 1),
                "spec.rollout.drainSeconds",
            ),
            (
                gw().with_max_unavailable(IntOrString::Int(0)),
                "spec.rollout.maxUnavailable",
            ),
            (
                gw().with_max_unavailable(IntOrString::String("0%".into())),
                "spec.rollout.maxUnavailable",
            ),
            (
                gw().with_max_unavailable(IntOrString::String("150%".into())),
                "spec.rollout.maxUnavailable",
            ),
            (
                gw().with_max_unavailable(IntOrString::String("two".into())),
                "spec.rollout.maxUnavailable",
            ),
            (gw().with_ports(0, 443), "spec.ports.http"),
            (gw().with_ports(80, 70_000), "spec.ports.https"),
            (gw().with_ports(80, 80), "spec.ports.https"),
        ] {
            let msg = invalid(&g);
            assert!(msg.starts_with("Gateway team-a/gw: "), "{msg}");
            assert!(msg.contains(field), "{msg} should name {field}");
        }
    }

    #[test]
    fn missing_metadata_and_bad_context_are_errors() {
        let mut gw = gateway("team-a", "gw");
        gw.metadata.uid = None;
        let err = desired(&gw, &ctx()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Gateway team-a/gw: metadata.uid is missing"
        );

        let mut c = ctx();
        c.operator_image = String::new();
        let err = desired(&gateway("team-a", "gw"), &c).unwrap_err();
        assert_eq!(err.label(), "invalid_context");
    }

    // --- the bootstrap in the ConfigMap is accepted by the real Envoy ---

    /// A directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("sluice-provision-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `envoy --mode validate` with the Envoy container's own arguments, the bootstrap read
    /// from `config` instead of the ConfigMap mount.
    fn envoy_validate(d: &DesiredObjects, config: &Path) {
        let args: Vec<String> = container(d, ENVOY_CONTAINER)
            .args
            .clone()
            .unwrap()
            .into_iter()
            .map(|a| match a.as_str() {
                "/config/bootstrap.json" => config.display().to_string(),
                "$(POD_NAME)" => "gw-envoy-x7k2p".to_owned(),
                _ => a,
            })
            .collect();
        let out = std::process::Command::new("envoy")
            .args(["--mode", "validate"])
            .args(&args)
            .output()
            .expect("envoy on PATH");
        assert!(
            out.status.success(),
            "envoy rejected {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn bootstrap_passes_envoy_validate() {
        let dir = TempDir::new("plain");
        let d = objects(&gateway("team-a", "gw").with_log_level("warning"));
        let path = dir.0.join(BOOTSTRAP_KEY);
        std::fs::write(&path, &d.config_map.data.as_ref().unwrap()[BOOTSTRAP_KEY]).unwrap();
        envoy_validate(&d, &path);
    }

    #[test]
    fn bootstrap_with_xds_tls_passes_envoy_validate() {
        let dir = TempDir::new("tls");
        // Envoy loads the files while validating: make real ones where the Secret would be.
        let ok = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=test",
            ])
            .arg("-keyout")
            .arg(dir.0.join(XDS_KEY_KEY))
            .arg("-out")
            .arg(dir.0.join(XDS_CERT_KEY))
            .output()
            .expect("openssl on PATH");
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        std::fs::copy(dir.0.join(XDS_CERT_KEY), dir.0.join(XDS_CA_KEY)).unwrap();

        let mut c = ctx();
        c.xds_tls = true;
        let d = desired(&gateway("team-a", "gw"), &c).unwrap();
        let text = d.config_map.data.as_ref().unwrap()[BOOTSTRAP_KEY]
            .replace(XDS_CERTS_DIR, dir.0.to_str().unwrap());
        assert_ne!(&text, &d.config_map.data.as_ref().unwrap()[BOOTSTRAP_KEY]);
        let path = dir.0.join(BOOTSTRAP_KEY);
        std::fs::write(&path, text).unwrap();
        envoy_validate(&d, &path);
    }
}
