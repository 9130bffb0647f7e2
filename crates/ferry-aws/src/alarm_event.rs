//! What the rollback Lambda does with one EventBridge event (seed §3.3.2, §5.1): the
//! `CloudWatch Alarm State Change` event of a metric or composite alarm, parsed with
//! `aws_lambda_events` as `EventBridgeEvent<CloudWatchAlarmData>`.
//!
//! - `ALARM` of an alarm whose name starts with an environment's prefix (for a composite
//!   alarm: its own name, else the name of an alarm that triggered it): roll that
//!   environment back.
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

/// The alarm name prefix of an environment: `<pipeline>-<environment>-` (the names
/// `ferry synth aws` gives the environment's alarms, which its EventBridge rule matches).
pub fn alarm_prefix(pipeline: &str, environment: &str) -> String {
    format!("{pipeline}-{environment}-")
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
    },
    /// A well-formed event that asks for nothing (OK, INSUFFICIENT_DATA, an alarm of no
    /// known environment).
    Nothing { event_id: String, why: String },
    /// An event of an unexpected shape: log it with its id and drop it.
    Drop { event_id: String, why: String },
}

/// Decides what one event asks for. `prefixes` are `(environment, alarm name prefix)`,
/// tried in order (put longer prefixes first when one is a prefix of another).
pub fn route(event: &Value, prefixes: &[(String, String)]) -> Action {
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
        if let Some((env, _)) = prefixes.iter().find(|(_, p)| name.starts_with(p.as_str())) {
            return Action::RollBack {
                event_id,
                environment: env.clone(),
                alarm: detail.alarm_name.clone(),
                reason: state.reason.clone(),
                composite,
            };
        }
    }
    Action::Nothing {
        event_id,
        why: format!(
            "alarm {} belongs to no environment (prefixes: {})",
            detail.alarm_name,
            prefixes
                .iter()
                .map(|(_, p)| p.as_str())
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
