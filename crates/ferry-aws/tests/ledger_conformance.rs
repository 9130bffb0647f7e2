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
    suite::claim_race(shared, "claimrace", 8);
}

#[test]
fn memory_passes_the_suite() {
    let store = ferry_testkit::store::MemoryStore::new();
    suite::run_all(&store, "");
    let shared: Arc<dyn Ledger> = Arc::new(store);
    suite::lease_race(shared.clone(), "race", 8);
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
