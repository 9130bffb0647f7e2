//! Freezes and break-glass overrides with the real binary on a real temporary repository:
//! a freeze holds a real `ferry run` before production (visible in `ferry status`), the
//! person who asked for the override cannot confirm it, a second person can, and the run
//! goes on by itself. Plus the bad inputs of `freeze`, `unfreeze`, `override` and of
//! `windows:` in ferry.yml.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::serve::Server;
use support::{Repo, assert_code, describe, stderr, stdout, yaml_str};

/// The bound on waiting for the run to be held (never asserted as a duration).
const WAIT: Duration = Duration::from_secs(240);

fn pipeline(repo: &Repo, production_extra: &str) {
    let log = repo.join("deploys.log");
    let deploy = yaml_str(&format!(
        "echo \"$FERRY_ENV $FERRY_VERSION\" >> '{}'",
        log.display()
    ));
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: it\nsource:\n  branch: main\nbuild:\n  steps:\n    - name: build\n      run: echo built\nenvironments:\n  - name: test\n    deploy:\n      command:\n        run: {deploy}\n  - name: production\n    deploy:\n      command:\n        run: {deploy}\n{production_extra}"
        ),
    );
    repo.write(".gitignore", ".ferry/\ndeploys.log\n");
}

/// Polls `ferry status --json` until a run is held; returns its id and status.
fn wait_until_held(repo: &Repo, run: &mut support::Running) -> (i64, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let st = repo.status();
        if let Some(r) = st["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["held"].is_object())
        {
            return (r["id"].as_i64().expect("run id"), st);
        }
        if run.finished() {
            let out = run.wait(support::LONG);
            panic!("the run ended before it was held: {}", describe(&out));
        }
        assert!(
            Instant::now() < deadline,
            "no run was held; last status: {st:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_freeze_holds_a_real_run_until_two_people_break_the_glass() {
    let repo = Repo::new();
    pipeline(&repo, "");
    repo.commit("Ship during the freeze");

    let f = repo.ferry(&[
        "freeze",
        "production",
        "--until",
        "2h",
        "--reason",
        "end-of-year freeze",
        "--by",
        "alice",
    ]);
    assert_code(&f, 0, "ferry freeze");
    assert!(
        stdout(&f).contains("production frozen until"),
        "{}",
        describe(&f)
    );

    let mut run = repo.spawn(&["run", "--json"]);
    let (id, st) = wait_until_held(&repo, &mut run);
    let held = st["runs"][0]["held"].clone();
    assert_eq!(held["environment"], "production", "{st:#}");
    assert_eq!(held["cause"], "freeze", "{st:#}");
    assert!(
        held["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("end-of-year freeze"),
        "{st:#}"
    );
    let prod = st["environments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "production")
        .cloned()
        .expect("production in status");
    assert_eq!(prod["freezes"][0]["by"], "alice", "{prod:#}");
    assert_eq!(prod["gate"]["state"], "closed", "{prod:#}");
    // Test was deployed; production was not.
    let deployed = std::fs::read_to_string(repo.join("deploys.log")).unwrap_or_default();
    assert!(
        deployed.contains("test ") && !deployed.contains("production"),
        "{deployed}"
    );

    let text = repo.ferry(&["status"]);
    assert_code(&text, 0, "ferry status");
    let out = stdout(&text);
    assert!(out.contains("production FROZEN until"), "{out}");
    assert!(out.contains("HELD before production"), "{out}");
    assert!(out.contains(&format!("ferry override {id}")), "{out}");

    // A request needs a reason.
    let no_reason = repo.ferry(&["override", &id.to_string(), "--by", "alice"]);
    assert_code(&no_reason, 2, "ferry override without --reason");
    let empty = repo.ferry(&[
        "override",
        &id.to_string(),
        "--reason",
        " ",
        "--by",
        "alice",
    ]);
    assert_code(&empty, 2, "ferry override with an empty reason");
    assert!(
        stderr(&empty).contains("written reason"),
        "{}",
        describe(&empty)
    );

    // First person: the environment defaults to the one the run is held at.
    let req = repo.ferry(&[
        "override",
        &id.to_string(),
        "--reason",
        "payment outage hotfix",
        "--by",
        "alice",
    ]);
    assert_code(&req, 0, "ferry override (request)");
    assert!(stdout(&req).contains("--confirm"), "{}", describe(&req));
    // Still held: one person is not enough.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!run.finished(), "the run went on with one person");
    let again = repo.ferry(&[
        "override",
        &id.to_string(),
        "--env",
        "production",
        "--reason",
        "again",
        "--by",
        "carol",
    ]);
    assert_code(&again, 6, "a second request");

    // The same person cannot confirm.
    let same = repo.ferry(&[
        "override",
        &id.to_string(),
        "--env",
        "production",
        "--confirm",
        "--by",
        "alice",
    ]);
    assert_code(&same, 6, "confirming one's own override");
    assert!(
        stderr(&same).contains("cannot also confirm"),
        "{}",
        describe(&same)
    );

    let text = stdout(&repo.ferry(&["status"]));
    assert!(text.contains("break-glass requested by alice"), "{text}");

    // A second person lets it through; the run goes on by itself.
    let ok = repo.ferry(&[
        "override",
        &id.to_string(),
        "--env",
        "production",
        "--confirm",
        "--by",
        "bob",
    ]);
    assert_code(&ok, 0, "ferry override --confirm by a second person");
    let out = run.wait(support::LONG);
    assert_code(&out, 0, "the held run after the override");
    let deployed = std::fs::read_to_string(repo.join("deploys.log")).unwrap_or_default();
    assert!(deployed.contains("production "), "{deployed}");

    // The freeze still holds other runs; it is listed until lifted.
    let st = repo.status();
    assert_eq!(st["runs"], serde_json::json!([]), "{st:#}");
    let un = repo.ferry(&["unfreeze", "production", "--by", "carol"]);
    assert_code(&un, 0, "ferry unfreeze");
    let twice = repo.ferry(&["unfreeze", "production"]);
    assert_code(&twice, 5, "unfreezing an environment that is not frozen");
    assert!(
        stderr(&twice).contains("not frozen"),
        "{}",
        describe(&twice)
    );
    let st = repo.status();
    let prod = st["environments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "production")
        .cloned()
        .expect("production");
    assert_eq!(prod["freezes"], serde_json::json!([]), "{prod:#}");
    assert!(prod["gate"].is_null(), "{prod:#}");

    // An override for a run that has ended is refused.
    let late = repo.ferry(&[
        "override",
        &id.to_string(),
        "--env",
        "production",
        "--reason",
        "too late",
    ]);
    assert_code(&late, 6, "an override for an ended run");
}

#[test]
fn freeze_refuses_bad_input_with_the_fix() {
    let repo = Repo::new();
    pipeline(&repo, "");
    repo.commit("Init");
    let past = repo.ferry(&[
        "freeze",
        "production",
        "--until",
        "2020-01-01T00:00:00Z",
        "--reason",
        "x",
    ]);
    assert_code(&past, 2, "a freeze ending in the past");
    assert!(
        stderr(&past).contains("not in the future"),
        "{}",
        describe(&past)
    );
    let bad = repo.ferry(&["freeze", "production", "--until", "soon", "--reason", "x"]);
    assert_code(&bad, 2, "an unreadable --until");
    assert!(
        stderr(&bad).contains("duration from now"),
        "{}",
        describe(&bad)
    );
    let unknown = repo.ferry(&["freeze", "prod", "--until", "1h", "--reason", "x"]);
    assert_code(&unknown, 5, "freezing an unknown environment");
    assert!(
        stderr(&unknown).contains("production"),
        "{}",
        describe(&unknown)
    );
    let empty = repo.ferry(&["freeze", "production", "--until", "1h", "--reason", ""]);
    assert_code(&empty, 2, "a freeze without a reason");
    let json = repo.ferry(&[
        "freeze",
        "production",
        "--until",
        "2030-01-01 08:00",
        "--reason",
        "audit",
        "--json",
    ]);
    assert_code(&json, 0, "ferry freeze --json");
    let v = support::json(&json);
    assert_eq!(v["freezes"][0]["environment"], "production", "{v:#}");
}

#[test]
fn windows_in_ferry_yml_are_validated_with_positions_and_fixes() {
    let repo = Repo::new();
    pipeline(
        &repo,
        "    windows:\n      timezone: Europe/Berlni\n      deny:\n        - { from: \"Fry 15:00\", to: \"Mon 08:00\" }\n        - Mon-Fri 18:00-18:00\n",
    );
    repo.commit("Bad windows");
    let v = repo.ferry(&["validate"]);
    assert_code(&v, 3, "ferry validate with bad windows");
    let err = stderr(&v);
    assert!(err.contains("unknown time zone `Europe/Berlni`"), "{err}");
    assert!(err.contains("Europe/Berlin"), "did you mean: {err}");
    assert!(err.contains("`Fry` is not a day of the week"), "{err}");
    assert!(err.contains("did you mean `Fri`"), "{err}");
    assert!(err.contains("is empty"), "{err}");
    assert!(err.contains("ferry.yml:21:"), "line of the zone: {err}");
}

// ---------------------------------------------------------------------------------------
// The same through `ferry serve`'s API.

/// A POST with a JSON body; with the bearer token unless `token` is false.
fn post(server: &Server, path: &str, body: Value, token: bool) -> (u16, Value) {
    let bearer = support::serve::bearer();
    let mut headers = vec![("Content-Type", "application/json")];
    if token {
        headers.push(("Authorization", bearer.as_str()));
    }
    support::serve::request(
        server.port,
        "POST",
        path,
        &headers,
        body.to_string().as_bytes(),
    )
}

#[test]
fn the_api_freezes_and_breaks_the_glass_with_two_people() {
    let repo = Repo::new();
    pipeline(&repo, "");
    repo.commit("Ship through the API");
    let server = Server::start(&repo);

    let (code, body) = post(
        &server,
        "/api/environments/production/freeze",
        json!({"until": "2h", "reason": "freeze", "by": "alice"}),
        false,
    );
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(
        &server,
        "/api/environments/production/freeze",
        json!({"until": "2h", "by": "alice"}),
        true,
    );
    assert_eq!(code, 400, "a freeze needs a reason: {body}");
    let (code, body) = post(
        &server,
        "/api/environments/nowhere/freeze",
        json!({"until": "2h", "reason": "r", "by": "alice"}),
        true,
    );
    assert_eq!(code, 404, "{body}");
    let (code, body) = post(
        &server,
        "/api/environments/production/freeze",
        json!({"until": "yesterday", "reason": "r", "by": "alice"}),
        true,
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(
        &server,
        "/api/environments/production/freeze",
        json!({"until": "2h", "reason": "release freeze", "by": "alice"}),
        true,
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["environment"], "production");

    let mut run = repo.spawn(&["run", "--json"]);
    let (id, _) = wait_until_held(&repo, &mut run);
    let path = format!("/api/runs/{id}/override");
    let (code, body) = post(&server, &path, json!({"by": "alice"}), true);
    assert_eq!(code, 400, "an override needs a reason: {body}");
    let (code, body) = post(
        &server,
        &path,
        json!({"reason": "hotfix", "by": "alice"}),
        true,
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["environment"], "production", "the held environment");
    let confirm = format!("/api/runs/{id}/override/confirm");
    let (code, body) = post(&server, &confirm, json!({"by": "alice"}), true);
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot also confirm"),
        "{body}"
    );
    let (code, body) = post(
        &server,
        &confirm,
        json!({"by": "bob", "environment": "production"}),
        true,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["confirmed_by"], "bob");
    let out = run.wait(support::LONG);
    assert_code(&out, 0, "the held run after the API override");

    let (code, body) = post(
        &server,
        "/api/environments/production/unfreeze",
        json!({"by": "carol"}),
        true,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["freezes"][0]["lifted_by"], "carol", "{body}");
    let (code, body) = post(
        &server,
        "/api/environments/production/unfreeze",
        json!({"by": "carol"}),
        true,
    );
    assert_eq!(code, 404, "{body}");
}

/// A deployment window (not a freeze) closed now holds a real `ferry run` before
/// production, with when it opens; a break-glass override by two people lets it through.
#[test]
fn a_closed_deployment_window_holds_a_real_run_until_its_override() {
    let repo = Repo::new();
    // Closed from this UTC hour for two hours, every day.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let hour = (secs / 3600) % 24;
    pipeline(
        &repo,
        &format!(
            "    windows:\n      timezone: UTC\n      deny: [\"daily {hour:02}:00-{:02}:00\"]\n",
            (hour + 2) % 24
        ),
    );
    repo.commit("A");
    let mut run = repo.spawn(&["run", "--json"]);
    let (id, st) = wait_until_held(&repo, &mut run);
    let held = st["runs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == id))
        .map(|r| r["held"].clone())
        .expect("held run");
    assert_eq!(held["environment"], "production", "{st:#}");
    assert_eq!(held["cause"], "window", "{st:#}");
    assert!(held["opens_at"].is_string(), "{st:#}");
    let deployed = std::fs::read_to_string(repo.join("deploys.log")).unwrap_or_default();
    assert!(deployed.contains("test "), "{deployed}");
    assert!(!deployed.contains("production "), "{deployed}");

    let req = repo.ferry(&[
        "override",
        &id.to_string(),
        "--reason",
        "customer-facing outage fix",
        "--by",
        "alice",
    ]);
    assert_code(&req, 0, "ferry override (request)");
    let ok = repo.ferry(&[
        "override",
        &id.to_string(),
        "--env",
        "production",
        "--confirm",
        "--by",
        "bob",
    ]);
    assert_code(&ok, 0, "ferry override --confirm");
    let out = run.wait(support::LONG);
    assert_code(&out, 0, "the held run after the override");
    let deployed = std::fs::read_to_string(repo.join("deploys.log")).unwrap_or_default();
    assert!(deployed.contains("production "), "{deployed}");
    // `ferry logs` tells why it waited and who let it through.
    let logs = repo.ferry(&["logs", &id.to_string(), "--json"]);
    assert_code(&logs, 0, "ferry logs");
    let v: Value = serde_json::from_str(&stdout(&logs)).expect("json");
    let kinds: Vec<&str> = v["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for k in ["run_held", "break_glass_requested", "break_glass_confirmed"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
}

/// With `FERRY_DEPLOYMENTS_TABLE` set, `freeze`, `unfreeze` and `resolve` act on that
/// DynamoDB table, and `status` and `history` read it (`tests/ledger_aws.rs`); a ferry
/// built without AWS support refuses with the fix, as `ferry step` does, rather than act
/// on (or show) the project's store.
#[test]
fn freeze_unfreeze_and_resolve_need_aws_support_for_a_dynamodb_table() {
    if cfg!(feature = "aws") {
        return;
    }
    let repo = Repo::new();
    pipeline(&repo, "");
    repo.commit("Init");
    for args in [
        &["freeze", "production", "--until", "1h", "--reason", "x"][..],
        &["unfreeze", "production"][..],
        &["resolve", "production"][..],
        &["status"][..],
        &["history", "--json"][..],
    ] {
        let mut c = support::ferry_cmd(repo.path(), args);
        c.env("FERRY_DEPLOYMENTS_TABLE", "ferry-deployments");
        let out = support::Running::spawn(c, args).wait(support::LONG);
        assert_code(&out, 7, &args.join(" "));
        assert!(
            describe(&out).contains("FERRY_DEPLOYMENTS_TABLE is `ferry-deployments`")
                && describe(&out).contains("--features aws"),
            "{}",
            describe(&out)
        );
    }
    // Nothing was written to the project's store.
    let status = repo.ferry(&["status", "--json"]);
    assert_code(&status, 0, "ferry status");
    assert!(
        !stdout(&status).contains("\"reason\":\"x\""),
        "{}",
        describe(&status)
    );
}
