//! `ferry demo`: the main job on the embedded default, end to end, on this machine. It
//! makes a sample repository (a small HTTP service served by this binary, with lint,
//! unit tests, coverage and smoke tests), takes commit 1 through test → staging →
//! production with a real approval, then ships commit 2, whose coverage is too low, and
//! shows the gate stopping it before any environment changes.

use crate::commands::drive;
use crate::context::{Project, SystemClock};
use crate::error::{CliError, CliResult};
use crate::output::{json, line, table};
use crate::progress::Progress;
use ferry_api::exit;
use ferry_config::Deploy;
use ferry_core::approval::Decision;
use ferry_core::{RunId, RunStatus, StageStatus, short_sha};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{Clock, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub fn run(dir: Option<&Path>, keep: bool, as_json: bool) -> CliResult<i32> {
    let git_ok = Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !git_ok {
        return Err(CliError::environment(
            "the demo needs `git` on PATH to make its sample repository; install git and run `ferry demo` again",
        ));
    }
    let (root, _temp) = match dir {
        Some(d) => {
            if d.join("ferry.yml").exists() || d.join(".git").exists() {
                return Err(CliError::conflict(format!(
                    "`{}` already holds a repository; give `--dir` a new or empty folder",
                    d.display()
                )));
            }
            std::fs::create_dir_all(d).map_err(|e| {
                CliError::environment(format!("cannot create `{}`: {e}", d.display()))
            })?;
            (d.canonicalize().unwrap_or_else(|_| d.to_path_buf()), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("ferry-demo-")
                .tempdir()
                .map_err(|e| {
                    CliError::environment(format!("cannot make a temporary folder: {e}"))
                })?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let ferry = std::env::current_exe()
        .map_err(|e| CliError::environment(format!("cannot find the ferry binary itself: {e}")))?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let say = |s: &str| {
        let ctx = crate::log::Ctx::default();
        if as_json {
            crate::log::stderr(crate::log::Level::Info, &ctx, s);
        } else {
            crate::log::stdout(crate::log::Level::Info, &ctx, s);
        }
    };

    say(&format!(
        "ferry demo — a sample service taken from commit to production on this machine\nrepository: {}\n",
        root.display()
    ));
    write_repo(&root, &ferry, ports)?;
    git(&root, &["init", "-q", "-b", "main"])?;
    commit(&root, "Add the sample service")?;

    let project = Project::locate(&root.join("ferry.yml"), None)?;
    let (pipeline, text) = project.load()?;
    let store = project.open_store()?;
    let source = ferry_local::GitSource::open(&root)?;
    let cancel: &'static AtomicBool = crate::signals::cancel_on_interrupt();
    let progress = Progress::new(as_json);
    // The sample's file has no `notifications:` unless it is edited; when it has, they go
    // out while the demo runs.
    let notifier = crate::notify::start(&project, &pipeline);

    say("① commit 1 goes through build, test and staging; production waits for an approval\n");
    let first = std::thread::scope(|s| -> CliResult<_> {
        let (tx, rx) = std::sync::mpsc::channel::<RunId>();
        let approver = s.spawn(|| approve_when_asked(&project, rx, &progress));
        let on_queued = move |id: RunId| {
            let _ = tx.send(id);
        };
        let r = drive(
            &project,
            &pipeline,
            &text,
            &store,
            &source,
            "refs/heads/main",
            "demo",
            "ferry-demo",
            &progress,
            cancel,
            Some(&on_queued),
        );
        let _ = approver.join();
        r
    })?;
    progress.say(&format!("run {} {}\n", first.id, first.status));

    say(
        "② commit 2 ships a cache layer that breaks a few seconds after start: staging's health window\n   catches it, staging is rolled back automatically, production never sees it\n",
    );
    std::fs::write(root.join("site/fail-after"), "3\n").map_err(io("site/fail-after"))?;
    commit(&root, "Add a cache layer")?;
    let staging_url = format!("http://127.0.0.1:{}", ports[1]);
    let stop_watch = AtomicBool::new(false);
    let (bad, recovery) = std::thread::scope(|s| -> CliResult<_> {
        let watcher = s.spawn(|| watch_recovery(&staging_url, &first.commit.sha, &stop_watch));
        let r = drive(
            &project,
            &pipeline,
            &text,
            &store,
            &source,
            "refs/heads/main",
            "demo",
            "ferry-demo",
            &progress,
            cancel,
            None,
        );
        stop_watch.store(true, std::sync::atomic::Ordering::SeqCst);
        let recovery = watcher.join().ok().flatten();
        Ok((r?, recovery))
    })?;
    progress.say(&format!(
        "run {} {}: {}",
        bad.id,
        bad.status,
        bad.reason.as_deref().unwrap_or("")
    ));
    if let Some(r) = recovery {
        progress.say(&format!(
            "    staging served errors for {:.1}s: from its first failing health answer to commit {} serving again (measured from outside)\n",
            r.as_secs_f64(),
            short_sha(&first.commit.sha)
        ));
    }

    say(
        "③ commit 3 fixes the cache but adds two routes without tests: the coverage gate stops it before any deployment\n",
    );
    let _ = std::fs::remove_file(root.join("site/fail-after"));
    let routes = "/\n/health\n/version\n/admin\n/metrics\n";
    std::fs::write(root.join("app/routes"), routes).map_err(io("app/routes"))?;
    commit(&root, "Fix the cache layer; add admin and metrics routes")?;
    let second = drive(
        &project,
        &pipeline,
        &text,
        &store,
        &source,
        "refs/heads/main",
        "demo",
        "ferry-demo",
        &progress,
        cancel,
        None,
    )?;
    progress.say(&format!(
        "run {} {}: {}\n",
        second.id,
        second.status,
        second.reason.as_deref().unwrap_or("")
    ));
    progress.finish();

    // What runs where, asked of the deployers themselves.
    let running_now = project.running(&pipeline);
    let mut rows = vec![vec![
        "ENVIRONMENT".to_string(),
        "VERSION".into(),
        "DEPLOYMENT".into(),
        "URL".into(),
        "NEWER DEPLOYMENT".into(),
    ]];
    let mut envs = Vec::new();
    for env in &pipeline.environments {
        let version = running_now.get(&env.name).cloned().flatten();
        // The status of the deployment that runs, and a note on a newer one taken back.
        let all = store.deployments(Some(&env.name), 100)?;
        let status = all
            .iter()
            .find(|d| {
                Some(&d.version) == version.as_ref()
                    && d.status != ferry_core::DeploymentStatus::RolledBack
            })
            .map(|d| d.status.to_string())
            .unwrap_or_else(|| "never_deployed".into());
        let note = all
            .first()
            .filter(|d| Some(&d.version) != version.as_ref())
            .map(|d| format!("{} {}", short_sha(&d.version), d.status))
            .unwrap_or_default();
        let url = match &env.deploy {
            Deploy::Release(r) => r
                .health
                .clone()
                .unwrap_or_default()
                .trim_end_matches("/health")
                .to_string(),
            Deploy::Command(_) | Deploy::S3(_) | Deploy::CloudFormation(_) => String::new(),
        };
        rows.push(vec![
            env.name.clone(),
            version.as_deref().map(short_sha).unwrap_or("-").to_string(),
            status.clone(),
            url.clone(),
            note,
        ]);
        envs.push(
            serde_json::json!({"name": env.name, "version": version, "status": status, "url": url}),
        );
    }
    let ok = first.status == RunStatus::Succeeded
        && second.status == RunStatus::Failed
        && second
            .stages
            .iter()
            .skip(1)
            .all(|s| s.status == StageStatus::Skipped);

    if as_json {
        json(&serde_json::json!({
            "repository": root,
            "runs": [
                {"id": first.id, "commit": first.commit.sha, "status": first.status},
                {"id": bad.id, "commit": bad.commit.sha, "status": bad.status, "reason": bad.reason},
                {"id": second.id, "commit": second.commit.sha, "status": second.status, "reason": second.reason},
            ],
            "staging_recovery_seconds": recovery.map(|r| r.as_secs_f64()),
            "environments": envs,
            "services_left_running": keep,
        }));
    } else {
        line("what is deployed where (asked of each environment, not of ferry's records):");
        crate::output::out(&table(&rows));
        line(format!(
            "\nWhat happened: commit {good} was built once into an artifact ({digest}), passed lint, unit tests and the\n\
             80% coverage gate, and the same bytes went to test (smoke tests), staging (end-to-end tests and a\n\
             health window) and, after an approval, production. Commit {badc} passed its tests but its health\n\
             went bad in staging's window: ferry rolled staging back to {good} by itself and stopped the promotion,\n\
             so production never ran it (test keeps {badc}: it has no health window, and a stage-level rollback\n\
             takes back only the environment that failed). Commit {third} was stopped at the coverage gate (60% of\n\
             routes tested) before any deployment.",
            good = short_sha(&first.commit.sha),
            digest = first
                .artifact
                .as_ref()
                .map(|a| a.digest.chars().take(19).collect::<String>())
                .unwrap_or_default(),
            badc = short_sha(&bad.commit.sha),
            third = short_sha(&second.commit.sha),
        ));
        if keep || dir.is_some() {
            line(format!(
                "\nLook around: cd {} && {} status (or history, or logs {})",
                root.display(),
                ferry.display(),
                first.id
            ));
        }
    }

    if keep {
        if _temp.is_some() {
            // Keep the folder the services run from.
            if let Some(t) = _temp {
                let _ = t.keep();
            }
        }
        say(
            "\nThe services are still running (--keep). Stop them with: kill $(cat <env root>/service.pid)",
        );
    } else {
        for env in &pipeline.environments {
            if let Deploy::Release(r) = &env.deploy {
                let _ = ferry_local::ReleaseDeployer::new(r, &project.root).stop();
            }
        }
        if dir.is_none() {
            say(
                "\nThe sample services were stopped and the temporary repository removed (keep them with --keep).",
            );
        } else {
            say("\nThe sample services were stopped (keep them running with --keep).");
        }
    }
    crate::notify::finish(notifier);
    Ok(if ok { exit::OK } else { exit::RUN_FAILED })
}

/// Watches an environment's URL from outside while a bad version rolls out: the time
/// from its first failing health answer to the good version serving 2xx again.
fn watch_recovery(base: &str, good: &str, stop: &AtomicBool) -> Option<Duration> {
    let t = Duration::from_millis(500);
    let mut failed_at: Option<std::time::Instant> = None;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let health = ferry_local::http::http_get(&format!("{base}/health"), t);
        let ok = matches!(health, Ok((code, _)) if (200..300).contains(&code));
        match failed_at {
            None if matches!(health, Ok((code, _)) if code >= 500) => {
                failed_at = Some(std::time::Instant::now())
            }
            Some(at) if ok => {
                let version = ferry_local::http::http_get(&format!("{base}/version"), t)
                    .map(|(_, b)| String::from_utf8_lossy(&b).trim().to_string())
                    .unwrap_or_default();
                if version == good {
                    return Some(at.elapsed());
                }
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Plays the reviewer: waits until the run asks for approval, then approves it through
/// the store, exactly as `ferry approve RUN` from another terminal would.
fn approve_when_asked(
    project: &Project,
    rx: std::sync::mpsc::Receiver<RunId>,
    progress: &Progress,
) {
    let Ok(id) = rx.recv() else { return };
    let Ok(store) = project.open_store() else {
        return;
    };
    for _ in 0..600 {
        let Ok(view) = store.load_run(id) else { return };
        if view.status.is_terminal() {
            return;
        }
        if let Some(stage) = view
            .stages
            .iter()
            .find(|s| s.status == StageStatus::AwaitingApproval)
        {
            std::thread::sleep(Duration::from_millis(800));
            progress.say(&format!(
                "    (a reviewer runs `ferry approve {id} --by reviewer`)"
            ));
            let d = Decision {
                approved: true,
                by: "reviewer".to_string(),
                reason: None,
                at: SystemClock.now(),
                digest: view.artifact.as_ref().map(|a| a.digest.clone()),
                void: None,
            };
            let _ = store.decide(id, &stage.name, &d);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> CliResult<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| CliError::environment(format!("cannot find a free port on 127.0.0.1: {e}")))
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> CliError {
    move |e| CliError::environment(format!("cannot write `{what}` in the demo repository: {e}"))
}

fn git(root: &Path, args: &[&str]) -> CliResult<()> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map_err(|e| CliError::environment(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(CliError::environment(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn commit(root: &Path, message: &str) -> CliResult<()> {
    git(root, &["add", "-A"])?;
    git(
        root,
        &[
            "-c",
            "user.name=Dana Developer",
            "-c",
            "user.email=dana@example.com",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-q",
            "-m",
            message,
        ],
    )
}

/// A YAML double-quoted scalar holding `s` exactly.
fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Single-quotes a path for `/bin/sh`.
fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

fn write_repo(root: &Path, ferry: &Path, ports: [u16; 3]) -> CliResult<()> {
    let f = sh_quote(ferry);
    let [pt, ps, pp] = ports;
    let start = |port: u16| yaml_str(&format!("{f} __sample-service --port {port}"));
    let smoke = |port: u16, report: &str| {
        yaml_str(&format!(
            "{f} __smoke http://127.0.0.1:{port} --junit {report} --expect 'Hello from ferry'"
        ))
    };
    let (start_t, start_s, start_p) = (start(pt), start(ps), start(pp));
    let smoke_t = smoke(pt, "reports/integration.xml");
    let smoke_s = smoke(ps, "reports/e2e.xml");
    let yml = format!(
        r#"# The demo's pipeline: the same shape as the reference ferry.yml, on free ports.
pipeline: sample-service

source:
  branch: main

build:
  steps:
    - name: lint
      run: sh ci/lint.sh
    - name: unit
      run: sh ci/unit.sh
      timeout: 2m
      reports:
        junit: reports/unit.xml
        coverage: reports/lcov.info
    - name: package
      run: sh ci/build.sh
  gates:
    coverage_min: 80
  artifact: dist

environments:
  - name: test
    deploy:
      release:
        root: .ferry/envs/test
        start: {start_t}
        health: http://127.0.0.1:{pt}/health
    tests:
      - name: integration
        run: {smoke_t}
        reports:
          junit: reports/integration.xml

  - name: staging
    deploy:
      release:
        root: .ferry/envs/staging
        start: {start_s}
        health: http://127.0.0.1:{ps}/health
    tests:
      - name: e2e
        run: {smoke_s}
        reports:
          junit: reports/e2e.xml
    monitor:
      duration: 6s
      interval: 1s
      alarms: [staging-health]

  - name: production
    approval:
      timeout: 10m
    deploy:
      release:
        root: .ferry/envs/production
        start: {start_p}
        health: http://127.0.0.1:{pp}/health
    monitor:
      duration: 3s
      interval: 1s
      alarms: [production-health]

rollback:
  validate:
    stabilize: 1s

alarms:
  - name: staging-health
    http:
      url: http://127.0.0.1:{ps}/health
      expect_status: 200
      timeout: 1s
    period: 1s
    evaluation_periods: 3
    datapoints_to_alarm: 2
  - name: production-health
    http:
      url: http://127.0.0.1:{pp}/health
      expect_status: 200
      timeout: 1s
    period: 1s
    evaluation_periods: 3
    datapoints_to_alarm: 2
"#
    );
    let files: &[(&str, &str)] = &[
        ("ferry.yml", &yml),
        (".gitignore", ".ferry/\ndist/\nreports/\n"),
        (
            "site/index.html",
            "<!doctype html>\n<title>sample</title>\n<h1>Hello from ferry</h1>\n<p>Deployed by ferry.</p>\n",
        ),
        ("app/routes", "/\n/health\n/version\n"),
        ("tests/home.test", "GET / contains Hello from ferry\n"),
        ("tests/health.test", "GET /health is 200\n"),
        (
            "tests/version.test",
            "GET /version is the deployed version\n",
        ),
        ("ci/lint.sh", LINT),
        ("ci/unit.sh", UNIT),
        ("ci/build.sh", BUILD),
    ];
    for (path, text) in files {
        let p: PathBuf = root.join(path);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| {
                CliError::environment(format!("cannot create `{}`: {e}", d.display()))
            })?;
        }
        std::fs::write(&p, text)
            .map_err(|e| CliError::environment(format!("cannot write `{}`: {e}", p.display())))?;
    }
    Ok(())
}

const LINT: &str = r#"#!/bin/sh
# Lint: every page is non-empty and has a heading; every route starts with a slash.
set -eu
status=0
for f in site/*.html; do
  [ -s "$f" ] || { echo "$f is empty"; status=1; }
  grep -q '<h1>' "$f" || { echo "$f has no <h1>"; status=1; }
done
while read -r route; do
  case "$route" in /*) ;; *) echo "route '$route' does not start with /"; status=1 ;; esac
done < app/routes
[ $status -eq 0 ] && echo "lint: clean"
exit $status
"#;

const UNIT: &str = r#"#!/bin/sh
# Unit tests: every test file names a route that exists. Coverage (LCOV) counts the lines
# of app/routes that some test exercises.
set -eu
mkdir -p reports
cases=""; total=0; failures=0
for t in tests/*.test; do
  total=$((total + 1))
  route=$(awk '{print $2}' "$t")
  if grep -qx "$route" app/routes; then
    cases="$cases<testcase classname=\"unit\" name=\"$t\"/>"
  else
    failures=$((failures + 1))
    cases="$cases<testcase classname=\"unit\" name=\"$t\"><failure message=\"route $route is not declared\"/></testcase>"
  fi
done
printf '<?xml version="1.0"?>\n<testsuites><testsuite name="unit" tests="%s" failures="%s">%s</testsuite></testsuites>\n' \
  "$total" "$failures" "$cases" > reports/unit.xml
{
  echo "TN:"; echo "SF:app/routes"
  n=0; hit=0
  while read -r route; do
    n=$((n + 1))
    if grep -qs " $route\( \|$\)" tests/*.test; then echo "DA:$n,1"; hit=$((hit + 1)); else echo "DA:$n,0"; fi
  done < app/routes
  echo "LF:$n"; echo "LH:$hit"; echo "end_of_record"
} > reports/lcov.info
echo "unit: $total tests, $failures failed; $(grep LH reports/lcov.info) of $(grep LF reports/lcov.info) routes tested"
[ "$failures" -eq 0 ]
"#;

const BUILD: &str = r#"#!/bin/sh
# Build: the artifact is the site plus the version it was built from.
set -eu
rm -rf dist
mkdir -p dist
cp -R site dist/site
printf '%s\n' "$FERRY_VERSION" > dist/VERSION
echo "built dist/ for $FERRY_VERSION"
"#;
