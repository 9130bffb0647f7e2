//! Mean time to recovery in the demo's setting (issue 3's benchmark): a release service
//! on a loopback port, watched from outside every 10 ms.
//!
//! - pushed: a deployment in its watch period, then `ferry alarm NAME --state ALARM`;
//!   measured from just before the alarm command starts to the previous version
//!   answering 2xx on the environment's URL.
//! - probe: a release whose `/health` starts answering 500 one second after start, in a
//!   monitor window with an HTTP alarm (period 1 s, 1 of 1 datapoints); measured from
//!   the first failing answer seen from outside to the previous version answering 2xx.

use crate::{git, median, ms};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub fn run(args: Vec<String>) -> Result<(), String> {
    let mut iterations = 10usize;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--iterations" => {
                iterations = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--iterations needs a number")?
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let ferry = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("ferry");
    if !ferry.exists() {
        return Err("no ferry binary next to ferry-bench; run `cargo build --release`".into());
    }
    let pushed = pushed(&ferry, iterations)?;
    let probe = probe(&ferry, iterations)?;
    let show = |name: &str, mut v: Vec<Duration>| {
        let n = v.len();
        let mean = v.iter().map(|d| d.as_secs_f64()).sum::<f64>() / n.max(1) as f64;
        let max = v.iter().max().copied().unwrap_or_default();
        let med = median(&mut v);
        println!(
            "{name:<44} n={n:<3} median {:>7.0} ms  mean {:>7.0} ms  max {:>7.0} ms",
            ms(med),
            mean * 1000.0,
            ms(max)
        );
    };
    println!("time to recovery (previous version answering 2xx on the environment's URL):");
    show("from `ferry alarm … --state ALARM` (pushed)", pushed);
    show("from the first failing answer (probe, 1 s period)", probe);
    Ok(())
}

struct Repo {
    _dir: tempfile::TempDir,
    path: PathBuf,
    port: u16,
}

impl Drop for Repo {
    fn drop(&mut self) {
        // Stop the service the runs left behind.
        if let Ok(pid) =
            std::fs::read_to_string(self.path.join(".ferry/envs/production/service.pid"))
        {
            let _ = Command::new("kill")
                .arg("--")
                .arg(format!("-{}", pid.trim()))
                .status();
        }
    }
}

fn setup(ferry: &Path, monitor: bool) -> Result<Repo, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().to_path_buf();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())?;
    let f = format!("'{}'", ferry.display());
    let monitor_yml = if monitor {
        "    monitor:\n      duration: 6s\n      interval: 1s\n      alarms: [prod-health]\n"
    } else {
        ""
    };
    // Only the pushed case needs a watch period; with one, `ferry run` would keep
    // watching the probe alarm for the whole period after every run.
    let watch = if monitor { "" } else { "    watch: 10m\n" };
    let yml = format!(
        "pipeline: mttr\nbuild:\n  steps:\n    - name: build\n      run: rm -rf dist && mkdir -p dist && cp -R site dist/site\n  artifact: dist\n\
environments:\n  - name: production\n{watch}    deploy:\n      release:\n        root: .ferry/envs/production\n        start: \"{f} __sample-service --port {port}\"\n        health: http://127.0.0.1:{port}/health\n{monitor_yml}\
rollback:\n  validate:\n    stabilize: 1s\n\
alarms:\n  - name: prod-errors\n    external: {{}}\n    environment: production\n  - name: prod-health\n    http:\n      url: http://127.0.0.1:{port}/health\n      timeout: 1s\n    period: 1s\n    evaluation_periods: 1\n    datapoints_to_alarm: 1\n"
    );
    std::fs::create_dir_all(path.join("site")).map_err(|e| e.to_string())?;
    std::fs::write(path.join("ferry.yml"), yml).map_err(|e| e.to_string())?;
    std::fs::write(path.join(".gitignore"), ".ferry/\ndist/\n").map_err(|e| e.to_string())?;
    std::fs::write(path.join("site/index.html"), "<h1>v1</h1>\n").map_err(|e| e.to_string())?;
    git(&path, &["init", "-q", "-b", "main"])?;
    Ok(Repo {
        _dir: dir,
        path,
        port,
    })
}

fn commit(repo: &Path, message: &str) -> Result<String, String> {
    git(repo, &["add", "-A"])?;
    git(
        repo,
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            "commit",
            "-qm",
            message,
        ],
    )?;
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo)
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn ferry_ok(ferry: &Path, repo: &Path, args: &[&str]) -> Result<bool, String> {
    let out = Command::new(ferry)
        .args(args)
        .current_dir(repo)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        eprintln!(
            "`ferry {}` failed:\n{}\n{}",
            args.join(" "),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.status.success())
}

/// Polls the URL until `good` answers 2xx; returns when it did (or None at `limit`).
fn watch(
    port: u16,
    good: &str,
    stop: Arc<AtomicBool>,
    failed_at: Option<Arc<std::sync::Mutex<Option<Instant>>>>,
) -> Option<Instant> {
    let base = format!("http://127.0.0.1:{port}");
    let t = Duration::from_millis(300);
    let limit = Instant::now() + Duration::from_secs(60);
    while Instant::now() < limit && !stop.load(Ordering::SeqCst) {
        let health = ferry_local::http::http_get(&format!("{base}/health"), t);
        match (&health, &failed_at) {
            (Ok((code, _)), Some(f)) if *code >= 500 => {
                if let Ok(mut g) = f.lock()
                    && g.is_none()
                {
                    *g = Some(Instant::now());
                }
            }
            (Ok((code, _)), _) if (200..300).contains(code) => {
                let version = ferry_local::http::http_get(&format!("{base}/version"), t)
                    .map(|(_, b)| String::from_utf8_lossy(&b).trim().to_string())
                    .unwrap_or_default();
                let seen_failure = failed_at
                    .as_ref()
                    .is_none_or(|f| f.lock().map(|g| g.is_some()).unwrap_or(false));
                if version == good && seen_failure {
                    return Some(Instant::now());
                }
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn pushed(ferry: &Path, iterations: usize) -> Result<Vec<Duration>, String> {
    let repo = setup(ferry, false)?;
    let good = commit(&repo.path, "good")?;
    if !ferry_ok(ferry, &repo.path, &["run"])? {
        return Err("the first run failed".into());
    }
    std::fs::write(repo.path.join("site/index.html"), "<h1>v2</h1>\n")
        .map_err(|e| e.to_string())?;
    let next = commit(&repo.path, "next")?;
    let mut out = Vec::new();
    for _ in 0..iterations {
        if !ferry_ok(ferry, &repo.path, &["run", "--commit", &next])? {
            return Err("deploying the next version failed".into());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, g2, port) = (stop.clone(), good.clone(), repo.port);
        let t0 = Instant::now();
        let poll = std::thread::spawn(move || watch(port, &g2, s2, None));
        let ok = ferry_ok(
            ferry,
            &repo.path,
            &[
                "alarm",
                "prod-errors",
                "--state",
                "ALARM",
                "--reason",
                "bench",
            ],
        )?;
        let back = poll.join().ok().flatten();
        stop.store(true, Ordering::SeqCst);
        match (ok, back) {
            (true, Some(b)) => out.push(b.duration_since(t0)),
            _ => return Err("the pushed alarm did not bring the previous version back".into()),
        }
    }
    Ok(out)
}

fn probe(ferry: &Path, iterations: usize) -> Result<Vec<Duration>, String> {
    let repo = setup(ferry, true)?;
    let good = commit(&repo.path, "good")?;
    if !ferry_ok(ferry, &repo.path, &["run"])? {
        return Err("the first run failed".into());
    }
    std::fs::write(repo.path.join("site/fail-after"), "1\n").map_err(|e| e.to_string())?;
    let bad = commit(&repo.path, "goes bad after a second")?;
    let mut out = Vec::new();
    for _ in 0..iterations {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(std::sync::Mutex::new(None));
        let (s2, g2, f2, port) = (stop.clone(), good.clone(), failed.clone(), repo.port);
        let poll = std::thread::spawn(move || watch(port, &g2, s2, Some(f2)));
        let _ = ferry_ok(ferry, &repo.path, &["run", "--commit", &bad])?;
        let back = poll.join().ok().flatten();
        stop.store(true, Ordering::SeqCst);
        let first_fail = failed.lock().ok().and_then(|g| *g);
        match (first_fail, back) {
            (Some(f), Some(b)) => out.push(b.duration_since(f)),
            _ => eprintln!(
                "probe iteration not measured: the watcher saw {} failing answer and {} recovery",
                if first_fail.is_some() { "a" } else { "no" },
                if back.is_some() { "a" } else { "no" }
            ),
        }
    }
    Ok(out)
}
