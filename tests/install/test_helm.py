"""config/helm/sluice: Helm's own linter, and `helm template` output validated as Kubernetes
objects (with the real Helm library, see helm.py)."""

from __future__ import annotations

import pathlib
import shutil

import pytest
import yaml

import helm
from conftest import (
    CHART,
    CRDS,
    ROOT,
    cli_default,
    kustomize,
    load_docs,
    rule_grants,
    rust_const,
    validate_builtin,
    validate_custom,
    workspace_version,
)

EVERYTHING = {
    "image": {"repository": "registry.example.com/sluice", "tag": "dev-1", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry"}],
    "replicas": 3,
    "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
    "logFormat": "text",
    "logLevel": "sluice=debug,info",
    "xds": {"port": 18001},
    "metrics": {"port": 9100, "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}}},
    "podAnnotations": {"example.com/a": "b"},
    "podLabels": {"team": "platform"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "infra", "operator": "Exists"}]}]}}},
    "priorityClassName": "system-cluster-critical",
    "securityContext": {"runAsUser": 1000, "runAsGroup": 1001},
    "envoy": {
        "defaultImage": "registry.example.com/envoy:v1.41.0",
        "imageRegistry": "mirror.example.com:5000/hub",
        "imagePullSecrets": [{"name": "mirror-a"}, {"name": "mirror-b"}],
        "runAsUser": 1000650000,
    },
}


@pytest.fixture(scope="module")
def default() -> helm.Rendered:
    return helm.template(CHART)


@pytest.fixture(scope="module")
def everything() -> helm.Rendered:
    return helm.template(CHART, EVERYTHING, namespace="ingress")


def test_helm_lint_is_clean():
    messages = helm.lint(CHART)
    # Info messages (the chart has no icon URL) are fine; warnings and errors are not.
    assert [m for m in messages if m[0] not in ("info",)] == [], (
        f"helm lint reported {messages} (severity, file); run `helm lint --strict {CHART}` for the texts"
    )


def test_helm_lint_catches_a_broken_chart(tmp_path):
    """The linter above really lints (a template error and values against the schema)."""
    broken = tmp_path / "sluice"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("{{ .Values.missing.key }}\n")
    values = yaml.safe_load((broken / "values.yaml").read_text())
    values["replicas"] = "two"
    (broken / "values.yaml").write_text(yaml.safe_dump(values))
    messages = helm.lint(broken)
    assert ("error", "templates/") in messages
    assert ("error", "values.yaml") in messages


def validate_all(rendered: helm.Rendered) -> list[str]:
    skipped = []
    for obj in rendered.manifest:
        if obj["kind"] == "ServiceMonitor":
            # A Prometheus Operator CRD: kubernetes-validate only knows built-in kinds. Its
            # shape is checked in test_service_monitor.
            skipped.append(obj["kind"])
            continue
        validate_builtin(obj)
    return skipped


def test_default_render_is_valid_kubernetes(default):
    assert validate_all(default) == []
    kinds = sorted(o["kind"] for o in default.manifest)
    assert kinds == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Service", "Deployment",
         "PodDisruptionBudget", "PriorityClass"]
    )  # fmt: skip


def test_render_with_every_value_is_valid_kubernetes(everything):
    assert validate_all(everything) == ["ServiceMonitor"]


def test_crds_are_installed_from_the_chart_and_equal_crds_dir(default):
    assert (CHART / "crds" / "sluice-crds.yaml").read_text() == CRDS.read_text(), (
        "config/helm/sluice/crds/sluice-crds.yaml differs from crds/sluice-crds.yaml: run `make crds`"
    )
    created = [o for o in default.created if o["kind"] == "CustomResourceDefinition"]
    by_name = lambda o: o["metadata"]["name"]  # noqa: E731
    assert sorted(created, key=by_name) == sorted(load_docs(CRDS), key=by_name)
    # Helm creates the CRDs before anything else.
    assert [o["kind"] for o in default.created[: len(created)]] == ["CustomResourceDefinition"] * len(created)


def test_versions_follow_the_workspace(default):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == workspace_version()
    (c,) = default.one("Deployment", "sluice")["spec"]["template"]["spec"]["containers"]
    assert c["image"] == f"ghcr.io/sluice-dev/sluice:{workspace_version()}"


def test_defaults_match_the_kustomize_install(default):
    config = kustomize(ROOT / "config")
    by_kind = lambda objs, kind: [o for o in objs if o["kind"] == kind]  # noqa: E731
    for kind in ("ClusterRole", "Role"):
        (want,) = by_kind(config, kind)
        (got,) = by_kind(default.manifest, kind)
        assert rule_grants(got["rules"]) == rule_grants(want["rules"]), f"{kind} rules differ from config/rbac"
    (want,) = by_kind(config, "Deployment")
    got = default.one("Deployment", "sluice")
    assert got["spec"]["replicas"] == want["spec"]["replicas"]
    wpod, gpod = want["spec"]["template"]["spec"], got["spec"]["template"]["spec"]
    for key in ("securityContext", "affinity", "serviceAccountName", "priorityClassName", "topologySpreadConstraints"):
        assert gpod[key] == wpod[key], key
    for kind, name in (("PodDisruptionBudget", "sluice"), ("PriorityClass", "sluice-operator")):
        (want_obj,) = [o for o in by_kind(config, kind) if o["metadata"]["name"] == name]
        got_obj = default.one(kind, name)
        strip = lambda o: {k: v for k, v in o.items() if k != "metadata"}  # noqa: E731
        assert strip(got_obj) == strip(want_obj), kind
    (wc,), (gc,) = wpod["containers"], gpod["containers"]
    for key in ("image", "ports", "livenessProbe", "readinessProbe", "resources", "securityContext"):
        assert gc[key] == wc[key], key
    assert {e["name"]: e for e in wc["env"]}.items() <= {e["name"]: e for e in gc["env"]}.items()
    for name in ("sluice-xds", "sluice-metrics"):
        (want_svc,) = [o for o in by_kind(config, "Service") if o["metadata"]["name"] == name]
        assert default.one("Service", name)["spec"] == want_svc["spec"]


def test_values_reach_the_objects(everything):
    dep = everything.one("Deployment", "sluice")
    assert dep["metadata"]["namespace"] == "ingress"
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]
    assert pod["metadata"]["annotations"] == EVERYTHING["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    spec = pod["spec"]
    assert spec["affinity"] == EVERYTHING["affinity"]
    assert spec["tolerations"] == EVERYTHING["tolerations"]
    assert spec["nodeSelector"] == EVERYTHING["nodeSelector"]
    assert spec["imagePullSecrets"] == EVERYTHING["imagePullSecrets"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    (c,) = spec["containers"]
    assert c["image"] == "registry.example.com/sluice:dev-1"
    assert c["imagePullPolicy"] == "Always"
    assert c["resources"] == EVERYTHING["resources"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SLUICE_IMAGE"] == "registry.example.com/sluice:dev-1"
    assert env["RUST_LOG"] == "sluice=debug,info"
    assert c["args"] == [
        "run", "--log-format", "text", "--xds-service-address", "sluice-xds.ingress.svc:18001",
        "--default-envoy-image", "registry.example.com/envoy:v1.41.0",
        "--image-registry", "mirror.example.com:5000/hub",
        "--envoy-image-pull-secrets", "mirror-a", "--envoy-image-pull-secrets", "mirror-b",
        "--envoy-run-as-user", "1000650000",
    ]  # fmt: skip
    assert spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["runAsGroup"] == 1001
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert everything.one("Service", "sluice-xds")["spec"]["ports"][0]["port"] == 18001
    assert everything.one("Service", "sluice-metrics")["spec"]["ports"][0]["port"] == 9100
    for kind, name in (("ClusterRoleBinding", "sluice"), ("RoleBinding", "sluice-leader-election")):
        assert everything.one(kind, name)["subjects"][0]["namespace"] == "ingress"


def run_flags(args: list[str]) -> dict[str, list[str]]:
    """`--flag value` pairs of `sluice run` arguments (every flag the chart passes takes a value)."""
    assert args[0] == "run"
    flags: dict[str, list[str]] = {}
    for flag, value in zip(args[1::2], args[2::2]):
        assert flag.startswith("--"), args
        flags.setdefault(flag, []).append(value)
    return flags


def test_envoy_pod_defaults(default):
    """Without values: the operator's default Envoy image and user ID, no registry, no pull
    secrets; the operator's pod sets no user ID (the image's applies, OpenShift assigns one)."""
    pod = default.one("Deployment", "sluice")["spec"]["template"]["spec"]
    flags = run_flags(pod["containers"][0]["args"])
    assert flags["--default-envoy-image"] == [rust_const("operator/src/api/gateway.rs", "DEFAULT_ENVOY_IMAGE")]
    assert flags["--envoy-run-as-user"] == [cli_default("envoy_run_as_user")] == ["65534"]
    assert "--image-registry" not in flags and "--envoy-image-pull-secrets" not in flags
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_openshift_values():
    """What the README tells OpenShift users to set: no user ID for Envoy pods (`auto`)."""
    rendered = helm.template(CHART, {"envoy": {"runAsUser": None}})
    assert validate_all(rendered) == []
    pod = rendered.one("Deployment", "sluice")["spec"]["template"]["spec"]
    assert run_flags(pod["containers"][0]["args"])["--envoy-run-as-user"] == ["auto"]
    assert "runAsUser" not in pod["securityContext"]


def test_every_flag_the_chart_passes_exists(everything):
    text = (ROOT / "operator" / "src" / "cli.rs").read_text(encoding="utf-8")
    run_args = text[text.index("pub struct RunArgs") : text.index("pub struct ShutdownManagerArgs")]
    (c,) = everything.one("Deployment", "sluice")["spec"]["template"]["spec"]["containers"]
    for flag in run_flags(c["args"]):
        assert f"pub {flag[2:].replace('-', '_')}:" in run_args, flag


def test_service_monitor(everything):
    sm = everything.one("ServiceMonitor", "sluice")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    svc = everything.one("Service", "sluice-metrics")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["ingress"]}
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}]
    assert svc["spec"]["ports"][0]["name"] == "metrics"
    # Only this Service matches: the xDS Service has another component label.
    xds = everything.one("Service", "sluice-xds")
    assert not sm["spec"]["selector"]["matchLabels"].items() <= xds["metadata"]["labels"].items()


@pytest.mark.parametrize(
    "values, field",
    [
        ({"replicas": "two"}, "replicas"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "pullPolicy"),
        # Options the operator does not support are rejected rather than silently ignored.
        ({"rbac": {"secretsScope": "namespace"}}, "rbac"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"watchNamespaces": "team-a"}, "watchNamespaces"),
        ({"podDisruptionBudget": {"minAvailable": 0}}, "minAvailable"),
        ({"podDisruptionBudget": {"maxUnavailable": 1}}, "podDisruptionBudget"),
        ({"priorityClass": {"value": 2000000000}}, "value"),
        ({"envoy": {"image": "envoy:1"}}, "envoy"),
        ({"envoy": {"imagePullSecrets": ["registry"]}}, "imagePullSecrets"),
        ({"envoy": {"imagePullSecrets": [{"name": "Registry_1"}]}}, "imagePullSecrets"),
        ({"envoy": {"imageRegistry": "https://registry.example.com"}}, "imageRegistry"),
        ({"envoy": {"runAsUser": 0}}, "runAsUser"),
        ({"envoy": {"runAsUser": "nobody"}}, "runAsUser"),
        ({"securityContext": {"runAsUser": 0}}, "runAsUser"),
        ({"securityContext": {"fsGroup": 1}}, "securityContext"),
    ],
)
def test_schema_rejects_bad_values(values, field):
    with pytest.raises(helm.HelmError, match="schema") as err:
        helm.template(CHART, values)
    assert field in str(err.value)


# Helm gives every chart the parent's `global` values, and a subchart its own section of the
# parent's values plus `global`; both are checked against the subchart's values.schema.json.
GLOBALS = {"imageRegistry": "registry.example.com", "imagePullSecrets": ["registry"], "anything": {"nested": [1, 2]}}


def umbrella(tmp_path: pathlib.Path) -> pathlib.Path:
    """An umbrella chart `platform` that depends on this chart the usual way: declared in its
    Chart.yaml (repository file://) and vendored into charts/, as `helm dependency build` does."""
    parent = tmp_path / "platform"
    (parent / "templates").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "sluice")
    chart = {
        "apiVersion": "v2",
        "name": "platform",
        "version": "1.0.0",
        "dependencies": [
            {"name": "sluice", "version": workspace_version(), "repository": f"file://{CHART}"}
        ],
    }
    (parent / "Chart.yaml").write_text(yaml.safe_dump(chart))
    (parent / "values.yaml").write_text(yaml.safe_dump({"global": {"environment": "test"}}))
    return parent


def test_renders_as_a_subchart_with_global_values(tmp_path):
    values = {"global": GLOBALS, "sluice": {"replicas": 3, "logFormat": "text"}}
    rendered = helm.template(umbrella(tmp_path), values, namespace="platform")
    assert validate_all(rendered) == []
    kinds = sorted(o["kind"] for o in rendered.manifest)
    assert kinds == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Service", "Deployment",
         "PodDisruptionBudget", "PriorityClass"]
    )  # fmt: skip
    # The subchart's values reached it, and its CRDs are installed with it.
    dep = rendered.one("Deployment", "sluice")
    assert dep["metadata"]["namespace"] == "platform"
    assert dep["spec"]["replicas"] == 3
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["args"][:3] == ["run", "--log-format", "text"]
    created = sorted(o["metadata"]["name"] for o in rendered.created if o["kind"] == "CustomResourceDefinition")
    assert created == sorted(d["metadata"]["name"] for d in load_docs(CRDS))


def test_global_values_are_accepted_when_installed_alone():
    rendered = helm.template(CHART, {"global": GLOBALS})
    assert validate_all(rendered) == []


def test_schema_still_rejects_unknown_keys_as_a_subchart(tmp_path):
    with pytest.raises(helm.HelmError, match="schema") as err:
        helm.template(umbrella(tmp_path), {"global": GLOBALS, "sluice": {"watchNamespace": ["a"]}})
    assert "watchNamespace" in str(err.value)


# --- Placement and watched namespaces -----------------------------------------------------------


def test_placement_defaults(default):
    from test_config import placement_problems

    dep = default.one("Deployment", "sluice")
    pdb = default.one("PodDisruptionBudget", "sluice")
    pc = default.one("PriorityClass", "sluice-operator")
    assert placement_problems(dep, pdb, pc) == []


def test_placement_values():
    """One replica: no budget (it would block drains); an existing priority class replaces the
    chart's; explicit spread constraints replace the default, [] removes them."""
    one_replica = helm.template(CHART, {"replicas": 1, "priorityClassName": "infra", "topologySpreadConstraints": []})
    kinds = {o["kind"] for o in one_replica.manifest}
    assert "PodDisruptionBudget" not in kinds and "PriorityClass" not in kinds
    pod = one_replica.one("Deployment", "sluice")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "infra"
    assert "topologySpreadConstraints" not in pod
    spread = [{"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"a": "b"}}}]
    custom = helm.template(CHART, {"replicas": 4, "podDisruptionBudget": {"minAvailable": 3}, "topologySpreadConstraints": spread,
                                   "priorityClass": {"create": False}})  # fmt: skip
    assert validate_all(custom) == []
    assert custom.one("PodDisruptionBudget", "sluice")["spec"]["minAvailable"] == 3
    pod = custom.one("Deployment", "sluice")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == spread
    assert "priorityClassName" not in pod
    assert "PriorityClass" not in {o["kind"] for o in custom.manifest}


def namespaced_rbac_problems(rendered: helm.Rendered, watched: list[str], release_ns: str) -> list[str]:
    """With watchNamespaces: the ClusterRole grants only the CRD reads; each watched namespace has
    a Role bound to the operator with every namespaced grant the cluster-wide install has; the
    release namespace can keep the xDS certificates' Secrets; the operator is told the list."""
    problems = []
    config_rules = rule_grants([o for o in kustomize(ROOT / "config") if o["kind"] == "ClusterRole"][0]["rules"])
    crd_reads = {g for g in config_rules if g[1] == "customresourcedefinitions"}
    namespaced = config_rules - crd_reads
    cluster = rule_grants(rendered.one("ClusterRole", "sluice")["rules"])
    if cluster != crd_reads:
        problems.append(f"the ClusterRole grants more than the CRD reads: {sorted(cluster - crd_reads)}")
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in rendered.manifest if o["kind"] == "Role"}
    bindings = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in rendered.manifest if o["kind"] == "RoleBinding"}
    for ns in watched:
        role, binding = roles.get((ns, "sluice")), bindings.get((ns, "sluice"))
        if role is None or binding is None:
            problems.append(f"no Role and RoleBinding in {ns}")
            continue
        if rule_grants(role["rules"]) != namespaced:
            problems.append(f"the Role in {ns} differs from the cluster-wide rules")
        if binding["roleRef"]["name"] != "sluice" or binding["subjects"] != [
            {"kind": "ServiceAccount", "name": "sluice", "namespace": release_ns}
        ]:
            problems.append(f"the RoleBinding in {ns} does not bind the operator")
    extra = {ns for ns, name in roles if name == "sluice"} - set(watched)
    if extra:
        problems.append(f"Roles in namespaces not watched: {sorted(extra)}")
    pki = roles.get((release_ns, "sluice-xds-certificates"))
    if pki is None or not {("", "secrets", v, "*") for v in ("get", "create", "patch")} <= rule_grants(pki["rules"]):
        problems.append("the release namespace cannot keep the xDS certificates")
    (c,) = rendered.one("Deployment", "sluice")["spec"]["template"]["spec"]["containers"]
    if run_flags(c["args"]).get("--watch-namespaces") != [",".join(watched)]:
        problems.append("the operator is not given --watch-namespaces")
    return problems


def test_watch_namespaces_grants_namespaced_roles():
    watched = ["team-a", "team-b"]
    rendered = helm.template(CHART, {"watchNamespaces": watched}, namespace="ingress")
    assert validate_all(rendered) == []
    assert namespaced_rbac_problems(rendered, watched, "ingress") == []


def test_namespaced_rbac_check_catches_a_cluster_wide_install(default):
    """The check above fails on the default (cluster-wide) render, and on a Role missing a rule."""
    problems = namespaced_rbac_problems(default, ["team-a"], "sluice-system")
    assert any("ClusterRole grants more" in p for p in problems), problems
    assert any("no Role and RoleBinding in team-a" in p for p in problems), problems
    rendered = helm.template(CHART, {"watchNamespaces": ["team-a"]})
    role = rendered.one("Role", "sluice")
    role["rules"] = [r for r in role["rules"] if "secrets" not in r["resources"]]
    assert any("differs" in p for p in namespaced_rbac_problems(rendered, ["team-a"], "sluice-system"))


# --- Chart metadata and README --------------------------------------------------------------


def _chart_readme_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("chart_readme", ROOT / "hack" / "chart-readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_readme_values_table_is_up_to_date():
    gen = _chart_readme_module()
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert readme == gen.render(readme), "config/helm/sluice/README.md is out of date: run `make chart-readme`"


def test_every_value_is_documented_and_no_stale_key():
    gen = _chart_readme_module()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = gen.documented_keys((CHART / "README.md").read_text(encoding="utf-8"))
    # Every top-level key, and nothing that values.yaml does not have.
    assert set(values) <= set(keys)
    for key in keys:
        node = values
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"README documents {key}, which values.yaml lacks"
            node = node[part]
    assert gen.undocumented() == [], "values without a comment in values.yaml"


def test_readme_checks_catch_a_new_undocumented_key(tmp_path):
    gen = _chart_readme_module()
    chart = tmp_path / "sluice"
    shutil.copytree(CHART, chart)
    (chart / "values.yaml").write_text((CHART / "values.yaml").read_text() + "newKey: 1\n")
    readme = (chart / "README.md").read_text(encoding="utf-8")
    assert gen.render(readme, chart) != readme
    assert "newKey" in gen.undocumented(chart)


def test_chart_metadata_for_artifact_hub():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["home"].startswith("https://") and chart["sources"]
    assert chart["icon"].startswith("https://") and chart["icon"].endswith("/olm/icon.svg")
    assert (ROOT / "olm" / "icon.svg").is_file()
    for m in chart["maintainers"]:
        assert m["name"] and "@" in m["email"], m
    notes = chart["annotations"]
    cargo = (ROOT / "Cargo.toml").read_text()
    assert f'license = "{notes["artifacthub.io/license"]}"' in cargo
    assert notes["artifacthub.io/operator"] == "true"
    for link in yaml.safe_load(notes["artifacthub.io/links"]):
        assert link["name"] and link["url"].startswith("https://"), link
    # The images are the chart's defaults.
    images = {i["name"]: i["image"] for i in yaml.safe_load(notes["artifacthub.io/images"])}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert images == {
        "sluice": f"{values['image']['repository']}:{chart['appVersion']}",
        "envoy": values["envoy"]["defaultImage"],
    }
    assert values["envoy"]["defaultImage"] == rust_const("operator/src/api/gateway.rs", "DEFAULT_ENVOY_IMAGE")
    # The CRDs are the chart's own, with their served version.
    crds = load_docs(CHART / "crds" / "sluice-crds.yaml")
    want = {(c["spec"]["names"]["kind"], c["metadata"]["name"], v["name"]) for c in crds for v in c["spec"]["versions"] if v.get("storage")}
    got = {(c["kind"], c["name"], c["version"]) for c in yaml.safe_load(notes["artifacthub.io/crds"])}
    assert got == want
    for example in yaml.safe_load(notes["artifacthub.io/crdsExamples"]):
        validate_custom(example)
