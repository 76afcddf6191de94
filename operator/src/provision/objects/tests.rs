//! Tests of the desired objects of a Gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::api::gateway::ExternalTrafficPolicy;
use crate::api::gateway::PublishingType;
use crate::provision::fixtures::{ctx, gateway};
use crate::provision::names::sha256_hex;
use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, ExecAction, LifecycleHandler, PodSpec, ResourceRequirements,
    ServiceSpec, SleepAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pretty_assertions::assert_eq;
use serde_json::Value;
use std::path::Path;

fn objects(gw: &Gateway) -> DesiredObjects {
    desired(gw, &ctx(), None).unwrap()
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
    let d = desired(&gateway("team-a", "gw"), &c, None).unwrap();
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
    let ts = &bootstrap(&d)["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
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
    let after = desired(&gw, &c, None).unwrap();
    assert_ne!(before.bootstrap_hash, after.bootstrap_hash);
    let mut patched = as_json(&after);
    patched["ds"]["spec"]["template"]["metadata"]["annotations"][ANNOTATION_BOOTSTRAP_HASH] =
        before.bootstrap_hash.clone().into();
    patched["cm"] = as_json(&before)["cm"].clone();
    assert_eq!(patched, as_json(&before));
}

#[test]
fn the_xds_client_hash_goes_into_the_pod_template_and_nowhere_else() {
    let gw = gateway("team-a", "gw");
    let without = objects(&gw);
    let annotations = |d: &DesiredObjects| {
        d.daemon_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .clone()
            .unwrap()
    };
    assert!(!annotations(&without).contains_key(ANNOTATION_XDS_CLIENT_HASH));
    let with = desired(&gw, &ctx(), Some("abc123")).unwrap();
    assert_eq!(
        annotations(&with)
            .get(ANNOTATION_XDS_CLIENT_HASH)
            .map(String::as_str),
        Some("abc123")
    );
    let mut patched = as_json(&with);
    patched["ds"]["spec"]["template"]["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove(ANNOTATION_XDS_CLIENT_HASH);
    assert_eq!(patched, as_json(&without));
}

#[test]
fn envoy_ports_from_the_context_reach_pods_service_and_bootstrap() {
    let mut c = ctx();
    c.envoy_ports = EnvoyPorts {
        http: 18_080,
        https: 18_443,
        stats: 18_002,
    };
    let d = desired(&gateway("team-a", "gw"), &c, None).unwrap();
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
        let err = desired(&gateway("team-a", "gw"), &bad, None).unwrap_err();
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
    let err = desired(gw, &ctx(), None).unwrap_err();
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
    let err = desired(&gw, &ctx(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Gateway team-a/gw: metadata.uid is missing"
    );

    let mut c = ctx();
    c.operator_image = String::new();
    let err = desired(&gateway("team-a", "gw"), &c, None).unwrap_err();
    assert_eq!(err.label(), "invalid_context");
}

// --- the bootstrap in the ConfigMap is accepted by the real Envoy ---

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
    // The workspace's one launcher: `SLUICE_ENVOY`, else `envoy` on PATH.
    if let Err(e) = sluice_e2e::envoy::validate_args_blocking("the provisioned bootstrap", &args) {
        panic!("envoy --mode validate {args:?}: {e}");
    }
}

#[test]
fn bootstrap_passes_envoy_validate() {
    let dir = tempfile::tempdir().unwrap();
    let d = objects(&gateway("team-a", "gw").with_log_level("warning"));
    let path = dir.path().join(BOOTSTRAP_KEY);
    std::fs::write(&path, &d.config_map.data.as_ref().unwrap()[BOOTSTRAP_KEY]).unwrap();
    envoy_validate(&d, &path);
}

#[test]
fn bootstrap_with_xds_tls_passes_envoy_validate() {
    let dir = tempfile::tempdir().unwrap();
    // Envoy loads the files while validating: make real ones where the Secret would be.
    let now = std::time::SystemTime::now();
    let ca = crate::pki::identity::CertificateAuthority::generate(now).unwrap();
    let client = ca
        .issue_gateway(&crate::snapshot::ObjKey::new("team-a", "gw"), now)
        .unwrap();
    for (key, pem) in [
        (XDS_CA_KEY, ca.cert_pem()),
        (XDS_CERT_KEY, client.cert_pem.as_str()),
        (XDS_KEY_KEY, client.key_pem.as_str()),
    ] {
        std::fs::write(dir.path().join(key), pem).unwrap();
    }

    let mut c = ctx();
    c.xds_tls = true;
    let d = desired(&gateway("team-a", "gw"), &c, None).unwrap();
    let text = d.config_map.data.as_ref().unwrap()[BOOTSTRAP_KEY]
        .replace(XDS_CERTS_DIR, dir.path().to_str().unwrap());
    assert_ne!(&text, &d.config_map.data.as_ref().unwrap()[BOOTSTRAP_KEY]);
    let path = dir.path().join(BOOTSTRAP_KEY);
    std::fs::write(&path, text).unwrap();
    envoy_validate(&d, &path);
}
