//! moto's server for the `ferry` binary's AWS tests (feature `aws`): started from
//! `target/aws-venv` (made by `.ci/aws-setup`) on a free loopback port, killed on drop.

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
