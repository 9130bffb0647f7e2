//! Integration tests of the real `ferry` binary on real temporary git repositories: real
//! processes, real SQLite, real HTTP services on 127.0.0.1.

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::{
    Repo, assert_code, describe, free_port, http_get, listening, stderr, stdout, walk, yaml_str,
};

/// The bound on waiting for a run to ask for approval (never asserted as a duration).
const APPROVAL_WAIT: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------------------
// The reference pipeline, end to end.

/// The reference pipeline as the repository ships it (`examples/reference/ferry.yml`),
/// a byte-for-byte copy of `../shared/examples/ferry.yml`.
const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/reference/ferry.yml"
);
/// The contract itself, next to the repository when the workspace has it.
const SHARED_REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/examples/ferry.yml"
);

#[test]
fn the_shipped_reference_file_is_the_contract_unchanged() {
    let shipped = std::fs::read_to_string(REFERENCE).expect("examples/reference/ferry.yml");
    match std::fs::read_to_string(SHARED_REFERENCE) {
        Ok(shared) => assert_eq!(
            shipped, shared,
            "examples/reference/ferry.yml differs from ../shared/examples/ferry.yml"
        ),
        Err(_) => eprintln!(
            "../shared/examples/ferry.yml is not next to this checkout; using the shipped copy"
        ),
    }
}

const REF_LINT: &str = r#"#!/bin/sh
# Lint: the scripts parse, the server parses.
set -eu
for f in ci/*.sh; do sh -n "$f"; done
python3 -c 'import ast, sys; ast.parse(open("dist/server.py").read())'
echo "lint: clean"
"#;

const REF_UNIT: &str = r#"#!/bin/sh
# Unit tests: a JUnit report with three passing cases and LCOV at 90 %.
set -eu
mkdir -p reports
cat > reports/unit.xml <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="unit" tests="3" failures="0" errors="0">
    <testcase classname="shop.cart" name="adds_items" time="0.01"/>
    <testcase classname="shop.cart" name="removes_items" time="0.01"/>
    <testcase classname="shop.price" name="sums_prices" time="0.01"/>
  </testsuite>
</testsuites>
EOF
{
  echo "TN:"
  echo "SF:src/cart.py"
  for n in 1 2 3 4 5 6 7 8 9; do echo "DA:$n,1"; done
  echo "DA:10,0"
  echo "LF:10"
  echo "LH:9"
  echo "end_of_record"
} > reports/lcov.info
echo "unit-marker: 3 unit tests passed for $FERRY_COMMIT_SHA"
"#;

/// `ci/integration.sh URL` and `ci/e2e.sh URL`: check /health and /version of the deployed
/// service; the integration one writes its own JUnit report.
const REF_CHECK: &str = r#"#!/bin/sh
# Checks the deployed service at $1: /health is 200, /version is the version deployed.
set -eu
url="$1"
report="${2:-}"
exec python3 - "$url" "$report" <<'EOF'
import os, sys, urllib.request
url, report = sys.argv[1], sys.argv[2]
want = os.environ["FERRY_VERSION"]
cases = []
def case(name, fn):
    try:
        fn()
        cases.append((name, None))
    except Exception as e:
        cases.append((name, str(e)))
def health():
    with urllib.request.urlopen(url + "/health", timeout=5) as r:
        assert r.status == 200, "status %d" % r.status
def version():
    with urllib.request.urlopen(url + "/version", timeout=5) as r:
        got = r.read().decode().strip()
        assert got == want, "version %r, want %r" % (got, want)
case("health_is_200", health)
case("version_is_deployed_version", version)
if report:
    os.makedirs(os.path.dirname(report), exist_ok=True)
    with open(report, "w") as f:
        f.write('<?xml version="1.0"?>\n<testsuite name="checks" tests="%d">\n' % len(cases))
        for name, err in cases:
            if err is None:
                f.write('  <testcase classname="checks" name="%s"/>\n' % name)
            else:
                f.write('  <testcase classname="checks" name="%s"><failure message="%s"/></testcase>\n' % (name, err.replace('"', "'")))
        f.write("</testsuite>\n")
for name, err in cases:
    print(("ok   " if err is None else "FAIL ") + name + ("" if err is None else ": " + err))
sys.exit(1 if any(err for _, err in cases) else 0)
EOF
"#;

const REF_SERVER: &str = r#"import argparse, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok\n"
        elif self.path == "/version":
            body = (os.environ.get("FERRY_VERSION", "unknown") + "\n").encode()
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()
ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
"#;

fn reference_repo() -> Repo {
    let repo = Repo::new();
    let yml = std::fs::read_to_string(REFERENCE).expect("the reference ferry.yml");
    repo.write("ferry.yml", &yml);
    repo.write(".gitignore", ".ferry/\nreports/\n");
    repo.write_exec("ci/lint.sh", REF_LINT);
    repo.write_exec("ci/unit.sh", REF_UNIT);
    // The reference calls `./ci/integration.sh URL`; the script names its own report.
    repo.write_exec(
        "ci/integration.sh",
        &REF_CHECK.replace(
            "report=\"${2:-}\"",
            "report=\"${2:-reports/integration.xml}\"",
        ),
    );
    repo.write_exec("ci/e2e.sh", REF_CHECK);
    repo.write("dist/server.py", REF_SERVER);
    repo
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|d| d[key].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn reference_pipeline_end_to_end_with_approval() {
    let repo = reference_repo();
    let sha = repo.commit("Shop API: health and version endpoints");
    assert_eq!(
        repo.read("ferry.yml"),
        std::fs::read_to_string(REFERENCE).expect("reference"),
        "the reference file is used unchanged"
    );

    let v = repo.ferry(&["validate"]);
    assert_code(&v, 0, "ferry validate");

    let mut run = repo.spawn(&["run"]);
    let id = repo.wait_for_approval(&mut run, APPROVAL_WAIT);
    // Before the approval nothing is in production.
    let st = repo.status();
    let prod = env_of(&st, "production");
    assert_eq!(
        prod["version"],
        Value::Null,
        "production before approval: {st:#}"
    );
    // Whoever started the run may not approve it (separation of duties).
    let a = repo.ferry(&["approve", &id.to_string(), "--by", "reviewer"]);
    assert_code(&a, 0, "ferry approve");
    let out = run.wait(support::LONG);
    assert_code(&out, 0, "ferry run of the reference pipeline");

    let st = repo.status();
    for env in ["test", "staging", "production"] {
        let e = env_of(&st, env);
        assert_eq!(e["version"], sha.as_str(), "{env}: {st:#}");
        assert_eq!(e["status"], "succeeded", "{env}: {st:#}");
    }
    assert_eq!(
        st["runs"],
        serde_json::json!([]),
        "no unfinished run: {st:#}"
    );

    // The production service answers with the commit it was built from.
    let (code, body) = http_get(18183, "/version");
    assert_eq!(code, 200);
    assert_eq!(body.trim(), sha);
    for port in [18181, 18182] {
        assert_eq!(http_get(port, "/version").1.trim(), sha, "port {port}");
    }

    // Deployment records carry the seed's fields.
    let h = repo.history();
    let deps = h["deployments"].as_array().expect("deployments");
    assert_eq!(deps.len(), 3, "one deployment per environment: {h:#}");
    for d in deps {
        let env = d["environment"].as_str().expect("environment");
        let start = d["startTime"].as_i64().expect("startTime");
        assert_eq!(d["deploymentId"], format!("{env}#{start}"), "{d:#}");
        assert_eq!(d["version"], sha.as_str());
        assert_eq!(d["status"], "succeeded", "{d:#}");
        let expires = d["expiresAt"].as_i64().expect("expiresAt");
        let want = start / 1000 + 90 * 86_400;
        assert!(
            (expires - want).abs() <= 1,
            "expiresAt {expires} is not startTime/1000 + 90 days ({want})"
        );
        assert_eq!(d["unitTestsPassed"], true, "{d:#}");
        let cov = d["coveragePercentage"]
            .as_f64()
            .expect("coveragePercentage");
        assert!((cov - 90.0).abs() < 0.01, "coverage {cov}");
        assert!(
            !d["pipelineExecutionId"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{d:#}"
        );
        let loc = d["artifactLocation"].as_str().unwrap_or_default();
        assert!(
            Path::new(loc).is_file() && Path::new(loc).starts_with(repo.state()),
            "artifactLocation is the packed artifact in the state folder: {d:#}"
        );
        assert!(
            d["artifactDigest"]
                .as_str()
                .is_some_and(|s| s.starts_with("sha256:")),
            "{d:#}"
        );
        assert_eq!(
            d["commitMessage"].as_str().map(str::trim),
            Some("Shop API: health and version endpoints")
        );
        assert_eq!(d["runId"], id);
    }
    let test = deps
        .iter()
        .find(|d| d["environment"] == "test")
        .expect("test");
    assert_eq!(test["integrationTestsPassed"], true, "{test:#}");
    let prod = deps
        .iter()
        .find(|d| d["environment"] == "production")
        .expect("production");
    assert!(
        prod["deploymentId"]
            .as_str()
            .is_some_and(|s| s.starts_with("production#")),
        "{prod:#}"
    );
    assert_eq!(prod["integrationTestsPassed"], true, "{prod:#}");
    assert_eq!(prod["e2eTestsPassed"], true, "{prod:#}");
    let mut envs = ids(&h["deployments"], "environment");
    envs.sort();
    assert_eq!(envs, ["production", "staging", "test"]);

    let logs = repo.ferry(&["logs", &id.to_string(), "unit"]);
    assert_code(&logs, 0, "ferry logs RUN unit");
    assert!(
        stdout(&logs).contains(&format!("unit-marker: 3 unit tests passed for {sha}")),
        "{}",
        describe(&logs)
    );
}

fn env_of<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["environments"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no environment {name} in {status:#}"))
}

fn deployments_of<'a>(history: &'a Value, env: &str) -> Vec<&'a Value> {
    history["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["environment"] == env)
        .collect()
}

/// The newest run in `ferry history --json`.
fn last_run(repo: &Repo) -> Value {
    let h = repo.history();
    h["runs"]
        .as_array()
        .and_then(|r| r.iter().max_by_key(|r| r["id"].as_i64()))
        .cloned()
        .unwrap_or_else(|| panic!("no run in history: {h:#}"))
}

// ---------------------------------------------------------------------------------------
// Small pipelines with command deployers (no services) for everything else.

/// A pipeline with one build step `run`, and environments deployed by a command that
/// appends to `<root>/deploys.log`. `extra_env` goes into every environment.
fn command_pipeline(repo: &Repo, build_step: &str, envs: &[(&str, &str)]) -> String {
    let log = repo.join("deploys.log");
    let deploy = yaml_str(&format!(
        "echo \"$FERRY_ENV $FERRY_VERSION\" >> '{}'",
        log.display()
    ));
    let mut s = format!(
        "pipeline: it\nsource:\n  branch: main\nbuild:\n  steps:\n    - name: build\n      run: {}\n",
        yaml_str(build_step)
    );
    s.push_str("environments:\n");
    for (name, extra) in envs {
        s.push_str(&format!(
            "  - name: {name}\n    deploy:\n      command:\n        run: {deploy}\n{extra}"
        ));
    }
    s
}

// ---------------------------------------------------------------------------------------
// 2. The coverage gate.

#[test]
fn coverage_seventy_percent_stops_the_run_before_test() {
    let repo = Repo::new();
    let port = free_port();
    let start = yaml_str(&format!(
        "{} __sample-service --port {port}",
        support::ferry_sh()
    ));
    repo.write(
        "ferry.yml",
        &format!(
            r#"pipeline: low-coverage
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
      reports:
        junit: reports/unit.xml
        coverage: reports/lcov.info
  gates:
    coverage_min: 80
  artifact: dist
environments:
  - name: test
    deploy:
      release:
        root: .ferry/envs/test
        start: {start}
        health: http://127.0.0.1:{port}/health
  - name: production
    approval:
      timeout: 1h
    deploy:
      command:
        run: echo deploy
"#
        ),
    );
    repo.write_exec(
        "ci/unit.sh",
        r#"#!/bin/sh
set -eu
mkdir -p reports
printf '<testsuite name="u" tests="1"><testcase classname="u" name="ok"/></testsuite>\n' > reports/unit.xml
{ echo "SF:src/a.rs"; for n in 1 2 3 4 5 6 7; do echo "DA:$n,1"; done
  for n in 8 9 10; do echo "DA:$n,0"; done; echo "LF:10"; echo "LH:7"; echo "end_of_record"; } > reports/lcov.info
"#,
    );
    repo.write("dist/index.html", "<h1>Hello</h1>\n");
    repo.write(".gitignore", ".ferry/\nreports/\n");
    repo.commit("Untested code");

    let out = repo.ferry(&["run", "--json"]);
    assert_code(&out, 1, "ferry run with 70 % coverage");
    let view = support::json(&out);
    let reason = view["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("70") && reason.contains("80"),
        "the reason names the coverage and the threshold: {reason:?}"
    );
    for s in view["stages"].as_array().expect("stages").iter().skip(1) {
        assert_eq!(s["status"], "skipped", "stage after build: {s:#}");
    }
    let h = repo.history();
    assert_eq!(
        h["deployments"],
        serde_json::json!([]),
        "no deployment: {h:#}"
    );
    assert!(
        !repo.state().join("envs/test/service.pid").exists(),
        "the test service was never started"
    );
    assert!(!listening(port), "nothing listens on the test port {port}");
    let st = repo.status();
    assert_eq!(env_of(&st, "test")["status"], "never_deployed", "{st:#}");
    assert_eq!(env_of(&st, "test")["version"], Value::Null, "{st:#}");
}

// ---------------------------------------------------------------------------------------
// 3. A failing integration test.

/// The integration test writes a JUnit report with one failing case and exits `code`.
fn failing_integration_test(code: i32) {
    let repo = Repo::new();
    let tests = "    tests:\n      - name: integration\n        run: ./ci/integration.sh\n        reports:\n          junit: reports/integration.xml\n";
    repo.write(
        "ferry.yml",
        &command_pipeline(
            &repo,
            "echo built",
            &[
                ("test", tests),
                ("staging", ""),
                ("production", "    approval:\n      timeout: 1h\n"),
            ],
        ),
    );
    repo.write_exec(
        "ci/integration.sh",
        &format!(
            r#"#!/bin/sh
mkdir -p reports
cat > reports/integration.xml <<'EOF'
<?xml version="1.0"?>
<testsuite name="integration" tests="2" failures="1">
  <testcase classname="checkout" name="cart_opens"/>
  <testcase classname="checkout" name="checkout_total_is_correct">
    <failure message="expected 42, got 41">assertion failed</failure>
  </testcase>
</testsuite>
EOF
echo "integration: 1 of 2 failed"
exit {code}
"#
        ),
    );
    repo.write(".gitignore", ".ferry/\nreports/\ndeploys.log\n");
    let sha = repo.commit("Break the checkout total");

    let out = repo.ferry(&["run", "--json"]);
    assert_code(&out, 1, "ferry run with a failing integration test");
    let view = support::json(&out);
    let id = view["id"].as_i64().expect("run id");

    let h = repo.history();
    let test = deployments_of(&h, "test");
    assert_eq!(test.len(), 1, "{h:#}");
    assert_eq!(test[0]["status"], "failed", "{h:#}");
    assert_eq!(test[0]["version"], sha.as_str());
    assert_eq!(test[0]["integrationTestsPassed"], false, "{h:#}");
    assert!(deployments_of(&h, "staging").is_empty(), "{h:#}");
    assert!(deployments_of(&h, "production").is_empty(), "{h:#}");
    let deployed = std::fs::read_to_string(repo.join("deploys.log")).unwrap_or_default();
    assert_eq!(
        deployed.trim(),
        format!("test {sha}"),
        "only test was deployed"
    );

    let st = repo.status();
    assert_eq!(
        st["runs"],
        serde_json::json!([]),
        "nothing unfinished: {st:#}"
    );
    assert_eq!(env_of(&st, "staging")["status"], "never_deployed", "{st:#}");
    assert_eq!(
        env_of(&st, "production")["status"],
        "never_deployed",
        "{st:#}"
    );

    let reason = view["reason"].as_str().unwrap_or_default().to_string();
    let logs = repo.ferry(&["logs", &id.to_string()]);
    assert!(
        reason.contains("checkout_total_is_correct")
            || stdout(&logs).contains("checkout_total_is_correct"),
        "the failed test is named (script exit {code}): reason {reason:?}; logs {}",
        describe(&logs)
    );
}

#[test]
fn failing_integration_test_stops_promotion() {
    // What test runners do: a failing case in the report and a non-zero exit.
    failing_integration_test(1);
}

#[test]
fn failing_junit_case_stops_promotion_even_when_the_script_exits_zero() {
    failing_integration_test(0);
}

// ---------------------------------------------------------------------------------------
// 4. and 5. Approval timing out, approval rejected.

fn approval_pipeline(repo: &Repo, timeout: &str) {
    repo.write(
        "ferry.yml",
        &command_pipeline(
            repo,
            "echo built",
            &[
                ("test", ""),
                (
                    "production",
                    &format!("    approval:\n      timeout: {timeout}\n"),
                ),
            ],
        ),
    );
    repo.write(".gitignore", ".ferry/\ndeploys.log\n");
}

#[test]
fn approval_timeout_fails_the_run_and_deploys_nothing_to_production() {
    let repo = Repo::new();
    approval_pipeline(&repo, "2s");
    repo.commit("Wait for nobody");

    let out = repo.ferry(&["run", "--json"]);
    assert_code(&out, 1, "ferry run whose approval times out");
    let view = support::json(&out);
    let reason = view["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("timed out"), "reason: {reason:?}");
    let h = repo.history();
    assert!(deployments_of(&h, "production").is_empty(), "{h:#}");
    assert_eq!(deployments_of(&h, "test").len(), 1, "{h:#}");
    let deployed = std::fs::read_to_string(repo.join("deploys.log")).unwrap_or_default();
    assert!(!deployed.contains("production"), "{deployed}");
    let st = repo.status();
    assert_eq!(st["runs"], serde_json::json!([]), "{st:#}");
}

#[test]
fn rejected_approval_fails_the_run_and_a_later_approve_conflicts() {
    let repo = Repo::new();
    approval_pipeline(&repo, "1h");
    repo.commit("Ship on Friday");

    let mut run = repo.spawn(&["run", "--json"]);
    let id = repo.wait_for_approval(&mut run, APPROVAL_WAIT);
    let r = repo.ferry(&[
        "reject",
        &id.to_string(),
        "--reason",
        "not today",
        "--by",
        "reviewer",
    ]);
    assert_code(&r, 0, "ferry reject");
    let out = run.wait(support::LONG);
    assert_code(&out, 1, "ferry run after rejection");
    let view = support::json(&out);
    let reason = view["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not today"), "reason: {reason:?}");
    assert_eq!(last_run(&repo)["status"], "failed");
    let h = repo.history();
    assert!(deployments_of(&h, "production").is_empty(), "{h:#}");

    let again = repo.ferry(&["approve", &id.to_string()]);
    assert_code(&again, 6, "approving a rejected run");
    assert!(
        stderr(&again).contains(&id.to_string()),
        "names the run: {}",
        describe(&again)
    );
}

// ---------------------------------------------------------------------------------------
// 6. Bad input: clear messages and documented exit codes.

#[test]
fn unknown_key_is_reported_with_line_column_and_suggestion() {
    let repo = Repo::new();
    repo.write(
        "ferry.yml",
        "pipeline: typo\nbuild:\n  steps:\n    - name: unit\n      run: echo hi\n      timout: 5m\nenvironments:\n  - name: test\n    deploy:\n      command:\n        run: echo deploy\n",
    );
    repo.commit("Typo");
    let v = repo.ferry(&["validate"]);
    assert_code(&v, 3, "ferry validate with an unknown key");
    let err = stderr(&v);
    assert!(err.contains("ferry.yml:6:7"), "line and column: {err}");
    assert!(err.contains("timout"), "names the key: {err}");
    assert!(err.contains("did you mean"), "suggests: {err}");
    assert!(err.contains("timeout"), "suggests `timeout`: {err}");

    let j = repo.ferry(&["validate", "--json"]);
    assert_code(&j, 3, "ferry validate --json with an unknown key");
    let v = support::json(&j);
    assert_eq!(v["valid"], false, "{v:#}");
    let p = &v["problems"][0];
    assert_eq!(
        (p["line"].as_u64(), p["column"].as_u64()),
        (Some(6), Some(7)),
        "{v:#}"
    );

    let r = repo.ferry(&["run"]);
    assert_code(&r, 3, "ferry run with an invalid ferry.yml");
    assert!(stderr(&r).contains("ferry.yml:6:7"), "{}", describe(&r));
    assert!(!repo.state().join("work").exists() || walk(&repo.state().join("work")).is_empty());
}

#[test]
fn missing_pipeline_file_points_at_ferry_init() {
    let repo = Repo::new();
    repo.write("README", "nothing here\n");
    repo.commit("No pipeline");
    for args in [&["validate"][..], &["run"][..], &["status"][..]] {
        let o = repo.ferry(args);
        assert_code(&o, 3, &format!("ferry {args:?} without ferry.yml"));
        let err = stderr(&o);
        assert!(err.contains("ferry.yml"), "{err}");
        assert!(err.contains("ferry init"), "{err}");
    }
}

#[test]
fn init_writes_a_valid_starter_and_refuses_to_overwrite() {
    let repo = Repo::new();
    let i = repo.ferry(&["init"]);
    assert_code(&i, 0, "ferry init");
    assert!(repo.join("ferry.yml").is_file());
    let written = repo.read("ferry.yml");
    assert_code(
        &repo.ferry(&["validate"]),
        0,
        "ferry validate of the starter",
    );
    let again = repo.ferry(&["init"]);
    assert_code(&again, 6, "ferry init over an existing file");
    assert!(stderr(&again).contains("ferry.yml"), "{}", describe(&again));
    assert!(stderr(&again).contains("--force"), "{}", describe(&again));
    assert_eq!(repo.read("ferry.yml"), written, "the file is left alone");
}

#[test]
fn a_script_committed_without_the_executable_bit_says_chmod() {
    let repo = Repo::new();
    repo.write(
        "ferry.yml",
        &command_pipeline(&repo, "./ci/build.sh", &[("test", "")]),
    );
    repo.write("ci/build.sh", "#!/bin/sh\necho building\n"); // mode 0644
    repo.write(".gitignore", ".ferry/\ndeploys.log\n");
    repo.commit("Forget chmod");
    let out = repo.ferry(&["run", "--json"]);
    assert_code(&out, 1, "ferry run of a non-executable script");
    let view = support::json(&out);
    let reason = view["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("chmod +x"), "reason: {reason:?}");
    assert!(deployments_of(&repo.history(), "test").is_empty());
}

#[test]
fn a_missing_or_broken_junit_report_is_named() {
    for (what, script) in [
        ("missing", "echo 'no report written'"),
        (
            "broken",
            "mkdir -p reports && printf '<testsuite><testcase name=\"a\"' > reports/unit.xml",
        ),
    ] {
        let repo = Repo::new();
        let mut yml = command_pipeline(&repo, script, &[("test", "")]);
        yml = yml.replace(
            "    - name: build\n",
            "    - name: build\n      reports:\n        junit: reports/unit.xml\n",
        );
        repo.write("ferry.yml", &yml);
        repo.write(".gitignore", ".ferry/\ndeploys.log\n");
        repo.commit(what);
        let out = repo.ferry(&["run", "--json"]);
        assert_code(&out, 1, &format!("ferry run with a {what} JUnit report"));
        let view = support::json(&out);
        let reason = view["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("reports/unit.xml"),
            "{what} report: the reason names the path: {reason:?}"
        );
        assert!(deployments_of(&repo.history(), "test").is_empty(), "{what}");
    }
}

#[test]
fn unknown_commit_and_unknown_run_are_not_found() {
    let repo = Repo::new();
    repo.write(
        "ferry.yml",
        &command_pipeline(&repo, "echo built", &[("test", "")]),
    );
    repo.commit("One commit");
    let r = repo.ferry(&["run", "--commit", "deadbeef"]);
    assert_code(&r, 5, "ferry run --commit deadbeef");
    assert!(stderr(&r).contains("deadbeef"), "{}", describe(&r));
    assert_eq!(
        repo.history()["runs"],
        serde_json::json!([]),
        "no run recorded"
    );

    let l = repo.ferry(&["logs", "999"]);
    assert_code(&l, 5, "ferry logs 999");
    assert!(stderr(&l).contains("999"), "{}", describe(&l));
    let lj = repo.ferry(&["logs", "999", "--json"]);
    assert_code(&lj, 5, "ferry logs 999 --json");
    assert_eq!(support::json(&lj)["exit_code"], 5, "{}", describe(&lj));
    let a = repo.ferry(&["approve", "999"]);
    assert_code(&a, 5, "ferry approve 999");
}

#[test]
fn a_locked_database_is_reported_as_locked() {
    let repo = Repo::new();
    repo.write(
        "ferry.yml",
        &command_pipeline(&repo, "echo built", &[("test", "")]),
    );
    repo.write(".gitignore", ".ferry/\ndeploys.log\n");
    repo.commit("Lock me");
    assert_code(
        &repo.ferry(&["status"]),
        0,
        "first ferry status creates the db",
    );
    let db = repo.state().join("ferry.db");
    assert!(db.is_file());
    let quick = [("FERRY_BUSY_TIMEOUT_MS", "300")];

    // Another process holds the write lock: readers still answer (WAL, by design), a
    // writer gives up after the busy timeout with exit 4.
    let conn = rusqlite::Connection::open(&db).expect("open the state database");
    conn.execute_batch("BEGIN EXCLUSIVE;")
        .expect("take the write lock");
    let st = repo.ferry_env(&["status"], &quick);
    assert_code(
        &st,
        0,
        "ferry status while another process writes (WAL readers proceed)",
    );
    let run = repo.ferry_env(&["run"], &quick);
    assert_code(&run, 4, "ferry run on a database locked for writing");
    let err = stderr(&run);
    assert!(err.contains("locked"), "{err}");
    assert!(err.contains("ferry.db"), "names the database: {err}");
    conn.execute_batch("ROLLBACK;").expect("release the lock");
    drop(conn);

    // Another process holds the database exclusively: even `ferry status` cannot read.
    let conn = rusqlite::Connection::open(&db).expect("open the state database");
    conn.execute_batch(
        "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; CREATE TABLE lock_holder(x);",
    )
    .expect("take the database exclusively");
    let st = repo.ferry_env(&["status"], &quick);
    assert_code(&st, 4, "ferry status on an exclusively locked database");
    let err = stderr(&st);
    assert!(err.contains("locked"), "{err}");
    assert!(err.contains("ferry.db"), "names the database: {err}");
    conn.execute_batch("ROLLBACK;").expect("roll back");
    drop(conn);

    assert_code(
        &repo.ferry(&["status"]),
        0,
        "ferry status after the lock is gone",
    );
    assert_eq!(
        repo.history()["runs"],
        serde_json::json!([]),
        "the refused run left no record"
    );
    assert_code(&repo.ferry(&["run"]), 0, "ferry run after the lock is gone");
}

#[test]
fn a_state_dir_that_cannot_be_created_is_named() {
    let repo = Repo::new();
    repo.write(
        "ferry.yml",
        &command_pipeline(&repo, "echo built", &[("test", "")]),
    );
    repo.write("blocker", "a regular file\n");
    repo.commit("Blocked state");
    let bad = repo.join("blocker/state");
    let bad_s = bad.display().to_string();
    for args in [&["status"][..], &["run"][..]] {
        let mut a = args.to_vec();
        a.extend(["--state-dir", &bad_s]);
        let o = repo.ferry(&a);
        let code = o.status.code();
        assert!(
            matches!(code, Some(4 | 7)),
            "ferry {a:?}: a documented code for an unusable state folder; {}",
            describe(&o)
        );
        assert!(
            stderr(&o).contains(&bad_s),
            "ferry {a:?} names the path: {}",
            describe(&o)
        );
    }
}

#[test]
fn a_folder_that_is_not_a_git_repository() {
    let dir = Repo::plain();
    dir.write(
        "ferry.yml",
        &command_pipeline(&dir, "echo built", &[("test", "")]),
    );
    let o = dir.ferry(&["run"]);
    assert_code(&o, 7, "ferry run outside a git repository");
    assert!(stderr(&o).contains("git"), "{}", describe(&o));
}

// ---------------------------------------------------------------------------------------
// 7. Untrusted text is never shell code.

#[test]
fn commit_message_reaches_steps_verbatim_and_is_never_run() {
    let repo = Repo::new();
    let out_dir = repo.join("out");
    std::fs::create_dir_all(&out_dir).expect("out folder");
    let msg_file = out_dir.join("msg.txt");
    let deploy_file = out_dir.join("deploy-msg.txt");
    let found_file = out_dir.join("found.txt");
    repo.write(
        "ferry.yml",
        &format!(
            r#"pipeline: untrusted
build:
  steps:
    - name: message
      run: {}
    - name: look
      run: {}
environments:
  - name: test
    deploy:
      command:
        run: {}
"#,
            yaml_str(&format!(
                "printf '%s' \"$FERRY_COMMIT_MESSAGE\" > '{}'",
                msg_file.display()
            )),
            yaml_str(&format!(
                "find . -name 'pwned*' > '{}'",
                found_file.display()
            )),
            yaml_str(&format!(
                "printf '%s' \"$FERRY_COMMIT_MESSAGE\" > '{}'",
                deploy_file.display()
            )),
        ),
    );
    repo.write(".gitignore", ".ferry/\nout/\n");
    let message = "Fix the \"cart\" $(touch pwned) and `touch pwned2`; it's done $HOME ${PATH} \\n\n\nBody: $(touch pwned) | rm -rf nothing & echo 'x'";
    repo.commit(message);
    let recorded = repo.git(&["log", "-1", "--format=%B"]);

    let out = repo.ferry(&["run", "--json"]);
    assert_code(&out, 0, "ferry run of a commit with shell in its message");
    for f in [&msg_file, &deploy_file] {
        let got = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(got.trim_end(), recorded.trim_end(), "{}", f.display());
        assert_eq!(got.trim_end(), message, "{}", f.display());
    }
    let found = std::fs::read_to_string(&found_file).expect("found.txt");
    assert_eq!(found, "", "pwned files in the checkout: {found}");
    let pwned: Vec<_> = walk(repo.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pwned"))
        })
        .collect();
    assert!(pwned.is_empty(), "injected commands ran: {pwned:?}");
    // The message appears verbatim in the records too.
    let h = repo.history();
    assert_eq!(
        deployments_of(&h, "test")[0]["commitMessage"]
            .as_str()
            .map(str::trim_end),
        Some(message)
    );
}

// ---------------------------------------------------------------------------------------
// 8. The checkout is the commit, not the working tree.

#[test]
fn the_run_uses_the_commit_not_the_working_tree() {
    let repo = Repo::new();
    let seen = repo.join("seen.txt");
    repo.write(
        "ferry.yml",
        &command_pipeline(
            &repo,
            &format!("./ci/build.sh > '{}'", seen.display()),
            &[("test", "")],
        ),
    );
    repo.write_exec(
        "ci/build.sh",
        "#!/bin/sh\necho committed-script\ncat marker.txt\nif [ -e untracked.txt ]; then echo untracked-visible; fi\n",
    );
    repo.write("marker.txt", "committed-marker\n");
    repo.write(".gitignore", ".ferry/\nseen.txt\ndeploys.log\n");
    let sha = repo.commit("The committed script");
    // Uncommitted edits and an untracked file in the working tree.
    repo.write_exec("ci/build.sh", "#!/bin/sh\necho working-tree-script\n");
    repo.write("marker.txt", "working-tree-marker\n");
    repo.write("untracked.txt", "not committed\n");

    let out = repo.ferry(&["run"]);
    assert_code(&out, 0, "ferry run with a dirty working tree");
    let got = std::fs::read_to_string(&seen).expect("seen.txt");
    assert_eq!(got, "committed-script\ncommitted-marker\n");
    assert_eq!(env_of(&repo.status(), "test")["version"], sha.as_str());
    // The working tree is untouched.
    assert_eq!(repo.read("marker.txt"), "working-tree-marker\n");
}

// ---------------------------------------------------------------------------------------
// 9. Two runs at once.

#[test]
fn two_runs_at_once_never_deploy_the_same_environment_concurrently() {
    let repo = Repo::new();
    let log = repo.join("intervals.log");
    let deploy = yaml_str(&format!(
        "echo \"start $FERRY_ENV $FERRY_VERSION $(date +%s%N)\" >> '{l}'; sleep 1; echo \"end $FERRY_ENV $FERRY_VERSION $(date +%s%N)\" >> '{l}'",
        l = log.display()
    ));
    let mut yml = String::from(
        "pipeline: twice\nbuild:\n  steps:\n    - name: build\n      run: echo built\nenvironments:\n",
    );
    for env in ["test", "staging"] {
        yml.push_str(&format!(
            "  - name: {env}\n    deploy:\n      command:\n        run: {deploy}\n"
        ));
    }
    repo.write("ferry.yml", &yml);
    repo.write(".gitignore", ".ferry/\nintervals.log\n");
    let first = repo.commit("First");
    repo.write("change.txt", "second\n");
    let second = repo.commit("Second");

    let mut a = repo.spawn(&["run", "--commit", &first, "--json"]);
    let mut b = repo.spawn(&["run", "--commit", &second, "--json"]);
    let oa = a.wait(support::LONG);
    let ob = b.wait(support::LONG);
    let mut succeeded = 0;
    for (o, sha) in [(&oa, &first), (&ob, &second)] {
        let code = o.status.code();
        assert!(
            matches!(code, Some(0 | 1)),
            "run of {sha}: a run outcome, not an error: {}",
            describe(o)
        );
        let view = support::json(o);
        assert_eq!(view["commit"]["sha"], sha.as_str());
        match view["status"].as_str() {
            Some("succeeded") => {
                assert_eq!(code, Some(0));
                succeeded += 1;
            }
            Some("superseded" | "failed") => assert_eq!(code, Some(1)),
            other => panic!("run of {sha} ended {other:?}: {}", describe(o)),
        }
    }
    assert!(
        succeeded >= 1,
        "at least one run succeeded: {}\n{}",
        describe(&oa),
        describe(&ob)
    );

    let text = std::fs::read_to_string(&log).expect("intervals.log");
    for env in ["test", "staging"] {
        let mut open: Option<&str> = None;
        let mut n = 0;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1) != Some(&env) {
                continue;
            }
            match (f[0], open) {
                ("start", None) => {
                    open = Some(f[2]);
                    n += 1;
                }
                ("end", Some(v)) if v == f[2] => open = None,
                _ => panic!("{env}: overlapping deployments:\n{text}"),
            }
        }
        assert!(open.is_none(), "{env}: a deployment never ended:\n{text}");
        assert!(n >= 1, "{env} was deployed:\n{text}");
    }
    let st = repo.status();
    assert_eq!(st["runs"], serde_json::json!([]), "{st:#}");
    for env in ["test", "staging"] {
        let v = env_of(&st, env)["version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(v == first || v == second, "{env} at {v}: {st:#}");
        let last = text
            .lines()
            .rfind(|l| l.starts_with(&format!("end {env} ")))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or_default();
        assert_eq!(v, last, "{env} runs what was deployed last:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------
// 10. `ferry status --json`.

#[test]
fn status_json_shape_while_awaiting_approval_and_after() {
    let repo = Repo::new();
    approval_pipeline(&repo, "1h");
    let sha = repo.commit("Status shape");
    let mut run = repo.spawn(&["run"]);
    let id = repo.wait_for_approval(&mut run, APPROVAL_WAIT);

    let st = repo.status();
    let envs = st["environments"].as_array().expect("environments");
    let names: Vec<&str> = envs.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["test", "production"], "{st:#}");
    for e in envs {
        assert!(e["status"].is_string(), "{e:#}");
        assert!(e.get("version").is_some(), "{e:#}");
    }
    assert_eq!(env_of(&st, "test")["version"], sha.as_str());
    assert_eq!(env_of(&st, "test")["status"], "succeeded");
    assert_eq!(env_of(&st, "production")["version"], Value::Null);
    assert_eq!(env_of(&st, "production")["status"], "never_deployed");
    let runs = st["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{st:#}");
    assert_eq!(runs[0]["id"], id);
    assert_eq!(runs[0]["commit"], sha.as_str());
    assert_eq!(runs[0]["status"], "awaiting_approval");
    assert_eq!(runs[0]["stage"], "production", "{st:#}");

    assert_code(
        &repo.ferry(&["approve", &id.to_string(), "--by", "reviewer"]),
        0,
        "ferry approve",
    );
    assert_code(&run.wait(support::LONG), 0, "ferry run after approval");
    let st = repo.status();
    assert_eq!(st["runs"], serde_json::json!([]), "{st:#}");
    assert_eq!(env_of(&st, "production")["version"], sha.as_str());
    assert_eq!(env_of(&st, "production")["status"], "succeeded");
}

// ---------------------------------------------------------------------------------------
// 11. `ferry demo`.

#[test]
fn demo_takes_the_sample_to_production() {
    let scratch = Repo::plain();
    let dir = scratch.join("demo");
    let dir_s = dir.display().to_string();
    let out = support::ferry_in(scratch.path(), &["demo", "--dir", &dir_s]);
    assert_code(&out, 0, "ferry demo");
    let text = stdout(&out);
    for env in ["test", "staging", "production"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(env) && l.contains("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no table line for {env}: {text}"));
        let version = line.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            version.len() >= 7 && version.chars().all(|c| c.is_ascii_hexdigit()),
            "{env} has a version: {line:?}"
        );
    }
    for env in ["test", "staging", "production"] {
        assert!(
            !scratch_service_alive(&dir, env),
            "the demo stops its {env} service"
        );
    }
}

fn scratch_service_alive(root: &Path, env: &str) -> bool {
    std::fs::read_to_string(root.join(".ferry/envs").join(env).join("service.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_some_and(support::group_alive)
}

// ---------------------------------------------------------------------------------------
// 12. A broken pipe.

#[test]
fn history_into_a_closed_pipe_exits_zero() {
    let repo = Repo::new();
    repo.write(
        "ferry.yml",
        &command_pipeline(&repo, "echo built", &[("test", "")]),
    );
    repo.write(".gitignore", ".ferry/\ndeploys.log\n");
    repo.commit("Something to list");
    assert_code(&repo.ferry(&["run"]), 0, "ferry run");
    for args in [
        &["history"][..],
        &["history", "--json"][..],
        &["status"][..],
        &["report"][..],
        &["report", "--json"][..],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader); // the reader is gone before ferry writes anything
        let out = support::ferry_cmd(repo.path(), args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run ferry");
        assert_eq!(
            out.status.code(),
            Some(0),
            "ferry {args:?} into a closed pipe: stderr {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "ferry {args:?}: {}",
            stderr(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Ctrl-C.

#[test]
fn ctrl_c_cancels_the_run_and_stops_the_step_process_group() {
    let repo = Repo::new();
    let pids = repo.join("pids.txt");
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: cancel\nbuild:\n  steps:\n    - name: slow\n      run: {}\nenvironments:\n  - name: test\n    deploy:\n      command:\n        run: echo deployed\n",
            yaml_str(&format!("sleep 300 & echo $! > '{p}'; echo $$ >> '{p}'; sleep 301", p = pids.display()))
        ),
    );
    repo.write(".gitignore", ".ferry/\npids.txt\n");
    repo.commit("Slow build");
    let mut run = repo.spawn(&["run", "--json"]);
    // Wait until the step is running (both pids written).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&pids)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    run.interrupt();
    let out = run.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let view = support::json(&out);
    assert_eq!(view["status"], "cancelled", "{}", describe(&out));
    assert_eq!(view["stages"][0]["steps"][0]["status"], "cancelled");
    assert_eq!(view["stages"][1]["status"], "skipped");
    // The whole process group of the step is gone, background child included.
    for pid in std::fs::read_to_string(&pids).expect("pids").lines() {
        let pid: i32 = pid.trim().parse().expect("a pid");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || zombie(pid),
            "process {pid} outlived the cancelled step"
        );
    }
    let status = repo.status();
    assert_eq!(
        status["runs"].as_array().map(Vec::len),
        Some(0),
        "no unfinished run: {status}"
    );
    assert_eq!(
        repo.history()["deployments"].as_array().map(Vec::len),
        Some(0)
    );
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) == Some("Z"))
        .unwrap_or(true)
}
