//! A directory of Kubernetes manifests for `sluice standalone --manifests DIR` and
//! `sluice render`, plus builders for the plain Kubernetes objects tests need around
//! IngressRoutes (a Service whose Endpoints are test backends on 127.0.0.1).
//!
//! Builders return YAML text (JSON is YAML) and know nothing of the operator's types.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::tls::CertKey;
use crate::{Error, Result, TempDir, temp_dir};

/// A temporary manifest directory, removed on drop.
#[derive(Debug)]
pub struct Manifests {
    dir: TempDir,
}

impl Manifests {
    pub fn new() -> Result<Manifests> {
        Ok(Manifests { dir: temp_dir()? })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes (or replaces) `file_name` (may contain subdirectories) with `yaml`, atomically:
    /// the content goes to a hidden `.partial` file first and is renamed, so a watcher never
    /// reads half a file.
    pub fn write(&self, file_name: &str, yaml: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(file_name);
        let parent = path.parent().unwrap_or(self.dir.path());
        std::fs::create_dir_all(parent)
            .map_err(Error::io(format!("creating {}", parent.display())))?;
        let base = path.file_name().unwrap_or_default().to_string_lossy();
        let partial = parent.join(format!(".{base}.partial"));
        std::fs::write(&partial, yaml)
            .map_err(Error::io(format!("writing {}", partial.display())))?;
        std::fs::rename(&partial, &path)
            .map_err(Error::io(format!("renaming to {}", path.display())))?;
        Ok(path)
    }

    /// Deletes `file_name`.
    pub fn remove(&self, file_name: &str) -> Result<()> {
        let path = self.dir.path().join(file_name);
        std::fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))
    }
}

/// `value` as one document of a YAML stream: a `---` line, then the value (JSON is YAML), so that
/// several of these concatenate into one valid stream.
pub fn doc(value: &serde_json::Value) -> String {
    format!("---\n{value}\n")
}

/// A `traefik.io/v1alpha1` object of `kind` (`IngressRoute`, `Middleware`, `TraefikService`…)
/// named `namespace/name` with `spec`, as one [`doc`]. `created`, when given, is its
/// `creationTimestamp`, which decides host ownership between claimants.
pub fn traefik(
    kind: &str,
    namespace: &str,
    name: &str,
    created: Option<&str>,
    spec: serde_json::Value,
) -> String {
    let mut metadata = json!({"namespace": namespace, "name": name});
    if let Some(created) = created {
        metadata["creationTimestamp"] = json!(created);
    }
    doc(&json!({
        "apiVersion": "traefik.io/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    }))
}

/// Name of the single port of services built by [`service`].
pub const SERVICE_PORT_NAME: &str = "http";

/// A `Service` `namespace/name` with one TCP port `port` (named [`SERVICE_PORT_NAME`]) and its
/// `Endpoints`: one subset per backend port, each with address 127.0.0.1, so the service's
/// endpoints are the test backends listening on `backend_ports`.
pub fn service(namespace: &str, name: &str, port: u16, backend_ports: &[u16]) -> String {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "ports": [{"name": SERVICE_PORT_NAME, "protocol": "TCP", "port": port}]
        }
    });
    let subsets: Vec<_> = backend_ports
        .iter()
        .map(|p| {
            json!({
                "addresses": [{"ip": "127.0.0.1"}],
                "ports": [{"name": SERVICE_PORT_NAME, "protocol": "TCP", "port": p}]
            })
        })
        .collect();
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"namespace": namespace, "name": name},
        "subsets": subsets
    });
    // Starts with a separator so that several of these concatenate into one valid stream.
    format!("---\n{service}\n---\n{endpoints}\n")
}

/// A `kubernetes.io/tls` Secret `namespace/name` holding `cert` (`tls.crt`, `tls.key`).
pub fn tls_secret(namespace: &str, name: &str, cert: &CertKey) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": STANDARD.encode(&cert.cert_pem),
            "tls.key": STANDARD.encode(&cert.key_pem),
        }
    })
    .to_string()
        + "\n"
}

/// An opaque Secret `namespace/name` holding a CA bundle under `ca.crt` (upstream validation).
pub fn ca_secret(namespace: &str, name: &str, ca_pem: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "type": "Opaque",
        "data": {"ca.crt": STANDARD.encode(ca_pem)}
    })
    .to_string()
        + "\n"
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_and_leaves_no_partial_files() {
        let m = Manifests::new().unwrap();
        m.write("a.yaml", "one").unwrap();
        m.write("a.yaml", "two").unwrap();
        assert_eq!(
            std::fs::read_to_string(m.path().join("a.yaml")).unwrap(),
            "two"
        );
        let names: Vec<_> = std::fs::read_dir(m.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["a.yaml"]);
        m.remove("a.yaml").unwrap();
        assert!(m.remove("a.yaml").is_err());
        let nested = m.write("team/b.yaml", "three").unwrap();
        assert_eq!(std::fs::read_to_string(nested).unwrap(), "three");
    }

    #[test]
    fn tls_secret_carries_base64_pem() {
        let cert = CertKey {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let doc: serde_json::Value = serde_json::from_str(&tls_secret("ns", "s", &cert)).unwrap();
        assert_eq!(doc["type"], "kubernetes.io/tls");
        assert_eq!(doc["data"]["tls.crt"], STANDARD.encode("CERT"));
        assert_eq!(doc["data"]["tls.key"], STANDARD.encode("KEY"));
        let ca: serde_json::Value = serde_json::from_str(&ca_secret("ns", "c", "CA")).unwrap();
        assert_eq!(ca["data"]["ca.crt"], STANDARD.encode("CA"));
    }

    #[test]
    fn service_lists_each_backend_as_an_endpoint() {
        let text = service("team", "web", 80, &[31001, 31002]);
        // The text starts with a separator, so that several concatenate into one stream.
        let docs: Vec<serde_json::Value> = text
            .strip_prefix("---\n")
            .unwrap()
            .split("\n---\n")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(docs[0]["kind"], "Service");
        assert_eq!(docs[0]["spec"]["ports"][0]["port"], 80);
        assert_eq!(docs[1]["kind"], "Endpoints");
        assert_eq!(docs[1]["metadata"]["name"], "web");
        let ports: Vec<_> = docs[1]["subsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["ports"][0]["port"].as_u64().unwrap())
            .collect();
        assert_eq!(ports, [31001, 31002]);
    }
}
