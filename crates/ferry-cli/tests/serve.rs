//! `ferry serve` over real HTTP on loopback: the real binary, started as a child process
//! with its secrets in the environment, in a temporary git repository whose pipeline
//! deploys with commands. Signed GitHub deliveries start runs, approvals and rejections
//! go through the API, and an Alertmanager payload rolls back a deployment in its watch
//! period.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::serve::{
    SECRET, Server, TOKEN, bearer, deliver, get, push, push_body, request, run_count, sign,
    wait_run,
};
use support::{Repo, ferry_cmd, yaml_str};

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
        "pipeline: served\nsource:\n  branch: main\nbuild:\n  steps:\n    - name: package\n      run: \"mkdir -p dist && echo $FERRY_VERSION > dist/VERSION && echo built $FERRY_VERSION\"\n  artifact: dist\nenvironments:\n  - name: staging\n    deploy:\n      command:\n        run: {deploy}\n        rollback: {rollback}\n    watch: 60s\n  - name: production\n    approval:\n      timeout: 1h\n    deploy:\n      command:\n        run: {deploy}\n        rollback: {rollback}\nalarms:\n  - name: staging-errors\n    external: {{}}\n    environment: staging\nrollback:\n  automatic: true\n  validate:\n    stabilize: 1s\n    health_timeout: 5s\n"
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

/// One raw HTTP/1.1 exchange: status, headers (lower-case names) and body bytes.
fn raw_request(port: u16, head: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn get_raw(port: u16, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    raw_request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        b"",
    )
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The rest of the API (stages, logs read whole or followed from an offset,
/// environments, alarms, event filters) and what bad requests get: wrong content types,
/// oversized and slow bodies, slow headers, form-encoded GitHub deliveries.
#[test]
fn the_api_reads_runs_environments_alarms_and_refuses_bad_requests() {
    let repo = Repo::new();
    pipeline(&repo);
    let a = repo.commit("A");
    let server = Server::start(&repo);
    let port = server.port;
    let (code, v) = push(port, "api-1", "refs/heads/main", &a);
    assert_eq!(code, 202, "{v:#}");
    let r = v["run"].as_i64().unwrap();
    wait_run(port, r, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });

    // Stages and steps.
    let (code, v) = get(port, &format!("/api/runs/{r}/stages"));
    assert_eq!(code, 200, "{v:#}");
    let names: Vec<&str> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["build", "staging", "production"], "{v:#}");
    assert_eq!(v["status"], "awaiting_approval");

    // Logs, whole and from an offset.
    let (code, v) = get(port, &format!("/api/runs/{r}/logs?step=package"));
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["steps"][0]["text"], format!("built {a}\n"), "{v:#}");
    let (code, h, body) = get_raw(port, &format!("/api/runs/{r}/steps/build/package/log"));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, format!("built {a}\n").as_bytes());
    assert!(
        header_of(&h, "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(header_of(&h, "x-ferry-step-status"), Some("succeeded"));
    let next = header_of(&h, "x-ferry-next-offset").unwrap().to_string();
    assert_eq!(next, body.len().to_string());
    let (code, h, body) = get_raw(
        port,
        &format!("/api/runs/{r}/steps/build/package/log?offset=6"),
    );
    assert_eq!(code, 200);
    assert_eq!(body, format!("{a}\n").as_bytes());
    assert_eq!(header_of(&h, "x-ferry-next-offset"), Some(next.as_str()));
    let (code, _, body) = get_raw(
        port,
        &format!("/api/runs/{r}/steps/build/package/log?offset=100000"),
    );
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, v) = get(port, &format!("/api/runs/{r}/steps/build/nope/log"));
    assert_eq!(code, 404, "{v:#}");
    assert!(v["error"].as_str().unwrap().contains("package"), "{v:#}");
    let (code, v) = get(port, &format!("/api/runs/{r}/logs?step=nope"));
    assert_eq!(code, 404, "{v:#}");

    // Environments.
    let (code, v) = get(port, "/api/environments");
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["environments"][0]["name"], "staging");
    assert_eq!(v["environments"][0]["version"], a.as_str(), "{v:#}");
    let (code, v) = get(port, "/api/environments/staging");
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["deployments"][0]["version"], a.as_str(), "{v:#}");
    assert_eq!(v["alarms"][0]["name"], "staging-errors", "{v:#}");
    let (code, v) = get(port, "/api/environments/nowhere");
    assert_eq!(code, 404, "{v:#}");

    // Alarms: never heard of → INSUFFICIENT_DATA; after a pushed OK, OK with its change.
    let (code, v) = get(port, "/api/alarms");
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["alarms"][0]["name"], "staging-errors");
    assert_eq!(v["alarms"][0]["state"], "INSUFFICIENT_DATA");
    assert_eq!(v["alarms"][0]["environments"][0], "staging");
    let resolved = serde_json::to_vec(&json!({
        "version": "4", "status": "resolved",
        "alerts": [{"status": "resolved", "labels": {"alertname": "staging-errors"},
                    "annotations": {}, "startsAt": "2026-01-27T10:00:00Z",
                    "endsAt": "2026-01-27T10:05:00Z"}]
    }))
    .unwrap();
    let (code, v) = request(
        port,
        "POST",
        "/hooks/alarms",
        &[
            ("Authorization", &bearer()),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        &resolved,
    );
    assert_eq!(code, 202, "{v:#}");
    let (code, v) = get(port, "/api/alarms/staging-errors");
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["alarm"]["state"], "OK", "{v:#}");
    assert_eq!(v["changes"].as_array().unwrap().len(), 1, "{v:#}");
    let (code, v) = get(port, "/api/alarms/nope");
    assert_eq!(code, 404, "{v:#}");
    assert!(
        v["error"].as_str().unwrap().contains("staging-errors"),
        "{v:#}"
    );

    // Event filters.
    let (code, v) = get(port, "/api/events?kind=run_queued&order=newest&limit=5");
    assert_eq!(code, 200, "{v:#}");
    let events = v["events"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["kind"] == "run_queued"), "{v:#}");
    let (code, v) = get(port, "/api/events?kind=bogus");
    assert_eq!(code, 400, "{v:#}");
    let (code, v) = get(port, "/api/events?order=sideways");
    assert_eq!(code, 400, "{v:#}");
    let (code, v) = get(port, "/api/events?env=nowhere");
    assert_eq!(code, 404, "{v:#}");
    let (code, v) = get(port, "/api/events?run=9999");
    assert_eq!(code, 404, "{v:#}");

    // A content type the endpoint does not read: 415, nothing decided.
    let (code, v) = request(
        port,
        "POST",
        &format!("/api/runs/{r}/approve"),
        &[("Authorization", &bearer()), ("Content-Type", "text/xml")],
        br#"{"by": "ada"}"#,
    );
    assert_eq!(code, 415, "{v:#}");
    assert!(
        v["error"].as_str().unwrap().contains("application/json"),
        "{v:#}"
    );
    let (code, v) = get(port, &format!("/api/runs/{r}"));
    assert_eq!(code, 200);
    assert_eq!(v["status"], "awaiting_approval", "{v:#}");

    // A body announced larger than 25 MiB: 413 at once.
    let (code, _, body) = raw_request(
        port,
        "POST /hooks/github HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 30000000\r\n\r\n",
        b"{}",
    );
    assert_eq!(code, 413, "{}", String::from_utf8_lossy(&body));
    // The API reads a few fields: 64 KiB at most.
    let (code, _, body) = raw_request(
        port,
        &format!(
            "POST /api/runs/{r}/approve HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        ),
        b"{}",
    );
    assert_eq!(code, 413, "{}", String::from_utf8_lossy(&body));

    // GitHub's form encoding: `payload=<percent-encoded JSON>`, signed as sent.
    let ping = r#"{"zen": "Half measures are as bad as nothing at all.", "hook_id": 8}"#;
    let mut form = b"payload=".to_vec();
    for b in ping.bytes() {
        if b.is_ascii_alphanumeric() {
            form.push(b);
        } else {
            form.extend(format!("%{b:02X}").bytes());
        }
    }
    let (code, v) = request(
        port,
        "POST",
        "/hooks/github",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", "form-1"),
            ("X-Hub-Signature-256", &sign(&form)),
        ],
        &form,
    );
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["pong"], "Half measures are as bad as nothing at all.");

    // Slow clients: one stalls in its headers, one in its body; both are cut off in
    // bounded time, and others are served meanwhile.
    let mut stalled_head = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled_head
        .write_all(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let slow_body = std::thread::spawn(move || {
        raw_request(
            port,
            "POST /hooks/alarms HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
            b"{\"version\"",
        )
    });
    let (code, v) = get(port, "/api/status");
    assert_eq!(code, 200, "{v:#}");
    let (code, _, body) = slow_body.join().unwrap();
    assert_eq!(code, 408, "{}", String::from_utf8_lossy(&body));
    stalled_head
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut rest = Vec::new();
    // The server closes the connection (with or without a 408 head).
    let _ = stalled_head.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    let (code, _) = get(port, "/api/status");
    assert_eq!(code, 200);
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Secrets from files named in ferry.yml (none in the environment), `server.listen`,
/// and the CLI's `status`, `approve`, `reject` and `rollback` going through the server
/// that `server.url` names (with the token from the file), falling back to the store
/// when nothing answers there.
#[test]
fn secrets_from_files_and_the_cli_through_a_running_server() {
    let repo = Repo::new();
    pipeline(&repo);
    let port = free_port();
    let text = repo.read("ferry.yml");
    repo.write(
        "ferry.yml",
        &format!(
            "{text}server:\n  listen: 127.0.0.1:{port}\n  url: http://127.0.0.1:{port}\n  webhook_secret_file: ops/webhook-secret\n  api_token_file: ops/api-token\n"
        ),
    );
    let a = repo.commit("A");
    // Missing file: a config error naming it.
    let out = repo.ferry(&["serve"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ops/webhook-secret"),
        "{out:?}"
    );
    repo.write("ops/webhook-secret", &format!("{SECRET}\n"));
    repo.write("ops/api-token", &format!("{TOKEN}\n"));
    for f in ["ops/webhook-secret", "ops/api-token"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(repo.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let server = Server::spawn(ferry_cmd(repo.path(), &["serve"]));
    assert_eq!(server.port, port);

    let (code, v) = push(port, "f-1", "refs/heads/main", &a);
    assert_eq!(code, 202, "{v:#}");
    let r = v["run"].as_i64().unwrap();
    wait_run(port, r, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });

    // `ferry status` from the server.
    let out = repo.ferry(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["runs"][0]["id"], r, "{st:#}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A wrong token: refused, with what to do.
    let out = repo.ferry_env(
        &["approve", &r.to_string()],
        &[("FERRY_API_TOKEN", "wrong")],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FERRY_API_TOKEN"),
        "{out:?}"
    );

    // Approve through the server.
    // The pusher may not approve (separation of duties): the server's 403.
    let out = repo.ferry(&["approve", &r.to_string(), "--by", "ada"]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    let out = repo.ferry(&["approve", &r.to_string(), "--by", "reviewer"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("approved") && said.contains(&format!("via http://127.0.0.1:{port}")),
        "{said}"
    );
    let done = wait_run(port, r, "to end", |v| v["ended_at"].is_number());
    assert_eq!(done["status"], "succeeded", "{done:#}");
    // Not waiting any more: the server's 409 is the CLI's conflict.
    let out = repo.ferry(&["reject", &r.to_string(), "--reason", "late"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");

    // A second commit, then a rollback of staging through the server.
    let b = repo.commit("B");
    let (code, v) = push(port, "f-2", "refs/heads/main", &b);
    assert_eq!(code, 202, "{v:#}");
    let r2 = v["run"].as_i64().unwrap();
    wait_run(port, r2, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });
    let out = repo.ferry(&["rollback", "staging", "--reason", "checking", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "succeeded", "{rec:#}");
    assert_eq!(rec["to_version"], a.as_str(), "{rec:#}");
    assert!(
        repo.read("ops/actions.log")
            .contains(&format!("rollback staging {a}")),
        "{}",
        repo.read("ops/actions.log")
    );

    // The server gone: the CLI says so and reads the store itself.
    drop(server);
    let out = repo.ferry(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no ferry serve answers"),
        "{out:?}"
    );
    // `FERRY_SERVER=` turns the server off without a note.
    let out = repo.ferry_env(&["status", "--json"], &[("FERRY_SERVER", "")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

/// `source.poll`: ferry's repository is a clone; the server fetches `origin` and runs
/// each new tip of the branch once (also across a restart); a webhook for a commit only
/// the origin has fetches it instead of failing.
#[test]
fn polling_runs_each_new_tip_of_the_branch_once() {
    let upstream = Repo::new();
    upstream.write_exec(
        "ops/deploy.sh",
        "#!/bin/sh\necho \"deploy $FERRY_ENV $FERRY_VERSION\" >> \"$(dirname \"$0\")/actions.log\"\n",
    );
    let deploy = yaml_str(&format!(
        "sh '{}'",
        upstream.join("ops/deploy.sh").display()
    ));
    upstream.write(
        "ferry.yml",
        &format!(
            "pipeline: polled\nsource:\n  branch: main\n  poll: 1s\nbuild:\n  steps:\n    - name: package\n      run: \"echo built\"\nenvironments:\n  - name: staging\n    deploy:\n      command:\n        run: {deploy}\n"
        ),
    );
    upstream.write(".gitignore", ".ferry/\nops/\n");
    let a = upstream.commit("A");
    let clone = Repo::plain();
    clone.git(&["clone", "-q", upstream.path().to_str().unwrap(), "."]);

    let start = || {
        let mut cmd = ferry_cmd(clone.path(), &["serve", "--listen", "127.0.0.1:0"]);
        cmd.env("FERRY_WEBHOOK_SECRET", SECRET)
            .env("FERRY_API_TOKEN", TOKEN);
        Server::spawn(cmd)
    };
    let server = start();
    let port = server.port;
    // The tip at start is run.
    let first = wait_runs(port, 1);
    assert_eq!(first[0]["commit"], a.as_str(), "{first:?}");
    wait_run(port, first[0]["id"].as_i64().unwrap(), "to end", |v| {
        v["ended_at"].is_number()
    });

    // A new commit upstream: fetched and run, once.
    let b = upstream.commit("B");
    let runs = wait_runs(port, 2);
    assert_eq!(runs[0]["commit"], b.as_str(), "{runs:?}");
    let rb = runs[0]["id"].as_i64().unwrap();
    let done = wait_run(port, rb, "to end", |v| v["ended_at"].is_number());
    assert_eq!(done["status"], "succeeded", "{done:#}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(run_count(port), 2);

    // A restart runs nothing again.
    drop(server);
    let server = start();
    let port = server.port;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(run_count(port), 2);

    // A webhook for a commit only upstream has: fetched, then run.
    let c = upstream.commit("C");
    let (code, v) = push(port, "poll-c", "refs/heads/main", &c);
    assert_eq!(code, 202, "{v:#}");
    let rc = v["run"].as_i64().unwrap();
    let done = wait_run(port, rc, "to end", |v| v["ended_at"].is_number());
    assert_eq!(done["status"], "succeeded", "{done:#}");
    // The poll that sees C next starts nothing more.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(run_count(port), 3);
    let log = upstream.read("ops/actions.log");
    for sha in [&a, &b, &c] {
        assert_eq!(
            log.matches(&format!("deploy staging {sha}")).count(),
            1,
            "{log}"
        );
    }
}

/// Waits until the server lists `n` runs; returns them, newest first.
fn wait_runs(port: u16, n: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = get(port, "/api/runs?limit=1000");
        assert_eq!(code, 200, "{v:#}");
        let runs = v["runs"].as_array().unwrap().clone();
        if runs.len() >= n {
            return runs;
        }
        assert!(Instant::now() < until, "never {n} runs: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A CloudWatch "Alarm State Change" event as EventBridge delivers it (an API
/// destination with the bearer token) rolls back staging's deployment in its watch
/// period, like the Alertmanager payload above.
#[test]
fn a_cloudwatch_alarm_event_rolls_back_a_watched_deployment() {
    let repo = Repo::new();
    pipeline(&repo);
    let a = repo.commit("A");
    let server = Server::start(&repo);
    let port = server.port;
    let (code, v) = push(port, "cw-1", "refs/heads/main", &a);
    assert_eq!(code, 202, "{v:#}");
    let r1 = v["run"].as_i64().unwrap();
    wait_run(port, r1, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });
    let auth = [
        ("Authorization", bearer()),
        ("Content-Type", "application/json".to_string()),
    ];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, v) = request(
        port,
        "POST",
        &format!("/api/runs/{r1}/approve"),
        &auth,
        br#"{"by": "reviewer"}"#,
    );
    assert_eq!(code, 200, "{v:#}");
    wait_run(port, r1, "to end", |v| v["status"] == "succeeded");
    let b = repo.commit("B");
    let (code, v) = push(port, "cw-2", "refs/heads/main", &b);
    assert_eq!(code, 202, "{v:#}");
    let r2 = v["run"].as_i64().unwrap();
    wait_run(port, r2, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });

    let event = include_str!("../../ferry-hooks/tests/fixtures/eventbridge_alarm.json")
        .replace("shop-api-production-5xx", "staging-errors");
    let (code, v) = request(port, "POST", "/hooks/alarms", &auth, event.as_bytes());
    assert_eq!(code, 202, "{v:#}");
    assert_eq!(v["alarms"][0]["alarm"], "staging-errors", "{v:#}");
    assert_eq!(v["alarms"][0]["state"], "ALARM", "{v:#}");
    assert_eq!(
        v["alarms"][0]["environments"][0]["action"], "rollback",
        "{v:#}"
    );
    let v = wait_staging_rolled_back(port, &b, &a);
    assert!(
        v["rollbacks"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("Threshold Crossed"),
        "{v:#}"
    );
    assert!(
        repo.read("ops/actions.log")
            .contains(&format!("rollback staging {a}")),
        "{}",
        repo.read("ops/actions.log")
    );
    let (_, v) = get(port, "/api/alarms/staging-errors");
    assert_eq!(v["alarm"]["state"], "ALARM", "{v:#}");
    assert_eq!(v["changes"][0]["data"]["source"], "cloudwatch", "{v:#}");
}

/// A loopback stand-in for SNS's certificate host: serves the test certificate and
/// counts confirmation visits. Ends with the test.
struct CertHost {
    port: u16,
    confirmations: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CertHost {
    fn start() -> CertHost {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let confirmations = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&confirmations);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let body: Vec<u8> = if head
                    .starts_with("GET /sns/SimpleNotificationService-test.pem")
                {
                    include_bytes!("../../ferry-hooks/tests/fixtures/sns_test_cert.pem").to_vec()
                } else if head.contains("Action=ConfirmSubscription") {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    b"<ConfirmSubscriptionResponse/>".to_vec()
                } else {
                    let _ = s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                };
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = s.write_all(&body);
            }
        });
        CertHost {
            port,
            confirmations,
        }
    }
}

/// An SNS delivery (`fixture` with `edit` applied) signed with the test key (version 2).
fn sns_signed(fixture: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    use base64::Engine as _;
    let mut v: Value = serde_json::from_slice(fixture).unwrap();
    v["SignatureVersion"] = "2".into();
    edit(&mut v);
    let msg = ferry_hooks::parse_sns(&serde_json::to_vec(&v).unwrap()).unwrap();
    let text = ferry_hooks::sns_string_to_sign(&msg).unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(include_bytes!(
        "../../ferry-hooks/tests/fixtures/sns_test_key.pk8"
    ))
    .unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        text.as_bytes(),
        &mut sig,
    )
    .unwrap();
    v["Signature"] = base64::engine::general_purpose::STANDARD.encode(sig).into();
    serde_json::to_vec(&v).unwrap()
}

/// SNS deliveries without the bearer token: accepted only for a topic in
/// `server.sns_topics` with a signature that verifies with the certificate at its
/// SigningCertURL; a verified subscription is confirmed; a CloudWatch alarm wrapped in
/// a verified SNS notification rolls back; the same message again acts no more.
#[test]
fn sns_deliveries_are_accepted_on_a_verified_signature() {
    let certs = CertHost::start();
    let topic = "arn:aws:sns:eu-west-1:123456789012:ferry-alarms";
    let cert_url = format!(
        "http://127.0.0.1:{}/sns/SimpleNotificationService-test.pem",
        certs.port
    );
    let repo = Repo::new();
    pipeline(&repo);
    let text = repo.read("ferry.yml");
    repo.write(
        "ferry.yml",
        &format!(
            "{text}server:\n  sns_topics: [{topic}]\n  sns_certificate_urls: [\"http://127.0.0.1:{}/sns/\"]\n",
            certs.port
        ),
    );
    let a = repo.commit("A");
    let server = Server::start(&repo);
    let port = server.port;
    let sns_post = |body: &[u8]| {
        request(
            port,
            "POST",
            "/hooks/alarms",
            &[
                ("Content-Type", "text/plain; charset=UTF-8"),
                ("x-amz-sns-message-type", "Notification"),
            ],
            body,
        )
    };

    // A subscription of the trusted topic, signed: confirmed by visiting SubscribeURL.
    let confirmation = sns_signed(
        include_bytes!("../../ferry-hooks/tests/fixtures/sns_subscription_confirmation.json"),
        |v| {
            v["TopicArn"] = topic.into();
            v["SigningCertURL"] = cert_url.clone().into();
            v["SubscribeURL"] = format!(
                "http://127.0.0.1:{}/sns/?Action=ConfirmSubscription&Token=abc",
                certs.port
            )
            .into();
        },
    );
    let (code, v) = sns_post(&confirmation);
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["confirmed"], true, "{v:#}");
    assert_eq!(
        certs
            .confirmations
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A deployment of B in staging's watch period.
    let (code, v) = push(port, "sns-1", "refs/heads/main", &a);
    assert_eq!(code, 202, "{v:#}");
    let r1 = v["run"].as_i64().unwrap();
    wait_run(port, r1, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });
    let b = repo.commit("B");
    let (code, v) = push(port, "sns-2", "refs/heads/main", &b);
    assert_eq!(code, 202, "{v:#}");
    let r2 = v["run"].as_i64().unwrap();
    wait_run(port, r2, "to deploy staging", |v| {
        v["stages"][1]["status"] == "succeeded"
    });

    let fixture = include_bytes!("../../ferry-hooks/tests/fixtures/sns_eventbridge_alarm.json");
    let alarm = |v: &mut Value| {
        v["TopicArn"] = topic.into();
        v["SigningCertURL"] = cert_url.clone().into();
        let inner = v["Message"]
            .as_str()
            .unwrap()
            .replace("shop-api-production-5xx", "staging-errors");
        v["Message"] = inner.into();
    };
    // Refused: no signature to speak of; another topic; a changed message.
    let unsigned: Vec<u8> = {
        let mut v: Value = serde_json::from_slice(fixture).unwrap();
        alarm(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let (code, v) = sns_post(&unsigned);
    assert_eq!(code, 401, "{v:#}");
    let other_topic = sns_signed(fixture, |v| {
        alarm(v);
        v["TopicArn"] = "arn:aws:sns:eu-west-1:210987654321:not-ours".into();
    });
    let (code, v) = sns_post(&other_topic);
    assert_eq!(code, 401, "{v:#}");
    assert!(v["error"].as_str().unwrap().contains("sns_topics"), "{v:#}");
    let mut tampered: Value = serde_json::from_slice(&sns_signed(fixture, alarm)).unwrap();
    tampered["MessageId"] = "11111111-2222-3333-4444-555555555555".into();
    let (code, v) = sns_post(&serde_json::to_vec(&tampered).unwrap());
    assert_eq!(code, 401, "{v:#}");
    let (_, v) = get(port, "/api/environments/staging");
    assert_eq!(v["environment"]["version"], b.as_str(), "{v:#}");

    // Fields beside the signed ones are never read: an EventBridge event added to a
    // signed envelope of another alarm changes nothing.
    let mut injected: Value = serde_json::from_slice(&sns_signed(fixture, |v| {
        alarm(v);
        let inner = v["Message"]
            .as_str()
            .unwrap()
            .replace("staging-errors", "no-such-alarm");
        v["Message"] = inner.into();
        v["MessageId"] = "99999999-8888-7777-6666-555555555555".into();
    }))
    .unwrap();
    let outer: Value = serde_json::from_slice(include_bytes!(
        "../../ferry-hooks/tests/fixtures/eventbridge_alarm.json"
    ))
    .unwrap();
    for k in ["detail-type", "source", "detail"] {
        injected[k] = outer[k].clone();
    }
    injected["detail"]["alarmName"] = "staging-errors".into();
    let (code, v) = sns_post(&serde_json::to_vec(&injected).unwrap());
    assert_eq!(code, 202, "{v:#}");
    assert_eq!(v["alarms"][0]["alarm"], "no-such-alarm", "{v:#}");
    let (_, v) = get(port, "/api/environments/staging");
    assert_eq!(v["environment"]["version"], b.as_str(), "{v:#}");

    // Signed by the trusted topic: staging is rolled back.
    let good = sns_signed(fixture, alarm);
    let (code, v) = sns_post(&good);
    assert_eq!(code, 202, "{v:#}");
    assert_eq!(
        v["alarms"][0]["environments"][0]["action"], "rollback",
        "{v:#}"
    );
    wait_staging_rolled_back(port, &b, &a);
    // The same message again: acknowledged, nothing more.
    let (code, v) = sns_post(&good);
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["redelivery"], true, "{v:#}");
    let log = repo.read("ops/actions.log");
    assert_eq!(
        log.matches(&format!("rollback staging {a}")).count(),
        1,
        "{log}"
    );
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

/// SIGTERM parks what waits instead of cancelling it: a run waiting for its approval is
/// left waiting, the server exits 0, and the next start takes the run up; the approval
/// given then deploys it.
#[test]
fn sigterm_parks_a_waiting_run_for_the_next_start() {
    let repo = Repo::new();
    pipeline(&repo);
    let a = repo.commit("A");
    let mut server = Server::start(&repo);
    let (code, v) = push(server.port, "park-1", "refs/heads/main", &a);
    assert_eq!(code, 202, "{v:#}");
    let r = v["run"].as_i64().unwrap();
    wait_run(server.port, r, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });
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
    drop(server);
    // Still waiting, not cancelled.
    let st = repo.status();
    assert_eq!(st["runs"][0]["id"], r, "{st:#}");
    assert_eq!(st["runs"][0]["status"], "awaiting_approval", "{st:#}");

    let server = Server::start(&repo);
    let port = server.port;
    let (code, v) = request(
        port,
        "POST",
        &format!("/api/runs/{r}/approve"),
        &[("Authorization", &bearer())],
        br#"{"by": "reviewer"}"#,
    );
    assert_eq!(code, 200, "{v:#}");
    let done = wait_run(port, r, "to end", |v| v["ended_at"].is_number());
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let (_, v) = get(port, &format!("/api/events?run={r}&kind=run_resumed"));
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "{v:#}");
    assert!(
        repo.read("ops/actions.log")
            .contains(&format!("deploy production {a}")),
        "{}",
        repo.read("ops/actions.log")
    );
}

/// An ALARM the server recorded but had not acted on when it was killed (state in the
/// store, no rollback yet) rolls the watched deployment back when the server starts
/// again.
#[test]
fn an_alarm_accepted_before_a_crash_rolls_back_after_the_restart() {
    let repo = Repo::new();
    pipeline(&repo);
    let (server, a) = two_approved_runs(&repo);
    let b = repo.head();
    drop(server); // SIGKILL
    // What the killed server had recorded of an incoming ALARM, and nothing more.
    let db = rusqlite::Connection::open(repo.join(".ferry/ferry.db")).unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    db.execute(
        "INSERT INTO alarm_states (alarm, state, reason, at) VALUES ('staging-errors', 'ALARM', '5xx above 5%', ?1)
         ON CONFLICT (alarm) DO UPDATE SET state = excluded.state, reason = excluded.reason, at = excluded.at",
        [now],
    )
    .unwrap();
    drop(db);
    assert!(
        !repo.read("ops/actions.log").contains("rollback staging"),
        "{}",
        repo.read("ops/actions.log")
    );

    let server = Server::start(&repo);
    let port = server.port;
    wait_staging_rolled_back(port, &b, &a);
    assert!(
        repo.read("ops/actions.log")
            .contains(&format!("rollback staging {a}")),
        "{}",
        repo.read("ops/actions.log")
    );
}

/// Personal tokens (`server.api_tokens_file`): a call made with one acts as its person,
/// so N of M counts people, not claims; the shared token can no longer approve.
#[test]
fn personal_tokens_decide_as_their_person() {
    let repo = Repo::new();
    two_of_three(&repo);
    let text = repo.read("ferry.yml");
    repo.write(
        "ferry.yml",
        &format!("{text}server:\n  api_tokens_file: ops/tokens\n"),
    );
    let a = repo.commit("A");
    // A broken tokens file: refused at start, naming the line.
    repo.write("ops/tokens", "# people\nalice\n");
    let mut cmd = ferry_cmd(repo.path(), &["serve", "--listen", "127.0.0.1:0"]);
    cmd.env("FERRY_WEBHOOK_SECRET", SECRET)
        .env("FERRY_API_TOKEN", TOKEN);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ops/tokens:2"),
        "{out:?}"
    );
    let alice = "alice-token-0123456789abcdef";
    let bob = "bob-token-0123456789abcdef";
    repo.write(
        "ops/tokens",
        &format!("# people\nalice {alice}\nbob   {bob}\n"),
    );
    let server = Server::start(&repo);
    let port = server.port;
    let (code, v) = push(port, "tok-1", "refs/heads/main", &a);
    assert_eq!(code, 202, "{v:#}");
    let r = v["run"].as_i64().unwrap();
    wait_run(port, r, "to wait for approval", |v| {
        v["status"] == "awaiting_approval"
    });
    let approve = |token: &str, body: &[u8]| {
        request(
            port,
            "POST",
            &format!("/api/runs/{r}/approve"),
            &[("Authorization", &format!("Bearer {token}"))],
            body,
        )
    };
    // The shared token cannot say who approves.
    let (code, v) = approve(TOKEN, br#"{"by": "alice"}"#);
    assert_eq!(code, 403, "{v:#}");
    assert!(
        v["error"].as_str().unwrap().contains("personal token"),
        "{v:#}"
    );
    // Alice's token is Alice.
    let (code, v) = approve(alice, br#"{"by": "bob"}"#);
    assert_eq!(code, 403, "{v:#}");
    assert!(v["error"].as_str().unwrap().contains("alice's"), "{v:#}");
    let (code, v) = approve(alice, b"{}");
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["by"], "alice", "{v:#}");
    let (code, v) = approve(alice, b"{}");
    assert_eq!(code, 409, "{v:#}");
    let (code, v) = approve(bob, b"{}");
    assert_eq!(code, 200, "{v:#}");
    let done = wait_run(port, r, "to end", |v| v["ended_at"].is_number());
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let (_, v) = get(port, &format!("/api/events?run={r}&kind=approval_granted"));
    let by: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["by"].as_str())
        .collect();
    assert_eq!(by, ["alice", "bob"], "{v:#}");
}

/// Commits A then B, each pushed, approved by a reviewer and succeeded everywhere;
/// returns the server and A.
fn two_approved_runs(repo: &Repo) -> (Server, String) {
    let a = repo.commit("A");
    let server = Server::start(repo);
    let port = server.port;
    for (i, sha) in [a.clone(), repo.commit("B")].iter().enumerate() {
        let (code, v) = push(port, &format!("two-{i}"), "refs/heads/main", sha);
        assert_eq!(code, 202, "{v:#}");
        let r = v["run"].as_i64().unwrap();
        wait_run(port, r, "to wait for approval", |v| {
            v["status"] == "awaiting_approval"
        });
        let (code, v) = request(
            port,
            "POST",
            &format!("/api/runs/{r}/approve"),
            &[("Authorization", &bearer())],
            br#"{"by": "reviewer"}"#,
        );
        assert_eq!(code, 200, "{v:#}");
        wait_run(port, r, "to succeed", |v| v["status"] == "succeeded");
    }
    (server, a)
}

/// A deployment whose stage failed, left not rolled back by a killed ferry (its run
/// ended, no rollback begun), is rolled back when the server starts again.
#[test]
fn a_rollback_owed_by_a_killed_server_is_taken_up_after_the_restart() {
    let repo = Repo::new();
    pipeline(&repo);
    let (server, a) = two_approved_runs(&repo);
    let b = repo.head();
    drop(server); // SIGKILL
    // What a ferry killed between failing staging's stage and rolling it back leaves.
    let db = rusqlite::Connection::open(repo.join(".ferry/ferry.db")).unwrap();
    let n = db
        .execute(
            "UPDATE deployments SET status = 'failed' WHERE environment = 'staging' AND version = ?1",
            [&b],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let server = Server::start(&repo);
    let port = server.port;
    let v = wait_staging_rolled_back(port, &b, &a);
    assert!(
        v["rollbacks"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("taken up after ferry stopped"),
        "{v:#}"
    );
    assert!(
        repo.read("ops/actions.log")
            .contains(&format!("rollback staging {a}")),
        "{}",
        repo.read("ops/actions.log")
    );
}

/// Waits (at most a minute) until staging's deployment of `bad` is rolled back, the
/// rollback has succeeded and staging runs `good`; returns `/api/environments/staging`.
fn wait_staging_rolled_back(port: u16, bad: &str, good: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = get(port, "/api/environments/staging");
        let rolled = v["deployments"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["version"] == bad && d["status"] == "rolled_back");
        if rolled && v["rollbacks"][0]["status"] == "succeeded" {
            assert_eq!(v["environment"]["version"], good, "{v:#}");
            return v;
        }
        assert!(
            Instant::now() < until,
            "staging was never rolled back: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
