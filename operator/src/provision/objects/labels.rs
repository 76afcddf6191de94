//! Names, labels, annotations and fixed paths of the objects provisioned for a Gateway.

use std::collections::BTreeMap;

use super::super::images::DEFAULT_RUN_AS_USER;
use super::super::names::{label_value, object_name};

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
/// Pod-template annotation holding the hash of the xDS client Secret's CA and certificate
/// (see `xds_tls::xds_client_secret_hash`), so a renewed certificate rolls the pods: Envoy
/// reads the files only at start.
pub const ANNOTATION_XDS_CLIENT_HASH: &str = "sluice.dev/xds-client-hash";

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
