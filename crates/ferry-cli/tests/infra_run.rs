//! `ferry run` with an `infrastructure` section, with the real binary on a real
//! temporary git repository (issue 5): the infrastructure step before `deploy` runs the
//! environment's `infrastructure.deploy` (which writes a marker file) only when the
//! templates changed meaningfully — not for an application-only change — and records
//! `infrastructureChanged` on the deployment; a replaced DynamoDB table followed by a
//! failing health check is not rolled back: the environment is frozen, an incident is
//! open, the application is left as it is, and `ferry rollback` refuses without
//! `--accept-data-loss`.

mod support;

use serde_json::{Value, json};
use support::{Repo, assert_code, describe, json as stdout_json, stderr, yaml_str};

fn pipeline(repo: &Repo) {
    let marks = repo.join("marks");
    std::fs::create_dir_all(&marks).unwrap_or_else(|e| panic!("marks folder: {e}"));
    let infra_log = yaml_str(&format!(
        "echo \"$FERRY_VERSION\" >> {}/infra",
        marks.display()
    ));
    let app_log = yaml_str(&format!(
        "echo \"$FERRY_VERSION\" >> {}/app",
        marks.display()
    ));
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: infra
build:
  steps:
    - name: build
      run: 'true'
environments:
  - name: production
    infrastructure:
      deploy: {infra_log}
    deploy:
      command:
        run: {app_log}
        rollback: {app_log}
    tests:
      - name: health
        run: test ! -f fail-health
infrastructure:
  paths: [infrastructure/**]
  templates: [infrastructure/*.template.json]
"
        ),
    );
}

fn stack(billing: &str, key: &str) -> String {
    json!({
        "Resources": {
            "Orders": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "BillingMode": billing,
                    "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}]
                }
            }
        }
    })
    .to_string()
}

fn lines(repo: &Repo, rel: &str) -> Vec<String> {
    std::fs::read_to_string(repo.join(rel))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn run_json(repo: &Repo) -> (std::process::Output, Value) {
    let out = repo.ferry(&["run", "--json"]);
    let view = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`ferry run --json` printed no run view ({e}): {}",
            describe(&out)
        )
    });
    (out, view)
}

fn deployment(h: &Value, version: &str) -> Value {
    h["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["version"] == version && d["environment"] == "production")
        .cloned()
        .unwrap_or_else(|| panic!("no deployment of {version}: {h:#}"))
}

fn infra_log(repo: &Repo, run: &Value) -> String {
    let id = run["id"].to_string();
    let o = repo.ferry(&["logs", &id, "production/infrastructure", "--json"]);
    assert_code(&o, 0, "ferry logs RUN production/infrastructure");
    let j = stdout_json(&o);
    j["steps"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn infrastructure_is_deployed_only_when_it_changed_and_unsafe_deployments_are_held_for_a_person() {
    let repo = Repo::new();
    pipeline(&repo);
    repo.write(".gitignore", ".ferry/\nmarks/\n");
    repo.write(
        "infrastructure/stack.template.json",
        &stack("PROVISIONED", "id"),
    );
    repo.write("src/app.txt", "v1\n");
    let a = repo.commit("A");

    // First deployment: nothing to compare with, the infrastructure is deployed.
    let (o, view) = run_json(&repo);
    assert_code(&o, 0, "first run");
    let kinds: Vec<&str> = view["stages"][1]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["infrastructure", "deploy", "command"]);
    assert_eq!(lines(&repo, "marks/infra"), std::slice::from_ref(&a));
    assert_eq!(
        deployment(&repo.history(), &a)["infrastructureChanged"],
        true
    );

    // An application-only change: no infrastructure deploy.
    repo.write("src/app.txt", "v2\n");
    let b = repo.commit("B: application only");
    let (o, view) = run_json(&repo);
    assert_code(&o, 0, "application-only run");
    assert_eq!(
        lines(&repo, "marks/infra"),
        std::slice::from_ref(&a),
        "infra not redeployed"
    );
    assert_eq!(lines(&repo, "marks/app").last(), Some(&b));
    let d = deployment(&repo.history(), &b);
    assert_eq!(d["infrastructureChanged"], false, "{d:#}");
    assert_eq!(d["rollbackUnsafe"], false);
    let log = infra_log(&repo, &view);
    assert!(log.contains("nothing deployed"), "{log}");
    assert!(log.contains("No infrastructure files changed"), "{log}");

    // A template resource change: the deploy command runs.
    repo.write(
        "infrastructure/stack.template.json",
        &stack("PAY_PER_REQUEST", "id"),
    );
    let c = repo.commit("C: on-demand billing");
    let (o, view) = run_json(&repo);
    assert_code(&o, 0, "meaningful run");
    assert_eq!(lines(&repo, "marks/infra"), [a.clone(), c.clone()]);
    let d = deployment(&repo.history(), &c);
    assert_eq!(d["infrastructureChanged"], true, "{d:#}");
    assert_eq!(d["rollbackUnsafe"], false);
    assert!(infra_log(&repo, &view).contains("BillingMode"));

    // The table's key schema changes (a replacement: its data would be lost) and the
    // health check then fails: no rollback, a freeze and an incident instead.
    repo.write(
        "infrastructure/stack.template.json",
        &stack("PAY_PER_REQUEST", "orderId"),
    );
    repo.write("fail-health", "");
    let d_sha = repo.commit("D: new key, broken health");
    let (o, view) = run_json(&repo);
    assert_code(&o, 1, "unsafe run with a failing health check");
    assert_eq!(view["status"], "failed");
    assert_eq!(lines(&repo, "marks/infra").last(), Some(&d_sha));
    let app = lines(&repo, "marks/app");
    assert_eq!(
        app.last(),
        Some(&d_sha),
        "the application is not rolled back: {app:?}"
    );
    let h = repo.history();
    let d = deployment(&h, &d_sha);
    assert_eq!(d["status"], "failed", "{d:#}");
    assert_eq!(d["rollbackUnsafe"], true, "{d:#}");
    let why = d["rollbackUnsafeReason"].as_str().unwrap_or_default();
    assert!(why.contains("Orders") && why.contains("replaced"), "{why}");
    let rb = h["rollbacks"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["deployment_id"] == d["deploymentId"]))
        .cloned()
        .unwrap_or_else(|| panic!("no rollback record: {h:#}"));
    assert_eq!(rb["status"], "not_performed", "{rb:#}");
    let st = repo.status();
    let env = &st["environments"][0];
    assert!(
        env["incident"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("rollback-unsafe"),
        "{env:#}"
    );
    assert_eq!(env["freezes"].as_array().map(Vec::len), Some(1), "{env:#}");
    assert!(
        env["rollback_unsafe"].as_str().is_some() || env["rollbackUnsafe"].as_str().is_some(),
        "{env:#}"
    );
    let text = repo.ferry(&["status"]);
    let text = support::stdout(&text);
    assert!(
        text.contains("ROLLBACK-UNSAFE") && text.contains("FROZEN"),
        "{text}"
    );
    let hist = support::stdout(&repo.ferry(&["history", "--env", "production"]));
    assert!(hist.contains("unsafe"), "{hist}");

    // A person's rollback is refused unless they accept the data loss.
    let o = repo.ferry(&["rollback", "production"]);
    assert_code(&o, 6, "ferry rollback of a rollback-unsafe deployment");
    assert!(
        stderr(&o).contains("--accept-data-loss"),
        "{}",
        describe(&o)
    );
    assert_eq!(lines(&repo, "marks/app").last(), Some(&d_sha));
}
