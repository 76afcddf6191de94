#!/usr/bin/env python3
"""Copies crds/sluice-crds.yaml to the install packages that carry the CRDs:

- config/crd/sluice-crds.yaml            (kustomize cannot read files outside config/)
- config/helm/sluice/crds/sluice-crds.yaml
- olm/manifests/<crd name>.crd.yaml      (a bundle holds one object per file)

`make crds` runs it after regenerating crds/sluice-crds.yaml; tests/install checks the copies.
Standard library only.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "crds" / "sluice-crds.yaml"
COPIES = [
    ROOT / "config" / "crd" / "sluice-crds.yaml",
    ROOT / "config" / "helm" / "sluice" / "crds" / "sluice-crds.yaml",
]
OLM_MANIFESTS = ROOT / "olm" / "manifests"


def split_documents(text: str) -> list[str]:
    """The YAML documents of `text`, each without its `---` line."""
    docs = re.split(r"^---[ \t]*\n", text, flags=re.MULTILINE)
    return [d for d in docs if d.strip()]


def crd_name(doc: str) -> str:
    match = re.search(r"^metadata:\n(?:  .*\n)*?  name: (\S+)$", doc, flags=re.MULTILINE)
    if not match:
        sys.exit(f"{SOURCE}: a document has no metadata.name")
    return match.group(1)


def olm_file(name: str) -> pathlib.Path:
    return OLM_MANIFESTS / f"{name}.crd.yaml"


def main() -> None:
    text = SOURCE.read_text(encoding="utf-8")
    for copy in COPIES:
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text, encoding="utf-8")
    OLM_MANIFESTS.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for doc in split_documents(text):
        path = olm_file(crd_name(doc))
        wanted.add(path)
        path.write_text(doc, encoding="utf-8")
    for stale in OLM_MANIFESTS.glob("*.crd.yaml"):
        if stale not in wanted:
            stale.unlink()


if __name__ == "__main__":
    main()
