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
