//! SNS: message types, parsing the signed fields, and the canonical string to sign
//! checked against AWS's documented examples.
#![allow(clippy::unwrap_used)]

use ferry_hooks::{
    HookError, SnsMessage, SnsType, parse_sns, sns_message_type, sns_string_to_sign,
};
use serde_json::{Value, json};

const CONFIRMATION: &[u8] = include_bytes!("fixtures/sns_subscription_confirmation.json");
const UNSUBSCRIBE: &[u8] = include_bytes!("fixtures/sns_unsubscribe_confirmation.json");
const HELLO: &[u8] = include_bytes!("fixtures/sns_notification_hello.json");
const SNS_EVENTBRIDGE: &[u8] = include_bytes!("fixtures/sns_eventbridge_alarm.json");
const SNS_CLASSIC: &[u8] = include_bytes!("fixtures/sns_classic_alarm.json");
const EVENTBRIDGE: &[u8] = include_bytes!("fixtures/eventbridge_alarm.json");
const ALERTMANAGER: &[u8] = include_bytes!("fixtures/alertmanager_firing.json");

fn edited(body: &[u8], edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(body).unwrap();
    edit(value.as_object_mut().unwrap());
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn message_types() {
    assert_eq!(
        sns_message_type(CONFIRMATION),
        Some(SnsType::SubscriptionConfirmation)
    );
    assert_eq!(
        sns_message_type(UNSUBSCRIBE),
        Some(SnsType::UnsubscribeConfirmation)
    );
    assert_eq!(sns_message_type(HELLO), Some(SnsType::Notification));
    assert_eq!(
        sns_message_type(SNS_EVENTBRIDGE),
        Some(SnsType::Notification)
    );
    assert_eq!(sns_message_type(EVENTBRIDGE), None);
    assert_eq!(sns_message_type(ALERTMANAGER), None);
    assert_eq!(sns_message_type(b"{\"Type\": 1}"), None);
    assert_eq!(sns_message_type(b"{\"Type\": \"notification\"}"), None);
    assert_eq!(sns_message_type(b"{\"Type\": \"Notification\""), None);
    assert_eq!(sns_message_type(b""), None);
    for kind in [
        SnsType::SubscriptionConfirmation,
        SnsType::Notification,
        SnsType::UnsubscribeConfirmation,
    ] {
        assert_eq!(SnsType::parse(&kind.to_string()), Some(kind));
    }
}

#[test]
fn awss_documented_notification_string_to_sign() {
    // The example in AWS's "Verifying the signatures of Amazon SNS messages".
    let msg = SnsMessage {
        kind: SnsType::Notification,
        message_id: "4d4dc071-ddbf-465d-bba8-08f81c89da64".into(),
        topic_arn: "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P".into(),
        subject: Some("My subject".into()),
        message: "My Test Message".into(),
        timestamp: "2019-01-31T04:37:04.321Z".into(),
        signature_version: "1".into(),
        signature: "EXAMPLE".into(),
        signing_cert_url: "https://sns.us-east-2.amazonaws.com/SimpleNotificationService.pem"
            .into(),
        subscribe_url: None,
        token: None,
        unsubscribe_url: None,
    };
    assert_eq!(
        sns_string_to_sign(&msg).unwrap(),
        "Message\nMy Test Message\nMessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\n\
         Subject\nMy subject\nTimestamp\n2019-01-31T04:37:04.321Z\n\
         TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n\
         Type\nNotification\n"
    );
}

#[test]
fn awss_documented_confirmation_string_to_sign() {
    let msg = SnsMessage {
        kind: SnsType::SubscriptionConfirmation,
        message_id: "3d891288-136d-417f-bc05-901c108273ee".into(),
        topic_arn: "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P".into(),
        subject: None,
        message: "My Test Message".into(),
        timestamp: "2019-01-31T19:25:13.719Z".into(),
        signature_version: "2".into(),
        signature: "EXAMPLE".into(),
        signing_cert_url: "https://sns.us-east-2.amazonaws.com/SimpleNotificationService.pem".into(),
        subscribe_url: Some(
            "https://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P&Token=233...".into(),
        ),
        token: Some("233...".into()),
        unsubscribe_url: None,
    };
    assert_eq!(
        sns_string_to_sign(&msg).unwrap(),
        "Message\nMy Test Message\nMessageId\n3d891288-136d-417f-bc05-901c108273ee\n\
         SubscribeURL\nhttps://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P&Token=233...\n\
         Timestamp\n2019-01-31T19:25:13.719Z\nToken\n233...\n\
         TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n\
         Type\nSubscriptionConfirmation\n"
    );
}

#[test]
fn parsed_notification_signs_its_subject_and_unescaped_message() {
    let msg = parse_sns(HELLO).unwrap();
    assert_eq!(msg.kind, SnsType::Notification);
    assert_eq!(msg.subject.as_deref(), Some("My First Message"));
    assert!(msg.unsubscribe_url.is_some());
    assert_eq!(
        sns_string_to_sign(&msg).unwrap(),
        "Message\nHello world!\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
         Subject\nMy First Message\nTimestamp\n2012-05-02T00:54:06.655Z\n\
         TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nNotification\n"
    );

    // Without a Subject (EventBridge → SNS), the Subject lines are left out, and the
    // Message is signed as the JSON text it holds, escapes decoded.
    let msg = parse_sns(SNS_EVENTBRIDGE).unwrap();
    assert_eq!(msg.subject, None);
    assert_eq!(msg.signature_version, "2");
    let text = sns_string_to_sign(&msg).unwrap();
    assert!(text.starts_with("Message\n{\"version\":\"0\""), "{text}");
    assert!(!text.contains("Subject\n"));
    assert!(
        text.contains("\\\"version\\\":\\\"1.0\\\""),
        "reasonData stays JSON text"
    );
    assert!(text.ends_with("Type\nNotification\n"));

    let classic = parse_sns(SNS_CLASSIC).unwrap();
    assert!(sns_string_to_sign(&classic).unwrap().contains(
        "\nSubject\nALARM: \"awsec2-i-0a1b2c3d4e5f67890-High-CPU-Utilization\" in EU (Ireland)\n"
    ));
}

#[test]
fn parsed_confirmations_sign_url_and_token() {
    let msg = parse_sns(CONFIRMATION).unwrap();
    assert_eq!(msg.kind, SnsType::SubscriptionConfirmation);
    let text = sns_string_to_sign(&msg).unwrap();
    // The message holds a newline of its own: find the names with their newlines.
    for name in [
        "\nMessageId\n",
        "\nSubscribeURL\n",
        "\nTimestamp\n",
        "\nToken\n",
        "\nTopicArn\n",
    ] {
        assert!(text.contains(name), "{name:?} in {text}");
    }
    let order: Vec<usize> = [
        "\nMessageId\n",
        "\nSubscribeURL\n",
        "\nTimestamp\n",
        "\nToken\n",
        "\nTopicArn\n",
        "\nType\n",
    ]
    .iter()
    .map(|n| text.find(n).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(text.starts_with(
        "Message\nYou have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:MyTopic.\n\
         To confirm the subscription, visit the SubscribeURL included in this message.\nMessageId\n"
    ));
    assert!(text.ends_with("Type\nSubscriptionConfirmation\n"));
    assert!(
        sns_string_to_sign(&parse_sns(UNSUBSCRIBE).unwrap())
            .unwrap()
            .ends_with("Type\nUnsubscribeConfirmation\n")
    );
}

#[test]
fn other_signature_versions_are_refused() {
    let body = edited(HELLO, |m| {
        m.insert("SignatureVersion".into(), json!("3"));
    });
    let msg = parse_sns(&body).unwrap();
    assert_eq!(
        sns_string_to_sign(&msg),
        Err(HookError::UnsupportedSignatureVersion {
            found: "\"3\"".into()
        })
    );
}

#[test]
fn missing_signed_fields_are_named() {
    for key in [
        "Type",
        "MessageId",
        "TopicArn",
        "Message",
        "Timestamp",
        "SignatureVersion",
        "Signature",
        "SigningCertURL",
        "Token",
        "SubscribeURL",
    ] {
        let body = edited(CONFIRMATION, |m| {
            m.remove(key);
        });
        match parse_sns(&body) {
            Err(HookError::MissingField {
                what: "SNS message",
                field,
                ..
            }) => {
                assert_eq!(field, key);
            }
            other => panic!("{key}: expected MissingField, got {other:?}"),
        }
    }
    // A notification needs no Token or SubscribeURL.
    assert!(parse_sns(HELLO).is_ok());
    // A confirmation built by hand without its token cannot be signed.
    let mut msg = parse_sns(CONFIRMATION).unwrap();
    msg.token = None;
    assert!(matches!(
        sns_string_to_sign(&msg),
        Err(HookError::MissingField { field, .. }) if field == "Token"
    ));
}

#[test]
fn bad_sns_bodies() {
    assert!(matches!(
        parse_sns(&HELLO[..40]),
        Err(HookError::TruncatedJson {
            what: "SNS message",
            ..
        })
    ));
    assert_eq!(
        parse_sns(b"[]"),
        Err(HookError::NotAnObject {
            what: "SNS message",
            found: "an array"
        })
    );
    let body = edited(HELLO, |m| {
        m.insert("Subject".into(), json!(["x"]));
    });
    assert!(matches!(
        parse_sns(&body),
        Err(HookError::WrongType { field, found: "an array", .. }) if field == "Subject"
    ));
    let body = edited(HELLO, |m| {
        m.insert("Type".into(), json!("Notice"));
    });
    assert_eq!(
        parse_sns(&body),
        Err(HookError::UnknownSnsType {
            found: "\"Notice\"".into()
        })
    );
}
