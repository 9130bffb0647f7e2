//! `ferry serve` as a child process and a small HTTP client for it: signed GitHub
//! deliveries, bearer-token calls, waiting for runs.
#![allow(clippy::unwrap_used)]

use super::{Repo, ferry_cmd};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "it's a secret to everybody";
pub const TOKEN: &str = "test-token-0123456789";

/// The `ferry serve` child; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(repo: &Repo) -> Server {
        let mut cmd = ferry_cmd(repo.path(), &["serve", "--listen", "127.0.0.1:0"]);
        cmd.env("FERRY_WEBHOOK_SECRET", SECRET)
            .env("FERRY_API_TOKEN", TOKEN)
            .stderr(Stdio::inherit());
        Server::spawn(cmd)
    }

    /// `kill -9`, and waits for it so that its pid is really gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `ferry serve` as `cmd` says (its secrets, address and stderr from elsewhere).
    pub fn spawn(mut cmd: std::process::Command) -> Server {
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("ferry serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).unwrap();
        let port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("ferry serve printed no address: {first:?}"));
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; the status and the JSON body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    // Not JSON (a server killed mid-answer, a bug): the text, for the failing assert.
    let value = serde_json::from_str(rest).unwrap_or_else(|_| Value::String(rest.to_string()));
    (status, value)
}

pub fn get(port: u16, path: &str) -> (u16, Value) {
    request(port, "GET", path, &[], b"")
}

pub fn sign(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A GitHub `push` body in GitHub's documented shape.
pub fn push_body(git_ref: &str, before: &str, after: &str, deleted: bool) -> Vec<u8> {
    let zero = "0".repeat(40);
    let head = if deleted {
        Value::Null
    } else {
        json!({"id": after, "message": "a commit", "timestamp": "2026-01-27T10:00:00Z",
               "url": format!("https://github.com/acme/shop/commit/{after}"),
               "author": {"name": "Ada", "email": "ada@example.com", "username": "ada"},
               "committer": {"name": "Ada", "email": "ada@example.com", "username": "ada"},
               "added": [], "removed": [], "modified": []})
    };
    serde_json::to_vec(&json!({
        "ref": git_ref, "before": before, "after": if deleted { zero.clone() } else { after.to_string() },
        "created": before == zero, "deleted": deleted, "forced": false,
        "base_ref": null, "compare": "https://github.com/acme/shop/compare/a...b",
        "commits": [], "head_commit": head,
        "repository": {"id": 1, "name": "shop", "full_name": "acme/shop"},
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": {"login": "ada"}
    }))
    .unwrap()
}

pub fn deliver(
    port: u16,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: &str,
) -> (u16, Value) {
    request(
        port,
        "POST",
        "/hooks/github",
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", signature),
        ],
        body,
    )
}

pub fn push(port: u16, delivery: &str, git_ref: &str, after: &str) -> (u16, Value) {
    let body = push_body(git_ref, &"1".repeat(40), after, false);
    deliver(port, "push", delivery, &body, &sign(&body))
}

/// Polls `/api/runs/{id}` until `done` holds (at most a minute).
pub fn wait_run(port: u16, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = get(port, &format!("/api/runs/{id}"));
        assert_eq!(code, 200, "{v:#}");
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < until, "run {id} never got {what}: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn run_count(port: u16) -> usize {
    let (code, v) = get(port, "/api/runs?limit=1000");
    assert_eq!(code, 200, "{v:#}");
    v["runs"].as_array().unwrap().len()
}

pub fn bearer() -> String {
    format!("Bearer {TOKEN}")
}
