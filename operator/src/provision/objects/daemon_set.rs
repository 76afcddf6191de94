//! The Envoy DaemonSet: Envoy and its `shutdown-manager` sidecar (see the module documentation
//! of [`super`] for the drain and the admin socket).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler, LocalObjectReference,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::bootstrap::{ADMIN_SOCKET_DIR, DEFAULT_ADMIN_SOCKET};
use super::labels::*;
use super::validate::Plan;

/// The DaemonSet of the Gateway's Envoys. `xds_client_hash`: the hash of the xDS client
/// Secret, put in the pod template so that new credentials roll the pods.
pub(super) fn daemon_set(
    plan: &Plan<'_>,
    metadata: ObjectMeta,
    labels: BTreeMap<String, String>,
    xds_client_hash: Option<&str>,
) -> DaemonSet {
    let mut annotations = BTreeMap::from([(
        ANNOTATION_BOOTSTRAP_HASH.to_owned(),
        plan.bootstrap_hash.clone(),
    )]);
    if let Some(hash) = xds_client_hash {
        annotations.insert(ANNOTATION_XDS_CLIENT_HASH.to_owned(), hash.to_owned());
    }
    DaemonSet {
        metadata,
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
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(plan)),
            },
            ..DaemonSetSpec::default()
        }),
        status: None,
    }
}

/// The pod: its volumes, the two containers, then the pod-wide settings.
fn pod_spec(plan: &Plan<'_>) -> PodSpec {
    let envoy_spec = &plan.gw.spec.envoy;
    let volumes = volumes(plan);
    PodSpec {
        containers: vec![
            envoy_container(plan, volumes.envoy_mounts),
            shutdown_manager_container(plan, volumes.admin_mount),
        ],
        image_pull_secrets: (!plan.image_pull_secrets.is_empty()).then(|| {
            let secret = |name: &String| LocalObjectReference { name: name.clone() };
            plan.image_pull_secrets.iter().map(secret).collect()
        }),
        service_account_name: Some(plan.envoy_name.clone()),
        automount_service_account_token: Some(false),
        // Envoy needs no Service environment variables; large namespaces would flood it.
        enable_service_links: Some(false),
        node_selector: (!envoy_spec.node_selector.is_empty())
            .then(|| envoy_spec.node_selector.clone()),
        tolerations: (!envoy_spec.tolerations.is_empty()).then(|| envoy_spec.tolerations.clone()),
        termination_grace_period_seconds: Some(
            plan.drain_seconds + TERMINATION_GRACE_MARGIN_SECONDS,
        ),
        security_context: Some(pod_security_context(plan.run_as_user)),
        volumes: Some(volumes.volumes),
        ..PodSpec::default()
    }
}

/// The pod's volumes and what each container mounts of them.
struct Volumes {
    volumes: Vec<Volume>,
    envoy_mounts: Vec<VolumeMount>,
    /// Envoy binds its admin socket here; the sidecar connects to it.
    admin_mount: VolumeMount,
}

/// The bootstrap ConfigMap, the admin socket's `emptyDir` and, with xDS TLS, the client Secret.
fn volumes(plan: &Plan<'_>) -> Volumes {
    let admin_mount = VolumeMount {
        name: ADMIN_SOCKET_VOLUME.to_owned(),
        mount_path: ADMIN_SOCKET_DIR.to_owned(),
        ..VolumeMount::default()
    };
    let mut envoy_mounts = vec![
        read_only_mount("bootstrap", BOOTSTRAP_DIR),
        admin_mount.clone(),
    ];
    let mut volumes = vec![
        Volume {
            name: "bootstrap".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: plan.config_map_name.clone(),
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
    if let Some(secret) = &plan.xds_client_secret {
        envoy_mounts.push(read_only_mount("xds-client", XDS_CERTS_DIR));
        volumes.push(Volume {
            name: "xds-client".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                // Readable by the pod's fsGroup only: it holds a private key.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    Volumes {
        volumes,
        envoy_mounts,
        admin_mount,
    }
}

/// Envoy: the bootstrap, a node id per pod, the listeners' ports and the readiness probe.
fn envoy_container(plan: &Plan<'_>, mounts: Vec<VolumeMount>) -> Container {
    let ports = plan.ctx.envoy_ports;
    // Envoy exits at once on SIGTERM: its container waits out the drain (the Envoy image need
    // not hold a shell or any tool). A zero drain time needs no wait.
    let wait_for_drain = (plan.drain_seconds > 0).then(|| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: plan.drain_seconds,
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    });
    Container {
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
            container_port("http", ports.http),
            container_port("https", ports.https),
            container_port("metrics", ports.stats),
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
        resources: plan.gw.spec.envoy.resources.clone(),
        lifecycle: wait_for_drain,
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// The sidecar: waits for SIGTERM; it exists so that the drain (its preStop `exec` of the
/// operator binary) has a container to run in. Nothing listens for the drain on the network.
fn shutdown_manager_container(plan: &Plan<'_>, admin_mount: VolumeMount) -> Container {
    let drain = Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    SLUICE_BINARY.to_owned(),
                    "shutdown-manager".to_owned(),
                    "drain".to_owned(),
                    format!("--admin-socket={DEFAULT_ADMIN_SOCKET}"),
                    format!("--stats-port={}", plan.ctx.envoy_ports.stats),
                    format!("--drain-seconds={}", plan.drain_seconds),
                ]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    };
    Container {
        name: SHUTDOWN_MANAGER_CONTAINER.to_owned(),
        image: Some(plan.sidecar_image.clone()),
        args: Some(vec!["shutdown-manager".to_owned()]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".to_owned())),
                ("memory".to_owned(), Quantity("16Mi".to_owned())),
            ])),
            ..ResourceRequirements::default()
        }),
        lifecycle: Some(drain),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![admin_mount]),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// Non-root, with the user, group and fsGroup `run_as_user` (unset: `auto`, the platform picks
/// them, as OpenShift's restricted-v2 SCC does); the runtime's default seccomp profile.
fn pod_security_context(run_as_user: Option<i64>) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user,
        run_as_group: run_as_user,
        fs_group: run_as_user,
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
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

/// An environment variable from a field of the pod.
fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(port),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}
