//! Where Envoy pods pull their images from, and which user they run as: the operator's defaults
//! (`sluice run --default-envoy-image`, `--image-registry`, `--envoy-image-pull-secrets`,
//! `--envoy-run-as-user`) and the Gateway fields that override them (`spec.envoy.image`,
//! `imageRegistry`, `imagePullSecrets`, `runAsUser`).
//!
//! A registry override replaces the registry host (and keeps the repository path, tag and
//! digest) of both images of an Envoy pod: Envoy's and the `shutdown-manager` sidecar's (the
//! operator's own image). Pull secrets are names of Secrets in the Gateway's namespace; the
//! operator only references them, it never copies or creates them.

/// The user Envoy pods run as when neither the Gateway nor `--envoy-run-as-user` says otherwise
/// (`nobody`). The Envoy image's default user is root, which `runAsNonRoot` refuses.
pub const DEFAULT_RUN_AS_USER: i64 = 65_534;

/// `--envoy-run-as-user` value that sets no user ID, for platforms that assign one (OpenShift's
/// `restricted-v2` SCC).
pub const RUN_AS_USER_AUTO: &str = "auto";

/// Highest user ID accepted (Linux user IDs are 32-bit; Kubernetes keeps them below 2^31).
pub const MAX_USER_ID: i64 = 2_147_483_647;

/// The value of `--envoy-run-as-user`: a user ID, or `None` for [`RUN_AS_USER_AUTO`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAsUser(pub Option<i64>);

/// Parses `--envoy-run-as-user`: a user ID from 1 to [`MAX_USER_ID`], or [`RUN_AS_USER_AUTO`]
/// (`None`: the pods set no `runAsUser`, `runAsGroup` or `fsGroup`).
pub fn parse_run_as_user(s: &str) -> Result<RunAsUser, String> {
    if s == RUN_AS_USER_AUTO {
        return Ok(RunAsUser(None));
    }
    match s.parse::<i64>() {
        Ok(id) if (1..=MAX_USER_ID).contains(&id) => Ok(RunAsUser(Some(id))),
        _ => Err(format!(
            "expected a user ID from 1 to {MAX_USER_ID}, or {RUN_AS_USER_AUTO:?}"
        )),
    }
}

/// A plausible registry override: a host with an optional port and path (`registry.example.com`,
/// `mirror.local:5000/dockerhub`), no scheme, whitespace, tag or digest.
pub fn is_registry(s: &str) -> bool {
    let host = s.split('/').next().unwrap_or_default();
    !s.is_empty()
        && !host.is_empty()
        && !s.contains("//")
        && !s.starts_with(['-', '.', ':'])
        && !s.ends_with('/')
        && !s.contains('@')
        && !s
            .split('/')
            .skip(1)
            .any(|part| part.is_empty() || part.contains(':'))
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `image` with its registry replaced by `registry`: `docker.io/envoyproxy/envoy:v1.40.0` with
/// `registry.example.com` gives `registry.example.com/envoyproxy/envoy:v1.40.0`. An image
/// without a registry (`envoyproxy/envoy:v1.40.0`, Docker Hub's) gets `registry` prepended.
pub fn with_registry(image: &str, registry: &str) -> String {
    // As in Docker's reference grammar: the first component is a registry when it has a `.` or
    // a `:` or is `localhost`, and there is more than one component.
    let path = match image.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.is_empty() =>
        {
            rest
        }
        _ => image,
    };
    format!("{}/{path}", registry.trim_end_matches('/'))
}

/// A valid Secret name (DNS-1123 subdomain).
pub fn is_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::api::Gateway;
    use crate::provision::fixtures::{ctx, gateway};
    use crate::provision::objects::{ENVOY_CONTAINER, SHUTDOWN_MANAGER_CONTAINER};
    use crate::provision::{ProvisionContext, ProvisionError, desired};
    use k8s_openapi::api::core::v1::{LocalObjectReference, PodSpec};

    fn pod(gw: &Gateway, c: &ProvisionContext) -> PodSpec {
        let d = desired(gw, c, None).unwrap();
        d.daemon_set.spec.unwrap().template.spec.unwrap()
    }

    fn image(p: &PodSpec, container: &str) -> String {
        let c = p.containers.iter().find(|c| c.name == container).unwrap();
        c.image.clone().unwrap()
    }

    fn secrets(p: &PodSpec) -> Vec<String> {
        let refs = p.image_pull_secrets.clone().unwrap_or_default();
        refs.into_iter().map(|r| r.name).collect()
    }

    fn refs(names: &[&str]) -> Option<Vec<LocalObjectReference>> {
        let r = |n: &&str| LocalObjectReference {
            name: (*n).to_owned(),
        };
        Some(names.iter().map(r).collect())
    }

    /// Operator defaults: the default Envoy image, a registry, two pull secrets, no user ID.
    fn defaults() -> ProvisionContext {
        let mut c = ctx();
        c.default_envoy_image = "docker.io/envoyproxy/envoy:v1.40.9".to_owned();
        c.image_registry = Some("mirror.example.com".to_owned());
        c.envoy_image_pull_secrets = vec!["mirror-a".to_owned(), "mirror-b".to_owned()];
        c.envoy_run_as_user = None;
        c
    }

    #[test]
    fn without_options_images_are_pulled_as_named_without_secrets() {
        let p = pod(&gateway("team-a", "gw"), &ctx());
        assert_eq!(
            image(&p, ENVOY_CONTAINER),
            "docker.io/envoyproxy/envoy:v1.40.0"
        );
        assert_eq!(
            image(&p, SHUTDOWN_MANAGER_CONTAINER),
            "ghcr.io/sluice/sluice:test"
        );
        assert_eq!(p.image_pull_secrets, None);
        let sc = p.security_context.unwrap();
        assert_eq!(sc.run_as_user, Some(DEFAULT_RUN_AS_USER));
        assert_eq!(sc.fs_group, Some(DEFAULT_RUN_AS_USER));
    }

    #[test]
    fn operator_defaults_reach_the_envoy_pods() {
        let p = pod(&gateway("team-a", "gw"), &defaults());
        // The registry override applies to both images.
        assert_eq!(
            image(&p, ENVOY_CONTAINER),
            "mirror.example.com/envoyproxy/envoy:v1.40.9"
        );
        assert_eq!(
            image(&p, SHUTDOWN_MANAGER_CONTAINER),
            "mirror.example.com/sluice/sluice:test"
        );
        assert_eq!(secrets(&p), ["mirror-a", "mirror-b"]);
        // No user ID: runAsUser, runAsGroup and fsGroup are left to the platform (OpenShift);
        // the rest of the restricted profile stays.
        let sc = p.security_context.clone().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            (sc.run_as_user, sc.run_as_group, sc.fs_group),
            (None, None, None)
        );
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        for c in &p.containers {
            let sc = c.security_context.clone().unwrap();
            assert_eq!(sc.run_as_user, None, "{}", c.name);
            assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(
                sc.capabilities.unwrap().drop.unwrap(),
                ["ALL"],
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn gateway_values_win_over_operator_defaults() {
        let mut gw = gateway("team-a", "gw").with_image("envoyproxy/envoy:v1.41.0");
        gw.spec.envoy.image_registry = Some("registry.team-a.example:5000/hub".to_owned());
        gw.spec.envoy.image_pull_secrets = refs(&["team-a-pull"]);
        gw.spec.envoy.run_as_user = Some(1_000_650_000);
        let p = pod(&gw, &defaults());
        assert_eq!(
            image(&p, ENVOY_CONTAINER),
            "registry.team-a.example:5000/hub/envoyproxy/envoy:v1.41.0"
        );
        assert_eq!(
            image(&p, SHUTDOWN_MANAGER_CONTAINER),
            "registry.team-a.example:5000/hub/sluice/sluice:test"
        );
        assert_eq!(secrets(&p), ["team-a-pull"]);
        let sc = p.security_context.unwrap();
        assert_eq!(sc.run_as_user, Some(1_000_650_000));
        assert_eq!(sc.fs_group, Some(1_000_650_000));

        // An empty list turns the operator's pull secrets off.
        let mut gw = gateway("team-a", "gw");
        gw.spec.envoy.image_pull_secrets = refs(&[]);
        assert_eq!(pod(&gw, &defaults()).image_pull_secrets, None);
    }

    #[test]
    fn invalid_values_are_reported() {
        let mut gw = gateway("team-a", "gw");
        gw.spec.envoy.image_registry = Some("https://registry.example.com".to_owned());
        let err = desired(&gw, &ctx(), None).unwrap_err();
        assert!(
            matches!(
                err,
                ProvisionError::InvalidSpec {
                    field: "spec.envoy.imageRegistry",
                    ..
                }
            ),
            "{err}"
        );
        let mut gw = gateway("team-a", "gw");
        gw.spec.envoy.image_pull_secrets = refs(&["Not_A_Name"]);
        let err = desired(&gw, &ctx(), None).unwrap_err();
        assert!(
            matches!(
                err,
                ProvisionError::InvalidSpec {
                    field: "spec.envoy.imagePullSecrets",
                    ..
                }
            ),
            "{err}"
        );
        let mut gw = gateway("team-a", "gw");
        gw.spec.envoy.run_as_user = Some(0);
        let err = desired(&gw, &ctx(), None).unwrap_err();
        assert!(
            matches!(
                err,
                ProvisionError::InvalidSpec {
                    field: "spec.envoy.runAsUser",
                    ..
                }
            ),
            "{err}"
        );
        let mut c = ctx();
        c.image_registry = Some(String::new());
        let err = desired(&gateway("team-a", "gw"), &c, None).unwrap_err();
        assert_eq!(err.label(), "invalid_context");
    }

    #[test]
    fn registry_replaces_the_host_and_keeps_the_rest() {
        let r = "registry.example.com";
        for (image, want) in [
            (
                "docker.io/envoyproxy/envoy:v1.40.0",
                "registry.example.com/envoyproxy/envoy:v1.40.0",
            ),
            (
                "envoyproxy/envoy:v1.40.0",
                "registry.example.com/envoyproxy/envoy:v1.40.0",
            ),
            ("envoy", "registry.example.com/envoy"),
            (
                "ghcr.io/sluice-dev/sluice@sha256:abcd",
                "registry.example.com/sluice-dev/sluice@sha256:abcd",
            ),
            ("localhost/sluice:dev", "registry.example.com/sluice:dev"),
            ("mirror.local:5000/a/b:1", "registry.example.com/a/b:1"),
        ] {
            assert_eq!(with_registry(image, r), want, "{image}");
        }
        assert_eq!(
            with_registry("docker.io/envoyproxy/envoy:v1", "mirror.local:5000/hub/"),
            "mirror.local:5000/hub/envoyproxy/envoy:v1"
        );
    }

    #[test]
    fn registry_overrides_are_checked() {
        for ok in [
            "registry.example.com",
            "mirror.local:5000",
            "mirror.local:5000/dockerhub",
        ] {
            assert!(is_registry(ok), "{ok}");
        }
        for bad in [
            "",
            "/x",
            "https://registry.example.com",
            "registry.example.com/",
            "reg istry",
            "registry.example.com/envoy:v1",
            "registry.example.com/envoy@sha256:ab",
            "-x",
        ] {
            assert!(!is_registry(bad), "{bad:?}");
        }
    }

    #[test]
    fn run_as_user_flag() {
        assert_eq!(parse_run_as_user("65534"), Ok(RunAsUser(Some(65_534))));
        assert_eq!(parse_run_as_user("auto"), Ok(RunAsUser(None)));
        for bad in ["0", "-1", "", "nobody", "2147483648"] {
            assert!(parse_run_as_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("registry-creds"));
        assert!(is_secret_name("a.b-c"));
        for bad in ["", "Registry", "a_b", "-a", "a..b", "a/b"] {
            assert!(!is_secret_name(bad), "{bad:?}");
        }
    }
}
