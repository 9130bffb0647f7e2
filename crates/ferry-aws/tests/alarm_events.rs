//! The rollback Lambda's routing on the EventBridge alarm events AWS documents (a metric
//! alarm in ALARM, OK, INSUFFICIENT_DATA, a composite alarm) and on events of an
//! unexpected shape.
#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used)]

use ferry_aws::alarm_event::{Action, Route, alarm_prefix, route};
use serde_json::Value;

fn event(name: &str) -> Value {
    let path = format!("{}/tests/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn prefixes() -> Vec<Route> {
    ["production", "staging"]
        .iter()
        .map(|e| Route::prefix(e, &alarm_prefix("shop", e)))
        .collect()
}

#[test]
fn a_metric_alarm_in_alarm_rolls_its_environment_back() {
    match route(&event("alarm"), &prefixes()) {
        Action::RollBack {
            event_id,
            environment,
            alarm,
            reason,
            composite,
            at_ms,
        } => {
            assert_eq!(event_id, "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92");
            assert_eq!(environment, "production");
            assert_eq!(alarm, "shop-production-errors");
            assert!(reason.starts_with("Threshold Crossed"), "{reason}");
            assert!(!composite);
            // 2019-10-02T17:04:40.989Z, the state change's time.
            assert_eq!(at_ms, 1_570_035_880_989);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ok_and_insufficient_data_do_nothing() {
    for name in ["ok", "insufficient_data"] {
        assert!(
            matches!(route(&event(name), &prefixes()), Action::Nothing { .. }),
            "{name}"
        );
    }
}

#[test]
fn a_composite_alarm_finds_its_environment_through_the_alarm_that_triggered_it() {
    match route(&event("composite"), &prefixes()) {
        Action::RollBack {
            environment,
            alarm,
            composite,
            ..
        } => {
            assert_eq!(environment, "production");
            assert_eq!(alarm, "ServiceAggregatedAlarm");
            assert!(composite);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_alarm_of_no_environment_does_nothing() {
    let only_staging = vec![Route::prefix("staging", &alarm_prefix("shop", "staging"))];
    assert!(matches!(
        route(&event("alarm"), &only_staging),
        Action::Nothing { .. }
    ));
}

#[test]
fn an_unexpected_event_is_dropped_with_its_id() {
    match route(&event("unexpected"), &prefixes()) {
        Action::Drop { event_id, why } => {
            assert_eq!(event_id, "odd-1");
            assert!(why.contains("aws.ec2"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        serde_json::json!({"id": "x-1", "hello": 1}),
        serde_json::json!([1, 2]),
        serde_json::json!({"id": "x-2", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", "detail": {"alarmName": 7}}),
    ] {
        assert!(
            matches!(route(&bad, &prefixes()), Action::Drop { .. }),
            "{bad}"
        );
    }
}

#[test]
fn an_alarm_of_the_file_is_routed_by_its_exact_name_and_longer_prefixes_win() {
    let routes = vec![
        Route::prefix("prod", &alarm_prefix("shop", "prod")),
        Route {
            environment: "prod-eu".into(),
            prefix: alarm_prefix("shop", "prod-eu"),
            names: vec!["eu-health".into()],
        },
    ];
    let mut e = event("alarm");
    for (name, env) in [
        ("shop-prod-eu-errors", Some("prod-eu")),
        ("shop-prod-errors", Some("prod")),
        ("eu-health", Some("prod-eu")),
        ("eu-health-2", None),
    ] {
        e["detail"]["alarmName"] = name.into();
        match (route(&e, &routes), env) {
            (Action::RollBack { environment, .. }, Some(want)) => assert_eq!(environment, want),
            (Action::Nothing { .. }, None) => {}
            (other, _) => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn the_prefix_is_spelled_as_the_synthesized_rule_spells_it() {
    assert_eq!(alarm_prefix("shop.api", "prod_eu"), "shop-api-prod-eu-");
    assert_eq!(alarm_prefix("shop", "production"), "shop-production-");
}
