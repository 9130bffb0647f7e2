//! moto's server for the `ferry` binary's AWS tests (feature `aws`): started from
//! `target/aws-venv` (made by `.ci/aws-setup`) on a free loopback port, killed on drop;
//! the environment a `ferry` command needs to use it ([`aws_env`]), and an HTTP
//! subscriber of its SNS topics ([`http_subscriber`]).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `moto_server`; killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto; panics with the setup command when it is not installed.
pub fn start() -> Moto {
    let bin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/aws-venv/bin/moto_server");
    assert!(
        bin.exists(),
        "moto is not installed at {}: run `.ci/aws-setup`",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
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

/// Sets the environment of a `ferry` command on the AWS runtime against `moto`: the
/// deployments table, the artifacts bucket (removed when `None`), moto's endpoint, a
/// region and test credentials; and removes what the machine running the tests may have
/// set that would change what the command does (`AWS_PROFILE`, the SNS topics — a test
/// sets them after this —, `FERRY_COMMIT_SHA`, `FERRY_STEP_DIR`).
pub fn aws_env<'c>(
    c: &'c mut Command,
    moto: &Moto,
    table: &str,
    bucket: Option<&str>,
) -> &'c mut Command {
    c.env("FERRY_DEPLOYMENTS_TABLE", table)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("FERRY_DEPLOYMENTS_TOPIC")
        .env_remove("FERRY_ROLLBACKS_TOPIC")
        .env_remove("FERRY_COMMIT_SHA")
        .env_remove("FERRY_STEP_DIR");
    match bucket {
        Some(b) => c.env("FERRY_ARTIFACTS_BUCKET", b),
        None => c.env_remove("FERRY_ARTIFACTS_BUCKET"),
    }
}

/// The AWS SDK's settings for `moto` (what [`aws_env`] gives the `ferry` binary).
#[cfg(feature = "aws")]
pub fn connect(moto: &Moto) -> ferry_aws::Aws {
    ferry_aws::Aws::connect(&ferry_aws::Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(moto.endpoint.clone()),
        credentials: Some(("testing".into(), "testing".into())),
        max_attempts: Some(2),
    })
    .expect("aws")
}

/// An HTTP subscriber of an SNS topic on loopback: accepts POSTs; each JSON body that is
/// an SNS `Notification` goes down the channel. Returns its URL (subscribe it with
/// protocol `http`).
pub fn http_subscriber() -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/sns", listener.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let Ok(read) = stream.try_clone() else { break };
            let mut reader = BufReader::new(read);
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

/// The `event` of each SNS notification that arrives within 2 s of the previous one.
pub fn event_kinds(rx: &std::sync::mpsc::Receiver<serde_json::Value>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(v) = rx.recv_timeout(Duration::from_secs(2)) {
        let body: serde_json::Value =
            serde_json::from_str(v["Message"].as_str().unwrap_or("{}")).unwrap_or_default();
        out.push(body["event"].as_str().unwrap_or("?").to_string());
    }
    out
}
