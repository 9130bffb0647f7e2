//! The rollback Lambda end to end on moto: `ferry-lambda invoke EVENT.json` (the same
//! handler the Lambda runtime calls) on the AWS-documented alarm events, leading to a
//! real rollback of an S3-deployed version, the DynamoDB record updated and an SNS
//! publish.
#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used)]

mod common;

use ferry_aws::ledger::DynamoLedger;
use ferry_aws::s3::S3Deployer;
use ferry_core::{Artifact, DeploymentStatus};
use ferry_engine::ports::{DeployRequest, Deployer, Ledger};
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
      command:
        run: ./deploy.sh staging
  - name: production
    deploy:
      command:
        run: ./deploy.sh production
rollback:
  validate:
    stabilize: 0s
"#;

struct World {
    moto: common::Moto,
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
            .env("AWS_ENDPOINT_URL", &self.moto.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.path().join("none"))
            .env("FERRY_CONFIG", self.dir.path().join("ferry.yml"))
            .env("FERRY_TABLE", "ferry-deployments")
            .env("FERRY_DEPLOY_BUCKET", "site")
            .env("FERRY_TOPIC_ARN", &self.topic)
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

    // v1 then v2 deployed to S3 and recorded; v2 runs.
    let s3 = S3Deployer::new(&aws, "site", "production");
    deploy(&s3, "v1", &site(dir.path(), "v1"));
    deploy(&s3, "v2", &site(dir.path(), "v2"));
    for (start, v) in [(1_000, "v1"), (2_000, "v2")] {
        let mut d = deployment("production", start, v, DeploymentStatus::Succeeded);
        d.artifact_location = format!("s3://artifacts/{v}.tar");
        d.artifact_digest = common::sha256(format!("release {v}").as_bytes());
        ledger.record_deployment(&d).unwrap();
    }
    let world = World { moto, dir, topic };

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

    // The composite alarm (triggered by shop-production-latency) is production's too;
    // v1 has nothing earlier to go back to: nothing is redeployed.
    let (code, out, err) = world.invoke("composite");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["action"], "rollback", "{out}");
    assert_eq!(out["rollback"]["status"], "nothing_to_do", "{out}");
    assert_eq!(s3.current_version().unwrap().as_deref(), Some("v1"));
}

#[test]
fn a_handling_failure_is_an_error_so_the_dead_letter_queue_gets_the_event() {
    let moto = common::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferry.yml"), PIPELINE).unwrap();
    // No table: the ALARM cannot be handled.
    let world = World {
        moto,
        dir,
        topic: String::new(),
    };
    let (code, _, err) = world.invoke("alarm");
    assert_eq!(code, 1);
    assert!(err.contains("AWS DynamoDB Query failed"), "{err}");
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
        moto,
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
