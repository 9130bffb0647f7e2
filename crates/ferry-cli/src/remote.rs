//! The way `ferry approve`, `reject`, `rollback` and `status` reach a running
//! `ferry serve`: when one is configured (`server.url` in `ferry.yml`, or the
//! `FERRY_SERVER` variable, which overrides it; `FERRY_SERVER=` turns it off) they call
//! its API with the bearer token, so the server that drives the runs also takes the
//! decisions. When nothing answers at that address they say so and use the store
//! directly, as without a server.
//!
//! Secrets (the API token, the webhook secret) come from the environment or from a file
//! named in `ferry.yml`, never from the command line: [`secret`].

use crate::context::Project;
use crate::error::{CliError, CliResult};
use ferry_api::exit;
use ferry_config::Pipeline;
use serde_json::Value;
use std::time::Duration;

/// A configured `ferry serve`.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    token: Option<String>,
}

/// The value of secret `var` (environment) or, when it is not set, of the file `file`
/// (relative paths from the repository root; surrounding whitespace trimmed). `None`
/// when neither is given.
pub fn secret(project: &Project, var: &str, file: Option<&str>) -> CliResult<Option<String>> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => return Ok(Some(v.trim().to_string())),
        Ok(_) if file.is_none() => {
            return Err(CliError::config(format!(
                "`{var}` is set but empty; give it the secret, or name a file in ferry.yml"
            )));
        }
        _ => {}
    }
    let Some(file) = file else { return Ok(None) };
    let path = project.root.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::config(format!(
            "cannot read the secret file {} (named in ferry.yml's `server`): {e}; create it (mode 600) or set `{var}`",
            path.display()
        ))
    })?;
    warn_if_readable_by_others(&path);
    let value = text.trim();
    if value.is_empty() {
        return Err(CliError::config(format!(
            "the secret file {} is empty; write the secret into it",
            path.display()
        )));
    }
    Ok(Some(value.to_string()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o004 != 0
    {
        crate::elog!(
            Warn,
            "warning: the secret file {} can be read by every user of this machine; `chmod 600` it",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &std::path::Path) {}

impl Remote {
    /// The configured server, if any.
    pub fn configured(project: &Project, pipeline: &Pipeline) -> CliResult<Option<Remote>> {
        let url = match std::env::var("FERRY_SERVER") {
            Ok(v) if v.trim().is_empty() => return Ok(None),
            Ok(v) => v.trim().to_string(),
            Err(_) => match &pipeline.server.url {
                Some(u) => u.clone(),
                None => return Ok(None),
            },
        };
        if !url.starts_with("http://") {
            return Err(CliError::config(format!(
                "FERRY_SERVER `{url}` must be an http:// URL, like http://127.0.0.1:8080"
            )));
        }
        let token = secret(
            project,
            "FERRY_API_TOKEN",
            pipeline.server.api_token_file.as_deref(),
        )?;
        Ok(Some(Remote {
            base: url.trim_end_matches('/').to_string(),
            token,
        }))
    }

    /// Calls the API. `Ok(None)`: nothing answers at the address (the caller falls
    /// back to the store). Error answers become errors with the server's message and
    /// the exit code of the same refusal without a server.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> CliResult<Option<Value>> {
        let url = format!("{}{path}", self.base);
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b));
        }
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, answer) = match ferry_local::http_request(
            method,
            &url,
            &headers,
            payload.as_bytes(),
            timeout,
        ) {
            Ok(r) => r,
            Err(e) if ferry_local::http::unreachable(&e) => {
                crate::elog!(
                    Warn,
                    "note: no ferry serve answers at {} ({e}); using the state database directly",
                    self.base
                );
                return Ok(None);
            }
            Err(e) => {
                return Err(CliError::environment(format!(
                    "ferry serve at {}: {e}",
                    self.base
                )));
            }
        };
        let value: Value = serde_json::from_slice(&answer).map_err(|_| {
            CliError::environment(format!(
                "ferry serve at {} answered {status} with something that is not JSON",
                self.base
            ))
        })?;
        if (200..300).contains(&status) {
            return Ok(Some(value));
        }
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given")
            .to_string();
        let code = match status {
            400 | 422 => exit::USAGE,
            401 => {
                let hint = if self.token.is_some() {
                    "the server does not accept this FERRY_API_TOKEN"
                } else {
                    "set FERRY_API_TOKEN (or `server.api_token_file` in ferry.yml) to the server's token"
                };
                return Err(CliError::config(format!(
                    "ferry serve at {} refused: {message}; {hint}",
                    self.base
                )));
            }
            403 => exit::FORBIDDEN,
            409 => exit::CONFLICT,
            404 => exit::NOT_FOUND,
            _ => exit::ENVIRONMENT,
        };
        Err(CliError::new(
            code,
            format!("ferry serve at {}: {message}", self.base),
        ))
    }
}

/// The configured server, when `ferry.yml` reads (an unreadable file is reported by the
/// local path that follows).
pub fn configured(project: &Project) -> CliResult<Option<Remote>> {
    match project.load() {
        Ok((pipeline, _)) => Remote::configured(project, &pipeline),
        Err(_) => Ok(None),
    }
}

const QUICK: Duration = Duration::from_secs(30);

/// Who acts: `--by` when given; else this user's name as `user`, which the server uses
/// with the shared token (a personal token is its own person).
fn who(by: Option<&str>) -> Value {
    match by {
        Some(b) => serde_json::json!({"by": b}),
        None => serde_json::json!({"user": crate::context::user(None)}),
    }
}
/// A rollback answers when it has ended (validation included).
const ROLLBACK: Duration = Duration::from_secs(3600);

/// `ferry approve` / `ferry reject` through the server; `None`: it did not answer.
pub fn decide(
    r: &Remote,
    run: i64,
    env: Option<&str>,
    by: Option<&str>,
    reject: Option<&str>,
    as_json: bool,
) -> CliResult<Option<i32>> {
    let mut body = who(by);
    if let Some(e) = env {
        body["environment"] = e.into();
    }
    let what = match reject {
        Some(reason) => {
            body["reason"] = reason.into();
            "reject"
        }
        None => "approve",
    };
    let Some(v) = r.call(
        "POST",
        &format!("/api/runs/{run}/{what}"),
        Some(&body),
        QUICK,
    )?
    else {
        return Ok(None);
    };
    if as_json {
        crate::output::json(&v);
    } else {
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut line = format!(
            "{} run {run} for {} as {} (via {})",
            text("decision"),
            text("environment"),
            text("by"),
            r.base
        );
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            line.push_str(&format!(": {m}"));
        }
        crate::output::line(line);
    }
    Ok(Some(exit::OK))
}

/// `ferry rollback ENV` through the server (it answers when the rollback has ended).
pub fn rollback(
    r: &Remote,
    env: &str,
    to: Option<&str>,
    reason: Option<&str>,
    by: Option<&str>,
    accept_data_loss: bool,
    as_json: bool,
) -> CliResult<Option<i32>> {
    let mut body = who(by);
    if let Some(t) = to {
        body["to"] = t.into();
    }
    if accept_data_loss {
        body["acceptDataLoss"] = true.into();
    }
    if let Some(why) = reason {
        body["reason"] = why.into();
    }
    let path = format!("/api/environments/{}/rollback", encode(env));
    let Some(v) = r.call("POST", &path, Some(&body), ROLLBACK)? else {
        return Ok(None);
    };
    let rec: ferry_core::rollback::RollbackRecord = serde_json::from_value(v).map_err(|e| {
        CliError::environment(format!(
            "ferry serve at {} answered a rollback this ferry cannot read: {e}",
            r.base
        ))
    })?;
    crate::recovery::report(&rec, as_json);
    Ok(Some(crate::recovery::rollback_exit(&rec)))
}

/// `ferry status` from the server.
pub fn status(r: &Remote, as_json: bool) -> CliResult<Option<i32>> {
    let Some(v) = r.call("GET", "/api/status", None, QUICK)? else {
        return Ok(None);
    };
    if as_json {
        crate::output::json(&v);
        return Ok(Some(exit::OK));
    }
    let st: ferry_api::Status = serde_json::from_value(v).map_err(|e| {
        CliError::environment(format!(
            "ferry serve at {} answered a status this ferry cannot read: {e}",
            r.base
        ))
    })?;
    crate::commands::print_status(&st);
    Ok(Some(exit::OK))
}

/// One person's API token (`server.api_tokens_file`).
#[derive(Clone)]
pub struct Person {
    pub name: String,
    pub token: String,
}

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is never printed.
        f.debug_struct("Person")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The personal tokens of `server.api_tokens_file`: one `name token` per line, `#`
/// comments and blank lines ignored. Each problem names the file and line.
pub fn personal_tokens(project: &Project, file: &str) -> CliResult<Vec<Person>> {
    let path = project.root.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::config(format!(
            "cannot read the API tokens file {} (`server.api_tokens_file`): {e}; create it (mode 600) with one `name token` per line",
            path.display()
        ))
    })?;
    warn_if_readable_by_others(&path);
    let mut out: Vec<Person> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let mut parts = line.split_whitespace();
        let (Some(name), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CliError::config(format!(
                "{at}: write `name token` (two words), like `alice 3f9c…`"
            )));
        };
        if token.len() < 16 {
            return Err(CliError::config(format!(
                "{at}: the token of {name} is shorter than 16 characters; make a long random one (`openssl rand -hex 24`)"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(CliError::config(format!(
                "{at}: the name has control characters"
            )));
        }
        if out.iter().any(|p| p.name.eq_ignore_ascii_case(name)) {
            return Err(CliError::config(format!(
                "{at}: {name} has a token already"
            )));
        }
        if out.iter().any(|p| p.token == token) {
            return Err(CliError::config(format!(
                "{at}: {name}'s token is someone else's too; every person needs their own"
            )));
        }
        out.push(Person {
            name: name.to_string(),
            token: token.to_string(),
        });
    }
    if out.is_empty() {
        return Err(CliError::config(format!(
            "the API tokens file {} has no `name token` line",
            path.display()
        )));
    }
    Ok(out)
}

/// `s` as one URL path segment (everything but unreserved characters percent-encoded).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
