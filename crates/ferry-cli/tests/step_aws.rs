//! `ferry step` on the AWS runtime (issue 7): the same steps as `tests/step.rs`, with
//! deployments, leases and rollbacks in the DynamoDB ledger on moto's server, reached
//! through the real AWS SDK (`FERRY_DEPLOYMENTS_TABLE`, `AWS_ENDPOINT_URL`), as the
//! CodeBuild projects of `ferry synth aws` run them. Needs `--features aws` and moto
//! from `.ci/aws-setup`.
#![cfg(feature = "aws")]

mod support;

use ferry_aws::ledger::DynamoLedger;
use ferry_core::DeploymentStatus;
use ferry_engine::ports::Ledger;
use std::path::Path;
use std::process::Output;
use support::{Repo, assert_code, ferry_cmd};

use support::moto::{Moto, start as moto};

const TABLE: &str = "ferry-step-deployments";
const BUCKET: &str = "ferry-step-artifacts";

fn pipeline(ops: &Path) -> String {
    let ops = ops.display();
    format!(
        r#"pipeline: step-aws
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
        rollback: echo "rollback $FERRY_ENV $FERRY_VERSION" >> {ops}/actions.log
    tests:
      - name: integration
        run: test ! -f broken
rollback:
  automatic: true
  validate:
    stabilize: 1s
    health_timeout: 5s
"#
    )
}

fn step(
    dir: &Path,
    moto: &Moto,
    topics: &[(String, std::sync::mpsc::Receiver<serde_json::Value>)],
    spec: &str,
    run_id: &str,
    sha: Option<&str>,
) -> Output {
    let mut c = ferry_cmd(dir, &["step", spec]);
    support::moto::aws_env(&mut c, moto, TABLE, Some(BUCKET))
        .env("FERRY_RUN_ID", run_id)
        .env("FERRY_DEPLOYMENTS_TOPIC", &topics[0].0)
        .env("FERRY_ROLLBACKS_TOPIC", &topics[1].0);
    if let Some(s) = sha {
        c.env("FERRY_COMMIT_SHA", s);
    }
    support::Running::spawn(c, &["step", spec]).wait(support::LONG)
}

#[test]
fn steps_record_into_dynamodb_and_a_failing_test_rolls_back_there() {
    let moto = moto();
    let aws = support::moto::connect(&moto);
    let ledger = DynamoLedger::new(&aws, TABLE);
    ledger.create_table().expect("table");
    ferry_aws::s3::S3Deployer::new(&aws, BUCKET, "unused")
        .create_bucket()
        .expect("bucket");
    // The stack's topics, each with an HTTP subscriber on loopback.
    let mut topics = Vec::new();
    for name in ["step-deployments", "step-rollbacks"] {
        let arn = ferry_aws::sns::create_topic(&aws, name).expect("topic");
        let (url, rx) = support::moto::http_subscriber();
        ferry_aws::sns::subscribe(&aws, &arn, "http", &url).expect("subscribe");
        topics.push((arn, rx));
    }

    let repo = Repo::new();
    let shared = tempfile::tempdir().expect("shared");
    let ops = shared.path().join("ops");
    std::fs::create_dir_all(&ops).expect("ops");
    repo.write("ferry.yml", &pipeline(&ops));
    repo.write(".gitignore", ".ferry/\ndist/\n");
    let actions = || -> Vec<String> {
        std::fs::read_to_string(ops.join("actions.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };

    // DynamoDB without an artifacts bucket: the artifact would die with the container.
    repo.commit("setup");
    let mut c = ferry_cmd(repo.path(), &["step", "build/unit"]);
    support::moto::aws_env(&mut c, &moto, TABLE, None).env("FERRY_RUN_ID", "300");
    let out = support::Running::spawn(c, &["step"]).wait(support::LONG);
    assert_code(&out, 3, "DynamoDB without FERRY_ARTIFACTS_BUCKET");
    assert!(
        support::describe(&out).contains("set FERRY_ARTIFACTS_BUCKET"),
        "{}",
        support::describe(&out)
    );

    let mut shas = Vec::new();
    for (n, broken) in [(301, false), (302, true)] {
        if broken {
            repo.write("broken", "yes\n");
        }
        let sha = repo.commit(&format!("run {n}"));
        std::fs::remove_dir_all(repo.join(".ferry/step")).ok();
        for spec in ["build/unit", "build/@artifact"] {
            let out = step(repo.path(), &moto, &topics, spec, &n.to_string(), None);
            assert_code(&out, 0, spec);
        }
        let ws = shared.path().join(format!("ws-{n}"));
        support::copy_workspace(repo.path(), &ws);
        let out = step(&ws, &moto, &topics, "test/@deploy", "0", Some(&sha));
        assert_code(&out, 0, "test/@deploy");
        let out = step(&ws, &moto, &topics, "test/integration", "0", Some(&sha));
        assert_code(&out, if broken { 1 } else { 0 }, "test/integration");
        // The container ends: nothing of it is left for later executions.
        std::fs::remove_dir_all(&ws).expect("remove the workspace");
        shas.push(sha);
    }
    let (a, b) = (&shas[0], &shas[1]);
    assert_eq!(
        actions(),
        vec![
            format!("deploy test {a}"),
            format!("deploy test {b}"),
            format!("rollback test {a}"),
        ]
    );

    // What DynamoDB holds, read back through the ledger.
    let d = ledger.deployments(Some("test"), 10).expect("deployments");
    assert_eq!(d.len(), 2, "{d:#?}");
    let (newest, oldest) = (&d[0], &d[1]);
    assert_eq!(
        (oldest.version.as_str(), oldest.run_id.0),
        (a.as_str(), 301)
    );
    assert_eq!(oldest.status, DeploymentStatus::Succeeded);
    // The artifact a rollback restores is kept in S3, not in a container.
    assert_eq!(
        oldest.artifact_location,
        format!("s3://{BUCKET}/ferry/artifacts/step-aws/run-301.tar"),
        "{oldest:#?}"
    );
    assert_eq!(
        (newest.version.as_str(), newest.run_id.0),
        (b.as_str(), 302)
    );
    assert_eq!(newest.status, DeploymentStatus::RolledBack, "{newest:#?}");
    assert!(
        newest
            .rollback_reason
            .as_deref()
            .is_some_and(|r| r.contains("integration")),
        "{newest:#?}"
    );
    let lkg = ledger.last_known_good("test").expect("lkg").expect("one");
    assert_eq!(lkg.version, *a);
    let rb = ledger
        .rollback(&newest.deployment_id)
        .expect("rollback record")
        .expect("claimed");
    assert_eq!(rb.deployment_id, newest.deployment_id);
    // No lease is left behind by the step processes.
    let mut probe = ferry_engine::ports::Lease {
        environment: "test".into(),
        run: ferry_core::RunId(999),
        holder: "probe".into(),
        expires_at: ferry_core::Timestamp(i64::MAX / 2),
    };
    assert_eq!(
        ledger
            .acquire_lease(&probe, ferry_core::Timestamp(0))
            .expect("lease"),
        Ok(()),
        "a step process left its lease on test"
    );
    probe.expires_at = ferry_core::Timestamp(0);
    ledger.release_lease("test", probe.run).expect("release");

    // Every step published its events to the stack's topics (seed §3.6), with the
    // event kind in the message (and as a message attribute subscribers filter on).
    let deployments = support::moto::event_kinds(&topics[0].1);
    for k in [
        "deployment_started",
        "deployment_succeeded",
        "rollback_initiated",
        "rollback_succeeded",
    ] {
        assert!(
            deployments.iter().any(|d| d == k),
            "{k} not published: {deployments:?}"
        );
    }
    let rollbacks = support::moto::event_kinds(&topics[1].1);
    assert!(
        rollbacks.iter().any(|d| d == "rollback_succeeded"),
        "{rollbacks:?}"
    );
    assert!(
        !rollbacks.iter().any(|d| d.starts_with("deployment")),
        "{rollbacks:?}"
    );
}
