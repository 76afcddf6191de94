"""Dashboards and alerts: config/monitoring (a kustomize component) and the chart's
monitoring.* toggles.

The alerts run through Prometheus' own `promtool` (Debian's `prometheus` package; `make setup`
installs it): `check rules`, and `test rules` with rules_test.yaml, where each alert is seen
firing and not firing. Every dashboard expression is checked by the same PromQL parser (as a
recording rule), and every metric the dashboard and alerts use must be one the operator
exports or one of the Envoy statistics Sluice keeps. The Prometheus Operator objects are
validated against that project's models (cloudcoil-models-prometheus-operator), strictly.
e2e/tests/monitoring.rs then runs a Prometheus server against running Sluice and Envoy.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml

import helm
from conftest import CHART, ROOT, load_docs, rust_const, validate_builtin

try:
    from cloudcoil.models.prometheus_operator import v1 as prometheus_operator
except ImportError as e:  # pragma: no cover - the message is the point
    raise SystemExit("tests/install needs cloudcoil-models-prometheus-operator: run `make setup`") from e

MONITORING = ROOT / "config" / "monitoring"
DASHBOARD = MONITORING / "sluice-dashboard.json"
RULES = MONITORING / "prometheusrule.yaml"
RULES_TEST = pathlib.Path(__file__).parent / "rules_test.yaml"

# The Envoy statistics the dashboard and alerts may use: the ones Envoy's stats inclusion list
# keeps (see the README, "Monitoring"). Labels: envoy_http_conn_manager_prefix,
# envoy_response_code_class, envoy_cluster_name.
ENVOY_METRICS = {
    "envoy_http_downstream_rq_xx",
    "envoy_http_downstream_rq_time",
    "envoy_cluster_upstream_rq_xx",
    "envoy_cluster_upstream_rq_time",
    "envoy_cluster_upstream_cx_active",
    "envoy_cluster_membership_healthy",
    "envoy_server_live",
}
# Series Prometheus makes itself for each target.
PROMETHEUS_METRICS = {"up"}
OPERATOR_SOURCES = [
    ROOT / "operator" / "src" / "metrics.rs",
    ROOT / "operator" / "src" / "xds" / "server" / "metrics.rs",
]

# What the dashboard's variables become when an expression is checked outside Grafana.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$gateway": ".*"}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run `make setup` (installs Debian's prometheus package)"
    return path


def rules_spec() -> dict:
    (rule,) = load_docs(RULES)
    return rule["spec"]


def alerts() -> list[dict]:
    return [r for g in rules_spec()["groups"] for r in g["rules"] if "alert" in r]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def operator_metrics() -> set[str]:
    names = set()
    for source in OPERATOR_SOURCES:
        names |= set(re.findall(r'"(sluice_[a-z_]+)"', source.read_text(encoding="utf-8")))
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (histogram and summary suffixes removed)."""
    # Label names: in selectors ({...}) and grouping clauses, dropped first.
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    names = set(re.findall(r"\b((?:sluice|envoy)_[a-z_]+|up)\b(?!\s*\()", bare))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def substitute(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a Grafana variable this check does not know: {expr}"
    return expr


def run_promtool(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- alerts ----------------------------------------------------------------------------------


def test_rules_pass_promtool_check(tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules_spec()))
    out = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


def test_promtool_check_catches_a_broken_rule(tmp_path):
    spec = rules_spec()
    spec["groups"][0]["rules"][0]["expr"] = "sum by (gateway (sluice_xds_nacks_total)"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    assert run_promtool("check", "rules", "rules.yaml", cwd=tmp_path).returncode != 0


def unit_tests(tmp_path: pathlib.Path, spec: dict) -> subprocess.CompletedProcess:
    (tmp_path / "sluice-rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copyfile(RULES_TEST, tmp_path / "rules_test.yaml")
    return run_promtool("test", "rules", "rules_test.yaml", cwd=tmp_path)


def test_alert_unit_tests_pass(tmp_path):
    out = unit_tests(tmp_path, rules_spec())
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_unit_tests_catch_a_changed_threshold(tmp_path):
    spec = rules_spec()
    (rule,) = [r for r in spec["groups"][0]["rules"] if r.get("alert") == "SluiceXdsCertificateExpiringSoon"]
    rule["expr"] = rule["expr"].replace("14 * 86400", "2 * 86400")
    out = unit_tests(tmp_path, spec)
    assert out.returncode != 0 and "SluiceXdsCertificateExpiringSoon" in out.stdout + out.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    tests = yaml.safe_load(RULES_TEST.read_text(encoding="utf-8"))
    assert tests["rule_files"] == ["sluice-rules.yaml"]
    cases = [c for t in tests["tests"] for c in t.get("alert_rule_test", [])]
    for alert in alerts():
        name = alert["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no test where it does not fire"
    assert {c["alertname"] for c in cases} <= {a["alert"] for a in alerts()}


def test_alerts_are_described():
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for alert in alerts():
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]
        assert f"`{alert['alert']}`" in readme, f"README does not describe {alert['alert']}"


# --- dashboard -------------------------------------------------------------------------------


def test_dashboard_is_well_formed():
    d = dashboard()
    assert d["uid"] == "sluice" and d["title"]
    panels = d["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in d["templating"]["list"]}
    assert variables == {"datasource", "gateway"}
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells.get((x, y))} and {p['id']} overlap"
                cells[(x, y)] = p["id"]
        if p["type"] != "row":
            assert p["targets"], p["title"]
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]


def test_dashboard_expressions_parse(tmp_path):
    """promtool parses each expression (as a recording rule) with the variables substituted."""
    rules = [{"record": f"dashboard:expr_{i}", "expr": substitute(e)} for i, e in enumerate(dashboard_exprs())]
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_and_alerts_use_only_exported_metrics():
    exported = operator_metrics()
    assert "sluice_reconcile_errors_total" in exported and "sluice_xds_nacks_total" in exported
    known = exported | ENVOY_METRICS | PROMETHEUS_METRICS
    used = set()
    for expr in dashboard_exprs() + [a["expr"] for a in alerts()]:
        names = metric_names(expr)
        assert names, f"no metric in {expr}"
        assert names <= known, f"{expr}: unknown metrics {sorted(names - known)}"
        used |= names
    # The dashboard covers what the issue asks for.
    for needed in [
        "sluice_reconcile_duration_seconds",
        "sluice_reconcile_errors_total",
        "sluice_dag_build_duration_seconds",
        "sluice_translate_duration_seconds",
        "sluice_ingressroutes",
        "sluice_xds_streams",
        "sluice_xds_nacks_total",
        "sluice_xds_refused_streams_total",
        "sluice_xds_certificate_expiry_timestamp_seconds",
        "sluice_gateway_condition",
        "sluice_xds_push_duration_seconds",
        *ENVOY_METRICS,
    ]:
        assert needed in used, needed


def test_metric_names_are_found():
    assert metric_names('histogram_quantile(0.9, sum by (le) (rate(envoy_http_downstream_rq_time_bucket{a="up"}[5m])))') == {
        "envoy_http_downstream_rq_time"
    }
    assert metric_names('up{job="sluice-envoy"} == 0 or sluice_xds_streams') == {"up", "sluice_xds_streams"}
    assert metric_names('sum by (gateway, envoy_cluster_name) (envoy_server_live{envoy_cluster_name="x"})') == {
        "envoy_server_live"
    }


def test_envoy_metrics_are_filtered_by_gateway():
    """Each Envoy panel follows the dashboard's gateway variable (the label the PodMonitor sets)."""
    for expr in dashboard_exprs():
        for name in metric_names(expr) & (ENVOY_METRICS | PROMETHEUS_METRICS):
            uses = re.findall(rf"\b{name}(?:_bucket|_count|_sum)?\b(\s*\{{[^}}]*\}})?", expr)
            assert uses, expr
            for selector in uses:
                assert 'gateway=~"$gateway"' in selector, f"{name} unfiltered in {expr}"


# --- the kustomize component -----------------------------------------------------------------


def component() -> list[dict]:
    (k,) = load_docs(MONITORING / "kustomization.yaml")
    assert (k["apiVersion"], k["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
    assert set(k) == {"apiVersion", "kind", "resources"}
    files = {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(k["resources"]) == sorted(files), "every manifest of config/monitoring is in the component"
    return [o for f in k["resources"] for o in load_docs(MONITORING / f)]


def strict_schema(model) -> dict:
    """The JSON schema of a Prometheus Operator model, rejecting unknown fields."""

    def walk(s):
        if isinstance(s, dict):
            if "properties" in s and "additionalProperties" not in s:
                s["additionalProperties"] = False
            for v in s.values():
                walk(v)
        elif isinstance(s, list):
            for v in s:
                walk(v)
        return s

    return walk(model.model_json_schema(by_alias=True))


def validate_monitoring(obj: dict) -> None:
    if obj["apiVersion"] != "monitoring.coreos.com/v1":
        validate_builtin(obj)
        return
    schema = strict_schema(getattr(prometheus_operator, obj["kind"]))
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(obj)]
    assert not errors, f"{obj['kind']} {obj['metadata']['name']}: {errors}"


def test_validation_catches_a_misspelt_field():
    (pm,) = [o for o in component() if o["kind"] == "PodMonitor"]
    pm["spec"]["podMetricsEndpoints"][0]["relabellings"] = []
    with pytest.raises(AssertionError):
        validate_monitoring(pm)


def test_component_objects_are_valid():
    objects = component()
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "PodMonitor", "PrometheusRule", "ServiceMonitor"]
    for obj in objects:
        validate_monitoring(obj)
        assert obj["metadata"]["namespace"] == "sluice-system"


def test_component_is_not_installed_by_default():
    (k,) = load_docs(ROOT / "config" / "kustomization.yaml")
    assert "monitoring" not in k["resources"] and "components" not in k


def test_copies_equal_their_sources():
    """hack/sync-monitoring.py made the ConfigMap and the chart's copies from the sources."""
    (cm,) = [o for o in component() if o["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"]["sluice.json"] == DASHBOARD.read_text(encoding="utf-8").rstrip("\n")
    for source in (DASHBOARD, RULES):
        copy = CHART / "monitoring" / source.name
        assert copy.read_bytes() == source.read_bytes(), f"{copy} differs: run hack/sync-monitoring.py"


def test_monitors_select_what_sluice_runs():
    objects = component()
    (pm,) = [o for o in objects if o["kind"] == "PodMonitor"]
    labels_rs = "operator/src/provision/objects/labels.rs"
    assert pm["spec"]["selector"]["matchLabels"] == {
        rust_const(labels_rs, "LABEL_NAME"): rust_const(labels_rs, "APP_NAME_ENVOY"),
        rust_const(labels_rs, "LABEL_MANAGED_BY"): rust_const(labels_rs, "MANAGED_BY"),
    }
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    source = (ROOT / "operator/src/provision/objects/daemon_set.rs").read_text(encoding="utf-8")
    assert f'port("{endpoint["port"]}", ports.stats)' in source
    assert endpoint["path"] == "/stats/prometheus"
    gateway_label = rust_const(labels_rs, "LABEL_GATEWAY")
    meta_label = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", gateway_label)
    assert endpoint["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_namespace", meta_label], "separator": "/", "targetLabel": "gateway"},
        {"targetLabel": "job", "replacement": "sluice-envoy"},
    ]
    (sm,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    services = [o for o in load_docs(ROOT / "config" / "manager" / "services.yaml")]
    matched = [s for s in services if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in matched] == ["sluice-metrics"]
    assert sm["spec"]["endpoints"][0]["port"] == matched[0]["spec"]["ports"][0]["name"]


# --- the chart -------------------------------------------------------------------------------

MONITORING_KINDS = {"PodMonitor", "PrometheusRule"}
ALL_ON = {
    "monitoring": {
        "dashboard": {"enabled": True, "namespace": "grafana", "labels": {"grafana_dashboard": "1", "team": "platform"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "podMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
    }
}


def test_chart_renders_nothing_for_monitoring_by_default():
    rendered = helm.template(CHART)
    assert not [o for o in rendered.manifest if o["kind"] in MONITORING_KINDS or o["kind"] == "ConfigMap"]


def test_chart_renders_each_toggle():
    rendered = helm.template(CHART, ALL_ON, namespace="ingress")
    for obj in rendered.manifest:
        if obj["kind"] in MONITORING_KINDS or obj["kind"] == "ConfigMap":
            validate_monitoring(obj)
    cm = rendered.one("ConfigMap", "sluice-dashboard")
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1" and cm["metadata"]["labels"]["team"] == "platform"
    assert json.loads(cm["data"]["sluice.json"]) == dashboard()
    rule = rendered.one("PrometheusRule", "sluice")
    assert rule["metadata"]["namespace"] == "ingress" and rule["metadata"]["labels"]["release"] == "prom"
    assert rule["spec"] == rules_spec()
    pm = rendered.one("PodMonitor", "sluice-envoy")
    (config_pm,) = [o for o in component() if o["kind"] == "PodMonitor"]
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint.pop("interval") == "15s" and endpoint.pop("scrapeTimeout") == "10s"
    (config_endpoint,) = config_pm["spec"]["podMetricsEndpoints"]
    config_endpoint.pop("interval")
    assert pm["spec"] == config_pm["spec"]
    # Each toggle alone renders its object alone.
    for key, kind in [("dashboard", "ConfigMap"), ("prometheusRule", "PrometheusRule"), ("podMonitor", "PodMonitor")]:
        one = helm.template(CHART, {"monitoring": {key: {"enabled": True}}})
        kinds = [o["kind"] for o in one.manifest if o["kind"] in MONITORING_KINDS or o["kind"] == "ConfigMap"]
        assert kinds == [kind], key


@pytest.mark.parametrize(
    "values, field",
    [
        ({"monitoring": {"dashboard": {"enabled": "yes"}}}, "enabled"),
        ({"monitoring": {"grafana": {"enabled": True}}}, "grafana"),
        ({"monitoring": {"podMonitor": {"enabled": True, "interval": "often"}}}, "interval"),
        ({"monitoring": {"dashboard": {"enabled": True, "namespace": "Grafana"}}}, "namespace"),
    ],
)
def test_schema_rejects_bad_monitoring_values(values, field):
    with pytest.raises(helm.HelmError, match="schema") as err:
        helm.template(CHART, values)
    assert field in str(err.value)
