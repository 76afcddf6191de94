//! Every example group's configuration, as `sluice render` produces it, is accepted by a real
//! Envoy (`envoy --mode validate`) with every route, endpoint and certificate made static, so
//! Envoy checks all of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};

fn example_groups() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut groups: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|p| {
            // One directory per feature: each Traefik example on its own.
            if p.ends_with("traefik") {
                std::fs::read_dir(&p)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect()
            } else {
                vec![p]
            }
        })
        .collect();
    groups.sort();
    groups
}

#[tokio::test]
async fn envoy_accepts_every_example() {
    let groups = example_groups();
    assert!(
        groups.len() > 20,
        "expected the example groups, found {groups:?}"
    );
    let opts = TranslateOptions::default();
    for group in groups {
        let loaded = sluice::source::load_dir(&group).unwrap();
        assert!(
            loaded.errors.is_empty(),
            "{}: {:?}",
            group.display(),
            loaded.errors
        );
        for sel in sluice::dag::instances(&loaded.snapshot) {
            let dag = sluice::dag::build(&loaded.snapshot, &sel);
            let resources = translate(&dag, &opts)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", group.display(), sel.gateway));
            let bootstrap = inline_bootstrap(&resources, &opts).unwrap();
            let json = serde_json::to_string_pretty(&message_to_json(&bootstrap).unwrap()).unwrap();
            if let Err(e) = sluice_e2e::envoy::validate(&json).await {
                panic!(
                    "{} ({}): Envoy rejected the configuration: {e}",
                    group.display(),
                    sel.gateway
                );
            }
        }
    }
}
