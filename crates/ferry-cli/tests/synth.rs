//! `ferry synth aws` with the real binary: the three stacks written for the shipped
//! examples, `--env`, `--json`, the errors for a bad `--out`, an unknown environment and
//! a pipeline file that does not validate, and `ferry scan --templates` over the output
//! (the seed's guard rules built in, and the template checks) with no finding.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use support::{Repo, assert_code, ferry_in, stderr, stdout};

const REFERENCE: &str = include_str!("../../../examples/reference/ferry.yml");
const SEED: &str = include_str!("../../../examples/seed/ferry.yml");

#[test]
fn synth_writes_three_stacks_that_ferry_scan_passes() {
    for (text, name) in [(REFERENCE, "shop-api"), (SEED, "kiro-pipeline")] {
        let dir = Repo::plain();
        dir.write("ferry.yml", text);
        let out = dir.ferry(&["synth", "aws", "--out", "cdk.out"]);
        assert_code(&out, 0, "synth");
        let shown = stdout(&out);
        let order: Vec<usize> = ["core", "pipeline", "monitoring"]
            .iter()
            .map(|k| shown.find(&format!("{name}-{k}")).expect("listed"))
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "in deployment order: {shown}"
        );
        for kind in ["core", "pipeline", "monitoring"] {
            let file = format!("cdk.out/{name}-{kind}.template.json");
            let t: Value = serde_json::from_str(&dir.read(&file)).expect("JSON");
            assert!(
                t["Resources"].as_object().is_some_and(|r| !r.is_empty()),
                "{file}"
            );
        }
        // In the output folder, without a ferry.yml: the templates alone (the seed's
        // file would also run its npm audit).
        let out = ferry_in(
            &dir.join("cdk.out"),
            &["scan", "--templates", "*.template.json", "--json"],
        );
        assert_code(&out, 0, "the guard pack and the template checks pass");
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["findings"], serde_json::json!([]), "{v:#}");
        assert_eq!(
            v["scanners"],
            serde_json::json!(["cfn-guard", "template"]),
            "{v:#}"
        );
    }
}

#[test]
fn synth_env_and_json() {
    let dir = Repo::plain();
    dir.write("ferry.yml", SEED);
    let out = dir.ferry(&[
        "synth",
        "aws",
        "--env",
        "production",
        "--out",
        "out",
        "--json",
    ]);
    assert_code(&out, 0, "synth --env --json");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let stacks: Vec<&str> = v["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stack"].as_str().unwrap())
        .collect();
    assert_eq!(
        stacks,
        [
            "kiro-pipeline-production-core",
            "kiro-pipeline-production-pipeline",
            "kiro-pipeline-production-monitoring"
        ]
    );
    assert!(
        dir.join("out/kiro-pipeline-production-core.template.json")
            .exists()
    );
}

#[test]
fn synth_bad_input_gets_a_clear_error() {
    let dir = Repo::plain();
    dir.write("ferry.yml", REFERENCE);

    let out = dir.ferry(&["synth", "aws", "--env", "prod", "--out", "out"]);
    assert_code(&out, 5, "unknown environment");
    assert!(
        stderr(&out).contains("no environment `prod`")
            && stderr(&out).contains("test, staging, production"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("out").exists(), "nothing written");

    dir.write("a-file", "x");
    let out = dir.ferry(&["synth", "aws", "--out", "a-file"]);
    assert_code(&out, 2, "--out is a file");
    assert!(
        stderr(&out).contains("is a file, not a folder"),
        "{}",
        stderr(&out)
    );

    let out = dir.ferry(&["synth", "aws"]);
    assert_code(&out, 2, "--out missing");
    assert!(stderr(&out).contains("--out"), "{}", stderr(&out));

    dir.write("ferry.yml", "pipeline: shop\nbuild:\n  stepz: []\n");
    let out = dir.ferry(&["synth", "aws", "--out", "out2"]);
    assert_code(&out, 3, "ferry.yml invalid");
    assert!(stderr(&out).contains("ferry validate"), "{}", stderr(&out));
    assert!(!dir.join("out2").exists(), "nothing written");
}
