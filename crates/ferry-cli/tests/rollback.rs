//! Integration tests of automatic and manual rollback (issue 3) with the real `ferry`
//! binary: real git repositories, real processes (the built-in sample service, shell
//! deploy and rollback commands), real HTTP on free loopback ports, real SQLite. The
//! evidence is what users see: exit codes, `ferry history --json` (deployment status,
//! `rollbackReason`, `rollbackLevel`, `rollbackTime`), `ferry status --json`, what the
//! services answer on `/version`, and what the deploy / rollback commands recorded.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Repo, assert_code, describe, free_port, http_get, stderr, stdout, yaml_str};

// ---------------------------------------------------------------------------------------
// Helpers.

/// The first 12 characters of a commit SHA, as ferry prints it.
fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// `ferry run --json` to completion: its output and the run view it printed.
fn run(repo: &Repo) -> (std::process::Output, Value) {
    let out = repo.ferry(&["run", "--json"]);
    let view = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`ferry run --json` printed no run view ({e}): {}",
            describe(&out)
        )
    });
    (out, view)
}

/// `ferry run`, which must succeed.
fn run_ok(repo: &Repo, what: &str) -> Value {
    let (out, view) = run(repo);
    assert_code(&out, 0, what);
    assert_eq!(view["status"], "succeeded", "{what}: {view:#}");
    view
}

/// A stage of a run view.
fn stage<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no stage {name} in {view:#}"))
}

/// A step of a run view.
fn step<'a>(view: &'a Value, stage_name: &str, name: &str) -> &'a Value {
    stage(view, stage_name)["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {stage_name}/{name} in {view:#}"))
}

/// The deployments of `env` in `ferry history --json`, oldest first.
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

/// The one deployment of `version` to `env`.
fn deployment(h: &Value, env: &str, version: &str) -> Value {
    let all: Vec<Value> = deployments(h, env)
        .into_iter()
        .filter(|d| d["version"] == version)
        .collect();
    assert_eq!(
        all.len(),
        1,
        "expected one deployment of {} to {env}: {h:#}",
        short(version)
    );
    all.into_iter().next().unwrap_or_default()
}

/// Asserts that `d` was rolled back at `level` with a reason containing `because`, at a
/// recorded time no earlier than its start.
#[track_caller]
fn assert_rolled_back(d: &Value, level: &str, because: &str) {
    assert_eq!(d["status"], "rolled_back", "deployment: {d:#}");
    assert_eq!(d["rollbackLevel"], level, "deployment: {d:#}");
    let reason = d["rollbackReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(because),
        "the rollback reason should say `{because}`: {reason:?} in {d:#}"
    );
    let (start, at) = (d["startTime"].as_i64(), d["rollbackTime"].as_i64());
    assert!(
        at.is_some() && at >= start,
        "rollbackTime is recorded, not before startTime: {d:#}"
    );
}

/// Asserts that `d` succeeded and was never rolled back.
#[track_caller]
fn assert_untouched(d: &Value) {
    assert_eq!(d["status"], "succeeded", "deployment: {d:#}");
    assert_eq!(d["rollbackLevel"], Value::Null, "deployment: {d:#}");
    assert_eq!(d["rollbackReason"], Value::Null, "deployment: {d:#}");
}

/// An environment in `ferry status --json`.
fn env_status(st: &Value, name: &str) -> Value {
    st["environments"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no environment {name} in {st:#}"))
}

/// What the sample service on `port` says it runs.
fn served_version(port: u16) -> String {
    let (code, body) = http_get(port, "/version");
    assert_eq!(code, 200, "/version on port {port}: {body}");
    body.trim().to_string()
}

fn health(port: u16) -> u16 {
    http_get(port, "/health").0
}

/// The rollback validation every pipeline here uses (short, as the brief asks).
const ROLLBACK: &str =
    "rollback:\n  automatic: true\n  validate:\n    stabilize: 1s\n    health_timeout: 5s\n";

// --- Release pipelines with the built-in sample service ---------------------------------

/// A sample repository: `site/index.html`, a build that copies `site/` into `dist/`
/// (and a file `unhealthy` when the commit has one), `.gitignore`.
fn sample_repo() -> Repo {
    let repo = Repo::new();
    repo.write(
        "site/index.html",
        "<!doctype html>\n<h1>Hello from ferry</h1>\n",
    );
    repo.write(
        "ci/build.sh",
        "#!/bin/sh\nset -eu\nrm -rf dist\nmkdir -p dist\ncp -R site dist/site\n\
         if [ -f unhealthy ]; then cp unhealthy dist/unhealthy; fi\necho \"built $FERRY_VERSION\"\n",
    );
    repo.write(".gitignore", ".ferry/\ndist/\nops/\nreports/\n");
    repo
}

/// One `release` environment serving the sample service on `port`.
fn release_env(name: &str, port: u16, health_timeout: &str, extra: &str) -> String {
    let start = yaml_str(&format!(
        "{} __sample-service --port {port}",
        support::ferry_sh()
    ));
    format!(
        "  - name: {name}\n    deploy:\n      release:\n        root: .ferry/envs/{name}\n        start: {start}\n        health: http://127.0.0.1:{port}/health\n        health_timeout: {health_timeout}\n{extra}"
    )
}

/// A whole release pipeline: build, the given environments, `tail` (alarms …), rollback.
fn release_pipeline(envs: &[String], tail: &str) -> String {
    format!(
        "pipeline: rollback-it\nsource:\n  branch: main\nbuild:\n  steps:\n    - name: package\n      run: sh ci/build.sh\n  artifact: dist\nenvironments:\n{}{tail}{ROLLBACK}",
        envs.concat()
    )
}

/// An `http` alarm on the sample service's health, one datapoint a second, ALARM after
/// two breaching datapoints.
fn health_alarm(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    http:\n      url: http://127.0.0.1:{port}/health\n      expect_status: 200\n      timeout: 1s\n    period: 1s\n    evaluation_periods: 2\n    datapoints_to_alarm: 2\n"
    )
}

// --- Command pipelines with scripted deploy and rollback commands -----------------------

/// `ops/deploy.sh` and `ops/rollback.sh` (outside git): each appends
/// `deploy|rollback ENV VERSION` to `ops/actions.log`, dumps its `FERRY_*` variables and
/// working folder into `ops/last-deploy.env` / `ops/last-rollback.env`, and fails when
/// `ENV VERSION` (or `ENV *`) is listed in `ops/fail-deploy` / `ops/fail-rollback`. The
/// rollback writes `$FERRY_VERSION` into `ops/rolled-back-to`, and sleeps a second when
/// `ops/slow` exists.
fn write_ops(repo: &Repo) {
    for (what, extra) in [
        ("deploy", ""),
        (
            "rollback",
            "printf '%s\\n' \"$FERRY_VERSION\" > \"$ops/rolled-back-to\"\nif [ -f \"$ops/slow\" ]; then sleep 1; fi\n",
        ),
    ] {
        repo.write_exec(
            &format!("ops/{what}.sh"),
            &format!(
                r#"#!/bin/sh
ops=$(dirname "$0")
line="$FERRY_ENV $FERRY_VERSION"
echo "{what} $line" >> "$ops/actions.log"
{{ env | grep '^FERRY_' | sort; echo "PWD=$(pwd)"; }} > "$ops/last-{what}.env"
if [ -f "$ops/fail-{what}" ] && grep -qxF -e "$line" -e "$FERRY_ENV *" "$ops/fail-{what}"; then
  echo "{what} of $line fails: it is listed in ops/fail-{what}" >&2
  exit 1
fi
{extra}echo "{what} of $line done"
"#
            ),
        );
    }
}

/// Makes `ops/{what}.sh` fail for `ENV VERSION` (`*` for every version).
fn fail(repo: &Repo, what: &str, env: &str, version: &str) {
    let p = repo.join(&format!("ops/fail-{what}"));
    let mut text = std::fs::read_to_string(&p).unwrap_or_default();
    text.push_str(&format!("{env} {version}\n"));
    repo.write(&format!("ops/fail-{what}"), &text);
}

fn clear_failures(repo: &Repo) {
    let _ = std::fs::remove_file(repo.join("ops/fail-deploy"));
    let _ = std::fs::remove_file(repo.join("ops/fail-rollback"));
}

/// The lines of `ops/actions.log`.
fn actions(repo: &Repo) -> Vec<String> {
    std::fs::read_to_string(repo.join("ops/actions.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `KEY=VALUE` lines of a dump written by the ops scripts.
fn env_dump(repo: &Repo, file: &str) -> std::collections::BTreeMap<String, String> {
    repo.read(file)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A pipeline whose environments are deployed by `ops/deploy.sh` (rolled back by
/// `ops/rollback.sh` when `with_rollback`); each `(name, extra yaml)`. The build packs
/// `dist/VERSION`.
fn command_pipeline(repo: &Repo, envs: &[(&str, &str)], with_rollback: bool, tail: &str) {
    write_ops(repo);
    let deploy = yaml_str(&format!("sh '{}'", repo.join("ops/deploy.sh").display()));
    let rollback = yaml_str(&format!("sh '{}'", repo.join("ops/rollback.sh").display()));
    let mut s = String::from(
        "pipeline: rollback-cmd\nsource:\n  branch: main\nbuild:\n  steps:\n    - name: package\n      run: \"mkdir -p dist && printf '%s\\\\n' \\\"$FERRY_VERSION\\\" > dist/VERSION\"\n  artifact: dist\nenvironments:\n",
    );
    for (name, extra) in envs {
        s.push_str(&format!(
            "  - name: {name}\n    deploy:\n      command:\n        run: {deploy}\n"
        ));
        if with_rollback {
            s.push_str(&format!("        rollback: {rollback}\n"));
        }
        s.push_str(extra);
    }
    s.push_str(tail);
    s.push_str(ROLLBACK);
    repo.write("ferry.yml", &s);
    repo.write(".gitignore", ".ferry/\ndist/\nops/\n");
}

/// `ferry validate` must accept the file (so a test fails on its own pipeline early).
fn assert_valid(repo: &Repo) {
    let out = repo.ferry(&["validate"]);
    assert_code(&out, 0, "ferry validate");
}

/// The actions recorded since the first `skip` lines.
fn actions_since(repo: &Repo, skip: usize) -> Vec<String> {
    actions(repo).into_iter().skip(skip).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// 1. A release that goes bad a few seconds after start is caught by staging's monitor.

#[test]
fn a_release_failing_after_start_is_caught_by_the_monitor_and_staging_is_rolled_back() {
    let repo = sample_repo();
    let (pt, ps, pp) = (free_port(), free_port(), free_port());
    let monitor =
        "    monitor:\n      duration: 8s\n      interval: 1s\n      alarms: [staging-health]\n";
    let yml = release_pipeline(
        &[
            release_env("test", pt, "5s", ""),
            release_env("staging", ps, "5s", monitor),
            release_env("production", pp, "5s", ""),
        ],
        &format!("alarms:\n{}", health_alarm("staging-health", ps)),
    );
    repo.write("ferry.yml", &yml);
    assert_valid(&repo);
    let a = repo.commit("A: the good release");
    run_ok(&repo, "the first run (A)");
    for (env, port) in [("test", pt), ("staging", ps), ("production", pp)] {
        assert_eq!(served_version(port), a, "{env} serves A after run 1");
    }

    // B answers 500 on /health two seconds after it starts.
    repo.write("site/fail-after", "2\n");
    let b = repo.commit("B: a cache layer that breaks after start");
    let (out, view) = run(&repo);
    assert_code(&out, 1, "the run of B, whose health goes bad in staging");
    assert_eq!(view["status"], "failed", "{view:#}");
    assert_eq!(stage(&view, "test")["status"], "succeeded", "{view:#}");
    assert_eq!(stage(&view, "staging")["status"], "failed", "{view:#}");
    assert_eq!(step(&view, "staging", "deploy")["status"], "succeeded");
    assert_eq!(
        step(&view, "staging", "monitor")["status"],
        "failed",
        "the monitor window, not the deploy, caught B: {view:#}"
    );
    assert_eq!(stage(&view, "production")["status"], "skipped", "{view:#}");

    let h = repo.history();
    assert_rolled_back(&deployment(&h, "staging", &b), "stage", "monitor");
    assert_untouched(&deployment(&h, "staging", &a));
    let prod = deployments(&h, "production");
    assert_eq!(prod.len(), 1, "production saw only A: {h:#}");
    assert_eq!(prod[0]["version"], a.as_str());
    assert_untouched(&prod[0]);
    // Stage level takes back only the environment that failed.
    assert_untouched(&deployment(&h, "test", &b));

    assert_eq!(served_version(ps), a, "staging serves A again");
    assert_eq!(health(ps), 200, "staging is healthy again");
    assert_eq!(served_version(pp), a, "production still serves A");
    assert_eq!(served_version(pt), b, "test keeps B");
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], a.as_str(), "{st:#}");
    assert_eq!(env_status(&st, "production")["version"], a.as_str());
}

// ---------------------------------------------------------------------------------------
// 2. A service that never becomes healthy: the deploy fails and is rolled back.

#[test]
fn a_release_that_never_becomes_healthy_fails_its_deploy_and_is_rolled_back() {
    let repo = sample_repo();
    let port = free_port();
    repo.write(
        "ferry.yml",
        &release_pipeline(&[release_env("staging", port, "2s", "")], ""),
    );
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");
    assert_eq!(served_version(port), a);

    // B's release answers 503 on /health from the start.
    repo.write("unhealthy", "yes\n");
    let b = repo.commit("B: never healthy");
    let (out, view) = run(&repo);
    assert_code(&out, 1, "the run of B");
    let deploy = step(&view, "staging", "deploy");
    assert_eq!(deploy["status"], "failed", "{view:#}");
    let why = deploy["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("health") && why.contains("2xx"),
        "the deploy step says the health check never answered 2xx: {why:?}"
    );

    let h = repo.history();
    assert_rolled_back(&deployment(&h, "staging", &b), "stage", "deploy");
    assert_untouched(&deployment(&h, "staging", &a));
    assert_eq!(served_version(port), a, "A serves again");
    assert_eq!(health(port), 200, "and is healthy");
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], a.as_str(), "{st:#}");
    assert!(repo.service_running("staging"));
}

// ---------------------------------------------------------------------------------------
// 3. A failing `command` deploy, with and without a `rollback:` command.

#[test]
fn a_failing_command_deploy_is_rolled_back_through_its_rollback_command() {
    let repo = Repo::new();
    command_pipeline(&repo, &[("staging", "")], true, "");
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");
    assert_eq!(actions(&repo), [format!("deploy staging {a}")]);

    let b = repo.commit("B");
    fail(&repo, "deploy", "staging", &b);
    let (out, view) = run(&repo);
    assert_code(&out, 1, "the run of B, whose deploy command fails");
    assert_eq!(step(&view, "staging", "deploy")["status"], "failed");
    assert_eq!(
        actions_since(&repo, 1),
        [
            format!("deploy staging {b}"),
            format!("rollback staging {a}")
        ],
        "one failed deploy, then one rollback command"
    );
    assert_eq!(
        repo.read("ops/rolled-back-to").trim(),
        a,
        "the rollback command got FERRY_VERSION = A"
    );
    let vars = env_dump(&repo, "ops/last-rollback.env");
    assert_eq!(vars.get("FERRY_ENV").map(String::as_str), Some("staging"));
    assert_eq!(
        vars.get("FERRY_PREVIOUS_VERSION").map(String::as_str),
        Some(b.as_str()),
        "the rollback command is told which version it replaces: {vars:?}"
    );
    assert_eq!(vars.get("FERRY_ROLLBACK").map(String::as_str), Some("1"));

    let h = repo.history();
    assert_rolled_back(&deployment(&h, "staging", &b), "stage", "deploy");
    assert_untouched(&deployment(&h, "staging", &a));
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], a.as_str(), "{st:#}");
}

#[test]
fn without_a_rollback_command_the_deploy_command_is_rerun_with_the_old_version() {
    let repo = Repo::new();
    command_pipeline(&repo, &[("staging", "")], false, "");
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");
    let deploy_a = env_dump(&repo, "ops/last-deploy.env");

    let b = repo.commit("B");
    fail(&repo, "deploy", "staging", &b);
    let (out, _) = run(&repo);
    assert_code(&out, 1, "the run of B, whose deploy command fails");
    assert_eq!(
        actions_since(&repo, 1),
        [format!("deploy staging {b}"), format!("deploy staging {a}")],
        "the failed deploy of B, then the deploy command again for A"
    );
    let vars = env_dump(&repo, "ops/last-deploy.env");
    let h = repo.history();
    let dep_a = deployment(&h, "staging", &a);
    assert_eq!(vars.get("FERRY_VERSION"), Some(&a), "{vars:?}");
    assert_eq!(vars.get("FERRY_ROLLBACK").map(String::as_str), Some("1"));
    assert_eq!(
        vars.get("FERRY_ARTIFACT").map(String::as_str),
        dep_a["artifactLocation"].as_str(),
        "the redeploy gets A's artifact: {vars:?}"
    );
    assert_eq!(
        vars.get("FERRY_ARTIFACT_DIGEST").map(String::as_str),
        dep_a["artifactDigest"].as_str()
    );
    // The old version's variables: what A's own deploy was given about its commit.
    assert_eq!(
        vars.get("FERRY_COMMIT_SHA"),
        deploy_a.get("FERRY_COMMIT_SHA"),
        "the redeploy of A gets A's FERRY_COMMIT_SHA, as A's deploy did: rollback {vars:?}, original {deploy_a:?}"
    );

    assert_rolled_back(&deployment(&h, "staging", &b), "stage", "deploy");
    assert_untouched(&dep_a);
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], a.as_str(), "{st:#}");
}

// ---------------------------------------------------------------------------------------
// 4. Stage level fails, full level runs: every environment back to the last version that
//    succeeded everywhere, production first.

/// test → staging → production with command deployers; A everywhere; B reaches staging
/// but its production deploy fails (production goes back to A at stage level). Returns
/// (A, B) and the number of actions so far.
fn three_environments_a_everywhere_b_not_in_production(repo: &Repo) -> (String, String) {
    command_pipeline(
        repo,
        &[("test", ""), ("staging", ""), ("production", "")],
        true,
        "",
    );
    assert_valid(repo);
    let a = repo.commit("A");
    run_ok(repo, "the run of A");
    let b = repo.commit("B");
    fail(repo, "deploy", "production", &b);
    let (out, _) = run(repo);
    assert_code(&out, 1, "the run of B, whose production deploy fails");
    assert_eq!(
        actions(repo),
        [
            format!("deploy test {a}"),
            format!("deploy staging {a}"),
            format!("deploy production {a}"),
            format!("deploy test {b}"),
            format!("deploy staging {b}"),
            format!("deploy production {b}"),
            format!("rollback production {a}"),
        ],
        "setup: A everywhere, B in test and staging only"
    );
    (a, b)
}

#[test]
fn a_failed_stage_rollback_escalates_to_a_full_rollback_production_first() {
    let repo = Repo::new();
    let (a, b) = three_environments_a_everywhere_b_not_in_production(&repo);
    let before = actions(&repo).len();

    // C fails its staging deploy; staging's last known good is B, and restoring B fails.
    let c = repo.commit("C");
    clear_failures(&repo);
    fail(&repo, "deploy", "staging", &c);
    fail(&repo, "rollback", "staging", &b);
    let (out, view) = run(&repo);
    assert_code(&out, 1, "the run of C");
    assert_eq!(stage(&view, "staging")["status"], "failed");
    assert_eq!(
        actions_since(&repo, before),
        [
            format!("deploy test {c}"),
            format!("deploy staging {c}"),
            format!("rollback staging {b}"),
            format!("rollback production {a}"),
            format!("rollback staging {a}"),
            format!("rollback test {a}"),
        ],
        "stage level to B fails, then full level to A: production, staging, test"
    );

    let h = repo.history();
    assert_rolled_back(&deployment(&h, "staging", &c), "full", "staging/deploy");
    assert_rolled_back(&deployment(&h, "test", &c), "full", "staging/deploy");
    assert_untouched(&deployment(&h, "production", &a));
    let st = repo.status();
    for env in ["test", "staging", "production"] {
        assert_eq!(
            env_status(&st, env)["version"],
            a.as_str(),
            "{env} runs A, the last version that succeeded everywhere: {st:#}"
        );
        assert_eq!(
            env_status(&st, env)["incident"],
            Value::Null,
            "no incident: the full level worked: {st:#}"
        );
    }
}

/// The same with release deployers and real services: staging's previous release (B)
/// has gone bad in place (a switch file the test puts into B's release folder after B
/// was deployed), so the stage level fails its validation and the full level takes every
/// environment back to A, which production never left.
#[test]
fn a_failed_stage_rollback_of_releases_escalates_to_full_and_every_service_serves_a() {
    let repo = sample_repo();
    let (pt, ps, pp) = (free_port(), free_port(), free_port());
    // Each environment's tests fail for a commit that carries its `break-<env>` file.
    let breaks = |env: &str| {
        format!("    tests:\n      - name: check\n        run: \"test ! -f break-{env}\"\n")
    };
    let yml = release_pipeline(
        &[
            release_env("test", pt, "3s", ""),
            release_env("staging", ps, "3s", &breaks("staging")),
            release_env("production", pp, "3s", &breaks("production")),
        ],
        "",
    );
    repo.write("ferry.yml", &yml);
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");

    // B fails production's tests: production goes back to A (stage level).
    repo.write("break-production", "");
    let b = repo.commit("B");
    let (out, _) = run(&repo);
    assert_code(&out, 1, "the run of B");
    let h = repo.history();
    assert_rolled_back(
        &deployment(&h, "production", &b),
        "stage",
        "production/check",
    );
    assert_eq!(served_version(ps), b);
    assert_eq!(served_version(pp), a);

    // B's release in staging goes bad in place; C fails staging's tests.
    std::fs::write(
        repo.join(&format!(".ferry/envs/staging/releases/{b}/unhealthy")),
        "switched off after B was deployed\n",
    )
    .expect("write the switch file into B's release folder");
    std::fs::remove_file(repo.join("break-production")).expect("remove break-production");
    repo.write("break-staging", "");
    let c = repo.commit("C");
    let (out, view) = run(&repo);
    assert_code(&out, 1, "the run of C");
    assert_eq!(
        step(&view, "staging", "check")["status"],
        "failed",
        "{view:#}"
    );

    let h = repo.history();
    assert_rolled_back(&deployment(&h, "staging", &c), "full", "staging/check");
    assert_rolled_back(&deployment(&h, "test", &c), "full", "staging/check");
    assert_untouched(&deployment(&h, "production", &a));
    for (env, port) in [("test", pt), ("staging", ps), ("production", pp)] {
        assert_eq!(
            served_version(port),
            a,
            "{env} serves A after the full rollback"
        );
        assert_eq!(health(port), 200, "{env} is healthy");
    }
    let st = repo.status();
    for env in ["test", "staging", "production"] {
        assert_eq!(env_status(&st, env)["version"], a.as_str(), "{st:#}");
    }
}
