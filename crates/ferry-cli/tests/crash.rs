//! `ferry serve` under load and under `kill -9` (DESIGN invariants 1 and 2), with the
//! real binary on loopback in a temporary git repository whose pipeline deploys with
//! commands that log every invocation.
//!
//! - A burst of 20 pushes, each commit really in the repository before its webhook, in
//!   both execution modes: no two deployments into one environment at once, the newest
//!   commit ends in every environment; `superseded` overtakes older runs, `queued`
//!   deploys every run in order.
//! - The kill test: the server is killed (`SIGKILL`) at random moments of runs (seeded;
//!   the seed is printed, `FERRY_CRASH_SEED` replays it), restarted, and the invariants
//!   are checked from the store after every restart.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::serve::{SECRET, Server, TOKEN, bearer, sign};
use support::{Repo, ferry_cmd, yaml_str};

/// `ferry serve` in `repo`, its stderr appended to `ops/serve.log`.
fn start(repo: &Repo) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(repo.path().join("ops/serve.log"))
        .unwrap();
    let mut cmd = ferry_cmd(repo.path(), &["serve", "--listen", "127.0.0.1:0"]);
    cmd.env("FERRY_WEBHOOK_SECRET", SECRET)
        .env("FERRY_API_TOKEN", TOKEN)
        .stderr(Stdio::from(log));
    Server::spawn(cmd)
}

/// A call with the bearer token, or without it.
fn request(port: u16, method: &str, path: &str, auth: bool, body: &[u8]) -> (u16, Value) {
    let token = bearer();
    let headers: &[(&str, &str)] = if auth {
        &[("Authorization", token.as_str())]
    } else {
        &[]
    };
    support::serve::request(port, method, path, headers, body)
}

/// Delivers a signed GitHub push of `after` to main; the run id it started.
fn push(port: u16, delivery: &str, after: &str) -> i64 {
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/main", "before": "1".repeat(40), "after": after,
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": "https://github.com/acme/shop/compare/a...b", "commits": [],
        "head_commit": {"id": after, "message": "a commit", "timestamp": "2026-01-27T10:00:00Z",
            "url": format!("https://github.com/acme/shop/commit/{after}"),
            "author": {"name": "Ada", "email": "ada@example.com", "username": "ada"},
            "committer": {"name": "Ada", "email": "ada@example.com", "username": "ada"},
            "added": [], "removed": [], "modified": []},
        "repository": {"id": 1, "name": "shop", "full_name": "acme/shop"},
        "pusher": {"name": "ada", "email": "ada@example.com"}, "sender": {"login": "ada"}
    }))
    .unwrap();
    let (_, v) = support::serve::deliver(port, "push", delivery, &body, &sign(&body));
    v["run"]
        .as_i64()
        .unwrap_or_else(|| panic!("push of {after} started no run: {v}"))
}

/// The store, read-only (SQLite), as the kill test sees it between restarts.
struct Db(rusqlite::Connection);

#[derive(Debug, Clone)]
struct Deployment {
    run: i64,
    environment: String,
    version: String,
    status: String,
    start: i64,
    end: Option<i64>,
}

impl Db {
    fn open(repo: &Repo) -> Db {
        let c = rusqlite::Connection::open_with_flags(
            repo.state().join("ferry.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        Db(c)
    }

    fn runs(&self) -> Vec<(i64, String, String)> {
        let mut st = self
            .0
            .prepare("SELECT id, commit_sha, status FROM runs ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn status(&self, run: i64) -> String {
        self.0
            .query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| r.get(0))
            .unwrap()
    }

    fn deployments(&self) -> Vec<Deployment> {
        let mut st = self
            .0
            .prepare(
                "SELECT run_id, environment, version, status, start_time, end_time FROM deployments ORDER BY start_time",
            )
            .unwrap();
        st.query_map([], |r| {
            Ok(Deployment {
                run: r.get(0)?,
                environment: r.get(1)?,
                version: r.get(2)?,
                status: r.get(3)?,
                start: r.get(4)?,
                end: r.get(5)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Event id → (kind, run, environment, data).
    fn events(&self) -> BTreeMap<i64, (String, Option<i64>, Option<String>, Value)> {
        let mut st = self
            .0
            .prepare("SELECT id, kind, run_id, environment, data_json FROM events")
            .unwrap();
        st.query_map([], |r| {
            let data: String = r.get(4)?;
            Ok((
                r.get::<_, i64>(0)?,
                (
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    serde_json::from_str(&data).unwrap_or(Value::Null),
                ),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// What run `run` is doing: the kind of its running step (`stage/kind`), or its
    /// status between steps.
    fn phase(&self, run: i64) -> String {
        self.0
            .query_row(
                "SELECT sg.name || '/' || st.kind FROM steps st JOIN stages sg ON sg.run_id = st.run_id AND sg.idx = st.stage_idx WHERE st.run_id = ?1 AND st.status = 'running'",
                [run],
                |r| r.get(0),
            )
            .unwrap_or_else(|_| format!("between steps ({})", self.status(run)))
    }

    fn approvals(&self) -> BTreeSet<(i64, String)> {
        let mut st = self
            .0
            .prepare("SELECT run_id, environment FROM approvals")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "superseded" | "cancelled")
}

/// The deploy and rollback scripts: each invocation is logged (`start` before it acts,
/// `done` after), a folder used as a lock detects two deploys into one environment at
/// once, and `ops/current-<env>` is what the environment runs.
fn scripts(repo: &Repo, deploy_sleep: &str) {
    repo.write_exec(
        "ops/deploy.sh",
        &format!(
            "#!/bin/sh\nops=$(dirname \"$0\")\necho \"start $FERRY_ENV $FERRY_VERSION $FERRY_RUN_ID\" >> \"$ops/invocations.log\"\nif ! mkdir \"$ops/lock-$FERRY_ENV\" 2>/dev/null; then echo \"overlap $FERRY_ENV $FERRY_VERSION\" >> \"$ops/overlaps.log\"; fi\nsleep {deploy_sleep}\necho \"$FERRY_VERSION\" > \"$ops/current-$FERRY_ENV\"\nrmdir \"$ops/lock-$FERRY_ENV\" 2>/dev/null\necho \"done $FERRY_ENV $FERRY_VERSION $FERRY_RUN_ID\" >> \"$ops/invocations.log\"\n"
        ),
    );
    repo.write_exec(
        "ops/rollback.sh",
        "#!/bin/sh\nops=$(dirname \"$0\")\necho \"rollback $FERRY_ENV $FERRY_VERSION\" >> \"$ops/invocations.log\"\nrmdir \"$ops/lock-$FERRY_ENV\" 2>/dev/null\necho \"$FERRY_VERSION\" > \"$ops/current-$FERRY_ENV\"\n",
    );
}

fn deploy_section(repo: &Repo) -> String {
    let deploy = yaml_str(&format!("sh '{}'", repo.join("ops/deploy.sh").display()));
    let rollback = yaml_str(&format!("sh '{}'", repo.join("ops/rollback.sh").display()));
    format!("    deploy:\n      command:\n        run: {deploy}\n        rollback: {rollback}\n")
}

// --- The burst ----------------------------------------------------------------------------

const ENVS: [&str; 3] = ["test", "staging", "production"];

fn burst_pipeline(repo: &Repo, mode: &str) {
    scripts(repo, "0.05");
    let deploy = deploy_section(repo);
    let mut text = format!(
        "pipeline: burst\nexecution_mode: {mode}\nsource:\n  branch: main\nbuild:\n  steps:\n    - name: package\n      run: \"mkdir -p dist && echo $FERRY_VERSION > dist/VERSION\"\n  artifact: dist\nenvironments:\n"
    );
    for env in ENVS {
        text.push_str(&format!("  - name: {env}\n{deploy}"));
    }
    text.push_str("rollback:\n  automatic: true\n  validate:\n    stabilize: 0s\n");
    repo.write("ferry.yml", &text);
    repo.write(".gitignore", ".ferry/\ndist/\nops/\n");
}

/// 20 commits, each pushed as soon as it is committed; waits until every run ended.
fn burst(mode: &str) -> (Repo, Vec<(i64, String)>) {
    let repo = Repo::new();
    burst_pipeline(&repo, mode);
    repo.commit("the pipeline");
    let server = start(&repo);
    let mut runs = Vec::new();
    for i in 0..20 {
        repo.write("version.txt", &format!("{i}\n"));
        let sha = repo.commit(&format!("change {i}"));
        let run = push(server.port, &format!("burst-{mode}-{i}"), &sha);
        runs.push((run, sha));
    }
    let until = Instant::now() + Duration::from_secs(150);
    loop {
        let db = Db::open(&repo);
        let all = db.runs();
        if all.len() >= runs.len() && all.iter().all(|(_, _, s)| terminal(s)) {
            break;
        }
        assert!(
            Instant::now() < until,
            "runs never all ended: {all:?}\n{}",
            repo.read("ops/serve.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
    (repo, runs)
}

/// No two deployments into one environment overlap (records and the deploy script's
/// lock), and the newest commit is what every environment runs.
fn burst_common(repo: &Repo, runs: &[(i64, String)]) -> Vec<Deployment> {
    let overlaps = std::fs::read_to_string(repo.join("ops/overlaps.log")).unwrap_or_default();
    assert!(overlaps.is_empty(), "deploys overlapped:\n{overlaps}");
    let deployments = Db::open(repo).deployments();
    for env in ENVS {
        let mine: Vec<&Deployment> = deployments
            .iter()
            .filter(|d| d.environment == env)
            .collect();
        for w in mine.windows(2) {
            let end = w[0].end.unwrap_or(i64::MAX);
            assert!(
                end <= w[1].start,
                "deployments into {env} overlap in time: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
        let newest = &runs.last().unwrap().1;
        let current = repo.read(&format!("ops/current-{env}"));
        assert_eq!(
            current.trim(),
            newest,
            "{env} does not run the newest commit"
        );
        let last = mine.last().unwrap();
        assert_eq!(&last.version, newest);
        assert_eq!(last.status, "succeeded", "{last:?}");
    }
    deployments
}

#[test]
fn a_burst_of_20_pushes_in_superseded_mode_ends_with_the_newest_commit() {
    let (repo, runs) = burst("superseded");
    burst_common(&repo, &runs);
    let db = Db::open(&repo);
    let statuses: Vec<String> = runs.iter().map(|(id, _)| db.status(*id)).collect();
    assert_eq!(statuses.last().map(String::as_str), Some("succeeded"));
    let superseded = statuses.iter().filter(|s| *s == "superseded").count();
    assert!(superseded > 0, "no run was superseded: {statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| s == "succeeded" || s == "superseded"),
        "{statuses:?}"
    );
    // Each run_superseded event names a newer run.
    for (_, (kind, run, _, data)) in db.events() {
        if kind == "run_superseded" {
            let by = data["supersededBy"].as_i64().unwrap();
            assert!(Some(by) > run, "run {run:?} superseded by {by}");
        }
    }
}

#[test]
fn a_burst_of_20_pushes_in_queued_mode_deploys_every_run_in_order() {
    let (repo, runs) = burst("queued");
    let deployments = burst_common(&repo, &runs);
    let db = Db::open(&repo);
    for (id, _) in &runs {
        assert_eq!(db.status(*id), "succeeded", "run {id}");
    }
    let ids: Vec<i64> = runs.iter().map(|(id, _)| *id).collect();
    for env in ENVS {
        let order: Vec<i64> = deployments
            .iter()
            .filter(|d| d.environment == env)
            .map(|d| d.run)
            .collect();
        assert_eq!(order, ids, "deployments into {env} out of run order");
    }
}

// --- The kill test ---------------------------------------------------------------------

/// xorshift64*: a small seeded generator, so a failing sequence of kills replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn kill_pipeline(repo: &Repo) {
    scripts(repo, "0.4");
    let deploy = deploy_section(repo);
    let text = format!(
        "pipeline: crash\nsource:\n  branch: main\nbuild:\n  steps:\n    - name: package\n      run: \"sleep 0.4 && mkdir -p dist && echo $FERRY_VERSION > dist/VERSION\"\n  artifact: dist\nenvironments:\n  - name: test\n{deploy}    tests:\n      - name: integration\n        run: sleep 0.4\n  - name: staging\n{deploy}    monitor:\n      duration: 1s\n      interval: 200ms\n      alarms: [staging-errors]\n  - name: production\n    approval:\n      timeout: 1h\n{deploy}alarms:\n  - name: staging-errors\n    external: {{}}\n    environment: staging\nrollback:\n  automatic: true\n  validate:\n    stabilize: 0s\n"
    );
    repo.write("ferry.yml", &text);
    repo.write(".gitignore", ".ferry/\ndist/\nops/\n");
}

/// What must hold in the store after every restart.
struct Seen {
    events: BTreeSet<i64>,
    approvals: BTreeSet<(i64, String)>,
}

fn check_invariants(repo: &Repo, seen: &mut Seen, context: &str) {
    let db = Db::open(repo);
    // One open deployment per environment at most.
    let deployments = db.deployments();
    for env in ENVS {
        let open = deployments
            .iter()
            .filter(|d| d.environment == env && d.status == "in_progress")
            .count();
        assert!(open <= 1, "{context}: {open} open deployments into {env}");
    }
    // No version deployed twice into an environment by one run (deploy invocations
    // counted by the deploy script itself).
    let log = std::fs::read_to_string(repo.join("ops/invocations.log")).unwrap_or_default();
    let mut starts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for line in log.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() == Some(&"start") && w.len() == 4 {
            *starts
                .entry((w[1].to_string(), w[2].to_string(), w[3].to_string()))
                .or_default() += 1;
        }
    }
    for (k, n) in &starts {
        assert!(*n <= 1, "{context}: {k:?} deployed {n} times:\n{log}");
    }
    // Events only grow; approvals recorded stay.
    let events = db.events();
    let ids: BTreeSet<i64> = events.keys().copied().collect();
    let lost: Vec<&i64> = seen.events.difference(&ids).collect();
    assert!(lost.is_empty(), "{context}: events lost: {lost:?}");
    seen.events = ids;
    let approvals = db.approvals();
    let lost: Vec<_> = seen.approvals.difference(&approvals).collect();
    assert!(lost.is_empty(), "{context}: approvals lost: {lost:?}");
    seen.approvals = approvals;
    // Production only ever got versions that succeeded in staging.
    let staged: BTreeSet<String> = events
        .values()
        .filter(|(k, _, env, _)| k == "deployment_succeeded" && env.as_deref() == Some("staging"))
        .filter_map(|(_, _, _, d)| d["version"].as_str().map(str::to_string))
        .collect();
    for d in deployments.iter().filter(|d| d.environment == "production") {
        assert!(
            staged.contains(&d.version),
            "{context}: production got {} which never succeeded in staging",
            d.version
        );
    }
}

#[test]
fn killing_the_server_at_random_moments_loses_nothing_and_deploys_nothing_twice() {
    let seed: u64 = std::env::var("FERRY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("kill test seed: {seed} (replay with FERRY_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let repo = Repo::new();
    kill_pipeline(&repo);
    repo.commit("the pipeline");
    let mut seen = Seen {
        events: BTreeSet::new(),
        approvals: BTreeSet::new(),
    };
    let started = Instant::now();
    let mut kills = 0;
    let mut runs = 0;
    let mut statuses = Vec::new();
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    while kills < 30 {
        runs += 1;
        repo.write("version.txt", &format!("{runs}\n"));
        let sha = repo.commit(&format!("change {runs}"));
        let mut server = start(&repo);
        let run = push(server.port, &format!("kill-{runs}"), &sha);
        let mut kills_of_run = 0;
        loop {
            // Let it work a while (a run takes about 4 s), then kill it.
            let delay = Duration::from_millis(100 + rng.below(1200));
            let until = Instant::now() + delay;
            let mut status = String::new();
            while Instant::now() < until {
                status = Db::open(&repo).status(run);
                if status == "awaiting_approval" {
                    let (code, v) = request(
                        server.port,
                        "POST",
                        &format!("/api/runs/{run}/approve"),
                        true,
                        br#"{"by": "reviewer"}"#,
                    );
                    assert!(code == 200 || code == 409, "approve: {code} {v}");
                }
                if terminal(&status) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if terminal(&status) {
                server.kill();
                check_invariants(&repo, &mut seen, &format!("run {run} ended"));
                statuses.push(status);
                break;
            }
            let phase = Db::open(&repo).phase(run);
            server.kill();
            *phases.entry(phase).or_insert(0) += 1;
            kills += 1;
            kills_of_run += 1;
            let context = format!("seed {seed}, run {run}, kill {kills} after {delay:?}");
            check_invariants(&repo, &mut seen, &context);
            // Restart; after a dozen kills of one run, let it finish in peace.
            server = start(&repo);
            if kills_of_run >= 12 {
                let until = Instant::now() + Duration::from_secs(60);
                loop {
                    let status = Db::open(&repo).status(run);
                    if status == "awaiting_approval" {
                        request(
                            server.port,
                            "POST",
                            &format!("/api/runs/{run}/approve"),
                            true,
                            br#"{"by": "reviewer"}"#,
                        );
                    }
                    if terminal(&status) {
                        break;
                    }
                    assert!(Instant::now() < until, "{context}: run {run} never ended");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    // Every run ended; the last one's commit is deployed where its run reached.
    let db = Db::open(&repo);
    for (id, _, status) in db.runs() {
        assert!(terminal(&status), "run {id} is still {status}");
    }
    println!(
        "kill test: {kills} kills over {runs} runs in {:?}; runs ended {statuses:?}; killed during {phases:?}",
        started.elapsed()
    );
    let reasons: Vec<String> =
        db.0.prepare("SELECT id, status, COALESCE(reason, '') FROM runs ORDER BY id")
            .unwrap()
            .query_map([], |r| {
                Ok(format!(
                    "run {}: {} {}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    println!("{}", reasons.join("\n"));
    // After all that, a run left alone goes through and every environment runs its
    // commit: nothing was left in an unknown state.
    repo.write("version.txt", "last\n");
    let sha = repo.commit("the last change");
    let server = start(&repo);
    let run = push(server.port, "kill-last", &sha);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let status = Db::open(&repo).status(run);
        if status == "awaiting_approval" {
            request(
                server.port,
                "POST",
                &format!("/api/runs/{run}/approve"),
                true,
                br#"{"by": "reviewer"}"#,
            );
        }
        if terminal(&status) {
            assert_eq!(status, "succeeded", "{}", reasons.join("\n"));
            break;
        }
        assert!(Instant::now() < until, "the last run never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill();
    check_invariants(&repo, &mut seen, "the last run");
    for env in ENVS {
        assert_eq!(
            repo.read(&format!("ops/current-{env}")).trim(),
            sha,
            "{env}"
        );
    }
}
