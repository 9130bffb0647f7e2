//! `ferry-bench serve`: load on `ferry serve` over loopback with `wrk` (Debian's
//! package), while the store holds 10 k, 100 k and 1 M past deployments.
//!
//! For each store size it starts the release `ferry serve` on a fresh repository whose
//! store was filled with that many deployments (raw SQL into the real schema, after
//! `ferry status` created it), measures its idle memory (VmRSS), then runs three loads
//! of `--duration` each with `--connections` connections on 2 wrk threads:
//!
//! - `baseline`: `GET /api/health`, the same server answering without any work (the
//!   plain baseline the others are compared to);
//! - `push`: signed GitHub push deliveries (HMAC-SHA256 checked, parsed, each with a new
//!   `X-GitHub-Delivery` recorded durably in SQLite), for a branch ferry does not build,
//!   so the answer is the acknowledgement;
//! - `alarm`: Alertmanager webhooks with the bearer token for an alarm tied to staging:
//!   each alarm state and its event are committed to SQLite (WAL) before the 202.
//!
//! Prints one table row per size and load: requests/s, p50 and p99 latency, the ratio of
//! p50 to the baseline's, non-2xx answers, and idle and after-load RSS. wrk and the
//! server share this machine's cores.

use crate::git;
use hmac::{KeyInit, Mac};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "bench-webhook-secret";
const TOKEN: &str = "bench-api-token";

pub fn run(args: Vec<String>) -> Result<(), String> {
    let mut sizes: Vec<usize> = vec![10_000, 100_000, 1_000_000];
    let mut duration = 10u64;
    let mut connections = 16usize;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = it
                    .next()
                    .ok_or("--sizes needs a list like 10000,100000")?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .map_err(|_| format!("`{s}` is not a number"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--duration" => {
                duration = it
                    .next()
                    .and_then(|v| v.trim_end_matches('s').parse().ok())
                    .ok_or("--duration needs seconds")?
            }
            "--connections" => {
                connections = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--connections needs a number")?
            }
            "-h" | "--help" => {
                println!(
                    "ferry-bench serve [--sizes 10000,100000,1000000] [--duration 10] [--connections 16]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    let ferry = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("ferry");
    if !ferry.exists() {
        return Err("no ferry binary next to ferry-bench; run `cargo build --release`".into());
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("`wrk` is not installed; `apt-get install wrk`".into());
    }
    println!(
        "| past deployments | load | requests/s | p50 | p99 | p50 / baseline p50 | non-2xx | RSS idle | RSS after |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        one_size(&ferry, n, duration, connections)?;
    }
    Ok(())
}

fn one_size(ferry: &Path, n: usize, duration: u64, connections: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let repo = dir.path();
    std::fs::write(
        repo.join("ferry.yml"),
        "pipeline: loaded\nenvironments:\n  - name: staging\n    deploy:\n      command:\n        run: 'true'\n  - name: production\n    deploy:\n      command:\n        run: 'true'\nalarms:\n  - name: bench-alarm\n    external: {}\n    environment: staging\n",
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
        .args(["status"])
        .current_dir(repo)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "ferry status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    fill(&repo.join(".ferry/ferry.db"), n)?;

    let mut server = Server::start(ferry, repo)?;
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(server.pid());
    let scripts = write_scripts(repo)?;
    let mut baseline_p50 = None;
    for (name, script) in &scripts {
        let r = wrk(server.port, script, duration, connections)?;
        let base = *baseline_p50.get_or_insert(r.p50_ms);
        let after = rss_kib(server.pid());
        println!(
            "| {n} | {name} | {:.0} | {:.2} ms | {:.2} ms | {:.2} | {} | {} | {} |",
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.p50_ms / base,
            r.non_2xx,
            mib(idle),
            mib(after)
        );
    }
    server.stop();
    Ok(())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// `n` succeeded deployments across the two environments, one a minute, inserted in
/// one transaction with the real schema's columns.
fn fill(db: &Path, n: usize) -> Result<(), String> {
    let mut conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO deployments (deployment_id, environment, version, status, start_time, end_time,
                 infrastructure_changed, commit_message, commit_author, pipeline_execution_id,
                 unit_tests_passed, integration_tests_passed, e2e_tests_passed, coverage_percentage,
                 artifact_location, expires_at, run_id, artifact_digest, previous_version)
                 VALUES (?1, ?2, ?3, 'succeeded', ?4, ?5, 0, 'a past commit', 'Bench <bench@example.com>',
                 ?6, 1, 1, 1, 85.0, '', ?7, ?8, '', NULL)",
            )
            .map_err(|e| e.to_string())?;
        let start: i64 = 1_600_000_000_000;
        for i in 0..n {
            let env = if i % 2 == 0 { "staging" } else { "production" };
            let at = start + i as i64 * 60_000;
            let version = format!("{:040x}", i);
            stmt.execute(rusqlite::params![
                format!("{env}#{at}"),
                env,
                version,
                at,
                at + 30_000,
                format!("run-{i}"),
                at + 90 * 86_400_000,
                i as i64 + 1,
            ])
            .map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

/// The wrk Lua scripts: name and path.
fn write_scripts(repo: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let push = serde_json_push();
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(push.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let alarm = r#"{"version":"4","status":"firing","receiver":"ferry","groupKey":"{}:{}","alerts":[{"status":"firing","labels":{"alertname":"bench-alarm","env":"staging"},"annotations":{"summary":"load"},"startsAt":"2026-01-27T10:00:00Z","endsAt":"0001-01-01T00:00:00Z"}]}"#;
    let lua_str = |s: &str| format!("{s:?}");
    let baseline = "wrk.method = \"GET\"\nwrk.path = \"/api/health\"\n".to_string();
    let push_lua = format!(
        r#"local n = 0
local id = 0
function setup(thread) id = id + 1; thread:set("tid", id) end
function init(args) n = 0 end
local body = {body}
function request()
  n = n + 1
  return wrk.format("POST", "/hooks/github", {{
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = "bench-" .. tostring(tid) .. "-" .. tostring(n) .. "-" .. tostring(math.random(1, 1000000000)),
    ["X-Hub-Signature-256"] = {sig},
  }}, body)
end
"#,
        body = lua_str(&push),
        sig = lua_str(&signature)
    );
    let alarm_lua = format!(
        "wrk.method = \"POST\"\nwrk.path = \"/hooks/alarms\"\nwrk.body = {}\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {TOKEN}\"\n",
        lua_str(alarm)
    );
    let mut out = Vec::new();
    for (name, text) in [
        ("baseline", baseline),
        ("push", push_lua),
        ("alarm", alarm_lua),
    ] {
        let p = repo.join(format!("{name}.lua"));
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        out.push((name, p.display().to_string()));
    }
    Ok(out)
}

/// A push to `refs/heads/feature` in GitHub's shape (ferry builds `main`).
fn serde_json_push() -> String {
    let sha = "a".repeat(40);
    format!(
        r#"{{"ref":"refs/heads/feature","before":"{zero}","after":"{sha}","created":false,"deleted":false,"forced":false,"base_ref":null,"compare":"https://github.com/acme/shop/compare/a...b","commits":[],"head_commit":{{"id":"{sha}","message":"load","timestamp":"2026-01-27T10:00:00Z","url":"https://github.com/acme/shop/commit/{sha}","author":{{"name":"Ada","email":"ada@example.com","username":"ada"}},"committer":{{"name":"Ada","email":"ada@example.com","username":"ada"}},"added":[],"removed":[],"modified":[]}},"repository":{{"id":1,"name":"shop","full_name":"acme/shop"}},"pusher":{{"name":"ada","email":"ada@example.com"}},"sender":{{"login":"ada"}}}}"#,
        zero = "0".repeat(40)
    )
}

struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn wrk(port: u16, script: &str, duration: u64, connections: usize) -> Result<WrkResult, String> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{duration}s"),
            "--latency",
            "-s",
            script,
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(|r| r.trim().to_string()))
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let p50_ms = field("50%")
        .and_then(|v| to_ms(&v))
        .ok_or_else(|| format!("no 50% latency in wrk's output:\n{text}"))?;
    let p99_ms = field("99%")
        .and_then(|v| to_ms(&v))
        .ok_or_else(|| format!("no 99% latency in wrk's output:\n{text}"))?;
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(WrkResult {
        rps,
        p50_ms,
        p99_ms,
        non_2xx,
    })
}

/// `1.23ms`, `456.00us`, `1.02s` → milliseconds.
fn to_ms(v: &str) -> Option<f64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let x: f64 = num.parse().ok()?;
    match unit {
        "us" => Some(x / 1000.0),
        "ms" => Some(x),
        "s" => Some(x * 1000.0),
        "m" => Some(x * 60_000.0),
        _ => None,
    }
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
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

    fn pid(&self) -> u32 {
        self.child.id()
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
