"""olm/: the OperatorHub bundle. The CSV is validated against OLM's published
ClusterServiceVersion CRD (../shared/schemas), and its install strategy against config/."""

from __future__ import annotations

import base64
import email.utils
import json
import os
import pathlib
import re
import urllib.parse
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


WATCH_ENV = "SLUICE_WATCH_NAMESPACES"
TARGET_NAMESPACES = "metadata.annotations['olm.targetNamespaces']"


def cli_env(flag_field: str) -> str:
    """The `env` clap attribute of `pub <flag_field>:` in cli.rs (RunArgs)."""
    text = (ROOT / "operator" / "src" / "cli.rs").read_text(encoding="utf-8")
    run_args = text[text.index("pub struct RunArgs") :]
    match = re.search(rf'env = "([A-Z_]+)"[^\]]*\)\]\s*pub {flag_field}:', run_args)
    assert match, f"cli.rs RunArgs: no env for {flag_field}"
    return match.group(1)


def install_mode_problems(csv: dict, config: list[dict]) -> list[str]:
    """OLM's install modes against what the bundle grants and tells the operator.

    With OwnNamespace, SingleNamespace or MultiNamespace, OLM grants `permissions` as Roles in
    the operator's namespace and copies them into each target namespace (under AllNamespaces it
    makes them cluster-wide), and it puts the comma-separated target namespaces on the pod
    template as the `olm.targetNamespaces` annotation ("" for all namespaces). So a namespaced
    mode is supported only if: the operator is told that annotation (--watch-namespaces through
    its env var), `clusterPermissions` grant nothing namespaced (only the CRD reads, which cannot
    be namespaced), and `permissions` grant every namespaced rule of config/."""
    problems = []
    modes = {m["type"]: m["supported"] for m in csv["spec"]["installModes"]}
    if set(modes) != {"OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces"}:
        problems.append(f"install modes not all declared: {sorted(modes)}")
    namespaced_modes = [m for m in ("OwnNamespace", "SingleNamespace", "MultiNamespace") if modes.get(m)]
    if not namespaced_modes:
        return problems
    install = csv["spec"]["install"]["spec"]
    (cluster,) = install["clusterPermissions"]
    (ns,) = install["permissions"]
    config_rules = rule_grants(one(config, "ClusterRole")["rules"])
    crd_reads = {g for g in config_rules if g[1] == "customresourcedefinitions"}
    if rule_grants(cluster["rules"]) != crd_reads:
        problems.append(f"clusterPermissions grant more than the CRD reads: {sorted(rule_grants(cluster['rules']) - crd_reads)}")
    missing = (config_rules - crd_reads) - rule_grants(ns["rules"])
    if missing:
        problems.append(f"permissions lack namespaced rules: {sorted(missing)}")
    (dep,) = install["deployments"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    source = ((env.get(cli_env("watch_namespaces")) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
    if source != TARGET_NAMESPACES or any(a.startswith("--watch-namespaces") for a in container.get("args", [])):
        problems.append(f"{namespaced_modes} supported but the operator is not told olm.targetNamespaces")
    return problems


def test_install_modes_match_permissions_and_env(csv, config):
    modes = {m["type"]: m["supported"] for m in csv["spec"]["installModes"]}
    assert all(modes.values()), modes
    assert cli_env("watch_namespaces") == WATCH_ENV
    assert install_mode_problems(csv, config) == []


def _env(c: dict) -> list[dict]:
    (dep,) = c["spec"]["install"]["spec"]["deployments"]
    return dep["spec"]["template"]["spec"]["containers"][0]["env"]


def _widen(c: dict) -> None:
    spec = c["spec"]["install"]["spec"]
    spec["clusterPermissions"][0]["rules"] += spec["permissions"][0]["rules"]


@pytest.mark.parametrize(
    "change, problem",
    [
        # A fixed value instead of the annotation.
        (lambda c: [e for e in _env(c) if e["name"] == WATCH_ENV][0].update(value="", valueFrom=None), "not told olm.targetNamespaces"),
        (lambda c: _env(c).__setitem__(slice(None), [e for e in _env(c) if e["name"] != WATCH_ENV]), "not told"),
        (
            lambda c: [e for e in _env(c) if e["name"] == WATCH_ENV][0]["valueFrom"]["fieldRef"].update(
                fieldPath="metadata.annotations['olm.operatorNamespace']"
            ),
            "not told",
        ),
        (_widen, "clusterPermissions grant more"),
        (lambda c: c["spec"]["install"]["spec"]["permissions"][0]["rules"].pop(0), "permissions lack"),
    ],
)
def test_install_mode_check_catches_mistakes(csv, config, change, problem):
    bad = json.loads(json.dumps(csv))
    change(bad)
    problems = install_mode_problems(bad, config)
    assert any(problem in p for p in problems), problems


def test_rbac_equals_config(csv, config):
    """Together, the bundle grants exactly what config/ grants (its ClusterRole and the leader
    election Role); install_mode_problems checks how they are split."""
    install = csv["spec"]["install"]
    assert install["strategy"] == "deployment"
    (cluster,) = install["spec"]["clusterPermissions"]
    (ns,) = install["spec"]["permissions"]
    sa = one(config, "ServiceAccount")["metadata"]["name"]
    assert cluster["serviceAccountName"] == ns["serviceAccountName"] == sa
    want = rule_grants(one(config, "ClusterRole")["rules"]) | rule_grants(one(config, "Role")["rules"])
    assert rule_grants(cluster["rules"]) | rule_grants(ns["rules"]) == want


def test_deployment_equals_config(csv, config):
    """The bundle's Deployment is config/'s, plus the env var carrying OLM's target namespaces."""
    (dep,) = csv["spec"]["install"]["spec"]["deployments"]
    want = one(config, "Deployment")
    assert dep["name"] == want["metadata"]["name"]
    spec = json.loads(json.dumps(dep["spec"]))
    (container,) = spec["template"]["spec"]["containers"]
    container["env"] = [e for e in container["env"] if e["name"] != WATCH_ENV]
    assert spec == want["spec"]
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
        # operator-registry's supported bundle kinds include PodDisruptionBudget and PriorityClass.
        supported = {"ClusterServiceVersion", "CustomResourceDefinition", "Service", "PodDisruptionBudget", "PriorityClass"}
        assert docs[0]["kind"] in supported, path.name


def test_placement_objects_equal_config(config):
    for kind, file in (("PodDisruptionBudget", "sluice.poddisruptionbudget.yaml"), ("PriorityClass", "sluice-operator.priorityclass.yaml")):
        want = json.loads(json.dumps(one(config, kind)))
        want["metadata"].pop("namespace", None)  # OLM creates bundle objects in the install namespace
        (bundled,) = load_docs(MANIFESTS / file)
        assert bundled == want, file
        validate_builtin(bundled)


# What `operator-sdk bundle validate ./olm --select-optional suite=operatorframework` checks,
# reproduced offline for this bundle. The rules come from operator-framework/api,
# pkg/validation/internal/ (cited per rule): bundle.go and csv.go (the default validators),
# operatorhub.go, good_practices.go and community.go (the optional suite). community.go only
# checks bundles that use APIs removed in Kubernetes 1.22 (v1beta1 CRDs and webhooks): none here,
# test_every_manifest_is_one_supported_object and the CRD tests keep it so. Rules from
# operator-framework/community-operators docs/required-fields.md (what OperatorHub displays) are
# marked as such. Errors and warnings alike count: the bundle should validate cleanly.

# operatorhub.go validCapabilities, validMediatypes, validCategories.
CAPABILITIES = {"Basic Install", "Seamless Upgrades", "Full Lifecycle", "Deep Insights", "Auto Pilot"}
ICON_MEDIATYPES = {"image/gif", "image/jpeg", "image/png", "image/svg+xml"}
CATEGORIES = {
    "AI/Machine Learning", "Application Runtime", "Big Data", "Cloud Provider", "Developer Tools", "Database",
    "Integration & Delivery", "Logging & Tracing", "Monitoring", "Networking", "OpenShift Optional", "Security",
    "Storage", "Streaming & Messaging",
}  # fmt: skip
# blang/semver's strict Parse (MAJOR.MINOR.PATCH[-pre][+build]).
SEMVER = r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
# https://olm.operatorframework.io/docs/best-practices/channel-naming: candidate, fast or stable,
# optionally with a version (stable-v1, fast-1.2). good_practices.go only checks the prefix.
CHANNEL = r"(candidate|fast|stable)(-v?\d+(\.\d+){0,2})?"


def _email_ok(value: str) -> bool:
    """Close to Go's net/mail.ParseAddress: `addr` or `Name <addr>`, addr being local@domain."""
    _, addr = email.utils.parseaddr(value)
    return bool(re.fullmatch(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", addr))


def _url_ok(value: str) -> bool:
    """Go's url.ParseRequestURI also accepts a bare absolute path; OperatorHub links want an
    absolute http(s) URL, which is what this asks."""
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in value


def operatorframework_problems(csv: dict, bundle_annotations: dict, manifests: list[dict]) -> list[str]:
    problems: list[str] = []
    meta, spec = csv["metadata"], csv["spec"]
    annotations = meta.get("annotations") or {}

    # csv.go parseCSVNameFormat: metadata.name (and spec.replaces) is a DNS-1123 subdomain
    # `<operator>.v<semver>`; operatorhub.go checkBundleName asks for the same convention.
    for field, name in (("metadata.name", meta.get("name", "")), ("spec.replaces", spec.get("replaces"))):
        if name is None:
            continue
        if not re.fullmatch(DNS1123_SUBDOMAIN, name) or not re.fullmatch(r"[^.]+\.v" + SEMVER, name):
            problems.append(f"{field} {name!r} is not <operator-name>.v<semver>")

    # operatorhub.go checkSpecVersion: spec.version is set (a semver, as the CSV schema's
    # OperatorVersion demands), and matches the name (csv.go parses the name's version).
    version = str(spec.get("version", ""))
    if not re.fullmatch(SEMVER, version) or version == "0.0.0":
        problems.append(f"spec.version {version!r} is not a set semver")
    elif not meta.get("name", "").endswith(f".v{version}"):
        problems.append(f"metadata.name {meta.get('name')!r} does not carry spec.version {version}")

    # operatorhub.go checkSpecMinKubeVersion: a warning when missing, an error when not semver.
    if not re.fullmatch(r"v?" + SEMVER, str(spec.get("minKubeVersion", "")).strip()):
        problems.append(f"spec.minKubeVersion {spec.get('minKubeVersion')!r} is missing or not semver")

    # operatorhub.go checkSpecProviderName.
    if not (spec.get("provider") or {}).get("name"):
        problems.append("spec.provider.name is not specified")

    # operatorhub.go checkSpecMaintainers: each maintainer has both a name and an email, and the
    # email parses (net/mail).
    for m in spec.get("maintainers") or []:
        if not m.get("name") or not m.get("email"):
            problems.append(f"spec.maintainers {m}: both name and email are needed")
        if m.get("email") and not _email_ok(m["email"]):
            problems.append(f"spec.maintainers email {m['email']!r} is invalid")
    # community-operators docs/required-fields.md: maintainers, links, description, displayName.
    for key in ("maintainers", "links", "description", "displayName"):
        if not spec.get(key):
            problems.append(f"spec.{key} is empty")

    # operatorhub.go checkSpecLinks: each link has both a name and a URL, and the URL parses.
    for link in spec.get("links") or []:
        if not link.get("name") or not link.get("url"):
            problems.append(f"spec.links {link}: both name and url are needed")
        if link.get("url") and not _url_ok(link["url"]):
            problems.append(f"spec.links url {link['url']!r} is invalid")

    # operatorhub.go checkSpecIcon: one icon with both base64data and a mediatype of the list
    # (no icon: a warning).
    icons = spec.get("icon") or []
    if len(icons) != 1:
        problems.append(f"spec.icon has {len(icons)} elements, not one")
    for icon in icons:
        if not icon.get("base64data") or not icon.get("mediatype"):
            problems.append("spec.icon needs both base64data and mediatype")
        if icon.get("mediatype") and icon["mediatype"] not in ICON_MEDIATYPES:
            problems.append(f"spec.icon mediatype {icon['mediatype']!r} is not one of {sorted(ICON_MEDIATYPES)}")

    # operatorhub.go checkAnnotations: capabilities and each of the comma-separated categories
    # from the lists above.
    if "capabilities" in annotations and annotations["capabilities"] not in CAPABILITIES:
        problems.append(f"capabilities {annotations['capabilities']!r} is not a capability level")
    categories = annotations["categories"].split(",") if "categories" in annotations else []
    for category in categories:
        if category.strip() not in CATEGORIES:
            problems.append(f"category {category!r} is not one of the default categories")
    # community-operators docs/required-fields.md: capabilities, categories, containerImage and
    # description are expected; createdAt, when present, is yyyy-mm-ddThh:mm:ssZ; repository
    # is the URL of the source code.
    for key in ("capabilities", "categories", "containerImage", "description"):
        if not annotations.get(key):
            problems.append(f"metadata.annotations.{key} is missing")
    if "createdAt" in annotations and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", annotations["createdAt"]):
        problems.append(f"createdAt {annotations['createdAt']!r} is not yyyy-mm-ddThh:mm:ssZ")
    if "repository" in annotations and not _url_ok(annotations["repository"]):
        problems.append(f"repository {annotations['repository']!r} is not a URL")

    # csv.go validateInstallModes: install modes present, none twice, at least one supported.
    modes = [m["type"] for m in spec.get("installModes") or []]
    if not modes:
        problems.append("spec.installModes not found")
    if len(modes) != len(set(modes)):
        problems.append("spec.installModes has duplicates")
    if not any(m.get("supported") for m in spec.get("installModes") or []):
        problems.append("none of spec.installModes is supported")

    # csv.go validateExamplesAnnotations: every alm-examples object is of an owned API (error),
    # every owned API has an example (warning).
    owned = spec.get("customresourcedefinitions", {}).get("owned") or []
    provided = {(o["name"].split(".", 1)[1], o["version"], o["kind"]) for o in owned}
    examples = {
        (e["apiVersion"].rpartition("/")[0], e["apiVersion"].rpartition("/")[2], e["kind"])
        for e in json.loads(annotations.get("alm-examples", "[]"))
    }
    problems += [f"alm-examples {gvk} is not an owned API" for gvk in sorted(examples - provided)]
    problems += [f"owned API {gvk} has no alm-examples entry" for gvk in sorted(provided - examples)]

    # bundle.go validateOwnedCRDs: every owned group/version/kind is served by a CRD of the bundle,
    # and every CRD of the bundle is owned (the latter a warning).
    crds = [m for m in manifests if m["kind"] == "CustomResourceDefinition"]
    in_bundle = {(c["spec"]["group"], v["name"], c["spec"]["names"]["kind"]) for c in crds for v in c["spec"]["versions"]}
    problems += [f"owned CRD {gvk} is not in the bundle" for gvk in sorted(provided - in_bundle)]
    owned_gk = {(g, k) for g, _, k in provided}
    problems += [f"CRD {gvk} of the bundle is not owned by the CSV" for gvk in sorted(in_bundle) if (gvk[0], gvk[2]) not in owned_gk]

    # good_practices.go validateCrdDescriptions: owned and required CRDs have a description.
    for relation in ("owned", "required"):
        for crd in spec.get("customresourcedefinitions", {}).get(relation) or []:
            if not crd.get("description"):
                problems.append(f"{relation} CRD {crd['name']} has an empty description")

    # good_practices.go validateResourceRequests: every container of the install deployments
    # requests both CPU and memory.
    deployments = spec.get("install", {}).get("spec", {}).get("deployments") or []
    if not deployments:
        problems.append("no deployment to install in the CSV")
    service_accounts = set()
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        service_accounts.add(pod.get("serviceAccountName", ""))
        for c in pod["containers"]:
            requests = (c.get("resources") or {}).get("requests") or {}
            if not requests.get("cpu") or not requests.get("memory"):
                problems.append(f"container {c['name']} does not request both cpu and memory")

    # bundle.go validateServiceAccounts: no ServiceAccount object in the bundle has the name of a
    # deployment's service account (OLM creates those).
    for m in manifests:
        if m["kind"] == "ServiceAccount" and m["metadata"]["name"] in service_accounts:
            problems.append(f"ServiceAccount {m['metadata']['name']} of the bundle is the deployment's")

    # object.go validatePDB, validatePriorityClass: a bundled PDB never forbids every eviction
    # (maxUnavailable 0 or 0%, minAvailable 100%); a bundled PriorityClass is no global default.
    for m in manifests:
        if m["kind"] == "PodDisruptionBudget":
            if m["spec"].get("maxUnavailable") in (0, "0%"):
                problems.append("PodDisruptionBudget maxUnavailable field cannot be set to 0 or 0%")
            if m["spec"].get("minAvailable") == "100%":
                problems.append("PodDisruptionBudget minAvailable field cannot be set to 100%")
        if m["kind"] == "PriorityClass" and m.get("globalDefault"):
            problems.append("PriorityClass globalDefault field cannot be set to true")

    # good_practices.go validateHubChannels: the channels and the default channel follow the
    # naming convention (CHANNEL above). The default channel must be one of the channels for
    # OLM to resolve it (operator-registry's bundle annotations).
    channels = [c.strip() for c in bundle_annotations.get("operators.operatorframework.io.bundle.channels.v1", "").split(",")]
    default = bundle_annotations.get("operators.operatorframework.io.bundle.channel.default.v1")
    for channel in sorted(set(channels + ([default] if default else []))):
        if not re.fullmatch(CHANNEL, channel):
            problems.append(f"channel {channel!r} does not follow the candidate/fast/stable naming convention")
    if default is not None and default not in channels:
        problems.append(f"default channel {default!r} is not one of the channels {channels}")
    return problems


@pytest.fixture(scope="module")
def bundle_annotations() -> dict:
    return yaml.safe_load((OLM / "metadata" / "annotations.yaml").read_text())["annotations"]


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return [doc for path in sorted(MANIFESTS.iterdir()) for doc in load_docs(path)]


def test_bundle_passes_the_operatorframework_validators(csv, bundle_annotations, manifests):
    assert operatorframework_problems(csv, bundle_annotations, manifests) == []


def _manifest(manifests: list[dict], kind: str) -> dict:
    (found,) = [m for m in manifests if m["kind"] == kind]
    return found


def _first_container(csv: dict) -> dict:
    return csv["spec"]["install"]["spec"]["deployments"][0]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda c, a: c["spec"]["maintainers"][0].pop("email"), "both name and email"),
        (lambda c, a: c["spec"]["maintainers"][0].update(email="maintainers at sluice"), "email 'maintainers at sluice' is invalid"),
        (lambda c, a: c["spec"]["provider"].pop("name"), "provider.name"),
        (lambda c, a: c["spec"]["links"][0].update(url="github.com/sluice-dev"), "is invalid"),
        (lambda c, a: c["spec"]["icon"][0].update(mediatype="image/webp"), "mediatype 'image/webp'"),
        (lambda c, a: c["metadata"]["annotations"].update(categories="Networking, Ingress"), "category ' Ingress'"),
        (lambda c, a: c["metadata"]["annotations"].update(capabilities="Basic"), "capability level"),
        (lambda c, a: c["metadata"]["annotations"].update(createdAt="2025-01-01"), "createdAt"),
        (lambda c, a: c["metadata"]["annotations"].pop("containerImage"), "containerImage"),
        (lambda c, a: c["spec"].update(version="0.1"), "spec.version"),
        (lambda c, a: c["spec"].update(minKubeVersion="1.30.x"), "minKubeVersion"),
        (lambda c, a: c["metadata"].update(name="sluice-0.1.0"), "metadata.name"),
        (lambda c, a: [m.update(supported=False) for m in c["spec"]["installModes"]], "none of spec.installModes"),
        (lambda c, a: c["spec"]["customresourcedefinitions"]["owned"][0].pop("description"), "empty description"),
        (lambda c, a: _first_container(c)["resources"]["requests"].pop("cpu"), "request both cpu and memory"),
        (lambda c, a: a.update({"operators.operatorframework.io.bundle.channels.v1": "alpha"}), "channel 'alpha'"),
        (lambda c, a: a.update({"operators.operatorframework.io.bundle.channel.default.v1": "stable"}), "default channel 'stable'"),
        (lambda c, a, m: _manifest(m, "PodDisruptionBudget")["spec"].update(minAvailable="100%"), "minAvailable field"),
        (lambda c, a, m: _manifest(m, "PodDisruptionBudget")["spec"].update(maxUnavailable=0), "maxUnavailable field"),
        (lambda c, a, m: _manifest(m, "PriorityClass").update(globalDefault=True), "globalDefault field"),
    ],
)
def test_the_validator_rules_catch_mistakes(csv, bundle_annotations, manifests, change, problem):
    bad_csv, bad_annotations = json.loads(json.dumps(csv)), dict(bundle_annotations)
    bad_manifests = json.loads(json.dumps(manifests))
    if change.__code__.co_argcount == 3:
        change(bad_csv, bad_annotations, bad_manifests)
    else:
        change(bad_csv, bad_annotations)
    problems = operatorframework_problems(bad_csv, bad_annotations, bad_manifests)
    assert any(problem in p for p in problems), problems
