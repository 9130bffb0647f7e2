//! ferry's notification channels, behind the engine's [`Notifier`] port: a generic
//! webhook (one JSON document per event, the seed's §3.6.2 shapes), Slack incoming
//! webhooks (blocks), email over SMTP (lettre, STARTTLS by default) and GitHub commit
//! statuses. Each call has a timeout; each delivery carries the event id
//! (`X-Ferry-Event-Id`, or the email's `Message-ID`) so a receiver can drop the
//! duplicates at-least-once delivery can cause. What a receiver answers decides the
//! outcome: 2xx delivered; a refused connection, a timeout, 408, 429 or 5xx transient;
//! another 4xx, or an SMTP 5xx, permanent (a dead letter at once).

pub mod email;
mod github;
mod http;
pub mod payload;

pub use email::Email;
pub use github::Github;
pub use http::{Slack, Webhook};

use ferry_config::{Notification, Pipeline};
use ferry_engine::ports::Notifier;
use std::sync::Arc;
use std::time::Duration;

/// What every channel is built with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The longest one call may take (connect, send, answer).
    pub timeout: Duration,
    /// The pipeline's name (email subjects, Slack headers).
    pub pipeline: String,
    /// The repository's web address, for commit links (`source.repository` or the
    /// origin remote).
    pub repository: Option<String>,
    /// Reads an environment variable (tokens, passwords); injected for tests.
    pub env: fn(&str) -> Option<String>,
}

impl Options {
    /// Ten-second calls and the process's environment.
    pub fn new(pipeline: &str, repository: Option<String>) -> Self {
        Options {
            timeout: Duration::from_secs(10),
            pipeline: pipeline.to_string(),
            repository,
            env: |name| std::env::var(name).ok(),
        }
    }
}

/// One notifier per channel of the pipeline file, in file order.
pub fn channels(pipeline: &Pipeline, options: &Options) -> Vec<Arc<dyn Notifier>> {
    pipeline
        .notifications
        .iter()
        .map(|n| channel(n, options))
        .collect()
}

/// The notifier for one channel.
pub fn channel(n: &Notification, options: &Options) -> Arc<dyn Notifier> {
    let id = n.id();
    let kinds = n.wanted();
    match n {
        Notification::Webhook { url, .. } => Arc::new(Webhook::new(id, kinds, url, options)),
        Notification::Slack { url, .. } => Arc::new(Slack::new(id, kinds, url, options)),
        Notification::Email {
            smtp,
            from,
            to,
            tls,
            username,
            password_env,
            ..
        } => Arc::new(Email::new(
            id,
            kinds,
            email::Settings {
                smtp: smtp.clone(),
                tls: *tls,
                from: from.clone(),
                to: to.clone(),
                username: username.clone(),
                password_env: password_env.clone(),
            },
            options,
        )),
        Notification::Github {
            repo,
            token_env,
            api_url,
            ..
        } => Arc::new(Github::new(id, kinds, api_url, repo, token_env, options)),
    }
}
