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

/// The rollback record of deployment `d` in `ferry history --json`, with its trigger.
fn rollback_of(h: &Value, d: &Value) -> Value {
    h["rollbacks"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["deployment_id"] == d["deploymentId"]))
        .cloned()
        .unwrap_or_else(|| panic!("no rollback record of {} in {h:#}", d["deploymentId"]))
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

/// `N` distinct free loopback ports, never the fixed 18181–18183 another test uses.
fn ports<const N: usize>() -> [u16; N] {
    let mut out = [0u16; N];
    for i in 0..N {
        out[i] = loop {
            let p = free_port();
            if !(18181..=18183).contains(&p) && !out[..i].contains(&p) {
                break p;
            }
        };
    }
    out
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
/// rollback writes `$FERRY_VERSION` into `ops/rolled-back-to`, and sleeps when `ops/slow`
/// exists (the seconds it holds, 1 when empty).
fn write_ops(repo: &Repo) {
    for (what, extra) in [
        ("deploy", ""),
        (
            "rollback",
            "printf '%s\\n' \"$FERRY_VERSION\" > \"$ops/rolled-back-to\"\nif [ -s \"$ops/slow\" ]; then sleep \"$(cat \"$ops/slow\")\"; elif [ -f \"$ops/slow\" ]; then sleep 1; fi\n",
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

// ---------------------------------------------------------------------------------------
// 1. A release that goes bad a few seconds after start is caught by staging's monitor.

#[test]
fn a_release_failing_after_start_is_caught_by_the_monitor_and_staging_is_rolled_back() {
    let repo = sample_repo();
    let [pt, ps, pp] = ports::<3>();
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
    let bad = deployment(&h, "staging", &b);
    assert_rolled_back(&bad, "stage", "monitor");
    let rec = rollback_of(&h, &bad);
    assert_eq!(rec["trigger"]["trigger"], "monitor_failed", "{rec:#}");
    assert_eq!(rec["to_version"], a.as_str(), "{rec:#}");
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
    let [port] = ports::<1>();
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
    let bad = deployment(&h, "staging", &b);
    assert_rolled_back(&bad, "stage", "deploy");
    assert_eq!(rollback_of(&h, &bad)["trigger"]["trigger"], "deploy_failed");
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
    let [pt, ps, pp] = ports::<3>();
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

// ---------------------------------------------------------------------------------------
// 5. Both levels fail: an incident holds the environment until `ferry resolve`.

#[test]
fn when_both_levels_fail_an_incident_holds_the_environment_until_resolved() {
    let repo = Repo::new();
    command_pipeline(
        &repo,
        &[("test", ""), ("staging", ""), ("production", "")],
        true,
        "",
    );
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");

    // B fails its staging deploy, and nothing can be rolled back in staging.
    let b = repo.commit("B");
    fail(&repo, "deploy", "staging", &b);
    fail(&repo, "rollback", "staging", "*");
    let before = actions(&repo).len();
    let (out, view) = run(&repo);
    assert_code(&out, 1, "the run of B");
    assert_eq!(view["status"], "failed");
    assert_eq!(
        actions_since(&repo, before),
        [
            format!("deploy test {b}"),
            format!("deploy staging {b}"),
            format!("rollback staging {a}"),
            format!("rollback production {a}"),
            format!("rollback staging {a}"),
        ],
        "stage level fails in staging, full level fails in staging after production"
    );
    let h = repo.history();
    let bad = deployment(&h, "staging", &b);
    assert_eq!(bad["status"], "failed", "not rolled back: {bad:#}");
    assert_eq!(bad["rollbackLevel"], Value::Null, "{bad:#}");
    let rollbacks = h["rollbacks"].as_array().cloned().unwrap_or_default();
    let rec = rollbacks
        .iter()
        .find(|r| r["deployment_id"] == bad["deploymentId"])
        .unwrap_or_else(|| panic!("history lists the failed rollback of B: {h:#}"));
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(rec["incident"].is_i64(), "it names its incident: {rec:#}");

    // The incident is visible in `ferry status`.
    let st = repo.status();
    let staging = env_status(&st, "staging");
    let incident = &staging["incident"];
    assert!(
        incident.is_object(),
        "`ferry status --json` shows staging's open incident: {staging:#}"
    );
    assert_eq!(incident["id"], rec["incident"], "{incident:#}");
    assert_eq!(
        env_status(&st, "test")["incident"],
        Value::Null,
        "only staging is held: {st:#}"
    );
    let text = repo.ferry(&["status"]);
    assert_code(&text, 0, "ferry status");
    assert!(
        stdout(&text).contains("ferry resolve staging"),
        "`ferry status` tells a person how to reopen staging: {}",
        describe(&text)
    );

    // No automatic deployment goes into staging now, even of a good commit.
    clear_failures(&repo);
    let c = repo.commit("C");
    let before = actions(&repo).len();
    let (out, view) = run(&repo);
    assert_code(&out, 1, "a run while staging is held");
    let deploy = step(&view, "staging", "deploy");
    assert_eq!(deploy["status"], "failed", "{view:#}");
    let why = deploy["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("ferry resolve staging"),
        "the refusal names `ferry resolve staging`: {why:?}"
    );
    assert_eq!(
        actions_since(&repo, before),
        [format!("deploy test {c}")],
        "nothing was deployed into staging or production"
    );
    assert!(
        deployments(&repo.history(), "staging")
            .iter()
            .all(|d| d["version"] != c.as_str()),
        "no deployment record of C in staging"
    );

    // A person resolves it; deployments go there again.
    let out = repo.ferry(&["resolve", "staging"]);
    assert_code(&out, 0, "ferry resolve staging");
    let st = repo.status();
    assert_eq!(
        env_status(&st, "staging")["incident"],
        Value::Null,
        "{st:#}"
    );
    let again = repo.ferry(&["resolve", "staging"]);
    assert!(
        again.status.code() != Some(0),
        "resolving an environment without an open incident is refused: {}",
        describe(&again)
    );
    let before = actions(&repo).len();
    run_ok(&repo, "a run after ferry resolve");
    assert_eq!(
        actions_since(&repo, before),
        [
            format!("deploy test {c}"),
            format!("deploy staging {c}"),
            format!("deploy production {c}"),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// 6. `ferry rollback ENV` by hand.

#[test]
fn manual_rollback_goes_to_the_last_known_good_and_refuses_unknown_targets() {
    let repo = sample_repo();
    let [port] = ports::<1>();
    repo.write(
        "ferry.yml",
        &release_pipeline(&[release_env("staging", port, "5s", "")], ""),
    );
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");
    let b = repo.commit("B");
    run_ok(&repo, "the run of B");
    assert_eq!(served_version(port), b);

    let out = repo.ferry(&["rollback", "staging", "--reason", "customers report errors"]);
    assert_code(&out, 0, "ferry rollback staging");
    assert_eq!(served_version(port), a, "staging serves A again");
    let h = repo.history();
    assert_rolled_back(
        &deployment(&h, "staging", &b),
        "stage",
        "customers report errors",
    );
    assert_untouched(&deployment(&h, "staging", &a));
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], a.as_str(), "{st:#}");

    // A version that never succeeded there is refused with the list of those that did.
    let c = repo.commit("C: never deployed");
    let starts = repo
        .read(".ferry/envs/staging/service.log")
        .matches("--- ferry: starting")
        .count();
    let out = repo.ferry(&["rollback", "staging", "--to", &c]);
    assert!(
        !matches!(out.status.code(), Some(0) | Some(70) | None),
        "a target that never succeeded is refused (not accepted, not a crash): {}",
        describe(&out)
    );
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains(short(&c)) || said.contains(&c),
        "the refusal names the version asked for: {said}"
    );
    assert!(
        said.contains(&a[..7]),
        "the refusal lists A, which succeeded in staging: {said}"
    );
    assert_eq!(served_version(port), a, "nothing changed");
    assert_eq!(
        repo.read(".ferry/envs/staging/service.log")
            .matches("--- ferry: starting")
            .count(),
        starts,
        "no service was restarted by the refused rollback"
    );
}

/// Seed Property 2 across processes: two `ferry rollback` of the same deployment at the
/// same moment redeploy once and report the same outcome.
#[test]
fn two_concurrent_manual_rollbacks_of_one_deployment_redeploy_once() {
    let repo = Repo::new();
    command_pipeline(&repo, &[("staging", "")], true, "");
    assert_valid(&repo);
    let z = repo.commit("Z");
    run_ok(&repo, "the run of Z");
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");
    let b = repo.commit("B");
    run_ok(&repo, "the run of B");
    let before = actions(&repo).len();
    repo.write("ops/slow", "");

    let mut one = repo.spawn(&["rollback", "staging", "--json"]);
    let mut two = repo.spawn(&["rollback", "staging", "--json"]);
    let (o1, o2) = (one.wait(support::LONG), two.wait(support::LONG));
    assert_code(&o1, 0, "the first ferry rollback");
    assert_code(&o2, 0, "the second ferry rollback");
    assert_eq!(
        actions_since(&repo, before),
        [format!("rollback staging {a}")],
        "one redeploy of A, not two (and nothing rolled back A to Z)"
    );
    let (r1, r2) = (support::json(&o1), support::json(&o2));
    for r in [&r1, &r2] {
        assert_eq!(r["status"], "succeeded", "{r:#}");
        assert_eq!(r["to_version"], a.as_str(), "{r:#}");
        assert_eq!(r["from_version"], b.as_str(), "{r:#}");
    }
    assert_eq!(
        r1["started_at"], r2["started_at"],
        "both report the one rollback record: {r1:#} {r2:#}"
    );
    let h = repo.history();
    assert_rolled_back(&deployment(&h, "staging", &b), "stage", "manual");
    assert_untouched(&deployment(&h, "staging", &a));
    assert_untouched(&deployment(&h, "staging", &z));
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], a.as_str(), "{st:#}");
}

/// A refused `--to` must not count as "the" rollback of the running deployment: the
/// rollback a person asks for next still happens.
#[test]
fn a_refused_manual_target_does_not_block_the_next_rollback() {
    let repo = Repo::new();
    command_pipeline(&repo, &[("staging", "")], true, "");
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");
    let b = repo.commit("B");
    run_ok(&repo, "the run of B");
    let never = repo.commit("never deployed");
    let before = actions(&repo).len();

    let out = repo.ferry(&["rollback", "staging", "--to", &never]);
    assert!(out.status.code() != Some(0), "refused: {}", describe(&out));
    let out = repo.ferry(&["rollback", "staging"]);
    assert_code(
        &out,
        0,
        "ferry rollback staging after a refused --to (the refusal must not be recorded as the deployment's rollback)",
    );
    assert_eq!(
        actions_since(&repo, before),
        [format!("rollback staging {a}")]
    );
    let h = repo.history();
    assert_rolled_back(&deployment(&h, "staging", &b), "stage", "manual");
}

/// A staging environment whose test step `check` logs `check start|end VERSION` to
/// `ops/actions.log`, sleeps 3 s when `ops/slow-check` exists and fails when
/// `ops/fail-check` exists. Runs A and B; returns them.
fn staging_with_a_slow_check(repo: &Repo) -> (String, String) {
    let check = repo.join("ops/check.sh");
    let tests = format!(
        "    tests:\n      - name: check\n        run: {}\n",
        yaml_str(&format!("sh '{}'", check.display()))
    );
    command_pipeline(repo, &[("staging", &tests)], true, "");
    repo.write_exec(
        "ops/check.sh",
        r#"#!/bin/sh
ops=$(dirname "$0")
echo "check start $FERRY_VERSION" >> "$ops/actions.log"
if [ -f "$ops/slow-check" ]; then sleep 3; fi
echo "check end $FERRY_VERSION" >> "$ops/actions.log"
if [ -f "$ops/fail-check" ]; then echo "check fails (ops/fail-check)"; exit 1; fi
"#,
    );
    assert_valid(repo);
    let a = repo.commit("A");
    run_ok(repo, "the run of A");
    let b = repo.commit("B");
    run_ok(repo, "the run of B");
    (a, b)
}

/// Waits (bounded) until `ops/actions.log` has `line`.
fn wait_for_action(repo: &Repo, line: &str, run: &mut support::Running) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !actions(repo).iter().any(|l| l == line) {
        if run.finished() {
            let out = run.wait(support::LONG);
            panic!("the run ended before `{line}`: {}", describe(&out));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `{line}` in ops/actions.log: {:?}",
            actions(repo)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A manual rollback while a run is still testing its deployment waits for the run to
/// leave the environment; it never interleaves with it.
#[test]
fn a_manual_rollback_waits_for_the_run_that_holds_the_environment() {
    let repo = Repo::new();
    let (_a, b) = staging_with_a_slow_check(&repo);
    repo.write("ops/slow-check", "");
    let c = repo.commit("C");
    let before = actions(&repo).len();
    let mut running = repo.spawn(&["run", "--json"]);
    wait_for_action(&repo, &format!("check start {c}"), &mut running);

    let mut manual = repo.spawn(&["rollback", "staging", "--reason", "by hand"]);
    let out = running.wait(Duration::from_secs(120));
    assert_code(&out, 0, "the run of C");
    let rb = manual.wait(Duration::from_secs(120));
    assert_code(&rb, 0, "ferry rollback staging during the run");
    assert_eq!(
        actions_since(&repo, before),
        [
            format!("deploy staging {c}"),
            format!("check start {c}"),
            format!("check end {c}"),
            format!("rollback staging {b}"),
        ],
        "the rollback came after the run's check, not in the middle of it"
    );
    let h = repo.history();
    assert_rolled_back(&deployment(&h, "staging", &c), "stage", "by hand");
    assert_untouched(&deployment(&h, "staging", &b));
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], b.as_str(), "{st:#}");
}

/// The run's own automatic rollback and a manual one asked for while the run still
/// holds the environment are the same rollback (one deployment): it happens once, and
/// neither waits for the other forever.
#[test]
fn a_manual_rollback_during_a_failing_stage_and_the_automatic_one_happen_once() {
    let repo = Repo::new();
    let (_a, b) = staging_with_a_slow_check(&repo);
    repo.write("ops/slow-check", "");
    repo.write("ops/fail-check", "");
    let c = repo.commit("C");
    let before = actions(&repo).len();
    let mut running = repo.spawn(&["run", "--json"]);
    wait_for_action(&repo, &format!("check start {c}"), &mut running);

    let mut manual = repo.spawn(&["rollback", "staging", "--reason", "by hand"]);
    // Bounded well below the orchestrator's 30 min wait for another's rollback: a run
    // waiting for a manual rollback that waits for the run's lease is a deadlock.
    let out = running.wait(Duration::from_secs(45));
    assert_code(&out, 1, "the run of C, whose check fails");
    let rb = manual.wait(Duration::from_secs(45));
    assert_code(&rb, 0, "ferry rollback staging during the failing stage");
    assert_eq!(
        actions_since(&repo, before),
        [
            format!("deploy staging {c}"),
            format!("check start {c}"),
            format!("check end {c}"),
            format!("rollback staging {b}"),
        ],
        "one rollback to B"
    );
    let h = repo.history();
    let bad = deployment(&h, "staging", &c);
    assert_eq!(bad["status"], "rolled_back", "{bad:#}");
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], b.as_str(), "{st:#}");
}

/// Seed Property 2 "after a crash": a `ferry rollback` killed in the middle leaves its
/// claim behind; the next `ferry rollback` of the same deployment must finish the job
/// (or report the first result), not wait for a process that no longer exists.
#[test]
fn a_rollback_killed_midway_is_finished_by_the_next_one() {
    let repo = Repo::new();
    command_pipeline(&repo, &[("staging", "")], true, "");
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");
    let b = repo.commit("B");
    run_ok(&repo, "the run of B");
    repo.write("ops/slow", "3\n");

    let mut first = repo.spawn(&["rollback", "staging"]);
    wait_for_action(&repo, &format!("rollback staging {a}"), &mut first);
    drop(first); // SIGKILL: ferry dies in the middle of the rollback command.
    // Let the orphaned rollback command finish on its own.
    std::thread::sleep(Duration::from_secs(4));
    let _ = std::fs::remove_file(repo.join("ops/slow"));

    let mut second = repo.spawn(&["rollback", "staging"]);
    let out = second.wait(Duration::from_secs(30));
    assert_code(&out, 0, "ferry rollback staging after a killed one");
    let h = repo.history();
    assert_rolled_back(&deployment(&h, "staging", &b), "stage", "manual");
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], a.as_str(), "{st:#}");
}

// ---------------------------------------------------------------------------------------
// 7. Alarms pushed with `ferry alarm`.

#[test]
fn pushed_alarms_roll_back_only_inside_the_watch_period_and_only_when_binding() {
    let repo = Repo::new();
    let tail = "alarms:\n  - name: staging-errors\n    external: {}\n    environment: staging\n  - name: staging-canary\n    external: {}\n    environment: staging\n    advisory: true\n  - name: production-errors\n    external: {}\n    environment: production\n";
    command_pipeline(
        &repo,
        &[
            ("staging", "    watch: 60s\n"),
            ("production", "    watch: 1s\n"),
        ],
        true,
        tail,
    );
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");
    let b = repo.commit("B");
    run_ok(&repo, "the run of B");
    let before = actions(&repo).len();
    // Production's watch (1 s) is over; staging's (60 s) is not.
    std::thread::sleep(Duration::from_secs(2));

    let alarm = |name: &str| {
        let out = repo.ferry(&["alarm", name, "--state", "ALARM", "--reason", "x", "--json"]);
        assert_code(&out, 0, &format!("ferry alarm {name}"));
        support::json(&out)
    };
    let nothing_happened = |what: &str| {
        assert_eq!(actions_since(&repo, before), Vec::<String>::new(), "{what}");
        let h = repo.history();
        for env in ["staging", "production"] {
            assert_untouched(&deployment(&h, env, &b));
        }
    };

    // An unknown alarm: recorded with a warning, nothing else.
    let out = repo.ferry(&[
        "alarm",
        "no-such-alarm",
        "--state",
        "ALARM",
        "--reason",
        "x",
    ]);
    assert_code(&out, 0, "ferry alarm for an unknown alarm");
    assert!(
        stderr(&out).contains("warning") && stderr(&out).contains("no-such-alarm"),
        "a warning names the unknown alarm: {}",
        describe(&out)
    );
    nothing_happened("an unknown alarm rolls nothing back");

    // An advisory alarm: recorded only.
    let r = alarm("staging-canary");
    assert_eq!(r["known"], true, "{r:#}");
    nothing_happened("an advisory alarm rolls nothing back");

    // After the watch period: recorded only.
    let r = alarm("production-errors");
    let outcome = r["environments"][0]["action"].as_str().unwrap_or_default();
    assert!(
        outcome.contains("outside the watch period"),
        "production's watch is over: {r:#}"
    );
    nothing_happened("an alarm after the watch period rolls nothing back");

    // Inside the watch period: staging is rolled back to A; production keeps B.
    let r = alarm("staging-errors");
    assert_eq!(r["environments"][0]["action"], "rollback", "{r:#}");
    assert_eq!(
        actions_since(&repo, before),
        [format!("rollback staging {a}")]
    );
    let h = repo.history();
    let bad = deployment(&h, "staging", &b);
    assert_rolled_back(&bad, "stage", "staging-errors");
    let rec = rollback_of(&h, &bad);
    assert_eq!(rec["trigger"]["trigger"], "alarm", "{rec:#}");
    assert_eq!(rec["trigger"]["name"], "staging-errors", "{rec:#}");
    assert_untouched(&deployment(&h, "production", &b));
    let st = repo.status();
    assert_eq!(env_status(&st, "staging")["version"], a.as_str(), "{st:#}");
    assert_eq!(
        env_status(&st, "production")["version"],
        b.as_str(),
        "{st:#}"
    );
}

/// The same pushed alarm as above, against a real service: the environment's URL answers
/// the previous version once `ferry alarm` returns.
#[test]
fn a_pushed_alarm_in_the_watch_period_puts_the_previous_release_back_on_the_url() {
    let repo = sample_repo();
    let [port] = ports::<1>();
    repo.write(
        "ferry.yml",
        &release_pipeline(
            &[release_env("production", port, "5s", "    watch: 60s\n")],
            "alarms:\n  - name: prod-5xx\n    external: {}\n    environment: production\n",
        ),
    );
    assert_valid(&repo);
    let a = repo.commit("A");
    run_ok(&repo, "the run of A");
    let b = repo.commit("B");
    run_ok(&repo, "the run of B");
    assert_eq!(served_version(port), b);
    let out = repo.ferry(&[
        "alarm",
        "prod-5xx",
        "--state",
        "ALARM",
        "--reason",
        "5xx rate 12%",
    ]);
    assert_code(&out, 0, "ferry alarm prod-5xx");
    assert_eq!(served_version(port), a, "production serves A again");
    let h = repo.history();
    assert_rolled_back(&deployment(&h, "production", &b), "stage", "5xx rate 12%");
}

// ---------------------------------------------------------------------------------------
// 8. A monitor window whose only alarm never gets data.

#[test]
fn an_alarm_without_data_for_the_whole_window_fails_closed_unless_told_to_pass() {
    let repo = Repo::new();
    let pipeline = |insufficient: &str| {
        command_pipeline(
            &repo,
            &[(
                "staging",
                &format!(
                    "    monitor:\n      duration: 2s\n      interval: 1s\n      alarms: [error-rate]\n{insufficient}"
                ),
            )],
            true,
            "alarms:\n  - name: error-rate\n    command:\n      run: \"echo no number here\"\n      threshold: 5\n    period: 1s\n",
        );
    };
    pipeline("");
    assert_valid(&repo);
    let a = repo.commit("A");
    let (out, view) = run(&repo);
    assert_code(&out, 1, "a window whose alarm never had data fails closed");
    let monitor = step(&view, "staging", "monitor");
    assert_eq!(monitor["status"], "failed", "{view:#}");
    let why = monitor["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("error-rate") && why.contains("no data"),
        "the reason names the silent alarm: {why:?}"
    );
    let h = repo.history();
    assert_eq!(deployment(&h, "staging", &a)["status"], "failed", "{h:#}");

    pipeline("      insufficient_data: pass\n");
    assert_valid(&repo);
    let (out, view) = run(&repo);
    assert_code(
        &out,
        0,
        "with `insufficient_data: pass` the same window passes",
    );
    assert_eq!(step(&view, "staging", "monitor")["status"], "succeeded");
    let h = repo.history();
    let d = deployments(&h, "staging");
    assert_eq!(d.len(), 2, "{h:#}");
    assert_untouched(&d[1]);
}

// ---------------------------------------------------------------------------------------
// The watch period after success, with a probe alarm: `ferry run` keeps watching.

#[test]
fn a_probe_alarm_during_the_watch_period_rolls_the_deployment_back() {
    let repo = sample_repo();
    let [pp] = ports::<1>();
    let mut alarm = health_alarm("production-health", pp);
    alarm.push_str("    environment: production\n");
    let yml = release_pipeline(
        &[release_env("production", pp, "5s", "    watch: 8s\n")],
        &format!("alarms:\n{alarm}"),
    );
    repo.write("ferry.yml", &yml);
    assert_valid(&repo);
    let a = repo.commit("A: the good release");
    run_ok(&repo, "the first run (A), watched for its whole period");
    assert_eq!(served_version(pp), a);

    // B passes its deploy (healthy for two seconds), then breaks inside the watch period.
    repo.write("site/fail-after", "2\n");
    let b = repo.commit("B: breaks after start");
    let (out, view) = run(&repo);
    assert_code(
        &out,
        0,
        "the run of B succeeded; the watch took it back afterwards",
    );
    assert_eq!(view["status"], "succeeded", "{view:#}");
    let h = repo.history();
    let bad = deployment(&h, "production", &b);
    assert_rolled_back(&bad, "stage", "watch period");
    let rec = rollback_of(&h, &bad);
    assert_eq!(rec["trigger"]["trigger"], "alarm", "{rec:#}");
    assert_eq!(served_version(pp), a, "production serves A again");
    assert_eq!(health(pp), 200);
}
