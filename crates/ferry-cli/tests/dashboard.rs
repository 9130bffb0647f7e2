//! The dashboard `ferry serve` answers at `/`, and `ferry report`: real runs of the real
//! binary on a temporary repository — one that succeeded, one whose build failed (with
//! a hostile commit message), one rolled back in staging, one waiting for approval —
//! then the pages over plain HTTP (escaping, 404 pages, paging) and in headless
//! Chromium through WebDriver (each page loaded and checked, a screenshot of each kept
//! under `target/test-artifacts/dashboard/`, the run approved with the token typed in).

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use support::serve::{Server, TOKEN, get};
use support::webdriver::Browser;
use support::{LONG, Repo, Running, assert_code, json, yaml_str};

/// A commit message that would run script if it were written into a page unescaped.
const HOSTILE: &str =
    "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script> & 'fix' \"it\"";

/// build (fails when `FAIL-BUILD` is committed) → staging (tests fail when
/// `break-staging` is committed; rolled back automatically) → production (approval).
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
        "pipeline: dashboard\nsource:\n  branch: main\nbuild:\n  steps:\n    - name: package\n      run: \"echo building $FERRY_VERSION && test ! -f FAIL-BUILD && mkdir -p dist && echo $FERRY_VERSION > dist/VERSION && echo built $FERRY_VERSION\"\n  artifact: dist\nenvironments:\n  - name: staging\n    deploy:\n      command:\n        run: {deploy}\n        rollback: {rollback}\n    tests:\n      - name: check\n        run: \"echo checking && test ! -f break-staging\"\n  - name: production\n    approval:\n      timeout: 1h\n    deploy:\n      command:\n        run: {deploy}\n        rollback: {rollback}\nrollback:\n  automatic: true\n  validate:\n    stabilize: 0s\n    health_timeout: 5s\n"
    );
    repo.write("ferry.yml", &text);
    repo.write(".gitignore", ".ferry/\ndist/\nops/\n");
}

/// Runs `ferry run` up to the approval and approves it from the command line.
fn run_approved(repo: &Repo) {
    let mut run = repo.spawn(&["run"]);
    let id = repo.wait_for_approval(&mut run, LONG);
    let out = repo.ferry(&["approve", &id.to_string(), "--by", "ann"]);
    assert_code(&out, 0, "ferry approve");
    let out = run.wait(LONG);
    assert_code(&out, 0, "the approved run");
}

/// The four runs: A succeeded, B's build failed (hostile message), C rolled back in
/// staging, D waiting for approval (its `ferry run` still going, returned).
fn four_runs(repo: &Repo) -> (Running, i64) {
    pipeline(repo);
    repo.commit("A: the first release");
    run_approved(repo);

    repo.write("FAIL-BUILD", "");
    repo.commit(HOSTILE);
    let out = repo.ferry(&["run"]);
    assert_code(&out, 1, "the run of the failing build");

    std::fs::remove_file(repo.join("FAIL-BUILD")).unwrap();
    repo.write("break-staging", "");
    repo.commit("C: breaks staging's tests");
    let out = repo.ferry(&["run"]);
    assert_code(&out, 1, "the run rolled back in staging");

    std::fs::remove_file(repo.join("break-staging")).unwrap();
    repo.commit("D: waits for approval");
    let mut run = repo.spawn(&["run"]);
    let id = repo.wait_for_approval(&mut run, LONG);
    (run, id)
}

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/dashboard")
}

/// A GET asking for HTML, as a browser does: (status, content type, body).
fn browse(port: u16, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

#[test]
fn the_dashboard_in_chromium_shows_every_page_escapes_commit_text_and_approves() {
    let repo = Repo::new();
    let (mut waiting, d) = four_runs(&repo);
    let server = Server::start(&repo);
    let port = server.port;
    let base = format!("http://127.0.0.1:{port}");

    // --- Over plain HTTP: escaping, 404 pages, paging, the API's 404 stays JSON. ----
    let (code, ctype, html) = browse(port, "/runs");
    assert_eq!(code, 200, "{html}");
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(
        !html.contains("<script>window.__pwned") && !html.contains("<img src=x"),
        "the commit message is written unescaped: {html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;&lt;script&gt;"),
        "{html}"
    );
    for path in ["/runs/999999", "/runs/not-a-number", "/no/such/page"] {
        let (code, ctype, body) = browse(port, path);
        assert_eq!(code, 404, "{path}: {body}");
        assert!(ctype.starts_with("text/html"), "{path}: {ctype}");
        assert!(body.contains("404"), "{path}: {body}");
    }
    let (code, v) = get(port, "/api/no-such-endpoint");
    assert_eq!(code, 404);
    assert_eq!(v["error"], "no such endpoint", "{v:#}");
    let (code, _, body) = browse(port, "/deployments?env=nowhere");
    assert_eq!(code, 404, "{body}");
    let (code, _, body) = browse(port, "/dora?days=12");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("7, 30 or 90"), "{body}");
    let (code, _, body) = browse(port, "/deployments?before=1");
    assert_eq!(code, 400, "{body}");

    // --- In the browser. ------------------------------------------------------------
    let shots = artifacts();
    let b = Browser::start();
    let shot = |name: &str| b.screenshot(&shots.join(format!("{name}.png")));

    b.goto(&format!("{base}/"));
    b.wait_until("showed the overview", LONG, |b| {
        b.title().starts_with("Overview")
    });
    let text = b.body_text();
    for want in [
        "staging",
        "production",
        "Recent runs",
        "Change failure rate",
    ] {
        assert!(text.contains(want), "the overview lacks {want}: {text}");
    }
    assert!(text.contains(&format!("#{d}")), "{text}");
    shot("overview");

    b.goto(&format!("{base}/runs"));
    let text = b.body_text();
    assert!(
        text.contains(HOSTILE),
        "the hostile message is shown as text: {text}"
    );
    assert_eq!(
        b.execute("return window.__pwned === undefined;"),
        Value::Bool(true),
        "script from a commit message ran"
    );
    assert_eq!(b.find_all("table.runs tbody tr").len(), 4, "{text}");
    shot("runs");

    // The failed build: its log, followed by the page's script.
    b.goto(&format!("{base}/runs/2"));
    let status = b.find("#run-status");
    assert_eq!(b.text(&status), "failed");
    let summary = b.find("details.log summary");
    b.click(&summary);
    b.wait_until("showed the build's log", LONG, |b| {
        b.text_of("details.log pre")
            .is_some_and(|t| t.contains("building"))
    });
    assert!(b.body_text().contains(HOSTILE));
    shot("run-failed");

    // The rolled-back run, and the deployment history with the rollback's reason.
    b.goto(&format!("{base}/runs/3"));
    assert!(b.body_text().contains("check"), "{}", b.body_text());
    shot("run-rolled-back");
    b.goto(&format!("{base}/deployments"));
    let text = b.body_text();
    assert!(text.contains("rolled back"), "{text}");
    assert!(
        text.contains("staging/check"),
        "the rollback's reason: {text}"
    );
    shot("deployments");

    b.goto(&format!("{base}/dora?env=staging&days=7"));
    let text = b.body_text();
    for want in [
        "Deployment frequency",
        "Lead time for changes",
        "Time to restore",
        "Change failure rate",
        "Deployment success rate",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(!b.find_all("svg.chart").is_empty());
    shot("dora");

    b.goto(&format!("{base}/runs/999999"));
    assert!(b.body_text().contains("there is no run #999999"));
    shot("not-found");

    // The waiting run: no token, a wrong token, then the right one with a name.
    b.goto(&format!("{base}/runs/{d}"));
    assert_eq!(b.text(&b.find("#run-status")), "awaiting approval");
    shot("run-awaiting-approval");
    let approve = b.find("#approve");
    b.click(&approve);
    b.wait_until("asked for the token", LONG, |b| {
        b.text_of("#decision-result")
            .is_some_and(|t| t.contains("token"))
    });
    b.type_into(&b.find("#token"), "not-the-token");
    b.type_into(&b.find("#by"), "dana");
    b.click(&b.find("#approve"));
    b.wait_until("showed the 401", LONG, |b| {
        b.text_of("#decision-result")
            .is_some_and(|t| t.starts_with("401"))
    });
    shot("approval-refused");
    b.type_into(&b.find("#token"), TOKEN);
    b.click(&b.find("#approve"));
    // The page reloads when the run's status changes, and follows it to its end.
    b.wait_until("showed the run going on", LONG, |b| {
        b.text_of("#run-status")
            .is_some_and(|t| t != "awaiting approval")
    });
    let out = waiting.wait(LONG);
    assert_code(&out, 0, "the run approved in the browser");
    b.wait_until("showed the run succeeded", LONG, |b| {
        b.goto(&format!("{base}/runs/{d}"));
        b.text_of("#run-status").as_deref() == Some("succeeded")
    });
    assert!(
        b.body_text().contains("approved by dana"),
        "{}",
        b.body_text()
    );
    assert_eq!(
        b.execute("return sessionStorage.getItem('ferry-token');"),
        Value::String(TOKEN.into()),
        "the token is kept for the session"
    );
    shot("run-approved");
    drop(b);
    drop(server);

    // --- ferry report over the same store. -------------------------------------------
    let out = repo.ferry(&["report", "--env", "staging", "--since", "7d", "--json"]);
    assert_code(&out, 0, "ferry report --json");
    let r = json(&out);
    assert_eq!(r["environment"], "staging");
    assert_eq!(r["deployments"], 3, "{r:#}");
    assert_eq!(r["change_failures"], 1, "{r:#}");
    assert_eq!(r["succeeded"], 2, "{r:#}");
    assert!(r["lead_time_median_ms"].is_u64(), "{r:#}");
    assert!(
        r["time_to_restore_median_ms"].is_u64(),
        "restored by its rollback: {r:#}"
    );
    let cfr = r["change_failure_rate"].as_f64().unwrap();
    assert!((cfr - 1.0 / 3.0).abs() < 1e-9, "{r:#}");
    let out = repo.ferry(&["report"]);
    assert_code(&out, 0, "ferry report");
    let text = support::stdout(&out);
    assert!(text.contains("DORA measures of production"), "{text}");
    assert!(text.contains("deployment success rate"), "{text}");
    let out = repo.ferry(&["report", "--since", "a while"]);
    assert_code(&out, 2, "a bad --since");
    assert!(
        support::stderr(&out).contains("--since"),
        "{}",
        support::stderr(&out)
    );
    let out = repo.ferry(&["report", "--env", "prod"]);
    assert_code(&out, 5, "an unknown environment");
    assert!(support::stderr(&out).contains("production"));
}

/// `ferry report` on a store with no deployment says "no data", not 0.
#[test]
fn report_with_no_deployment_says_no_data() {
    let repo = Repo::new();
    pipeline(&repo);
    repo.commit("A");
    let out = repo.ferry(&["report", "--json"]);
    assert_code(&out, 0, "ferry report --json");
    let r = json(&out);
    assert_eq!(r["deployments"], 0);
    assert_eq!(r["change_failure_rate"], Value::Null, "{r:#}");
    let out = repo.ferry(&["report"]);
    let text = support::stdout(&out);
    assert!(text.contains("no data"), "{text}");
}
