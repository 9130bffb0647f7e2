//! Issue 7's "what bad input gets" for the AWS adapters, on the real SDK: throttling
//! (`ProvisionedThroughputExceeded`, `Throttling`, `SlowDown`) injected by
//! `common::proxy` in front of moto — retried with backoff, then a clear error naming the
//! service and the call — an endpoint that refuses connections, and missing region or
//! credentials.
#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used)]

mod common;

use common::proxy::{Answer, Proxy};
use ferry_aws::cloudwatch::CloudWatch;
use ferry_aws::ledger::DynamoLedger;
use ferry_aws::s3::S3Deployer;
use ferry_aws::sns::SnsNotifier;
use ferry_aws::{Aws, Settings};
use ferry_core::notify::Attempt;
use ferry_core::{Artifact, DeploymentStatus, Event, EventKind, RunId, Timestamp};
use ferry_engine::ports::{DeployRequest, Deployer, Ledger, Notifier, PortErrorKind};
use ferry_testkit::ledger_suite::deployment;
use std::path::Path;
use std::process::Command;

const PUT_ITEM: &str = "DynamoDB_20120810.PutItem";

fn through(proxy: &Proxy, attempts: u32) -> Aws {
    Aws::connect(&proxy.settings(attempts)).unwrap()
}

fn event() -> Event {
    Event {
        at: Timestamp(1_700_000_000_000),
        kind: EventKind::RollbackSucceeded,
        run: Some(RunId(7)),
        environment: Some("production".into()),
        message: "production rolled back".into(),
        data: serde_json::json!({"event": "rollback_succeeded"}),
    }
}

fn create_alarm(aws: &Aws, name: &str) {
    let cw = aws_sdk_cloudwatch::Client::new(aws.config());
    aws.block_on(
        cw.put_metric_alarm()
            .alarm_name(name)
            .namespace("Shop")
            .metric_name("Errors")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
            .period(60)
            .evaluation_periods(1)
            .threshold(5.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
            )
            .send(),
    )
    .unwrap();
}

fn create_topic(aws: &Aws) -> String {
    let sns = aws_sdk_sns::Client::new(aws.config());
    aws.block_on(sns.create_topic().name("ferry-rollbacks").send())
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string()
}

fn site(root: &Path, version: &str) -> std::path::PathBuf {
    let dir = root.join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), format!("<h1>{version}</h1>")).unwrap();
    dir
}

fn request(version: &str, dir: &Path) -> DeployRequest {
    DeployRequest {
        environment: "production".into(),
        version: version.into(),
        artifact: Artifact {
            digest: String::new(),
            location: dir.display().to_string(),
            size: 0,
        },
        env: Default::default(),
        cwd: dir.to_path_buf(),
        log: dir.join("log"),
    }
}

/// Asserts a give-up error: transient, names the service and call, says throttled and
/// how many attempts.
fn assert_throttled(kind: PortErrorKind, message: &str, service_call: &str, attempts: u32) {
    assert_eq!(kind, PortErrorKind::Transient, "{message}");
    assert!(
        message.starts_with(&format!("AWS {service_call} failed: throttled")),
        "{message}"
    );
    assert!(
        message.contains(&format!("gave up after {attempts} attempts with backoff")),
        "{message}"
    );
}

#[test]
fn dynamodb_throttled_twice_then_answers_and_throttled_every_time_gives_up_naming_the_call() {
    let moto = common::Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    let ledger = DynamoLedger::new(&moto.aws(), "ferry-deployments");
    ledger.create_table().unwrap();

    // Twice ProvisionedThroughputExceeded, then moto: recorded, in 3 attempts.
    let aws = through(&proxy, 3);
    let throttled = DynamoLedger::new(&aws, "ferry-deployments");
    proxy.fail(PUT_ITEM, 2, Answer::DynamoThrottle);
    let d = deployment("production", 1_000, "v1", DeploymentStatus::Succeeded);
    throttled.record_deployment(&d).unwrap();
    assert_eq!(proxy.seen(PUT_ITEM), 3, "{:?}", proxy.calls());
    assert_eq!(
        ledger
            .current_deployment("production")
            .unwrap()
            .unwrap()
            .version,
        "v1"
    );

    // Throttled every time: a transient error after the 3 attempts, naming the call.
    proxy.reset();
    proxy.fail_always(PUT_ITEM, Answer::DynamoThrottle);
    let e = throttled
        .record_deployment(&deployment(
            "production",
            2_000,
            "v2",
            DeploymentStatus::Succeeded,
        ))
        .unwrap_err();
    assert_throttled(e.kind, &e.message, "DynamoDB PutItem", 3);
    assert!(
        e.message.contains("ProvisionedThroughputExceeded"),
        "{}",
        e.message
    );
    assert_eq!(proxy.seen(PUT_ITEM), 3, "{:?}", proxy.calls());
    assert_eq!(
        ledger
            .current_deployment("production")
            .unwrap()
            .unwrap()
            .version,
        "v1",
        "nothing written"
    );
}

#[test]
fn the_lease_write_is_retried_through_throttling() {
    let moto = common::Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    DynamoLedger::new(&moto.aws(), "ferry-deployments")
        .create_table()
        .unwrap();
    let ledger = DynamoLedger::new(&through(&proxy, 3), "ferry-deployments");
    proxy.fail(PUT_ITEM, 2, Answer::DynamoThrottle);
    let lease = ferry_engine::ports::Lease {
        environment: "production".into(),
        run: RunId(1),
        holder: "a:1".into(),
        expires_at: Timestamp(60_000),
    };
    assert_eq!(
        ledger.acquire_lease(&lease, Timestamp(1_000)).unwrap(),
        Ok(())
    );
    assert_eq!(proxy.seen(PUT_ITEM), 3, "{:?}", proxy.calls());
    // The conditional write is decided once: another run still loses to it.
    let other = ferry_engine::ports::Lease {
        run: RunId(2),
        holder: "b:2".into(),
        ..lease.clone()
    };
    assert_eq!(
        ledger
            .acquire_lease(&other, Timestamp(2_000))
            .unwrap()
            .unwrap_err()
            .run,
        RunId(1)
    );
}

#[test]
fn sns_publish_is_retried_through_throttling_then_gives_up_naming_the_call() {
    let moto = common::Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    let topic = create_topic(&moto.aws());
    let aws = through(&proxy, 3);
    let sns = SnsNotifier::new(&aws, "rollbacks", &topic, Vec::new());

    proxy.fail("Action=Publish", 2, Answer::QueryThrottle);
    assert!(
        matches!(sns.deliver(1, &event()), Attempt::Delivered(_)),
        "{:?}",
        proxy.calls()
    );
    assert_eq!(proxy.seen("Action=Publish"), 3);

    proxy.reset();
    proxy.fail_always("Action=Publish", Answer::QueryThrottle);
    match sns.deliver(2, &event()) {
        Attempt::Transient(why) => {
            assert_throttled(PortErrorKind::Transient, &why, "SNS Publish", 3);
            assert!(why.contains("Rate exceeded"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(proxy.seen("Action=Publish"), 3);
}

#[test]
fn cloudwatch_describe_alarms_is_retried_through_throttling_then_gives_up_naming_the_call() {
    let moto = common::Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    create_alarm(&moto.aws(), "shop-production-errors");
    let cw = CloudWatch::new(&through(&proxy, 4));

    proxy.fail("Action=DescribeAlarms", 2, Answer::QueryThrottle);
    let found = cw.alarms(&["shop-production-errors".into()], None).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(proxy.seen("Action=DescribeAlarms"), 3);

    proxy.reset();
    proxy.fail_always("Action=DescribeAlarms", Answer::QueryThrottle);
    let e = cw.alarms(&[], Some("shop-production-")).unwrap_err();
    assert_throttled(e.kind, &e.message, "CloudWatch DescribeAlarms", 4);
    assert_eq!(proxy.seen("Action=DescribeAlarms"), 4);
}

#[test]
fn s3_deploy_is_retried_through_slow_down_then_gives_up_naming_the_call() {
    let moto = common::Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    common::create_bucket(&moto.aws(), "site");
    let dir = tempfile::tempdir().unwrap();
    let aws = through(&proxy, 3);
    let s3 = S3Deployer::new(&aws, "site", "production");
    let pointer = "PUT /site/production/current";

    proxy.fail(pointer, 2, Answer::S3SlowDown);
    s3.deploy(&request("v1", &site(dir.path(), "v1"))).unwrap();
    assert_eq!(proxy.seen(pointer), 3, "{:?}", proxy.calls());
    assert_eq!(common::get(&moto.aws(), "site", "production/current"), "v1");

    proxy.reset();
    proxy.fail_always(pointer, Answer::S3SlowDown);
    let e = s3
        .deploy(&request("v2", &site(dir.path(), "v2")))
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Transient, "{}", e.message);
    assert!(
        e.message.starts_with("AWS S3 PutObject failed: throttled"),
        "{}",
        e.message
    );
    assert!(e.message.contains("SlowDown"), "{}", e.message);
    assert_eq!(proxy.seen(pointer), 3, "{:?}", proxy.calls());
    assert_eq!(
        common::get(&moto.aws(), "site", "production/current"),
        "v1",
        "the pointer did not move"
    );
}

#[test]
fn an_endpoint_that_refuses_connections_is_named_after_the_attempts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws = Aws::connect(&Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.clone()),
        credentials: Some(("testing".into(), "testing".into())),
        max_attempts: Some(2),
    })
    .unwrap();
    let e = DynamoLedger::new(&aws, "ferry-deployments")
        .current_deployment("production")
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Transient, "{}", e.message);
    assert!(
        e.message.starts_with(&format!(
            "AWS DynamoDB Query failed: cannot reach {endpoint}"
        )),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("gave up after 2 attempts"),
        "{}",
        e.message
    );

    let e = CloudWatch::new(&aws).alarms(&[], Some("x-")).unwrap_err();
    assert!(
        e.message.starts_with(&format!(
            "AWS CloudWatch DescribeAlarms failed: cannot reach {endpoint}"
        )),
        "{}",
        e.message
    );
}

/// `Aws::connect` in a process whose environment holds only `vars` (no AWS_* from the
/// test's own environment, no instance metadata, no config files): the
/// `ferry-lambda invoke` binary connects first.
fn connect_with(vars: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let event = format!("{}/tests/events/alarm.json", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-lambda"))
        .args(["invoke", &event])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_missing_region_or_missing_credentials_say_what_to_set() {
    let (code, err) = connect_with(&[
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no AWS region: set AWS_REGION"), "{err}");

    let (code, err) = connect_with(&[("AWS_REGION", "us-east-1")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
}
