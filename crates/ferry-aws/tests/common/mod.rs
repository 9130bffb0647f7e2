//! moto's server for the tests: started on a free loopback port, killed on drop.
#![allow(dead_code, clippy::unwrap_used)]

use ferry_aws::{Aws, Settings};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `moto_server`; killed (by its pid) when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Moto {
    /// Starts moto from `target/aws-venv` (made by `.ci/aws-setup`); panics with the
    /// setup command when it is missing.
    pub fn start() -> Moto {
        let bin = workspace().join("target/aws-venv/bin/moto_server");
        assert!(
            bin.exists(),
            "moto is not installed at {}: run `.ci/aws-setup` (python3 -m venv target/aws-venv && target/aws-venv/bin/pip install 'moto[server]' cfn-lint)",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The settings that reach this server.
    pub fn settings(&self) -> Settings {
        Settings {
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint.clone()),
            credentials: Some(("testing".into(), "testing".into())),
            max_attempts: Some(2),
        }
    }

    pub fn aws(&self) -> Aws {
        Aws::connect(&self.settings()).unwrap()
    }
}

fn s3(aws: &Aws) -> aws_sdk_s3::Client {
    let cfg = aws_sdk_s3::config::Builder::from(aws.config())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(cfg)
}

/// Creates a bucket (test setup).
pub fn create_bucket(aws: &Aws, bucket: &str) {
    let c = s3(aws);
    aws.block_on(c.create_bucket().bucket(bucket).send())
        .unwrap();
}

/// An object's text.
pub fn get(aws: &Aws, bucket: &str, key: &str) -> String {
    let c = s3(aws);
    let out = aws
        .block_on(c.get_object().bucket(bucket).key(key).send())
        .unwrap();
    let bytes = aws.block_on(out.body.collect()).unwrap().into_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}
