//! Webhook deliveries: an id is recorded once; a redelivery gets the earlier run back.

use crate::support::store;
use ferry_core::{RunId, Timestamp};
use ferry_engine::ports::Store;

#[test]
fn a_delivery_id_is_recorded_once_and_a_redelivery_gets_the_earlier_run() {
    let (_d, store) = store();
    assert_eq!(store.delivery("d-1").unwrap(), None);
    assert_eq!(
        store
            .record_delivery("d-1", Some(RunId(7)), Timestamp(10))
            .unwrap(),
        Ok(())
    );
    assert_eq!(store.delivery("d-1").unwrap(), Some(Some(RunId(7))));
    // The same id again writes nothing and names the first run.
    assert_eq!(
        store
            .record_delivery("d-1", Some(RunId(8)), Timestamp(20))
            .unwrap(),
        Err(Some(RunId(7)))
    );
    assert_eq!(store.delivery("d-1").unwrap(), Some(Some(RunId(7))));
    // A delivery that started nothing (an ignored push, a ping) is remembered too.
    assert_eq!(
        store.record_delivery("d-2", None, Timestamp(30)).unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .record_delivery("d-2", Some(RunId(9)), Timestamp(40))
            .unwrap(),
        Err(None)
    );
    assert_eq!(store.delivery("d-2").unwrap(), Some(None));
}

#[test]
fn deliveries_survive_reopening_the_database() {
    let (dir, store) = store();
    assert_eq!(
        store
            .record_delivery("abc", Some(RunId(3)), Timestamp(1))
            .unwrap(),
        Ok(())
    );
    drop(store);
    let again =
        ferry_store::SqliteStore::open(&dir.path().join(".ferry").join("ferry.db")).unwrap();
    assert_eq!(
        again.record_delivery("abc", None, Timestamp(2)).unwrap(),
        Err(Some(RunId(3)))
    );
}
