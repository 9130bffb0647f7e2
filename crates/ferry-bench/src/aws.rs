//! The AWS path's time to recovery against moto's server (feature `aws`): an alarm event
//! in (`ferry-lambda invoke`, process start included) → the previous S3 version live and
//! the DynamoDB record updated; and the Lambda binary's cold start, process start → first
//! handled event (an `OK` event, which reads the pipeline file, connects, routes and
//! answers).

use crate::{median, ms};
use ferry_aws::ledger::DynamoLedger;
use ferry_aws::s3::S3Deployer;
use ferry_aws::{Aws, Settings};
use ferry_core::{Artifact, DeploymentRecord, DeploymentStatus, RunId};
use ferry_engine::ports::{DeployRequest, Deployer, Ledger};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ALARM: &str = include_str!("../../ferry-aws/tests/events/alarm.json");
const OK: &str = include_str!("../../ferry-aws/tests/events/ok.json");
const PIPELINE: &str = "pipeline: shop
build:
  steps:
    - name: build
      run: ./build.sh
  artifact: dist
environments:
  - name: production
    deploy:
      s3: {bucket: site}
rollback:
  validate:
    stabilize: 0s
";

struct Moto(Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A deployment of `version`, its artifact kept at `s3://artifacts/<version>.tar` with
/// `digest` (the rollback checks it before putting the version back).
fn record(start: i64, version: &str, digest: &str) -> DeploymentRecord {
    DeploymentRecord {
        deployment_id: format!("production#{start}"),
        environment: "production".into(),
        version: version.into(),
        status: DeploymentStatus::Succeeded,
        start_time: start,
        end_time: Some(start + 1),
        infrastructure_changed: false,
        commit_message: String::new(),
        commit_author: String::new(),
        pipeline_execution_id: String::new(),
        unit_tests_passed: true,
        integration_tests_passed: true,
        e2e_tests_passed: true,
        coverage_percentage: 0.0,
        rollback_reason: None,
        rollback_level: None,
        rollback_time: None,
        artifact_location: format!("s3://artifacts/{version}.tar"),
        expires_at: 0,
        run_id: RunId(-1),
        artifact_digest: digest.into(),
        previous_version: None,
        config_digest: None,
        template_digests: Default::default(),
        rollback_unsafe: false,
        rollback_unsafe_reason: None,
    }
}

fn deploy(d: &S3Deployer, version: &str, dir: &Path) -> Result<(), String> {
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
    .map_err(|e| e.message)
}

fn invoke(
    lambda: &Path,
    event: &Path,
    endpoint: &str,
    dir: &Path,
    table: &str,
) -> Result<(Duration, String), String> {
    let start = Instant::now();
    let out = Command::new(lambda)
        .args(["invoke", &event.display().to_string()])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("FERRY_CONFIG", dir.join("ferry.yml"))
        .env("FERRY_DEPLOYMENTS_TABLE", table)
        .env("FERRY_DEPLOY_BUCKET", "site")
        .env("TMPDIR", dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", lambda.display()))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "ferry-lambda failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((took, String::from_utf8_lossy(&out.stdout).to_string()))
}

pub fn run(args: Vec<String>, lambda: PathBuf) -> Result<(), String> {
    let mut iterations = 10usize;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--iterations" => {
                iterations = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--iterations needs a number")?
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let moto_bin = root.join("target/aws-venv/bin/moto_server");
    if !moto_bin.exists() {
        return Err("moto is not installed: run .ci/aws-setup".into());
    }
    if !lambda.exists() {
        return Err(format!(
            "{} is missing: cargo build --release -p ferry-aws --features aws --bin ferry-lambda",
            lambda.display()
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let _moto = Moto(
        Command::new(&moto_bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let wait = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if wait.elapsed() > Duration::from_secs(60) {
            return Err("moto did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws = Aws::connect(&Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.clone()),
        credentials: Some(("testing".into(), "testing".into())),
        max_attempts: None,
    })
    .map_err(|e| e.message)?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    std::fs::write(dir.join("ferry.yml"), PIPELINE).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("alarm.json"), ALARM).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("ok.json"), OK).map_err(|e| e.to_string())?;
    for v in ["v1", "v2"] {
        std::fs::create_dir_all(dir.join(v)).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(v).join("index.html"), v).map_err(|e| e.to_string())?;
    }
    let s3 = S3Deployer::new(&aws, "site", "production");
    s3.create_bucket().map_err(|e| e.message)?;
    // The releases' artifacts, where `ferry step build/@artifact` keeps them.
    S3Deployer::new(&aws, "artifacts", "unused")
        .create_bucket()
        .map_err(|e| e.message)?;
    let mut digests = std::collections::BTreeMap::new();
    for v in ["v1", "v2"] {
        let tar = dir.join(format!("{v}.tar"));
        let bytes = format!("release {v}");
        std::fs::write(&tar, &bytes).map_err(|e| e.to_string())?;
        ferry_aws::objects::upload(&aws, "artifacts", &format!("{v}.tar"), &tar)
            .map_err(|e| e.message)?;
        use sha2::Digest;
        let digest = format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(bytes.as_bytes()))
        );
        digests.insert(v, digest);
    }
    let (mut cold, mut recovery) = (Vec::new(), Vec::new());
    for i in 0..iterations {
        let table = format!("bench-{i}");
        let ledger = DynamoLedger::new(&aws, &table);
        ledger.create_table().map_err(|e| e.message)?;
        deploy(&s3, "v1", &dir.join("v1"))?;
        deploy(&s3, "v2", &dir.join("v2"))?;
        for (start, v) in [(1_000, "v1"), (2_000, "v2")] {
            ledger
                .record_deployment(&record(start, v, &digests[v]))
                .map_err(|e| e.message)?;
        }
        let (t, _) = invoke(&lambda, &dir.join("ok.json"), &endpoint, dir, &table)?;
        cold.push(t);
        let (t, out) = invoke(&lambda, &dir.join("alarm.json"), &endpoint, dir, &table)?;
        let live = s3.current_version().map_err(|e| e.message)?;
        let bad = ledger
            .latest_deployment("production")
            .map_err(|e| e.message)?;
        if live.as_deref() != Some("v1")
            || bad.map(|d| d.status) != Some(DeploymentStatus::RolledBack)
        {
            return Err(format!("iteration {i}: not rolled back: {out}"));
        }
        recovery.push(t);
    }
    let max = |v: &[Duration]| ms(v.iter().copied().max().unwrap_or_default());
    let (cold_max, recovery_max) = (max(&cold), max(&recovery));
    println!("aws (moto, {iterations} iterations):");
    println!(
        "  cold start, process start → first handled event: median {:.1} ms, max {cold_max:.1} ms",
        ms(median(&mut cold))
    );
    println!(
        "  alarm event in → previous S3 version live, record updated: median {:.1} ms, max {recovery_max:.1} ms",
        ms(median(&mut recovery))
    );
    Ok(())
}
