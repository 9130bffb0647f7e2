//! Property tests of the notification delivery schedule (seed §6.2, DESIGN invariant 4):
//! whatever sequence of outcomes a receiver gives, a delivery is never dropped, a round
//! never has more than the seed's 3 attempts, the waits inside a round follow
//! 1 s → 10 s ×2, dead letters from transient failures are always retried again within
//! the dead-letter cap, and a success ends it delivered.

use ferry_core::notify::{Attempt, DeliveryPolicy, DeliveryStatus, OutboxItem};
use ferry_core::{Event, EventKind, Timestamp};
use proptest::prelude::*;
use std::time::Duration;

fn item() -> OutboxItem {
    OutboxItem {
        id: 1,
        channel: "c".into(),
        event_id: 1,
        event: Event {
            at: Timestamp(0),
            kind: EventKind::DeploymentStarted,
            run: None,
            environment: None,
            message: String::new(),
            data: serde_json::Value::Null,
        },
        status: DeliveryStatus::Pending,
        attempts: 0,
        rounds: 0,
        next_at: Some(Timestamp(0)),
        last_error: None,
        delivered_at: None,
    }
}

fn outcome() -> impl Strategy<Value = u8> {
    // 0: delivered, 1..=6: transient (mostly), 7: permanent
    0u8..8
}

proptest! {
    #[test]
    fn schedule_never_drops_and_keeps_the_seed_round(outcomes in proptest::collection::vec(outcome(), 1..60), retry_at in proptest::collection::vec(any::<bool>(), 60)) {
        let p = DeliveryPolicy::default();
        let mut it = item();
        let mut now = Timestamp(1_000_000);
        let mut last_round_wait = Duration::ZERO;
        let mut last_dead_wait = Duration::ZERO;
        for (n, o) in outcomes.iter().enumerate() {
            if it.status == DeliveryStatus::Delivered {
                break;
            }
            // A person's `ferry notify retry` sometimes, as the store does it.
            if it.status == DeliveryStatus::Dead && (it.next_at.is_none() || retry_at[n]) {
                it.status = DeliveryStatus::Pending;
                it.attempts = 0;
                it.next_at = Some(now);
                last_round_wait = Duration::ZERO;
            }
            let due = it.next_at.expect("an undelivered, unblocked delivery is always due some time");
            now = Timestamp(now.0.max(due.0));
            let was_dead = it.status == DeliveryStatus::Dead;
            let attempt = match o {
                0 => Attempt::Delivered("ok".into()),
                7 => Attempt::Permanent("550".into()),
                _ => Attempt::Transient("refused".into()),
            };
            let s = p.settle(&it, &attempt, now);
            prop_assert!(s.attempts <= p.round.max_attempts);
            match (&attempt, s.status) {
                (Attempt::Delivered(_), st) => {
                    prop_assert_eq!(st, DeliveryStatus::Delivered);
                    prop_assert_eq!(s.delivered_at, Some(now));
                }
                (Attempt::Permanent(_), st) => {
                    prop_assert_eq!(st, DeliveryStatus::Dead);
                    prop_assert_eq!(s.next_at, None);
                    prop_assert_eq!(s.last_error.as_deref(), Some("550"));
                }
                (Attempt::Transient(_), DeliveryStatus::Pending) => {
                    prop_assert!(!was_dead);
                    let wait = s.next_at.expect("retried").since(now);
                    prop_assert!(wait >= p.round.initial && wait <= p.round.max_delay);
                    prop_assert!(wait >= last_round_wait, "waits grow within a round");
                    last_round_wait = wait;
                }
                (Attempt::Transient(_), DeliveryStatus::Dead) => {
                    prop_assert!(was_dead || s.attempts == p.round.max_attempts);
                    let wait = s.next_at.expect("a transient dead letter is retried automatically").since(now);
                    prop_assert!(wait >= p.dead_first && wait <= p.dead_max);
                    if was_dead {
                        prop_assert!(wait >= last_dead_wait, "dead-letter waits never shrink");
                    }
                    last_dead_wait = wait;
                    last_round_wait = Duration::ZERO;
                }
                (Attempt::Transient(_), DeliveryStatus::Delivered) => prop_assert!(false, "a failure never delivers"),
            }
            it.status = s.status;
            it.attempts = s.attempts;
            it.rounds = s.rounds;
            it.next_at = s.next_at;
            it.last_error = s.last_error;
            it.delivered_at = s.delivered_at;
        }
        // Dropped never: it is delivered, or still owed (due later, or waiting for a person).
        prop_assert!(it.status == DeliveryStatus::Delivered || it.status == DeliveryStatus::Pending || it.status == DeliveryStatus::Dead);
        if it.status == DeliveryStatus::Pending {
            prop_assert!(it.next_at.is_some());
        }
    }

    #[test]
    fn dead_letter_waits_double_up_to_the_cap(rounds in 1u32..100) {
        let p = DeliveryPolicy::default();
        let d = p.dead_delay(rounds);
        prop_assert!(d >= p.dead_first && d <= p.dead_max);
        prop_assert!(p.dead_delay(rounds + 1) >= d);
        if rounds < 4 {
            prop_assert_eq!(d, p.dead_first * (1 << (rounds - 1)));
        }
    }
}
