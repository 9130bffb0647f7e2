//! The HTTP channels: a generic webhook and Slack incoming webhooks, over ureq (rustls).

use crate::Options;
use crate::payload;
use ferry_core::Event;
use ferry_engine::ports::{Attempt, Notifier};
use serde_json::Value;

/// A ureq agent whose every call ends within `options.timeout`, and which hands back
/// 4xx/5xx answers instead of turning them into errors.
pub(crate) fn agent(options: &Options) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            .user_agent("ferry")
            .build(),
    )
}

/// Sends a JSON body; classifies the answer. `shown` names the receiver in messages
/// without its URL (which may hold a secret).
pub(crate) fn post_json(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, String)],
    body: &Value,
    shown: &str,
) -> Attempt {
    let mut req = agent.post(url).content_type("application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    match req.send(body.to_string()) {
        Ok(mut res) => {
            let status = res.status().as_u16();
            let answer = res
                .body_mut()
                .with_config()
                .limit(4 * 1024)
                .read_to_string()
                .unwrap_or_default();
            let answer: String = answer.trim().chars().take(300).collect();
            let said = if answer.is_empty() {
                format!("{shown} answered {status}")
            } else {
                format!("{shown} answered {status}: {answer}")
            };
            classify(status, said)
        }
        // The URL is not repeated: a Slack or webhook URL may hold a secret.
        Err(ureq::Error::BadUri(_)) => Attempt::Permanent(format!(
            "{shown}: the URL is not usable; correct it in ferry.yml"
        )),
        Err(e) => Attempt::Transient(format!("{shown}: {}", transport(&e))),
    }
}

/// A status code's outcome: 2xx delivered; 408, 429, 5xx worth trying again; other
/// 4xx (and anything else) not until someone changes something.
pub(crate) fn classify(status: u16, said: String) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered(said),
        408 | 429 | 500..=599 => Attempt::Transient(said),
        _ => Attempt::Permanent(said),
    }
}

fn transport(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "no answer in time (timed out)".into(),
        ureq::Error::ConnectionFailed => "connection failed (refused or unreachable)".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Io(io) => format!("{io}"),
        other => other.to_string(),
    }
}

/// The headers every delivery carries: the event id twice (ferry's own, and the
/// conventional idempotency key) and its kind.
fn id_headers(event_id: i64, event: &Event) -> Vec<(&'static str, String)> {
    vec![
        ("X-Ferry-Event-Id", event_id.to_string()),
        ("Idempotency-Key", format!("ferry-event-{event_id}")),
        ("X-Ferry-Event", event.kind.as_str().to_string()),
    ]
}

/// A generic webhook: one JSON document per event (`payload::document`).
pub struct Webhook {
    id: String,
    kinds: Vec<String>,
    url: String,
    agent: ureq::Agent,
}

impl Webhook {
    /// A webhook channel posting to `url`.
    pub fn new(id: String, kinds: Vec<String>, url: &str, options: &Options) -> Self {
        Webhook {
            id,
            kinds,
            url: url.to_string(),
            agent: agent(options),
        }
    }
}

impl Notifier for Webhook {
    fn id(&self) -> &str {
        &self.id
    }
    fn kinds(&self) -> &[String] {
        &self.kinds
    }
    fn deliver(&self, event_id: i64, event: &Event) -> Attempt {
        let body = payload::document(event_id, event);
        let shown = format!("webhook `{}`", self.id);
        post_json(
            &self.agent,
            &self.url,
            &id_headers(event_id, event),
            &body,
            &shown,
        )
    }
}

/// A Slack incoming webhook: blocks with the commit link, environment, version,
/// duration and test results (`payload::slack`).
pub struct Slack {
    id: String,
    kinds: Vec<String>,
    url: String,
    pipeline: String,
    repository: Option<String>,
    agent: ureq::Agent,
}

impl Slack {
    /// A Slack channel posting to the incoming webhook `url`.
    pub fn new(id: String, kinds: Vec<String>, url: &str, options: &Options) -> Self {
        Slack {
            id,
            kinds,
            url: url.to_string(),
            pipeline: options.pipeline.clone(),
            repository: options.repository.clone(),
            agent: agent(options),
        }
    }
}

impl Notifier for Slack {
    fn id(&self) -> &str {
        &self.id
    }
    fn kinds(&self) -> &[String] {
        &self.kinds
    }
    fn deliver(&self, event_id: i64, event: &Event) -> Attempt {
        let body = payload::slack(event_id, event, &self.pipeline, self.repository.as_deref());
        let shown = format!("slack `{}`", self.id);
        post_json(
            &self.agent,
            &self.url,
            &id_headers(event_id, event),
            &body,
            &shown,
        )
    }
}
