//! The `prometheus` alarm source against a real Prometheus server (Debian's
//! `prometheus` package) scraping a metrics endpoint this test serves, plus canned
//! answers for what a real server will not easily produce.
#![allow(clippy::unwrap_used)]

mod common;

use common::eventually;
use ferry_config::{Alarm, AlarmSource, Comparison, MissingData};
use ferry_core::alarm::Datapoint;
use ferry_engine::ports::AlarmProbe;
use ferry_local::probe::LocalProbe;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// Where Debian's `prometheus` package puts the server (else: `prometheus` on `PATH`).
const PROMETHEUS: &str = "/usr/bin/prometheus";

fn alarm(url: &str, query: &str, threshold: f64, comparison: Comparison) -> Alarm {
    Alarm {
        name: "errors".into(),
        source: AlarmSource::Prometheus {
            url: url.into(),
            query: query.into(),
            threshold,
            comparison,
        },
        period: Duration::from_secs(1),
        evaluation_periods: 1,
        datapoints_to_alarm: 1,
        missing_data: MissingData::Missing,
        environment: None,
        advisory: false,
    }
}

fn sample(url: &str, query: &str, threshold: f64, comparison: Comparison) -> (Datapoint, String) {
    LocalProbe.sample(&alarm(url, query, threshold, comparison))
}

/// Reads one request's head from `s`, returning its first line.
fn read_request_line(s: &mut TcpStream) -> String {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 64 * 1024 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A `/metrics` endpoint on 127.0.0.1 exposing the gauge `ferry_test_errors`, whose
/// value the test sets. Stops serving when dropped.
struct Metrics {
    port: u16,
    value: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Metrics {
    fn start(initial: f64) -> Metrics {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let value = Arc::new(AtomicU64::new(initial.to_bits()));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, st) = (value.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                let line = read_request_line(&mut s);
                let response = if line.starts_with("GET /metrics") {
                    let body = format!(
                        "# HELP ferry_test_errors Errors, as the test says.\n\
                         # TYPE ferry_test_errors gauge\n\
                         ferry_test_errors {}\n",
                        f64::from_bits(v.load(Ordering::SeqCst))
                    );
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_owned()
                };
                let _ = s.write_all(response.as_bytes());
            }
        });
        Metrics {
            port,
            value,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Ordering::SeqCst);
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Prometheus server on a free loopback port (never 9090, where a system service may
/// listen), killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, scrape_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: ferry_test\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{scrape_port}']\n"
            ),
        )
        .unwrap();
        let port = loop {
            let p = common::free_port();
            if p != 9090 {
                break p;
            }
        };
        let log = dir.path().join("prometheus.log");
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Prometheus {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log, for failure messages.
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until `/-/ready` answers 200; fails with the log otherwise.
    fn wait_ready(&mut self) {
        let url = format!("{}/-/ready", self.url());
        let ready = eventually(Duration::from_secs(60), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited early ({status}):\n{}", self.log());
            }
            ferry_local::http_get_status(&url, Duration::from_secs(2)) == Ok(200)
        });
        assert!(
            ready,
            "prometheus not ready within 60s on port {}:\n{}",
            self.port,
            self.log()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Prometheus binary, or `None` when the test is to be skipped. Missing without
/// `FERRY_SKIP_PROMETHEUS=1` is a failure: CI must run this test.
fn prometheus_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("prometheus"));
    if let Some(found) = std::iter::once(PathBuf::from(PROMETHEUS))
        .chain(on_path)
        .find(|p| p.is_file())
    {
        return Some(found);
    }
    if std::env::var("FERRY_SKIP_PROMETHEUS").as_deref() == Ok("1") {
        eprintln!(
            "skipping the Prometheus integration test: {PROMETHEUS} is absent and \
             FERRY_SKIP_PROMETHEUS=1 is set"
        );
        return None;
    }
    panic!(
        "{PROMETHEUS} is absent: run `.ci/run` (it installs it) or \
         `apt-get install prometheus`; set FERRY_SKIP_PROMETHEUS=1 to skip this test"
    );
}

/// Samples until `want` comes back (bounded: scrapes are every second), returning the
/// last detail; fails with the last sample and the server's log otherwise.
fn wait_for(
    prom: &Prometheus,
    query: &str,
    threshold: f64,
    comparison: Comparison,
    want: Datapoint,
) -> String {
    let mut last = (Datapoint::Missing, String::new());
    let seen = eventually(Duration::from_secs(60), || {
        last = sample(&prom.url(), query, threshold, comparison);
        if last.0 != want {
            thread::sleep(Duration::from_millis(200));
        }
        last.0 == want
    });
    assert!(
        seen,
        "`{query}` never gave {want:?}; last: {last:?}\nprometheus log:\n{}",
        prom.log()
    );
    last.1
}

#[test]
fn a_real_prometheus_drives_the_alarm() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let metrics = Metrics::start(0.0);
    let mut prom = Prometheus::start(&binary, metrics.port);
    prom.wait_ready();

    // Gauge at 0: once scraped, the query sees it and does not breach `> 1`.
    let detail = wait_for(
        &prom,
        "ferry_test_errors",
        1.0,
        Comparison::GreaterThan,
        Datapoint::NotBreaching,
    );
    assert_eq!(detail, "value 0, not > 1 (ferry_test_errors)");

    // A trailing slash on the base URL and a query that needs percent-encoding.
    let query = r#"sum(ferry_test_errors{job="ferry_test", instance=~"127.0.0.1:.+"}) + 0"#;
    let (d, detail) = sample(
        &format!("{}/", prom.url()),
        query,
        1.0,
        Comparison::GreaterThan,
    );
    assert_eq!(d, Datapoint::NotBreaching, "{detail}");
    assert_eq!(detail, format!("value 0, not > 1 ({query})"));

    // A scalar result.
    let (d, detail) = sample(
        &prom.url(),
        "scalar(ferry_test_errors)",
        -1.0,
        Comparison::GreaterThan,
    );
    assert_eq!(d, Datapoint::Breaching, "{detail}");
    assert_eq!(detail, "value 0 > -1 (scalar(ferry_test_errors))");

    // Two series (the gauge, 0, and a constant 7): the worst one per comparison.
    let two = "ferry_test_errors or vector(7)";
    let (d, detail) = sample(&prom.url(), two, 5.0, Comparison::GreaterThan);
    assert_eq!(d, Datapoint::Breaching, "{detail}");
    assert!(detail.starts_with("value 7 > 5 ("), "{detail}");
    assert!(detail.contains("max of 2 series, from {}"), "{detail}");
    let (d, detail) = sample(&prom.url(), two, 3.0, Comparison::LessThan);
    assert_eq!(d, Datapoint::Breaching, "{detail}");
    assert!(detail.starts_with("value 0 < 3 ("), "{detail}");
    assert!(
        detail.contains(r#"min of 2 series, from ferry_test_errors{instance="127.0.0.1:"#),
        "{detail}"
    );

    // An answer above Go's 4 KiB write buffer comes back `Transfer-Encoding: chunked`.
    let many: Vec<String> = (0..150)
        .map(|i| format!(r#"label_replace(vector({i}), "i", "{i}", "", "")"#))
        .collect();
    let (d, detail) = sample(
        &prom.url(),
        &many.join(" or "),
        100.0,
        Comparison::GreaterThan,
    );
    assert_eq!(d, Datapoint::Breaching, "{detail}");
    assert!(detail.starts_with("value 149 > 100 ("), "{detail}");
    assert!(
        detail.ends_with(r#"; max of 150 series, from {i="149"})"#),
        "{detail}"
    );

    // Gauge to 5: breaching once the next scrape lands.
    metrics.set(5.0);
    let detail = wait_for(
        &prom,
        "ferry_test_errors",
        1.0,
        Comparison::GreaterThan,
        Datapoint::Breaching,
    );
    assert_eq!(detail, "value 5 > 1 (ferry_test_errors)");

    // A series nobody exports.
    let (d, detail) = sample(
        &prom.url(),
        "ferry_no_such_metric",
        1.0,
        Comparison::GreaterThan,
    );
    assert_eq!(d, Datapoint::Missing, "{detail}");
    assert_eq!(detail, "query returned no series (ferry_no_such_metric)");

    // NaN is no datapoint.
    let (d, detail) = sample(
        &prom.url(),
        "scalar(vector(0) / 0)",
        1.0,
        Comparison::GreaterThan,
    );
    assert_eq!(d, Datapoint::Missing, "{detail}");

    // Invalid PromQL: Prometheus' own error text.
    let (d, detail) = sample(&prom.url(), "sum(rate(", 1.0, Comparison::GreaterThan);
    assert_eq!(d, Datapoint::Missing, "{detail}");
    assert!(
        detail.starts_with("Prometheus error (bad_data): ") && detail.contains("parse error"),
        "{detail}"
    );

    // A path Prometheus does not serve (wrong base URL): the status says why.
    let (d, detail) = sample(
        &format!("{}/nope", prom.url()),
        "ferry_test_errors",
        1.0,
        Comparison::GreaterThan,
    );
    assert_eq!(d, Datapoint::Missing, "{detail}");
    assert!(detail.contains("HTTP 404"), "{detail}");

    // Prometheus gone: missing, with the reason.
    let url = prom.url();
    drop(prom);
    let (d, detail) = sample(&url, "ferry_test_errors", 1.0, Comparison::GreaterThan);
    assert_eq!(d, Datapoint::Missing, "{detail}");
    assert!(
        detail.starts_with("no answer from Prometheus at "),
        "{detail}"
    );
}

/// Serves `response` to every connection, recording the request lines.
fn canned(response: String) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let line = read_request_line(&mut s);
            s2.lock().unwrap().push(line);
            let _ = s.write_all(response.as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn a_chunked_answer_is_decoded() {
    // What Go's net/http sends for a body it streams: chunked, split anywhere.
    let pieces = [
        r#"{"status":"success","data":"#,
        r#"{"resultType":"vector","result":[{"metric":{},"value":[1,"2"#,
        r#".5"]}]"#,
        "}}",
    ];
    let mut response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
        .to_owned();
    for p in pieces {
        response.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
    }
    response.push_str("0\r\n\r\n");
    let (port, seen) = canned(response);
    let (d, detail) = sample(
        &format!("http://127.0.0.1:{port}"),
        "rate(x[1m]) > 0",
        2.0,
        Comparison::GreaterThan,
    );
    assert_eq!(
        (d, detail.as_str()),
        (Datapoint::Breaching, "value 2.5 > 2 (rate(x[1m]) > 0)")
    );
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["GET /api/v1/query?query=rate%28x%5B1m%5D%29%20%3E%200 HTTP/1.1"]
    );
}

#[test]
fn no_server_is_missing_data() {
    let port = common::free_port();
    let (d, detail) = sample(
        &format!("http://127.0.0.1:{port}"),
        "up",
        1.0,
        Comparison::GreaterThan,
    );
    assert_eq!(d, Datapoint::Missing, "{detail}");
    assert!(detail.contains("no answer from Prometheus"), "{detail}");
}
