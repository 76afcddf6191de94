"""`helm template` and `helm lint` with the real Helm library (the helm-sdkpy package).

helm-sdkpy has no template action, so rendering runs Helm's install action (wait off) against
the in-memory API of fakekube.py: what Helm would create is recorded there, and the release's
manifest is exactly `helm template`'s output. The install runs in a child process started
with HELM_DRIVER=memory (releases kept in memory, not in Secrets): the Go library reads the
environment the process started with, so setting it from Python would be too late.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import helm_sdkpy
import yaml

from fakekube import FakeKube

SEVERITIES = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


def lint(chart: pathlib.Path) -> list[tuple[str, str]]:
    """(severity, path) of every lint message. helm-sdkpy loses the message texts; run
    `helm lint` itself for those."""
    config = helm_sdkpy.Configuration(namespace="default")
    result = asyncio.run(helm_sdkpy.Lint(config).run(str(chart)))
    return [(SEVERITIES.get(m["Severity"], str(m["Severity"])), m["Path"]) for m in result.get("Messages") or []]


class HelmError(Exception):
    pass


class Rendered:
    def __init__(self, manifest: list[dict], created: list[dict]):
        # The chart's templates, rendered (what `helm template --skip-crds` prints).
        self.manifest = manifest
        # What Helm sent to the API server, CRDs from crds/ first.
        self.created = created

    def one(self, kind: str, name: str) -> dict:
        found = [o for o in self.manifest if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]


def template(chart: pathlib.Path, values: dict | None = None, namespace: str = "sluice-system") -> Rendered:
    """Renders `chart` with `values` for a release `sluice` in `namespace`; raises HelmError
    with Helm's message when Helm refuses (bad values, broken templates)."""
    with FakeKube() as kube, tempfile.TemporaryDirectory() as tmp:
        request = {
            "chart": str(chart),
            "namespace": namespace,
            "values": values or {},
            "kubeconfig": kube.write_kubeconfig(f"{tmp}/kubeconfig"),
        }
        child = subprocess.run(
            [sys.executable, __file__],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env={**os.environ, "HELM_DRIVER": "memory"},
            timeout=300,
        )
        if child.returncode != 0:
            raise HelmError(child.stderr.strip() or f"helm exited with {child.returncode}")
        release = json.loads(child.stdout)
        manifest = [d for d in yaml.safe_load_all(release["manifest"]) if d is not None]
        return Rendered(manifest, list(kube.created))


def _install(request: dict) -> dict:
    assert os.environ.get("HELM_DRIVER") == "memory"
    config = helm_sdkpy.Configuration(namespace=request["namespace"], kubeconfig=request["kubeconfig"])
    return asyncio.run(
        helm_sdkpy.Install(config).run("sluice", request["chart"], values=request["values"], wait=False, timeout=60)
    )


if __name__ == "__main__":
    try:
        print(json.dumps(_install(json.loads(sys.stdin.read()))))
    except helm_sdkpy.HelmError as e:
        sys.exit(f"{type(e).__name__}: {e}")
