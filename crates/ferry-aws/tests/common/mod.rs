//! moto's server for the tests: started on a free loopback port, killed on drop.
#![allow(dead_code, clippy::unwrap_used)]

pub mod proxy;

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

/// Puts an object (test setup).
pub fn put(aws: &Aws, bucket: &str, key: &str, body: &[u8]) {
    let c = s3(aws);
    aws.block_on(
        c.put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body.to_vec()))
            .send(),
    )
    .unwrap();
}

/// `sha256:<hex>` of some bytes, computed by `sha256sum` (no hashing code in tests).
pub fn sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

/// Accepts HTTP POSTs on loopback; each JSON body that is an SNS `Notification` goes
/// down the channel.
pub fn http_subscriber() -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/sns", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                && v["Type"] == "Notification"
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    (url, rx)
}
