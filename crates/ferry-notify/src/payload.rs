//! What each channel sends for an event, as pure functions (tested without a network).

use ferry_core::approval::commit_url;
use ferry_core::events::iso8601;
use ferry_core::{Event, EventKind};
use serde_json::{Map, Value, json};

/// The webhook's JSON document: the event's payload (for the seed's kinds exactly the
/// §3.6.2 shape) with `event`, `eventId`, `environment`, `message`, `timestamp` and
/// `pipelineExecutionId` filled in where the payload lacks them.
pub fn document(event_id: i64, event: &Event) -> Value {
    let mut doc = match &event.data {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        other => {
            let mut m = Map::new();
            m.insert("data".into(), other.clone());
            m
        }
    };
    let mut fill = |k: &str, v: Value| {
        if !v.is_null() {
            doc.entry(k.to_string()).or_insert(v);
        }
    };
    fill("event", json!(event.kind.as_str()));
    fill("eventId", json!(event_id));
    fill("environment", json!(event.environment));
    fill("message", json!(event.message));
    fill("timestamp", json!(iso8601(event.at)));
    fill(
        "pipelineExecutionId",
        json!(event.run.map(|r| r.execution_id())),
    );
    Value::Object(doc)
}

fn text<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.data.get(key).and_then(Value::as_str)
}

/// The commit an event is about: `version`, `commit` or (rollbacks) `currentVersion`.
pub fn commit_of(event: &Event) -> Option<&str> {
    match event.kind {
        EventKind::RollbackInitiated => text(event, "currentVersion"),
        EventKind::RollbackSucceeded => text(event, "previousVersion"),
        _ => text(event, "version").or_else(|| text(event, "commit")),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn icon(kind: EventKind) -> &'static str {
    match kind {
        EventKind::DeploymentSucceeded | EventKind::RollbackSucceeded => ":white_check_mark:",
        EventKind::DeploymentFailed | EventKind::RollbackFailed | EventKind::IncidentOpened => {
            ":x:"
        }
        EventKind::RollbackInitiated => ":rewind:",
        EventKind::ApprovalRequested => ":raising_hand:",
        EventKind::DeploymentStarted => ":rocket:",
        _ => ":information_source:",
    }
}

/// Slack's message: a header, the event's line, and fields for the environment, the
/// version (linked to the commit), the duration and the test results where the event
/// has them. `text` is the fallback Slack shows in notifications.
pub fn slack(event_id: i64, event: &Event, pipeline: &str, repository: Option<&str>) -> Value {
    let mut fields = Vec::new();
    if let Some(env) = event
        .environment
        .as_deref()
        .or_else(|| text(event, "environment"))
    {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Environment*\n{env}")}));
    }
    if let Some(sha) = commit_of(event) {
        let link = text(event, "commitUrl")
            .map(str::to_string)
            .or_else(|| repository.map(|r| commit_url(r, sha)));
        let shown = match link {
            Some(url) => format!("<{url}|{}>", short(sha)),
            None => format!("`{}`", short(sha)),
        };
        fields.push(json!({"type": "mrkdwn", "text": format!("*Version*\n{shown}")}));
    }
    if let Some(d) = text(event, "duration") {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Duration*\n{d}")}));
    }
    if let Some(Value::Object(tests)) = event.data.get("testResults") {
        let parts: Vec<String> = [
            ("unitTests", "unit"),
            ("integrationTests", "integration"),
            ("e2eTests", "e2e"),
            ("coverage", "coverage"),
        ]
        .iter()
        .filter_map(|(k, label)| {
            tests
                .get(*k)
                .and_then(Value::as_str)
                .map(|v| format!("{label}: {v}"))
        })
        .collect();
        if !parts.is_empty() {
            fields
                .push(json!({"type": "mrkdwn", "text": format!("*Tests*\n{}", parts.join(", "))}));
        }
    }
    if let Some(r) = text(event, "reason") {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Reason*\n{r}")}));
    }
    let title = format!(
        "{} {pipeline}: {}",
        icon(event.kind),
        event.kind.as_str().replace('_', " ")
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title.chars().take(150).collect::<String>(), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": event.message}}),
    ];
    if !fields.is_empty() {
        fields.truncate(10);
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("ferry event {event_id} · {}", iso8601(event.at))}]}));
    json!({"text": format!("{pipeline}: {}", event.message), "blocks": blocks})
}

/// A GitHub commit status: `(sha, state, context, description)`, or `None` for an event
/// that sets no status. Per environment (`ferry/<env>`): pending while deploying or
/// awaiting approval, success when deployed, failure when the deployment failed or was
/// rolled back.
pub fn github_status(event: &Event) -> Option<(String, &'static str, String, String)> {
    let env = event
        .environment
        .clone()
        .or_else(|| text(event, "environment").map(str::to_string))?;
    let state = match event.kind {
        EventKind::DeploymentStarted | EventKind::ApprovalRequested => "pending",
        EventKind::DeploymentSucceeded => "success",
        EventKind::DeploymentFailed | EventKind::RollbackInitiated => "failure",
        _ => return None,
    };
    let sha = commit_of(event)?.to_string();
    // GitHub keeps at most 140 characters of a description.
    let description: String = event.message.chars().take(140).collect();
    Some((sha, state, format!("ferry/{env}"), description))
}

/// An email's subject and plain-text body.
pub fn email(event_id: i64, event: &Event, pipeline: &str) -> (String, String) {
    let subject = format!("[ferry] {pipeline}: {}", event.message);
    let subject: String = subject.chars().take(200).collect();
    let doc = document(event_id, event);
    let details = serde_json::to_string_pretty(&doc).unwrap_or_default();
    let body = format!(
        "{}\n\nevent: {}\nevent id: {event_id}\nat: {}\n\n{details}\n",
        event.message,
        event.kind,
        iso8601(event.at)
    );
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{RunId, Timestamp};

    fn started() -> Event {
        Event {
            at: Timestamp(1_769_508_000_000),
            kind: EventKind::DeploymentStarted,
            run: Some(RunId(3)),
            environment: Some("production".into()),
            message: "deploying abc123def to production".into(),
            data: json!({
                "event": "deployment_started",
                "environment": "production",
                "version": "abc123def",
                "commitMessage": "feat: add new feature",
                "commitAuthor": "developer@example.com",
                "pipelineExecutionId": "execution-3",
                "timestamp": "2026-01-27T10:00:00Z"
            }),
        }
    }

    #[test]
    fn webhook_document_is_the_seed_shape_plus_the_event_id() {
        let d = document(42, &started());
        assert_eq!(d["event"], "deployment_started");
        assert_eq!(d["version"], "abc123def");
        assert_eq!(d["commitMessage"], "feat: add new feature");
        assert_eq!(d["timestamp"], "2026-01-27T10:00:00Z");
        assert_eq!(d["eventId"], 42);
        assert_eq!(d["pipelineExecutionId"], "execution-3");
    }

    #[test]
    fn slack_links_the_commit_and_lists_tests() {
        let mut e = started();
        e.kind = EventKind::DeploymentSucceeded;
        e.data["duration"] = json!("45m 30s");
        e.data["testResults"] = json!({"unitTests": "passed", "coverage": "85%"});
        let s = slack(1, &e, "shop", Some("https://github.com/acme/shop"));
        let all = s.to_string();
        assert!(
            all.contains("<https://github.com/acme/shop/commit/abc123def|abc123def>"),
            "{all}"
        );
        assert!(all.contains("*Duration*\\n45m 30s"), "{all}");
        assert!(all.contains("unit: passed, coverage: 85%"), "{all}");
        assert!(all.contains("*Environment*\\nproduction"), "{all}");
    }

    #[test]
    fn github_states_per_environment() {
        let (sha, state, ctx, _) = github_status(&started()).expect("status");
        assert_eq!(
            (sha.as_str(), state, ctx.as_str()),
            ("abc123def", "pending", "ferry/production")
        );
        let mut e = started();
        e.kind = EventKind::StepStarted;
        assert!(github_status(&e).is_none());
    }
}
