"""config/components/watch-namespaces: the kustomize install watching only some namespaces.
It must render valid objects and grant exactly what the chart's `watchNamespaces` grants."""

from __future__ import annotations

import json
import pathlib
import tempfile

import pytest
import yaml

import helm
from conftest import CHART, ROOT, kubectl_kustomize, kustomize, load_docs, rule_grants, validate_builtin

CONFIG = ROOT / "config"
COMPONENT = CONFIG / "components" / "watch-namespaces"
COMPONENT_KEYS = {"apiVersion", "kind", "resources", "patches"}


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json6902(obj: dict, ops: list[dict]) -> None:
    """The `add` and `replace` operations of RFC 6902 (all the component uses); others fail."""
    for op in ops:
        assert op["op"] in ("add", "replace"), f"unsupported patch op {op['op']}"
        *parents, last = _pointer(op["path"])
        target = obj
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            if last == "-":
                assert op["op"] == "add"
                target.append(op["value"])
            elif op["op"] == "add":
                target.insert(int(last), op["value"])
            else:
                target[int(last)] = op["value"]
        else:
            assert op["op"] == "add" or last in target, f"replace of missing {op['path']}"
            target[last] = op["value"]


def with_component(objects: list[dict], component: pathlib.Path) -> list[dict]:
    """`objects` with a kustomize Component applied: its resources added, then its JSON 6902
    patches applied to the objects of the named kind and name; anything else is an error."""
    (k,) = load_docs(component / "kustomization.yaml")
    assert k["kind"] == "Component", k["kind"]
    extra = set(k) - COMPONENT_KEYS
    assert not extra, f"{component}: fields {sorted(extra)} are not understood by tests/install"
    out = json.loads(json.dumps(objects))
    for entry in k.get("resources", []):
        out += load_docs(component / entry)
    for patch in k.get("patches", []):
        target = patch["target"]
        assert set(target) <= {"kind", "name"}, target
        hits = [o for o in out if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        assert len(hits) == 1, f"patch target {target} matches {len(hits)} objects"
        json6902(hits[0], yaml.safe_load(patch["patch"]))
    return out


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return with_component(kustomize(CONFIG), COMPONENT)


def watched_namespaces(objects: list[dict]) -> list[str]:
    (dep,) = [o for o in objects if o["kind"] == "Deployment"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    flags = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--watch-namespaces=")]
    assert len(flags) == 1, c["args"]
    return flags[0].split(",")


def grants_by_namespace(objects: list[dict], sa_namespace: str) -> dict[str, set]:
    """What ServiceAccount sluice gets, by namespace ("*": cluster-wide), through its bindings."""
    roles = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects if o["kind"] in ("Role", "ClusterRole")}
    out: dict[str, set] = {}
    for b in objects:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if {"kind": "ServiceAccount", "name": "sluice", "namespace": sa_namespace} not in b["subjects"]:
            continue
        ns = b["metadata"].get("namespace", "") if b["kind"] == "RoleBinding" else ""
        ref = b["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else "", ref["name"]))
        assert role is not None, f"{b['kind']} {ns}/{b['metadata']['name']} refers to a missing {ref['kind']} {ref['name']}"
        out.setdefault(ns or "*", set()).update(rule_grants(role["rules"]))
    return out


def test_component_renders_valid_objects(rendered):
    for obj in rendered:
        if obj["kind"] != "CustomResourceDefinition":
            validate_builtin(obj)
    ids = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in rendered]
    assert len(ids) == len(set(ids)), "duplicate objects"


def test_kubectl_agrees_when_installed(rendered):
    """kubectl's kustomize renders the same objects from an overlay using the component (an
    overlay outside config/: kustomize refuses one inside the directory it includes)."""
    with tempfile.TemporaryDirectory(dir=ROOT / "tests" / "install") as tmp:
        overlay = pathlib.Path(tmp)
        rel = lambda p: str(pathlib.Path("..", "..", "..", p.relative_to(ROOT)))  # noqa: E731
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources: [{rel(CONFIG)}]\ncomponents: [{rel(COMPONENT)}]\n"
        )
        theirs = kubectl_kustomize(overlay)
    if theirs is None:
        pytest.skip("kubectl is not installed")
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    assert sorted(theirs, key=key) == sorted(rendered, key=key)


def chart_difference(objects: list[dict]) -> dict[str, tuple]:
    """Namespaces where `objects` and the chart with the same watchNamespaces grant the operator
    differently: {namespace: (only here, only in the chart)}."""
    watched = watched_namespaces(objects)
    (sa,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    sa_ns = sa["metadata"]["namespace"]
    chart = helm.template(CHART, {"watchNamespaces": watched}, namespace=sa_ns).manifest
    ours, theirs = grants_by_namespace(objects, sa_ns), grants_by_namespace(chart, sa_ns)
    return {
        ns: (sorted(ours.get(ns, set()) - theirs.get(ns, set())), sorted(theirs.get(ns, set()) - ours.get(ns, set())))
        for ns in set(ours) | set(theirs)
        if ours.get(ns) != theirs.get(ns)
    }


def test_component_grants_what_the_charts_watch_namespaces_grants(rendered):
    watched = watched_namespaces(rendered)
    assert watched == ["team-a", "team-b"]
    grants = grants_by_namespace(rendered, "sluice-system")
    # Nothing namespaced is left cluster-wide, and each watched namespace gets a Role.
    assert {g[1] for g in grants["*"]} == {"customresourcedefinitions"}
    assert set(watched) <= set(grants)
    assert chart_difference(rendered) == {}


def _drop_first_rule(objs: list[dict], namespace: str) -> list[dict]:
    for o in objs:
        if o["kind"] == "Role" and o["metadata"]["name"] == "sluice" and o["metadata"]["namespace"] == namespace:
            o["rules"].pop(0)
    return objs


@pytest.mark.parametrize(
    "change, namespace",
    [
        # A binding left out, a rule dropped, the cluster-wide rules kept, the xDS Secrets missing.
        (lambda objs: [o for o in objs if not (o["kind"] == "RoleBinding" and o["metadata"].get("namespace") == "team-b")], "team-b"),
        (lambda objs: _drop_first_rule(objs, "team-a"), "team-a"),
        (lambda objs: [o for o in objs if o["kind"] != "ClusterRole"] + [o for o in kustomize(CONFIG) if o["kind"] == "ClusterRole"], "*"),
        (lambda objs: [o for o in objs if o["metadata"]["name"] != "sluice-xds-certificates"], "sluice-system"),
    ],
)
def test_chart_comparison_catches_mistakes(rendered, change, namespace):
    bad = change(json.loads(json.dumps(rendered)))
    assert namespace in chart_difference(bad)
