//! What the rollback Lambda does with one EventBridge event (seed §3.3.2, §5.1): the
//! `CloudWatch Alarm State Change` event of a metric or composite alarm, parsed with
//! `aws_lambda_events` as `EventBridgeEvent<CloudWatchAlarmData>`.
//!
//! - `ALARM` of an alarm of an environment — its name starts with the environment's
//!   prefix or is one of the environment's alarms in `ferry.yml`, exactly as the
//!   monitoring stack's EventBridge rule matches them ([`routes`]); for a composite alarm
//!   its own name, else the name of an alarm that triggered it: roll that environment
//!   back.
//! - `OK` and `INSUFFICIENT_DATA`: nothing.
//! - Anything else (another source or detail type, a body that does not parse): dropped
//!   with its event id, and the Lambda returns success so EventBridge does not retry it
//!   forever. Failures while *handling* a good event are errors instead, so the Lambda's
//!   retries and then its dead-letter queue receive them.

use aws_lambda_events::event::cloudwatch_alarms::{CloudWatchAlarmData, CloudWatchAlarmStateValue};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde_json::Value;

/// The event's detail type.
pub const DETAIL_TYPE: &str = "CloudWatch Alarm State Change";

/// The alarm name prefix of an environment: `<pipeline>-<environment>-`, spelled as
/// `ferry synth aws` spells it in the environment's EventBridge rule
/// (`ferry_synth::Names::alarm_prefix`: characters outside `[A-Za-z0-9-]` become `-`).
pub fn alarm_prefix(pipeline: &str, environment: &str) -> String {
    ferry_synth::Names::new(pipeline, None).alarm_prefix(environment)
}

/// The alarms of one environment, as its EventBridge rule in the monitoring stack
/// matches them: names starting with `prefix`, and the alarms of `ferry.yml` bound to
/// the environment by their exact `names`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub environment: String,
    pub prefix: String,
    pub names: Vec<String>,
}

impl Route {
    /// A route by prefix only.
    pub fn prefix(environment: &str, prefix: &str) -> Route {
        Route {
            environment: environment.to_string(),
            prefix: prefix.to_string(),
            names: Vec::new(),
        }
    }
}

/// The routes of every environment of a pipeline: what its synthesized alarm rules send
/// to the Lambda, environment by environment.
pub fn routes(pipeline: &ferry_config::Pipeline) -> Vec<Route> {
    pipeline
        .environments
        .iter()
        .map(|e| Route {
            environment: e.name.clone(),
            prefix: alarm_prefix(&pipeline.name, &e.name),
            names: pipeline
                .alarms_for(&e.name)
                .into_iter()
                .map(|a| a.name.clone())
                .collect(),
        })
        .collect()
}

/// The environment an alarm belongs to: the first route naming it exactly, else the
/// route with the longest prefix it starts with.
pub fn environment_of<'a>(alarm: &str, routes: &'a [Route]) -> Option<&'a str> {
    if let Some(r) = routes.iter().find(|r| r.names.iter().any(|n| n == alarm)) {
        return Some(&r.environment);
    }
    routes
        .iter()
        .filter(|r| !r.prefix.is_empty() && alarm.starts_with(r.prefix.as_str()))
        .max_by_key(|r| r.prefix.len())
        .map(|r| r.environment.as_str())
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Roll `environment` back: `alarm` went into ALARM for `reason`.
    RollBack {
        event_id: String,
        environment: String,
        alarm: String,
        reason: String,
        composite: bool,
        /// When the alarm changed state (milliseconds since the epoch).
        at_ms: i64,
    },
    /// A well-formed event that asks for nothing (OK, INSUFFICIENT_DATA, an alarm of no
    /// known environment).
    Nothing { event_id: String, why: String },
    /// An event of an unexpected shape: log it with its id and drop it.
    Drop { event_id: String, why: String },
}

/// Decides what one event asks for, with the environments' [`routes`].
pub fn route(event: &Value, routes: &[Route]) -> Action {
    let event_id = event
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("(no id)")
        .to_string();
    // The envelope first, so another kind of event is named as such.
    let envelope: EventBridgeEvent<Value> = match serde_json::from_value(event.clone()) {
        Ok(p) => p,
        Err(e) => {
            return Action::Drop {
                event_id,
                why: format!("not an EventBridge event: {e}"),
            };
        }
    };
    if envelope.source != "aws.cloudwatch" || envelope.detail_type != DETAIL_TYPE {
        return Action::Drop {
            event_id,
            why: format!(
                "unexpected event `{}` from `{}` (want `{DETAIL_TYPE}` from `aws.cloudwatch`)",
                envelope.detail_type, envelope.source
            ),
        };
    }
    let detail: CloudWatchAlarmData<Value, Value> = match serde_json::from_value(envelope.detail) {
        Ok(d) => d,
        Err(e) => {
            return Action::Drop {
                event_id,
                why: format!("the alarm event's detail does not parse: {e}"),
            };
        }
    };
    let Some(state) = detail.state else {
        return Action::Drop {
            event_id,
            why: format!("alarm {} has no state in its event", detail.alarm_name),
        };
    };
    match state.value {
        CloudWatchAlarmStateValue::Alarm => {}
        other => {
            return Action::Nothing {
                event_id,
                why: format!("alarm {} is {other:?}: nothing to do", detail.alarm_name),
            };
        }
    }
    let composite = detail.configuration.get("alarmRule").is_some();
    let mut names = vec![detail.alarm_name.clone()];
    if composite {
        names.extend(triggering_alarms(state.reason_data.as_ref()));
    }
    for name in &names {
        if let Some(env) = environment_of(name, routes) {
            return Action::RollBack {
                event_id,
                environment: env.to_string(),
                alarm: detail.alarm_name.clone(),
                reason: state.reason.clone(),
                composite,
                at_ms: state.timestamp.timestamp_millis(),
            };
        }
    }
    Action::Nothing {
        event_id,
        why: format!(
            "alarm {} belongs to no environment (prefixes: {})",
            detail.alarm_name,
            routes
                .iter()
                .map(|r| r.prefix.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The names of the alarms that made a composite alarm fire: its `reasonData` (a JSON
/// string, as AWS sends it, or an object) lists them by ARN under `triggeringAlarms`.
fn triggering_alarms(reason_data: Option<&Value>) -> Vec<String> {
    let parsed;
    let data = match reason_data {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v) => {
                parsed = v;
                &parsed
            }
            Err(_) => return Vec::new(),
        },
        Some(v) => v,
        None => return Vec::new(),
    };
    data.get("triggeringAlarms")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| a.get("arn").and_then(Value::as_str))
                .filter_map(|arn| arn.rsplit_once(":alarm:").map(|(_, n)| n.to_string()))
                .collect()
        })
        .unwrap_or_default()
}
