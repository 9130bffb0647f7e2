//! Notifications through the durable outbox with the real binary (DESIGN invariant 4,
//! seed Property 7), against an HTTP receiver this test runs on loopback:
//!
//! - a receiver that is down for a whole `ferry run`: the run goes on and succeeds, the
//!   events become dead letters shown by `ferry status` and `ferry notify list`; when it
//!   is back, `ferry notify retry` delivers every event exactly once per channel;
//! - a crash: `ferry run` is killed (SIGKILL) while a delivery is on the wire (the
//!   receiver holds its answer); the next process delivers everything, and the only
//!   duplicate is the interrupted delivery, with the same event id.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::{Repo, assert_code, describe, free_port, json, stderr};

/// One delivery as received: the path (which channel) and `X-Ferry-Event-Id`.
type Got = (String, i64, String);

/// An HTTP receiver on a fixed loopback port. While `hold` is set it records a request
/// and then keeps the connection open without answering.
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    hold: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, h, s) = (Arc::clone(&got), Arc::clone(&hold), Arc::clone(&stop));
        thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (g, h, s) = (Arc::clone(&g), Arc::clone(&h), Arc::clone(&s));
                        thread::spawn(move || answer(stream, &g, &h, &s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { got, hold, stop }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn answer(stream: TcpStream, got: &Mutex<Vec<Got>>, hold: &AtomicBool, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut len = 0;
    let mut id = -1;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "x-ferry-event-id" => id = v.trim().parse().unwrap_or(-1),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let kind = body["event"].as_str().unwrap_or("").to_string();
    got.lock().unwrap().push((path, id, kind));
    while hold.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(20));
    }
    let mut s = stream;
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

/// A two-environment pipeline with two webhook channels on `port` (paths `/a`, `/b`);
/// channel `b` also wants `run_succeeded`.
fn pipeline(port: u16) -> String {
    format!(
        r#"pipeline: notify-it
build:
  steps:
    - name: unit
      run: "true"
environments:
  - name: test
    deploy:
      command:
        run: "sleep 0.2"
  - name: staging
    deploy:
      command:
        run: "true"
notifications:
  - webhook:
      name: a
      url: http://127.0.0.1:{port}/a
  - webhook:
      name: b
      url: http://127.0.0.1:{port}/b
      events: [deployment_started, deployment_succeeded, run_succeeded]
"#
    )
}

fn repo(port: u16) -> Repo {
    let r = Repo::new();
    r.write("ferry.yml", &pipeline(port));
    r.write("README", "notify\n");
    r.commit("first");
    r
}

/// The ids of the events in the store of these kinds.
fn event_ids(repo: &Repo, kinds: &[&str]) -> BTreeSet<i64> {
    let db = rusqlite::Connection::open(repo.state().join("ferry.db")).unwrap();
    let mut stmt = db.prepare("SELECT id, kind FROM events").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    rows.map(Result::unwrap)
        .filter(|(_, k)| kinds.contains(&k.as_str()))
        .map(|(id, _)| id)
        .collect()
}

const A_KINDS: &[&str] = &[
    "deployment_started",
    "deployment_succeeded",
    "deployment_failed",
    "approval_requested",
    "rollback_initiated",
    "rollback_succeeded",
    "rollback_failed",
    "incident_opened",
    "pipeline_alarm",
];
const B_KINDS: &[&str] = &[
    "deployment_started",
    "deployment_succeeded",
    "run_succeeded",
];

fn per_channel(got: &[Got]) -> BTreeMap<String, Vec<i64>> {
    let mut m: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (path, id, _) in got {
        m.entry(path.clone()).or_default().push(*id);
    }
    for v in m.values_mut() {
        v.sort_unstable();
    }
    m
}

#[test]
fn a_receiver_down_for_a_whole_run_gets_every_event_exactly_once_when_back() {
    let port = free_port();
    let r = repo(port);
    // Nobody listens: every delivery is refused.
    let run = r.ferry(&["run"]);
    assert_code(&run, 0, "ferry run with the receiver down");
    assert!(
        stderr(&run).contains("dead letter") || stderr(&run).contains("not delivered yet"),
        "the run says what was not delivered: {}",
        describe(&run)
    );
    let st = r.status();
    let channels = st["notifications"].as_array().unwrap();
    assert_eq!(channels.len(), 2, "{st}");
    let a_ids = event_ids(&r, A_KINDS);
    let b_ids = event_ids(&r, B_KINDS);
    assert_eq!(a_ids.len(), 4, "two environments, started and succeeded");
    assert_eq!(b_ids.len(), 5);
    // Each channel's deliveries go in order; with the receiver down, the end-of-run
    // flush gives up at the first refusal and what is owed stays in the outbox (some
    // may already be dead letters after the seed's 3 attempts). Nothing is delivered,
    // nothing is missing.
    for c in channels {
        let want = if c["channel"] == "a" { &a_ids } else { &b_ids };
        let owed = c["dead"].as_u64().unwrap() + c["pending"].as_u64().unwrap();
        assert_eq!(owed, want.len() as u64, "{st}");
        assert_eq!(c["delivered"], 0);
    }
    let text = r.ferry(&["status"]);
    assert!(
        support::stdout(&text).contains("notifications: "),
        "{}",
        describe(&text)
    );
    let dead = r.ferry(&["notify", "list", "--dead", "--json"]);
    assert_code(&dead, 0, "ferry notify list --dead");
    let dead = json(&dead);
    assert!(
        dead["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "dead"
                && d["attempts"] == 3
                && d["lastError"].as_str().unwrap().contains("webhook")),
        "{dead}"
    );
    // Still down: `ferry notify retry` tries, says so (exit 1), and loses nothing.
    let retry = r.ferry(&["notify", "retry"]);
    assert_code(&retry, 1, "ferry notify retry while the receiver is down");
    let all = json(&r.ferry(&["notify", "list", "--json"]));
    assert_eq!(
        all["deliveries"].as_array().unwrap().len(),
        a_ids.len() + b_ids.len(),
        "{all}"
    );

    // The receiver comes back.
    let rx = Receiver::start(port);
    let retry = r.ferry(&["notify", "retry"]);
    assert_code(&retry, 0, "ferry notify retry");
    let got = per_channel(&rx.got());
    assert_eq!(
        got["/a"],
        a_ids.iter().copied().collect::<Vec<_>>(),
        "exactly once each on a"
    );
    assert_eq!(
        got["/b"],
        b_ids.iter().copied().collect::<Vec<_>>(),
        "exactly once each on b"
    );
    // Nothing is left and nothing is sent twice by later passes.
    let again = r.ferry(&["notify", "retry"]);
    assert_code(&again, 0, "a second retry");
    assert_eq!(rx.got().len(), a_ids.len() + b_ids.len());
    let st = r.status();
    for c in st["notifications"].as_array().unwrap() {
        assert_eq!(
            (c["pending"].as_u64(), c["dead"].as_u64()),
            (Some(0), Some(0)),
            "{st}"
        );
    }
    // A channel id that does not exist is refused with the list of channels.
    let bad = r.ferry(&["notify", "retry", "--channel", "c"]);
    assert_code(&bad, 5, "an unknown channel");
    assert!(stderr(&bad).contains("`a`, `b`"), "{}", describe(&bad));
}

#[test]
fn killed_while_sending_then_restarted_loses_nothing() {
    let port = free_port();
    let r = repo(port);
    let rx = Receiver::start(port);
    rx.hold.store(true, Ordering::SeqCst);
    let mut run = r.spawn(&["run"]);
    // Wait for the first delivery to be on the wire, unanswered.
    let deadline = Instant::now() + Duration::from_secs(120);
    while rx.got().is_empty() {
        assert!(Instant::now() < deadline, "no delivery arrived");
        assert!(!run.finished(), "the run ended before a delivery was sent");
        thread::sleep(Duration::from_millis(20));
    }
    // Killed between sending and recording the delivery.
    drop(run);
    let first = rx.got();
    assert_eq!(first.len(), 1);
    rx.hold.store(false, Ordering::SeqCst);

    // The next ferry process: the interrupted delivery is still owed (pending, reserved
    // by the dead process); `ferry notify retry ID` sends it at once with the rest.
    let list = r.ferry(&["notify", "list", "--json"]);
    assert_code(&list, 0, "ferry notify list");
    let ids: Vec<String> = json(&list)["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].to_string())
        .collect();
    assert!(!ids.is_empty(), "the interrupted delivery is in the outbox");
    let mut args = vec!["notify", "retry"];
    args.extend(ids.iter().map(String::as_str));
    let retry = r.ferry(&args);
    assert_code(&retry, 0, "ferry notify retry IDS");

    let a_ids = event_ids(&r, A_KINDS);
    let b_ids = event_ids(&r, B_KINDS);
    let got = rx.got();
    let channels = per_channel(&got);
    let distinct = |v: &Vec<i64>| v.iter().copied().collect::<BTreeSet<i64>>();
    assert_eq!(distinct(&channels["/a"]), a_ids, "nothing lost on a");
    if let Some(b) = channels.get("/b") {
        assert_eq!(distinct(b), b_ids, "nothing lost on b");
    } else {
        assert!(b_ids.is_empty());
    }
    // The only duplicate is the delivery that was on the wire, with its event id.
    let mut seen = BTreeSet::new();
    let dups: Vec<&Got> = got
        .iter()
        .filter(|g| !seen.insert((g.0.clone(), g.1)))
        .collect();
    assert_eq!(
        dups.len(),
        1,
        "the interrupted delivery is sent again: {got:?}"
    );
    for d in dups {
        assert_eq!((&d.0, d.1), (&first[0].0, first[0].1));
    }
}

#[test]
fn serve_shows_the_outbox_and_retries_dead_letters_through_the_api() {
    use support::serve::{Server, TOKEN, get, request};
    let port = free_port();
    let r = repo(port);
    // Dead letters from a run while the receiver was down.
    assert_code(&r.ferry(&["run"]), 0, "ferry run");
    let server = Server::start(&r);
    let (code, v) = get(server.port, "/api/notifications");
    assert_eq!(code, 200, "{v}");
    let owed = v["deliveries"].as_array().unwrap().len();
    assert_eq!(owed, 9, "dead letters and pending deliveries: {v}");
    let (code, v) = get(server.port, "/api/notifications?dead=true&channel=a");
    assert_eq!(code, 200, "{v}");
    assert!(
        v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "dead" && d["channel"] == "a"),
        "{v}"
    );
    let (code, v) = get(server.port, "/api/notifications?dead=maybe");
    assert_eq!(code, 400, "{v}");

    let rx = Receiver::start(port);
    let body = br#"{"channel": "a"}"#;
    let (code, v) = request(server.port, "POST", "/api/notifications/retry", &[], body);
    assert_eq!(code, 401, "a token is needed: {v}");
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (code, v) = request(
        server.port,
        "POST",
        "/api/notifications/retry",
        &headers,
        br#"{"channel": "zzz"}"#,
    );
    assert_eq!(code, 404, "{v}");
    let (code, v) = request(
        server.port,
        "POST",
        "/api/notifications/retry",
        &headers,
        br#"{"ids": ["x"]}"#,
    );
    assert_eq!(code, 400, "{v}");
    let (code, v) = request(
        server.port,
        "POST",
        "/api/notifications/retry",
        &headers,
        body,
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["requeued"].as_u64().is_some(), "{v}");
    // The server's dispatcher delivers channel a's four, each once.
    let a_ids = event_ids(&r, A_KINDS);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = per_channel(&rx.got());
        if got.get("/a").is_some_and(|a| a.len() >= a_ids.len()) {
            assert_eq!(
                got["/a"],
                a_ids.iter().copied().collect::<Vec<_>>(),
                "{got:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {:?}", rx.got());
        thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = get(server.port, "/api/status");
        let a = v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == "a")
            .cloned()
            .unwrap();
        let now = (
            a["pending"].as_u64(),
            a["dead"].as_u64(),
            a["delivered"].as_u64(),
        );
        if now == (Some(0), Some(0), Some(4)) {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        thread::sleep(Duration::from_millis(50));
    }
    server.kill();
}

/// A plain SMTP server that refuses every recipient, as a mail server refuses an
/// unknown mailbox.
fn refusing_smtp() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                let _ = w.write_all(b"220 mail.test ESMTP\r\n");
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let up = line.trim_end().to_ascii_uppercase();
                    let reply: &[u8] = if up.starts_with("EHLO") || up.starts_with("HELO") {
                        b"250 mail.test\r\n"
                    } else if up.starts_with("MAIL FROM") || up == "RSET" || up == "NOOP" {
                        b"250 2.1.0 Ok\r\n"
                    } else if up.starts_with("RCPT TO") {
                        b"550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown\r\n"
                    } else if up == "QUIT" {
                        let _ = w.write_all(b"221 Bye\r\n");
                        return;
                    } else {
                        b"503 5.5.1 Error: need RCPT command\r\n"
                    };
                    let _ = w.write_all(reply);
                }
            });
        }
    });
    port
}

#[test]
fn a_refused_recipient_is_a_dead_letter_with_the_servers_answer() {
    let smtp = refusing_smtp();
    let r = Repo::new();
    r.write(
        "ferry.yml",
        &format!(
            r#"pipeline: mail-it
build:
  steps:
    - name: unit
      run: "true"
environments:
  - name: test
    deploy:
      command:
        run: "true"
notifications:
  - email:
      name: ops-mail
      smtp: 127.0.0.1:{smtp}
      tls: none
      from: ferry@example.com
      to: [nobody@example.com]
"#
        ),
    );
    r.write("README", "mail\n");
    r.commit("first");
    let run = r.ferry(&["run"]);
    assert_code(
        &run,
        0,
        "ferry run: a refused notification does not fail the run",
    );
    let dead = r.ferry(&["notify", "list", "--dead", "--json"]);
    assert_code(&dead, 0, "ferry notify list --dead");
    let v = json(&dead);
    let d = v["deliveries"].as_array().unwrap();
    assert_eq!(
        d.len(),
        2,
        "deployment_started and deployment_succeeded: {v}"
    );
    for item in d {
        assert_eq!(item["channel"], "ops-mail");
        assert_eq!(
            item["attempts"], 1,
            "a permanent refusal is not retried: {item}"
        );
        assert!(
            item["nextAttemptAt"].is_null(),
            "it waits for `ferry notify retry`: {item}"
        );
        let e = item["lastError"].as_str().unwrap();
        assert!(
            e.contains("550") && e.contains("Recipient address rejected: User unknown"),
            "the server's answer: {e}"
        );
    }
    let text = r.ferry(&["notify", "list"]);
    assert!(
        support::stdout(&text).contains("ops-mail"),
        "{}",
        describe(&text)
    );
    // Retrying asks the server again; still refused, exit 1, still dead.
    let retry = r.ferry(&["notify", "retry", "--channel", "ops-mail"]);
    assert_code(&retry, 1, "the server still refuses");
    let st = r.status();
    assert_eq!(st["notifications"][0]["dead"], 2, "{st}");
}
