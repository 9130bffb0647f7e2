//! The S3 deployer on moto's S3: a versioned prefix per release, the `current` pointer,
//! rollback back to the previous version.
#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used)]

mod common;

use ferry_aws::s3::S3Deployer;
use ferry_core::Artifact;
use ferry_engine::ports::{DeployRequest, Deployer, PortErrorKind};
use std::path::Path;

fn request(env: &str, version: &str, location: &Path) -> DeployRequest {
    DeployRequest {
        environment: env.into(),
        version: version.into(),
        artifact: Artifact {
            digest: "sha256:aa".into(),
            location: location.display().to_string(),
            size: 0,
        },
        env: Default::default(),
        cwd: location.to_path_buf(),
        log: location.join("deploy.log"),
    }
}

fn site(root: &Path, version: &str) -> std::path::PathBuf {
    let dir = root.join(version);
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), format!("<h1>{version}</h1>")).unwrap();
    std::fs::write(dir.join("assets/app.js"), format!("// {version}")).unwrap();
    dir
}

#[test]
fn deploy_then_roll_back_to_the_previous_version() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    common::create_bucket(&aws, "site");
    let tmp = tempfile::tempdir().unwrap();
    let (v1, v2) = (site(tmp.path(), "v1"), site(tmp.path(), "v2"));
    let d = S3Deployer::new(&aws, "site", "production");
    assert_eq!(d.current_version().unwrap(), None);
    d.deploy(&request("production", "v1", &v1)).unwrap();
    d.deploy(&request("production", "v2", &v2)).unwrap();
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v2"));
    assert_eq!(
        common::get(&aws, "site", "production/releases/v2/assets/app.js"),
        "// v2"
    );
    // Deploying the current version again is a no-op that succeeds.
    d.deploy(&request("production", "v2", &v2)).unwrap();
    // Rollback points back at v1's prefix without uploading (its artifact may be gone).
    std::fs::remove_dir_all(&v1).unwrap();
    d.rollback(&request("production", "v1", &v1)).unwrap();
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));
    assert_eq!(
        common::get(&aws, "site", "production/releases/v1/index.html"),
        "<h1>v1</h1>"
    );
    // A version never uploaded whose artifact is gone: a clear error, nothing changed.
    let err = d
        .rollback(&request("production", "v0", &tmp.path().join("v0")))
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound, "{err}");
    assert!(
        err.message.contains("s3://site/production/releases/v0/"),
        "{err}"
    );
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));
    // Another environment's pointer is its own.
    let staging = S3Deployer::new(&aws, "site", "staging");
    assert_eq!(staging.current_version().unwrap(), None);
}

#[test]
fn a_missing_bucket_names_the_service_and_call() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let tmp = tempfile::tempdir().unwrap();
    let v1 = site(tmp.path(), "v1");
    let err = S3Deployer::new(&aws, "nope", "production")
        .deploy(&request("production", "v1", &v1))
        .unwrap_err();
    assert!(err.message.contains("AWS S3 GetObject failed"), "{err}");
}
