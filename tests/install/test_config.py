"""config/: the kustomize install (`kubectl apply -k config/`) and the samples."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter

import pytest
import yaml

from conftest import (
    CRDS,
    ROOT,
    cli_default,
    kubectl_kustomize,
    kustomize,
    load_docs,
    object_id,
    rule_grants,
    rust_const,
    validate_builtin,
    validate_custom,
    workspace_version,
)

CONFIG = ROOT / "config"
SAMPLES = CONFIG / "samples"


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return kustomize(CONFIG)


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def test_the_install_has_every_piece_once(objects):
    ids = Counter(object_id(o) for o in objects)
    assert [i for i, n in ids.items() if n > 1] == []
    kinds = Counter(o["kind"] for o in objects)
    assert kinds == {
        "Namespace": 1,
        "CustomResourceDefinition": 3,
        "ServiceAccount": 1,
        "ClusterRole": 1,
        "ClusterRoleBinding": 1,
        "Role": 1,
        "RoleBinding": 1,
        "Deployment": 1,
        "Service": 2,
        "PodDisruptionBudget": 1,
        "PriorityClass": 1,
    }
    cluster_scoped = ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PriorityClass")
    namespaced = [o for o in objects if o["kind"] not in cluster_scoped]
    assert {o["metadata"].get("namespace") for o in namespaced} == {"sluice-system"}


def test_every_object_is_valid_kubernetes(objects):
    for obj in objects:
        validate_builtin(obj)


def test_kubectl_agrees_when_installed(objects):
    rendered = kubectl_kustomize(CONFIG)
    if rendered is None:
        pytest.skip("kubectl is not installed; the resolver in conftest.py is checked by the other tests")
    assert sorted(map(object_id, rendered)) == sorted(map(object_id, objects))


def test_crd_copy_equals_crds_dir():
    assert (CONFIG / "crd" / "sluice-crds.yaml").read_text() == CRDS.read_text(), (
        "config/crd/sluice-crds.yaml differs from crds/sluice-crds.yaml: run `make crds`"
    )


def test_deployment(objects):
    dep = one(objects, "Deployment", "sluice")
    spec = dep["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "sluice"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # No fixed user ID (OpenShift's restricted-v2 SCC assigns one; elsewhere the image's applies).
    assert "runAsUser" not in pod["securityContext"] and "runAsGroup" not in pod["securityContext"]
    (c,) = pod["containers"]
    assert c["args"][0] == "run"
    # The default Envoy image is passed explicitly (the CSV's relatedImages lists the same one).
    i = c["args"].index("--default-envoy-image")
    assert c["args"][i + 1] == rust_const("operator/src/api/gateway.rs", "DEFAULT_ENVOY_IMAGE")
    image = f"ghcr.io/sluice-dev/sluice:{workspace_version()}"
    assert c["image"] == image
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["SLUICE_IMAGE"]["value"] == image, "the shutdown-manager sidecar must run the operator's image"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    # The operator's defaults (operator/src/cli.rs): --http-address, --xds-address.
    assert ports["metrics"] == int(cli_default("http_address").rsplit(":", 1)[1]) == 8000
    assert ports["xds"] == int(cli_default("xds_address").rsplit(":", 1)[1]) == 8001
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    sc = c["securityContext"]
    assert sc == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    labels = spec["selector"]["matchLabels"]
    assert labels.items() <= spec["template"]["metadata"]["labels"].items()


def placement_problems(dep: dict, pdb: dict | None, priority_class: dict | None) -> list[str]:
    """What keeps the operator's placement from working as the README says: the PDB must select
    exactly the Deployment's pods and let all but one of them be evicted; the spread constraints
    must count the Deployment's pods and never block scheduling; the priority class must be the
    shipped one, above ordinary pods, below the system classes, and no global default."""
    problems = []
    spec = dep["spec"]
    replicas = spec.get("replicas", 1)
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    if pdb is not None:
        if pdb["metadata"].get("namespace") != dep["metadata"].get("namespace"):
            problems.append("the PDB is not in the Deployment's namespace")
        selector = pdb["spec"]["selector"]["matchLabels"]
        if selector != spec["selector"]["matchLabels"] or not selector.items() <= pod_labels.items():
            problems.append("the PDB does not select the Deployment's pods")
        if "maxUnavailable" in pdb["spec"] or not isinstance(pdb["spec"].get("minAvailable"), int):
            problems.append("the PDB should set minAvailable as a number")
        else:
            # Evictions the budget allows with every replica healthy.
            allowed = replicas - pdb["spec"]["minAvailable"]
            if pdb["spec"]["minAvailable"] < 1:
                problems.append("the PDB keeps no replica up")
            if allowed < 1:
                problems.append(f"the PDB blocks every eviction with {replicas} replica(s)")
    spread = pod.get("topologySpreadConstraints") or []
    if {c["topologyKey"] for c in spread} != {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}:
        problems.append("replicas are not spread over zones and nodes")
    for c in spread:
        if c.get("whenUnsatisfiable") != "ScheduleAnyway":
            problems.append(f"spreading over {c['topologyKey']} can leave a replica unscheduled")
        if not c["labelSelector"]["matchLabels"].items() <= pod_labels.items():
            problems.append(f"spreading over {c['topologyKey']} does not count the operator's pods")
    name = pod.get("priorityClassName")
    if priority_class is None or name != priority_class["metadata"]["name"]:
        problems.append(f"priorityClassName {name!r} is not the shipped PriorityClass")
    elif not 0 < priority_class["value"] < 1_000_000_000 or priority_class.get("globalDefault"):
        problems.append("the PriorityClass is not above ordinary pods, below system ones and no default")
    return problems


def test_placement(objects):
    dep = one(objects, "Deployment", "sluice")
    pdb = one(objects, "PodDisruptionBudget", "sluice")
    pc = one(objects, "PriorityClass", "sluice-operator")
    assert placement_problems(dep, pdb, pc) == []


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda d, p, c: p["spec"].update(minAvailable=2), "blocks every eviction"),
        (lambda d, p, c: p["spec"].update(minAvailable=0), "keeps no replica up"),
        (lambda d, p, c: p["spec"]["selector"]["matchLabels"].update(app="x"), "does not select"),
        (lambda d, p, c: d["spec"].update(replicas=1), "blocks every eviction"),
        (lambda d, p, c: d["spec"]["template"]["spec"]["topologySpreadConstraints"][0].update(whenUnsatisfiable="DoNotSchedule"), "unscheduled"),
        (lambda d, p, c: d["spec"]["template"]["spec"]["topologySpreadConstraints"].pop(), "not spread"),
        (lambda d, p, c: d["spec"]["template"]["spec"].update(priorityClassName="other"), "not the shipped"),
        (lambda d, p, c: c.update(globalDefault=True), "no default"),
    ],
)
def test_placement_checks_catch_mistakes(objects, change, problem):
    dep = json.loads(json.dumps(one(objects, "Deployment", "sluice")))
    pdb = json.loads(json.dumps(one(objects, "PodDisruptionBudget", "sluice")))
    pc = json.loads(json.dumps(one(objects, "PriorityClass", "sluice-operator")))
    change(dep, pdb, pc)
    assert any(problem in p for p in placement_problems(dep, pdb, pc)), placement_problems(dep, pdb, pc)


def test_services_reach_the_operator(objects):
    dep = one(objects, "Deployment", "sluice")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    # The operator tells Envoys to use sluice-xds.<namespace>.svc:8001 unless told otherwise.
    for name, port in (("sluice-xds", 8001), ("sluice-metrics", 8000)):
        svc = one(objects, "Service", name)
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        (p,) = svc["spec"]["ports"]
        assert p["port"] == port
        assert p["targetPort"] in {cp["name"] for cp in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}


def test_bindings_name_the_service_account(objects):
    sa = one(objects, "ServiceAccount", "sluice")
    for kind, name, role_kind in (
        ("ClusterRoleBinding", "sluice", "ClusterRole"),
        ("RoleBinding", "sluice-leader-election", "Role"),
    ):
        b = one(objects, kind, name)
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "sluice", "namespace": sa["metadata"]["namespace"]}]
        assert b["roleRef"]["kind"] == role_kind
        one(objects, role_kind, b["roleRef"]["name"])


# Kinds the operator's code names in `Store<K>`, `Api<K>` or `Api::<K>` (operator/src/source and
# operator/src/controller), and the resource each is. A new kind fails the test below until
# it is added here and the RBAC grants it.
KIND_RESOURCES = {
    "Gateway": ("sluice.dev", "gateways"),
    "IngressRoute": ("contour.heptio.com", "ingressroutes"),
    "TLSCertificateDelegation": ("contour.heptio.com", "tlscertificatedelegations"),
    "Service": ("", "services"),
    "Endpoints": ("", "endpoints"),
    "EndpointSlice": ("discovery.k8s.io", "endpointslices"),
    "Secret": ("", "secrets"),
    "Pod": ("", "pods"),
    "ConfigMap": ("", "configmaps"),
    "ServiceAccount": ("", "serviceaccounts"),
    "DaemonSet": ("apps", "daemonsets"),
    "Lease": ("coordination.k8s.io", "leases"),
    "CustomResourceDefinition": ("apiextensions.k8s.io", "customresourcedefinitions"),
    "K": None,  # generic helpers (`Api::<K>`)
    # events.k8s.io Events written directly (`controller/routes/events.rs`): created only,
    # checked below.
    "K8sEvent": None,
    # Untyped access (`Api<DynamicObject>`) to a kind named by `ApiResource::erase::<Kind>`,
    # which is counted below as that kind.
    "DynamicObject": None,
}


TRAEFIK_GROUPS = ("traefik.io", "traefik.containo.us")
TRAEFIK_RESOURCES = [
    "ingressroutes",
    "ingressroutetcps",
    "middlewares",
    "traefikservices",
    "serverstransports",
    "tlsoptions",
    "tlsstores",
]


def test_rbac_covers_every_kind_the_code_uses(objects):
    used = set()
    for path in [*(ROOT / "operator/src/source").rglob("*.rs"), *(ROOT / "operator/src/controller").rglob("*.rs")]:
        text = path.read_text()
        used |= set(re.findall(r"\b(?:Store|Api)(?:::)?<(?:Lenient<)?(\w+)>", text))
        used |= set(re.findall(r"\bApiResource::erase::<(\w+)>", text))
    unknown = used - set(KIND_RESOURCES)
    assert not unknown, f"the operator now uses {sorted(unknown)}: add RBAC for it (config/rbac, chart, CSV)"
    grants = rule_grants(one(objects, "ClusterRole", "sluice")["rules"]) | rule_grants(
        one(objects, "Role", "sluice-leader-election")["rules"]
    )
    for kind in sorted(k for k in used if KIND_RESOURCES[k]):
        group, resource = KIND_RESOURCES[kind]
        assert any(g[:3] == (group, resource, "get") for g in grants), f"no get on {kind}"
    # Traefik's kinds are watched untyped (`Api<DynamicObject>` on an `ApiResource` made from
    # `plural()` in source/traefik.rs), in both groups: read, and nothing else.
    traefik = re.findall(r'TraefikKind::\w+ => "(\w+)"', (ROOT / "operator/src/source/traefik.rs").read_text())
    assert traefik, "no Traefik resource found in operator/src/source/traefik.rs"
    for group in TRAEFIK_GROUPS:
        for resource in traefik:
            verbs = {g[2] for g in grants if g[:2] == (group, resource)}
            assert verbs == {"get", "list", "watch"}, f"{resource}.{group}: {sorted(verbs)}"
    # kube-runtime's event recorder creates events.k8s.io Events, and patches them on repeats.
    if "K8sEvent" in used:
        assert ("events.k8s.io", "events", "create", "*") in grants, "no create on events.k8s.io events"
    records = any("Recorder" in path.read_text() for path in (ROOT / "operator/src/controller").rglob("*.rs"))
    if records:
        for verb in ("create", "patch"):
            assert ("events.k8s.io", "events", verb, "*") in grants, f"no {verb} on events.k8s.io events"


def test_rbac_is_what_the_operator_needs_and_no_more(objects):
    cluster = rule_grants(one(objects, "ClusterRole", "sluice")["rules"])
    read = {"get", "list", "watch"}
    apply = {"get", "list", "watch", "create", "patch"}
    want = set()
    for group, resources, verbs in [
        ("contour.heptio.com", ["ingressroutes", "tlscertificatedelegations"], read),
        ("contour.heptio.com", ["ingressroutes/status"], {"get", "patch"}),
        # Statuses through the object under Contour's legacy CRD (no status subresource).
        ("contour.heptio.com", ["ingressroutes"], {"patch"}),
        # Traefik's objects: read only (no status; verdicts are events).
        *((g, TRAEFIK_RESOURCES, read) for g in TRAEFIK_GROUPS),
        ("sluice.dev", ["gateways"], read),
        ("sluice.dev", ["gateways/status"], {"get", "patch"}),
        ("sluice.dev", ["gateways/finalizers"], {"update"}),
        ("", ["endpoints", "pods"], read),
        ("discovery.k8s.io", ["endpointslices"], read),
        ("", ["services", "configmaps", "serviceaccounts", "secrets"], apply),
        ("apps", ["daemonsets"], apply),
        # kube-runtime's event recorder (controller/gateway.rs): creates, and patches repeats.
        ("events.k8s.io", ["events"], {"create", "patch"}),
    ]:
        want |= {(group, r, v, "*") for r in resources for v in verbs}
    want |= {
        ("apiextensions.k8s.io", "customresourcedefinitions", "get", crd["metadata"]["name"])
        for crd in load_docs(CRDS)
    }
    assert cluster == want
    lease = cli_default("lease_name")
    assert rule_grants(one(objects, "Role", "sluice-leader-election")["rules"]) == {
        ("coordination.k8s.io", "leases", "create", "*"),
        ("coordination.k8s.io", "leases", "get", lease),
        ("coordination.k8s.io", "leases", "update", lease),
    }


# --- samples ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    return kustomize(SAMPLES)


def test_samples_are_valid_objects(samples):
    kinds = Counter(o["kind"] for o in samples)
    assert kinds["Gateway"] == 2 and kinds["IngressRoute"] >= 2
    for obj in samples:
        if obj["kind"] in ("Gateway", "IngressRoute", "TLSCertificateDelegation"):
            validate_custom(obj)
        else:
            validate_builtin(obj)


def test_validate_custom_rejects_typos():
    bad = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway", "metadata": {"name": "x"}, "spec": {"ingresClassName": "a"}}
    with pytest.raises(AssertionError, match="ingresClassName"):
        validate_custom(bad)


BACKENDS = """
apiVersion: v1
kind: Service
metadata: {name: NAME, namespace: NS}
spec:
  ports: [{name: http, port: PORT, protocol: TCP, targetPort: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: NAME, namespace: NS}
subsets:
  - addresses: [{ip: 127.0.0.1}]
    ports: [{name: http, port: 8080, protocol: TCP}]
"""


@pytest.fixture(scope="module")
def sluice_binary() -> str:
    subprocess.run(["cargo", "build", "-q", "-p", "sluice"], cwd=ROOT, check=True)
    return str(ROOT / "target" / "debug" / "sluice")


def test_samples_render_valid_with_their_backends(samples, sluice_binary, tmp_path):
    """With the backends the samples name (Services and a TLS Secret), every sample
    IngressRoute is valid for its own team's Gateway and no other."""
    docs = [o for o in samples if o["kind"] != "Namespace"]
    for ns, name, port in (("team-a", "web", 80), ("team-a", "api", 8080), ("team-b", "web", 80), ("team-b", "web-canary", 80)):
        docs += list(yaml.safe_load_all(BACKENDS.replace("NAME", name).replace("NS", ns).replace("PORT", str(port))))
    (secret,) = load_docs(ROOT / "examples" / "tls" / "secret.yaml")
    secret["metadata"] = {"name": "b-example-com", "namespace": "team-b"}
    docs.append(secret)
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    out = subprocess.run([sluice_binary, "render", "--manifests", str(tmp_path)], check=True, capture_output=True, text=True)
    report = json.loads(out.stdout)
    judged = {
        g["gateway"]: {(r["namespace"], r["name"], r["currentStatus"], r["description"]) for r in g["ingressRoutes"]}
        for g in report["gateways"]
    }
    assert judged == {
        "team-a/team-a": {
            ("team-a", "app", "valid", "valid IngressRoute"),
            ("team-a", "api", "valid", "valid IngressRoute"),
        },
        "team-b/team-b": {("team-b", "app", "valid", "valid IngressRoute")},
    }


def test_render_provision_prints_valid_objects(samples, sluice_binary, tmp_path):
    """`sluice render --provision` on the samples: for each Gateway the objects the operator
    applies, valid Kubernetes objects, and a comment naming what it leaves out."""
    (tmp_path / "samples.yaml").write_text(yaml.safe_dump_all(samples))
    out = subprocess.run(
        [sluice_binary, "render", "--provision", "--manifests", str(tmp_path)], check=True, capture_output=True, text=True
    )
    docs = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    gateways = sorted(f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in samples if o["kind"] == "Gateway")
    assert Counter(d["kind"] for d in docs) == {k: len(gateways) for k in ("ServiceAccount", "ConfigMap", "DaemonSet", "Service")}
    for d in docs:
        validate_builtin(d)
    for gw in gateways:
        ns, name = gw.split("/")
        assert f"# Left out: Secret {ns}/{name}-xds-client" in out.stdout
        assert {d["metadata"]["namespace"] for d in docs if d["metadata"]["labels"]["sluice.dev/gateway"] == name} == {ns}
