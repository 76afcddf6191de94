//! Copies the protobuf descriptors that `envoy-types` ships (`src/generated/types.bin`, not
//! exported by the crate) into OUT_DIR, so `xds::translate::json` can render Envoy resources in
//! proto3 JSON with `prost-reflect`. The crate's directory comes from `cargo metadata`, so the
//! descriptors always belong to the exact `envoy-types` this crate links.

use std::{env, fs, path::PathBuf, process::Command};

use serde_json::Value;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    if let Err(e) = copy_envoy_descriptors() {
        // A build script has no better channel than a failed build with a clear message.
        eprintln!("error: locating envoy-types descriptors: {e}");
        std::process::exit(1);
    }
}

fn copy_envoy_descriptors() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = manifest_dir.join("Cargo.toml");

    // Offline first: everything is normally in the package cache already. Metadata also wants
    // the manifests of packages this build did not fetch (dev-dependencies, in a plain
    // `cargo build` on a fresh machine), so fall back to letting cargo download them unless the
    // build itself is offline.
    let mut output = cargo_metadata(&cargo, &manifest, true)?;
    let offline_build = env::var("CARGO_NET_OFFLINE").is_ok_and(|v| v == "true" || v == "1");
    if !output.status.success() && !offline_build {
        output = cargo_metadata(&cargo, &manifest, false)?;
    }
    if !output.status.success() {
        return Err(format!(
            "{cargo} metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let meta: Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let envoy_manifest = envoy_types_manifest(&meta, &manifest)?;
    let dir = PathBuf::from(envoy_manifest)
        .parent()
        .map(PathBuf::from)
        .ok_or("envoy-types manifest path has no parent")?;
    let src = dir.join("src").join("generated").join("types.bin");
    fs::copy(&src, out_dir.join("envoy_types.bin"))
        .map_err(|e| format!("copying {}: {e}", src.display()))?;
    println!("cargo:rerun-if-changed={}", src.display());
    Ok(())
}

fn cargo_metadata(
    cargo: &str,
    manifest: &std::path::Path,
    offline: bool,
) -> Result<std::process::Output, String> {
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--locked"])
        .arg("--manifest-path")
        .arg(manifest);
    // Only this target's packages: others may never have been downloaded.
    if let Ok(target) = env::var("TARGET") {
        cmd.args(["--filter-platform", &target]);
    }
    if offline {
        cmd.arg("--offline");
    }
    cmd.output()
        .map_err(|e| format!("running {cargo} metadata: {e}"))
}

/// The manifest path of the `envoy-types` package that this package depends on.
fn envoy_types_manifest(meta: &Value, own_manifest: &std::path::Path) -> Result<String, String> {
    let packages = meta["packages"]
        .as_array()
        .ok_or("metadata has no packages")?;
    let own_manifest = own_manifest.to_string_lossy();
    let own_id = packages
        .iter()
        .find(|p| p["manifest_path"].as_str() == Some(own_manifest.as_ref()))
        .and_then(|p| p["id"].as_str())
        .ok_or("this package is missing from cargo metadata")?;
    let nodes = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("metadata has no resolve graph")?;
    let envoy_id = nodes
        .iter()
        .find(|n| n["id"].as_str() == Some(own_id))
        .and_then(|n| n["deps"].as_array())
        .and_then(|deps| {
            deps.iter()
                .find(|d| d["name"].as_str() == Some("envoy_types"))
                .and_then(|d| d["pkg"].as_str())
        })
        .ok_or("envoy-types is not a dependency of this package")?;
    packages
        .iter()
        .find(|p| p["id"].as_str() == Some(envoy_id))
        .and_then(|p| p["manifest_path"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| "envoy-types package not found in metadata".to_owned())
}
