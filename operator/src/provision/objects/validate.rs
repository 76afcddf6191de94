//! Validation of a Gateway against the operator's context, into a [`Plan`] the objects are built
//! from. Errors name the Gateway and the field.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::bootstrap::{
    BootstrapOptions, DEFAULT_ADMIN_SOCKET, XdsClientTls, build_bootstrap,
};
use super::super::images;
use super::super::names::{object_name, sha256_hex};
use super::ProvisionContext;
use super::labels::*;
use crate::api::Gateway;
use crate::api::gateway::EnvoyStats;
use crate::snapshot::ObjKey;

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

/// A Gateway validated against the operator's context: everything its objects are built from.
/// [`Plan::objects`] builds them.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    pub(super) gw: &'a Gateway,
    pub(super) ctx: &'a ProvisionContext,
    pub(super) ns: String,
    pub(super) name: String,
    pub(super) owner: OwnerReference,
    /// Envoy's image and the sidecar's, registry override applied.
    pub(super) image: String,
    pub(super) sidecar_image: String,
    pub(super) image_pull_secrets: Vec<String>,
    pub(super) run_as_user: Option<i64>,
    pub(super) log_level: &'a str,
    pub(super) drain_seconds: i64,
    pub(super) max_unavailable: IntOrString,
    pub(super) http_port: i32,
    pub(super) https_port: i32,
    /// The bootstrap JSON and its SHA-256 (hex).
    pub(super) bootstrap: String,
    pub(super) bootstrap_hash: String,
    /// Name of the ServiceAccount, DaemonSet and Service.
    pub envoy_name: String,
    /// Name of the bootstrap ConfigMap.
    pub config_map_name: String,
    /// The xDS client Secret the pods mount; `None` when xDS TLS is off.
    pub xds_client_secret: Option<String>,
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

/// Validates Gateway `gw` against the operator's context and gathers what its objects are
/// built from, the bootstrap included. Pure.
pub fn plan<'a>(gw: &'a Gateway, ctx: &'a ProvisionContext) -> Result<Plan<'a>, ProvisionError> {
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
    let bootstrap = bootstrap(ctx, &ns, &name, spec.envoy.stats.unwrap_or_default())?;
    Ok(Plan {
        gw,
        ctx,
        bootstrap_hash: sha256_hex(bootstrap.as_bytes()),
        bootstrap,
        envoy_name: object_name(&name, ENVOY_SUFFIX),
        config_map_name: object_name(&name, BOOTSTRAP_SUFFIX),
        xds_client_secret: ctx.xds_tls.then(|| xds_client_secret_name(&name)),
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

/// The bootstrap of the Gateway's Envoys, as the ConfigMap holds it.
fn bootstrap(
    ctx: &ProvisionContext,
    ns: &str,
    name: &str,
    stats: EnvoyStats,
) -> Result<String, ProvisionError> {
    let mut opts = BootstrapOptions::new(
        ObjKey::new(ns.to_owned(), name.to_owned()),
        ctx.xds_host.clone(),
        ctx.xds_port,
    );
    opts.ads = ctx.ads;
    opts.admin_socket = DEFAULT_ADMIN_SOCKET.to_owned();
    opts.stats = stats;
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
    Ok(bootstrap)
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
