//! `CommandDeployer`: user deploy, rollback and current-version commands.
#![allow(clippy::unwrap_used)]

use ferry_config::CommandDeploy;
use ferry_core::Artifact;
use ferry_engine::ports::{DeployRequest, Deployer, PortErrorKind};
use ferry_local::CommandDeployer;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

fn cfg(run: &str) -> CommandDeploy {
    CommandDeploy {
        run: run.into(),
        rollback: None,
        current_version: None,
        timeout: None,
    }
}

fn request(dir: &Path, version: &str) -> DeployRequest {
    DeployRequest {
        environment: "staging".into(),
        version: version.into(),
        artifact: Artifact {
            digest: "sha256:00".into(),
            location: "unused".into(),
            size: 0,
        },
        env: BTreeMap::from([
            ("FERRY_VERSION".to_owned(), version.to_owned()),
            ("FERRY_ENV".to_owned(), "staging".to_owned()),
        ]),
        cwd: dir.to_path_buf(),
        log: dir.join("logs/deploy.log"),
    }
}

#[test]
fn deploy_runs_the_command_and_records_the_version() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join(".ferry/state");
    let c = cfg(
        r#"echo "deploying $FERRY_VERSION to $FERRY_ENV"; printf '%s' "$FERRY_VERSION" > deployed.txt"#,
    );
    let d = CommandDeployer::new(&c, "staging", tmp.path(), &state);
    assert_eq!(d.current_version().unwrap(), None);
    d.deploy(&request(tmp.path(), "abc123")).unwrap();
    assert_eq!(
        fs::read_to_string(tmp.path().join("deployed.txt")).unwrap(),
        "abc123"
    );
    assert_eq!(
        fs::read_to_string(state.join("staging.version"))
            .unwrap()
            .trim(),
        "abc123"
    );
    assert_eq!(d.current_version().unwrap().as_deref(), Some("abc123"));
    let log = fs::read_to_string(tmp.path().join("logs/deploy.log")).unwrap();
    assert!(log.contains("deploying abc123 to staging"), "{log}");
}

#[test]
fn the_current_version_command_wins_over_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    fs::write(tmp.path().join("live.txt"), "  v42 \n").unwrap();
    let mut c = cfg("true");
    c.current_version = Some("cat live.txt; echo noise >&2".into());
    let d = CommandDeployer::new(&c, "prod", tmp.path(), &state);
    d.deploy(&request(tmp.path(), "v1")).unwrap();
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v42"));
    fs::write(tmp.path().join("live.txt"), "").unwrap();
    assert_eq!(d.current_version().unwrap(), None);
    let mut c = cfg("true");
    c.current_version = Some("echo cluster unreachable >&2; exit 2".into());
    let d = CommandDeployer::new(&c, "prod", tmp.path(), &state);
    let e = d.current_version().unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Transient);
    assert!(e.message.contains("cluster unreachable"), "{e}");
}

#[test]
fn a_failing_deploy_is_a_permanent_error_naming_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let d = CommandDeployer::new(&cfg("echo oops; exit 4"), "test", tmp.path(), &state);
    let req = request(tmp.path(), "v1");
    let e = d.deploy(&req).unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Permanent);
    assert!(e.message.contains("status 4"), "{e}");
    assert!(e.message.contains(&req.log.display().to_string()), "{e}");
    assert_eq!(d.current_version().unwrap(), None);

    let mut c = cfg("sleep 10");
    c.timeout = Some(Duration::from_millis(300));
    let d = CommandDeployer::new(&c, "test", tmp.path(), &state);
    let e = d.deploy(&req).unwrap_err();
    assert!(e.message.contains("timed out"), "{e}");

    let d = CommandDeployer::new(&cfg("./deploy.sh"), "test", tmp.path(), &state);
    fs::write(tmp.path().join("deploy.sh"), "#!/bin/sh\n").unwrap();
    let e = d.deploy(&req).unwrap_err();
    assert!(e.message.contains("chmod +x"), "{e}");
}

#[test]
fn rollback_runs_the_rollback_command() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut c = cfg("true");
    c.rollback = Some(r#"printf '%s' "$FERRY_VERSION" > rolled.txt"#.into());
    let d = CommandDeployer::new(&c, "production", tmp.path(), &state);
    d.deploy(&request(tmp.path(), "v2")).unwrap();
    d.rollback("v1", &BTreeMap::new()).unwrap();
    assert_eq!(
        fs::read_to_string(tmp.path().join("rolled.txt")).unwrap(),
        "v1"
    );
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));

    let d = CommandDeployer::new(&cfg("true"), "production", tmp.path(), &state);
    let e = d.rollback("v1", &BTreeMap::new()).unwrap_err();
    assert!(e.message.contains("rollback"), "{e}");
}
