//! A small client of the W3C WebDriver HTTP API, driving Debian's headless Chromium
//! through `chromedriver` (both from `apt-get install -y chromium chromium-driver`).
//! `chromedriver` runs in its own process group; dropping the [`Browser`] ends the
//! session and kills that whole group (chromedriver and every Chromium process), also
//! when the test panics.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to run when Chromium or its driver is missing.
pub const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session.
    /// Panics naming the install command when either is missing: the test must not
    /// pass without a browser.
    pub fn start() -> Browser {
        let chromium = find_program("chromium")
            .or_else(|| find_program("chromium-browser"))
            .unwrap_or_else(|| panic!("Chromium is not installed; run `{INSTALL}`"));
        let driver = find_program("chromedriver")
            .unwrap_or_else(|| panic!("chromedriver is not installed; run `{INSTALL}`"));
        let port = super::free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(60)))
                .http_status_as_error(false)
                .build(),
        );
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver: child,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            _profile: profile,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !super::listening(port) {
            assert!(
                Instant::now() < until,
                "chromedriver never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                         format!("--user-data-dir={}", b._profile.path().display())]
            }
        }}});
        let v = b.raw("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v:#}"))
            .to_string();
        b
    }

    /// One WebDriver call; the `value` of its answer. An error answer panics with it.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_raw(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// One WebDriver call; the `value` of its answer, or the error answer.
    fn try_raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let res = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let mut res = res.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let text = res
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 300 {
            return Err(format!("{status} {:#}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
    }

    /// The visible text of the first element matching `css` now, read in one script
    /// (so a page reloading meanwhile gives `None`, not a stale element).
    pub fn text_of(&self, css: &str) -> Option<String> {
        self.try_raw(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(json!({
                "script": "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                "args": [css]
            })),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    pub fn title(&self) -> String {
        self.call("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's visible text.
    pub fn body_text(&self) -> String {
        let b = self.find("body");
        self.text(&b)
    }

    /// The page's HTML as the browser has it.
    pub fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The elements matching a CSS selector.
    pub fn find_all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
        .collect()
    }

    /// The first element matching a CSS selector (panics when there is none).
    pub fn find(&self, css: &str) -> String {
        self.find_all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element `{css}` on {}", self.title()))
    }

    pub fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    pub fn type_into(&self, element: &str, text: &str) {
        self.call("POST", &format!("/element/{element}/clear"), None);
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Runs a script in the page; its return value.
    pub fn execute(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until `done` holds (at most `within`), panicking with `what` and the
    /// page's text.
    pub fn wait_until(&self, what: &str, within: Duration, done: impl Fn(&Browser) -> bool) {
        let until = Instant::now() + within;
        loop {
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < until,
                "never {what}; the page says:\n{}",
                self.body_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a PNG screenshot of the viewport.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let data = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .unwrap();
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.agent.delete(&url).call();
        }
        // chromedriver and every Chromium process it started share its process group.
        if let Ok(pgid) = i32::try_from(self.driver.id()) {
            super::kill_group(pgid);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
