"""Shared helpers of the install-package tests (config/, config/helm/sluice, olm/, Dockerfile).

Run with `make test-install` (part of `make test`). The Python tools come from
tests/install/requirements.txt; a missing one is an error, never a skip.
"""

from __future__ import annotations

import copy
import pathlib
import re
import shutil
import subprocess

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # pragma: no cover - the message is the point
    raise SystemExit(
        f"tests/install needs {e.name}: run `make setup` (installs tests/install/requirements.txt into .venv)"
    ) from e

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds" / "sluice-crds.yaml"
CHART = ROOT / "config" / "helm" / "sluice"

# Kubernetes version the built-in kinds are validated against.
KUBERNETES_VERSION = "1.35.0"


def load_docs(path: pathlib.Path | str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def workspace_version() -> str:
    text = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    match = re.search(r'^\[workspace\.package\]\n(?:.*\n)*?version = "([^"]+)"', text, re.MULTILINE)
    assert match, "no [workspace.package] version in Cargo.toml"
    return match.group(1)


def rust_const(path: str, name: str) -> str:
    """The value of a `const NAME: &str = "..."` in operator source."""
    text = (ROOT / path).read_text(encoding="utf-8")
    match = re.search(rf'const {name}: &str = "([^"]*)";', text)
    assert match, f"{path}: no string constant {name}"
    return match.group(1)


def cli_default(flag_field: str) -> str:
    """The `default_value` clap attribute right above `pub <flag_field>:` in cli.rs (RunArgs)."""
    text = (ROOT / "operator" / "src" / "cli.rs").read_text(encoding="utf-8")
    run_args = text[text.index("pub struct RunArgs") :]
    match = re.search(
        rf'default_value = "([^"]*)"\s*\)\]\s*pub {flag_field}:|default_value = "([^"]*)"\s*\]\s*pub {flag_field}:',
        run_args,
    )
    assert match, f"cli.rs RunArgs: no default_value for {flag_field}"
    return match.group(1) or match.group(2)


# --- kustomize -------------------------------------------------------------------------------

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources"}


def kustomize(directory: pathlib.Path) -> list[dict]:
    """The objects `kubectl apply -k DIRECTORY` applies, for kustomizations that only list
    `resources` (files or directories with their own kustomization.yaml); anything else is an
    error, so that this stays faithful to kustomize."""
    kfile = directory / "kustomization.yaml"
    assert kfile.is_file(), f"{directory}: no kustomization.yaml"
    (k,) = load_docs(kfile)
    assert k.get("kind") == "Kustomization", f"{kfile}: not a Kustomization"
    extra = set(k) - KUSTOMIZATION_KEYS
    assert not extra, f"{kfile}: fields {sorted(extra)} are not understood by tests/install"
    objects: list[dict] = []
    for entry in k["resources"]:
        path = (directory / entry).resolve()
        assert path.is_relative_to(directory.resolve()), f"{kfile}: {entry} is outside {directory}"
        if path.is_dir():
            objects += kustomize(path)
        else:
            objects += load_docs(path)
    return objects


def kubectl_kustomize(directory: pathlib.Path) -> list[dict] | None:
    """`kubectl kustomize DIRECTORY` when kubectl is installed (it is not on CI machines)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run([kubectl, "kustomize", str(directory)], check=True, capture_output=True, text=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def object_id(obj: dict) -> tuple[str, str, str, str]:
    meta = obj.get("metadata", {})
    return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))


# --- validation ------------------------------------------------------------------------------

# Kinds that are not part of Kubernetes, so kubernetes-validate has no schema for them.
CUSTOM_KINDS = {"Gateway", "IngressRoute", "TLSCertificateDelegation", "ServiceMonitor"}


def validate_builtin(obj: dict) -> None:
    """Validates a built-in Kubernetes object (strict: unknown fields are errors)."""
    assert obj.get("kind") not in CUSTOM_KINDS, f"{object_id(obj)} is a custom resource"
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise AssertionError(f"{object_id(obj)}: {e.message} at {'.'.join(map(str, e.path))}") from None


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD in crds/sluice-crds.yaml."""
    out = {}
    for crd in load_docs(CRDS):
        group = crd["spec"]["group"]
        for v in crd["spec"]["versions"]:
            out[(f"{group}/{v['name']}", crd["spec"]["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    return out


def structural_to_jsonschema(schema: dict, strict: bool) -> dict:
    """Turns a Kubernetes structural schema into JSON Schema: `nullable`,
    `x-kubernetes-int-or-string`; with `strict`, objects with `properties` reject unknown
    fields (the API server would silently prune them)."""

    def walk(s: dict) -> dict:
        s = {k: v for k, v in s.items()}
        if s.pop("x-kubernetes-int-or-string", False):
            s.pop("type", None)
            s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if s.pop("nullable", False) and "type" in s:
            s["type"] = [s["type"], "null"]
            if "enum" in s and None not in s["enum"]:
                s["enum"] = [*s["enum"], None]
        if "properties" in s:
            s["properties"] = {k: walk(v) for k, v in s["properties"].items()}
            if strict and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
                s["additionalProperties"] = False
        if isinstance(s.get("additionalProperties"), dict):
            s["additionalProperties"] = walk(s["additionalProperties"])
        if "items" in s and isinstance(s["items"], dict):
            s["items"] = walk(s["items"])
        for key in ("anyOf", "oneOf", "allOf"):
            if key in s:
                s[key] = [walk(x) for x in s[key]]
        return s

    out = walk(copy.deepcopy(schema))
    # apiVersion, kind and metadata are not in a CRD's schema; the API server handles them.
    out.setdefault("properties", {})
    for key in ("apiVersion", "kind"):
        out["properties"].setdefault(key, {"type": "string"})
    out["properties"].setdefault("metadata", {"type": "object"})
    return out


def validate_custom(obj: dict) -> None:
    """Validates a Gateway, IngressRoute or TLSCertificateDelegation against its CRD (strict)."""
    schemas = crd_schemas()
    key = (obj.get("apiVersion"), obj.get("kind"))
    assert key in schemas, f"{object_id(obj)}: no CRD in crds/ for {key}"
    validator = jsonschema.Draft7Validator(structural_to_jsonschema(schemas[key], strict=True))
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, f"{object_id(obj)}: " + "; ".join(
        f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors
    )


# --- RBAC ------------------------------------------------------------------------------------


def rule_grants(rules: list[dict]) -> set[tuple[str, str, str, str]]:
    """Rules as a set of (apiGroup, resource, verb, resourceName or "*") grants, so that two
    rule lists compare equal whatever their grouping and order."""
    grants = set()
    for r in rules:
        names = r.get("resourceNames") or ["*"]
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for verb in r.get("verbs", []):
                    for name in names:
                        grants.add((g, res, verb, name))
    return grants
