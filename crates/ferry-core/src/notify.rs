//! Notifications through a durable outbox (DESIGN invariant 4, seed §3.6, §6.2,
//! Property 7): the outbox's data and its delivery schedule, as pure functions.
//!
//! Every event the store records is enqueued once per channel that wants its kind (the
//! store keeps a per-channel cursor over the events). A delivery is tried up to the
//! seed's 3 attempts, 1 s then 2 s apart (§6.2: 1 s → 10 s, ×2); after the last one it
//! is a **dead letter** — visible in `ferry status` and `ferry notify list --dead` — and
//! a dead letter from a transient failure is tried again by the dispatcher on a slower
//! schedule (1 min, 2 min, 4 min, 8 min, then every 10 min, for as long as it stays
//! dead), and at once by `ferry notify retry` or as soon as a delivery to the same
//! channel succeeds (the channel is back). A permanent failure (a 4xx answer, an SMTP
//! server refusing a recipient) is a dead letter at once and waits for `ferry notify
//! retry`. Nothing is ever dropped, so a channel down for an hour loses nothing.

use crate::events::Event;
use crate::retry::RetryPolicy;
use crate::time::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// The event kinds a channel gets when its `events:` list is empty: the seed's
/// notification messages (§3.6.2) and the alarms on the pipeline itself (§9.3).
pub use ferry_config::DEFAULT_NOTIFY_EVENTS as DEFAULT_KINDS;

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; tried again at `next_at`.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Every attempt of a round failed: a dead letter, kept and visible.
    Dead,
}

impl DeliveryStatus {
    /// `pending`, `delivered` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
    /// The inverse of [`DeliveryStatus::as_str`].
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// A channel as the outbox knows it: a stable id and the event kinds it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxChannel {
    /// The channel's id (`name:` in `ferry.yml`, or `<kind>-<hash>`).
    pub id: String,
    /// Event kinds (their text) enqueued for it.
    pub kinds: Vec<String>,
}

/// One event owed to one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    /// The delivery's id (what `ferry notify retry ID` takes).
    pub id: i64,
    pub channel: String,
    /// The event's id: sent as `X-Ferry-Event-Id`, so receivers drop duplicates.
    pub event_id: i64,
    pub event: Event,
    pub status: DeliveryStatus,
    /// Attempts in the current round (a round is the seed's 3 attempts).
    pub attempts: u32,
    /// Rounds that ended dead so far.
    pub rounds: u32,
    /// When it is due; `None`: a dead letter waiting for `ferry notify retry`.
    pub next_at: Option<Timestamp>,
    /// The last error or the receiver's answer.
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

/// Counts per channel (the `ferry_outbox_pending` metric, `ferry status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub channel: String,
    pub pending: u64,
    pub dead: u64,
    pub delivered: u64,
}

/// A query over the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxFilter {
    pub status: Option<DeliveryStatus>,
    pub channel: Option<String>,
    /// The newest `limit` items (default: all), newest first.
    pub limit: Option<usize>,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Accepted; the receiver's answer, if any, for the record.
    Delivered(String),
    /// Refused, timed out, 5xx …: worth trying again.
    Transient(String),
    /// Retrying will not help until someone changes something (4xx, a refused recipient).
    Permanent(String),
}

/// What the store records after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub rounds: u32,
    pub next_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

/// The delivery schedule: rounds of the seed's retry policy, then dead letters retried
/// on a slower exponential schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// One round (seed §6.2: 3 attempts, 1 s → 10 s, ×2).
    pub round: RetryPolicy,
    /// Wait before the first automatic retry of a dead letter.
    pub dead_first: Duration,
    /// The longest wait between automatic retries of a dead letter.
    pub dead_max: Duration,
    /// How long a claimed delivery is reserved for the process sending it; a process
    /// that dies while sending leaves it due again after this.
    pub claim: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            round: RetryPolicy::default(),
            dead_first: Duration::from_secs(60),
            dead_max: Duration::from_secs(600),
            claim: Duration::from_secs(60),
        }
    }
}

impl DeliveryPolicy {
    /// The wait before the automatic retry of a dead letter that has ended `rounds`
    /// rounds (1-based): `dead_first × 2^(rounds-1)`, at most `dead_max`.
    pub fn dead_delay(&self, rounds: u32) -> Duration {
        let shift = rounds.saturating_sub(1).min(20);
        self.dead_first
            .saturating_mul(1u32 << shift)
            .min(self.dead_max)
            .max(self.dead_first.min(self.dead_max))
    }

    /// What to record after an attempt on `item` at `now`.
    pub fn settle(&self, item: &OutboxItem, attempt: &Attempt, now: Timestamp) -> Settle {
        let attempts = if item.status == DeliveryStatus::Dead {
            // An automatic retry of a dead letter is one attempt of a round of its own.
            self.round.max_attempts
        } else {
            item.attempts.saturating_add(1)
        };
        match attempt {
            Attempt::Delivered(answer) => Settle {
                status: DeliveryStatus::Delivered,
                attempts,
                rounds: item.rounds,
                next_at: None,
                last_error: Some(answer.clone()).filter(|a| !a.is_empty()),
                delivered_at: Some(now),
            },
            Attempt::Permanent(error) => Settle {
                status: DeliveryStatus::Dead,
                attempts,
                rounds: item.rounds.saturating_add(1),
                next_at: None,
                last_error: Some(error.clone()),
                delivered_at: None,
            },
            Attempt::Transient(error) => {
                match self.round.delay_before(attempts.saturating_add(1)) {
                    Some(wait) if item.status != DeliveryStatus::Dead => Settle {
                        status: DeliveryStatus::Pending,
                        attempts,
                        rounds: item.rounds,
                        next_at: Some(now.plus(wait)),
                        last_error: Some(error.clone()),
                        delivered_at: None,
                    },
                    _ => {
                        let rounds = item.rounds.saturating_add(1);
                        Settle {
                            status: DeliveryStatus::Dead,
                            attempts,
                            rounds,
                            next_at: Some(now.plus(self.dead_delay(rounds))),
                            last_error: Some(error.clone()),
                            delivered_at: None,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn item(status: DeliveryStatus, attempts: u32, rounds: u32) -> OutboxItem {
        OutboxItem {
            id: 1,
            channel: "webhook-1".into(),
            event_id: 7,
            event: Event {
                at: Timestamp(0),
                kind: EventKind::DeploymentStarted,
                run: None,
                environment: None,
                message: String::new(),
                data: serde_json::Value::Null,
            },
            status,
            attempts,
            rounds,
            next_at: Some(Timestamp(0)),
            last_error: None,
            delivered_at: None,
        }
    }

    #[test]
    fn seed_round_then_dead_letter_then_slower_retries() {
        let p = DeliveryPolicy::default();
        let now = Timestamp(1_000_000);
        let fail = Attempt::Transient("connection refused".into());
        let s1 = p.settle(&item(DeliveryStatus::Pending, 0, 0), &fail, now);
        assert_eq!(s1.status, DeliveryStatus::Pending);
        assert_eq!(s1.next_at, Some(now.plus(Duration::from_secs(1))));
        let s2 = p.settle(&item(DeliveryStatus::Pending, 1, 0), &fail, now);
        assert_eq!(s2.next_at, Some(now.plus(Duration::from_secs(2))));
        let s3 = p.settle(&item(DeliveryStatus::Pending, 2, 0), &fail, now);
        assert_eq!(s3.status, DeliveryStatus::Dead);
        assert_eq!(s3.rounds, 1);
        assert_eq!(s3.next_at, Some(now.plus(Duration::from_secs(60))));
        let s4 = p.settle(&item(DeliveryStatus::Dead, 3, 4), &fail, now);
        assert_eq!(s4.status, DeliveryStatus::Dead);
        assert_eq!(s4.next_at, Some(now.plus(Duration::from_secs(600))));
        let ok = p.settle(
            &item(DeliveryStatus::Dead, 3, 4),
            &Attempt::Delivered(String::new()),
            now,
        );
        assert_eq!(ok.status, DeliveryStatus::Delivered);
        assert_eq!(ok.delivered_at, Some(now));
    }

    #[test]
    fn permanent_failure_is_dead_at_once_and_waits_for_a_person() {
        let p = DeliveryPolicy::default();
        let s = p.settle(
            &item(DeliveryStatus::Pending, 0, 0),
            &Attempt::Permanent("550 no such user".into()),
            Timestamp(5),
        );
        assert_eq!(s.status, DeliveryStatus::Dead);
        assert_eq!(s.next_at, None);
        assert_eq!(s.last_error.as_deref(), Some("550 no such user"));
    }

    #[test]
    fn every_event_kind_may_be_named_in_events() {
        for k in EventKind::ALL {
            assert!(
                ferry_config::EVENT_KINDS.contains(&k.as_str()),
                "{k} is missing from ferry_config::EVENT_KINDS"
            );
        }
        for k in DEFAULT_KINDS {
            assert!(ferry_config::EVENT_KINDS.contains(k));
        }
    }
}
