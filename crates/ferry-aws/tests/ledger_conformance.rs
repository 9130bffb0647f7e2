//! The `Ledger` conformance suite (`ferry_testkit::ledger_suite`) on every ledger: the
//! SQLite store, the in-memory store and (feature `aws`) DynamoDB on moto's server.
#![allow(clippy::unwrap_used)]

use ferry_engine::ports::Ledger;
use ferry_testkit::ledger_suite as suite;
use std::sync::Arc;

#[test]
fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = ferry_store::SqliteStore::open(&dir.path().join("ferry.db")).unwrap();
    suite::run_all(&store, "");
    let shared: Arc<dyn Ledger> = Arc::new(store);
    suite::lease_race(shared.clone(), "race", 8);
    suite::take_over_race(shared.clone(), "takeoverrace", 8);
    suite::claim_race(shared, "claimrace", 8);
}

#[test]
fn memory_passes_the_suite() {
    let store = ferry_testkit::store::MemoryStore::new();
    suite::run_all(&store, "");
    let shared: Arc<dyn Ledger> = Arc::new(store);
    suite::lease_race(shared.clone(), "race", 8);
    suite::take_over_race(shared.clone(), "takeoverrace", 8);
    suite::claim_race(shared, "claimrace", 8);
}

#[cfg(feature = "aws")]
mod common;

#[cfg(feature = "aws")]
#[test]
fn dynamodb_on_moto_passes_the_suite() {
    use ferry_aws::ledger::DynamoLedger;
    let moto = common::Moto::start();
    let aws = moto.aws();
    let ledger = DynamoLedger::new(&aws, "ferry-deployments");
    ledger.create_table().unwrap();
    suite::run_all(&ledger, "");
    let shared: Arc<dyn Ledger> = Arc::new(ledger);
    suite::lease_race(shared.clone(), "race", 8);
    suite::take_over_race(shared.clone(), "takeoverrace", 8);
    suite::claim_race(shared, "claimrace", 8);
}

#[cfg(feature = "aws")]
#[test]
fn a_refused_endpoint_is_a_clear_error_naming_the_service_and_call() {
    use ferry_aws::ledger::DynamoLedger;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let aws = ferry_aws::Aws::connect(&ferry_aws::Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        credentials: Some(("testing".into(), "testing".into())),
        max_attempts: Some(2),
    })
    .unwrap();
    let ledger = DynamoLedger::new(&aws, "ferry-deployments");
    let err = ledger.last_known_good("production").unwrap_err();
    assert_eq!(
        err.kind,
        ferry_engine::ports::PortErrorKind::Transient,
        "{err}"
    );
    assert!(err.message.contains("AWS DynamoDB Query failed"), "{err}");
}

/// What the rollback orchestrator records besides claims and leases: a batch of a
/// rollback's changes in one transaction (events, the rolled-back deployment, the
/// incident holding the environment), freezes, recorded pipeline files, and CloudWatch's
/// alarm states.
#[cfg(feature = "aws")]
#[test]
fn dynamodb_records_what_a_rollback_records() {
    use ferry_aws::ledger::DynamoLedger;
    use ferry_core::alarm::AlarmState;
    use ferry_core::{Change, DeploymentStatus, Event, EventKind, RollbackLevel, Timestamp};
    let moto = common::Moto::start();
    let aws = moto.aws();
    let ledger = DynamoLedger::new(&aws, "ferry-deployments");
    ledger.create_table().unwrap();
    let bad = suite::deployment("production", 1_000, "bad", DeploymentStatus::Failed);
    ledger.record_deployment(&bad).unwrap();
    assert_eq!(ledger.hold("production").unwrap(), None);
    let event = Event {
        at: Timestamp(2_000),
        kind: EventKind::IncidentOpened,
        run: None,
        environment: Some("production".into()),
        message: "production held".into(),
        data: serde_json::json!({}),
    };
    let changes = [
        Change::DeploymentRolledBack {
            deployment_id: bad.deployment_id.clone(),
            reason: "alarm errors".into(),
            level: RollbackLevel::Stage,
            at: Timestamp(2_000),
        },
        Change::IncidentOpened {
            environment: "production".into(),
            deployment_id: bad.deployment_id.clone(),
            reason: "both levels failed".into(),
            at: Timestamp(2_000),
        },
        Change::Event(event),
    ];
    ledger.record_rollback(bad.run_id, &changes).unwrap();
    let d = ledger.latest_deployment("production").unwrap().unwrap();
    assert_eq!(d.status, DeploymentStatus::RolledBack);
    assert_eq!(d.rollback_reason.as_deref(), Some("alarm errors"));
    assert_eq!(d.rollback_level, Some(RollbackLevel::Stage));
    let held = ledger.hold("production").unwrap().unwrap();
    assert_eq!(held.deployment_id, bad.deployment_id);
    assert_eq!(held.reason, "both levels failed");
    // A second incident while one is open: the whole batch is refused, nothing written.
    let again = [Change::IncidentOpened {
        environment: "production".into(),
        deployment_id: "production#9".into(),
        reason: "again".into(),
        at: Timestamp(3_000),
    }];
    assert!(ledger.record_rollback(bad.run_id, &again).is_err());
    assert_eq!(
        ledger.hold("production").unwrap().unwrap().reason,
        "both levels failed"
    );
    // A change that is not a rollback's: refused, naming it.
    let err = ledger
        .record_rollback(
            bad.run_id,
            &[Change::Run {
                status: ferry_core::RunStatus::Failed,
                reason: None,
                at: Timestamp(1),
            }],
        )
        .unwrap_err();
    assert!(err.message.contains("not a `run` change"), "{err}");

    let f = ledger
        .freeze(&ferry_core::rollback::unsafe_freeze(
            "production",
            "unsafe",
            Timestamp(4_000),
        ))
        .unwrap();
    assert_eq!(f.environment, "production");

    assert_eq!(ledger.config("sha256:cc").unwrap(), None);
    ledger.put_config("sha256:cc", "pipeline: shop\n").unwrap();
    assert_eq!(
        ledger.config("sha256:cc").unwrap().as_deref(),
        Some("pipeline: shop\n")
    );

    assert_eq!(ledger.alarm_state("shop-production-errors").unwrap(), None);
    let cw = aws_sdk_cloudwatch::Client::new(aws.config());
    aws.block_on(
        cw.put_metric_alarm()
            .alarm_name("shop-production-errors")
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
    aws.block_on(
        cw.set_alarm_state()
            .alarm_name("shop-production-errors")
            .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .state_reason("errors above 5")
            .send(),
    )
    .unwrap();
    let (state, reason, at) = ledger
        .alarm_state("shop-production-errors")
        .unwrap()
        .unwrap();
    assert_eq!(state, AlarmState::Alarm);
    assert_eq!(reason, "errors above 5");
    assert!(at.0 > 0);
}
