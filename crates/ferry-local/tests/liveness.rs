//! `LocalLiveness` on this machine's real `/proc`: a holder is alive only when its PID
//! runs and started when the holder says, so a PID used again (a container restarted as
//! PID 1, a reboot) is not taken for the process that died.

use ferry_engine::ports::Liveness;
use ferry_local::{LocalLiveness, holder_name};

#[test]
fn a_holder_is_its_pid_and_start_time() {
    let live = LocalLiveness::here();
    let me = holder_name(&live.host);
    assert_eq!(live.alive(&me), Some(true), "{me}");
    // The same PID, started at another time: someone else, so the holder is dead.
    let (who, start) = me.rsplit_once('@').expect("a start time");
    let start: u64 = start.parse().expect("ticks");
    let reused = format!("{who}@{}", start + 1);
    assert_eq!(live.alive(&reused), Some(false), "{reused}");
    // Without a start time, the PID alone decides.
    assert_eq!(live.alive(who), Some(true), "{who}");
    // No such process.
    let gone = format!("{}:4194304@1", live.host);
    assert_eq!(live.alive(&gone), Some(false));
    // Another machine cannot be told.
    assert_eq!(live.alive("elsewhere.example:1@1"), None);
    // Not a holder name.
    assert_eq!(live.alive("garbage"), None);
}

#[test]
fn a_lambda_holder_is_judged_by_its_deadline_from_any_machine() {
    let live = LocalLiveness::here();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let past =
        ferry_engine::ports::holder_until("lambda:9c2e", ferry_core::Timestamp(now - 60_000));
    assert_eq!(live.alive(&past), Some(false), "{past}");
    let future =
        ferry_engine::ports::holder_until("lambda:9c2e", ferry_core::Timestamp(now + 600_000));
    assert_eq!(live.alive(&future), None, "{future}");
}
