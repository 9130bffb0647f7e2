//! `ferry resolve`, `ferry freeze` and `ferry unfreeze` on the DynamoDB ledger (issue 7):
//! with `FERRY_DEPLOYMENTS_TABLE` set they act on the table the rollback Lambda and
//! `ferry step` use, and `ferry step ENV/@deploy` refuses at once to deploy into an
//! environment frozen there (a freeze the Lambda set for a rollback-unsafe deployment,
//! say), naming the freeze and `ferry unfreeze`. Needs `--features aws` and moto from
//! `.ci/aws-setup`.
#![cfg(feature = "aws")]

mod support;

use ferry_aws::ledger::DynamoLedger;
use ferry_aws::{Aws, Settings};
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
    let mut c = ferry_cmd(dir, args);
    c.env("FERRY_DEPLOYMENTS_TABLE", TABLE)
        .env("FERRY_ARTIFACTS_BUCKET", BUCKET)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("FERRY_DEPLOYMENTS_TOPIC")
        .env_remove("FERRY_ROLLBACKS_TOPIC")
        .env_remove("FERRY_COMMIT_SHA")
        .env_remove("FERRY_STEP_DIR");
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

fn ledger(moto: &Moto) -> DynamoLedger {
    let aws = Aws::connect(&Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(moto.endpoint.clone()),
        credentials: Some(("testing".into(), "testing".into())),
        max_attempts: Some(2),
    })
    .expect("aws");
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
