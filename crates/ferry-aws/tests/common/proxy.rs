//! Fault injection in front of the real moto: a small HTTP/1.1 reverse proxy on a free
//! loopback port that forwards every request to moto and passes moto's answer back,
//! except that a script of faults replaces moto's answer for the first N requests of a
//! call with the error AWS documents for throttling. It is not a mock of any API: every
//! answer that is not a scripted fault is moto's.
//!
//! A call is named by what the SDK sends: DynamoDB's `X-Amz-Target` header
//! (`DynamoDB_20120810.PutItem`), the query protocol's `Action=` of the form body
//! (`Action=Publish` for SNS, `Action=DescribeAlarms` for CloudWatch), and for S3 the
//! method and path (`PUT /site/production/current`). A fault's pattern matches the calls
//! that start with it. Every request is counted under its call, faulted or not.
//!
//! One request per connection: the proxy answers with `Connection: close`, so the SDK
//! opens a fresh connection for each attempt.
#![allow(dead_code, clippy::unwrap_used)]

use ferry_aws::Settings;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The error a fault answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// DynamoDB: 400 `ProvisionedThroughputExceededException` (JSON 1.0 protocol).
    DynamoThrottle,
    /// The query protocol (SNS, CloudWatch): 400 `Throttling` (`ErrorResponse` XML).
    QueryThrottle,
    /// S3: 503 `SlowDown`.
    S3SlowDown,
    /// Not an error: moto's own answer with every `<StackStatus>` rewritten to
    /// `UPDATE_IN_PROGRESS`, as CloudFormation answers `DescribeStacks` while an update
    /// runs (moto finishes its operations at once, so it never shows one).
    StackUpdating,
}

struct Fault {
    pattern: String,
    /// `None`: every time.
    remaining: Option<usize>,
    answer: Answer,
}

#[derive(Default)]
struct Script {
    faults: Vec<Fault>,
    seen: HashMap<String, usize>,
}

/// A running proxy; stopped when dropped.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`, for `Settings::endpoint`.
    pub endpoint: String,
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Proxy {
    /// A proxy in front of `upstream` (moto's `http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let script = script.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let script = script.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, upstream, &script);
                    });
                }
            })
        };
        Proxy {
            endpoint: format!("http://{addr}"),
            addr,
            script,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers the first `times` requests of the calls starting with `pattern` with
    /// `answer` instead of moto's.
    pub fn fail(&self, pattern: &str, times: usize, answer: Answer) {
        self.script.lock().unwrap().faults.push(Fault {
            pattern: pattern.to_string(),
            remaining: Some(times),
            answer,
        });
    }

    /// Answers every request of the calls starting with `pattern` with `answer`.
    pub fn fail_always(&self, pattern: &str, answer: Answer) {
        self.script.lock().unwrap().faults.push(Fault {
            pattern: pattern.to_string(),
            remaining: None,
            answer,
        });
    }

    /// Forgets the faults and the counts.
    pub fn reset(&self) {
        let mut s = self.script.lock().unwrap();
        s.faults.clear();
        s.seen.clear();
    }

    /// Requests seen of the calls starting with `pattern` (faulted or not).
    pub fn seen(&self, pattern: &str) -> usize {
        self.script
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|(call, _)| call.starts_with(pattern))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every call seen, with its count (for failure messages).
    pub fn calls(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .script
            .lock()
            .unwrap()
            .seen
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort();
        v
    }

    /// Settings that reach moto through this proxy with `attempts` attempts per call.
    pub fn settings(&self, attempts: u32) -> Settings {
        Settings {
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint.clone()),
            credentials: Some(("testing".into(), "testing".into())),
            max_attempts: Some(attempts),
        }
    }
}

/// One request: read it, count it, answer with a fault or forward it to moto.
fn serve(client: TcpStream, upstream: SocketAddr, script: &Mutex<Script>) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    // The body, kept as it came (chunked bodies stay chunked for moto).
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            body.extend_from_slice(size_line.as_bytes());
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                loop {
                    let mut trailer = String::new();
                    if reader.read_line(&mut trailer)? == 0 {
                        break;
                    }
                    body.extend_from_slice(trailer.as_bytes());
                    if trailer == "\r\n" {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
        }
    }

    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let call = call_of(&method, &target, header("x-amz-target"), &body);
    let fault = {
        let mut s = script.lock().unwrap();
        *s.seen.entry(call.clone()).or_default() += 1;
        let mut answer = None;
        for f in &mut s.faults {
            if !call.starts_with(&f.pattern) {
                continue;
            }
            match &mut f.remaining {
                None => answer = Some(f.answer),
                Some(0) => continue,
                Some(n) => {
                    *n -= 1;
                    answer = Some(f.answer);
                }
            }
            break;
        }
        answer
    };
    let rewrite = fault == Some(Answer::StackUpdating);
    if let Some(answer) = fault.filter(|a| *a != Answer::StackUpdating) {
        let (status, content_type, text) = fault_answer(answer);
        writer.write_all(
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-amzn-requestid: ferry-proxy-fault\r\nconnection: close\r\n\r\n{text}",
                text.len()
            )
            .as_bytes(),
        )?;
        writer.flush()?;
        return Ok(());
    }

    // Forward to moto with `Connection: close`, read its whole answer.
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = request_line.clone();
    for (k, v) in &headers {
        let lower = k.to_ascii_lowercase();
        if lower == "connection" || lower == "expect" || lower == "keep-alive" {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    up.flush()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    if rewrite {
        answer = stack_updating(&answer);
    }
    // Pass it back with `Connection: close` in its head, whatever moto said.
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n");
    writer.write_all(out.as_bytes())?;
    // `answer[split..]` is the blank line ending the head, then the body; the head's
    // last line already has its `\r\n`.
    writer.write_all(answer.get(split + 2..).unwrap_or(b"\r\n"))?;
    writer.flush()?;
    Ok(())
}

/// `answer` (a whole HTTP response) with every `<StackStatus>` set to
/// `UPDATE_IN_PROGRESS` and its `content-length` made to match.
fn stack_updating(answer: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(answer).to_string();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return answer.to_vec();
    };
    let mut out_body = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("<StackStatus>") {
        let after = &rest[i + "<StackStatus>".len()..];
        let Some(j) = after.find("</StackStatus>") else {
            break;
        };
        out_body.push_str(&rest[..i]);
        out_body.push_str("<StackStatus>UPDATE_IN_PROGRESS</StackStatus>");
        rest = &after[j + "</StackStatus>".len()..];
    }
    out_body.push_str(rest);
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("content-length: {}", out_body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\r\n\r\n{out_body}", head.join("\r\n")).into_bytes()
}

/// The call a request makes (see the module doc).
fn call_of(method: &str, target: &str, amz_target: Option<String>, body: &[u8]) -> String {
    if let Some(t) = amz_target {
        return t;
    }
    let text = String::from_utf8_lossy(body);
    if let Some(action) = text.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return format!("Action={action}");
    }
    let path = target.split('?').next().unwrap_or(target);
    format!("{method} {path}")
}

fn fault_answer(answer: Answer) -> (&'static str, &'static str, String) {
    match answer {
        Answer::DynamoThrottle => (
            "400 Bad Request",
            "application/x-amz-json-1.0",
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."}"#.to_string(),
        ),
        Answer::QueryThrottle => (
            "400 Bad Request",
            "text/xml",
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>ferry-proxy-fault</RequestId></ErrorResponse>".to_string(),
        ),
        Answer::S3SlowDown => (
            "503 Slow Down",
            "application/xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>ferry-proxy-fault</RequestId><HostId>ferry-proxy</HostId></Error>"#.to_string(),
        ),
        Answer::StackUpdating => ("200 OK", "text/xml", String::new()),
    }
}
