//! `ferry diff` with the real binary on real temporary git repositories: an
//! application-only change, an infrastructure file changed with identical templates, a
//! metadata-only template change, a real resource change, a renamed file, a stateful
//! resource replaced, a migration, and the bad inputs (nothing deployed to compare from,
//! an unknown environment, a failing synth, a template that is not JSON).

mod support;

use serde_json::{Value, json};
use support::{Repo, assert_code, describe, json as stdout_json, stderr, stdout};

/// The synth: "compiles" `infrastructure/stack.json` (the infrastructure source) into
/// `infrastructure/cdk.out/App.template.json`, ignoring every other file in the folder.
const SYNTH: &str = "#!/bin/sh\nset -e\nmkdir -p infrastructure/cdk.out\ncp infrastructure/stack.json infrastructure/cdk.out/App.template.json\n";

const INFRA: &str = "infrastructure:
  paths: [infrastructure/**, infra2/**]
  synth: sh infrastructure/synth.sh
  templates: infrastructure/cdk.out/*.template.json
  migrations: [migrations/**]
";

fn pipeline(repo: &Repo, infra: &str) {
    let env_infra = if infra.is_empty() {
        ""
    } else {
        "    infrastructure:\n      deploy: 'true'\n"
    };
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: infra\nbuild:\n  steps:\n    - name: build\n      run: 'true'\nenvironments:\n  - name: test\n    deploy:\n      command:\n        run: 'true'\n{env_infra}  - name: production\n    deploy:\n      command:\n        run: 'true'\n{infra}"
        ),
    );
}

fn stack(billing: &str, key: &str, asset: &str, meta: &str) -> String {
    json!({
        "Resources": {
            "Orders": {
                "Type": "AWS::DynamoDB::Table",
                "Metadata": {"aws:cdk:path": meta},
                "Properties": {
                    "BillingMode": billing,
                    "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}]
                }
            },
            "Handler": {
                "Type": "AWS::Lambda::Function",
                "Metadata": {"aws:asset:path": format!("asset.{asset}")},
                "Properties": {"Code": {"S3Bucket": "cdk-assets", "S3Key": format!("{asset}.zip")}}
            }
        },
        "Outputs": {"TableName": {"Value": {"Ref": "Orders"}}}
    })
    .to_string()
}

fn hash(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// A repository with the pipeline, the synth, a stack and an application file; returns
/// it and the first commit.
fn setup() -> (Repo, String) {
    let repo = Repo::new();
    pipeline(&repo, INFRA);
    repo.write("infrastructure/synth.sh", SYNTH);
    repo.write(
        "infrastructure/stack.json",
        &stack("PROVISIONED", "id", &hash('a'), "App/Orders"),
    );
    repo.write("infrastructure/notes.ts", "// how the stack is built\n");
    repo.write("src/app.rs", "fn main() {}\n");
    repo.write(".gitignore", ".ferry/\n");
    let first = repo.commit("First");
    (repo, first)
}

fn diff_json(repo: &Repo, from: &str) -> Value {
    let o = repo.ferry(&["diff", from, "HEAD", "--json"]);
    assert_code(&o, 0, "ferry diff --json");
    stdout_json(&o)
}

#[test]
fn an_application_only_change_compares_nothing() {
    let (repo, first) = setup();
    repo.write("src/app.rs", "fn main() { println!(\"hi\"); }\n");
    repo.commit("App change");
    let j = diff_json(&repo, &first);
    assert_eq!(j["verdict"], "no-change", "{j}");
    assert_eq!(j["compared"], false);
    assert_eq!(j["changedFiles"], 1);
    assert_eq!(j["infrastructureFiles"], json!([]));
    let o = repo.ferry(&["diff", &first]);
    assert_code(&o, 0, "ferry diff");
    let out = stdout(&o);
    assert!(out.contains("No infrastructure files changed"), "{out}");
    assert!(out.contains("Verdict: no change"), "{out}");
}

#[test]
fn an_infrastructure_file_changed_with_identical_templates_is_no_change() {
    let (repo, first) = setup();
    repo.write(
        "infrastructure/notes.ts",
        "// how the stack is built, reworded\n",
    );
    repo.commit("Reword a comment");
    let j = diff_json(&repo, &first);
    assert_eq!(j["compared"], true, "{j}");
    assert_eq!(
        j["infrastructureFiles"][0]["path"],
        "infrastructure/notes.ts"
    );
    assert_eq!(j["infrastructureFiles"][0]["status"], "modified");
    assert_eq!(j["verdict"], "no-change", "{j}");
    assert_eq!(j["meaningful"], false);
}

#[test]
fn a_metadata_and_asset_hash_only_change_is_no_change() {
    let (repo, first) = setup();
    repo.write(
        "infrastructure/stack.json",
        &stack("PROVISIONED", "id", &hash('b'), "App/Renamed/Orders"),
    );
    repo.commit("New asset, new construct path");
    let j = diff_json(&repo, &first);
    assert_eq!(j["compared"], true, "{j}");
    assert_eq!(j["diff"]["resources"], json!([]), "{j}");
    assert_eq!(j["verdict"], "no-change", "{j}");
    let out = stdout(&repo.ferry(&["diff", &first]));
    assert!(out.contains("identical after ignoring metadata"), "{out}");
}

#[test]
fn a_real_resource_change_is_meaningful() {
    let (repo, first) = setup();
    repo.write(
        "infrastructure/stack.json",
        &stack("PAY_PER_REQUEST", "id", &hash('a'), "App/Orders"),
    );
    repo.commit("On-demand billing");
    let j = diff_json(&repo, &first);
    assert_eq!(j["verdict"], "meaningful", "{j}");
    assert_eq!(j["meaningful"], true);
    let r = &j["diff"]["resources"][0];
    assert_eq!(r["logicalId"], "Orders");
    assert_eq!(r["kind"], "modified");
    assert_eq!(r["paths"], json!(["Properties.BillingMode"]));
    let out = stdout(&repo.ferry(&["diff", &first]));
    assert!(
        out.contains("~ resource Orders (AWS::DynamoDB::Table, stateful)"),
        "{out}"
    );
    assert!(out.contains("Properties.BillingMode"), "{out}");
    assert!(out.contains("Verdict: meaningful change"), "{out}");
}

#[test]
fn a_renamed_file_is_listed_with_both_paths() {
    let (repo, first) = setup();
    std::fs::create_dir_all(repo.join("infra2")).expect("mkdir");
    repo.git(&["mv", "infrastructure/notes.ts", "infra2/notes.ts"]);
    repo.commit("Move the notes");
    let j = diff_json(&repo, &first);
    let files = j["infrastructureFiles"].as_array().expect("list");
    assert_eq!(files.len(), 1, "{j}");
    assert_eq!(files[0]["status"], "renamed");
    assert_eq!(files[0]["path"], "infra2/notes.ts");
    assert_eq!(files[0]["oldPath"], "infrastructure/notes.ts");
    assert_eq!(j["verdict"], "no-change", "{j}");
    let out = stdout(&repo.ferry(&["diff", &first]));
    assert!(
        out.contains("R infrastructure/notes.ts -> infra2/notes.ts"),
        "{out}"
    );
}

#[test]
fn a_stateful_resource_replaced_is_rollback_unsafe() {
    let (repo, first) = setup();
    repo.write(
        "infrastructure/stack.json",
        &stack("PROVISIONED", "pk", &hash('a'), "App/Orders"),
    );
    repo.commit("New partition key");
    let j = diff_json(&repo, &first);
    assert_eq!(j["verdict"], "rollback-unsafe", "{j}");
    assert_eq!(j["diff"]["resources"][0]["kind"], "replaced");
    assert_eq!(
        j["diff"]["resources"][0]["replacedBecause"],
        "KeySchema requires replacement"
    );
    let out = stdout(&repo.ferry(&["diff", &first]));
    assert!(out.contains("Verdict: rollback-unsafe"), "{out}");
    assert!(
        out.contains("stateful resource Orders (AWS::DynamoDB::Table)"),
        "{out}"
    );
}

#[test]
fn a_removed_table_and_a_migration_are_rollback_unsafe() {
    let (repo, first) = setup();
    repo.write(
        "migrations/002_drop_column.sql",
        "ALTER TABLE orders DROP COLUMN note;\n",
    );
    repo.commit("Migration");
    let j = diff_json(&repo, &first);
    assert_eq!(j["verdict"], "rollback-unsafe", "{j}");
    assert_eq!(j["meaningful"], false);
    assert_eq!(
        j["migrationFiles"][0]["path"],
        "migrations/002_drop_column.sql"
    );

    let second = repo.head();
    repo.write("infrastructure/stack.json", r#"{"Resources": {}}"#);
    repo.commit("Drop everything");
    let j = diff_json(&repo, &second);
    assert_eq!(j["verdict"], "rollback-unsafe", "{j}");
    let kinds: Vec<&str> = j["diff"]["resources"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["removed", "removed"], "{j}");
    assert_eq!(j["diff"]["outputs"][0]["kind"], "removed");
}

#[test]
fn committed_templates_are_compared_without_a_synth() {
    let repo = Repo::new();
    pipeline(
        &repo,
        "infrastructure:\n  paths: cfn/**\n  templates: cfn/*.json\n",
    );
    repo.write("cfn/app.json", &stack("PROVISIONED", "id", &hash('a'), "x"));
    let first = repo.commit("First");
    repo.write("cfn/app.json", &stack("PROVISIONED", "id", &hash('a'), "y"));
    repo.commit("Metadata");
    assert_eq!(diff_json(&repo, &first)["verdict"], "no-change");
    repo.write(
        "cfn/app.json",
        &stack("PAY_PER_REQUEST", "id", &hash('a'), "y"),
    );
    repo.commit("Billing");
    assert_eq!(diff_json(&repo, &first)["verdict"], "meaningful");
}

#[test]
fn without_an_infrastructure_section_there_is_nothing_to_compare() {
    let repo = Repo::new();
    pipeline(&repo, "");
    repo.commit("First");
    let o = repo.ferry(&["diff"]);
    assert_code(&o, 0, "ferry diff without infrastructure");
    assert!(
        stdout(&o).contains("nothing to compare"),
        "{}",
        describe(&o)
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    let (repo, first) = setup();
    // Nothing deployed: no default FROM.
    let o = repo.ferry(&["diff"]);
    assert_code(&o, 5, "ferry diff with nothing deployed");
    assert!(
        stderr(&o).contains("nothing is deployed to `production` yet"),
        "{}",
        describe(&o)
    );
    assert!(
        stderr(&o).contains("ferry diff FROM [TO]"),
        "{}",
        describe(&o)
    );
    // An unknown environment.
    let o = repo.ferry(&["diff", "--env", "prod"]);
    assert_code(&o, 5, "ferry diff --env prod");
    assert!(
        stderr(&o).contains("no environment `prod`"),
        "{}",
        describe(&o)
    );
    // An unknown commit.
    let o = repo.ferry(&["diff", "no-such-commit"]);
    assert_code(&o, 5, "ferry diff no-such-commit");
    assert!(stderr(&o).contains("no-such-commit"), "{}", describe(&o));
    // A synth that fails.
    repo.write(
        "infrastructure/synth.sh",
        "echo 'cdk: cannot find module aws-cdk-lib' >&2\nexit 3\n",
    );
    repo.commit("Broken synth");
    let o = repo.ferry(&["diff", &first]);
    assert_code(&o, 7, "ferry diff with a failing synth");
    let err = stderr(&o);
    assert!(
        err.contains("`infrastructure.synth`") && err.contains("cannot find module"),
        "{err}"
    );
    // A template that is not JSON.
    repo.write("infrastructure/synth.sh", SYNTH);
    repo.write("infrastructure/stack.json", "Resources: [yaml]\n");
    repo.commit("Not JSON");
    let o = repo.ferry(&["diff", &first]);
    assert_code(&o, 7, "ferry diff with a template that is not JSON");
    assert!(
        stderr(&o).contains("template `infrastructure/cdk.out/App.template.json`")
            && stderr(&o).contains("is not valid JSON"),
        "{}",
        describe(&o)
    );
}

#[test]
fn the_default_from_is_the_version_the_environment_runs() {
    let (repo, first) = setup();
    let o = repo.ferry(&["run"]);
    assert_code(&o, 0, "ferry run");
    repo.write(
        "infrastructure/stack.json",
        &stack("PAY_PER_REQUEST", "id", &hash('a'), "App/Orders"),
    );
    let head = repo.commit("On-demand billing");
    let o = repo.ferry(&["diff", "--json"]);
    assert_code(&o, 0, "ferry diff with the defaults");
    let j = stdout_json(&o);
    assert_eq!(j["from"], first.as_str(), "{j}");
    assert_eq!(j["to"], head.as_str(), "{j}");
    assert_eq!(j["verdict"], "meaningful", "{j}");
    let o = repo.ferry(&["diff", "--env", "test", "--json"]);
    assert_code(&o, 0, "ferry diff --env test");
    assert_eq!(stdout_json(&o)["from"], first.as_str());
}
