//! `ferry step STAGE/STEP` (issue 7): one step per process, as the CodeBuild projects of
//! `ferry synth aws` run them. Real git repositories, real processes, real SQLite. The
//! build stage runs in the repository; each environment stage runs in a copy of the
//! workspace *without* `.git` (what CodePipeline hands the next CodeBuild action), with
//! `FERRY_COMMIT_SHA` set as the buildspec sets it. Deployments go to a shared state
//! folder (`--state-dir`), standing in for the DynamoDB ledger the AWS runtime uses.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use support::{Repo, assert_code, describe, ferry_cmd, stdout};

/// The pipeline: a unit step writing JUnit and LCOV, a coverage gate, an artifact; a
/// `test` environment deployed and rolled back by scripts that log to `ops/` in the
/// shared folder, with an integration test failing when the commit has `broken`; a
/// `production` environment behind an approval (CodePipeline's, in step mode).
fn pipeline(ops: &Path) -> String {
    let ops = ops.display();
    format!(
        r#"pipeline: step-it
source:
  branch: main
build:
  steps:
    - name: unit
      run: sh ci/unit.sh
      reports:
        junit: reports/unit.xml
        coverage: reports/lcov.info
  gates:
    coverage_min: 50
  artifact: dist
environments:
  - name: test
    deploy:
      command:
        run: echo "deploy $FERRY_ENV $FERRY_VERSION" >> {ops}/actions.log
        rollback: echo "rollback $FERRY_ENV $FERRY_VERSION" >> {ops}/actions.log
    tests:
      - name: integration
        run: test ! -f broken
  - name: production
    approval:
      required: 1
    deploy:
      command:
        run: echo "deploy $FERRY_ENV $FERRY_VERSION" >> {ops}/actions.log
        rollback: echo "rollback $FERRY_ENV $FERRY_VERSION" >> {ops}/actions.log
rollback:
  automatic: true
  validate:
    stabilize: 1s
    health_timeout: 5s
"#
    )
}

const UNIT: &str = r#"#!/bin/sh
set -eu
mkdir -p reports dist
cat > reports/unit.xml <<'X'
<testsuite name="unit" tests="2" failures="0"><testcase name="a"/><testcase name="b"/></testsuite>
X
printf 'SF:src/a.rs\nDA:1,1\nDA:2,1\nDA:3,1\nDA:4,0\nend_of_record\n' > reports/lcov.info
echo "built $FERRY_VERSION" > dist/version.txt
echo "unit tests passed"
"#;

struct World {
    repo: Repo,
    /// Shared state (the ledger) and `ops/actions.log`.
    shared: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let repo = Repo::new();
        let shared = tempfile::tempdir().expect("shared folder");
        std::fs::create_dir_all(shared.path().join("ops")).expect("ops");
        repo.write("ferry.yml", &pipeline(&shared.path().join("ops")));
        repo.write_exec("ci/unit.sh", UNIT);
        repo.write(".gitignore", ".ferry/\ndist/\nreports/\n");
        World { repo, shared }
    }

    fn state(&self) -> PathBuf {
        self.shared.path().join("state")
    }

    /// `ferry step SPEC` in `dir` as CodeBuild runs it.
    fn step_in(&self, dir: &Path, spec: &str, run_id: &str, sha: Option<&str>) -> Output {
        let state = self.state();
        let state = state.to_str().expect("utf-8 path");
        let mut c = ferry_cmd(dir, &["--state-dir", state, "step", spec]);
        c.env("FERRY_RUN_ID", run_id)
            .env_remove("CODEBUILD_BUILD_NUMBER")
            .env_remove("FERRY_DEPLOYMENTS_TABLE")
            .env_remove("FERRY_COMMIT_SHA")
            .env_remove("FERRY_STEP_DIR")
            .env("FERRY_METRIC_LINES", "1");
        if let Some(s) = sha {
            c.env("FERRY_COMMIT_SHA", s);
        }
        support::Running::spawn(c, &["step", spec]).wait(support::LONG)
    }

    /// The build stage's three steps in the repository.
    fn build(&self, run_id: &str) {
        for spec in ["build/unit", "build/@gates", "build/@artifact"] {
            let out = self.step_in(self.repo.path(), spec, run_id, None);
            assert_code(&out, 0, &format!("ferry step {spec}"));
            if spec == "build/unit" {
                // The JUnit report's pass rate, for the build log group's metric filter.
                assert!(
                    metrics(&out).contains(&("TestSuccessRate".to_string(), 100.0)),
                    "{}",
                    describe(&out)
                );
            }
        }
    }

    /// A copy of the workspace without `.git`: the next CodeBuild container's.
    fn hop(&self, name: &str) -> PathBuf {
        let dest = self.shared.path().join(name);
        support::copy_workspace(self.repo.path(), &dest);
        dest
    }

    fn actions(&self) -> Vec<String> {
        std::fs::read_to_string(self.shared.path().join("ops/actions.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn history(&self) -> Value {
        let state = self.state();
        let out = self.repo.ferry(&[
            "--state-dir",
            state.to_str().expect("utf-8"),
            "history",
            "--json",
        ]);
        assert_code(&out, 0, "ferry history");
        serde_json::from_slice(&out.stdout).expect("history json")
    }
}

/// The `{"metric": NAME, "value": N}` lines a step wrote (what the monitoring stack's
/// metric filters `{ $.metric = "NAME" }` read from the build log group).
fn metrics(out: &Output) -> Vec<(String, f64)> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["metric"].as_str()?.to_string(), v["value"].as_f64()?)))
        .collect()
}

fn deployments(h: &Value, env: &str) -> Vec<Value> {
    let mut d: Vec<Value> = h["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["environment"] == env)
        .cloned()
        .collect();
    d.sort_by_key(|d| d["startTime"].as_i64());
    d
}

#[test]
fn a_commit_goes_through_build_and_test_one_step_per_process_across_workspaces() {
    let w = World::new();
    let a = w.repo.commit("A");
    w.build("101");
    assert!(w.repo.join(".ferry/step/build.db").exists());
    // The gate and the artifact are recorded like `ferry run`'s.
    let again = w.step_in(w.repo.path(), "build/@gates", "101", None);
    assert_code(&again, 0, "ferry step build/@gates, again");
    assert!(
        stdout(&again).contains("already ran"),
        "a step that ran is not run again: {}",
        describe(&again)
    );

    // The test stage, in another container: no git, the commit from the environment.
    let ws = w.hop("ws-test-a");
    let early = w.step_in(&ws, "test/integration", "999", Some(&a));
    assert_code(&early, 6, "a test before the deploy");
    assert!(
        describe(&early).contains("out of order") && describe(&early).contains("test/@deploy"),
        "{}",
        describe(&early)
    );
    let out = w.step_in(&ws, "test/@deploy", "999", Some(&a));
    assert_code(&out, 0, "ferry step test/@deploy");
    assert_eq!(w.actions(), vec![format!("deploy test {a}")]);
    let out = w.step_in(&ws, "test/integration", "999", Some(&a));
    assert_code(&out, 0, "ferry step test/integration");
    // The stage's end closes the deployment: one deployment, and how long it took.
    let m = metrics(&out);
    assert!(m.contains(&("DeploymentCount".to_string(), 1.0)), "{m:?}");
    assert!(
        m.iter()
            .any(|(n, v)| n == "DeploymentDuration" && *v >= 0.0),
        "{m:?}"
    );
    // The step left no link to the workspace inside it (CodeBuild uploads the folder).
    assert!(
        !support::walk(&ws).iter().any(|p| p.is_symlink()),
        "a symlink is left in the workspace"
    );
    // Run again (a retried CodeBuild action): nothing is deployed twice.
    let out = w.step_in(&ws, "test/@deploy", "999", Some(&a));
    assert_code(&out, 0, "ferry step test/@deploy, again");
    assert_eq!(w.actions().len(), 1, "{:?}", w.actions());

    let h = w.history();
    let d = deployments(&h, "test");
    assert_eq!(d.len(), 1, "{h:#}");
    assert_eq!(d[0]["version"], a.as_str());
    assert_eq!(d[0]["status"], "succeeded");
    // The build's run id (FERRY_RUN_ID at build time), not the environment stage's.
    assert_eq!(d[0]["runId"], 101, "{:#}", d[0]);
    assert_eq!(d[0]["unitTestsPassed"], true, "{:#}", d[0]);
    assert_eq!(d[0]["coveragePercentage"], 75.0, "{:#}", d[0]);
    // The workspace has no `.git`: the message and author are the build stage's.
    assert_eq!(d[0]["commitMessage"], "A", "{:#}", d[0]);
    assert!(
        d[0]["commitAuthor"]
            .as_str()
            .is_some_and(|a| a.contains("Ivy")),
        "{:#}",
        d[0]
    );

    // Production: CodePipeline's approval has passed when its stage runs.
    let wp = w.hop("ws-prod-a");
    let out = w.step_in(&wp, "production/@deploy", "999", Some(&a));
    assert_code(&out, 0, "ferry step production/@deploy");
    assert_eq!(w.actions().last(), Some(&format!("deploy production {a}")));
}

#[test]
fn a_failing_test_step_rolls_the_environment_back_to_the_previous_version() {
    let w = World::new();
    let a = w.repo.commit("A");
    w.build("201");
    let ws = w.hop("ws-a");
    for spec in ["test/@deploy", "test/integration"] {
        assert_code(&w.step_in(&ws, spec, "0", Some(&a)), 0, spec);
    }
    // A's CodeBuild containers are gone when B runs: its rollback finds A's artifact in
    // the shared state, not in A's workspace.
    std::fs::remove_dir_all(&ws).expect("remove A's workspace");
    w.repo.write("broken", "yes\n");
    let b = w.repo.commit("B: breaks the integration test");
    // The repository's `.ferry/step` holds A's build: a new commit needs a clean one.
    let stale = w.step_in(w.repo.path(), "build/unit", "202", None);
    assert_code(&stale, 6, "a workspace used for another commit");
    assert!(describe(&stale).contains("remove"), "{}", describe(&stale));
    std::fs::remove_dir_all(w.repo.join(".ferry/step")).expect("clean");
    w.build("202");
    let ws = w.hop("ws-b");
    assert_code(
        &w.step_in(&ws, "test/@deploy", "0", Some(&b)),
        0,
        "deploy B",
    );
    let out = w.step_in(&ws, "test/integration", "0", Some(&b));
    assert_code(&out, 1, "the failing integration test");
    assert!(
        metrics(&out).contains(&("RollbackCount".to_string(), 1.0)),
        "{}",
        describe(&out)
    );
    assert_eq!(
        w.actions(),
        vec![
            format!("deploy test {a}"),
            format!("deploy test {b}"),
            format!("rollback test {a}"),
        ]
    );
    let d = deployments(&w.history(), "test");
    assert_eq!(d.len(), 2);
    assert_eq!(d[1]["version"], b.as_str());
    assert_eq!(d[1]["status"], "rolled_back", "{:#}", d[1]);
    // A retried action (CodeBuild runs the buildspec again): each step reports what
    // it did, nothing is deployed or rolled back twice.
    let out = w.step_in(&ws, "test/@deploy", "0", Some(&b));
    assert_code(&out, 0, "the deploy step, again");
    let out = w.step_in(&ws, "test/integration", "0", Some(&b));
    assert_code(&out, 1, "the failed test step, again");
    assert!(stdout(&out).contains("already ran"), "{}", describe(&out));
    assert_eq!(w.actions().len(), 3, "{:?}", w.actions());
}

#[test]
fn bad_input_gets_a_message_naming_the_fix() {
    let w = World::new();
    let a = w.repo.commit("A");
    let root = w.repo.path().to_path_buf();
    let out = w.step_in(&root, "build", "1", None);
    assert_code(&out, 2, "no slash");
    assert!(describe(&out).contains("STAGE/STEP"), "{}", describe(&out));
    let out = w.step_in(&root, "staging/@deploy", "1", None);
    assert_code(&out, 5, "unknown stage");
    assert!(
        describe(&out).contains("build, test, production"),
        "{}",
        describe(&out)
    );
    let out = w.step_in(&root, "test/e2e", "1", None);
    assert_code(&out, 5, "unknown step");
    assert!(
        describe(&out).contains("@deploy, integration"),
        "{}",
        describe(&out)
    );
    // An environment before its build.
    let ws = w.hop("ws-nobuild");
    let out = w.step_in(&ws, "test/@deploy", "1", Some(&a));
    assert_code(&out, 5, "no build record");
    assert!(
        describe(&out).contains("ferry step build/"),
        "{}",
        describe(&out)
    );
    // A workspace without git and without FERRY_COMMIT_SHA.
    let out = w.step_in(&ws, "build/unit", "1", None);
    assert_code(&out, 7, "no commit");
    assert!(
        describe(&out).contains("FERRY_COMMIT_SHA"),
        "{}",
        describe(&out)
    );
    // A commit id that is not one.
    let out = w.step_in(&ws, "build/unit", "1", Some("not-a-sha"));
    assert_code(&out, 3, "bad FERRY_COMMIT_SHA");
    // A bad run id.
    let out = w.step_in(&root, "build/unit", "-4", None);
    assert_code(&out, 3, "bad FERRY_RUN_ID");
    assert!(
        describe(&out).contains("FERRY_RUN_ID"),
        "{}",
        describe(&out)
    );
    // The DynamoDB ledger needs the `aws` feature.
    if !cfg!(feature = "aws") {
        let mut c = ferry_cmd(&root, &["step", "build/unit"]);
        c.env("FERRY_DEPLOYMENTS_TABLE", "ferry-deployments");
        let out = support::Running::spawn(c, &["step"]).wait(support::LONG);
        assert_code(&out, 7, "a table without AWS support");
        assert!(
            describe(&out).contains("--features aws"),
            "{}",
            describe(&out)
        );
    }
    // A build that failed is not deployed.
    w.repo
        .write_exec("ci/unit.sh", "#!/bin/sh\necho failing >&2\nexit 3\n");
    let c = w.repo.commit("C: red build");
    std::fs::remove_dir_all(w.repo.join(".ferry/step")).ok();
    let out = w.step_in(&root, "build/unit", "9", None);
    assert_code(&out, 1, "a failing unit step");
    assert!(stdout(&out).contains("failing") || describe(&out).contains("failing"));
    let ws = w.hop("ws-red");
    let out = w.step_in(&ws, "test/@deploy", "9", Some(&c));
    assert_code(&out, 1, "deploying a red build");
    assert!(
        describe(&out).contains("has not succeeded"),
        "{}",
        describe(&out)
    );
}

/// `ferry run` holds a run at a closed deployment window until it opens; inside
/// CodeBuild that would be a build waiting for hours, so `ferry step ENV/@deploy` fails
/// at once (exit 6), says why and when to retry, and deploys nothing.
#[test]
fn a_closed_deployment_window_fails_the_deploy_step_instead_of_waiting() {
    let w = World::new();
    // Closed all of today and tomorrow (UTC), so for the whole test whenever it runs.
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 86_400;
    let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    // 1970-01-01 was a Thursday.
    let today = names[((days + 3) % 7) as usize];
    let tomorrow = names[((days + 4) % 7) as usize];
    let text = pipeline(&w.shared.path().join("ops")).replace(
        "  - name: test\n",
        &format!(
            "  - name: test\n    windows:\n      deny: [\"{today},{tomorrow} 00:00-24:00\"]\n"
        ),
    );
    w.repo.write("ferry.yml", &text);
    let a = w.repo.commit("A");
    w.build("31");
    let ws = w.hop("ws-window");
    let out = w.step_in(&ws, "test/@deploy", "31", Some(&a));
    assert_code(&out, 6, "a deploy step at a closed window");
    let said = describe(&out);
    assert!(
        said.contains("environment test may not be deployed to now"),
        "{said}"
    );
    assert!(said.contains("does not wait"), "{said}");
    assert!(said.contains("retry the stage at or after"), "{said}");
    assert!(
        !said.contains("goes on by itself"),
        "not in step mode: {said}"
    );
    assert!(
        w.actions().is_empty(),
        "nothing deployed: {:?}",
        w.actions()
    );
}
