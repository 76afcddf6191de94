"""A minimal in-memory Kubernetes API, enough for Helm's install action (`helm template` with
the real Helm library, whose Python binding has no template action of its own).

It serves discovery for a fixed set of kinds, `GET` (404 until created), `POST` (stores and
echoes the object) and empty lists and watches. CustomResourceDefinitions are reported
Established as soon as they exist. It validates nothing: the tests validate what it records.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# (group, version) -> [(plural, kind, namespaced)]
RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [
        ("namespaces", "Namespace", False),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("secrets", "Secret", True),
        ("configmaps", "ConfigMap", True),
        ("pods", "Pod", True),
        ("endpoints", "Endpoints", True),
    ],
    ("apps", "v1"): [
        ("deployments", "Deployment", True),
        ("daemonsets", "DaemonSet", True),
    ],
    ("rbac.authorization.k8s.io", "v1"): [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    ("apiextensions.k8s.io", "v1"): [
        ("customresourcedefinitions", "CustomResourceDefinition", False),
    ],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
    ("discovery.k8s.io", "v1"): [("endpointslices", "EndpointSlice", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("scheduling.k8s.io", "v1"): [("priorityclasses", "PriorityClass", False)],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", True)],
    ("sluice.dev", "v1alpha1"): [("gateways", "Gateway", True)],
    ("contour.heptio.com", "v1beta1"): [
        ("ingressroutes", "IngressRoute", True),
        ("tlscertificatedelegations", "TLSCertificateDelegation", True),
    ],
}

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resource_list(group: str, version: str) -> dict:
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": [
            {"name": plural, "singularName": kind.lower(), "namespaced": ns, "kind": kind, "verbs": VERBS}
            for plural, kind, ns in RESOURCES[(group, version)]
        ],
    }


def _group_list() -> dict:
    groups = []
    for group, version in RESOURCES:
        if not group:
            continue
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _not_found(path: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": f"{path} not found",
        "reason": "NotFound",
        "code": 404,
    }


class FakeKube:
    """Runs the server on 127.0.0.1 (a free port) in a thread; `created` lists what was POSTed."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.created: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_PUT(self) -> None:
                self._send(405, {"kind": "Status", "code": 405, "message": "not supported"})

            do_PATCH = do_PUT
            do_DELETE = do_PUT

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                path = url.path.rstrip("/")
                if path == "/version":
                    return self._send(200, {"major": "1", "minor": "35", "gitVersion": "v1.35.0"})
                if path == "/api":
                    return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
                if path == "/apis":
                    return self._send(200, _group_list())
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "v1"] and len(parts) == 2:
                    return self._send(200, _resource_list("", "v1"))
                if parts[0] == "apis" and len(parts) == 3 and (parts[1], parts[2]) in RESOURCES:
                    return self._send(200, _resource_list(parts[1], parts[2]))
                with fake.lock:
                    obj = fake.objects.get(path)
                    if obj is not None:
                        return self._send(200, obj)
                    if "watch=true" in (url.query or "") or "watch=1" in (url.query or ""):
                        return self._send(200, {})
                    # A collection: list what is stored below it.
                    items = [o for p, o in fake.objects.items() if p.rsplit("/", 1)[0] == path]
                if _is_collection(parts):
                    return self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
                return self._send(404, _not_found(path))

            def do_POST(self) -> None:
                path = urlsplit(self.path).path.rstrip("/")
                length = int(self.headers.get("Content-Length", "0"))
                obj = json.loads(self.rfile.read(length) or b"{}")
                stored = json.loads(json.dumps(obj))
                meta = stored.setdefault("metadata", {})
                meta.setdefault("resourceVersion", "1")
                meta.setdefault("uid", f"uid-{len(fake.created)}")
                if obj.get("kind") == "CustomResourceDefinition":
                    stored["status"] = {
                        "conditions": [
                            {"type": "Established", "status": "True"},
                            {"type": "NamesAccepted", "status": "True"},
                        ],
                        "acceptedNames": stored.get("spec", {}).get("names", {}),
                    }
                with fake.lock:
                    fake.created.append(obj)
                    fake.objects[f"{path}/{meta.get('name')}"] = stored
                return self._send(201, stored)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(self, path: str) -> str:
        """Writes a kubeconfig (JSON, a subset of YAML) pointing at this server; returns path."""
        text = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def __enter__(self) -> "FakeKube":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _is_collection(parts: list[str]) -> bool:
    # /api/v1/<plural>, /api/v1/namespaces/<ns>/<plural>, /apis/<g>/<v>/... likewise
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    return len(rest) == 1 or (len(rest) == 3 and rest[0] == "namespaces")
