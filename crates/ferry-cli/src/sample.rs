//! The demo's sample application and its tests, built into the binary so the demo needs
//! nothing but ferry and git: a small HTTP service that serves the release it was
//! started from, and a smoke check that writes a real JUnit report.

use crate::error::{CliError, CliResult};
use ferry_api::exit;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

/// Serves, from the current folder (a release): `/health` (200; 503 when the release
/// contains a file named `unhealthy`; 500 once the number of seconds in a file named
/// `site/fail-after` has passed since start — a release that goes bad after a while),
/// `/version` (`$FERRY_VERSION`), and `/` (the file `site/index.html`).
pub fn serve(port: u16) -> CliResult<i32> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| CliError::environment(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let version = std::env::var("FERRY_VERSION").unwrap_or_else(|_| "unknown".to_string());
    eprintln!("sample service {version} listening on http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let fail_after = std::fs::read_to_string("site/fail-after")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(Duration::from_secs_f64);
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let version = version.clone();
        let failing = fail_after.is_some_and(|d| started.elapsed() >= d);
        std::thread::spawn(move || {
            let _ = answer(stream, &version, failing);
        });
    }
    Ok(exit::OK)
}

fn answer(mut stream: TcpStream, version: &str, failing: bool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers.
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l)? == 0 || l == "\r\n" || l == "\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/health" if Path::new("unhealthy").exists() => {
            ("503 Service Unavailable", "unhealthy\n".to_string())
        }
        "/health" if failing => (
            "500 Internal Server Error",
            "error: the new cache layer is exhausted\n".to_string(),
        ),
        "/health" => ("200 OK", "ok\n".to_string()),
        "/version" => ("200 OK", format!("{version}\n")),
        "/" => match std::fs::read_to_string("site/index.html") {
            Ok(s) => ("200 OK", s),
            Err(_) => (
                "404 Not Found",
                "no site/index.html in this release\n".to_string(),
            ),
        },
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Checks a deployed sample service: health answers 200, `/version` is the version
/// being tested (`$FERRY_VERSION`), the home page contains `expect`. Writes one JUnit
/// test case per check; exits 1 when any fails.
pub fn smoke(url: &str, junit: &Path, expect: Option<&str>) -> CliResult<i32> {
    let base = url.trim_end_matches('/');
    let want_version = std::env::var("FERRY_VERSION").unwrap_or_default();
    let timeout = Duration::from_secs(3);
    let mut cases: Vec<(String, Option<String>)> = Vec::new();

    let health = ferry_local::http::http_get(&format!("{base}/health"), timeout);
    cases.push((
        "health answers 200".into(),
        match &health {
            Ok((200, _)) => None,
            Ok((s, _)) => Some(format!("status {s}")),
            Err(e) => Some(e.clone()),
        },
    ));
    let version = ferry_local::http::http_get(&format!("{base}/version"), timeout);
    cases.push((
        "serves the version under test".into(),
        match &version {
            Ok((200, b)) if String::from_utf8_lossy(b).trim() == want_version => None,
            Ok((s, b)) => Some(format!(
                "status {s}, version `{}`, expected `{want_version}`",
                String::from_utf8_lossy(b).trim()
            )),
            Err(e) => Some(e.clone()),
        },
    ));
    if let Some(text) = expect {
        let home = ferry_local::http::http_get(&format!("{base}/"), timeout);
        cases.push((
            format!("home page says “{text}”"),
            match &home {
                Ok((200, b)) if String::from_utf8_lossy(b).contains(text) => None,
                Ok((s, b)) => Some(format!(
                    "status {s}, page: {}",
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(80)
                        .collect::<String>()
                        .trim()
                )),
                Err(e) => Some(e.clone()),
            },
        ));
    }

    let failures = cases.iter().filter(|(_, f)| f.is_some()).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"{}\" failures=\"{failures}\">\n  <testsuite name=\"smoke\" tests=\"{}\" failures=\"{failures}\">\n",
        cases.len(),
        cases.len()
    );
    for (name, failure) in &cases {
        match failure {
            None => {
                xml.push_str(&format!(
                    "    <testcase classname=\"smoke\" name=\"{}\"/>\n",
                    esc(name)
                ));
                println!("ok   {name}");
            }
            Some(f) => {
                xml.push_str(&format!(
                    "    <testcase classname=\"smoke\" name=\"{}\"><failure message=\"{}\"/></testcase>\n",
                    esc(name),
                    esc(f)
                ));
                println!("FAIL {name}: {f}");
            }
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    if let Some(dir) = junit.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(junit, xml)
        .map_err(|e| CliError::environment(format!("cannot write `{}`: {e}", junit.display())))?;
    Ok(if failures == 0 {
        exit::OK
    } else {
        exit::RUN_FAILED
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
