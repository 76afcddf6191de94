//! A generated world of N roots for benchmarks: each root IngressRoute (namespace `root-I`,
//! host `rI.bench.local`) has one route of its own (`/own`, Service `own`) and one delegated to
//! a child IngressRoute in namespace `child-I` (`/child`, Service `svc`); every Service has
//! Endpoints (or an EndpointSlice) at 127.0.0.1 on the backend's port. Every tenth root is TLS
//! with a certificate made for it by a test CA.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::tls::TestCa;
use crate::{Error, Result};

/// How the objects are spread over files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One file per object, in a directory per namespace.
    FilePerObject,
    /// Every object in one multi-document file.
    OneFile,
}

#[derive(Clone, Debug)]
pub struct World {
    pub roots: usize,
    pub backend_port: u16,
    /// EndpointSlices instead of Endpoints.
    pub slices: bool,
}

/// The host of root `i`.
pub fn host(i: usize) -> String {
    format!("r{i}.bench.local")
}

/// Whether root `i` is TLS (every tenth; plain HTTP to it redirects to HTTPS).
pub fn is_tls(i: usize) -> bool {
    i.is_multiple_of(10)
}

/// Root `i`'s IngressRoute, its own route matching `own_path`.
pub fn root_route(i: usize, own_path: &str) -> String {
    let mut vhost = json!({"fqdn": host(i)});
    if is_tls(i) {
        vhost["tls"] = json!({"secretName": "tls"});
    }
    json!({
        "apiVersion": "contour.heptio.com/v1beta1",
        "kind": "IngressRoute",
        "metadata": {"namespace": format!("root-{i}"), "name": "root"},
        "spec": {
            "virtualhost": vhost,
            "routes": [
                {"match": own_path, "services": [{"name": "own", "port": 80}]},
                {"match": "/child", "delegate": {"name": "child", "namespace": format!("child-{i}")}}
            ]
        }
    })
    .to_string()
}

fn child_route(i: usize) -> String {
    json!({
        "apiVersion": "contour.heptio.com/v1beta1",
        "kind": "IngressRoute",
        "metadata": {"namespace": format!("child-{i}"), "name": "child"},
        "spec": {"routes": [{"match": "/child", "services": [{"name": "svc", "port": 80}]}]}
    })
    .to_string()
}

fn service(namespace: &str, name: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}
    })
    .to_string()
}

/// The Endpoints (or, with `world.slices`, the EndpointSlice `<name>-1`) of Service
/// `namespace/name`: 127.0.0.1 on `world.backend_port`.
pub fn endpoints(world: &World, namespace: &str, name: &str) -> String {
    if world.slices {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": namespace, "name": format!("{name}-1"),
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "protocol": "TCP", "port": world.backend_port}]
        })
        .to_string()
    } else {
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"namespace": namespace, "name": name},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                         "ports": [{"name": "http", "protocol": "TCP", "port": world.backend_port}]}]
        })
        .to_string()
    }
}

/// The file root `i`'s IngressRoute is in, for edits.
pub fn root_route_file(dir: &Path, layout: Layout, i: usize) -> PathBuf {
    match layout {
        Layout::FilePerObject => dir.join(format!("root-{i}/ingressroute.yaml")),
        Layout::OneFile => dir.join("world.yaml"),
    }
}

/// Every object of the world as (relative file, document), in a stable order.
pub fn documents(world: &World, ca: &TestCa) -> Result<Vec<(String, String)>> {
    let mut docs = Vec::with_capacity(world.roots * 7);
    for i in 0..world.roots {
        let root = format!("root-{i}");
        let child = format!("child-{i}");
        docs.push((format!("{root}/ingressroute.yaml"), root_route(i, "/own")));
        docs.push((format!("{root}/service.yaml"), service(&root, "own")));
        docs.push((
            format!("{root}/endpoints.yaml"),
            endpoints(world, &root, "own"),
        ));
        if is_tls(i) {
            let cert = ca.issue(&[&host(i)])?;
            docs.push((
                format!("{root}/secret.yaml"),
                crate::manifests::tls_secret(&root, "tls", &cert),
            ));
        }
        docs.push((format!("{child}/ingressroute.yaml"), child_route(i)));
        docs.push((format!("{child}/service.yaml"), service(&child, "svc")));
        docs.push((
            format!("{child}/endpoints.yaml"),
            endpoints(world, &child, "svc"),
        ));
    }
    Ok(docs)
}

/// The namespaces of the world (`root-I`, `child-I`), for an API server that needs them.
pub fn namespaces(world: &World) -> Vec<String> {
    (0..world.roots)
        .flat_map(|i| [format!("root-{i}"), format!("child-{i}")])
        .collect()
}

/// Writes the world under `dir` in `layout`.
pub fn write(dir: &Path, layout: Layout, docs: &[(String, String)]) -> Result<()> {
    let io = |what: String| Error::io(what);
    match layout {
        Layout::FilePerObject => {
            for (file, doc) in docs {
                let path = dir.join(file);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io(format!("creating {}", parent.display())))?;
                }
                std::fs::write(&path, doc).map_err(io(format!("writing {}", path.display())))?;
            }
        }
        Layout::OneFile => {
            let text: String = docs.iter().map(|(_, d)| format!("---\n{d}\n")).collect();
            let path = dir.join("world.yaml");
            std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        }
    }
    Ok(())
}

/// Replaces root `i`'s IngressRoute (its own route now matching `own_path`) in place.
pub fn edit_root(
    dir: &Path,
    layout: Layout,
    docs: &mut [(String, String)],
    i: usize,
    own_path: &str,
) -> Result<()> {
    let file = format!("root-{i}/ingressroute.yaml");
    if let Some(doc) = docs.iter_mut().find(|(f, _)| *f == file) {
        doc.1 = root_route(i, own_path);
    }
    match layout {
        Layout::FilePerObject => {
            let path = root_route_file(dir, layout, i);
            std::fs::write(&path, root_route(i, own_path))
                .map_err(Error::io(format!("writing {}", path.display())))
        }
        Layout::OneFile => write(dir, layout, docs),
    }
}
