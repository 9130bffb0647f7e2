//! `ferry serve` over real HTTP on loopback: the real binary, started as a child process
//! with its secrets in the environment, in a temporary git repository whose pipeline
//! deploys with commands. Signed GitHub deliveries start runs, approvals and rejections
//! go through the API, and an Alertmanager payload rolls back a deployment in its watch
//! period.

#![allow(clippy::unwrap_used)]

mod support;

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::{Repo, ferry_cmd, yaml_str};

const SECRET: &str = "it's a secret to everybody";
const TOKEN: &str = "test-token-0123456789";

/// The `ferry serve` child; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(repo: &Repo) -> Server {
        let mut cmd = ferry_cmd(repo.path(), &["serve", "--listen", "127.0.0.1:0"]);
        cmd.env("FERRY_WEBHOOK_SECRET", SECRET)
            .env("FERRY_API_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
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
fn request(
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
    let value = serde_json::from_str(rest)
        .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {text}"));
    (status, value)
}

fn get(port: u16, path: &str) -> (u16, Value) {
    request(port, "GET", path, &[], b"")
}

fn sign(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A GitHub `push` body in GitHub's documented shape.
fn push_body(git_ref: &str, before: &str, after: &str, deleted: bool) -> Vec<u8> {
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

fn deliver(port: u16, event: &str, delivery: &str, body: &[u8], signature: &str) -> (u16, Value) {
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

fn push(port: u16, delivery: &str, git_ref: &str, after: &str) -> (u16, Value) {
    let body = push_body(git_ref, &"1".repeat(40), after, false);
    deliver(port, "push", delivery, &body, &sign(&body))
}

/// Polls `/api/runs/{id}` until `done` holds (at most a minute).
fn wait_run(port: u16, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
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

fn run_count(port: u16) -> usize {
    let (code, v) = get(port, "/api/runs?limit=1000");
    assert_eq!(code, 200, "{v:#}");
    v["runs"].as_array().unwrap().len()
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// staging (watch 60 s, alarm `staging-errors`) → production (approval); both deployed
/// by `ops/deploy.sh`, rolled back by `ops/rollback.sh`.
fn pipeline(repo: &Repo) {
    for what in ["deploy", "rollback"] {
        repo.write_exec(
            &format!("ops/{what}.sh"),
            &format!(
                "#!/bin/sh\nops=$(dirname \"$0\")\necho \"{what} $FERRY_ENV $FERRY_VERSION\" >> \"$ops/actions.log\"\n"
            ),
        );
    }
    let deploy = yaml_str(&format!("sh '{}'", repo.join("ops/deploy.sh").display()));
    let rollback = yaml_str(&format!("sh '{}'", repo.join("ops/rollback.sh").display()));
    let text = format!(
        "pipeline: served\nsource:\n  branch: main\nbuild:\n  steps:\n    - name: package\n      run: \"mkdir -p dist && echo $FERRY_VERSION > dist/VERSION\"\n  artifact: dist\nenvironments:\n  - name: staging\n    deploy:\n      command:\n        run: {deploy}\n        rollback: {rollback}\n    watch: 60s\n  - name: production\n    approval:\n      timeout: 1h\n    deploy:\n      command:\n        run: {deploy}\n        rollback: {rollback}\nalarms:\n  - name: staging-errors\n    external: {{}}\n    environment: staging\nrollback:\n  automatic: true\n  validate:\n    stabilize: 1s\n    health_timeout: 5s\n"
    );
    repo.write("ferry.yml", &text);
    repo.write(".gitignore", ".ferry/\ndist/\nops/\n");
}

#[test]
fn refuses_to_start_without_its_secrets() {
    let repo = Repo::new();
    pipeline(&repo);
    repo.commit("A");
    let out = ferry_cmd(repo.path(), &["serve", "--listen", "127.0.0.1:0"])
        .env_remove("FERRY_WEBHOOK_SECRET")
        .env("FERRY_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FERRY_WEBHOOK_SECRET"), "{err}");
    assert!(!err.contains(TOKEN), "the token is never printed: {err}");
}

#[test]
fn webhooks_start_runs_the_api_decides_them_and_alarms_roll_back() {
    let repo = Repo::new();
    pipeline(&repo);
    let a = repo.commit("A");
    let server = Server::start(&repo);
    let port = server.port;

    // Reading.
    let (code, st) = get(port, "/api/status");
    assert_eq!(code, 200, "{st:#}");
    assert_eq!(st["pipeline"], "served");
    let (code, v) = get(port, "/api/runs/999");
    assert_eq!(code, 404, "{v:#}");
    assert_eq!(v["code"], 404);
    assert!(v["error"].is_string(), "{v:#}");
    let (code, v) = get(port, "/api/runs/abc");
    assert_eq!(code, 400, "{v:#}");

    // Ping.
    let ping = br#"{"zen": "Keep it logically awesome.", "hook_id": 7, "hook": {}}"#;
    let (code, v) = deliver(port, "ping", "p-1", ping, &sign(ping));
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["pong"], "Keep it logically awesome.");

    // A bad signature, and none at all: 401, nothing started.
    let body = push_body("refs/heads/main", &"1".repeat(40), &a, false);
    let (code, v) = deliver(port, "push", "bad-1", &body, &sign(b"something else"));
    assert_eq!(code, 401, "{v:#}");
    let (code, v) = request(
        port,
        "POST",
        "/hooks/github",
        &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "bad-2")],
        &body,
    );
    assert_eq!(code, 401, "{v:#}");
    assert_eq!(run_count(port), 0);

    // A signed push to main starts a run; it waits for production's approval.
    let (code, v) = push(port, "d-1", "refs/heads/main", &a);
    assert_eq!(code, 202, "{v:#}");
    let r1 = v["run"].as_i64().unwrap();
    wait_run(port, r1, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });

    // The same delivery again starts nothing new.
    let (code, v) = push(port, "d-1", "refs/heads/main", &a);
    assert_eq!(code, 202, "{v:#}");
    assert_eq!(v["run"], r1, "{v:#}");
    assert_eq!(run_count(port), 1);

    // Pushes that start nothing: another branch, a tag, a deletion.
    let (code, v) = push(port, "o-1", "refs/heads/feature", &a);
    assert_eq!(code, 200, "{v:#}");
    assert!(v["ignored"].as_str().unwrap().contains("feature"), "{v:#}");
    let (code, v) = push(port, "o-2", "refs/tags/v1.0.0", &a);
    assert_eq!(code, 200, "{v:#}");
    assert!(v["ignored"].as_str().unwrap().contains("tag"), "{v:#}");
    let del = push_body("refs/heads/main", &a, &a, true);
    let (code, v) = deliver(port, "push", "o-3", &del, &sign(&del));
    assert_eq!(code, 200, "{v:#}");
    assert!(v["ignored"].as_str().unwrap().contains("deleted"), "{v:#}");
    assert_eq!(run_count(port), 1);

    // Approval needs the token. (`ada` pushed, so someone else approves.)
    let path = format!("/api/runs/{r1}/approve");
    let by = br#"{"by": "reviewer"}"#;
    let (code, v) = request(port, "POST", &path, &[], by);
    assert_eq!(code, 401, "{v:#}");
    let (code, v) = request(
        port,
        "POST",
        &path,
        &[("Authorization", "Bearer wrong")],
        by,
    );
    assert_eq!(code, 401, "{v:#}");
    let (code, v) = request(
        port,
        "POST",
        &path,
        &[("Authorization", &bearer())],
        b"{not json",
    );
    assert_eq!(code, 400, "{v:#}");
    let (code, v) = request(port, "POST", &path, &[("Authorization", &bearer())], by);
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["decision"], "approved");
    assert_eq!(v["environment"], "production");
    let done = wait_run(port, r1, "to end", |v| v["ended_at"].is_number());
    assert_eq!(done["status"], "succeeded", "{done:#}");
    // Not waiting any more: 409.
    let (code, v) = request(port, "POST", &path, &[("Authorization", &bearer())], by);
    assert_eq!(code, 409, "{v:#}");

    // A second commit, rejected at production; staging has it, in its watch period.
    let b = repo.commit("B");
    let (code, v) = push(port, "d-2", "refs/heads/main", &b);
    assert_eq!(code, 202, "{v:#}");
    let r2 = v["run"].as_i64().unwrap();
    wait_run(port, r2, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });
    let (code, v) = request(
        port,
        "POST",
        &format!("/api/runs/{r2}/reject"),
        &[("Authorization", &bearer())],
        br#"{"by": "grace", "reason": "not today"}"#,
    );
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["decision"], "rejected");
    let done = wait_run(port, r2, "to end", |v| v["ended_at"].is_number());
    assert_eq!(done["status"], "failed", "{done:#}");

    // Alarms need the token too.
    let firing = serde_json::to_vec(&json!({
        "version": "4", "status": "firing", "receiver": "ferry", "groupKey": "{}:{}",
        "alerts": [{"status": "firing",
                    "labels": {"alertname": "staging-errors", "env": "staging"},
                    "annotations": {"summary": "5xx above 5%"},
                    "startsAt": "2026-01-27T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}]
    }))
    .unwrap();
    let (code, v) = request(port, "POST", "/hooks/alarms", &[], &firing);
    assert_eq!(code, 401, "{v:#}");
    let (code, v) = request(
        port,
        "POST",
        "/hooks/alarms",
        &[
            ("Authorization", &bearer()),
            ("Content-Type", "application/json"),
        ],
        &firing,
    );
    assert_eq!(code, 202, "{v:#}");
    assert_eq!(
        v["alarms"][0]["environments"][0]["action"], "rollback",
        "{v:#}"
    );

    // Staging's deployment of B is rolled back; A runs there again.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = get(port, "/api/deployments?env=staging");
        assert_eq!(code, 200, "{v:#}");
        let rolled = v["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["version"] == b.as_str() && d["status"] == "rolled_back");
        if rolled {
            break;
        }
        assert!(
            Instant::now() < until,
            "staging was never rolled back: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        repo.read("ops/actions.log")
            .contains(&format!("rollback staging {a}")),
        "{}",
        repo.read("ops/actions.log")
    );

    // An unknown alarm: recorded, with a warning.
    let unknown = firing_for("no-such-alarm");
    let (code, v) = request(
        port,
        "POST",
        "/hooks/alarms",
        &[("Authorization", &bearer())],
        &unknown,
    );
    assert_eq!(code, 202, "{v:#}");
    assert!(
        v["warnings"][0].as_str().unwrap().contains("no-such-alarm"),
        "{v:#}"
    );
    let (code, v) = get(port, "/api/events?limit=1000");
    assert_eq!(code, 200, "{v:#}");
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "alarm_state_changed" && e["data"]["alarm"] == "no-such-alarm"),
        "{v:#}"
    );

    // SIGTERM: the server stops and exits 0.
    let mut server = server;
    let pid = i32::try_from(server.child.id()).unwrap();
    // SAFETY: sending a signal to our own child process.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM)
    };
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < until,
            "ferry serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}

fn firing_for(alarm: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "4", "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": alarm},
                    "annotations": {}, "startsAt": "2026-01-27T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z"}]
    }))
    .unwrap()
}

/// The pipeline of [`pipeline`] with a 2-of-3 rule at production and the repository's
/// web address for commit links.
fn two_of_three(repo: &Repo) {
    pipeline(repo);
    let text = repo.read("ferry.yml").replace(
        "    approval:\n      timeout: 1h\n",
        "    approval:\n      timeout: 1h\n      approvers: [alice, bob, ada]\n      required: 2\n",
    );
    let text = text.replace(
        "source:\n  branch: main\n",
        "source:\n  branch: main\n  repository: https://github.com/acme/shop\n",
    );
    repo.write("ferry.yml", &text);
}

#[test]
fn the_api_counts_two_of_three_approvals_and_refuses_with_403_and_409() {
    let repo = Repo::new();
    two_of_three(&repo);
    let a = repo.commit("A");
    let server = Server::start(&repo);
    let port = server.port;
    let (code, v) = push(port, "n-1", "refs/heads/main", &a);
    assert_eq!(code, 202, "{v:#}");
    let id = v["run"].as_i64().unwrap();
    wait_run(port, id, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });
    let path = format!("/api/runs/{id}/approve");
    let post = |body: &[u8]| request(port, "POST", &path, &[("Authorization", &bearer())], body);

    // The approval request is an event carrying the commit's link and the rule.
    let (code, ev) = get(port, &format!("/api/events?run={id}"));
    assert_eq!(code, 200, "{ev:#}");
    let requested = ev["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == "approval_requested"))
        .cloned()
        .unwrap_or_else(|| panic!("no approval_requested: {ev:#}"));
    assert_eq!(
        requested["data"]["commitUrl"],
        format!("https://github.com/acme/shop/commit/{a}"),
        "{requested:#}"
    );
    assert_eq!(requested["data"]["required"], 2);

    // 403: not an approver; the pusher (who triggered the run), naming the rule.
    let (code, v) = post(br#"{"by": "mallory"}"#);
    assert_eq!(code, 403, "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("`approval.approvers` lists alice, bob, ada"),
        "{v:#}"
    );
    let (code, v) = post(br#"{"by": "ada"}"#);
    assert_eq!(code, 403, "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("separation_of_duties"),
        "{v:#}"
    );

    // A partial approval says who is still needed.
    let (code, v) = post(br#"{"by": "alice"}"#);
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["complete"], false);
    assert_eq!(
        v["progress"],
        "1 of 2 approvals (alice); waiting for 1 more from bob"
    );
    // 409: the same person again; an artifact the person did not review.
    let (code, v) = post(br#"{"by": "alice"}"#);
    assert_eq!(code, 409, "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("already approved by alice"),
        "{v:#}"
    );
    let (code, v) = post(br#"{"by": "bob", "digest": "sha256:0000"}"#);
    assert_eq!(code, 409, "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("you reviewed artifact sha256:0000"),
        "{v:#}"
    );

    // The run shows its approvals so far.
    let (code, v) = get(port, &format!("/api/runs/{id}"));
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["approvals"][0]["environment"], "production", "{v:#}");
    assert_eq!(v["approvals"][0]["required"], 2);
    assert_eq!(v["approvals"][0]["approvals"], json!(["alice"]));
    assert_eq!(v["approvals"][0]["decisions"].as_array().unwrap().len(), 1);

    let digest = v["artifact"]["digest"].as_str().unwrap().to_string();
    let body = serde_json::to_vec(&json!({"by": "bob", "digest": digest})).unwrap();
    let (code, v) = post(&body);
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["complete"], true, "{v:#}");
    assert_eq!(v["approvals"], json!(["alice", "bob"]));
    let done = wait_run(port, id, "to end", |v| v["ended_at"].is_number());
    assert_eq!(done["status"], "succeeded", "{done:#}");
    // No longer waiting: 409 with the reason.
    let (code, v) = post(br#"{"by": "bob"}"#);
    assert_eq!(code, 409, "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not waiting for approval"),
        "{v:#}"
    );
}
