//! `ReleaseDeployer` with real artifacts and a real HTTP service (python3) on free
//! loopback ports. Every test stops the services it started.
#![allow(clippy::unwrap_used)]

mod common;

use common::{eventually, free_port, http_body, pid_alive};
use ferry_config::ReleaseDeploy;
use ferry_core::{Artifact, RunId};
use ferry_engine::ports::{ArtifactStore, DeployRequest, Deployer, PortErrorKind};
use ferry_local::{ReleaseDeployer, TarArtifactStore};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SERVER: &str = r#"
import http.server, os, sys
port = int(sys.argv[1])
release = open("VERSION").read().strip()
env_version = os.environ.get("FERRY_VERSION", "?")
print("serving", release, "on", port, flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (release + " " + env_version + "\n").encode()
        self.send_response(200 if self.path == "/health" or self.path == "/" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// Stops the deployer's service when a test ends, passing or not.
struct Stopper<'a>(&'a ReleaseDeployer);
impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

struct Fixture {
    tmp: tempfile::TempDir,
    store: TarArtifactStore,
    next_run: i64,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let store = TarArtifactStore::new(tmp.path().join(".ferry/artifacts"));
        Fixture {
            tmp,
            store,
            next_run: 1,
        }
    }

    fn project(&self) -> &Path {
        self.tmp.path()
    }

    /// Packs an artifact whose `VERSION` file says `version`.
    fn artifact(&mut self, version: &str) -> Artifact {
        let dist = self
            .tmp
            .path()
            .join(format!("dist-{version}-{}", self.next_run));
        fs::create_dir_all(&dist).unwrap();
        fs::write(dist.join("VERSION"), format!("{version}\n")).unwrap();
        fs::write(dist.join("server.py"), SERVER).unwrap();
        let run = RunId(self.next_run);
        self.next_run += 1;
        self.store.package(&dist, run).unwrap()
    }

    fn request(&mut self, version: &str) -> DeployRequest {
        let artifact = self.artifact(version);
        self.request_for(version, artifact)
    }

    fn request_for(&self, version: &str, artifact: Artifact) -> DeployRequest {
        let mut env = BTreeMap::new();
        env.insert("FERRY_VERSION".to_owned(), version.to_owned());
        env.insert("FERRY_ENV".to_owned(), "test".to_owned());
        DeployRequest {
            environment: "test".into(),
            version: version.into(),
            artifact,
            env,
            cwd: self.tmp.path().to_path_buf(),
            log: self.log(),
        }
    }

    fn log(&self) -> PathBuf {
        self.tmp.path().join(".ferry/logs/deploy.log")
    }
}

fn config(
    start: Option<String>,
    health: Option<String>,
    timeout: Duration,
    keep: u32,
) -> ReleaseDeploy {
    ReleaseDeploy {
        root: ".ferry/envs/test".into(),
        start,
        health,
        health_timeout: timeout,
        keep,
    }
}

fn env_for(version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("FERRY_VERSION".to_owned(), version.to_owned())])
}

#[test]
fn deploys_swaps_current_restarts_the_service_and_rolls_back() {
    let mut fx = Fixture::new();
    let port = free_port();
    let cfg = config(
        Some(format!("exec python3 server.py {port}")),
        Some(format!("http://127.0.0.1:{port}/health")),
        Duration::from_secs(30),
        5,
    );
    let d = ReleaseDeployer::new(&cfg, fx.project());
    let _stop = Stopper(&d);
    assert_eq!(d.current_version().unwrap(), None);
    assert_eq!(d.service_pid(), None);

    let r1 = fx.request("v1");
    d.deploy(&r1).unwrap();
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));
    assert_eq!(http_body(port, "/"), "v1 v1\n");
    let pid1 = d.service_pid().unwrap();
    let root = fx.project().join(".ferry/envs/test");
    assert_eq!(
        fs::read_link(root.join("current")).unwrap(),
        Path::new("releases/v1")
    );
    assert_eq!(
        fs::read_to_string(root.join("service.pid")).unwrap().trim(),
        pid1.to_string()
    );

    // Deploying the current version again changes nothing.
    d.deploy(&r1).unwrap();
    assert_eq!(d.service_pid(), Some(pid1));

    let r2 = fx.request("v2");
    d.deploy(&r2).unwrap();
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v2"));
    assert_eq!(
        fs::read_link(root.join("current")).unwrap(),
        Path::new("releases/v2")
    );
    assert_eq!(http_body(port, "/"), "v2 v2\n");
    let pid2 = d.service_pid().unwrap();
    assert_ne!(pid1, pid2);
    assert!(
        !pid_alive(pid1),
        "the old service (pid {pid1}) is still running"
    );
    assert_eq!(
        d.releases().unwrap(),
        vec!["v1".to_owned(), "v2".to_owned()]
    );

    // Roll back without rebuilding.
    d.activate("v1", &env_for("v1")).unwrap();
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));
    assert_eq!(http_body(port, "/"), "v1 v1\n");
    assert!(
        !pid_alive(pid2),
        "the v2 service (pid {pid2}) is still running"
    );
    let pid3 = d.service_pid().unwrap();
    // Activating what is already current and running is a no-op.
    d.activate("v1", &env_for("v1")).unwrap();
    assert_eq!(d.service_pid(), Some(pid3));
    assert_eq!(
        d.releases().unwrap(),
        vec!["v2".to_owned(), "v1".to_owned()]
    );
    let e = d.activate("v9", &env_for("v9")).unwrap_err();
    assert_eq!(e.kind, PortErrorKind::NotFound, "{e}");

    d.stop().unwrap();
    assert!(eventually(Duration::from_secs(2), || !pid_alive(pid3)));
    assert_eq!(d.service_pid(), None);
    assert!(!root.join("service.pid").exists());
    // `current` still says what is deployed.
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));

    let log = fs::read_to_string(fx.log()).unwrap();
    for needle in [
        "verified",
        "current -> releases/v2",
        "stopped the service",
        "healthy",
    ] {
        assert!(
            log.contains(needle),
            "`{needle}` missing from the deploy log:\n{log}"
        );
    }
    let service_log = fs::read_to_string(root.join("service.log")).unwrap();
    assert!(service_log.contains("serving v2 on"), "{service_log}");
}

#[test]
fn a_service_that_never_answers_fails_with_the_log_tail() {
    let mut fx = Fixture::new();
    let port = free_port();
    let cfg = config(
        Some("echo starting-up-marker; exec sleep 60".into()),
        Some(format!("http://127.0.0.1:{port}/health")),
        Duration::from_secs(1),
        5,
    );
    let d = ReleaseDeployer::new(&cfg, fx.project());
    let _stop = Stopper(&d);
    let started = Instant::now();
    let e = d.deploy(&fx.request("v1")).unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind, PortErrorKind::Permanent);
    assert!(e.message.contains("did not answer 2xx within 1s"), "{e}");
    assert!(e.message.contains("starting-up-marker"), "{e}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The failed version is what is current (the engine rolls back); stop cleans up.
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));
    let pid = d.service_pid().unwrap();
    d.stop().unwrap();
    assert!(!pid_alive(pid));
}

#[test]
fn a_service_that_exits_at_once_fails_fast() {
    let mut fx = Fixture::new();
    let port = free_port();
    let cfg = config(
        Some("echo boom-marker >&2; exit 3".into()),
        Some(format!("http://127.0.0.1:{port}/health")),
        Duration::from_secs(30),
        5,
    );
    let d = ReleaseDeployer::new(&cfg, fx.project());
    let _stop = Stopper(&d);
    let started = Instant::now();
    let e = d.deploy(&fx.request("v1")).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(e.message.contains("exited with status 3"), "{e}");
    assert!(e.message.contains("boom-marker"), "{e}");
    assert_eq!(d.service_pid(), None);

    // Without a health URL, an immediate exit is caught too.
    let cfg = config(Some("exit 4".into()), None, Duration::from_secs(30), 5);
    let d2 = ReleaseDeployer::new(&cfg, fx.project());
    let e = d2.deploy(&fx.request("v2")).unwrap_err();
    assert!(e.message.contains("exited with status 4"), "{e}");
}

#[test]
fn old_releases_are_pruned_but_never_the_current_one() {
    let mut fx = Fixture::new();
    let cfg = config(None, None, Duration::from_secs(30), 2);
    let d = ReleaseDeployer::new(&cfg, fx.project());
    let root = fx.project().join(".ferry/envs/test");
    for v in ["v1", "v2", "v3"] {
        d.deploy(&fx.request(v)).unwrap();
    }
    assert_eq!(
        d.releases().unwrap(),
        vec!["v2".to_owned(), "v3".to_owned()]
    );
    assert!(!root.join("releases/v1").exists());
    d.activate("v2", &env_for("v2")).unwrap();
    d.deploy(&fx.request("v4")).unwrap();
    // Order of deployment: v3 is now the oldest.
    assert_eq!(
        d.releases().unwrap(),
        vec!["v2".to_owned(), "v4".to_owned()]
    );
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v4"));

    // A release of the same name that is not current is replaced.
    let dist = fx.project().join("dist-v2-new");
    fs::create_dir_all(&dist).unwrap();
    fs::write(dist.join("VERSION"), "v2 rebuilt\n").unwrap();
    let other = fx.store.package(&dist, RunId(99)).unwrap();
    d.deploy(&fx.request_for("v2", other)).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("current/VERSION")).unwrap(),
        "v2 rebuilt\n"
    );
    assert!(!root.join("releases/v2/server.py").exists());
    let leftovers: Vec<_> = fs::read_dir(root.join("releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        !root
            .join(format!("current.tmp-{}", std::process::id()))
            .exists()
    );
}

#[test]
fn a_changed_artifact_is_refused() {
    let mut fx = Fixture::new();
    let cfg = config(None, None, Duration::from_secs(30), 5);
    let d = ReleaseDeployer::new(&cfg, fx.project());
    let req = fx.request("v1");
    let mut bytes = fs::read(&req.artifact.location).unwrap();
    bytes.extend_from_slice(&[0u8; 512]);
    fs::write(&req.artifact.location, bytes).unwrap();
    let e = d.deploy(&req).unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Permanent);
    assert!(e.message.contains("changed since it was built"), "{e}");
    assert!(e.message.contains(&req.artifact.digest), "{e}");
    assert!(e.message.contains("refusing to deploy"), "{e}");
    assert_eq!(d.current_version().unwrap(), None);
    assert!(d.releases().unwrap().is_empty());
}

#[test]
fn unsafe_versions_are_refused() {
    let mut fx = Fixture::new();
    let cfg = config(None, None, Duration::from_secs(30), 5);
    let d = ReleaseDeployer::new(&cfg, fx.project());
    let art = fx.artifact("x");
    for v in ["../evil", ".hidden", "", "a/b"] {
        let e = d.deploy(&fx.request_for(v, art.clone())).unwrap_err();
        assert_eq!(e.kind, PortErrorKind::Permanent, "{v}: {e}");
    }
}

#[test]
fn stopping_a_service_started_by_another_process_does_not_wait_for_its_zombie() {
    // Another ferry process started the service and has not reaped it: once stopped, its
    // leader lingers as a zombie in the group, which must not count as running.
    let fx = Fixture::new();
    let cfg = config(None, None, Duration::from_secs(30), 5);
    let d = ReleaseDeployer::new(&cfg, fx.project());
    let root = fx.project().join(".ferry/envs/test");
    fs::create_dir_all(&root).unwrap();
    let pid_file = root.join("service.pid");
    let script = format!(
        "import os, time\npid = os.fork()\nif pid == 0:\n    os.setpgid(0, 0)\n    open({path:?} + '.tmp', 'w').write(str(os.getpid()))\n    os.rename({path:?} + '.tmp', {path:?})\n    os.execvp('sleep', ['sleep', '100'])\nelse:\n    time.sleep(100)\n",
        path = pid_file.display().to_string()
    );
    let mut parent = std::process::Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let service = common::read_pid(&pid_file);
    assert!(eventually(Duration::from_secs(5), || d.service_pid() == Some(service)));
    let started = Instant::now();
    let stopped = d.stop();
    let took = started.elapsed();
    let _ = parent.kill();
    let _ = parent.wait();
    stopped.unwrap();
    assert!(
        took < Duration::from_secs(3),
        "waited for a zombie: {took:?}"
    );
    assert_eq!(d.service_pid(), None);
    assert!(!pid_file.exists());
    // A pid file naming a process that is gone is cleaned up quietly.
    fs::write(&pid_file, format!("{}\n", service)).unwrap();
    d.stop().unwrap();
    assert!(!pid_file.exists());
}
