"""examples/ against Traefik's own CRD schemas, and `sluice crds --traefik` against Traefik's kinds.

Traefik's schemas come from the npm package @kubernetes-models/traefik (pinned, with its
dependencies, by tests/install/traefik-schemas/package-lock.json; `make setup-python` installs it
into .venv/traefik-schemas). That version's validators are generated from the Traefik Helm
chart's CRDs: chart v39.0.8 for `traefik.io/v1alpha1`, v25.0.0 (Traefik v2) for
`traefik.containo.us/v1alpha1`. They check types, enums and required fields as the API server
would; they accept fields the schema does not name (the API server would prune those silently),
and the package holds no plural names or scopes (README, "Traefik's own CRDs").
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import re
import shutil
import subprocess

import jsonschema
import pytest

from conftest import ROOT, load_docs, object_id, structural_to_jsonschema

SCRIPT = ROOT / "tests" / "install" / "traefik-schemas" / "validate.mjs"
SLUICE_TRAEFIK_CRDS = ROOT / "crds" / "traefik-crds.yaml"
TRAEFIK_GROUPS = ("traefik.io", "traefik.containo.us")


def node_modules() -> pathlib.Path:
    base = os.environ.get("SLUICE_TRAEFIK_SCHEMAS") or str(ROOT / ".venv" / "traefik-schemas")
    return pathlib.Path(base) / "node_modules"


def run_validator(*args: str, stdin: str | None = None):
    node = shutil.which("node")
    assert node, "tests/install/test_traefik_schemas.py needs Node.js (`node`) on PATH"
    modules = node_modules()
    assert (modules / "@kubernetes-models" / "traefik").is_dir(), (
        f"no @kubernetes-models/traefik under {modules}: run `make setup-python`"
    )
    done = subprocess.run(
        [node, str(SCRIPT), str(modules), *args], input=stdin, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"validate.mjs failed: {done.stderr}"
    return json.loads(done.stdout)


def traefik_errors(objects: list[dict]) -> list[list[str] | None]:
    """Per object: Traefik's schema errors ([] when valid), None when Traefik has no such kind."""
    results = run_validator(stdin=json.dumps(objects))
    assert len(results) == len(objects)
    return [r["errors"] if r["known"] else None for r in results]


@pytest.fixture(scope="module")
def traefik_kinds() -> set[tuple[str, str]]:
    kinds = {(v, k) for v, k in run_validator("kinds")}
    assert kinds, "@kubernetes-models/traefik lists no kind"
    return kinds


def example_objects() -> list[tuple[str, dict]]:
    out = []
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        for doc in load_docs(path):
            if str(doc.get("apiVersion", "")).split("/")[0] in TRAEFIK_GROUPS:
                out.append((str(path.relative_to(ROOT)), doc))
    return out


def sluice_crds() -> list[dict]:
    return load_docs(SLUICE_TRAEFIK_CRDS)


def test_examples_are_valid_under_traefiks_chart_schemas():
    examples = example_objects()
    groups = {o["apiVersion"].split("/")[0] for _, o in examples}
    assert len(examples) >= 50 and groups == set(TRAEFIK_GROUPS), (len(examples), groups)
    problems = []
    for (path, obj), errors in zip(examples, traefik_errors([o for _, o in examples])):
        if errors is None:
            problems.append(f"{path} {object_id(obj)}: Traefik's CRDs have no such kind")
        elif errors:
            problems.append(f"{path} {object_id(obj)}: {'; '.join(errors)}")
    assert not problems, "\n".join(problems)


def one_example(kind: str, predicate=lambda o: True) -> dict:
    for _, obj in example_objects():
        if obj["apiVersion"] == "traefik.io/v1alpha1" and obj["kind"] == kind and predicate(obj):
            return copy.deepcopy(obj)
    raise AssertionError(f"no {kind} example")


def test_traefiks_schemas_reject_what_they_should():
    # Without these the test above could pass on a validator that accepts anything.
    route_kind = one_example("IngressRoute")
    route_kind["spec"]["routes"][0]["kind"] = "Rules"
    port = one_example("IngressRoute", lambda o: "port" in o["spec"]["routes"][0].get("services", [{}])[0])
    port["spec"]["routes"][0]["services"][0]["port"] = {"number": 80}
    no_match = one_example("IngressRoute")
    del no_match["spec"]["routes"][0]["match"]
    prefixes = one_example("Middleware", lambda o: "stripPrefix" in o["spec"])
    prefixes["spec"]["stripPrefix"]["prefixes"] = "/api"
    client_auth = one_example("TLSOption", lambda o: "clientAuthType" in o["spec"].get("clientAuth", {}))
    client_auth["spec"]["clientAuth"]["clientAuthType"] = "VerifyClientCertSometimes"
    unknown = {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteHTTP3", "metadata": {"name": "x"}}
    cases = [
        (route_kind, "/spec/routes/0/kind"),
        (port, "/spec/routes/0/services/0/port"),
        (no_match, "/spec/routes/0"),
        (prefixes, "/spec/stripPrefix/prefixes"),
        (client_auth, "/spec/clientAuth/clientAuthType"),
    ]
    results = traefik_errors([c for c, _ in cases] + [unknown])
    for (obj, where), errors in zip(cases, results):
        assert errors, f"Traefik's schema accepted {where} of {object_id(obj)}"
        assert any(e.startswith(where) for e in errors), (where, errors)
    assert results[-1] is None


def test_sluice_traefik_crds_are_traefiks_kinds(traefik_kinds):
    # Same group, version and kind as Traefik's CRDs, for every kind `sluice crds --traefik` prints.
    ours = set()
    for crd in sluice_crds():
        spec = crd["spec"]
        assert spec["group"] == "traefik.io", crd["metadata"]["name"]
        assert [v["name"] for v in spec["versions"]] == ["v1alpha1"], crd["metadata"]["name"]
        ours.add((f"{spec['group']}/v1alpha1", spec["names"]["kind"]))
    assert ours, "crds/traefik-crds.yaml holds no CRD"
    assert ours <= traefik_kinds, sorted(ours - traefik_kinds)
    # Every kind Sluice reads exists in Traefik's legacy group too.
    legacy = {("traefik.containo.us/v1alpha1", k) for _, k in ours}
    assert legacy <= traefik_kinds, sorted(legacy - traefik_kinds)
    # Traefik's kinds that Sluice neither reads nor prints are the README's "not read" row.
    missing = {k for v, k in traefik_kinds if v == "traefik.io/v1alpha1"} - {k for _, k in ours}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = re.search(r"^\| ([A-Za-z, ]+) \| not read \|", readme, re.MULTILINE)
    assert row, "README: no Traefik row `| ... | not read |`"
    assert missing == set(row.group(1).split(", ")), (missing, row.group(1))


def test_examples_keep_their_fields_under_sluices_crds():
    # Each example (valid under Traefik's schemas, above) is valid under `sluice crds --traefik`,
    # strictly: a field the schema does not name would be pruned by the API server (under
    # `spec`'s top level, which keeps unknown fields, too). Legacy-group objects are checked
    # against the traefik.io CRD of their kind, as the e2e tests install it in both groups.
    schemas = {
        crd["spec"]["names"]["kind"]: structural_to_jsonschema(
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], strict=True
        )
        for crd in sluice_crds()
    }
    problems = []
    for path, obj in example_objects():
        schema = schemas.get(obj["kind"])
        if schema is None:
            problems.append(f"{path} {object_id(obj)}: no CRD in crds/traefik-crds.yaml")
            continue
        spec_schema = schema["properties"]["spec"]
        if spec_schema.get("x-kubernetes-preserve-unknown-fields"):
            spec_schema = dict(spec_schema, additionalProperties=False)
            schema = dict(schema, properties=dict(schema["properties"], spec=spec_schema))
        for e in jsonschema.Draft7Validator(schema).iter_errors(obj):
            problems.append(f"{path} {object_id(obj)}: {'.'.join(map(str, e.path)) or '<root>'}: {e.message}")
    assert not problems, "\n".join(problems)
