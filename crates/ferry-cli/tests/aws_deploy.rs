//! The `s3:` deploy kind through the real `ferry` binary. Built with the `aws` feature
//! (`cargo test -p ferry-cli --features aws --test aws_deploy`, as `.ci/run` does): a real
//! `ferry run` on a temporary git repository deploys into moto's S3 (started from
//! `target/aws-venv`, reached with `AWS_ENDPOINT_URL`), then a failing test step rolls S3
//! back. Built without it: an `s3:` environment is a clear error and nothing deploys.

mod support;

use support::{Repo, describe, stderr};

/// A pipeline that builds `dist/index.html` naming the commit, deploys it with `s3:` and
/// checks it (the check fails when the commit has a file `break`).
const PIPELINE: &str = r#"pipeline: site
build:
  steps:
    - name: build
      run: mkdir -p dist && echo "<h1>$FERRY_COMMIT_SHA</h1>" > dist/index.html
  artifact: dist
environments:
  - name: production
    deploy:
      s3: {bucket: site-releases}
    tests:
      - name: check
        run: test ! -f break
rollback:
  automatic: true
  validate:
    stabilize: 1s
    health_timeout: 5s
"#;

#[cfg(not(feature = "aws"))]
#[test]
fn an_s3_environment_without_aws_support_is_a_clear_error_and_deploys_nothing() {
    let repo = Repo::new();
    repo.write("ferry.yml", PIPELINE);
    repo.commit("site");
    let out = repo.ferry(&["run"]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let err = stderr(&out);
    let all = format!("{}{err}", support::stdout(&out));
    assert!(
        all.contains(
            "environment production deploys with `s3:`, which needs ferry built with AWS support"
        ),
        "{}",
        describe(&out)
    );
    assert!(all.contains("--features aws"), "{}", describe(&out));
}

#[cfg(feature = "aws")]
mod with_aws {
    use super::support::assert_code;
    use super::*;
    use ferry_aws::s3::S3Deployer;
    use ferry_aws::{Aws, Settings};
    use ferry_engine::ports::Deployer;
    use std::path::PathBuf;
    use std::process::Command;

    use super::support::moto::Moto;

    /// What these tests do with a moto server: the AWS environment that reaches it,
    /// an object's text, the S3 deployer of the environment under test.
    trait MotoExt {
        fn env(&self) -> Vec<(&'static str, String)>;
        fn object(&self, key: &str) -> String;
        fn deployer(&self) -> S3Deployer;
    }

    impl MotoExt for Moto {
        /// The standard AWS environment that reaches this server.
        fn env(&self) -> Vec<(&'static str, String)> {
            vec![
                ("AWS_ENDPOINT_URL", self.endpoint.clone()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ACCESS_KEY_ID", "testing".into()),
                ("AWS_SECRET_ACCESS_KEY", "testing".into()),
                ("AWS_EC2_METADATA_DISABLED", "true".into()),
                ("AWS_MAX_ATTEMPTS", "2".into()),
                // No profile of the machine's user is read.
                (
                    "AWS_CONFIG_FILE",
                    "/nonexistent/ferry-test-aws-config".into(),
                ),
                (
                    "AWS_SHARED_CREDENTIALS_FILE",
                    "/nonexistent/ferry-test-aws-credentials".into(),
                ),
                ("AWS_PROFILE", "default".into()),
            ]
        }

        /// An object of the bucket `site-releases`, read with boto3.
        fn object(&self, key: &str) -> String {
            let python =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/aws-venv/bin/python");
            let out = Command::new(python)
                .args([
                    "-c",
                    "import boto3, sys; c = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing'); sys.stdout.write(c.get_object(Bucket='site-releases', Key=sys.argv[2])['Body'].read().decode())",
                    &self.endpoint,
                    key,
                ])
                .output()
                .expect("run boto3");
            assert!(
                out.status.success(),
                "reading s3://site-releases/{key}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        fn deployer(&self) -> S3Deployer {
            let aws = Aws::connect(&Settings {
                region: Some("us-east-1".into()),
                endpoint: Some(self.endpoint.clone()),
                credentials: Some(("testing".into(), "testing".into())),
                max_attempts: Some(2),
            })
            .expect("connect to moto");
            S3Deployer::new(&aws, "site-releases", "production")
        }
    }

    fn run(repo: &Repo, moto: &Moto) -> std::process::Output {
        let env = moto.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        repo.ferry_env(&["run", "--json"], &pairs)
    }

    #[test]
    fn ferry_run_deploys_to_s3_and_a_failing_test_rolls_s3_back() {
        let moto = super::support::moto::start();
        let s3 = moto.deployer();
        s3.create_bucket().expect("create the bucket");
        let repo = Repo::new();
        repo.write("ferry.yml", PIPELINE);
        let a = repo.commit("site A");

        let out = run(&repo, &moto);
        assert_code(&out, 0, "the run of A");
        assert_eq!(
            s3.current_version().expect("current").as_deref(),
            Some(a.as_str()),
            "{}",
            describe(&out)
        );
        // The artifact's files, not its tar, are under the version's prefix (read with
        // boto3 from the same venv as moto).
        assert_eq!(
            moto.object(&format!("production/releases/{a}/index.html"))
                .trim(),
            format!("<h1>{a}</h1>")
        );

        // B fails its test in production: ferry points S3 back at A.
        repo.write("break", "");
        let b = repo.commit("site B, broken");
        let out = run(&repo, &moto);
        assert_code(&out, 1, "the run of B, whose test fails");
        assert_eq!(
            s3.current_version().expect("current").as_deref(),
            Some(a.as_str()),
            "B ({b}) was rolled back to A: {}",
            describe(&out)
        );
        let history = repo.history();
        let deployments = history["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let of_b = deployments
            .iter()
            .find(|d| d["version"] == b.as_str())
            .unwrap_or_else(|| panic!("no deployment of B: {history:#}"));
        assert_eq!(of_b["status"], "rolled_back", "{history:#}");
        assert!(!stderr(&out).contains("needs ferry built with AWS support"));
    }
}
