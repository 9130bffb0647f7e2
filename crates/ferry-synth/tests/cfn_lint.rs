//! The synthesized stacks pass `cfn-lint` (from PyPI, installed by `.ci/aws-setup`)
//! with no error and no warning, informational checks included. The test fails, naming
//! the setup command, when cfn-lint is missing: it never passes without linting.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn cfn_lint() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_CFN_LINT") {
        return PathBuf::from(p);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = workspace.join("target/aws-venv/bin/cfn-lint");
    assert!(
        p.exists(),
        "cfn-lint is missing at {}: run `.ci/aws-setup` at the workspace root (or set FERRY_CFN_LINT to a cfn-lint)",
        p.display()
    );
    p
}

#[test]
fn the_stacks_pass_cfn_lint() {
    let lint = cfn_lint();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for (label, stacks) in common::all() {
        let sub = dir.path().join(label.replace([' ', '-'], "_"));
        std::fs::create_dir_all(&sub).expect("mkdir");
        for (name, t) in stacks {
            let path = sub.join(ferry_synth::file_name(&name));
            std::fs::write(&path, serde_json::to_string_pretty(&t).expect("json")).expect("write");
            files.push(path);
        }
    }
    let out = Command::new(&lint)
        .args(["--format", "parseable", "--include-checks", "I", "--"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `.ci/aws-setup`", lint.display()));
    assert!(
        out.status.success(),
        "cfn-lint found problems (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files.len(), 15);
}
