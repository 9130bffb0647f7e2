//! Alarm events: CloudWatch through EventBridge, SNS (both formats) and Alertmanager
//! webhooks, from documented-shape fixtures; and the specific error of each bad input.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use ferry_hooks::{AlarmChange, HookError, SnsType, Source, State, parse_alarm_event};
use serde_json::{Value, json};

const EVENTBRIDGE: &[u8] = include_bytes!("fixtures/eventbridge_alarm.json");
const EVENTBRIDGE_OK: &[u8] = include_bytes!("fixtures/eventbridge_ok_metric_math.json");
const SNS_EVENTBRIDGE: &[u8] = include_bytes!("fixtures/sns_eventbridge_alarm.json");
const SNS_CLASSIC: &[u8] = include_bytes!("fixtures/sns_classic_alarm.json");
const SNS_CONFIRMATION: &[u8] = include_bytes!("fixtures/sns_subscription_confirmation.json");
const SNS_UNSUBSCRIBE: &[u8] = include_bytes!("fixtures/sns_unsubscribe_confirmation.json");
const SNS_HELLO: &[u8] = include_bytes!("fixtures/sns_notification_hello.json");
const AM_FIRING: &[u8] = include_bytes!("fixtures/alertmanager_firing.json");
const AM_RESOLVED: &[u8] = include_bytes!("fixtures/alertmanager_resolved.json");

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn one(body: &[u8]) -> AlarmChange {
    let mut changes = parse_alarm_event(body).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    changes.remove(0)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

fn edited(body: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value = json_of(body);
    edit(&mut value);
    serde_json::to_vec(&value).unwrap()
}

/// Edits the JSON document inside an SNS notification's `Message`.
fn edited_message(body: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    edited(body, |outer| {
        let mut inner: Value = serde_json::from_str(outer["Message"].as_str().unwrap()).unwrap();
        edit(&mut inner);
        outer["Message"] = Value::String(inner.to_string());
    })
}

// --- CloudWatch through EventBridge -----------------------------------------------

fn expected_eventbridge_alarm() -> AlarmChange {
    AlarmChange {
        alarm: "shop-api-production-5xx".into(),
        state: State::Alarm,
        previous: Some(State::Ok),
        reason: "Threshold Crossed: 1 out of the last 1 datapoints [12.0 (15/05/24 09:44:00)] \
                 was greater than the threshold (5.0) (minimum 1 datapoint for OK -> ALARM \
                 transition)."
            .into(),
        at: Some("2024-05-15T09:45:12.347+0000".into()),
        source: Source::CloudWatch,
        labels: labels(&[
            ("account", "123456789012"),
            ("region", "eu-west-1"),
            (
                "alarm_arn",
                "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:shop-api-production-5xx",
            ),
            (
                "description",
                "5xx responses of shop-api in production above 5 a minute",
            ),
            ("namespace", "AWS/ApplicationELB"),
            ("metric", "HTTPCode_Target_5XX_Count"),
            (
                "dimension.LoadBalancer",
                "app/shop-api-prod/50dc6c495c0c9188",
            ),
            (
                "dimension.TargetGroup",
                "targetgroup/shop-api-prod/73e2d6bc24d8a067",
            ),
        ]),
    }
}

#[test]
fn eventbridge_alarm_state_change() {
    assert_eq!(one(EVENTBRIDGE), expected_eventbridge_alarm());
}

#[test]
fn eventbridge_metric_math_alarm_back_to_ok() {
    let change = one(EVENTBRIDGE_OK);
    assert_eq!(change.alarm, "shop-api-staging-error-rate");
    assert_eq!(change.state, State::Ok);
    assert_eq!(change.previous, Some(State::InsufficientData));
    assert_eq!(change.at.as_deref(), Some("2024-05-15T10:02:40.814+0000"));
    assert!(
        change
            .reason
            .starts_with("Threshold Crossed: no datapoints")
    );
    // The first metric with a metricStat describes the alarm; no description configured.
    assert_eq!(
        change.labels.get("metric").map(String::as_str),
        Some("HTTPCode_Target_5XX_Count")
    );
    assert!(!change.labels.contains_key("description"));
}

#[test]
fn eventbridge_without_state_timestamp_uses_the_event_time() {
    let body = edited(EVENTBRIDGE, |v| {
        v["detail"]["state"]
            .as_object_mut()
            .unwrap()
            .remove("timestamp");
    });
    assert_eq!(one(&body).at.as_deref(), Some("2024-05-15T09:45:12Z"));
}

#[test]
fn eventbridge_without_previous_state_has_none() {
    let body = edited(EVENTBRIDGE, |v| {
        v["detail"].as_object_mut().unwrap().remove("previousState");
    });
    assert_eq!(one(&body).previous, None);
}

// --- SNS ---------------------------------------------------------------------------

#[test]
fn eventbridge_event_wrapped_in_sns() {
    assert_eq!(one(SNS_EVENTBRIDGE), expected_eventbridge_alarm());
}

#[test]
fn classic_sns_alarm_notification() {
    assert_eq!(
        one(SNS_CLASSIC),
        AlarmChange {
            alarm: "awsec2-i-0a1b2c3d4e5f67890-High-CPU-Utilization".into(),
            state: State::Alarm,
            previous: Some(State::Ok),
            reason: "Threshold Crossed: 1 out of the last 1 datapoints [93.4 (15/05/24 \
                     09:40:00)] was greater than the threshold (80.0) (minimum 1 datapoint \
                     for OK -> ALARM transition)."
                .into(),
            at: Some("2024-05-15T09:45:35.547+0000".into()),
            source: Source::CloudWatch,
            labels: labels(&[
                ("account", "123456789012"),
                ("region", "EU (Ireland)"),
                (
                    "alarm_arn",
                    "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:awsec2-i-0a1b2c3d4e5f67890-High-CPU-Utilization",
                ),
                (
                    "description",
                    "CPU of the checkout worker above 80% for 5 minutes"
                ),
                ("namespace", "AWS/EC2"),
                ("metric", "CPUUtilization"),
                ("dimension.InstanceId", "i-0a1b2c3d4e5f67890"),
            ]),
        }
    );
}

#[test]
fn classic_alarm_on_its_own_as_raw_message_delivery_sends_it() {
    let message = json_of(SNS_CLASSIC)["Message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(one(message.as_bytes()), one(SNS_CLASSIC));
}

#[test]
fn classic_alarm_with_null_description_and_insufficient_data() {
    let body = edited_message(SNS_CLASSIC, |m| {
        m["AlarmDescription"] = Value::Null;
        m["NewStateValue"] = json!("INSUFFICIENT_DATA");
        m["OldStateValue"] = json!("ALARM");
    });
    let change = one(&body);
    assert_eq!(
        (change.state, change.previous),
        (State::InsufficientData, Some(State::Alarm))
    );
    assert!(!change.labels.contains_key("description"));
}

#[test]
fn subscription_confirmations_carry_no_alarm() {
    let err = parse_alarm_event(SNS_CONFIRMATION).unwrap_err();
    assert_eq!(
        err,
        HookError::NotAnSnsNotification {
            found: SnsType::SubscriptionConfirmation
        }
    );
    assert!(err.to_string().contains("SubscribeURL"), "{err}");
    assert_eq!(
        parse_alarm_event(SNS_UNSUBSCRIBE),
        Err(HookError::NotAnSnsNotification {
            found: SnsType::UnsubscribeConfirmation
        })
    );
}

#[test]
fn an_sns_notification_that_is_not_an_alarm() {
    // "Hello world!" is not JSON.
    let err = parse_alarm_event(SNS_HELLO).unwrap_err();
    assert!(
        matches!(
            err,
            HookError::InvalidJson {
                what: "SNS notification's `Message`",
                ..
            }
        ),
        "{err:?}"
    );
    // JSON, but neither CloudWatch shape.
    let body = edited(SNS_HELLO, |v| v["Message"] = json!(r#"{"hello": "world"}"#));
    assert_eq!(parse_alarm_event(&body), Err(HookError::UnknownSnsMessage));
    let body = edited(SNS_HELLO, |v| v["Message"] = json!("[1]"));
    assert_eq!(
        parse_alarm_event(&body),
        Err(HookError::NotAnObject {
            what: "SNS notification's `Message`",
            found: "an array"
        })
    );
    let body = edited(SNS_HELLO, |v| v["Type"] = json!("Notice"));
    assert_eq!(
        parse_alarm_event(&body),
        Err(HookError::UnknownSnsType {
            found: "\"Notice\"".into()
        })
    );
}

#[test]
fn a_truncated_sns_message_is_truncated_json() {
    let body = edited(SNS_EVENTBRIDGE, |v| {
        let text = v["Message"].as_str().unwrap();
        v["Message"] = json!(text[..text.len() - 20]);
    });
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::TruncatedJson {
            what: "SNS notification's `Message`",
            ..
        })
    ));
}

#[test]
fn sns_message_must_be_a_string() {
    let body = edited(SNS_EVENTBRIDGE, |v| v["Message"] = json_of(EVENTBRIDGE));
    let err = parse_alarm_event(&body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the SNS notification's `Message` is an object, expected a string: the CloudWatch \
         alarm as a JSON document"
    );
}

// --- Alertmanager ------------------------------------------------------------------

#[test]
fn alertmanager_firing_gives_one_change_per_alert() {
    let changes = parse_alarm_event(AM_FIRING).unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        changes[0],
        AlarmChange {
            alarm: "HighErrorRate".into(),
            state: State::Alarm,
            previous: None,
            reason: "shop-api 5xx rate above 5% on 10.0.3.17:8080: 7.3% of requests failed \
                     over the last 5 minutes."
                .into(),
            at: Some("2024-05-15T09:44:03.052Z".into()),
            source: Source::Alertmanager,
            labels: labels(&[
                ("alertname", "HighErrorRate"),
                ("env", "production"),
                ("instance", "10.0.3.17:8080"),
                ("job", "shop-api"),
                ("service", "shop-api"),
                ("severity", "page"),
            ]),
        }
    );
    assert_eq!(
        changes[1].reason,
        "shop-api 5xx rate above 5% on 10.0.3.18:8080"
    );
    assert_eq!(changes[1].labels["instance"], "10.0.3.18:8080");
    assert_eq!(changes[1].at.as_deref(), Some("2024-05-15T09:44:33.052Z"));
}

#[test]
fn alertmanager_resolved_is_ok_at_its_end() {
    let change = one(AM_RESOLVED);
    assert_eq!(change.alarm, "HighLatency");
    assert_eq!(
        (change.state, change.previous),
        (State::Ok, Some(State::Alarm))
    );
    assert_eq!(change.at.as_deref(), Some("2024-05-15T09:52:03.052Z"));
    assert_eq!(
        change.reason,
        "p99 latency of shop-api in staging above 750ms."
    );
    assert_eq!(change.labels["env"], "staging");
}

#[test]
fn alertmanager_group_may_mix_firing_and_resolved() {
    let body = edited(AM_FIRING, |v| {
        v["alerts"][1]["status"] = json!("resolved");
        v["alerts"][1]["endsAt"] = json!("2024-05-15T09:50:00Z");
        v["alerts"][1]["annotations"] = json!({});
    });
    let changes = parse_alarm_event(&body).unwrap();
    assert_eq!(changes[0].state, State::Alarm);
    assert_eq!(changes[1].state, State::Ok);
    assert_eq!(changes[1].at.as_deref(), Some("2024-05-15T09:50:00Z"));
    assert_eq!(changes[1].reason, "alert resolved");
}

#[test]
fn alertmanager_without_alerts_is_no_change() {
    let body = edited(AM_FIRING, |v| v["alerts"] = json!([]));
    assert_eq!(parse_alarm_event(&body), Ok(vec![]));
}

#[test]
fn alertmanager_bad_alerts_are_named_by_index() {
    let body = edited(AM_FIRING, |v| {
        v["alerts"][1]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("alertname");
    });
    let err = parse_alarm_event(&body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the Alertmanager webhook has no `alerts[1].labels.alertname` (expected a non-empty \
         string: the alarm's name)"
    );

    let body = edited(AM_FIRING, |v| v["alerts"][0]["status"] = json!("pending"));
    assert_eq!(
        parse_alarm_event(&body),
        Err(HookError::InvalidValue {
            what: "Alertmanager webhook",
            field: "alerts[0].status".into(),
            value: "\"pending\"".into(),
            expected: "`firing` or `resolved`"
        })
    );

    let body = edited(AM_FIRING, |v| {
        v["alerts"][0]["labels"]["severity"] = json!(3)
    });
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::WrongType { field, found: "a number", .. }) if field == "alerts[0].labels.severity"
    ));

    let body = edited(AM_FIRING, |v| v["alerts"][1] = json!("HighErrorRate"));
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::WrongType { field, found: "a string", .. }) if field == "alerts[1]"
    ));

    let body = edited(AM_FIRING, |v| v["alerts"] = json!({"status": "firing"}));
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::WrongType { field, found: "an object", .. }) if field == "alerts"
    ));

    let body = edited(AM_FIRING, |v| {
        v["alerts"][0].as_object_mut().unwrap().remove("labels");
    });
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::MissingField { field, .. }) if field == "alerts[0].labels"
    ));

    let body = edited(AM_FIRING, |v| {
        v["alerts"][0]["labels"]["alertname"] = json!("")
    });
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::InvalidValue { field, .. }) if field == "alerts[0].labels.alertname"
    ));
}

#[test]
fn alertmanager_other_versions_are_refused() {
    let body = edited(AM_FIRING, |v| v["version"] = json!("5"));
    let err = parse_alarm_event(&body).unwrap_err();
    assert_eq!(
        err,
        HookError::UnsupportedAlertmanagerVersion {
            found: "\"5\"".into()
        }
    );
}

// --- CloudWatch bad inputs ---------------------------------------------------------

#[test]
fn unknown_shapes_say_what_was_expected() {
    let err = parse_alarm_event(br#"{"alarm": "x", "state": "ALARM"}"#).unwrap_err();
    assert_eq!(err, HookError::UnknownAlarmShape);
    assert_eq!(
        err.to_string(),
        "not a CloudWatch alarm event, an SNS notification or an Alertmanager webhook: no \
         `detail-type`, `Type`, `alerts` or `AlarmName`"
    );
    assert_eq!(
        parse_alarm_event(b"\"ALARM\""),
        Err(HookError::NotAnObject {
            what: "alarm event",
            found: "a string"
        })
    );
}

#[test]
fn truncated_and_invalid_alarm_bodies() {
    for cut in [1, EVENTBRIDGE.len() / 3, EVENTBRIDGE.len() - 3] {
        assert!(
            matches!(
                parse_alarm_event(&EVENTBRIDGE[..cut]),
                Err(HookError::TruncatedJson {
                    what: "alarm event",
                    ..
                })
            ),
            "cut at {cut}"
        );
    }
    assert!(matches!(
        parse_alarm_event(b"{\"alerts\": [}"),
        Err(HookError::InvalidJson {
            what: "alarm event",
            ..
        })
    ));
    assert!(matches!(
        parse_alarm_event(b"\xff\xfe{}"),
        Err(HookError::InvalidJson { .. })
    ));
}

#[test]
fn eventbridge_events_of_other_kinds_are_refused() {
    let body = edited(EVENTBRIDGE, |v| {
        v["detail-type"] = json!("EC2 Instance State-change Notification");
        v["source"] = json!("aws.ec2");
    });
    let err = parse_alarm_event(&body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the EventBridge event is a `EC2 Instance State-change Notification` from `aws.ec2`, \
         expected a `CloudWatch Alarm State Change` from `aws.cloudwatch`"
    );
    let body = edited(EVENTBRIDGE, |v| v["source"] = json!("acme.fake"));
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::NotAnAlarmEvent { .. })
    ));
}

#[test]
fn eventbridge_missing_and_mistyped_fields() {
    let missing = |path: &[&str], key: &str| {
        edited(EVENTBRIDGE, |v| {
            let mut parent = &mut *v;
            for step in path {
                parent = &mut parent[*step];
            }
            parent.as_object_mut().unwrap().remove(key);
        })
    };
    let field_of = |body: &[u8]| match parse_alarm_event(body) {
        Err(HookError::MissingField { what, field, .. }) => format!("{what}: {field}"),
        other => panic!("expected MissingField, got {other:?}"),
    };
    assert_eq!(
        field_of(&missing(&[], "source")),
        "CloudWatch alarm event: source"
    );
    assert_eq!(
        field_of(&missing(&[], "detail")),
        "CloudWatch alarm event: detail"
    );
    assert_eq!(
        field_of(&missing(&["detail"], "alarmName")),
        "CloudWatch alarm event: detail.alarmName"
    );
    assert_eq!(
        field_of(&missing(&["detail"], "state")),
        "CloudWatch alarm event: detail.state"
    );
    assert_eq!(
        field_of(&missing(&["detail", "state"], "value")),
        "CloudWatch alarm event: detail.state.value"
    );

    let body = edited(EVENTBRIDGE, |v| {
        v["detail"]["state"]["value"] = json!("FIRING")
    });
    assert_eq!(
        parse_alarm_event(&body).unwrap_err().to_string(),
        "the CloudWatch alarm event's `detail.state.value` is \"FIRING\", expected one of \
         `OK`, `ALARM`, `INSUFFICIENT_DATA`"
    );
    let body = edited(EVENTBRIDGE, |v| {
        v["detail"]["previousState"]["value"] = json!("alarm")
    });
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::InvalidValue { field, .. }) if field == "detail.previousState.value"
    ));
    let body = edited(EVENTBRIDGE, |v| v["detail"]["alarmName"] = json!(["a"]));
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::WrongType { field, found: "an array", .. }) if field == "detail.alarmName"
    ));
    let body = edited(EVENTBRIDGE, |v| v["detail"] = json!("ALARM"));
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::WrongType { field, found: "a string", .. }) if field == "detail"
    ));
    let body = edited(EVENTBRIDGE, |v| v["detail"]["state"]["reason"] = json!(7));
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::WrongType { field, .. }) if field == "detail.state.reason"
    ));
}

#[test]
fn classic_missing_and_mistyped_fields() {
    let body = edited_message(SNS_CLASSIC, |m| {
        m.as_object_mut().unwrap().remove("NewStateValue");
    });
    assert_eq!(
        parse_alarm_event(&body).unwrap_err().to_string(),
        "the CloudWatch alarm notification has no `NewStateValue` (expected one of `OK`, \
         `ALARM`, `INSUFFICIENT_DATA`)"
    );
    let body = edited_message(SNS_CLASSIC, |m| m["AlarmName"] = json!(12));
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::WrongType { field, .. }) if field == "AlarmName"
    ));
    let body = edited_message(SNS_CLASSIC, |m| m["OldStateValue"] = json!("GREEN"));
    assert!(matches!(
        parse_alarm_event(&body),
        Err(HookError::InvalidValue { field, .. }) if field == "OldStateValue"
    ));
}

#[test]
fn states_round_trip_through_their_cloudwatch_names() {
    for state in [State::Ok, State::Alarm, State::InsufficientData] {
        assert_eq!(State::parse(state.as_str()), Some(state));
        assert_eq!(
            serde_json::to_value(state).unwrap(),
            Value::String(state.to_string())
        );
    }
    assert_eq!(State::parse("ok"), None);
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = parse_alarm_event(deep.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, HookError::InvalidJson { detail, .. } if detail == "recursion limit exceeded"),
        "{err:?}"
    );
    let deep = format!("{{\"alerts\": {}", "{\"a\":".repeat(100_000));
    assert!(matches!(
        parse_alarm_event(deep.as_bytes()),
        Err(HookError::InvalidJson { .. })
    ));
    assert!(matches!(
        ferry_hooks::parse_github("push", deep.as_bytes()),
        Err(HookError::InvalidJson { .. })
    ));
}
