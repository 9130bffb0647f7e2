//! GitHub commit statuses: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, one context
//! per environment (`ferry/<env>`), the token from the environment variable named by
//! `token_env`.

use crate::Options;
use crate::http::{agent, post_json};
use crate::payload;
use ferry_core::Event;
use ferry_engine::ports::{Attempt, Notifier};
use serde_json::json;

/// The GitHub commit status channel.
pub struct Github {
    id: String,
    kinds: Vec<String>,
    api_url: String,
    repo: String,
    token_env: String,
    env: fn(&str) -> Option<String>,
    agent: ureq::Agent,
}

impl Github {
    /// A channel setting statuses on `repo` (`owner/name`) through `api_url`.
    pub fn new(
        id: String,
        kinds: Vec<String>,
        api_url: &str,
        repo: &str,
        token_env: &str,
        options: &Options,
    ) -> Self {
        Github {
            id,
            kinds,
            api_url: api_url.trim_end_matches('/').to_string(),
            repo: repo.to_string(),
            token_env: token_env.to_string(),
            env: options.env,
            agent: agent(options),
        }
    }
}

impl Notifier for Github {
    fn id(&self) -> &str {
        &self.id
    }
    fn kinds(&self) -> &[String] {
        &self.kinds
    }
    fn deliver(&self, event_id: i64, event: &Event) -> Attempt {
        let Some((sha, state, context, description)) = payload::github_status(event) else {
            return Attempt::Delivered(format!("no commit status for `{}`", event.kind));
        };
        let Some(token) = (self.env)(&self.token_env).filter(|t| !t.trim().is_empty()) else {
            return Attempt::Permanent(format!(
                "github `{}`: the environment variable `{}` is not set; export the token there (or name another with `token_env:`), then `ferry notify retry`",
                self.id, self.token_env
            ));
        };
        let url = format!("{}/repos/{}/statuses/{sha}", self.api_url, self.repo);
        let body = json!({
            "state": state,
            "context": context,
            "description": description,
        });
        let headers = [
            ("Authorization", format!("Bearer {}", token.trim())),
            ("Accept", "application/vnd.github+json".to_string()),
            ("X-GitHub-Api-Version", "2022-11-28".to_string()),
            ("X-Ferry-Event-Id", event_id.to_string()),
        ];
        let shown = format!("github `{}` ({} {state} on {sha})", self.id, context);
        post_json(&self.agent, &url, &headers, &body, &shown)
    }
}
