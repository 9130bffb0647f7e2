//! Properties: no parser panics on random bytes, random JSON or damaged fixtures;
//! signature verification accepts exactly the right HMAC; truncation is always reported
//! as truncation; push decisions and Alertmanager states follow their rules.
#![allow(clippy::unwrap_used)]

use ferry_hooks::{
    GithubEvent, HookError, PushDecision, State, parse_alarm_event, parse_github, parse_sns,
    sns_message_type, sns_string_to_sign, verify_signature,
};
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sha2::Sha256;

const FIXTURES: &[&[u8]] = &[
    include_bytes!("fixtures/github_push_main.json"),
    include_bytes!("fixtures/github_push_forced_feature.json"),
    include_bytes!("fixtures/github_push_tag.json"),
    include_bytes!("fixtures/github_push_delete_branch.json"),
    include_bytes!("fixtures/github_push_delete_tag.json"),
    include_bytes!("fixtures/github_ping.json"),
    include_bytes!("fixtures/eventbridge_alarm.json"),
    include_bytes!("fixtures/eventbridge_ok_metric_math.json"),
    include_bytes!("fixtures/sns_eventbridge_alarm.json"),
    include_bytes!("fixtures/sns_classic_alarm.json"),
    include_bytes!("fixtures/sns_subscription_confirmation.json"),
    include_bytes!("fixtures/sns_unsubscribe_confirmation.json"),
    include_bytes!("fixtures/sns_notification_hello.json"),
    include_bytes!("fixtures/alertmanager_firing.json"),
    include_bytes!("fixtures/alertmanager_resolved.json"),
];

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Runs every parser on `body`; none may panic, and an `Ok` must be consistent.
fn run_every_parser(body: &[u8]) {
    for event in ["push", "ping", "issues", ""] {
        let _ = parse_github(event, body);
    }
    if let Ok(changes) = parse_alarm_event(body) {
        for change in changes {
            assert!(!change.alarm.trim().is_empty());
        }
    }
    let _ = sns_message_type(body);
    if let Ok(msg) = parse_sns(body) {
        let _ = sns_string_to_sign(&msg);
    }
    let header = String::from_utf8_lossy(body);
    let _ = verify_signature(b"secret", body, Some(&header));
}

/// Keys the parsers look for, so that random objects reach deep into them.
const KEYS: &[&str] = &[
    "ref",
    "before",
    "after",
    "deleted",
    "created",
    "forced",
    "head_commit",
    "id",
    "message",
    "author",
    "name",
    "email",
    "url",
    "repository",
    "full_name",
    "pusher",
    "compare",
    "zen",
    "hook_id",
    "detail-type",
    "source",
    "detail",
    "alarmName",
    "state",
    "previousState",
    "value",
    "reason",
    "timestamp",
    "time",
    "configuration",
    "metrics",
    "metricStat",
    "metric",
    "dimensions",
    "resources",
    "Type",
    "Message",
    "MessageId",
    "TopicArn",
    "Subject",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
    "SubscribeURL",
    "Token",
    "AlarmName",
    "NewStateValue",
    "OldStateValue",
    "NewStateReason",
    "StateChangeTime",
    "Trigger",
    "Dimensions",
    "alerts",
    "status",
    "labels",
    "alertname",
    "annotations",
    "summary",
    "description",
    "startsAt",
    "endsAt",
    "version",
];

/// Strings the parsers give meaning to.
const WORDS: &[&str] = &[
    "refs/heads/main",
    "refs/tags/v1",
    "main",
    "0000000000000000000000000000000000000000",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
    "CloudWatch Alarm State Change",
    "aws.cloudwatch",
    "OK",
    "ALARM",
    "INSUFFICIENT_DATA",
    "Notification",
    "SubscriptionConfirmation",
    "UnsubscribeConfirmation",
    "1",
    "2",
    "4",
    "firing",
    "resolved",
    "0001-01-01T00:00:00Z",
    "",
    "{\"AlarmName\":\"a\",\"NewStateValue\":\"ALARM\"}",
    "{\"detail-type\":\"CloudWatch Alarm State Change\"}",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(WORDS).prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<String, Value>>(),
                )
            }),
        ]
    })
}

/// Replaces the value at a random place in `value` with `new`.
fn replace_somewhere(value: &mut Value, mut choice: usize, new: Value) {
    let mut current = value;
    loop {
        let children = match current {
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            _ => 0,
        };
        if children == 0 || choice.is_multiple_of(4) {
            *current = new;
            return;
        }
        let index = (choice / 4) % children;
        choice /= 3;
        current = match current {
            Value::Array(items) => &mut items[index],
            Value::Object(map) => map.values_mut().nth(index).unwrap(),
            _ => unreachable!(),
        };
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        run_every_parser(&body);
    }

    #[test]
    fn random_json_never_panics(value in json_value()) {
        run_every_parser(&serde_json::to_vec(&value).unwrap());
        // Also as the Message of an SNS notification.
        let wrapped = json!({"Type": "Notification", "Message": value.to_string()});
        run_every_parser(&serde_json::to_vec(&wrapped).unwrap());
    }

    #[test]
    fn damaged_fixtures_never_panic(
        fixture in prop::sample::select(FIXTURES),
        choice in any::<usize>(),
        new in json_value(),
    ) {
        let mut value: Value = serde_json::from_slice(fixture).unwrap();
        replace_somewhere(&mut value, choice, new);
        run_every_parser(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn flipped_bytes_in_fixtures_never_panic(
        fixture in prop::sample::select(FIXTURES),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut body = fixture.to_vec();
        let i = at.index(body.len());
        body[i] = byte;
        run_every_parser(&body);
    }

    #[test]
    fn every_prefix_of_a_fixture_is_reported_truncated(
        fixture in prop::sample::select(FIXTURES),
        at in any::<prop::sample::Index>(),
    ) {
        let document = fixture.trim_ascii_end();
        let cut = at.index(document.len());
        let prefix = &document[..cut];
        prop_assert!(
            matches!(parse_alarm_event(prefix), Err(HookError::TruncatedJson { .. })),
            "alarm event cut at {}", cut
        );
        prop_assert!(
            matches!(parse_github("push", prefix), Err(HookError::TruncatedJson { .. })),
            "push cut at {}", cut
        );
        prop_assert!(
            matches!(parse_sns(prefix), Err(HookError::TruncatedJson { .. })),
            "SNS message cut at {}", cut
        );
    }

    #[test]
    fn the_right_hmac_is_accepted(
        secret in prop::collection::vec(any::<u8>(), 1..100),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let header = format!("sha256={}", hmac_hex(&secret, &body));
        prop_assert_eq!(verify_signature(&secret, &body, Some(&header)), Ok(()));
    }

    #[test]
    fn any_changed_digit_is_rejected(
        secret in prop::collection::vec(any::<u8>(), 1..100),
        body in prop::collection::vec(any::<u8>(), 0..512),
        at in 0usize..64,
        replacement in prop::sample::select(b"0123456789abcdef".as_slice()),
    ) {
        let mut digits = hmac_hex(&secret, &body).into_bytes();
        prop_assume!(digits[at] != replacement);
        digits[at] = replacement;
        let header = format!("sha256={}", String::from_utf8(digits).unwrap());
        prop_assert_eq!(
            verify_signature(&secret, &body, Some(&header)),
            Err(HookError::SignatureMismatch)
        );
    }

    #[test]
    fn another_body_or_secret_is_rejected(
        secret in prop::collection::vec(any::<u8>(), 1..64),
        other_secret in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 0..512),
        other_body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let header = format!("sha256={}", hmac_hex(&secret, &body));
        let expected = |same: bool| if same { Ok(()) } else { Err(HookError::SignatureMismatch) };
        prop_assert_eq!(
            verify_signature(&secret, &other_body, Some(&header)),
            expected(other_body == body)
        );
        prop_assert_eq!(
            verify_signature(&other_secret, &body, Some(&header)),
            expected(other_secret == secret)
        );
    }

    #[test]
    fn random_headers_are_rejected_and_never_echo_the_secret(
        header in ".{0,80}",
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let secret = b"top-secret-value-1234";
        let result = verify_signature(secret, &body, Some(&header));
        let err = result.unwrap_err();
        prop_assert!(err.is_authentication());
        prop_assert!(!err.to_string().contains("top-secret"));
    }

    #[test]
    fn push_decision_follows_ref_and_after(
        kind in prop::sample::select(&["heads", "tags", "notes"][..]),
        name in prop::sample::select(&["main", "dev", "release/2.x", "v1.0"][..]),
        watched in prop::sample::select(&["main", "dev", "refs/heads/release/2.x"][..]),
        deleted in any::<bool>(),
    ) {
        let after = if deleted { "0".repeat(40) } else { "ab".repeat(20) };
        let body = json!({
            "ref": format!("refs/{kind}/{name}"), "before": "cd".repeat(20), "after": after,
            "deleted": deleted, "created": false, "forced": false,
            "compare": "https://github.com/o/r/compare/x", "head_commit": null,
            "repository": {"full_name": "o/r"}, "pusher": {"name": "p"},
        });
        let Ok(GithubEvent::Push(push)) = parse_github("push", &serde_json::to_vec(&body).unwrap()) else {
            panic!("a well-formed push");
        };
        let watched_name = watched.trim_start_matches("refs/heads/");
        let runs = kind == "heads" && name == watched_name && !deleted;
        match push.decision(watched) {
            PushDecision::Run { sha } => {
                prop_assert!(runs);
                prop_assert_eq!(sha, after);
            }
            PushDecision::Ignore(reason) => {
                prop_assert!(!runs);
                prop_assert!(!reason.to_string().is_empty());
            }
        }
    }

    #[test]
    fn alertmanager_states_follow_statuses(
        statuses in prop::collection::vec(any::<bool>(), 0..20),
    ) {
        let alerts: Vec<Value> = statuses
            .iter()
            .enumerate()
            .map(|(i, firing)| json!({
                "status": if *firing { "firing" } else { "resolved" },
                "labels": {"alertname": format!("A{i}"), "env": "prod"},
                "annotations": {},
                "startsAt": "2024-05-15T09:00:00Z",
                "endsAt": if *firing { "0001-01-01T00:00:00Z" } else { "2024-05-15T10:00:00Z" },
            }))
            .collect();
        let body = json!({"version": "4", "status": "firing", "alerts": alerts});
        let changes = parse_alarm_event(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(changes.len(), statuses.len());
        for (i, (change, firing)) in changes.iter().zip(&statuses).enumerate() {
            prop_assert_eq!(&change.alarm, &format!("A{i}"));
            prop_assert_eq!(change.state, if *firing { State::Alarm } else { State::Ok });
            let at = if *firing { "2024-05-15T09:00:00Z" } else { "2024-05-15T10:00:00Z" };
            prop_assert_eq!(change.at.as_deref(), Some(at));
        }
    }
}
