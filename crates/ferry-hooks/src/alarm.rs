//! Alarm events pushed to ferry: CloudWatch alarm state changes (as EventBridge
//! delivers them, wrapped in an SNS notification, or in CloudWatch's classic SNS alarm
//! format) and Prometheus Alertmanager webhooks, all read into [`AlarmChange`]s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{HookError, quote};
use crate::json::{self, Obj};
use crate::sns::{SnsType, TYPE};

/// An alarm's state, as CloudWatch names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    /// `OK`: the alarm's condition does not hold (Alertmanager: `resolved`).
    #[serde(rename = "OK")]
    Ok,
    /// `ALARM`: the alarm's condition holds (Alertmanager: `firing`).
    #[serde(rename = "ALARM")]
    Alarm,
    /// `INSUFFICIENT_DATA`: not enough data to tell.
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl State {
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Alarm => "ALARM",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    /// The state CloudWatch names `name`.
    pub fn parse(name: &str) -> Option<State> {
        match name {
            "OK" => Some(State::Ok),
            "ALARM" => Some(State::Alarm),
            "INSUFFICIENT_DATA" => Some(State::InsufficientData),
            _ => None,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which monitoring system sent the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// Amazon CloudWatch (through EventBridge or SNS).
    CloudWatch,
    /// Prometheus Alertmanager.
    Alertmanager,
}

/// One alarm's change of state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmChange {
    /// The alarm's name (CloudWatch's alarm name, Alertmanager's `alertname` label).
    pub alarm: String,
    /// The state it is in now.
    pub state: State,
    /// The state it was in, when the sender says (Alertmanager's `resolved` implies
    /// [`State::Alarm`]; a `firing` alert does not say).
    pub previous: Option<State>,
    /// Why, in the sender's words (CloudWatch's state reason; Alertmanager's `summary`
    /// and `description` annotations).
    pub reason: String,
    /// When the state changed, ISO 8601 exactly as the sender wrote it.
    pub at: Option<String>,
    /// Who sent it.
    pub source: Source,
    /// Context: for Alertmanager, the alert's labels; for CloudWatch, `account`,
    /// `region`, `alarm_arn`, `description`, `namespace`, `metric` and
    /// `dimension.<name>` when the event carries them.
    pub labels: BTreeMap<String, String>,
}

const EVENT: &str = "CloudWatch alarm event";
const CLASSIC: &str = "CloudWatch alarm notification";
const ALERTMANAGER: &str = "Alertmanager webhook";
const BODY: &str = "alarm event";
const SNS_NOTIFICATION: &str = "SNS notification";
const SNS_MESSAGE: &str = "SNS notification's `Message`";

const STATE: &str = "one of `OK`, `ALARM`, `INSUFFICIENT_DATA`";

/// Reads an alarm event body into the changes it reports.
///
/// Accepted, told apart by their keys:
/// - `detail-type`: an EventBridge `CloudWatch Alarm State Change` event from
///   `aws.cloudwatch` (also as SNS raw message delivery sends it);
/// - `Type`: an SNS `Notification` whose `Message` is such an event or a classic
///   CloudWatch alarm notification (`AlarmName`, `NewStateValue`, …); a confirmation is
///   [`HookError::NotAnSnsNotification`];
/// - `alerts`: an Alertmanager webhook (version 4), one change per alert, `firing` →
///   [`State::Alarm`], `resolved` → [`State::Ok`];
/// - `AlarmName`: a classic CloudWatch alarm notification on its own.
///
/// A CloudWatch event gives exactly one change; an Alertmanager webhook one per alert
/// (none for an empty `alerts`).
pub fn parse_alarm_event(body: &[u8]) -> Result<Vec<AlarmChange>, HookError> {
    let value = json::parse(body, BODY)?;
    let root = Obj::root(&value, BODY)?;
    // An SNS envelope first: its signature covers `Message` only, so nothing beside it
    // (a `detail-type` added to a signed envelope) may be read as the alarm.
    if root.has("Type") {
        sns_notification(&Obj::root(&value, SNS_NOTIFICATION)?).map(|c| vec![c])
    } else if root.has("detail-type") {
        eventbridge(&Obj::root(&value, EVENT)?).map(|c| vec![c])
    } else if root.has("alerts") {
        alertmanager(&Obj::root(&value, ALERTMANAGER)?)
    } else if root.has("AlarmName") {
        classic(&Obj::root(&value, CLASSIC)?).map(|c| vec![c])
    } else {
        Err(HookError::UnknownAlarmShape)
    }
}

const NAME: &str = "a non-empty string: the alarm's name";

fn name<'a>(obj: &Obj<'a>, key: &str) -> Result<&'a str, HookError> {
    let name = obj.req_str(key, NAME)?;
    if name.trim().is_empty() {
        return Err(obj.invalid(key, name, NAME));
    }
    Ok(name)
}

fn state(obj: &Obj<'_>, key: &str) -> Result<State, HookError> {
    let name = obj.req_str(key, STATE)?;
    State::parse(name).ok_or_else(|| obj.invalid(key, name, STATE))
}

fn opt_state(obj: &Obj<'_>, key: &str) -> Result<Option<State>, HookError> {
    match obj.opt_str(key, STATE)? {
        None => Ok(None),
        Some(name) => State::parse(name)
            .map(Some)
            .ok_or_else(|| obj.invalid(key, name, STATE)),
    }
}

fn eventbridge(root: &Obj<'_>) -> Result<AlarmChange, HookError> {
    let detail_type = root.req_str("detail-type", "a string: `CloudWatch Alarm State Change`")?;
    let source = root.req_str("source", "a string: `aws.cloudwatch`")?;
    if detail_type != "CloudWatch Alarm State Change" || source != "aws.cloudwatch" {
        return Err(HookError::NotAnAlarmEvent {
            detail_type: detail_type.chars().take(64).collect(),
            source_name: source.chars().take(64).collect(),
        });
    }
    let detail = root.req_obj("detail", "an object: the alarm and its states")?;
    let alarm = name(&detail, "alarmName")?;
    let now = detail.req_obj("state", "an object: the alarm's new state")?;
    let previous = match detail.opt_obj("previousState", "an object: the alarm's previous state")? {
        Some(prev) => opt_state(&prev, "value")?,
        None => None,
    };
    let mut labels = BTreeMap::new();
    let mut label = |key: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            labels.insert(key.to_string(), value.to_string());
        }
    };
    label(
        "account",
        root.opt_str("account", "a string: the AWS account")?,
    );
    label(
        "region",
        root.opt_str("region", "a string: the AWS region")?,
    );
    label(
        "alarm_arn",
        root.map()
            .get("resources")
            .and_then(|r| r.get(0))
            .and_then(Value::as_str),
    );
    let configuration = detail.map().get("configuration");
    label(
        "description",
        configuration
            .and_then(|c| c.get("description"))
            .and_then(Value::as_str),
    );
    let metric = configuration
        .and_then(|c| c.get("metrics"))
        .and_then(Value::as_array)
        .and_then(|metrics| {
            metrics
                .iter()
                .find_map(|m| m.get("metricStat").and_then(|s| s.get("metric")))
        });
    if let Some(metric) = metric {
        label("namespace", metric.get("namespace").and_then(Value::as_str));
        label("metric", metric.get("name").and_then(Value::as_str));
        if let Some(dimensions) = metric.get("dimensions").and_then(Value::as_object) {
            for (name, value) in dimensions {
                label(&format!("dimension.{name}"), value.as_str());
            }
        }
    }
    let at = match now.opt_str("timestamp", "a string: the ISO 8601 time of the change")? {
        Some(at) => Some(at),
        None => root.opt_str("time", "a string: the ISO 8601 time of the event")?,
    };
    Ok(AlarmChange {
        alarm: alarm.to_string(),
        state: state(&now, "value")?,
        previous,
        reason: now
            .opt_str("reason", "a string: why the state changed")?
            .unwrap_or_default()
            .to_string(),
        at: at.map(str::to_string),
        source: Source::CloudWatch,
        labels,
    })
}

fn sns_notification(root: &Obj<'_>) -> Result<AlarmChange, HookError> {
    let type_name = root.req_str("Type", TYPE)?;
    match SnsType::parse(type_name) {
        Some(SnsType::Notification) => {}
        Some(found) => return Err(HookError::NotAnSnsNotification { found }),
        None => {
            return Err(HookError::UnknownSnsType {
                found: quote(type_name),
            });
        }
    }
    let text = root.req_str(
        "Message",
        "a string: the CloudWatch alarm as a JSON document",
    )?;
    parse_sns_alarm(text)
}

/// The alarm in an SNS notification's `Message` (an EventBridge alarm event or a classic
/// CloudWatch alarm notification): what `ferry serve` reads of a delivery it accepted on
/// its SNS signature, which covers `Message` and not the rest of the body.
pub fn parse_sns_alarm(text: &str) -> Result<AlarmChange, HookError> {
    let inner = json::parse_str(text, SNS_MESSAGE)?;
    let message = Obj::root(&inner, SNS_MESSAGE)?;
    if message.has("detail-type") {
        eventbridge(&Obj::root(&inner, EVENT)?)
    } else if message.has("AlarmName") {
        classic(&Obj::root(&inner, CLASSIC)?)
    } else {
        Err(HookError::UnknownSnsMessage)
    }
}

fn classic(root: &Obj<'_>) -> Result<AlarmChange, HookError> {
    let alarm = name(root, "AlarmName")?;
    let mut labels = BTreeMap::new();
    let mut label = |key: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            labels.insert(key.to_string(), value.to_string());
        }
    };
    label(
        "account",
        root.opt_str("AWSAccountId", "a string: the AWS account")?,
    );
    label(
        "region",
        root.opt_str("Region", "a string: the AWS region's name")?,
    );
    label(
        "alarm_arn",
        root.opt_str("AlarmArn", "a string: the alarm's ARN")?,
    );
    label(
        "description",
        root.opt_str("AlarmDescription", "a string: the alarm's description")?,
    );
    if let Some(trigger) = root.map().get("Trigger") {
        label(
            "namespace",
            trigger.get("Namespace").and_then(Value::as_str),
        );
        label("metric", trigger.get("MetricName").and_then(Value::as_str));
        if let Some(dimensions) = trigger.get("Dimensions").and_then(Value::as_array) {
            for dimension in dimensions {
                if let (Some(name), Some(value)) = (
                    dimension.get("name").and_then(Value::as_str),
                    dimension.get("value").and_then(Value::as_str),
                ) {
                    label(&format!("dimension.{name}"), Some(value));
                }
            }
        }
    }
    Ok(AlarmChange {
        alarm: alarm.to_string(),
        state: state(root, "NewStateValue")?,
        previous: opt_state(root, "OldStateValue")?,
        reason: root
            .opt_str("NewStateReason", "a string: why the state changed")?
            .unwrap_or_default()
            .to_string(),
        at: root
            .opt_str(
                "StateChangeTime",
                "a string: the ISO 8601 time of the change",
            )?
            .map(str::to_string),
        source: Source::CloudWatch,
        labels,
    })
}

/// Alertmanager's zero time, which it writes as `endsAt` of alerts still firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn alertmanager(root: &Obj<'_>) -> Result<Vec<AlarmChange>, HookError> {
    if let Some(version) = root.opt_str("version", "a string: \"4\"")?
        && version != "4"
    {
        return Err(HookError::UnsupportedAlertmanagerVersion {
            found: quote(version),
        });
    }
    let alerts = root.req_objects("alerts", "an array of alerts", "an object: one alert")?;
    alerts.iter().map(alert).collect()
}

fn alert(alert: &Obj<'_>) -> Result<AlarmChange, HookError> {
    const STATUS: &str = "`firing` or `resolved`";
    let status = alert.req_str("status", STATUS)?;
    let (state, previous) = match status {
        "firing" => (State::Alarm, None),
        "resolved" => (State::Ok, Some(State::Alarm)),
        other => return Err(alert.invalid("status", other, STATUS)),
    };
    let labels = alert.string_map("labels", "an object of string labels")?;
    let labels_obj = alert.req_obj("labels", "an object of string labels")?;
    let name = name(&labels_obj, "alertname")?;
    let annotations = alert.string_map("annotations", "an object of string annotations")?;
    let annotation = |key: &str| {
        annotations
            .iter()
            .find(|(k, _)| *k == key)
            .map(|&(_, v)| v)
            .filter(|v| !v.is_empty())
    };
    let reason = match (annotation("summary"), annotation("description")) {
        (Some(summary), Some(description)) => format!("{summary}: {description}"),
        (Some(one), None) | (None, Some(one)) => one.to_string(),
        (None, None) => format!("alert {status}"),
    };
    let starts_at = alert.opt_str("startsAt", "a string: when the alert started firing")?;
    let ends_at = alert
        .opt_str("endsAt", "a string: when the alert was resolved")?
        .filter(|t| *t != ZERO_TIME);
    let at = match state {
        State::Ok => ends_at.or(starts_at),
        _ => starts_at,
    };
    Ok(AlarmChange {
        alarm: name.to_string(),
        state,
        previous,
        reason,
        at: at.map(str::to_string),
        source: Source::Alertmanager,
        labels: labels
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}
