//! The `sluice` binary's command line, run as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// The bash script loads into a plain bash without a message, registers `sluice`, and completes
/// a subcommand from its prefix.
#[test]
fn bash_completions_source_cleanly_and_complete_a_subcommand() {
    let script = Command::new(SLUICE)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(script.status.success(), "{script:?}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    // What bash sets before calling a completion function for `sluice ren<TAB>`.
    let probe = format!(
        r#"set -u
source '{}' || exit 10
complete -p sluice >/dev/null || exit 11
fn=$(complete -p sluice | sed -E 's/.*-F ([^ ]+).*/\1/')
COMP_WORDS=(sluice ren); COMP_CWORD=1; COMP_LINE='sluice ren'; COMP_POINT=${{#COMP_LINE}}
"$fn" sluice ren sluice
printf '%s\n' "${{COMPREPLY[@]}}""#,
        path.display()
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &probe])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bash failed: {stderr}");
    assert!(stderr.is_empty(), "bash complained: {stderr}");
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words, ["render"], "{stdout}");
}

/// Every shell clap_complete knows gets a non-empty script naming `sluice`.
#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = Command::new(SLUICE)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("sluice") && script.contains("render"),
            "{shell}"
        );
    }
    let out = Command::new(SLUICE)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `sluice crds --traefik` prints the checked-in `crds/traefik-crds.yaml` (the seven Traefik kinds
/// Sluice reads, in the `traefik.io` group) and `sluice crds` the checked-in `crds/sluice-crds.yaml`: the flag picks the
/// set, and each file is what `make crds` writes.
#[test]
fn crds_prints_sluices_crds_and_with_traefik_traefiks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let crds = |args: &[&str]| {
        let out = Command::new(SLUICE).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let traefik = crds(&["crds", "--traefik"]);
    let own = crds(&["crds"]);
    assert_eq!(
        traefik,
        std::fs::read_to_string(root.join("crds/traefik-crds.yaml")).unwrap()
    );
    assert_eq!(
        own,
        std::fs::read_to_string(root.join("crds/sluice-crds.yaml")).unwrap()
    );
    let names = |yaml: &str| -> Vec<String> {
        yaml.lines()
            .filter_map(|l| l.strip_prefix("  name: "))
            .map(str::to_owned)
            .collect()
    };
    let mut expected: Vec<String> = [
        "ingressroutes",
        "ingressroutetcps",
        "middlewares",
        "serverstransports",
        "tlsoptions",
        "tlsstores",
        "traefikservices",
    ]
    .iter()
    .map(|p| format!("{p}.traefik.io"))
    .collect();
    expected.sort();
    let mut got = names(&traefik);
    got.sort();
    assert_eq!(got, expected);
    assert!(
        names(&own).iter().all(|n| !n.contains("traefik")),
        "{:?}",
        names(&own)
    );
}
