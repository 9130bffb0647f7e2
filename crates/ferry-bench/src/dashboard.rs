//! `ferry-bench dashboard [--deployments N] [--runs N] [--requests N]`: response times
//! of the dashboard's pages and the main API endpoints of `ferry serve` with a large
//! store (default 100 k deployments over the last 90 days across staging and
//! production, 1 in 20 rolled back with its rollback record, and 10 k runs of three
//! stages each), filled by raw SQL into the real schema after `ferry status` created it.
//!
//! Each endpoint is asked `--requests` times in turn by one client over loopback (a new
//! connection each, the whole answer read); prints p50 and p99 per endpoint. `/metrics`
//! is measured when the server answers it. The release `ferry` next to ferry-bench is
//! used, or `$FERRY_BIN`.

use crate::git;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "bench-webhook-secret";
const TOKEN: &str = "bench-api-token";
const DAY: i64 = 86_400_000;

pub fn run(args: Vec<String>, ferry: &Path) -> Result<(), String> {
    let mut deployments = 100_000usize;
    let mut runs = 10_000usize;
    let mut requests = 200usize;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{what} needs a number"))
        };
        match a.as_str() {
            "--deployments" => deployments = num("--deployments")?,
            "--runs" => runs = num("--runs")?.max(1),
            "--requests" => requests = num("--requests")?.max(1),
            "-h" | "--help" => {
                println!(
                    "ferry-bench dashboard [--deployments 100000] [--runs 10000] [--requests 200]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    if !ferry.exists() {
        return Err(format!(
            "no ferry binary at {}; run `cargo build --release` or set FERRY_BIN",
            ferry.display()
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let repo = dir.path();
    std::fs::write(
        repo.join("ferry.yml"),
        "pipeline: dashboard-bench\nbuild:\n  steps:\n    - name: unit\n      run: 'true'\nenvironments:\n  - name: staging\n    deploy:\n      command:\n        run: 'true'\n  - name: production\n    approval:\n      timeout: 1h\n    deploy:\n      command:\n        run: 'true'\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(repo.join(".gitignore"), ".ferry/\n").map_err(|e| e.to_string())?;
    git(repo, &["init", "-q", "-b", "main"])?;
    git(repo, &["add", "-A"])?;
    git(
        repo,
        &[
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "-q",
            "-m",
            "bench",
        ],
    )?;
    let out = Command::new(ferry)
        .arg("status")
        .current_dir(repo)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "ferry status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as i64;
    let filled = Instant::now();
    fill(&repo.join(".ferry/ferry.db"), runs, deployments, now)?;
    eprintln!(
        "filled {runs} runs and {deployments} deployments in {:.1}s",
        filled.elapsed().as_secs_f64()
    );

    let mut server = Server::start(ferry, repo)?;
    let port = server.port;
    // The oldest deployment of production's first page is a mid-history cursor.
    let middle = now - 45 * DAY;
    let mid_id = format!("production%23{middle}");
    let run = (runs / 2).max(1);
    let endpoints: Vec<(String, String)> = vec![
        ("dashboard: overview".into(), "/".into()),
        ("dashboard: runs".into(), "/runs".into()),
        (
            "dashboard: runs, a deep page".into(),
            format!("/runs?before={run}"),
        ),
        ("dashboard: run page".into(), format!("/runs/{run}")),
        ("dashboard: deployments".into(), "/deployments".into()),
        (
            "dashboard: deployments, a deep page".into(),
            format!("/deployments?env=production&before={middle}&id={mid_id}"),
        ),
        ("dashboard: DORA 30 days".into(), "/dora".into()),
        ("dashboard: DORA 90 days".into(), "/dora?days=90".into()),
        ("api: status".into(), "/api/status".into()),
        ("api: runs".into(), "/api/runs".into()),
        ("api: run".into(), format!("/api/runs/{run}")),
        ("api: deployments".into(), "/api/deployments".into()),
        ("api: environments".into(), "/api/environments".into()),
        ("metrics".into(), "/metrics".into()),
    ];
    println!("| endpoint | path | first (cold) | p50 | p99 | max | status | bytes |");
    println!("|---|---|---:|---:|---:|---:|---|---:|");
    for (name, path) in &endpoints {
        let t = Instant::now();
        let (status, bytes) = get(port, path)?;
        let first = t.elapsed();
        if name == "metrics" && status == 404 {
            println!("| {name} | `{path}` | - | - | - | - | not served by this build | - |");
            continue;
        }
        let mut took = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let (code, _) = get(port, path)?;
            took.push(t.elapsed());
            if code != status {
                return Err(format!("{path} answered {code}, then {status}"));
            }
        }
        took.sort();
        let q = |p: f64| {
            let rank = ((p * took.len() as f64).ceil() as usize).clamp(1, took.len());
            ms(took[rank - 1])
        };
        println!(
            "| {name} | `{path}` | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {status} | {bytes} |",
            ms(first),
            q(0.5),
            q(0.99),
            ms(took[took.len() - 1])
        );
    }
    server.stop();
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One GET on a new connection; (status, body length).
fn get(port: u16, path: &str) -> Result<(u16, usize), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let head = raw.split(|b| *b == b'\n').next().unwrap_or_default();
    let status = String::from_utf8_lossy(head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{path}: not an HTTP answer"))?;
    Ok((status, raw.len()))
}

/// `runs` finished runs (build → staging → production, one step each) and `deployments`
/// deployments spread evenly over the 90 days before `now`, alternating staging and
/// production; every 20th rolled back (with its rollback record), every 50th failed.
fn fill(db: &Path, runs: usize, deployments: usize, now: i64) -> Result<(), String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut conn = rusqlite::Connection::open(db).map_err(e)?;
    let tx = conn.transaction().map_err(e)?;
    {
        let mut run = tx
            .prepare(
                r#"INSERT INTO runs (id, pipeline, commit_sha, commit_message, commit_author, "trigger",
                 triggered_by, status, created_at, started_at, ended_at)
                 VALUES (?1, 'dashboard-bench', ?2, 'a past commit <with> "markup"', 'Bench <bench@example.com>',
                 'webhook', 'bench', 'succeeded', ?3, ?3, ?4)"#,
            )
            .map_err(e)?;
        let mut stage = tx
            .prepare(
                "INSERT INTO stages (run_id, idx, name, status, started_at, ended_at) VALUES (?1, ?2, ?3, 'succeeded', ?4, ?5)",
            )
            .map_err(e)?;
        let mut step = tx
            .prepare(
                "INSERT INTO steps (run_id, stage_idx, idx, name, kind, status, started_at, ended_at, exit_code)
                 VALUES (?1, ?2, 0, ?3, ?4, 'succeeded', ?5, ?6, 0)",
            )
            .map_err(e)?;
        let span = 90 * DAY;
        for i in 0..runs {
            let id = i as i64 + 1;
            let at = now - span + (span / runs as i64) * i as i64;
            run.execute(rusqlite::params![
                id,
                format!("{:040x}", i),
                at,
                at + 60_000
            ])
            .map_err(e)?;
            for (k, (name, stp, kind)) in [
                ("build", "unit", "command"),
                ("staging", "deploy", "deploy"),
                ("production", "deploy", "deploy"),
            ]
            .iter()
            .enumerate()
            {
                let s = at + k as i64 * 20_000;
                stage
                    .execute(rusqlite::params![id, k as i64, name, s, s + 20_000])
                    .map_err(e)?;
                step.execute(rusqlite::params![id, k as i64, stp, kind, s, s + 20_000])
                    .map_err(e)?;
            }
        }
        let mut dep = tx
            .prepare(
                "INSERT INTO deployments (deployment_id, environment, version, status, start_time, end_time,
                 infrastructure_changed, commit_message, commit_author, pipeline_execution_id,
                 unit_tests_passed, integration_tests_passed, e2e_tests_passed, coverage_percentage,
                 rollback_reason, rollback_level, rollback_time,
                 artifact_location, expires_at, run_id, artifact_digest, previous_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 'a past commit', 'Bench <bench@example.com>',
                 ?7, 1, 1, 1, 85.0, ?8, ?9, ?10, '', ?11, ?12, '', NULL)",
            )
            .map_err(e)?;
        let mut rb = tx
            .prepare(
                r#"INSERT INTO rollbacks (deployment_id, environment, from_version, to_version, level, status,
                 reason, trigger_json, started_at, ended_at, holder, detail_json)
                 VALUES (?1, ?2, ?3, NULL, 'stage', 'succeeded', 'alarm p99 went into ALARM',
                 '{"trigger":"alarm","name":"p99"}', ?4, ?5, 'bench:1', '[]')"#,
            )
            .map_err(e)?;
        let span = 90 * DAY - 60_000;
        let step_ms = (span / deployments.max(1) as i64).max(1);
        for i in 0..deployments {
            let env = if i % 2 == 0 { "staging" } else { "production" };
            let at = now - span + step_ms * i as i64;
            let version = format!("{:040x}", i);
            let rolled = i % 20 == 7;
            let failed = i % 50 == 3;
            let status = if rolled {
                "rolled_back"
            } else if failed {
                "failed"
            } else {
                "succeeded"
            };
            let id = format!("{env}#{at}");
            dep.execute(rusqlite::params![
                id,
                env,
                version,
                status,
                at,
                at + 30_000,
                format!("run-{i}"),
                rolled.then_some("alarm p99 went into ALARM"),
                rolled.then_some("stage"),
                rolled.then_some(at + 90_000),
                at / 1000 + 90 * 86_400,
                (i % runs.max(1)) as i64 + 1,
            ])
            .map_err(e)?;
            if rolled {
                rb.execute(rusqlite::params![
                    id,
                    env,
                    version,
                    at + 60_000,
                    at + 90_000
                ])
                .map_err(e)?;
            }
        }
    }
    tx.commit().map_err(e)
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(ferry: &Path, repo: &Path) -> Result<Server, String> {
        let mut child = Command::new(ferry)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(repo)
            .env("FERRY_WEBHOOK_SECRET", SECRET)
            .env("FERRY_API_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start ferry serve: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .map_err(|e| e.to_string())?;
        let port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("ferry serve printed no address: {first:?}"))?;
        Ok(Server { child, port })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
