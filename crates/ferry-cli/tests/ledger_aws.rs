//! `ferry resolve`, `ferry freeze` and `ferry unfreeze` on the DynamoDB ledger (issue 7):
//! with `FERRY_DEPLOYMENTS_TABLE` set they act on the table the rollback Lambda and
//! `ferry step` use, and `ferry step ENV/@deploy` refuses at once to deploy into an
//! environment frozen there (a freeze the Lambda set for a rollback-unsafe deployment,
//! say), naming the freeze and `ferry unfreeze`. Needs `--features aws` and moto from
//! `.ci/aws-setup`.
#![cfg(feature = "aws")]

mod support;

use ferry_aws::ledger::DynamoLedger;
use ferry_core::window::Freeze;
use ferry_core::{Change, RunId, Timestamp};
use ferry_engine::ports::Ledger;
use std::path::Path;
use std::process::Output;
use support::{Repo, assert_code, ferry_cmd};

use support::moto::{Moto, start as moto};

const TABLE: &str = "ferry-ledger-cli";

fn pipeline(ops: &Path) -> String {
    let ops = ops.display();
    format!(
        r#"pipeline: ledger-aws
source:
  branch: main
build:
  steps:
    - name: unit
      run: mkdir -p dist && echo "$FERRY_VERSION" > dist/version.txt
  artifact: dist
environments:
  - name: test
    deploy:
      command:
        run: echo "deploy $FERRY_ENV $FERRY_VERSION" >> {ops}/actions.log
"#
    )
}

/// `ferry ARGS` in `dir` against the table on moto.
fn ferry(dir: &Path, moto: &Moto, args: &[&str], extra: &[(&str, &str)]) -> Output {
    ferry_on(dir, moto, TABLE, args, extra)
}

/// `ferry ARGS` in `dir` against table `table` on moto.
fn ferry_on(dir: &Path, moto: &Moto, table: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut c = ferry_cmd(dir, args);
    support::moto::aws_env(&mut c, moto, table, Some(BUCKET));
    for (k, v) in extra {
        c.env(k, v);
    }
    support::Running::spawn(c, args).wait(support::LONG)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )
}

/// What a failed rollback that escalated leaves in DynamoDB: an open incident on `test`.
fn open_incident(ledger: &DynamoLedger) {
    ledger
        .record_rollback(
            RunId(-1),
            &[Change::IncidentOpened {
                environment: "test".into(),
                deployment_id: "test#1".into(),
                reason: "both rollback levels failed".into(),
                at: Timestamp(1_000),
            }],
        )
        .expect("incident");
}

fn ledger(moto: &Moto) -> DynamoLedger {
    let aws = support::moto::connect(moto);
    // The bucket `ferry step` keeps the build's artifact in.
    let _ = ferry_aws::s3::S3Deployer::new(&aws, BUCKET, "unused").create_bucket();
    DynamoLedger::new(&aws, TABLE)
}

const BUCKET: &str = "ferry-ledger-artifacts";

#[test]
fn resolve_freeze_and_unfreeze_act_on_the_dynamodb_ledger() {
    let moto = moto();
    let ledger = ledger(&moto);
    ledger.create_table().expect("table");
    let repo = Repo::new();
    let ops = tempfile::tempdir().expect("ops");
    repo.write("ferry.yml", &pipeline(ops.path()));
    repo.write(".gitignore", ".ferry/\ndist/\n");
    repo.commit("first");

    // A failed rollback escalated: the incident is in DynamoDB.
    open_incident(&ledger);
    assert!(ledger.hold("test").expect("hold").is_some());
    let out = ferry(repo.path(), &moto, &["resolve", "test", "--by", "ada"], &[]);
    assert_code(&out, 0, "ferry resolve test");
    assert!(text(&out).contains("resolved by ada"), "{}", text(&out));
    assert_eq!(ledger.hold("test").expect("hold"), None);
    let out = ferry(repo.path(), &moto, &["resolve", "test"], &[]);
    assert_code(&out, ferry_api::exit::NOT_FOUND, "nothing left to resolve");
    assert!(
        text(&out).contains("environment test has no open incident"),
        "{}",
        text(&out)
    );

    // `ferry freeze` writes the freeze where the Lambda and `ferry step` look.
    let out = ferry(
        repo.path(),
        &moto,
        &[
            "freeze",
            "test",
            "--until",
            "2h",
            "--reason",
            "release week",
            "--by",
            "ada",
        ],
        &[],
    );
    assert_code(&out, 0, "ferry freeze test");
    let frozen = ledger.freezes(Some("test"), now()).expect("freezes");
    assert_eq!(frozen.len(), 1, "{frozen:?}");
    assert_eq!(frozen[0].reason, "release week");
    let out = ferry(
        repo.path(),
        &moto,
        &["unfreeze", "test", "--by", "bob"],
        &[],
    );
    assert_code(&out, 0, "ferry unfreeze test");
    assert!(text(&out).contains("1 freeze lifted"), "{}", text(&out));
    assert_eq!(
        ledger.freezes(Some("test"), now()).expect("freezes"),
        vec![]
    );
    let out = ferry(repo.path(), &moto, &["unfreeze", "test"], &[]);
    assert_code(&out, ferry_api::exit::NOT_FOUND, "nothing left to lift");
    assert!(text(&out).contains("test is not frozen"), "{}", text(&out));
}

#[test]
fn ferry_step_refuses_to_deploy_into_an_environment_frozen_in_dynamodb() {
    let moto = moto();
    let ledger = ledger(&moto);
    ledger.create_table().expect("table");
    let repo = Repo::new();
    let ops = tempfile::tempdir().expect("ops");
    repo.write("ferry.yml", &pipeline(ops.path()));
    repo.write(".gitignore", ".ferry/\ndist/\n");
    let sha = repo.commit("first");
    let actions = || std::fs::read_to_string(ops.path().join("actions.log")).unwrap_or_default();

    // The freeze the rollback Lambda sets for a rollback-unsafe deployment.
    let t = now();
    ledger
        .freeze(&Freeze {
            id: 0,
            environment: "test".into(),
            from: t,
            until: Timestamp(t.0 + 3_600_000),
            reason: "rollback-unsafe deployment not rolled back".into(),
            by: "ferry".into(),
            lifted_at: None,
            lifted_by: None,
        })
        .expect("freeze");

    for spec in ["build/unit", "build/@artifact"] {
        let out = ferry(
            repo.path(),
            &moto,
            &["step", spec],
            &[("FERRY_RUN_ID", "401")],
        );
        assert_code(&out, 0, spec);
    }
    let run = [("FERRY_RUN_ID", "0"), ("FERRY_COMMIT_SHA", sha.as_str())];
    let out = ferry(repo.path(), &moto, &["step", "test/@deploy"], &run);
    assert_code(&out, ferry_api::exit::CONFLICT, "a frozen deploy step");
    let said = text(&out);
    assert!(
        said.contains("environment test may not be deployed to now: frozen until"),
        "{said}"
    );
    assert!(said.contains("rollback-unsafe deployment"), "{said}");
    assert!(said.contains("ferry unfreeze test"), "{said}");
    assert_eq!(actions(), "", "nothing deployed");

    // Lifted with `ferry unfreeze` (on the table): the step deploys.
    let out = ferry(repo.path(), &moto, &["unfreeze", "test"], &[]);
    assert_code(&out, 0, "ferry unfreeze test");
    let out = ferry(repo.path(), &moto, &["step", "test/@deploy"], &run);
    assert_code(&out, 0, "test/@deploy after the unfreeze");
    assert_eq!(actions(), format!("deploy test {sha}\n"));
}

const A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const C: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

/// Two environments: `test` deployed by a command (in CodeBuild, on AWS), `prod` to S3
/// (a bucket that does not exist here, so its deployer cannot tell what runs).
fn two_environments(ops: &Path) -> String {
    format!(
        r#"{}  - name: prod
    deploy:
      s3:
        bucket: ferry-ledger-site
"#,
        pipeline(ops)
    )
}

/// A deployment record as `ferry step` writes it.
fn deployment(
    env: &str,
    start: i64,
    version: &str,
    run: i64,
    status: ferry_core::DeploymentStatus,
) -> ferry_core::DeploymentRecord {
    ferry_core::DeploymentRecord {
        deployment_id: format!("{env}#{start}"),
        environment: env.into(),
        version: version.into(),
        status,
        start_time: start,
        end_time: Some(start + 10),
        infrastructure_changed: false,
        commit_message: format!("commit {version}"),
        commit_author: "ada".into(),
        pipeline_execution_id: format!("exec-{run}"),
        unit_tests_passed: true,
        integration_tests_passed: true,
        e2e_tests_passed: false,
        coverage_percentage: 81.5,
        rollback_reason: None,
        rollback_level: None,
        rollback_time: None,
        artifact_location: format!("s3://{BUCKET}/{version}.tar"),
        expires_at: start / 1000 + 90 * 86_400,
        run_id: RunId(run),
        artifact_digest: "sha256:aa".into(),
        previous_version: None,
        config_digest: None,
        template_digests: Default::default(),
        rollback_unsafe: false,
        rollback_unsafe_reason: None,
    }
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn status_and_history_show_what_the_dynamodb_table_holds() {
    use ferry_core::DeploymentStatus::Succeeded;
    use ferry_core::rollback::{RollbackRecord, RollbackStatus, Trigger};
    let moto = moto();
    let ledger = ledger(&moto);
    let repo = Repo::new();
    let ops = tempfile::tempdir().expect("ops");
    repo.write("ferry.yml", &two_environments(ops.path()));
    repo.write(".gitignore", ".ferry/\ndist/\n");
    repo.commit("first");

    // A table that does not exist (a typo, another region): said plainly, with the fix.
    for args in [
        &["status"][..],
        &["history"],
        &["resolve", "test"],
        &["unfreeze", "test"],
        &["rollback", "test"],
        &["step", "build/unit"],
    ] {
        let out = ferry_on(repo.path(), &moto, "ferry-no-such-table", args, &[]);
        assert_code(&out, ferry_api::exit::ENVIRONMENT, &args.join(" "));
        let said = support::stderr(&out);
        assert!(
            said.contains(
                "the DynamoDB table `ferry-no-such-table` (FERRY_DEPLOYMENTS_TABLE) does not exist"
            ),
            "{said}"
        );
        assert!(said.contains("unset FERRY_DEPLOYMENTS_TABLE"), "{said}");
    }

    // What `ferry step` and the rollback Lambda leave in the table: test runs A (B was
    // rolled back by the Lambda), frozen; prod runs C and has an open incident.
    ledger.create_table().expect("table");
    let t = now().0 - 3_600_000;
    ledger
        .record_deployment(&deployment("test", t, A, 501, Succeeded))
        .expect("A");
    let bad = deployment("test", t + 60_000, B, 502, Succeeded);
    ledger.record_deployment(&bad).expect("B");
    ledger
        .record_deployment(&deployment("prod", t + 120_000, C, 503, Succeeded))
        .expect("C");
    let mut rb = RollbackRecord::start(
        &bad,
        "alarm api-errors",
        Trigger::Alarm {
            name: "api-errors".into(),
        },
        "lambda",
        Timestamp(t + 90_000),
    );
    assert_eq!(ledger.claim_rollback(&rb).expect("claim"), Ok(()));
    rb.status = RollbackStatus::Succeeded;
    rb.to_version = Some(A.into());
    rb.ended_at = Some(Timestamp(t + 95_000));
    ledger.update_rollback(&rb).expect("rollback");
    ledger
        .record_rollback(
            RunId(-1),
            &[
                Change::DeploymentRolledBack {
                    deployment_id: bad.deployment_id.clone(),
                    reason: "alarm api-errors".into(),
                    level: ferry_core::RollbackLevel::Full,
                    at: Timestamp(t + 95_000),
                },
                Change::IncidentOpened {
                    environment: "prod".into(),
                    deployment_id: format!("prod#{}", t + 120_000),
                    reason: "both rollback levels failed".into(),
                    at: Timestamp(t + 130_000),
                },
            ],
        )
        .expect("rolled back");
    let until = now().0 + 7_200_000;
    ledger
        .freeze(&Freeze {
            id: 0,
            environment: "test".into(),
            from: now(),
            until: Timestamp(until),
            reason: "release week".into(),
            by: "ada".into(),
            lifted_at: None,
            lifted_by: None,
        })
        .expect("freeze");

    // The monitoring stack's rollback alarm has gone off (CloudWatch, not ferry's own).
    ferry_aws::cloudwatch::CloudWatch::new(&support::moto::connect(&moto))
        .set_alarm(
            "ledger-aws-rollbacks",
            ferry_core::alarm::AlarmState::Alarm,
            "Threshold Crossed: 3 rollbacks in the last hour",
        )
        .expect("alarm");

    let out = ferry(repo.path(), &moto, &["status", "--json"], &[]);
    assert_code(&out, 0, "ferry status --json");
    let st = json_of(&out);
    let alarms: Vec<(String, String)> = st["pipeline_alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| (a["name"].to_string(), a["state"].to_string()))
        .collect();
    assert_eq!(
        alarms,
        vec![
            ("\"ledger-aws-failures\"".into(), "\"UNKNOWN\"".into()),
            ("\"ledger-aws-rollbacks\"".into(), "\"ALARM\"".into()),
        ],
        "{st:#}"
    );
    assert_eq!(
        st["ledger"],
        serde_json::json!({ "kind": "dynamodb", "name": TABLE }),
        "{st:#}"
    );
    let env = |name: &str| {
        st["environments"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {st:#}"))
    };
    let test = env("test");
    assert_eq!(test["version"], A, "{test:#}");
    assert_eq!(test["status"], "succeeded", "{test:#}");
    assert_eq!(test["latest"]["version"], B, "{test:#}");
    assert_eq!(test["latest"]["status"], "rolled_back", "{test:#}");
    assert_eq!(test["freezes"][0]["reason"], "release week", "{test:#}");
    assert!(test["incident"].is_null(), "{test:#}");
    let prod = env("prod");
    assert_eq!(prod["version"], C, "{prod:#}");
    assert_eq!(
        prod["incident"]["reason"], "both rollback levels failed",
        "{prod:#}"
    );
    assert!(prod["freezes"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(st["runs"], serde_json::json!([]));

    let out = ferry(repo.path(), &moto, &["status"], &[]);
    assert_code(&out, 0, "ferry status");
    let said = support::stdout(&out);
    for want in [
        &format!("deployments, incidents and freezes: DynamoDB table {TABLE}")[..],
        &A[..7],
        &C[..7],
        "test FROZEN until",
        "release week",
        "prod NEEDS A PERSON",
        "ferry resolve prod",
        "PIPELINE ALARM ledger-aws-rollbacks: Threshold Crossed: 3 rollbacks",
        "pipeline alarm ledger-aws-failures: no CloudWatch alarm `ledger-aws-failures` in this account and region",
    ] {
        assert!(said.contains(want), "`{want}` not in:\n{said}");
    }

    let out = ferry(repo.path(), &moto, &["history", "--json"], &[]);
    assert_code(&out, 0, "ferry history --json");
    let h = json_of(&out);
    assert_eq!(h["ledger"]["name"], TABLE, "{h:#}");
    let versions: Vec<&str> = h["deployments"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["version"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(versions, vec![C, B, A], "{h:#}");
    assert_eq!(
        h["rollbacks"][0]["deployment_id"], bad.deployment_id,
        "{h:#}"
    );
    assert_eq!(h["rollbacks"][0]["status"], "succeeded", "{h:#}");
    let out = ferry(
        repo.path(),
        &moto,
        &["history", "--env", "prod", "--json"],
        &[],
    );
    let h = json_of(&out);
    assert_eq!(h["deployments"].as_array().map(Vec::len), Some(1), "{h:#}");
    assert_eq!(h["rollbacks"], serde_json::json!([]), "{h:#}");
    let out = ferry(repo.path(), &moto, &["history"], &[]);
    assert_code(&out, 0, "ferry history");
    let said = support::stdout(&out);
    for want in [
        &format!("deployments and rollbacks: DynamoDB table {TABLE}")[..],
        "rolled_back",
        "rollbacks:",
        "alarm api-errors",
    ] {
        assert!(said.contains(want), "`{want}` not in:\n{said}");
    }

    // Without the table: the project's own store, which has none of it.
    let mut c = ferry_cmd(repo.path(), &["status", "--json"]);
    c.env_remove("FERRY_DEPLOYMENTS_TABLE");
    let out = support::Running::spawn(c, &["status"]).wait(support::LONG);
    assert_code(&out, 0, "ferry status without the table");
    let st = json_of(&out);
    assert!(st.get("ledger").is_none(), "{st:#}");
    assert_eq!(st["environments"][0]["status"], "never_deployed", "{st:#}");
}

#[test]
fn freeze_unfreeze_and_resolve_on_the_table_are_published_to_the_rollbacks_topic() {
    let moto = moto();
    let ledger = ledger(&moto);
    ledger.create_table().expect("table");
    let aws = support::moto::connect(&moto);
    let mut topics = Vec::new();
    for name in ["ops-deployments", "ops-rollbacks"] {
        let arn = ferry_aws::sns::create_topic(&aws, name).expect("topic");
        let (url, rx) = support::moto::http_subscriber();
        ferry_aws::sns::subscribe(&aws, &arn, "http", &url).expect("subscribe");
        topics.push((arn, rx));
    }
    let env = [
        ("FERRY_DEPLOYMENTS_TOPIC", topics[0].0.as_str()),
        ("FERRY_ROLLBACKS_TOPIC", topics[1].0.as_str()),
    ];
    let repo = Repo::new();
    let ops = tempfile::tempdir().expect("ops");
    repo.write("ferry.yml", &pipeline(ops.path()));
    repo.write(".gitignore", ".ferry/\ndist/\n");
    repo.commit("first");

    let freeze = [
        "freeze",
        "test",
        "--until",
        "2h",
        "--reason",
        "release week",
        "--by",
        "ada",
    ];
    let out = ferry(repo.path(), &moto, &freeze, &env);
    assert_code(&out, 0, "ferry freeze test");
    let out = ferry(
        repo.path(),
        &moto,
        &["unfreeze", "test", "--by", "bob"],
        &env,
    );
    assert_code(&out, 0, "ferry unfreeze test");
    open_incident(&ledger);
    let out = ferry(
        repo.path(),
        &moto,
        &["resolve", "test", "--by", "ada"],
        &env,
    );
    assert_code(&out, 0, "ferry resolve test");
    assert!(!support::stderr(&out).contains("warning"), "{}", text(&out));

    let rollbacks = support::moto::event_kinds(&topics[1].1);
    let mut seen = rollbacks.clone();
    seen.sort();
    assert_eq!(
        seen,
        vec!["freeze_lifted", "freeze_set", "incident_resolved"],
        "{rollbacks:?}"
    );
    let deployments = support::moto::event_kinds(&topics[0].1);
    assert_eq!(deployments, Vec::<String>::new());

    // A topic that cannot be published to: a warning; the freeze stands in the table.
    let gone = [(
        "FERRY_ROLLBACKS_TOPIC",
        "arn:aws:sns:us-east-1:123456789012:no-such-topic",
    )];
    let out = ferry(repo.path(), &moto, &freeze, &gone);
    assert_code(&out, 0, "ferry freeze with a topic that does not exist");
    let said = support::stderr(&out);
    assert!(
        said.contains("warning: freeze_set was not published to sns-rollbacks"),
        "{said}"
    );
    assert!(said.contains("recorded in the table"), "{said}");
    assert_eq!(
        ledger.freezes(Some("test"), now()).expect("freezes").len(),
        1
    );
}

/// `ferry rollback ENV` from a laptop with `FERRY_DEPLOYMENTS_TABLE` set: the
/// environment as the AWS runtime recorded it (two `ferry step` deployments, their
/// artifacts in S3), rolled back through the same orchestrator, the table updated, and
/// the rollback's events published to the stack's rollbacks topic (what the rollback
/// Lambda's `not_performed` record tells a person to run).
#[test]
fn ferry_rollback_acts_on_what_the_table_records() {
    let moto = moto();
    let ledger = ledger(&moto);
    ledger.create_table().expect("table");
    let aws = support::moto::connect(&moto);
    let arn = ferry_aws::sns::create_topic(&aws, "ops-rollbacks").expect("topic");
    let (url, rx) = support::moto::http_subscriber();
    ferry_aws::sns::subscribe(&aws, &arn, "http", &url).expect("subscribe");
    let repo = Repo::new();
    let ops = tempfile::tempdir().expect("ops");
    // The restored version is checked at once (the default waits a minute first).
    let text_of = format!(
        "{}rollback:\n  validate:\n    stabilize: 0s\n",
        pipeline(ops.path())
    );
    repo.write("ferry.yml", &text_of);
    repo.write(".gitignore", ".ferry/\ndist/\n");
    let actions = || std::fs::read_to_string(ops.path().join("actions.log")).unwrap_or_default();

    // Two pipeline executions, as CodeBuild runs them: A, then B, each deployed to test.
    let mut shas = Vec::new();
    for (id, msg) in [("601", "A"), ("602", "B")] {
        repo.write("version.txt", msg);
        let sha = repo.commit(msg);
        let _ = std::fs::remove_dir_all(repo.path().join(".ferry/step"));
        for spec in ["build/unit", "build/@artifact", "test/@deploy"] {
            let out = ferry(
                repo.path(),
                &moto,
                &["step", spec],
                &[("FERRY_RUN_ID", id), ("FERRY_COMMIT_SHA", sha.as_str())],
            );
            assert_code(&out, 0, &format!("{msg}: {spec}"));
        }
        shas.push(sha);
    }
    let (a, b) = (&shas[0], &shas[1]);
    assert_eq!(actions(), format!("deploy test {a}\ndeploy test {b}\n"));
    // This laptop's own store has never seen a deployment: the table is what counts.
    let _ = std::fs::remove_dir_all(repo.path().join(".ferry"));

    let out = ferry(
        repo.path(),
        &moto,
        &["rollback", "test", "--reason", "bad release"],
        &[("FERRY_ROLLBACKS_TOPIC", arn.as_str())],
    );
    assert_code(&out, 0, "ferry rollback test on the table");
    assert!(
        text(&out).contains(&format!("rolled back test from {}", &b[..12])),
        "{}",
        text(&out)
    );
    // A redeployed (its artifact read back from S3 and checked), B rolled back there.
    assert_eq!(
        actions(),
        format!("deploy test {a}\ndeploy test {b}\ndeploy test {a}\n")
    );
    let current = ledger
        .current_deployment("test")
        .expect("current")
        .expect("a deployment");
    assert_eq!(&current.version, a);
    let b_rec = ledger
        .deployments(Some("test"), 10)
        .expect("deployments")
        .into_iter()
        .find(|d| &d.version == b)
        .expect("B's record");
    assert_eq!(b_rec.status, ferry_core::DeploymentStatus::RolledBack);
    let rb = ledger
        .rollback(&b_rec.deployment_id)
        .expect("rollback")
        .expect("B's rollback");
    assert_eq!(rb.to_version.as_deref(), Some(a.as_str()));
    assert_eq!(rb.reason, "bad release");
    let kinds = support::moto::event_kinds(&rx);
    assert!(
        kinds.contains(&"rollback_initiated".to_string())
            && kinds.contains(&"rollback_succeeded".to_string()),
        "{kinds:?}"
    );
    // Nothing left to roll back to: said, exit 0, nothing redeployed.
    let out = ferry(repo.path(), &moto, &["rollback", "test"], &[]);
    assert_code(&out, 0, "a second rollback");
    assert!(
        text(&out).contains("nothing to roll back"),
        "{}",
        text(&out)
    );
    assert_eq!(actions().lines().count(), 3);
}
