//! The channels against real receivers on loopback: an HTTP receiver (webhook, Slack,
//! GitHub's statuses API) and an SMTP server written here, with STARTTLS over rustls and
//! a test CA (`tests/fixtures`: a CA certificate and a `localhost` server certificate
//! with its key, made with openssl for these tests only, valid for 100 years).

#![allow(clippy::unwrap_used)]

use ferry_config::SmtpTls;
use ferry_core::{Event, EventKind, RunId, Timestamp};
use ferry_engine::ports::{Attempt, Notifier};
use ferry_notify::{Email, Github, Options, Slack, Webhook, email::Settings};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// An HTTP/1.1 receiver on 127.0.0.1:0 answering each request with the next status of
/// `answers` (the last one repeats); `None` holds the connection without answering.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start(answers: Vec<Option<u16>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&got);
        thread::spawn(move || {
            let mut n = 0;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let answer = answers[n.min(answers.len() - 1)];
                n += 1;
                let seen = Arc::clone(&seen);
                thread::spawn(move || serve(stream, answer, &seen));
            }
        });
        Receiver { port, got }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, answer: Option<u16>, seen: &Mutex<Vec<Request>>) {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    seen.lock().unwrap().push(Request {
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let mut s = stream;
    match answer {
        Some(code) => {
            let text = format!("answer {code}");
            let _ = write!(
                s,
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
        None => thread::sleep(Duration::from_secs(5)),
    }
}

fn options() -> Options {
    let mut o = Options::new("shop", Some("https://github.com/acme/shop".into()));
    o.timeout = Duration::from_millis(800);
    o.env = |name| match name {
        "GH_TOKEN" => Some("ghp_test".into()),
        _ => None,
    };
    o
}

fn succeeded() -> Event {
    Event {
        at: Timestamp(1_769_508_000_000),
        kind: EventKind::DeploymentSucceeded,
        run: Some(RunId(3)),
        environment: Some("production".into()),
        message: "deployed abc123def to production in 45m 30s".into(),
        data: json!({
            "event": "deployment_succeeded",
            "environment": "production",
            "version": "abc123def",
            "duration": "45m 30s",
            "testResults": {"unitTests": "passed", "integrationTests": "passed", "e2eTests": "passed", "coverage": "85%"},
            "timestamp": "2026-01-27T10:45:30Z"
        }),
    }
}

fn kinds() -> Vec<String> {
    vec!["deployment_succeeded".into()]
}

#[test]
fn webhook_posts_the_seed_document_with_the_event_id() {
    let rx = Receiver::start(vec![Some(200)]);
    let hook = Webhook::new("hook".into(), kinds(), &rx.url("/events"), &options());
    let a = hook.deliver(17, &succeeded());
    assert!(
        matches!(&a, Attempt::Delivered(s) if s.contains("200")),
        "{a:?}"
    );
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/events");
    assert_eq!(got[0].headers["x-ferry-event-id"], "17");
    assert_eq!(got[0].headers["idempotency-key"], "ferry-event-17");
    assert_eq!(got[0].headers["content-type"], "application/json");
    let b = &got[0].body;
    assert_eq!(b["event"], "deployment_succeeded");
    assert_eq!(b["version"], "abc123def");
    assert_eq!(b["duration"], "45m 30s");
    assert_eq!(b["testResults"]["coverage"], "85%");
    assert_eq!(b["eventId"], 17);
}

#[test]
fn a_refusing_failing_or_silent_receiver_is_transient_and_a_4xx_permanent() {
    let rx = Receiver::start(vec![Some(500)]);
    let hook = Webhook::new("hook".into(), kinds(), &rx.url("/e"), &options());
    let a = hook.deliver(1, &succeeded());
    assert!(
        matches!(&a, Attempt::Transient(s) if s.contains("500") && s.contains("answer 500")),
        "{a:?}"
    );

    let rx = Receiver::start(vec![Some(404)]);
    let hook = Webhook::new("hook".into(), kinds(), &rx.url("/e"), &options());
    assert!(matches!(hook.deliver(1, &succeeded()), Attempt::Permanent(s) if s.contains("404")));

    let rx = Receiver::start(vec![Some(429)]);
    let hook = Webhook::new("hook".into(), kinds(), &rx.url("/e"), &options());
    assert!(matches!(
        hook.deliver(1, &succeeded()),
        Attempt::Transient(_)
    ));

    // Nobody listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = Webhook::new(
        "hook".into(),
        kinds(),
        &format!("http://127.0.0.1:{port}/e"),
        &options(),
    );
    let a = hook.deliver(1, &succeeded());
    assert!(
        matches!(&a, Attempt::Transient(s) if s.contains("webhook `hook`")),
        "{a:?}"
    );

    // Accepts and never answers: the call's timeout ends it.
    let rx = Receiver::start(vec![None]);
    let hook = Webhook::new("hook".into(), kinds(), &rx.url("/e"), &options());
    let a = hook.deliver(1, &succeeded());
    assert!(
        matches!(&a, Attempt::Transient(s) if s.contains("timed out")),
        "{a:?}"
    );
}

#[test]
fn slack_gets_blocks_with_commit_link_environment_version_duration_and_tests() {
    let rx = Receiver::start(vec![Some(200)]);
    let slack = Slack::new(
        "team".into(),
        kinds(),
        &rx.url("/services/T/B/X"),
        &options(),
    );
    assert!(matches!(
        slack.deliver(5, &succeeded()),
        Attempt::Delivered(_)
    ));
    let body = rx.requests()[0].body.clone();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("deployed abc123def")
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    let fields: Vec<String> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fields,
        [
            "*Environment*\nproduction",
            "*Version*\n<https://github.com/acme/shop/commit/abc123def|abc123def>",
            "*Duration*\n45m 30s",
            "*Tests*\nunit: passed, integration: passed, e2e: passed, coverage: 85%",
        ]
    );
}

#[test]
fn github_sets_a_commit_status_per_environment() {
    let rx = Receiver::start(vec![Some(201)]);
    let gh = Github::new(
        "gh".into(),
        kinds(),
        &rx.url("/api/v3/"),
        "acme/shop",
        "GH_TOKEN",
        &options(),
    );
    assert!(matches!(gh.deliver(9, &succeeded()), Attempt::Delivered(_)));
    let got = rx.requests();
    assert_eq!(got[0].path, "/api/v3/repos/acme/shop/statuses/abc123def");
    assert_eq!(got[0].headers["authorization"], "Bearer ghp_test");
    assert_eq!(got[0].body["state"], "success");
    assert_eq!(got[0].body["context"], "ferry/production");
    // An event that sets no status is done without a call.
    let mut step = succeeded();
    step.kind = EventKind::StepStarted;
    assert!(
        matches!(gh.deliver(10, &step), Attempt::Delivered(s) if s.contains("no commit status"))
    );
    assert_eq!(rx.requests().len(), 1);
    // No token: a dead letter that says where to put it.
    let gh = Github::new(
        "gh".into(),
        kinds(),
        &rx.url("/api/v3"),
        "acme/shop",
        "MISSING_TOKEN",
        &options(),
    );
    assert!(
        matches!(gh.deliver(9, &succeeded()), Attempt::Permanent(s) if s.contains("`MISSING_TOKEN` is not set"))
    );
}

/// What the SMTP server received in one session.
#[derive(Debug, Clone, Default)]
struct Mail {
    secure: bool,
    from: String,
    to: Vec<String>,
    data: String,
}

/// A small SMTP server (EHLO, MAIL, RCPT, DATA, QUIT) that refuses the recipients in
/// `refuse` with `550 5.1.1 <addr>: Recipient address rejected: no such user`.
fn smtp_server(refuse: &'static [&'static str]) -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&mails);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mails = Arc::clone(&out);
            thread::spawn(move || smtp_session(stream, refuse, &mails));
        }
    });
    (port, mails)
}

/// Speaks SMTP on `stream`; with `tls`, offers STARTTLS and carries on over TLS after
/// it (the whole session after STARTTLS is encrypted).
fn smtp_session(stream: TcpStream, refuse: &[&str], mails: &Mutex<Vec<Mail>>) {
    smtp_over(stream, refuse, mails, None);
}

fn smtp_over(
    stream: TcpStream,
    refuse: &[&str],
    mails: &Mutex<Vec<Mail>>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let mut w = stream.try_clone().unwrap();
    let _ = write!(w, "220 test.local ESMTP ready\r\n");
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            if tls.is_some() {
                let _ = write!(w, "250-test.local\r\n250 STARTTLS\r\n");
            } else {
                let _ = write!(w, "250-test.local\r\n250 8BITMIME\r\n");
            }
        } else if upper == "STARTTLS" && tls.is_some() {
            let _ = write!(w, "220 2.0.0 Ready to start TLS\r\n");
            let conn = rustls::ServerConnection::new(tls.clone().unwrap()).unwrap();
            let tls_stream = rustls::StreamOwned::new(conn, w);
            // After STARTTLS the client starts over with EHLO, now encrypted.
            commands(BufReader::new(tls_stream), refuse, mails, true);
            return;
        } else if upper == "QUIT" {
            let _ = write!(w, "221 2.0.0 Bye\r\n");
            return;
        } else {
            // Without STARTTLS, the plain session goes on as the encrypted one would.
            let rest = line;
            let stream = ReplayFirst {
                first: Some(rest.into_bytes()),
                inner: r,
                out: w,
            };
            commands(BufReader::new(stream), refuse, mails, false);
            return;
        }
    }
}

/// A stream that gives back one line already read before the rest.
struct ReplayFirst {
    first: Option<Vec<u8>>,
    inner: BufReader<TcpStream>,
    out: TcpStream,
}

impl Read for ReplayFirst {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(f) = self.first.take() {
            let n = f.len().min(buf.len());
            buf[..n].copy_from_slice(&f[..n]);
            if n < f.len() {
                self.first = Some(f[n..].to_vec());
            }
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl Write for ReplayFirst {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The SMTP commands after the greeting (and, with TLS, after STARTTLS).
fn commands<S: Read + Write>(
    mut r: BufReader<S>,
    refuse: &[&str],
    mails: &Mutex<Vec<Mail>>,
    secure: bool,
) {
    let mut mail = Mail::default();
    macro_rules! say {
        ($($t:tt)*) => {{
            let _ = write!(r.get_mut(), $($t)*);
            let _ = r.get_mut().flush();
        }};
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say!("250-test.local\r\n250 8BITMIME\r\n");
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = cmd[10..].trim().to_string();
            mail.secure = secure;
            say!("250 2.1.0 Ok\r\n");
        } else if upper.starts_with("RCPT TO:") {
            let to = cmd[8..].trim().trim_matches(['<', '>']).to_string();
            if refuse.contains(&to.as_str()) {
                say!("550 5.1.1 <{to}>: Recipient address rejected: no such user\r\n");
            } else {
                mail.to.push(to);
                say!("250 2.1.5 Ok\r\n");
            }
        } else if upper == "DATA" {
            say!("354 End data with <CR><LF>.<CR><LF>\r\n");
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                mail.data.push_str(&l);
            }
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            say!("250 2.0.0 Ok: queued as 42\r\n");
        } else if upper == "QUIT" {
            say!("221 2.0.0 Bye\r\n");
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            say!("250 Ok\r\n");
        } else {
            say!("502 5.5.2 Error: command not recognized\r\n");
        }
    }
}

fn email(port: u16, to: &[&str], tls: SmtpTls) -> Email {
    Email::new(
        "mail".into(),
        kinds(),
        Settings {
            smtp: format!("127.0.0.1:{port}"),
            tls,
            from: "ferry@example.com".into(),
            to: to.iter().map(|t| (*t).to_string()).collect(),
            username: None,
            password_env: None,
        },
        &options(),
    )
}

#[test]
fn email_goes_to_every_recipient_with_the_event_id_in_its_message_id() {
    let (port, mails) = smtp_server(&[]);
    let e = email(port, &["a@example.com", "b@example.com"], SmtpTls::None);
    let a = e.deliver(23, &succeeded());
    assert!(
        matches!(&a, Attempt::Delivered(s) if s.contains("250")),
        "{a:?}"
    );
    let got = mails.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "<ferry@example.com>");
    assert_eq!(got[0].to, ["a@example.com", "b@example.com"]);
    assert!(
        got[0]
            .data
            .contains("Message-ID: <ferry-event-23@shop.ferry>"),
        "{}",
        got[0].data
    );
    assert!(
        got[0]
            .data
            .contains("Subject: [ferry] shop: deployed abc123def to production"),
        "{}",
        got[0].data
    );
    assert!(
        got[0].data.contains("\"version\": \"abc123def\""),
        "{}",
        got[0].data
    );
}

#[test]
fn a_refused_recipient_is_a_dead_letter_with_the_servers_answer() {
    let (port, mails) = smtp_server(&["nobody@example.com"]);
    let e = email(port, &["nobody@example.com"], SmtpTls::None);
    let a = e.deliver(1, &succeeded());
    match a {
        Attempt::Permanent(s) => {
            assert!(s.contains("550"), "{s}");
            assert!(
                s.contains("Recipient address rejected: no such user"),
                "{s}"
            );
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert!(mails.lock().unwrap().is_empty());
}

#[test]
fn starttls_is_required_when_the_server_does_not_offer_it() {
    // The server offers no STARTTLS: ferry does not fall back to plain text.
    let (port, mails) = smtp_server(&[]);
    let e = email(port, &["a@example.com"], SmtpTls::Starttls);
    let a = e.deliver(1, &succeeded());
    assert!(
        matches!(&a, Attempt::Transient(_) | Attempt::Permanent(_)),
        "{a:?}"
    );
    assert!(
        mails.lock().unwrap().is_empty(),
        "nothing sent in the clear"
    );
}

#[test]
fn nobody_listening_for_smtp_is_transient() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = email(port, &["a@example.com"], SmtpTls::None);
    assert!(matches!(e.deliver(1, &succeeded()), Attempt::Transient(_)));
}

/// A server offering STARTTLS with a certificate for `localhost` from a test CA
/// (`tests/fixtures`); ferry trusts that CA through `SSL_CERT_FILE`.
fn starttls_server() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{dir}/server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&mails);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (mails, config) = (Arc::clone(&out), Arc::clone(&config));
            thread::spawn(move || smtp_over(stream, &[], &mails, Some(config)));
        }
    });
    (port, mails)
}

#[test]
fn email_over_starttls_with_a_private_ca() {
    let (port, mails) = starttls_server();
    let mut o = options();
    o.env = |name| match name {
        "SSL_CERT_FILE" => {
            Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca.pem").to_string())
        }
        _ => None,
    };
    let e = Email::new(
        "mail".into(),
        kinds(),
        Settings {
            smtp: format!("localhost:{port}"),
            tls: SmtpTls::Starttls,
            from: "ferry@example.com".into(),
            to: vec!["a@example.com".into()],
            username: None,
            password_env: None,
        },
        &o,
    );
    let a = e.deliver(31, &succeeded());
    assert!(matches!(&a, Attempt::Delivered(_)), "{a:?}");
    let got = mails.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].secure, "the message went after STARTTLS, encrypted");
    assert!(
        got[0]
            .data
            .contains("Message-ID: <ferry-event-31@shop.ferry>")
    );

    // Without the CA the server's certificate is not trusted: nothing is sent.
    let (port, mails) = starttls_server();
    let e = Email::new(
        "mail".into(),
        kinds(),
        Settings {
            smtp: format!("localhost:{port}"),
            tls: SmtpTls::Starttls,
            from: "ferry@example.com".into(),
            to: vec!["a@example.com".into()],
            username: None,
            password_env: None,
        },
        &options(),
    );
    let a = e.deliver(32, &succeeded());
    assert!(!matches!(&a, Attempt::Delivered(_)), "{a:?}");
    assert!(mails.lock().unwrap().is_empty());
}
