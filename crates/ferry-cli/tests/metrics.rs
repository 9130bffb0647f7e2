//! Observability of ferry itself, with the real binary on real temporary repositories:
//! `GET /metrics` (checked by a Rust parser of the text format, by `promtool check
//! metrics`, and scraped by a real Prometheus server queried over its HTTP API), the
//! alarm on the pipeline itself after 4 failed runs, `--log-format json` lines, and a
//! secret in a step's environment that never shows up in logs, events, the API or the
//! terminal.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::serve::{SECRET, TOKEN, get};
use support::{Repo, describe, ferry_cmd, free_port, yaml_str};

/// A build step writing a JUnit report (3 cases, 2 passed, 1 skipped) whose script comes
/// from the commit (`ci/build.sh`: a commit makes it fail), and one environment deployed
/// by a command.
fn pipeline(repo: &Repo) {
    repo.write_exec(
        "ops/deploy.sh",
        "#!/bin/sh\necho \"deploy $FERRY_ENV $FERRY_VERSION\"\n",
    );
    let deploy = yaml_str(&format!("sh '{}'", repo.join("ops/deploy.sh").display()));
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: observed\nbuild:\n  steps:\n    - name: unit\n      run: ./ci/build.sh\n      reports:\n        junit: reports/unit.xml\n  artifact: dist\nenvironments:\n  - name: staging\n    deploy:\n      command:\n        run: {deploy}\n"
        ),
    );
    repo.write(".gitignore", ".ferry/\ndist/\nops/\nreports/\n");
    build_script(repo, 0);
}

fn build_script(repo: &Repo, exit: i32) {
    repo.write_exec(
        "ci/build.sh",
        &format!(
            "#!/bin/sh\nmkdir -p dist reports\necho $FERRY_VERSION > dist/VERSION\ncat > reports/unit.xml <<'EOF'\n<testsuite name=\"unit\" tests=\"3\"><testcase name=\"a\"/><testcase name=\"b\"/><testcase name=\"c\"><skipped/></testcase></testsuite>\nEOF\nexit {exit}\n"
        ),
    );
}

/// `ferry serve` with its secrets, stdout read for the address (and kept for more
/// lines); killed on drop.
struct Served {
    child: Child,
    port: u16,
}

impl Served {
    fn start(repo: &Repo, extra: &[&str]) -> Served {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut cmd = ferry_cmd(repo.path(), &args);
        cmd.env("FERRY_WEBHOOK_SECRET", SECRET)
            .env("FERRY_API_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // A text line or a JSON object: the address is the last `:PORT` of the message.
        let message = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| first.trim().to_string());
        let port = message
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("ferry serve printed no address: {first:?}"));
        Served { child, port }
    }

    /// Stops it (SIGKILL) and returns what it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        err
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET a path; the status and the body as text.
fn get_text(port: u16, path: &str) -> (u16, String, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // The server answers with a length (no chunking) for this body.
    (status, head.to_string(), body.to_string())
}

/// A sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text exposition format strictly enough to catch mistakes: every
/// sample belongs to a family announced by `# HELP` and `# TYPE` (histogram samples by
/// their `_bucket`, `_sum`, `_count` suffixes), names and label names are valid, label
/// values are quoted with only `\\`, `\"`, `\n` escapes, values are numbers.
fn parse_exposition(text: &str) -> Result<(BTreeMap<String, String>, Vec<Sample>), String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for (no, line) in text.lines().enumerate() {
        let no = no + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or(format!("line {no}: HELP without text"))?;
            if helps.insert(name.into(), help.into()).is_some() {
                return Err(format!("line {no}: second HELP for {name}"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or(format!("line {no}: TYPE without kind"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("line {no}: unknown type {kind}"));
            }
            if types.insert(name.into(), kind.into()).is_some() {
                return Err(format!("line {no}: second TYPE for {name}"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(format!("line {no}: no value")),
        };
        if !valid_name(name) {
            return Err(format!("line {no}: bad metric name {name:?}"));
        }
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            loop {
                let start = match chars.peek() {
                    Some((_, '}')) => {
                        end = Some(chars.next().unwrap().0);
                        break;
                    }
                    Some((i, _)) => *i,
                    None => break,
                };
                let eq = r[start..]
                    .find('=')
                    .ok_or(format!("line {no}: label without ="))?
                    + start;
                let lname = &r[start..eq];
                if !valid_name(lname) || lname.contains(':') {
                    return Err(format!("line {no}: bad label name {lname:?}"));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(format!("line {no}: label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            other => return Err(format!("line {no}: bad escape {other:?}")),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => return Err(format!("line {no}: unterminated label value")),
                    }
                }
                labels.insert(lname.to_string(), value);
                if let Some((_, ',')) = chars.peek() {
                    chars.next();
                }
            }
            let end = end.ok_or(format!("line {no}: labels not closed"))?;
            rest = &r[end + 1..];
        }
        let value = rest.trim();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .map_err(|_| format!("line {no}: bad value {v:?}"))?,
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        if !types.contains_key(family) || !helps.contains_key(family) {
            return Err(format!("line {no}: {name} has no HELP and TYPE before it"));
        }
        samples.push((name.to_string(), labels, value));
    }
    Ok((types, samples))
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

fn run_ok(repo: &Repo, code: i32) {
    let out = repo.ferry(&["run"]);
    assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
}

/// `promtool check metrics` on the text: its exit code and output.
fn promtool(text: &str) -> Option<(bool, String)> {
    let bin = Path::new("/usr/bin/promtool");
    if !bin.exists() {
        return None;
    }
    let mut child = Command::new(bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// A Prometheus server on loopback scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Option<Prometheus> {
        let bin = PathBuf::from("/usr/bin/prometheus");
        if !bin.exists() {
            assert!(
                std::env::var_os("FERRY_SKIP_PROMETHEUS").is_some(),
                "prometheus is not installed at /usr/bin/prometheus: `apt-get install prometheus`; set FERRY_SKIP_PROMETHEUS=1 to skip"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: ferry\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Some(Prometheus { child, port, dir })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Polls an instant query until `want` holds for its result.
    fn wait_for(&mut self, query: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            let path = format!("/api/v1/query?query={}", urlencode(query));
            if support::listening(self.port) {
                let (code, v) = get(self.port, &path);
                if code == 200 && want(&v["data"]["result"]) {
                    return v;
                }
                last = v;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "`{query}` never matched; last answer: {last:#}\nlog:\n{}",
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

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn metrics_are_valid_scraped_by_prometheus_and_four_failures_raise_the_pipeline_alarm() {
    let repo = Repo::new();
    pipeline(&repo);
    let good = repo.commit("good");
    run_ok(&repo, 0);
    // Four failed runs within the hour: the fourth crosses the threshold.
    build_script(&repo, 1);
    repo.commit("broken build");
    for i in 0..4 {
        run_ok(&repo, 1);
        let st = repo.status();
        let alarm = st["pipeline_alarms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "ferry.failed_runs")
            .cloned()
            .unwrap();
        let want = if i == 3 { "ALARM" } else { "OK" };
        assert_eq!(alarm["state"], want, "after failure {}: {st:#}", i + 1);
    }
    // A fifth failure in the same hour: still ALARM, no second event.
    run_ok(&repo, 1);
    let text = String::from_utf8_lossy(&repo.ferry(&["status"]).stdout).into_owned();
    assert!(
        text.contains("PIPELINE ALARM ferry.failed_runs: 4 failed runs"),
        "the crossing is what it tells: {text}"
    );

    let server = Served::start(&repo, &[]);
    let port = server.port;
    let (code, v) = get(port, "/api/events?kind=pipeline_alarm");
    assert_eq!(code, 200, "{v:#}");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "once per crossing: {v:#}");
    let data = &events[0]["data"];
    assert_eq!(data["alarm"], "ferry.failed_runs", "{v:#}");
    assert_eq!(data["count"], 4, "{v:#}");
    assert_eq!(data["windowSeconds"], 3600, "{v:#}");
    let (_, st) = get(port, "/api/status");
    assert_eq!(st["pipeline_alarms"][0]["state"], "ALARM", "{st:#}");

    // /metrics: no token needed, the text format's content type, a valid document.
    let (code, head, text) = get_text(port, "/metrics");
    assert_eq!(code, 200, "{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let (types, samples) = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, kind) in [
        ("ferry_deployment_duration_seconds", "histogram"),
        ("ferry_rollbacks_total", "counter"),
        ("ferry_test_success_ratio", "gauge"),
        ("ferry_pipeline_runs_total", "counter"),
        ("ferry_environment_version_info", "gauge"),
        ("ferry_alarm_state", "gauge"),
    ] {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(kind),
            "{name}\n{text}"
        );
    }
    assert_eq!(
        value(
            &samples,
            "ferry_pipeline_runs_total",
            &[("result", "failed")]
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "ferry_pipeline_runs_total",
            &[("result", "succeeded")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "ferry_environment_version_info",
            &[("environment", "staging"), ("version", &good)]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "ferry_deployment_duration_seconds_count",
            &[("environment", "staging")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "ferry_deployment_duration_seconds_bucket",
            &[("environment", "staging"), ("le", "+Inf")]
        ),
        Some(1.0),
        "{text}"
    );
    // The newest finished run with test results: 2 passed of 2 run (the skipped one
    // does not count).
    assert_eq!(
        value(&samples, "ferry_test_success_ratio", &[("suite", "unit")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "ferry_alarm_state",
            &[("alarm", "ferry.failed_runs")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "ferry_alarm_state",
            &[("alarm", "ferry.rollbacks")]
        ),
        Some(0.0),
        "{text}"
    );
    // No notification channel is configured: nothing waits in the outbox.
    assert_eq!(
        value(&samples, "ferry_outbox_pending", &[]),
        Some(0.0),
        "{text}"
    );

    if let Some((ok, out)) = promtool(&text) {
        assert!(ok, "promtool check metrics: {out}\n{text}");
        println!("promtool check metrics: ok {out}");
    }

    // A real Prometheus scrapes it; its HTTP API answers with ferry's series.
    if let Some(mut prom) = Prometheus::start(port) {
        let v = prom.wait_for("ferry_pipeline_runs_total{result=\"failed\"}", |r| {
            r.as_array().is_some_and(|a| !a.is_empty())
        });
        let result = &v["data"]["result"][0];
        assert_eq!(result["metric"]["job"], "ferry", "{v:#}");
        assert_eq!(result["value"][1], "5", "{v:#}");
        let v = prom.wait_for("ferry_alarm_state{alarm=\"ferry.failed_runs\"}", |r| {
            r.as_array().is_some_and(|a| !a.is_empty())
        });
        assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v:#}");
        let v = prom.wait_for("up{job=\"ferry\"}", |r| r[0]["value"][1] == "1");
        assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v:#}");
    }
    server.stop();
}

const STEP_SECRET: &str = "tok-Step-5ecret-0042";
const DECLARED_SECRET: &str = "dec1ared-Secret-7788";

#[test]
fn json_logs_carry_context_and_secrets_never_appear() {
    let repo = Repo::new();
    repo.write_exec(
        "ops/deploy.sh",
        "#!/bin/sh\necho \"deploy $FERRY_ENV with $EXTRA_SECRET\"\n",
    );
    let deploy = yaml_str(&format!("sh '{}'", repo.join("ops/deploy.sh").display()));
    // The step prints both secrets (whole, on stderr, and in two writes) and fails
    // with one in its last line.
    repo.write_exec(
        "ci/build.sh",
        "#!/bin/sh\nmkdir -p dist\necho ok > dist/VERSION\necho \"token is $API_TOKEN\"\necho \"declared $EXTRA_SECRET\" >&2\nprintf 'tok-Step-'; sleep 0.2; printf '5ecret-0042\\n'\necho \"failing with $API_TOKEN\"\nexit 3\n",
    );
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: secretive\nsecrets: [EXTRA_SECRET]\nbuild:\n  steps:\n    - name: unit\n      run: ./ci/build.sh\n      env:\n        API_TOKEN: {STEP_SECRET}\n  artifact: dist\nenvironments:\n  - name: staging\n    deploy:\n      command:\n        run: {deploy}\n"
        ),
    );
    repo.write(".gitignore", ".ferry/\ndist/\nops/\n");
    repo.commit("leaky");

    let out = repo.ferry_env(
        &["run", "--log-format", "json"],
        &[("EXTRA_SECRET", DECLARED_SECRET)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut with_step = 0;
    for line in stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("not one JSON object per line ({e}): {line:?}\n{stdout}\n{stderr}")
        });
        assert!(
            v["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
            "{line}"
        );
        assert!(
            ["info", "warn", "error"].contains(&v["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(v["message"].is_string(), "{line}");
        if v["step"] == "unit" {
            assert_eq!(v["run"], 1, "{line}");
            with_step += 1;
        }
    }
    assert!(
        with_step >= 2,
        "start and end of the step carry it: {stdout}"
    );
    for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.contains(STEP_SECRET) && !text.contains(DECLARED_SECRET),
            "{what}: {text}"
        );
    }

    // The step's log: the secrets are `***`, the rest is there.
    let logs = repo.ferry(&["logs", "1"]);
    let text = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(text.contains("token is ***"), "{}", describe(&logs));
    assert!(text.contains("declared ***"), "{}", describe(&logs));
    assert!(
        !text.contains(STEP_SECRET) && !text.contains(DECLARED_SECRET),
        "{text}"
    );
    assert!(!text.contains("tok-Step-"), "split across writes: {text}");
    let on_disk: String = support::walk(&repo.state())
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(on_disk.contains("***"), "{on_disk}");
    assert!(!on_disk.contains(STEP_SECRET) && !on_disk.contains(DECLARED_SECRET));

    // Through the API: events, runs, the step's log; and the server's own log lines,
    // JSON too.
    let mut cmd_env = vec![("EXTRA_SECRET", DECLARED_SECRET)];
    cmd_env.push(("FERRY_LOG_FORMAT", "json"));
    let server = {
        let mut cmd = ferry_cmd(repo.path(), &["serve", "--listen", "127.0.0.1:0"]);
        for (k, v) in &cmd_env {
            cmd.env(k, v);
        }
        cmd.env("FERRY_WEBHOOK_SECRET", SECRET)
            .env("FERRY_API_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
        assert_eq!(v["level"], "info", "{v}");
        let port = v["message"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Served { child, port }
    };
    let port = server.port;
    let mut everything = String::new();
    for path in [
        "/api/events?limit=1000",
        "/api/runs/1",
        "/api/runs/1/logs",
        "/api/runs/1/steps/build/unit/log",
        "/api/status",
        "/metrics",
    ] {
        let (code, _, body) = get_text(port, path);
        assert_eq!(code, 200, "{path}: {body}");
        everything.push_str(&body);
    }
    assert!(everything.contains("***"), "{everything}");
    assert!(
        !everything.contains(STEP_SECRET) && !everything.contains(DECLARED_SECRET),
        "{everything}"
    );
    let err = server.stop();
    assert!(!err.contains(STEP_SECRET) && !err.contains(DECLARED_SECRET) && !err.contains(TOKEN));
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("server log line not JSON ({e}): {line:?}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn the_log_format_is_checked() {
    let repo = Repo::new();
    let out = repo.ferry(&["status", "--log-format", "yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("text") && err.contains("json"), "{err}");
}

/// With `--log-format json`, what the notification outbox says at the end of a command
/// (deliveries left, dead letters) is a JSON log line like every other one.
#[test]
fn notification_warnings_are_json_log_lines_too() {
    let repo = Repo::new();
    let port = free_port(); // nothing listens there: the webhook refuses
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: quiet\nbuild:\n  steps:\n    - name: unit\n      run: 'true'\nenvironments:\n  - name: test\n    deploy:\n      command:\n        run: 'true'\nnotifications:\n  - webhook:\n      name: hook\n      url: http://127.0.0.1:{port}/events\n"
        ),
    );
    repo.write(".gitignore", ".ferry/\n");
    repo.commit("first");
    let out = repo.ferry(&["run", "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut about_notifications = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}\n{stderr}"));
        assert_eq!(v["level"], "warn", "{line}");
        if v["message"]
            .as_str()
            .is_some_and(|m| m.contains("notification(s)"))
        {
            about_notifications += 1;
        }
    }
    assert!(about_notifications >= 1, "{stderr}");
    // `--limit 0` lists none of them, and does not claim everything was delivered.
    let out = repo.ferry(&["notify", "list", "--limit", "0"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(!text.contains("every notification was delivered"), "{text}");
    assert!(text.contains("waiting; `--limit"), "{text}");
}
