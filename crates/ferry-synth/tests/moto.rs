//! The core and monitoring stacks deployed into moto's CloudFormation (moto's server
//! from PyPI, started here on a free loopback port, ended by its PID), then read back
//! through the AWS APIs with boto3: what moto supports was created as synthesized.
//! Found through `$FERRY_AWS_VENV` or `<workspace>/target/aws-venv`; the test fails
//! naming `.ci/aws-setup` when it is missing.
//!
//! moto accepts, but does not create, CodeBuild projects, CodePipeline pipelines and
//! CloudWatch alarms (see ECOSYSTEM.md), and it drops a Lambda's DeadLetterConfig and a
//! table's SSE description: those are checked by cfn-lint, the guard pack and the
//! snapshots instead. The pipeline stack is therefore not deployed here.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn venv() -> PathBuf {
    let v = std::env::var_os("FERRY_AWS_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/aws-venv"),
        PathBuf::from,
    );
    assert!(
        v.join("bin/moto_server").exists() && v.join("bin/python").exists(),
        "moto is missing in {}: run `.ci/aws-setup` at the workspace root",
        v.display()
    );
    v
}

/// moto's server; ended (by its PID) when dropped.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto(venv: &std::path::Path) -> (Moto, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(venv.join("bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (moto, format!("http://127.0.0.1:{port}"))
}

#[test]
fn core_and_monitoring_deploy_into_moto() {
    let venv = venv();
    let (_moto, endpoint) = start_moto(&venv);
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, t) in common::stacks(common::SEED, None) {
        let path = dir.path().join(ferry_synth::file_name(&name));
        std::fs::write(path, serde_json::to_string_pretty(&t).expect("json")).expect("write");
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/moto/deploy.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(&endpoint)
        .arg(dir.path())
        .args(["kiro-pipeline-core", "kiro-pipeline-monitoring"])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "deploy.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");

    for stack in ["core", "monitoring"] {
        assert_eq!(
            v[stack]["status"], "CREATE_COMPLETE",
            "{stack}: {:#}",
            v[stack]
        );
    }
    assert_eq!(v["table"]["billing"], "PAY_PER_REQUEST");
    assert_eq!(
        v["table"]["indexes"],
        serde_json::json!(["EnvironmentStatusIndex"])
    );
    assert_eq!(v["table"]["stream"], "NEW_AND_OLD_IMAGES");
    assert_eq!(v["key"]["rotation"], true);
    assert_eq!(v["log_groups"]["/ferry/kiro-pipeline/builds"], 90);
    assert_eq!(v["log_groups"]["/aws/lambda/kiro-pipeline-rollback"], 90);
    assert_eq!(
        v["topics"],
        serde_json::json!([
            "kiro-pipeline-approvals",
            "kiro-pipeline-deployments",
            "kiro-pipeline-rollbacks"
        ])
    );
    assert_eq!(v["function"]["runtime"], "provided.al2023");
    assert_eq!(v["function"]["handler"], "bootstrap");
    let function = v["monitoring"]["outputs"]["RollbackFunctionArn"].clone();
    for env in ["test", "staging", "production"] {
        let rule = &v["rules"][format!("kiro-pipeline-{env}-alarms")];
        assert_eq!(
            rule["targets"],
            serde_json::json!([function]),
            "{env}: {rule:#}"
        );
        assert_eq!(
            rule["pattern"]["detail"]["alarmName"][0]["prefix"],
            format!("kiro-pipeline-{env}-")
        );
        assert_eq!(rule["pattern"]["detail"]["state"]["value"][0], "ALARM");
    }
    assert!(
        v["queues"].as_array().is_some_and(|q| q.iter().any(|u| u
            .as_str()
            .is_some_and(|u| u.ends_with("/kiro-pipeline-rollback-dlq")))),
        "{:#}",
        v["queues"]
    );
}
