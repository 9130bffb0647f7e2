//! The SNS notifier and the CloudWatch alarms on moto's server. SNS delivers to an HTTP
//! subscriber the test runs on loopback. moto leaves message attributes out of what it
//! posts to HTTP subscribers, so the attributes are proven the way subscribers use
//! them: a subscription filter policy on `event` and `environment` lets exactly the
//! matching event through.
#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used)]

mod common;

use ferry_aws::cloudwatch::CloudWatch;
use ferry_aws::sns::SnsNotifier;
use ferry_core::alarm::AlarmState;
use ferry_core::notify::Attempt;
use ferry_core::{Event, EventKind, RunId, Timestamp};
use ferry_engine::ports::Notifier;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// Accepts HTTP POSTs on loopback and sends each body (JSON) down the channel.
fn subscriber() -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/sns", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice(&body)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    (url, rx)
}

#[test]
fn sns_publishes_with_message_attributes_per_event_kind() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let sns = aws_sdk_sns::Client::new(aws.config());
    let topic = aws
        .block_on(sns.create_topic().name("ferry-rollbacks").send())
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let (url, rx) = subscriber();
    aws.block_on(
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("http")
            .endpoint(&url)
            .attributes(
                "FilterPolicy",
                r#"{"event": ["rollback_succeeded"], "environment": ["production"], "run": [{"numeric": ["=", 7]}]}"#,
            )
            .send(),
    )
    .unwrap();
    let notifier = SnsNotifier::new(&aws, "rollbacks", &topic, vec!["rollback_succeeded".into()]);
    assert_eq!(notifier.id(), "rollbacks");
    let event = Event {
        at: Timestamp(1_700_000_000_000),
        kind: EventKind::RollbackSucceeded,
        run: Some(RunId(7)),
        environment: Some("production".into()),
        message: "production rolled back to abc1234\nafter alarm errors".into(),
        data: serde_json::json!({"event": "rollback_succeeded", "environment": "production"}),
    };
    // Filtered out: another kind, another environment.
    let mut other = event.clone();
    other.kind = EventKind::DeploymentSucceeded;
    other.message = "filtered out: another kind".into();
    assert!(matches!(
        notifier.deliver(41, &other),
        Attempt::Delivered(_)
    ));
    let mut staging = event.clone();
    staging.environment = Some("staging".into());
    staging.message = "filtered out: another environment".into();
    assert!(matches!(
        notifier.deliver(40, &staging),
        Attempt::Delivered(_)
    ));
    let got = notifier.deliver(42, &event);
    assert!(matches!(got, Attempt::Delivered(_)), "{got:?}");
    // moto may first send a subscription confirmation; find the notification.
    let note = loop {
        let v = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("SNS delivered to the subscriber");
        if v["Type"] == "Notification" {
            break v;
        }
    };
    // The first notification through the filter is the matching event.
    let body: serde_json::Value = serde_json::from_str(note["Message"].as_str().unwrap()).unwrap();
    assert_eq!(body["environment"], "production");
    assert_eq!(body["event"], "rollback_succeeded", "{note}");
    assert!(body["message"].as_str().unwrap().contains("abc1234"));
    // The subject is one line.
    assert!(!note["Subject"].as_str().unwrap_or("").contains('\n'));

    // A topic that does not exist: a permanent failure naming SNS Publish.
    let gone = SnsNotifier::new(&aws, "gone", &format!("{topic}-gone"), vec![]);
    match gone.deliver(43, &event) {
        Attempt::Permanent(why) => assert!(why.contains("AWS SNS Publish failed"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cloudwatch_describes_alarms_by_name_and_prefix() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let cw = aws_sdk_cloudwatch::Client::new(aws.config());
    for name in [
        "shop-production-errors",
        "shop-production-latency",
        "shop-staging-errors",
    ] {
        aws.block_on(
            cw.put_metric_alarm()
                .alarm_name(name)
                .namespace("Shop")
                .metric_name("Errors")
                .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
                .period(60)
                .evaluation_periods(1)
                .threshold(5.0)
                .comparison_operator(
                    aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
                )
                .send(),
        )
        .unwrap();
    }
    aws.block_on(
        cw.set_alarm_state()
            .alarm_name("shop-production-errors")
            .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .state_reason("errors above 5")
            .send(),
    )
    .unwrap();
    let alarms = CloudWatch::new(&aws);
    let prod = alarms.alarms(&[], Some("shop-production-")).unwrap();
    let names: Vec<&str> = prod.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["shop-production-errors", "shop-production-latency"]);
    assert_eq!(prod[0].state, AlarmState::Alarm);
    assert_eq!(prod[0].reason, "errors above 5");
    assert_ne!(prod[1].state, AlarmState::Alarm);
    let by_name = alarms
        .alarms(
            &["shop-staging-errors".into(), "missing".into()],
            Some("shop-production-errors"),
        )
        .unwrap();
    let names: Vec<&str> = by_name.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["shop-production-errors", "shop-staging-errors"]);
    alarms
        .put_metric(
            "Ferry",
            "DeploymentDuration",
            12.5,
            aws_sdk_cloudwatch::types::StandardUnit::Seconds,
            &[("Environment", "production")],
        )
        .unwrap();
    let err = alarms
        .put_metric(
            "Ferry",
            "X",
            f64::NAN,
            aws_sdk_cloudwatch::types::StandardUnit::Count,
            &[],
        )
        .unwrap_err();
    assert!(err.message.contains("not a number"), "{err}");
}
