//! A [`Notifier`] on SNS: each event is published to one topic, its JSON (`data`, plus
//! the one-line `message`) as the body and message attributes subscribers filter on —
//! `event` (the kind: `deployment_succeeded`, `rollback_initiated`, …), `environment`,
//! `run` and `ferryEventId` (so a receiver drops a duplicate).

use crate::Aws;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use ferry_core::Event;
use ferry_core::notify::Attempt;
use ferry_engine::ports::{Notifier, PortErrorKind};

/// Publishes events to one SNS topic.
pub struct SnsNotifier {
    aws: Aws,
    client: Client,
    id: String,
    topic_arn: String,
    kinds: Vec<String>,
}

fn attr(data_type: &str, value: String) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .ok()
}

/// An SNS subject: at most 100 printable ASCII characters, no line breaks.
fn subject(message: &str) -> String {
    let clean: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let mut s = clean.trim().to_string();
    if s.len() > 100 {
        s.truncate(97);
        s.push_str("...");
    }
    if s.is_empty() { "ferry".to_string() } else { s }
}

impl SnsNotifier {
    /// A channel named `id` publishing the event kinds `kinds` (all when empty) to
    /// `topic_arn`.
    pub fn new(aws: &Aws, id: &str, topic_arn: &str, kinds: Vec<String>) -> SnsNotifier {
        SnsNotifier {
            aws: aws.clone(),
            client: Client::new(aws.config()),
            id: id.to_string(),
            topic_arn: topic_arn.to_string(),
            kinds,
        }
    }
}

/// Creates a topic and returns its ARN (tests and a first try against an empty account;
/// in production the monitoring stack of `ferry synth aws` creates the topics).
pub fn create_topic(aws: &Aws, name: &str) -> ferry_engine::ports::PortResult<String> {
    let client = Client::new(aws.config());
    let out = aws
        .block_on(client.create_topic().name(name).send())
        .map_err(|e| aws.error("SNS", "CreateTopic", &e))?;
    Ok(out.topic_arn().unwrap_or_default().to_string())
}

/// Subscribes `endpoint` (`protocol`: `http`, `https`, `email`, `sqs`, …) to a topic.
pub fn subscribe(
    aws: &Aws,
    topic_arn: &str,
    protocol: &str,
    endpoint: &str,
) -> ferry_engine::ports::PortResult<()> {
    let client = Client::new(aws.config());
    aws.block_on(
        client
            .subscribe()
            .topic_arn(topic_arn)
            .protocol(protocol)
            .endpoint(endpoint)
            .send(),
    )
    .map_err(|e| aws.error("SNS", "Subscribe", &e))?;
    Ok(())
}

impl Notifier for SnsNotifier {
    fn id(&self) -> &str {
        &self.id
    }

    fn kinds(&self) -> &[String] {
        &self.kinds
    }

    fn deliver(&self, event_id: i64, event: &Event) -> Attempt {
        let mut body = event.data.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.insert("message".into(), event.message.clone().into());
        } else {
            body = serde_json::json!({ "message": event.message, "data": event.data });
        }
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject(&event.message))
            .message(body.to_string());
        let mut attrs = vec![
            ("event", attr("String", event.kind.as_str().to_string())),
            ("ferryEventId", attr("Number", event_id.to_string())),
        ];
        if let Some(env) = &event.environment {
            attrs.push(("environment", attr("String", env.clone())));
        }
        if let Some(run) = event.run {
            attrs.push(("run", attr("Number", run.0.to_string())));
        }
        for (k, v) in attrs {
            if let Some(v) = v {
                req = req.message_attributes(k, v);
            }
        }
        match self.aws.block_on(req.send()) {
            Ok(out) => Attempt::Delivered(format!(
                "SNS message {}",
                out.message_id().unwrap_or("(no id)")
            )),
            Err(e) => {
                let err = self.aws.error("SNS", "Publish", &e);
                match err.kind {
                    PortErrorKind::Transient => Attempt::Transient(err.message),
                    _ => Attempt::Permanent(err.message),
                }
            }
        }
    }
}
