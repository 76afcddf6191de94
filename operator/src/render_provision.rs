//! `sluice render --provision`: the Kubernetes objects `sluice run` would apply for each Gateway
//! of a manifest directory, as YAML, offline, for review and diffs in GitOps repositories.
//!
//! The objects come from [`provision::desired`], the operator's own builder: this module only
//! fills in what an offline run lacks and prints. What the operator makes at run time from
//! cluster state is left out and said so in a YAML comment before each Gateway's objects:
//! - the xDS client credentials Secret (`<gateway>-xds-client`): its certificate is issued by
//!   the operator's CA, which lives in the cluster;
//! - the pod template annotation hashing those credentials (it rolls the pods on renewal);
//! - the Gateway's `metadata.uid` in owner references, unless the manifest carries one: a
//!   placeholder ([`PLACEHOLDER_UID`]) stands in for it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::api::Gateway;
use crate::provision::{self, ProvisionContext, ProvisionError};
use crate::snapshot::ClusterSnapshot;

/// Owner-reference uid of Gateways whose manifest has none (the API server assigns one).
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// The flags of `sluice run` that shape provisioned objects, with the same defaults.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "With --provision (as for `sluice run`)")]
pub struct ProvisionFlags {
    /// The operator's image (runs Envoy's shutdown-manager sidecar).
    #[arg(long, default_value = "ghcr.io/sluice-dev/sluice:latest")]
    pub operator_image: String,
    /// Namespace the operator runs in (names its xDS Service).
    #[arg(long, default_value = "sluice-system")]
    pub namespace: String,
    /// Address Envoys use to reach the xDS server (default: sluice-xds.NAMESPACE.svc:8001).
    #[arg(long)]
    pub xds_service_address: Option<String>,
    /// Envoy image of Gateways that set no spec.envoy.image.
    #[arg(long, default_value = crate::api::gateway::DEFAULT_ENVOY_IMAGE)]
    pub default_envoy_image: String,
    /// Registry to pull both images of Envoy pods from.
    #[arg(long, value_name = "REGISTRY")]
    pub image_registry: Option<String>,
    /// Image pull secrets of Envoy pods (comma-separated or repeated).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub envoy_image_pull_secrets: Vec<String>,
    /// User ID Envoy pods run as, or `auto`.
    #[arg(
        long,
        value_name = "UID|auto",
        value_parser = crate::provision::images::parse_run_as_user,
        default_value = "65534"
    )]
    pub envoy_run_as_user: crate::provision::images::RunAsUser,
    /// Objects of an operator serving xDS without TLS (no client credentials mounted).
    #[arg(long)]
    pub insecure_xds: bool,
    /// Ports Envoy's listeners use inside its pods.
    #[arg(long, default_value_t = crate::provision::objects::ENVOY_HTTP_PORT)]
    pub envoy_http_port: u16,
    #[arg(long, default_value_t = crate::provision::objects::ENVOY_HTTPS_PORT)]
    pub envoy_https_port: u16,
    #[arg(long, default_value_t = crate::provision::objects::ENVOY_HEALTH_PORT)]
    pub envoy_stats_port: u16,
}

impl ProvisionFlags {
    /// The provisioning context `sluice run` builds from the same flags.
    pub fn context(&self) -> anyhow::Result<ProvisionContext> {
        let address = self
            .xds_service_address
            .clone()
            .unwrap_or_else(|| format!("sluice-xds.{}.svc:8001", self.namespace));
        let (host, port) = crate::cli::split_host_port(&address).ok_or_else(|| {
            anyhow::anyhow!("--xds-service-address {address:?}: expected HOST:PORT")
        })?;
        let mut ctx = ProvisionContext::new(self.operator_image.clone(), host, port);
        ctx.xds_tls = !self.insecure_xds;
        ctx.default_envoy_image
            .clone_from(&self.default_envoy_image);
        ctx.image_registry = self.image_registry.clone().filter(|r| !r.is_empty());
        ctx.envoy_image_pull_secrets = self
            .envoy_image_pull_secrets
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect();
        ctx.envoy_run_as_user = self.envoy_run_as_user.0;
        ctx.envoy_ports = crate::provision::objects::EnvoyPorts {
            http: self.envoy_http_port,
            https: self.envoy_https_port,
            stats: self.envoy_stats_port,
        };
        Ok(ctx)
    }
}

/// The YAML stream of every Gateway's objects (Gateways in namespace/name order), and the
/// Gateways that cannot be provisioned (also named in a comment of the stream). Pure.
pub fn provision_yaml(
    snapshot: &ClusterSnapshot,
    ctx: &ProvisionContext,
) -> (String, Vec<ProvisionError>) {
    let mut out = String::from(
        "# Objects `sluice run` would apply (server-side apply, field manager \"sluice\") for \
         each Gateway.\n# No Role or RoleBinding: Envoy pods never call the Kubernetes API, so \
         their ServiceAccount has no rights and mounts no token.\n",
    );
    let mut errors = Vec::new();
    for (key, gw) in &snapshot.gateways {
        let mut gw: Gateway = (**gw).clone();
        let placeholder_uid = gw.metadata.uid.as_deref().is_none_or(str::is_empty);
        if placeholder_uid {
            gw.metadata.uid = Some(PLACEHOLDER_UID.to_owned());
        }
        let desired = match provision::desired(&gw, ctx, None) {
            Ok(d) => d,
            Err(e) => {
                let _ = writeln!(out, "---\n# Gateway {key}: not provisioned: {e}");
                errors.push(e);
                continue;
            }
        };
        let _ = writeln!(out, "---\n# Gateway {key}");
        if let Some(secret) = &desired.xds_client_secret {
            let _ = writeln!(
                out,
                "# Left out: Secret {ns}/{secret} (the Envoys' xDS client certificate and key, \
                 issued at run time by the operator's CA), and the DaemonSet's pod template \
                 annotation {annotation} (a hash of that Secret).",
                ns = key.namespace,
                annotation = crate::controller::gateway::ANNOTATION_XDS_CLIENT_HASH,
            );
        }
        if placeholder_uid {
            let _ = writeln!(
                out,
                "# Placeholder: ownerReferences[0].uid {PLACEHOLDER_UID} (the Gateway's \
                 metadata.uid, assigned by the API server)."
            );
        }
        push_doc(&mut out, &desired.service_account, true);
        push_doc(&mut out, &desired.config_map, false);
        push_doc(&mut out, &desired.daemon_set, false);
        push_doc(&mut out, &desired.service, false);
    }
    (out, errors)
}

/// Appends one YAML document; `first`: it shares the `---` of its comment header.
fn push_doc(out: &mut String, obj: &impl Serialize, first: bool) {
    if !first {
        out.push_str("---\n");
    }
    match serde_norway::to_string(obj) {
        Ok(yaml) => out.push_str(&yaml),
        // Typed Kubernetes objects always serialize; say so rather than drop one silently.
        Err(e) => {
            let _ = writeln!(out, "# cannot print this object: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::snapshot::Object;

    fn docs(yaml: &str) -> Vec<serde_json::Value> {
        serde_norway::Deserializer::from_str(yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &serde_json::Value| !v.is_null())
            .collect()
    }

    #[test]
    fn prints_what_desired_builds_for_each_gateway() {
        let mut snap = ClusterSnapshot::default();
        let mut with_uid = crate::provision::fixtures::gateway("team-a", "edge");
        with_uid.metadata.uid = Some("a-real-uid".into());
        let mut without_uid = crate::provision::fixtures::gateway("team-b", "edge");
        without_uid.metadata.uid = None;
        snap.apply(Object::Gateway(with_uid.clone()));
        snap.apply(Object::Gateway(without_uid.clone()));
        let mut ctx = crate::provision::fixtures::ctx();
        ctx.xds_tls = true;

        let (yaml, errors) = provision_yaml(&snap, &ctx);
        assert!(errors.is_empty(), "{errors:?}");
        let printed = docs(&yaml);
        let kinds: Vec<&str> = printed
            .iter()
            .map(|d| d["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "ConfigMap",
                "DaemonSet",
                "Service",
                "ServiceAccount",
                "ConfigMap",
                "DaemonSet",
                "Service"
            ]
        );
        // Exactly the operator's objects, apiVersion and kind included.
        let d = provision::desired(&with_uid, &ctx, None).unwrap();
        let want = [
            serde_json::to_value(&d.service_account).unwrap(),
            serde_json::to_value(&d.config_map).unwrap(),
            serde_json::to_value(&d.daemon_set).unwrap(),
            serde_json::to_value(&d.service).unwrap(),
        ];
        assert_eq!(printed[..4], want);
        assert_eq!(printed[0]["apiVersion"], "v1");
        assert_eq!(printed[2]["apiVersion"], "apps/v1");
        assert_eq!(
            printed[4]["metadata"]["ownerReferences"][0]["uid"],
            PLACEHOLDER_UID
        );
        assert_eq!(
            printed[0]["metadata"]["ownerReferences"][0]["uid"],
            "a-real-uid"
        );
        // What is left out is said.
        assert!(
            yaml.contains("# Left out: Secret team-a/edge-xds-client"),
            "{yaml}"
        );
        assert!(yaml.contains(crate::controller::gateway::ANNOTATION_XDS_CLIENT_HASH));
        assert!(yaml.contains("# Placeholder: ownerReferences[0].uid"));

        // Without xDS TLS nothing is left out.
        ctx.xds_tls = false;
        let (yaml, _) = provision_yaml(&snap, &ctx);
        assert!(!yaml.contains("Left out"), "{yaml}");
    }

    #[test]
    fn an_invalid_gateway_is_named_and_the_others_printed() {
        let mut snap = ClusterSnapshot::default();
        let good = crate::provision::fixtures::gateway("team-a", "good");
        let bad = crate::provision::fixtures::gateway("team-a", "bad").with_log_level("loud");
        snap.apply(Object::Gateway(good));
        snap.apply(Object::Gateway(bad));
        let (yaml, errors) = provision_yaml(&snap, &crate::provision::fixtures::ctx());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            yaml.contains("# Gateway team-a/bad: not provisioned:"),
            "{yaml}"
        );
        assert_eq!(docs(&yaml).len(), 4);
    }

    #[test]
    fn flags_default_like_sluice_run() {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            flags: ProvisionFlags,
        }
        let flags = <P as clap::Parser>::try_parse_from(["p"]).unwrap().flags;
        let ctx = flags.context().unwrap();
        assert_eq!(ctx.xds_host, "sluice-xds.sluice-system.svc");
        assert_eq!(ctx.xds_port, 8001);
        assert!(ctx.xds_tls);
        assert_eq!(ctx.envoy_run_as_user, Some(65_534));
        let run = match <crate::cli::Cli as clap::Parser>::try_parse_from(["sluice", "run"])
            .unwrap()
            .command
        {
            crate::cli::Command::Run(args) => args,
            other => panic!("{other:?}"),
        };
        assert_eq!(flags.operator_image, run.operator_image);
        assert_eq!(flags.default_envoy_image, run.default_envoy_image);
        assert_eq!(flags.envoy_run_as_user.0, run.envoy_run_as_user.0);
        assert_eq!(
            [
                flags.envoy_http_port,
                flags.envoy_https_port,
                flags.envoy_stats_port
            ],
            [
                run.envoy_http_port,
                run.envoy_https_port,
                run.envoy_stats_port
            ]
        );
    }
}
