"""olm/: the OperatorHub bundle. The CSV is validated against OLM's published
ClusterServiceVersion CRD (../shared/schemas), and its install strategy against config/."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest
import yaml

from conftest import (
    CRDS,
    ROOT,
    kustomize,
    load_docs,
    rule_grants,
    rust_const,
    structural_to_jsonschema,
    validate_builtin,
    validate_custom,
    workspace_version,
)

OLM = ROOT / "olm"
MANIFESTS = OLM / "manifests"
CSV_FILE = MANIFESTS / "sluice.clusterserviceversion.yaml"


def _csv_schema_file() -> pathlib.Path | None:
    """OLM's ClusterServiceVersion CRD in shared/schemas of the repository's parent or an
    ancestor of it (CI runs with ../shared beside the clone)."""
    for parent in ROOT.parents:
        path = parent / "shared" / "schemas" / "olm-clusterserviceversions.crd.yaml"
        if path.is_file():
            return path
    return None


@pytest.fixture(scope="module")
def csv_schema() -> dict:
    path = _csv_schema_file()
    if path is None:
        if os.environ.get("SLUICE_REQUIRE_REFERENCE"):
            pytest.fail("SLUICE_REQUIRE_REFERENCE is set but ../shared/schemas/olm-clusterserviceversions.crd.yaml is missing")
        pytest.skip("OLM's CSV schema (../shared/schemas) is not present")
    (crd,) = load_docs(path)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return structural_to_jsonschema(version["schema"]["openAPIV3Schema"], strict=True)


@pytest.fixture(scope="module")
def csv() -> dict:
    (doc,) = load_docs(CSV_FILE)
    return doc


@pytest.fixture(scope="module")
def config() -> list[dict]:
    return kustomize(ROOT / "config")


def one(objects, kind):
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_csv_matches_olms_schema(csv, csv_schema):
    assert csv["apiVersion"] == "operators.coreos.com/v1alpha1"
    validator = jsonschema.Draft7Validator(csv_schema)
    errors = [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in validator.iter_errors(csv)]
    assert errors == []


def test_schema_check_catches_a_typo(csv, csv_schema):
    bad = json.loads(json.dumps(csv))
    bad["spec"]["installModes"][0]["suported"] = True
    bad["spec"]["maturity"] = 3
    messages = [e.message for e in jsonschema.Draft7Validator(csv_schema).iter_errors(bad)]
    assert any("suported" in m for m in messages) and any("not of type 'string'" in m for m in messages)


def test_identity_and_versions(csv, config):
    version = workspace_version()
    assert csv["metadata"]["name"] == f"sluice.v{version}"
    assert csv["spec"]["version"] == version
    image = one(config, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert csv["metadata"]["annotations"]["containerImage"] == image
    related = {r["name"]: r["image"] for r in csv["spec"]["relatedImages"]}
    assert related == {"sluice": image, "envoy": rust_const("operator/src/api/gateway.rs", "DEFAULT_ENVOY_IMAGE")}
    assert re.fullmatch(r"\d+\.\d+\.\d+", csv["spec"]["minKubeVersion"])
    for key in ("description", "displayName", "maintainers", "links", "provider", "keywords"):
        assert csv["spec"].get(key), key


def test_only_all_namespaces_is_supported(csv):
    # The operator always watches every namespace.
    modes = {m["type"]: m["supported"] for m in csv["spec"]["installModes"]}
    assert modes == {"OwnNamespace": False, "SingleNamespace": False, "MultiNamespace": False, "AllNamespaces": True}


def test_rbac_equals_config(csv, config):
    install = csv["spec"]["install"]
    assert install["strategy"] == "deployment"
    (cluster,) = install["spec"]["clusterPermissions"]
    (ns,) = install["spec"]["permissions"]
    sa = one(config, "ServiceAccount")["metadata"]["name"]
    assert cluster["serviceAccountName"] == ns["serviceAccountName"] == sa
    assert rule_grants(cluster["rules"]) == rule_grants(one(config, "ClusterRole")["rules"])
    assert rule_grants(ns["rules"]) == rule_grants(one(config, "Role")["rules"])


def test_deployment_equals_config(csv, config):
    (dep,) = csv["spec"]["install"]["spec"]["deployments"]
    want = one(config, "Deployment")
    assert dep["name"] == want["metadata"]["name"]
    assert dep["spec"] == want["spec"]
    validate_builtin({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": dep["name"]}, "spec": dep["spec"]})


def test_services_equal_config(config):
    for svc in (o for o in config if o["kind"] == "Service"):
        (bundled,) = load_docs(MANIFESTS / f"{svc['metadata']['name']}.service.yaml")
        want = json.loads(json.dumps(svc))
        del want["metadata"]["namespace"]  # OLM creates bundle objects in the install namespace
        assert bundled == want
        validate_builtin(bundled)


def test_crds_equal_crds_dir():
    want = {d["metadata"]["name"]: d for d in load_docs(CRDS)}
    got = {}
    for path in MANIFESTS.glob("*.crd.yaml"):
        (doc,) = load_docs(path)  # one object per file, as bundles require
        assert path.name == f"{doc['metadata']['name']}.crd.yaml"
        got[doc["metadata"]["name"]] = doc
    assert got == want, "olm/manifests CRDs differ from crds/sluice-crds.yaml: run `make crds`"


def _schema_at(schema: dict, path: str) -> dict | None:
    for part in path.split("."):
        props = schema.get("properties") or {}
        if part not in props:
            return None
        schema = props[part]
    return schema


def test_owned_crds_and_descriptors(csv):
    crds = {d["metadata"]["name"]: d for d in load_docs(CRDS)}
    owned = csv["spec"]["customresourcedefinitions"]["owned"]
    assert {o["name"] for o in owned} == set(crds)
    for o in owned:
        crd = crds[o["name"]]
        assert o["kind"] == crd["spec"]["names"]["kind"]
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == o["version"]]
        schema = version["schema"]["openAPIV3Schema"]
        assert o.get("displayName") and o.get("description")
        for section, root in (("specDescriptors", "spec"), ("statusDescriptors", "status")):
            for d in o.get(section, []):
                assert _schema_at(schema, f"{root}.{d['path']}") is not None, f"{o['kind']} {section}: no field {d['path']}"
    gateway = next(o for o in owned if o["kind"] == "Gateway")
    assert gateway["specDescriptors"] and gateway["statusDescriptors"]


def test_alm_examples_are_valid(csv):
    examples = json.loads(csv["metadata"]["annotations"]["alm-examples"])
    assert {e["kind"] for e in examples} == {o["kind"] for o in csv["spec"]["customresourcedefinitions"]["owned"]}
    for e in examples:
        validate_custom(e)


def test_icon_is_the_svg(csv):
    (icon,) = csv["spec"]["icon"]
    assert icon["mediatype"] == "image/svg+xml"
    data = base64.b64decode(icon["base64data"], validate=True)
    assert data == (OLM / "icon.svg").read_bytes()
    assert ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"


def test_bundle_metadata_and_dockerfile_agree():
    annotations = yaml.safe_load((OLM / "metadata" / "annotations.yaml").read_text())["annotations"]
    assert annotations["operators.operatorframework.io.bundle.mediatype.v1"] == "registry+v1"
    assert annotations["operators.operatorframework.io.bundle.manifests.v1"] == "manifests/"
    assert annotations["operators.operatorframework.io.bundle.metadata.v1"] == "metadata/"
    assert annotations["operators.operatorframework.io.bundle.package.v1"] == "sluice"
    default = annotations["operators.operatorframework.io.bundle.channel.default.v1"]
    assert default in annotations["operators.operatorframework.io.bundle.channels.v1"].split(",")
    text = (OLM / "bundle.Dockerfile").read_text()
    labels = dict(re.findall(r"^LABEL (\S+)=(\S+)$", text, re.MULTILINE))
    assert labels == annotations
    assert re.search(r"^COPY manifests /manifests/$", text, re.MULTILINE)
    assert re.search(r"^COPY metadata /metadata/$", text, re.MULTILINE)


def test_every_manifest_is_one_supported_object():
    for path in MANIFESTS.iterdir():
        docs = load_docs(path)
        assert len(docs) == 1, f"{path.name}: a bundle manifest holds one object"
        assert docs[0]["kind"] in {"ClusterServiceVersion", "CustomResourceDefinition", "Service"}, path.name
