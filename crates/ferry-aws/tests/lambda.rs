//! The rollback Lambda end to end on moto: `ferry-lambda invoke EVENT.json` (the same
//! handler the Lambda runtime calls) on the AWS-documented alarm events, leading to a
//! real rollback of an S3-deployed version, the DynamoDB record updated and an SNS
//! publish.
#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used)]

mod common;

use common::proxy::{Answer, Proxy};
use ferry_aws::alarm_event::Action;
use ferry_aws::lambda::{Handler, Invocation, LambdaConfig};
use ferry_aws::ledger::DynamoLedger;
use ferry_aws::s3::S3Deployer;
use ferry_core::{Artifact, DeploymentStatus, RunId};
use ferry_engine::ports::{DeployRequest, Deployer, Ledger, PortErrorKind};
use ferry_synth::lambda_env;
use ferry_testkit::ledger_suite::deployment;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PIPELINE: &str = r#"
pipeline: shop
build:
  steps:
    - name: build
      run: ./build.sh
  artifact: dist
environments:
  - name: staging
    deploy:
      s3: {bucket: site}
  - name: production
    deploy:
      s3: {bucket: site}
rollback:
  validate:
    stabilize: 0s
"#;

struct World {
    _moto: common::Moto,
    /// Where the Lambda reaches AWS: moto, or a proxy in front of it.
    endpoint: String,
    dir: tempfile::TempDir,
    topic: String,
}

impl World {
    fn invoke(&self, event: &str) -> (i32, Value, String) {
        let path = format!("{}/tests/events/{event}.json", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(env!("CARGO_BIN_EXE_ferry-lambda"))
            .args(["invoke", &path])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.path().join("none"))
            .env(lambda_env::CONFIG, self.dir.path().join("ferry.yml"))
            .env(lambda_env::TABLE, "ferry-deployments")
            .env(lambda_env::ROLLBACKS_TOPIC, &self.topic)
            .env(lambda_env::PIPELINE, "shop")
            .env("TMPDIR", self.dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), json, stderr)
    }
}

fn site(root: &Path, version: &str) -> std::path::PathBuf {
    let dir = root.join("sites").join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), format!("<h1>{version}</h1>")).unwrap();
    dir
}

fn deploy(d: &S3Deployer, version: &str, dir: &Path) {
    d.deploy(&DeployRequest {
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
    })
    .unwrap();
}

#[test]
fn an_alarm_event_rolls_the_s3_deployment_back_and_publishes_to_sns() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferry.yml"), PIPELINE).unwrap();
    let ledger = DynamoLedger::new(&aws, "ferry-deployments");
    ledger.create_table().unwrap();
    common::create_bucket(&aws, "site");
    common::create_bucket(&aws, "artifacts");
    common::put(&aws, "artifacts", "v0.tar", b"release v0");
    common::put(&aws, "artifacts", "v1.tar", b"release v1");
    common::put(&aws, "artifacts", "v2.tar", b"release v2");

    // SNS: a subscriber that lets rollback_succeeded events of production through.
    let sns = aws_sdk_sns::Client::new(aws.config());
    let topic = aws
        .block_on(sns.create_topic().name("ferry-rollbacks").send())
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let (url, notes) = common::http_subscriber();
    aws.block_on(
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("http")
            .endpoint(&url)
            .attributes("FilterPolicy", r#"{"event": ["rollback_succeeded"]}"#)
            .send(),
    )
    .unwrap();

    // v0, v1 then v2 deployed to S3 and recorded; v2 runs.
    let s3 = S3Deployer::new(&aws, "site", "production");
    deploy(&s3, "v0", &site(dir.path(), "v0"));
    deploy(&s3, "v1", &site(dir.path(), "v1"));
    deploy(&s3, "v2", &site(dir.path(), "v2"));
    for (start, v) in [(500, "v0"), (1_000, "v1"), (2_000, "v2")] {
        let mut d = deployment("production", start, v, DeploymentStatus::Succeeded);
        d.artifact_location = format!("s3://artifacts/{v}.tar");
        d.artifact_digest = common::sha256(format!("release {v}").as_bytes());
        ledger.record_deployment(&d).unwrap();
    }
    let world = World {
        endpoint: moto.endpoint.clone(),
        _moto: moto,
        dir,
        topic,
    };

    // OK and INSUFFICIENT_DATA: nothing happens.
    for event in ["ok", "insufficient_data"] {
        let (code, out, err) = world.invoke(event);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out["action"], "nothing", "{out}");
    }
    // An unexpected event: dropped with its id, success.
    let (code, out, err) = world.invoke("unexpected");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["action"], "dropped");
    assert_eq!(out["eventId"], "odd-1");
    assert!(err.contains("odd-1"), "logged with its id: {err}");
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v2"));

    // ALARM of shop-production-errors: production back to v1.
    let (code, out, err) = world.invoke("alarm");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["action"], "rollback", "{out}");
    assert_eq!(out["rollback"]["status"], "succeeded", "{out}\n{err}");
    assert_eq!(rollback_metric_lines(&err), 1, "{err}");
    assert_eq!(out["rollback"]["to_version"], "v1", "{out}");
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v1"));
    let v2 = ledger
        .deployments(Some("production"), 10)
        .unwrap()
        .into_iter()
        .find(|d| d.version == "v2")
        .unwrap();
    assert_eq!(v2.status, DeploymentStatus::RolledBack);
    assert!(
        v2.rollback_reason
            .unwrap()
            .contains("shop-production-errors")
    );
    let rec = ledger.rollback("production#2000").unwrap().unwrap();
    assert_eq!(rec.to_version.as_deref(), Some("v1"));
    let note = notes
        .recv_timeout(Duration::from_secs(20))
        .expect("SNS publish");
    assert!(
        note["Message"].as_str().unwrap().contains("production"),
        "{note}"
    );

    // The same event delivered again (EventBridge delivers at least once): the rollback
    // begun since the alarm changed state handled it; v1, now current, stays.
    let first = out["rollback"].clone();
    let (code, out, err) = world.invoke("alarm");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["action"], "rollback", "{out}");
    assert_eq!(out["rollback"], first, "the first rollback reported");
    assert_eq!(rollback_metric_lines(&err), 0, "not counted twice: {err}");
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v1"));
    assert!(ledger.rollback("production#1000").unwrap().is_none());

    // The composite alarm (triggered by shop-production-latency) is production's too;
    // it changed state before that rollback began, which handled it: nothing is
    // redeployed.
    let (code, out, err) = world.invoke("composite");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["action"], "rollback", "{out}");
    assert_eq!(out["rollback"], first, "{out}");
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v1"));
}

#[test]
fn a_handling_failure_is_an_error_so_the_dead_letter_queue_gets_the_event() {
    let moto = common::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferry.yml"), PIPELINE).unwrap();
    // No table: the ALARM cannot be handled.
    let world = World {
        endpoint: moto.endpoint.clone(),
        _moto: moto,
        dir,
        topic: String::new(),
    };
    let (code, _, err) = world.invoke("alarm");
    assert_eq!(code, 1);
    assert!(err.contains("AWS DynamoDB Query failed"), "{err}");
}

/// Production runs v2 after v0 and v1, all on S3 and recorded in the table.
fn production_with_three_versions(aws: &ferry_aws::Aws, dir: &Path) -> (DynamoLedger, S3Deployer) {
    std::fs::write(dir.join("ferry.yml"), PIPELINE).unwrap();
    let ledger = DynamoLedger::new(aws, "ferry-deployments");
    ledger.create_table().unwrap();
    common::create_bucket(aws, "site");
    common::create_bucket(aws, "artifacts");
    let s3 = S3Deployer::new(aws, "site", "production");
    for (start, v) in [(500, "v0"), (1_000, "v1"), (2_000, "v2")] {
        common::put(
            aws,
            "artifacts",
            &format!("{v}.tar"),
            format!("release {v}").as_bytes(),
        );
        deploy(&s3, v, &site(dir, v));
        let mut d = deployment("production", start, v, DeploymentStatus::Succeeded);
        d.artifact_location = format!("s3://artifacts/{v}.tar");
        d.artifact_digest = common::sha256(format!("release {v}").as_bytes());
        ledger.record_deployment(&d).unwrap();
    }
    (ledger, s3)
}

#[test]
fn two_lambdas_handling_the_same_alarm_at_once_roll_back_once() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let dir = tempfile::tempdir().unwrap();
    let (ledger, s3) = production_with_three_versions(&aws, dir.path());
    // The two processes reach moto through the proxy, which counts their S3 writes.
    let proxy = Proxy::start(&moto.endpoint);
    let world = World {
        endpoint: proxy.endpoint.clone(),
        _moto: moto,
        dir,
        topic: String::new(),
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| world.invoke("alarm"));
        let b = s.spawn(|| world.invoke("alarm"));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (code, out, err) in [&a, &b] {
        assert_eq!(*code, 0, "{err}");
        assert_eq!(out["action"], "rollback", "{out}\n{err}");
        assert_eq!(out["rollback"]["status"], "succeeded", "{out}\n{err}");
        assert_eq!(out["rollback"]["to_version"], "v1", "{out}");
    }
    assert_eq!(
        rollback_metric_lines(&a.2) + rollback_metric_lines(&b.2),
        1,
        "counted once"
    );
    // The loser reports the winner's rollback: the same record, holder and start.
    assert_eq!(a.1["rollback"], b.1["rollback"]);
    // Exactly one rollback: the pointer written once, production on v1 (not v0), one
    // record, for v2's deployment only.
    assert_eq!(
        proxy.seen("PUT /site/production/current"),
        1,
        "{:?}",
        proxy.calls()
    );
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v1"));
    assert!(ledger.rollback("production#2000").unwrap().is_some());
    assert!(ledger.rollback("production#1000").unwrap().is_none());
    let statuses: Vec<(String, DeploymentStatus)> = ledger
        .deployments(Some("production"), 10)
        .unwrap()
        .into_iter()
        .map(|d| (d.version, d.status))
        .collect();
    assert!(
        statuses.contains(&("v2".into(), DeploymentStatus::RolledBack))
            && statuses.contains(&("v1".into(), DeploymentStatus::Succeeded)),
        "{statuses:?}"
    );
}

fn event(name: &str) -> Value {
    let path = format!("{}/tests/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn handler(aws: &ferry_aws::Aws, dir: &Path) -> Handler {
    let cfg = LambdaConfig {
        config: dir.join("ferry.yml"),
        table: "ferry-deployments".into(),
        bucket: None,
        topic_arn: None,
        pipeline: Some("shop".into()),
        work: dir.join("work"),
    };
    Handler::new(aws, &cfg).unwrap()
}

#[test]
fn the_handler_succeeds_on_a_bad_shape_and_fails_on_a_good_event_it_cannot_handle() {
    let moto = common::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, s3) = production_with_three_versions(&moto.aws(), dir.path());
    let proxy = Proxy::start(&moto.endpoint);
    let aws = ferry_aws::Aws::connect(&proxy.settings(2)).unwrap();
    let h = handler(&aws, dir.path());

    // An unexpected shape: dropped with its id, and success (no retry, no DLQ) — even
    // while DynamoDB throttles everything, since nothing of it is read.
    proxy.fail_always("DynamoDB_20120810.", Answer::DynamoThrottle);
    let out = h.handle(&event("unexpected")).unwrap();
    assert!(
        matches!(&out.action, Action::Drop { event_id, .. } if event_id == "odd-1"),
        "{:?}",
        out.action
    );
    assert!(out.rollback.is_none());
    assert_eq!(proxy.seen("DynamoDB_20120810."), 0);

    // A good ALARM while DynamoDB throttles past the attempts: an error naming the call,
    // so Lambda retries the invocation and then hands the event to the DLQ.
    let e = h.handle(&event("alarm")).unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Transient, "{}", e.message);
    assert!(
        e.message
            .starts_with("AWS DynamoDB Query failed: throttled"),
        "{}",
        e.message
    );
    assert_eq!(proxy.seen("DynamoDB_20120810.Query"), 2);
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v2"));

    // DynamoDB unreachable: an error too, naming the endpoint.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = ferry_aws::Aws::connect(&ferry_aws::Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..proxy.settings(2)
    })
    .unwrap();
    let h = handler(&closed, dir.path());
    assert!(matches!(
        h.handle(&event("unexpected")).unwrap().action,
        Action::Drop { .. }
    ));
    let e = h.handle(&event("alarm")).unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Transient, "{}", e.message);
    assert!(
        e.message
            .contains(&format!("cannot reach http://127.0.0.1:{port}")),
        "{}",
        e.message
    );

    // Once DynamoDB answers again, the retried event rolls production back.
    proxy.reset();
    let h = handler(&aws, dir.path());
    let out = h.handle(&event("alarm")).unwrap();
    assert_eq!(
        out.rollback.map(|r| r.to_version),
        Some(Some("v1".to_string()))
    );
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v1"));
}

#[test]
fn a_bundled_file_of_another_pipeline_is_refused() {
    let moto = common::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferry.yml"), PIPELINE).unwrap();
    let cfg = LambdaConfig {
        config: dir.path().join("ferry.yml"),
        table: "t".into(),
        bucket: None,
        topic_arn: None,
        pipeline: Some("billing".into()),
        work: dir.path().join("work"),
    };
    let e = Handler::new(&moto.aws(), &cfg).err().unwrap();
    assert_eq!(e.kind, PortErrorKind::Unavailable);
    assert!(
        e.message
            .contains("is pipeline `shop`, but the stack was synthesized for `billing`"),
        "{}",
        e.message
    );
}

/// The `RollbackCount` metric lines a Lambda logged (the stack's metric filter matches
/// `{ $.metric = "RollbackCount" }`).
fn rollback_metric_lines(log: &str) -> usize {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["metric"] == lambda_env::ROLLBACK_METRIC && v["value"] == 1)
        .count()
}

#[test]
fn an_alarm_older_than_the_current_deployment_rolls_nothing_back() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferry.yml"), PIPELINE).unwrap();
    let ledger = DynamoLedger::new(&aws, "ferry-deployments");
    ledger.create_table().unwrap();
    // v2 was deployed after the alarm changed state (2019-10-02T17:04:40.989Z).
    for (start, v) in [(1_000, "v1"), (1_600_000_000_000, "v2")] {
        ledger
            .record_deployment(&deployment(
                "production",
                start,
                v,
                DeploymentStatus::Succeeded,
            ))
            .unwrap();
    }
    let out = handler(&aws, dir.path()).handle(&event("alarm")).unwrap();
    match &out.action {
        Action::Nothing { why, .. } => assert!(why.contains("before v2"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(out.rollback.is_none());
    assert!(
        ledger
            .rollback("production#1600000000000")
            .unwrap()
            .is_none()
    );
}

/// Production deploys with `cloudformation:` (staging with `s3:` into its own bucket).
const CFN_PIPELINE: &str = r#"
pipeline: shop
build:
  steps:
    - name: build
      run: ./build.sh
  artifact: dist
environments:
  - name: staging
    deploy:
      s3: {bucket: shop-staging-site}
  - name: production
    deploy:
      cloudformation:
        stack: shop-production
        template: out/stack.json
        bucket: shop-templates
rollback:
  validate:
    stabilize: 0s
"#;

#[test]
fn an_alarm_event_puts_back_the_earlier_cloudformation_template() {
    use ferry_aws::cloudformation::CloudFormationDeployer;
    let moto = common::Moto::start();
    let aws = moto.aws();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferry.yml"), CFN_PIPELINE).unwrap();
    let pipeline = ferry_config::parse(CFN_PIPELINE, "ferry.yml").unwrap();
    let Some(ferry_config::Deploy::CloudFormation(spec)) =
        pipeline.environment("production").map(|e| e.deploy.clone())
    else {
        panic!("production deploys with cloudformation")
    };
    let ledger = DynamoLedger::new(&aws, "ferry-deployments");
    ledger.create_table().unwrap();
    common::create_bucket(&aws, "site");
    common::create_bucket(&aws, "artifacts");
    common::put(&aws, "artifacts", "v1.tar", b"release v1");
    common::put(&aws, "artifacts", "v2.tar", b"release v2");
    let cfn = CloudFormationDeployer::new(&aws, "production", &spec)
        .with_poll_interval(Duration::from_millis(50));
    cfn.create_bucket().unwrap();

    // v1 (a queue) then v2 (a queue and a topic) deployed and recorded; v2 runs.
    let v1 = serde_json::json!({ "Resources": {
        "Orders": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": "orders" } }
    }});
    let mut v2 = v1.clone();
    v2["Resources"]["Events"] =
        serde_json::json!({ "Type": "AWS::SNS::Topic", "Properties": { "TopicName": "events" } });
    for (start, v, template) in [(1_000, "v1", &v1), (2_000, "v2", &v2)] {
        let checkout = dir.path().join("checkouts").join(v);
        std::fs::create_dir_all(checkout.join("out")).unwrap();
        std::fs::write(checkout.join("out/stack.json"), template.to_string()).unwrap();
        cfn.deploy(&DeployRequest {
            environment: "production".into(),
            version: v.into(),
            artifact: Artifact {
                digest: String::new(),
                location: format!("s3://artifacts/{v}.tar"),
                size: 0,
            },
            env: Default::default(),
            cwd: checkout.clone(),
            log: checkout.join("log"),
        })
        .unwrap();
        let mut d = deployment("production", start, v, DeploymentStatus::Succeeded);
        d.artifact_location = format!("s3://artifacts/{v}.tar");
        d.artifact_digest = common::sha256(format!("release {v}").as_bytes());
        ledger.record_deployment(&d).unwrap();
    }
    let cf = aws_sdk_cloudformation::Client::new(aws.config());
    let running = || -> Value {
        let out = aws
            .block_on(cf.get_template().stack_name("shop-production").send())
            .unwrap();
        serde_json::from_str(out.template_body().unwrap()).unwrap()
    };
    assert_eq!(running(), v2);
    let world = World {
        endpoint: moto.endpoint.clone(),
        _moto: moto,
        dir,
        topic: String::new(),
    };

    // ALARM of shop-production-errors: the Lambda deploys v1's kept template.
    let (code, out, err) = world.invoke("alarm");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["rollback"]["status"], "succeeded", "{out}\n{err}");
    assert_eq!(out["rollback"]["to_version"], "v1", "{out}");
    assert_eq!(running(), v1);
    assert_eq!(cfn.current_version().unwrap().as_deref(), Some("v1"));
}

/// `release:` and `command:` environments deploy on the machine that runs `ferry step`:
/// the Lambda redeploys nothing there (and writes nothing to any bucket), records the
/// rollback `not_performed` with the reason naming `ferry rollback ENV`, logs it as an
/// error, and publishes a `rollback_failed` event to SNS. The same alarm again repeats
/// nothing.
#[test]
fn a_machine_bound_environment_is_not_rolled_back_by_the_lambda() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let dir = tempfile::tempdir().unwrap();
    let text = PIPELINE.replace(
        "  - name: production\n    deploy:\n      s3: {bucket: site}\n",
        "  - name: production\n    deploy:\n      command:\n        run: ./deploy.sh production\n",
    );
    assert!(text.contains("./deploy.sh production"), "{text}");
    std::fs::write(dir.path().join("ferry.yml"), &text).unwrap();
    let ledger = DynamoLedger::new(&aws, "ferry-deployments");
    ledger.create_table().unwrap();
    common::create_bucket(&aws, "site");
    for (start, v) in [(1_000, "v1"), (2_000, "v2")] {
        ledger
            .record_deployment(&deployment(
                "production",
                start,
                v,
                DeploymentStatus::Succeeded,
            ))
            .unwrap();
    }
    let sns = aws_sdk_sns::Client::new(aws.config());
    let topic = aws
        .block_on(sns.create_topic().name("ferry-rollbacks").send())
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let (url, notes) = common::http_subscriber();
    aws.block_on(
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("http")
            .endpoint(&url)
            .attributes("FilterPolicy", r#"{"event": ["rollback_failed"]}"#)
            .send(),
    )
    .unwrap();
    let world = World {
        endpoint: moto.endpoint.clone(),
        _moto: moto,
        dir,
        topic,
    };

    let (code, out, err) = world.invoke("alarm");
    assert_eq!(code, 0, "not an error for the dead-letter queue: {err}");
    assert_eq!(out["action"], "rollback", "{out}");
    assert_eq!(out["rollback"]["status"], "not_performed", "{out}\n{err}");
    let why = "environment production deploys with `command:`, which runs on a machine; the Lambda rolls back `s3:` and `cloudformation:` environments — use `ferry rollback production` on that machine";
    assert!(
        out["rollback"]["detail"]
            .to_string()
            .contains("ferry rollback production"),
        "{out}"
    );
    assert!(err.contains(why), "logged: {err}");
    assert!(err.contains(r#""level":"error""#), "as an error: {err}");
    assert_eq!(
        rollback_metric_lines(&err),
        0,
        "not counted as a rollback: {err}"
    );
    let rec = ledger.rollback("production#2000").unwrap().unwrap();
    assert_eq!(
        rec.status,
        ferry_core::rollback::RollbackStatus::NotPerformed
    );
    assert!(rec.detail.iter().any(|d| d == why), "{rec:?}");
    // Nothing redeployed, nothing marked rolled back, nothing written to the bucket.
    assert_eq!(
        ledger
            .current_deployment("production")
            .unwrap()
            .map(|d| d.version),
        Some("v2".to_string())
    );
    assert_eq!(
        S3Deployer::new(&aws, "site", "production")
            .current_version()
            .unwrap(),
        None
    );
    let note = notes
        .recv_timeout(Duration::from_secs(20))
        .expect("SNS publish of rollback_failed");
    let message = note["Message"].as_str().unwrap();
    assert!(message.contains("ferry rollback production"), "{note}");

    // The same alarm again: the recorded refusal is reported, nothing is repeated.
    let (code, again, err) = world.invoke("alarm");
    assert_eq!(code, 0, "{err}");
    assert_eq!(again["rollback"], out["rollback"], "{again}");
    assert!(!err.contains(r#""level":"error""#), "{err}");
}

/// An invocation the Lambda service stopped mid-rollback (its 15-minute limit, a crash)
/// leaves the environment's lease and an in-progress rollback claim. Its retry (a new
/// request id) sees the first one's deadline has passed and finishes the rollback in
/// its place, instead of waiting for the lease to expire and then reporting the claim.
#[test]
fn the_retry_of_an_invocation_stopped_mid_rollback_finishes_it() {
    use ferry_core::Timestamp;
    use ferry_core::rollback::RollbackStatus;
    use ferry_engine::ports::Lease;
    let moto = common::Moto::start();
    let aws = moto.aws();
    let dir = tempfile::tempdir().unwrap();
    let (ledger, s3) = production_with_three_versions(&aws, dir.path());
    let now = now_ms();
    // The stopped invocation: its deadline a minute ago, its lease still valid for ten.
    let (bad, gone) = stopped_claim(&ledger, now);
    let lease = Lease {
        environment: "production".into(),
        run: RunId(-7),
        holder: gone.clone(),
        expires_at: Timestamp(now + 600_000),
    };
    ledger
        .acquire_lease(&lease, Timestamp(now - 900_000))
        .unwrap()
        .unwrap();

    let retry = Invocation {
        request_id: "second-attempt".into(),
        deadline: Some(Timestamp(now + 900_000)),
    };
    let out = handler(&aws, dir.path())
        .handle_invocation(&event("alarm"), &retry)
        .unwrap();
    let rec = out.rollback.expect("the retry's rollback");
    assert_eq!(rec.status, RollbackStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.to_version.as_deref(), Some("v1"));
    assert_eq!(rec.holder, retry.holder());
    assert!(
        rec.detail
            .iter()
            .any(|d| d.contains("taken over from lambda:first-attempt")),
        "{:?}",
        rec.detail
    );
    // Production is on v1, the record says so, and no lease is left behind.
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v1"));
    let stored = ledger.rollback(&bad.deployment_id).unwrap().unwrap();
    assert_eq!(stored.status, RollbackStatus::Succeeded);
    let next = Lease {
        environment: "production".into(),
        run: RunId(9),
        holder: "next".into(),
        expires_at: Timestamp(now + 1_000),
    };
    assert!(
        ledger.acquire_lease(&next, Timestamp(now)).unwrap().is_ok(),
        "the lease was let go"
    );
}

#[test]
fn invocations_hold_leases_under_their_own_ids() {
    let a = Invocation {
        request_id: "5a1c7f0e-1".into(),
        deadline: None,
    };
    let b = Invocation {
        request_id: "5a1c7f0e-2".into(),
        deadline: None,
    };
    // Same process id in every sandbox, but never the same lease run.
    assert_ne!(a.lease_run(), b.lease_run());
    assert!(a.lease_run().0 < 0 && b.lease_run().0 < 0);
    assert_eq!(a.lease_run(), a.clone().lease_run());
    assert_eq!(a.holder(), "lambda:5a1c7f0e-1");
}

/// The claim on v2's rollback an invocation left `in_progress` when the Lambda service
/// stopped it (its deadline a minute before `now`): v2's record and that holder.
fn stopped_claim(ledger: &DynamoLedger, now: i64) -> (ferry_core::DeploymentRecord, String) {
    use ferry_core::Timestamp;
    use ferry_core::rollback::{RollbackRecord, Trigger};
    let gone = ferry_engine::ports::holder_until("lambda:first-attempt", Timestamp(now - 60_000));
    let bad = ledger
        .deployments(Some("production"), 10)
        .unwrap()
        .into_iter()
        .find(|d| d.version == "v2")
        .unwrap();
    let claim = RollbackRecord::start(
        &bad,
        "alarm shop-production-errors: Threshold Crossed",
        Trigger::Alarm {
            name: "shop-production-errors".into(),
        },
        &gone,
        Timestamp(now - 120_000),
    );
    ledger.claim_rollback(&claim).unwrap().unwrap();
    (bad, gone)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A claim on v2's rollback left `in_progress` by an invocation past its deadline, v2
/// recorded as rolled back with `reason`, and what a retry of the alarm makes of it.
/// The bucket's pointer is left on v2: the retry must not touch it.
fn retry_over_a_left_open_claim(
    reason: &str,
) -> (ferry_core::rollback::RollbackRecord, Option<String>) {
    use ferry_core::{Change, RollbackLevel, Timestamp};
    let moto = common::Moto::start();
    let aws = moto.aws();
    let dir = tempfile::tempdir().unwrap();
    let (ledger, s3) = production_with_three_versions(&aws, dir.path());
    let now = now_ms();
    let (bad, _) = stopped_claim(&ledger, now);
    ledger
        .record_rollback(
            bad.run_id,
            &[Change::DeploymentRolledBack {
                deployment_id: bad.deployment_id.clone(),
                reason: reason.into(),
                level: RollbackLevel::Stage,
                at: Timestamp(now - 90_000),
            }],
        )
        .unwrap();
    let retry = Invocation {
        request_id: "second-attempt".into(),
        deadline: Some(Timestamp(now + 900_000)),
    };
    let out = handler(&aws, dir.path())
        .handle_invocation(&event("alarm"), &retry)
        .unwrap();
    let rec = out.rollback.expect("the record");
    let stored = ledger.rollback(&bad.deployment_id).unwrap().unwrap();
    assert_eq!(
        stored, rec,
        "what the retry returns is what the table holds"
    );
    (rec, s3.current_version().unwrap())
}

/// The invocation stopped after recording that v2 was rolled back but before closing
/// its rollback record: the retry closes the record (succeeded, to what production runs
/// now) and redeploys nothing, instead of returning the record still `in_progress`.
#[test]
fn the_retry_closes_a_rollback_recorded_but_left_open_without_redeploying() {
    use ferry_core::RollbackLevel;
    use ferry_core::rollback::RollbackStatus;
    let (rec, pointer) =
        retry_over_a_left_open_claim("alarm shop-production-errors: Threshold Crossed");
    assert_eq!(rec.status, RollbackStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.level, Some(RollbackLevel::Stage));
    assert_eq!(rec.to_version.as_deref(), Some("v1"));
    assert!(
        rec.holder.starts_with("lambda:second-attempt/until="),
        "{}",
        rec.holder
    );
    assert!(
        rec.detail
            .iter()
            .any(|d| d.contains("stopped after the rollback was recorded")),
        "{:?}",
        rec.detail
    );
    assert_eq!(pointer.as_deref(), Some("v2"), "nothing redeployed");
}

/// The same, but v2 was taken back since by another rollback (a person's): the stopped
/// claim is closed as nothing to do, saying so, not as a success of its own.
#[test]
fn a_claim_left_open_while_another_rollback_took_the_deployment_back_is_closed_as_such() {
    use ferry_core::rollback::RollbackStatus;
    let (rec, pointer) = retry_over_a_left_open_claim("manual rollback by ada");
    assert_eq!(rec.status, RollbackStatus::NothingToDo, "{rec:?}");
    assert!(
        rec.detail
            .iter()
            .any(|d| d
                .contains("rolled back meanwhile by another rollback (manual rollback by ada)")),
        "{:?}",
        rec.detail
    );
    assert_eq!(pointer.as_deref(), Some("v2"), "nothing redeployed");
}

/// An invocation that fails mid-rollback (DynamoDB refusing its writes) returns the
/// error, so Lambda retries the event, and hands its claim over: the retry takes the
/// rollback over at once (not after the first invocation's deadline) and finishes it.
#[test]
fn an_invocation_that_fails_mid_rollback_hands_it_to_the_retry() {
    use ferry_core::Timestamp;
    use ferry_core::rollback::RollbackStatus;
    let moto = common::Moto::start();
    let direct = moto.aws();
    let dir = tempfile::tempdir().unwrap();
    let (ledger, s3) = production_with_three_versions(&direct, dir.path());
    let proxy = Proxy::start(&moto.endpoint);
    let aws = ferry_aws::Aws::connect(&proxy.settings(2)).unwrap();
    proxy.fail_always(
        "DynamoDB_20120810.TransactWriteItems",
        Answer::DynamoThrottle,
    );
    let now = now_ms();
    let first = Invocation {
        request_id: "first-attempt".into(),
        // Still minutes before its deadline when it fails.
        deadline: Some(Timestamp(now + 600_000)),
    };
    let e = handler(&aws, dir.path())
        .handle_invocation(&event("alarm"), &first)
        .unwrap_err();
    assert!(e.message.contains("TransactWriteItems"), "{e}");
    let claim = ledger
        .rollback("production#2000")
        .unwrap()
        .expect("the claim");
    assert_eq!(claim.status, RollbackStatus::InProgress);
    assert!(
        claim.holder.starts_with("lambda:first-attempt/until="),
        "{claim:?}"
    );
    assert_eq!(
        ferry_engine::ports::alive_by_deadline(&claim.holder, Timestamp(now_ms())),
        Some(false),
        "handed over: already past its deadline"
    );
    assert!(
        claim.detail.iter().any(|d| d.contains("left to the retry")),
        "{claim:?}"
    );

    proxy.reset();
    // Lambda retries an asynchronous invocation under the same request id, with a
    // deadline of its own.
    let retry = Invocation {
        request_id: "first-attempt".into(),
        deadline: Some(Timestamp(now + 900_000)),
    };
    let out = handler(&aws, dir.path())
        .handle_invocation(&event("alarm"), &retry)
        .unwrap();
    let rec = out.rollback.expect("the retry's rollback");
    assert_eq!(rec.status, RollbackStatus::Succeeded, "{rec:?}");
    assert_eq!(rec.to_version.as_deref(), Some("v1"));
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v1"));
}
